//! Putting a restored data dir in place of the node's, so that no crash — at any point,
//! followed by any retry — loses the validator's last signed state.
//!
//! The swap is two renames inside the node home, each synced to disk:
//!
//! ```text
//!   data/  ──(1)──▶  .planrt-old-data/        staged copy of the keep files made first
//!   .planrt-restore/data/  ──(2)──▶  data/
//! ```
//!
//! then the old dir and the staging dir are removed. Every attempt first calls
//! [`Layout::recover`], which finishes or undoes whatever a killed attempt left:
//!
//! | on disk                                   | the killed attempt stopped           | recovery                          |
//! |-------------------------------------------|--------------------------------------|-----------------------------------|
//! | old dir, no `data/`                       | between (1) and (2)                  | rename the old dir back (undo)    |
//! | old dir and `data/`                       | after (2), before the old dir went   | keep files checked, old dir removed |
//! | staging dir only                          | while extracting, or before (1)      | staging dir removed               |
//!
//! The staging dir never holds the only copy of anything: keep files are *copied* into
//! it, and the originals stay in `data/` or the old dir until the swap is complete.

use std::io;
use std::path::{Path, PathBuf};

use planrt_node_common::durable;

/// The node's data directory, relative to the home (archive entries are under it too).
pub use crate::archive::DATA_DIR as DATA;
/// Where an archive is extracted before the swap, relative to the home.
pub const STAGING: &str = ".planrt-restore";
/// Where the old data dir waits during the swap, relative to the home.
pub const OLD_DATA: &str = ".planrt-old-data";
/// Files of the old data dir that always survive a restore: a validator must never lose
/// (or take from someone else's snapshot) its last signed height, round and step.
pub const KEEP_FILES: &[&str] = &["priv_validator_state.json"];

/// What [`Layout::recover`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing was left over.
    Clean,
    /// A partial extraction was removed; the data dir was never touched.
    StagingRemoved,
    /// The swap had moved the old data dir aside but not yet moved the new one in: the
    /// old one is back in place.
    OldDataPutBack,
    /// The swap had completed but not cleaned up: the old data dir is gone.
    SwapFinished,
}

/// The node home a restore works in.
#[derive(Debug, Clone)]
pub struct Layout {
    home: PathBuf,
}

impl Layout {
    /// The layout under `home` (`/home` in the guest).
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self { home: home.into() }
    }

    /// The node's data directory.
    pub fn data(&self) -> PathBuf {
        self.home.join(DATA)
    }

    /// The extraction root: archive entries are `data/…`, so they land in
    /// [`Self::staged_data`].
    pub fn staging(&self) -> PathBuf {
        self.home.join(STAGING)
    }

    /// The extracted data dir, once extraction has finished.
    pub fn staged_data(&self) -> PathBuf {
        self.staging().join(DATA)
    }

    fn old_data(&self) -> PathBuf {
        self.home.join(OLD_DATA)
    }

    /// Brings the home back to a state with no restore in progress: run before anything
    /// else in an attempt.
    pub fn recover(&self) -> io::Result<Recovery> {
        let (data, old) = (self.data(), self.old_data());
        let recovery = if exists(&old)? {
            if exists(&data)? {
                // (2) happened: `data/` is the new dir, holding copies of the keep files.
                // Copy any that are missing (never overwrite) before the originals go.
                keep_files(&old, &data, false)?;
                durable::remove_dir_all(&old)?;
                Recovery::SwapFinished
            } else {
                durable::rename(&old, &data)?;
                Recovery::OldDataPutBack
            }
        } else {
            Recovery::Clean
        };
        if exists(&self.staging())? {
            durable::remove_dir_all(&self.staging())?;
            if recovery == Recovery::Clean {
                return Ok(Recovery::StagingRemoved);
            }
        }
        Ok(recovery)
    }

    /// Starts a restore: an empty staging dir (after [`Self::recover`]).
    pub fn prepare_staging(&self) -> io::Result<()> {
        durable::remove_dir_all(&self.staging())?;
        std::fs::create_dir(self.staging())
            .map_err(|e| io::Error::new(e.kind(), format!("creating {STAGING}: {e}")))
    }

    /// Drops a staging dir whose archive did not check out.
    pub fn discard_staging(&self) -> io::Result<()> {
        durable::remove_dir_all(&self.staging())
    }

    /// Puts [`Self::staged_data`] in place of the data dir, keeping [`KEEP_FILES`] of the
    /// old one (they win over the archive's).
    pub fn swap_in(&self) -> io::Result<()> {
        let (data, staged, old) = (self.data(), self.staged_data(), self.old_data());
        if exists(&data)? {
            keep_files(&data, &staged, true)?;
            durable::sync_dir(&staged)?;
            durable::rename(&data, &old)?;
        }
        durable::rename(&staged, &data)?;
        durable::remove_dir_all(&old)?;
        durable::remove_dir_all(&self.staging())
    }
}

/// Copies each of [`KEEP_FILES`] present in `from` into `to` (over an existing one only
/// when `overwrite`), each synced.
fn keep_files(from: &Path, to: &Path, overwrite: bool) -> io::Result<()> {
    for name in KEEP_FILES {
        let (source, target) = (from.join(name), to.join(name));
        if exists(&source)? && (overwrite || !exists(&target)?) {
            durable::copy(&source, &target)?;
        }
    }
    Ok(())
}

/// Whether `path` exists, without following a final symlink; errors other than "not
/// found" are errors (a recovery must not guess).
fn exists(path: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("checking {}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &str = r#"{"height":"4242","round":0,"step":3}"#;
    const FROM_ARCHIVE: &str = r#"{"height":"0","round":0,"step":0}"#;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every entry directly in the home, sorted.
    fn home_entries(home: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(home)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A node home with a validator state in `data/` and a fully extracted archive.
    fn extracted(home: &Path) -> Layout {
        let layout = Layout::new(home);
        write(&layout.data().join("priv_validator_state.json"), SIGNED);
        write(&layout.data().join("old.db"), "old");
        write(&layout.staged_data().join("new.db"), "new");
        write(
            &layout.staged_data().join("priv_validator_state.json"),
            FROM_ARCHIVE,
        );
        layout
    }

    #[test]
    fn a_swap_keeps_the_validator_state_over_the_archives() {
        let home = tempfile::tempdir().unwrap();
        let layout = extracted(home.path());
        layout.swap_in().unwrap();
        assert_eq!(
            read(&layout.data().join("priv_validator_state.json")),
            SIGNED
        );
        assert_eq!(read(&layout.data().join("new.db")), "new");
        assert!(!layout.data().join("old.db").exists());
        assert_eq!(home_entries(home.path()), ["data"]);
        assert_eq!(layout.recover().unwrap(), Recovery::Clean);
    }

    #[test]
    fn a_swap_into_a_home_without_data_moves_the_archive_in() {
        let home = tempfile::tempdir().unwrap();
        let layout = Layout::new(home.path());
        write(&layout.staged_data().join("new.db"), "new");
        layout.swap_in().unwrap();
        assert_eq!(read(&layout.data().join("new.db")), "new");
        assert_eq!(home_entries(home.path()), ["data"]);
    }

    #[test]
    fn killed_between_the_renames_the_old_data_is_put_back() {
        let home = tempfile::tempdir().unwrap();
        let layout = extracted(home.path());
        // The state after (1): keep files copied into staging, data moved aside.
        keep_files(&layout.data(), &layout.staged_data(), true).unwrap();
        std::fs::rename(layout.data(), layout.old_data()).unwrap();

        assert_eq!(layout.recover().unwrap(), Recovery::OldDataPutBack);
        assert_eq!(
            read(&layout.data().join("priv_validator_state.json")),
            SIGNED
        );
        assert_eq!(read(&layout.data().join("old.db")), "old");
        assert_eq!(home_entries(home.path()), ["data"]);
    }

    #[test]
    fn killed_after_the_renames_the_swap_is_finished() {
        let home = tempfile::tempdir().unwrap();
        let layout = extracted(home.path());
        keep_files(&layout.data(), &layout.staged_data(), true).unwrap();
        std::fs::rename(layout.data(), layout.old_data()).unwrap();
        std::fs::rename(layout.staged_data(), layout.data()).unwrap();

        assert_eq!(layout.recover().unwrap(), Recovery::SwapFinished);
        assert_eq!(
            read(&layout.data().join("priv_validator_state.json")),
            SIGNED
        );
        assert_eq!(read(&layout.data().join("new.db")), "new");
        assert_eq!(home_entries(home.path()), ["data"]);
    }

    #[test]
    fn a_finished_swap_missing_its_keep_file_gets_it_from_the_old_dir() {
        let home = tempfile::tempdir().unwrap();
        let layout = Layout::new(home.path());
        write(&layout.old_data().join("priv_validator_state.json"), SIGNED);
        write(&layout.data().join("new.db"), "new");

        assert_eq!(layout.recover().unwrap(), Recovery::SwapFinished);
        assert_eq!(
            read(&layout.data().join("priv_validator_state.json")),
            SIGNED
        );
    }

    #[test]
    fn killed_while_extracting_only_the_staging_dir_goes() {
        let home = tempfile::tempdir().unwrap();
        let layout = extracted(home.path());
        assert_eq!(layout.recover().unwrap(), Recovery::StagingRemoved);
        assert_eq!(
            read(&layout.data().join("priv_validator_state.json")),
            SIGNED
        );
        assert_eq!(read(&layout.data().join("old.db")), "old");
        assert_eq!(home_entries(home.path()), ["data"]);
    }

    #[test]
    fn the_reported_loss_cannot_happen_again() {
        // The review's sequence: a kill between the renames, then a retry that starts by
        // clearing staging and swaps a new extraction in.
        let home = tempfile::tempdir().unwrap();
        let layout = extracted(home.path());
        keep_files(&layout.data(), &layout.staged_data(), true).unwrap();
        std::fs::rename(layout.data(), layout.old_data()).unwrap();

        layout.recover().unwrap();
        layout.prepare_staging().unwrap();
        write(&layout.staged_data().join("new.db"), "new");
        layout.swap_in().unwrap();
        assert_eq!(
            read(&layout.data().join("priv_validator_state.json")),
            SIGNED
        );
        assert_eq!(home_entries(home.path()), ["data"]);
    }
}
