//! The plugin index: what each plugin file said about itself the last time it was
//! loaded, keyed by the file's identity on disk (device, inode, size, modification and
//! change times) and kept, authenticated, beside the compiled cache. A file whose
//! identity is unchanged is not read, hashed or compiled at start: its plugin is loaded
//! when a task of its type first needs it (`planrt run` of a plan that uses one plugin
//! of many loads one).
//!
//! The change time cannot be set by a process (unlike the modification time), and any
//! write or rename updates it, so a replaced file shows as changed. The index is a
//! record of the compiled cache: it carries the cache's MAC, so a planted or edited
//! index is ignored (and rebuilt), never trusted.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cache::CompiledCache;
use super::info::PluginInfo;

/// The record's name in the compiled cache; its layout version is part of it.
const RECORD: &str = "plugin-index-v1";

/// A file's identity on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    /// The stamp of `metadata`.
    pub fn of(metadata: &std::fs::Metadata) -> Self {
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mtime_ns: ns(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: ns(metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// What the index keeps of one plugin file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The file's identity when it was loaded.
    pub stamp: FileStamp,
    /// sha256 of its bytes then (the compiled cache's key for it).
    pub sha256: String,
    /// What its `describe()` said.
    pub info: PluginInfo,
}

/// The index of one plugin directory's files, by absolute path.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PluginIndex {
    entries: BTreeMap<PathBuf, IndexEntry>,
    #[serde(skip)]
    changed: bool,
}

impl PluginIndex {
    /// The index kept in `cache`; empty if there is none or it does not authenticate.
    pub fn read(cache: &CompiledCache) -> Self {
        cache
            .read_record(RECORD)
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The entry of `file` if the file on disk still has the identity `stamp`.
    pub fn get(&self, file: &Path, stamp: FileStamp) -> Option<&IndexEntry> {
        self.entries.get(file).filter(|entry| entry.stamp == stamp)
    }

    /// Records what `file` was when it was loaded.
    pub fn insert(&mut self, file: PathBuf, entry: IndexEntry) {
        if self.entries.get(&file) != Some(&entry) {
            self.entries.insert(file, entry);
            self.changed = true;
        }
    }

    /// Keeps only the entries of `files` (files removed from the directory are dropped).
    pub fn retain(&mut self, files: &[PathBuf]) {
        let before = self.entries.len();
        self.entries
            .retain(|file, _| files.binary_search(file).is_ok());
        self.changed |= self.entries.len() != before;
    }

    /// Writes the index back if it changed. A failure only costs the next start its
    /// speed: it is logged.
    pub fn save(&self, cache: &CompiledCache) {
        if !self.changed {
            return;
        }
        let bytes = serde_json::to_vec(self).expect("the index serializes");
        if let Err(e) = cache.write_record(RECORD, &bytes) {
            tracing::warn!("could not write the plugin index: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::info::DirNeed;
    use crate::runtime::wit::WitVersion;

    fn info() -> PluginInfo {
        PluginInfo {
            task_type: "echo".into(),
            version: "1.0.0".into(),
            description: "d".into(),
            params_schema: "{}".into(),
            dirs: vec![DirNeed {
                guest_path: "/home".into(),
                writable: true,
            }],
            network: false,
            default_timeout: None,
            default_memory_limit: Some(1 << 20),
            wit_version: WitVersion::V0_2_0,
        }
    }

    fn cache(dir: &Path, key: u8) -> CompiledCache {
        let engine = crate::runtime::engine::new_engine().unwrap();
        CompiledCache::open(dir, &engine, [key; 32]).unwrap()
    }

    #[test]
    fn an_entry_holds_while_the_file_is_untouched_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("echo.wasm");
        std::fs::write(&file, b"one").unwrap();
        let stamp = FileStamp::of(&std::fs::metadata(&file).unwrap());
        let cache = cache(&dir.path().join("compiled"), 7);
        let mut index = PluginIndex::read(&cache);
        assert!(index.get(&file, stamp).is_none());
        let entry = IndexEntry {
            stamp,
            sha256: "ab".into(),
            info: info(),
        };
        index.insert(file.clone(), entry.clone());
        index.save(&cache);
        let again = PluginIndex::read(&cache);
        assert_eq!(again.get(&file, stamp), Some(&entry));

        // Rewritten with the same size and its modification time put back: the change
        // time still moved.
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, b"two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let restamped = FileStamp::of(&std::fs::metadata(&file).unwrap());
        assert_eq!(restamped.mtime_ns, stamp.mtime_ns);
        assert!(
            again.get(&file, restamped).is_none(),
            "a changed file is not trusted"
        );
    }

    #[test]
    fn an_index_planted_or_edited_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("compiled");
        let file = dir.path().join("echo.wasm");
        std::fs::write(&file, b"one").unwrap();
        let stamp = FileStamp::of(&std::fs::metadata(&file).unwrap());
        let planted = cache(&root, 1);
        let mut index = PluginIndex::default();
        index.insert(
            file.clone(),
            IndexEntry {
                stamp,
                sha256: "ab".into(),
                info: info(),
            },
        );
        index.save(&planted);
        // Another key: the record does not authenticate.
        assert!(
            PluginIndex::read(&cache(&root, 2))
                .get(&file, stamp)
                .is_none()
        );
        // The same key, a byte changed.
        let record = planted.read_record(RECORD).unwrap();
        assert!(!record.is_empty());
        let path = std::fs::read_dir(&root)
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".record"))
            .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(PluginIndex::read(&planted).get(&file, stamp).is_none());
    }

    #[test]
    fn removed_files_leave_the_index() {
        let mut index = PluginIndex::default();
        let stamp = FileStamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
            ctime_ns: 5,
        };
        for name in ["/p/a.wasm", "/p/b.wasm"] {
            let entry = IndexEntry {
                stamp,
                sha256: "ab".into(),
                info: info(),
            };
            index.insert(name.into(), entry);
        }
        index.retain(&[PathBuf::from("/p/b.wasm")]);
        assert!(index.get(Path::new("/p/a.wasm"), stamp).is_none());
        assert!(index.get(Path::new("/p/b.wasm"), stamp).is_some());
    }
}
