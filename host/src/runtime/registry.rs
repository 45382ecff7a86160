//! The plugin registry: every `*.wasm` in the plugin directory, by task type.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::capability::{Capabilities, Refusal};
use super::info::PluginInfo;
use super::plugin::{LoadedPlugin, Unlinked};
use super::plugin_index::{FileStamp, PluginIndex};
use super::{Runtime, RuntimeError};
use crate::plan::TaskType;

/// A plugin file that could not be loaded (the others still are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadWarning {
    /// The file.
    pub file: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// The loaded plugins, by task type, and the capabilities they run with.
#[derive(Debug)]
pub struct Registry {
    plugins: BTreeMap<TaskType, Arc<LoadedPlugin>>,
    capabilities: Capabilities,
}

impl Registry {
    /// The plugin providing `task_type`.
    pub fn get(&self, task_type: &TaskType) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(task_type)
    }

    /// Drops the file bytes every plugin not linked yet keeps for linking: for a caller
    /// that will link no more (a later use of such a plugin then fails to load).
    pub fn release_unlinked(&self) {
        self.plugins
            .values()
            .for_each(|plugin| plugin.release_unlinked());
    }

    /// All plugins, by task type.
    pub fn iter(&self) -> impl Iterator<Item = (&TaskType, &Arc<LoadedPlugin>)> {
        self.plugins.iter()
    }

    /// Number of plugins.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// Whether no plugin loaded.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Adds `plugin` unless its task type is taken; returns whether it was added (a reload
    /// keeps the previous version of a file that cannot be loaded now).
    pub fn keep(&mut self, plugin: Arc<LoadedPlugin>) -> bool {
        let Ok(task_type) = TaskType::new(plugin.info().task_type.clone()) else {
            return false;
        };
        if self.plugins.contains_key(&task_type) {
            return false;
        }
        self.plugins.insert(task_type, plugin);
        true
    }

    /// Loads every plugin's component now (those taken from the plugin index are not
    /// yet): for a server, which keeps its plugins for hours and must not meet a file
    /// that changed under an unloaded one. A plugin that cannot be loaded leaves the
    /// registry, as a warning.
    pub async fn load_all(&mut self) -> Vec<LoadWarning> {
        let mut warnings = Vec::new();
        let mut failed = Vec::new();
        for (task_type, plugin) in &self.plugins {
            if let Err(error) = plugin.ensure_loaded().await {
                warnings.push(LoadWarning {
                    file: plugin.file().to_owned(),
                    reason: error.to_string(),
                });
                failed.push(task_type.clone());
            }
        }
        for task_type in failed {
            self.plugins.remove(&task_type);
        }
        warnings
    }

    /// Checks a plan's grants with every capability (at plan time, once per plan).
    pub fn check_grants(&self, grants: &crate::plan::Grants) -> Result<(), Refusal> {
        self.capabilities.check_grants(grants)
    }
}

impl Runtime {
    /// Loads every `*.wasm` file of `dir` (in name order). Files that fail to load are
    /// returned as warnings; two files with the same task type are an error.
    pub async fn load_plugins(
        &self,
        dir: &Path,
    ) -> Result<(Registry, Vec<LoadWarning>), RuntimeError> {
        let unreadable = |e: std::io::Error| RuntimeError::PluginDir {
            dir: dir.to_owned(),
            reason: e.to_string(),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(unreadable)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(unreadable)?;
        files.retain(|p| p.extension().is_some_and(|e| e == "wasm") && !p.is_dir());
        files.sort();

        let mut registry = Registry {
            plugins: BTreeMap::new(),
            capabilities: self.capabilities.clone(),
        };
        let mut warnings = Vec::new();
        let mut index = PluginIndex::read(&self.source.cache);
        for file in &files {
            // A plan pins its plugins by path, in JSON: the path must be text.
            let Some(path) = file.to_str() else {
                let reason = match dir.to_str() {
                    Some(_) => "its file name is not UTF-8: rename it",
                    None => "the plugin dir's path is not UTF-8: move the plugins",
                };
                warnings.push(LoadWarning {
                    file: file.clone(),
                    reason: reason.into(),
                });
                continue;
            };
            match self.load_plugin(file, path, &mut index).await {
                Ok(plugin) => {
                    let task_type = TaskType::new(plugin.info().task_type.clone())
                        .expect("checked by check_info");
                    let file = file.clone();
                    if let Some(first) = registry.plugins.get(&task_type) {
                        return Err(RuntimeError::DuplicateTaskType {
                            task_type: task_type.to_string(),
                            first: first.file().to_owned(),
                            second: file,
                        });
                    }
                    tracing::debug!(file = %file.display(), %task_type, "plugin loaded");
                    registry.plugins.insert(task_type, Arc::new(plugin));
                }
                Err(reason) => warnings.push(LoadWarning {
                    file: file.clone(),
                    reason,
                }),
            }
        }
        crate::blocking::blocking(|| index.save(&self.source.cache));
        Ok((registry, warnings))
    }

    /// Loads one plugin file. A file whose stamp the index knows is not read: what its
    /// component said comes from the index and it is linked when first used, from its
    /// compiled entry. Any other file is read and hashed: when the index knows that
    /// sha256, likewise (linked from these bytes), else it is compiled (or taken from the
    /// compiled cache), linked, asked `describe()` and indexed.
    async fn load_plugin(
        &self,
        file: &Path,
        path: &str,
        index: &mut PluginIndex,
    ) -> Result<LoadedPlugin, String> {
        // Reading, hashing and compiling block: the tokio worker is handed off meanwhile.
        // The stamp is taken before the bytes are read: a write in between leaves a stamp
        // that no longer matches, and the file is read again next time.
        let stamp = crate::blocking::blocking(|| std::fs::metadata(file))
            .map(|metadata| FileStamp::of(&metadata))
            .map_err(|e| format!("cannot read: {e}"))?;
        if let Some(sha256) = index.sha256_of(path, &stamp)
            && let Some(plugin) = self.indexed_plugin(file, (sha256, Unlinked::InFile), index)?
        {
            return Ok(plugin);
        }
        let read_at = std::time::SystemTime::now();
        let (wasm, sha256, after) = crate::blocking::blocking(|| {
            let wasm = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
            let sha256 = super::cache::sha256_hex(&wasm);
            let after = std::fs::metadata(file).map(|metadata| FileStamp::of(&metadata));
            Ok::<_, String>((Arc::<[u8]>::from(wasm), sha256, after))
        })?;
        // Stamped only when nothing wrote to it around the read (the same stamp before and
        // after, its last change well before): the next start may then skip reading it.
        if after.as_ref().is_ok_and(|after| *after == stamp) && stamp.settled_before(read_at) {
            index.insert_file(path, stamp, &sha256);
        }
        let unlinked = Unlinked::Read(wasm.clone());
        if let Some(plugin) = self.indexed_plugin(file, (sha256.clone(), unlinked), index)? {
            return Ok(plugin);
        }
        let component = crate::blocking::blocking(|| {
            self.source
                .cache
                .load(&self.engine, &wasm, &sha256)
                .map(|(component, _)| component)
                .map_err(|e| super::engine::load_error(&e))
        })?;
        let pre = self.source.link(&self.engine, &component)?;
        let plugin = LoadedPlugin::describe(
            &self.engine,
            (pre, self.source.clone()),
            self.capabilities.clone(),
            file.to_owned(),
            sha256,
        )
        .await
        .map_err(|e| e.to_string())?;
        check_info(plugin.info())?;
        index.insert(plugin.sha256(), plugin.info());
        Ok(plugin)
    }
}

impl Runtime {
    /// The plugin of `file` from what the index says its component `sha256` said, linked
    /// later from `unlinked`; `None` if the index does not know it (or its entry is no
    /// longer usable).
    fn indexed_plugin(
        &self,
        file: &Path,
        (sha256, unlinked): (String, Unlinked),
        index: &mut PluginIndex,
    ) -> Result<Option<LoadedPlugin>, String> {
        let Some(info) = index.get(&sha256) else {
            return Ok(None);
        };
        let indexed = LoadedPlugin::indexed(
            &self.engine,
            self.source.clone(),
            self.capabilities.clone(),
            (file.to_owned(), sha256, unlinked),
            info.clone(),
        );
        match indexed {
            Ok(plugin) => {
                // The index holds only checked answers, but the rules may be newer.
                check_info(plugin.info())?;
                Ok(Some(plugin))
            }
            Err(e) => {
                tracing::debug!(file = %file.display(), "index entry not used: {e}");
                Ok(None)
            }
        }
    }
}

/// What the host requires of a plugin's `describe()`, checked on every load (through the
/// index too): a valid task type, absolute guest paths without `..`.
fn check_info(info: &PluginInfo) -> Result<(), String> {
    TaskType::new(info.task_type.clone())
        .map_err(|e| format!("describe() returned a bad task type: {e}"))?;
    for need in &info.dirs {
        let path = Path::new(&need.guest_path);
        if !path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "describe() declares a bad guest path `{}`",
                need.guest_path
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_support;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_plugin_known_by_its_stamp_links_only_the_bytes_it_was_known_by() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = test_support::plugin_dir(dir.path(), &["test-noop"]);
        let compiled = dir.path().join("compiled");
        let runtime = Runtime::new(Capabilities::builtin(), &compiled, [0; 32]).unwrap();
        let noop = TaskType::new("test-noop").unwrap();
        // A file just written is not stamped (a change in the same timestamp tick would
        // not show): it must have settled first.
        std::thread::sleep(std::time::Duration::from_millis(2_100));
        // Described and indexed, file stamp and all.
        runtime.load_plugins(&plugins).await.unwrap();
        // Known by its stamp now: not read. Its compiled entry gone, linking reads it
        // again — and refuses bytes that are no longer the ones it was known by.
        let (registry, warnings) = runtime.load_plugins(&plugins).await.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        for engine in std::fs::read_dir(&compiled).unwrap() {
            for entry in std::fs::read_dir(engine.unwrap().path()).unwrap() {
                let entry = entry.unwrap().path();
                if entry.extension().is_some_and(|e| e == "cwasm") {
                    std::fs::remove_file(entry).unwrap();
                }
            }
        }
        let file = plugins.join("test-noop.wasm");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.extend_from_slice(b"\0");
        let plugin = registry.get(&noop).unwrap();
        let unchanged = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes).unwrap();
        let refused = plugin.ensure_loaded().await.unwrap_err().to_string();
        assert!(
            refused.contains("changed since planrt read the plugin dir"),
            "{refused}"
        );
        // The same bytes again: compiled from the file and linked.
        std::fs::write(&file, &unchanged).unwrap();
        let (registry, _) = runtime.load_plugins(&plugins).await.unwrap();
        registry.get(&noop).unwrap().ensure_loaded().await.unwrap();
    }
}
