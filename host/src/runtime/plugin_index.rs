//! The plugin index: what each plugin file said about itself the last time it was
//! loaded, keyed by the file's identity on disk (device, inode, size, modification and
//! change times) and kept, authenticated, beside the compiled cache. A file whose
//! identity is unchanged is not read, hashed or compiled at start: its plugin is loaded
//! when a task of its type first needs it (`planrt run` of a plan that uses one plugin
//! of many loads one).
//!
//! The change time cannot be set by a process (unlike the modification time), and a
//! write or rename updates it — to the kernel's clock tick (or, on some file systems, a
//! second or two): a rewrite within the same tick as the hashing would not show. So a
//! file is indexed only once it has been still for [`SETTLED`] (git's "racily clean"
//! rule), and a plugin loaded through the index is hashed again when it is first used:
//! the component run is always the one of the bytes hashed then.
//!
//! The index is a record of the compiled cache, one per plugin directory and planrt
//! version: it carries the cache's MAC, so a planted or edited index is ignored (and
//! rebuilt), never trusted.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cache::CompiledCache;
use super::info::PluginInfo;

/// How long a file must have been unchanged before its stamp is trusted to change with
/// its content (well above any file system's timestamp granularity).
pub const SETTLED: Duration = Duration::from_secs(3);

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

impl FileStamp {
    /// Whether the file had been unchanged for [`SETTLED`] at `now_ns` (nanoseconds since
    /// the epoch): only then can a later change be told from its stamp.
    pub fn settled_at(&self, now_ns: i128) -> bool {
        let last_change = self.mtime_ns.max(self.ctime_ns);
        now_ns - last_change >= SETTLED.as_nanos() as i128
    }
}

/// The index of one plugin directory's files, by file name (a non-UTF-8 name is not
/// indexed: its file is loaded in full every time).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PluginIndex {
    entries: BTreeMap<String, IndexEntry>,
    #[serde(skip)]
    record: String,
    #[serde(skip)]
    changed: bool,
}

impl PluginIndex {
    /// The index of the plugin directory `dir` (canonical) kept in `cache`; empty if
    /// there is none or it does not authenticate. Each planrt version keeps its own: what
    /// an index says was checked by the planrt that wrote it.
    pub fn read(cache: &CompiledCache, dir: &Path) -> Self {
        let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
        let record = format!(
            "plugin-index-{}-{}",
            env!("CARGO_PKG_VERSION"),
            hex::encode(&digest[..12])
        );
        let mut index: Self = cache
            .read_record(&record)
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        index.record = record;
        index
    }

    /// The entry of the file `name` if it still has the identity `stamp`.
    pub fn get(&self, name: &str, stamp: FileStamp) -> Option<&IndexEntry> {
        self.entries.get(name).filter(|entry| entry.stamp == stamp)
    }

    /// Records what the file `name` was when it was loaded, if it had settled by
    /// `now_ns` (else a change within the same timestamp tick could go unseen).
    pub fn insert(&mut self, name: &str, entry: IndexEntry, now_ns: i128) {
        if !entry.stamp.settled_at(now_ns) {
            self.changed |= self.entries.remove(name).is_some();
            return;
        }
        if self.entries.get(name) != Some(&entry) {
            self.entries.insert(name.to_owned(), entry);
            self.changed = true;
        }
    }

    /// Keeps only the entries of `names` (files removed from the directory are dropped).
    pub fn retain(&mut self, names: &[&str]) {
        let before = self.entries.len();
        self.entries
            .retain(|name, _| names.contains(&name.as_str()));
        self.changed |= self.entries.len() != before;
    }

    /// Writes the index back if it changed. A failure only costs the next start its
    /// speed: it is logged.
    pub fn save(&self, cache: &CompiledCache) {
        if !self.changed {
            return;
        }
        let written = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| cache.write_record(&self.record, &bytes));
        if let Err(e) = written {
            tracing::warn!("could not write the plugin index: {e}");
        }
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
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

    /// A time well after every stamp here: the files have settled.
    fn later() -> i128 {
        now_ns() + 2 * SETTLED.as_nanos() as i128
    }

    #[test]
    fn an_entry_holds_while_the_file_is_untouched_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("echo.wasm");
        std::fs::write(&file, b"one").unwrap();
        let stamp = FileStamp::of(&std::fs::metadata(&file).unwrap());
        let cache = cache(&dir.path().join("compiled"), 7);
        let mut index = PluginIndex::read(&cache, dir.path());
        assert!(index.get("echo.wasm", stamp).is_none());
        let entry = IndexEntry {
            stamp,
            sha256: "ab".into(),
            info: info(),
        };
        // Just written: not settled, not indexed.
        index.insert("echo.wasm", entry.clone(), now_ns());
        assert!(
            index.get("echo.wasm", stamp).is_none(),
            "a fresh file is not indexed"
        );
        index.insert("echo.wasm", entry.clone(), later());
        index.save(&cache);
        let again = PluginIndex::read(&cache, dir.path());
        assert_eq!(again.get("echo.wasm", stamp), Some(&entry));
        let other_dir = PluginIndex::read(&cache, &dir.path().join("elsewhere"));
        assert!(
            other_dir.get("echo.wasm", stamp).is_none(),
            "one index per directory"
        );

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
            again.get("echo.wasm", restamped).is_none(),
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
        let mut index = PluginIndex::read(&planted, dir.path());
        let entry = IndexEntry {
            stamp,
            sha256: "ab".into(),
            info: info(),
        };
        index.insert("echo.wasm", entry, later());
        index.save(&planted);
        let read = PluginIndex::read(&planted, dir.path());
        assert!(read.get("echo.wasm", stamp).is_some());
        // Another key: the record does not authenticate.
        let other_key = PluginIndex::read(&cache(&root, 2), dir.path());
        assert!(other_key.get("echo.wasm", stamp).is_none());
        // The same key, a byte changed.
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
        assert!(
            PluginIndex::read(&planted, dir.path())
                .get("echo.wasm", stamp)
                .is_none()
        );
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
        for name in ["a.wasm", "b.wasm"] {
            let entry = IndexEntry {
                stamp,
                sha256: "ab".into(),
                info: info(),
            };
            index.insert(name, entry, later());
        }
        index.retain(&["b.wasm"]);
        assert!(index.get("a.wasm", stamp).is_none());
        assert!(index.get("b.wasm", stamp).is_some());
    }
}
