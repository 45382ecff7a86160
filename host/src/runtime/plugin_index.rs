//! The plugin index: what a component said about itself in `describe()`, by the sha256
//! of its bytes, and the sha256 of each plugin file by its stamp, kept beside the
//! compiled cache. A file whose stamp is unchanged is not even read at start; a file whose
//! sha256 is in the index is not compiled, linked or described: its plugin is linked when
//! a plan first uses it, from its compiled entry (`planrt run` of a plan that uses one
//! plugin of many links one).
//!
//! A stamp is what the kernel says of the file without reading it: device, inode, size,
//! and the modification and status-change times to the nanosecond. Writing a file, or
//! renaming another over it, changes the status-change time, which no user can set back,
//! so a changed file is never mistaken for the one the index knew: it is read and hashed
//! again. The index is a record of the compiled cache, one per planrt version (what an
//! entry says was checked by the planrt that wrote it), under the cache's MAC: a planted
//! or edited index is ignored (and rebuilt), never trusted.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::cache::CompiledCache;
use super::info::PluginInfo;

/// Entries kept beyond those of the files just loaded (other plugin dirs, older
/// versions of a file): enough for several dirs, bounded.
const KEEP_OTHERS: usize = 256;

/// What the kernel says of a file without reading it; any write to the file, or a rename
/// over it, changes it (its status-change time at least).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// Wider than any filesystem's timestamp tick (a few milliseconds on Linux's own, two
/// seconds on FAT): a file changed less than this before it was read is not stamped, as a
/// change within the same tick as the read would leave its stamp as it was.
const SETTLED: i128 = 2_000_000_000;

impl FileStamp {
    /// Whether the file last changed (its content or its inode) long enough before
    /// `read_at` that a stamp taken then tells its content apart from any later one.
    pub fn settled_before(&self, read_at: std::time::SystemTime) -> bool {
        let read_at = read_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                i128::try_from(since.as_nanos()).unwrap_or(i128::MAX)
            });
        self.ctime_ns.max(self.mtime_ns) + SETTLED <= read_at
    }

    /// The stamp of the file `metadata` describes.
    pub fn of(metadata: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
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

/// A plugin file as last read: its stamp then, and the sha256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KnownFile {
    stamp: FileStamp,
    sha256: String,
}

/// What `describe()` said, by component sha256; the sha256 of plugin files, by path.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PluginIndex {
    entries: BTreeMap<String, PluginInfo>,
    #[serde(default)]
    files: BTreeMap<String, KnownFile>,
    #[serde(skip)]
    seen: BTreeSet<String>,
    #[serde(skip)]
    seen_files: BTreeSet<String>,
    #[serde(skip)]
    changed: bool,
}

impl PluginIndex {
    /// The index kept in `cache`; empty if there is none or it does not authenticate.
    pub fn read(cache: &CompiledCache) -> Self {
        cache
            .read_record(&record_name())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The sha256 of the file at `path` if it was read with this very `stamp` and the
    /// index knows what that component said.
    pub fn sha256_of(&mut self, path: &str, stamp: &FileStamp) -> Option<String> {
        self.seen_files.insert(path.to_owned());
        let known = self.files.get(path).filter(|known| known.stamp == *stamp)?;
        self.entries
            .contains_key(&known.sha256)
            .then(|| known.sha256.clone())
    }

    /// Records that the file at `path`, stamped `stamp` before it was read, hashed to
    /// `sha256`.
    pub fn insert_file(&mut self, path: &str, stamp: FileStamp, sha256: &str) {
        self.seen_files.insert(path.to_owned());
        let known = KnownFile {
            stamp,
            sha256: sha256.to_owned(),
        };
        if self.files.get(path) != Some(&known) {
            self.files.insert(path.to_owned(), known);
            self.changed = true;
        }
    }

    /// What the component `sha256` said, if it was indexed.
    pub fn get(&mut self, sha256: &str) -> Option<&PluginInfo> {
        self.seen.insert(sha256.to_owned());
        self.entries.get(sha256)
    }

    /// Records what the component `sha256` said.
    pub fn insert(&mut self, sha256: &str, info: &PluginInfo) {
        self.seen.insert(sha256.to_owned());
        if self.entries.get(sha256) != Some(info) {
            self.entries.insert(sha256.to_owned(), info.clone());
            self.changed = true;
        }
    }

    /// Writes the index back if it changed (keeping at most [`KEEP_OTHERS`] entries not
    /// seen in this load). A failure only costs the next start its speed: it is logged.
    pub fn save(mut self, cache: &CompiledCache) {
        let others = self
            .entries
            .keys()
            .filter(|sha| !self.seen.contains(*sha))
            .count();
        if others > KEEP_OTHERS {
            let mut drop = others - KEEP_OTHERS;
            let seen = &self.seen;
            self.entries.retain(|sha, _| {
                let keep = seen.contains(sha) || drop == 0;
                drop -= usize::from(!keep);
                keep
            });
            self.changed = true;
        }
        // Files not seen in this load (other dirs) are kept while their components are,
        // at most KEEP_OTHERS of them; a file whose record is gone is read again.
        let entries = &self.entries;
        let seen_files = &self.seen_files;
        let before = self.files.len();
        let mut others = 0;
        self.files.retain(|path, known| {
            if seen_files.contains(path) {
                return true;
            }
            let keep = others < KEEP_OTHERS && entries.contains_key(&known.sha256);
            others += usize::from(keep);
            keep
        });
        self.changed |= self.files.len() != before;
        if !self.changed {
            return;
        }
        let written = serde_json::to_vec(&self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| cache.write_record(&record_name(), &bytes));
        if let Err(e) = written {
            tracing::warn!("could not write the plugin index: {e}");
        }
    }
}

/// The record's name: one index per planrt version.
fn record_name() -> String {
    format!("plugin-index-{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::runtime::info::DirNeed;
    use crate::runtime::wit::WitVersion;

    fn info(task_type: &str) -> PluginInfo {
        PluginInfo {
            task_type: task_type.into(),
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
        let engine = crate::runtime::engine::new_engine().unwrap().0;
        CompiledCache::open(dir, &engine, [key; 32]).unwrap()
    }

    #[test]
    fn entries_survive_a_restart_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), 7);
        let mut index = PluginIndex::read(&cache);
        assert!(index.get("aa").is_none());
        index.insert("aa", &info("echo"));
        index.save(&cache);
        let mut again = PluginIndex::read(&cache);
        assert_eq!(again.get("aa"), Some(&info("echo")));
        assert!(
            again.get("bb").is_none(),
            "another content is another entry"
        );
    }

    #[test]
    fn a_file_is_known_by_its_stamp_only_while_nothing_wrote_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), 7);
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, b"one").unwrap();
        let stamp = || FileStamp::of(&std::fs::metadata(&file).unwrap());
        // Just written: not yet a stamp a start would record; in two seconds, it is.
        let now = std::time::SystemTime::now();
        assert!(!stamp().settled_before(now));
        assert!(stamp().settled_before(now + std::time::Duration::from_secs(3)));
        let path = file.to_str().unwrap();
        let mut index = PluginIndex::read(&cache);
        let read_then = stamp();
        index.insert_file(path, read_then.clone(), "aa");
        assert_eq!(
            index.sha256_of(path, &read_then),
            None,
            "a file whose component the index does not know is read"
        );
        index.insert("aa", &info("echo"));
        index.save(&cache);
        let mut again = PluginIndex::read(&cache);
        assert_eq!(again.sha256_of(path, &stamp()).as_deref(), Some("aa"));
        // Written again, the same bytes, the modification time put back: the status-change
        // time still moved.
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&file, b"one").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(again.sha256_of(path, &stamp()), None);
        // Another file renamed over it: another inode.
        let other = dir.path().join("q.wasm");
        std::fs::write(&other, b"two").unwrap();
        std::fs::rename(&other, &file).unwrap();
        assert_eq!(again.sha256_of(path, &stamp()), None);
    }

    #[test]
    fn an_index_planted_or_edited_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let planted = cache(dir.path(), 1);
        let mut index = PluginIndex::read(&planted);
        index.insert("aa", &info("echo"));
        index.save(&planted);
        assert!(PluginIndex::read(&planted).get("aa").is_some());
        // Another key: the record does not authenticate.
        assert!(PluginIndex::read(&cache(dir.path(), 2)).get("aa").is_none());
        // The same key, a byte changed.
        let path = std::fs::read_dir(dir.path())
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".record"))
            .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(PluginIndex::read(&planted).get("aa").is_none());
    }

    #[test]
    fn entries_not_seen_are_kept_up_to_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), 7);
        let mut index = PluginIndex::read(&cache);
        for i in 0..KEEP_OTHERS + 10 {
            index.insert(&format!("{i:04}"), &info("echo"));
        }
        index.save(&cache);
        // A load that sees one file: the others stay, at most KEEP_OTHERS of them.
        let mut next = PluginIndex::read(&cache);
        assert!(next.get("0005").is_some());
        next.insert("new", &info("echo"));
        next.save(&cache);
        let mut last = PluginIndex::read(&cache);
        assert_eq!(last.entries.len(), KEEP_OTHERS + 2);
        assert!(last.get("0005").is_some() && last.get("new").is_some());
    }

    #[test]
    fn files_not_seen_are_kept_up_to_the_same_bound() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), 7);
        let stamp = FileStamp::of(&std::fs::metadata(dir.path()).unwrap());
        let mut index = PluginIndex::read(&cache);
        index.insert("c", &info("echo"));
        for i in 0..KEEP_OTHERS + 10 {
            index.insert_file(&format!("/plugins/{i:04}.wasm"), stamp.clone(), "c");
        }
        // Files of components the index does not hold: kept while seen, dropped once not,
        // and then not counted against the bound (they sort first on purpose: counted,
        // they would crowd out ten of the others).
        for i in 0..10 {
            index.insert_file(&format!("/a-gone/{i}.wasm"), stamp.clone(), "unknown");
        }
        index.save(&cache);
        // A load that sees one file: of the others, exactly KEEP_OTHERS stay.
        let mut next = PluginIndex::read(&cache);
        assert_eq!(next.sha256_of("/seen.wasm", &stamp), None);
        next.insert_file("/seen.wasm", stamp.clone(), "c");
        assert!(next.get("c").is_some());
        next.save(&cache);
        let last = PluginIndex::read(&cache);
        assert_eq!(last.files.len(), KEEP_OTHERS + 1);
        assert!(last.files.contains_key("/seen.wasm"));
        assert!(!last.files.keys().any(|path| path.starts_with("/a-gone/")));
    }
}
