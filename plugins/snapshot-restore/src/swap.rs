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
//! | old dir, `data/`, no staged data          | after (2), before the old dir went   | keep files reconciled, old dir removed |
//! | old dir, `data/` *and* staged data        | between (1) and (2), then something else made a `data/` | refused: an operator decides |
//! | staging dir only                          | while extracting, or before (1)      | staging dir removed               |
//!
//! The staging dir never holds the only copy of anything: keep files are *copied* into
//! it, and the originals stay in `data/` or the old dir until the swap is complete. When
//! both the old dir and `data/` hold a validator state, the one that signed furthest
//! (height, round, step) is kept: a node that ran after the swap has the newer one.
//!
//! A `data/` that is a symlink is refused (the swap would replace the link, not the
//! directory it points to); a keep file that is a symlink is kept as the same symlink.

use std::io;
use std::path::{Path, PathBuf};

use planrt_node_common::durable;

/// The node's data directory, relative to the home (archive entries are under it too).
pub use crate::archive::DATA_DIR as DATA;
/// Where an archive is extracted before the swap, relative to the home.
pub const STAGING: &str = ".planrt-restore";
/// Where the old data dir waits during the swap, relative to the home.
pub const OLD_DATA: &str = ".planrt-old-data";
/// Files of the old data dir that survive a restore, over any copy in the archive: a
/// validator must never lose its last signed height, round and step. (With none in the
/// old dir, the archive's is kept: it can only make the validator wait, never double-sign.)
pub const KEEP_FILES: &[&str] = &["priv_validator_state.json"];

/// Why a swap or a recovery stopped.
#[derive(Debug)]
pub enum SwapError {
    /// The home is in a state no restore should touch; an operator must look.
    Refused(String),
    /// A file operation failed.
    Io(io::Error),
}

impl std::fmt::Display for SwapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SwapError::Refused(why) => f.write_str(why),
            SwapError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for SwapError {
    fn from(e: io::Error) -> Self {
        SwapError::Io(e)
    }
}

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
    /// else in an attempt. Interrupted itself, it is simply run again.
    pub fn recover(&self) -> Result<Recovery, SwapError> {
        let (data, old) = (self.data(), self.old_data());
        self.refuse_a_linked_data_dir()?;
        let recovery = if exists(&old)? {
            if !exists(&data)? {
                durable::rename(&old, &data)?;
                Recovery::OldDataPutBack
            } else if exists(&self.staged_data())? {
                return Err(SwapError::Refused(format!(
                    "a restore was interrupted between moving {DATA}/ aside (to {OLD_DATA}/) and \
                     moving the new one in ({STAGING}/{DATA}/), and a new {DATA}/ has appeared \
                     since (did the node start?); the validator state is in {OLD_DATA}/: move \
                     {OLD_DATA}/ back to {DATA}/ (or remove it) and run the task again"
                )));
            } else {
                // (2) happened: `data/` is the new dir, holding copies of the keep files.
                reconcile_keep_files(&old, &data)?;
                durable::sync_dir(&data)?;
                durable::remove_dir_all(&old)?;
                Recovery::SwapFinished
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
    pub fn swap_in(&self) -> Result<(), SwapError> {
        let (data, staged, old) = (self.data(), self.staged_data(), self.old_data());
        self.refuse_a_linked_data_dir()?;
        if exists(&data)? {
            for name in KEEP_FILES {
                if exists(&data.join(name))? {
                    keep_file(&data.join(name), &staged.join(name))?;
                }
            }
            durable::sync_dir(&staged)?;
            durable::rename(&data, &old)?;
        }
        durable::rename(&staged, &data)?;
        durable::remove_dir_all(&old)?;
        durable::remove_dir_all(&self.staging())?;
        Ok(())
    }

    fn refuse_a_linked_data_dir(&self) -> Result<(), SwapError> {
        let data = self.data();
        match std::fs::symlink_metadata(&data) {
            Ok(meta) if meta.file_type().is_symlink() => Err(SwapError::Refused(format!(
                "{} is a symlink: a restore would replace the link, not the directory it points \
                 to; grant that directory as the home's {DATA}/ instead",
                data.display()
            ))),
            _ => Ok(()),
        }
    }
}

/// Copies the keep file `source` to `target`: the same symlink if it is one, else its
/// contents (durably).
fn keep_file(source: &Path, target: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(source)?.file_type().is_symlink() {
        durable::symlink(&std::fs::read_link(source)?, target)
    } else {
        durable::copy(source, target)
    }
}

/// After an interrupted clean-up: `new` (the swapped-in dir) gets each keep file of `old`
/// it lacks, or whose state `old` signed further than.
fn reconcile_keep_files(old: &Path, new: &Path) -> io::Result<()> {
    for name in KEEP_FILES {
        let (source, target) = (old.join(name), new.join(name));
        if !exists(&source)? {
            continue;
        }
        let newer_in_old = match (signed_position(&source), signed_position(&target)) {
            (_, None) => true,
            (Some(old), Some(new)) => old > new,
            (None, Some(_)) => false,
        };
        if !exists(&target)? || newer_in_old {
            keep_file(&source, &target)?;
        }
    }
    Ok(())
}

/// How far a `priv_validator_state.json` has signed: (height, round, step). `None` if the
/// file is missing or unreadable.
pub fn signed_position(path: &Path) -> Option<(u64, i64, i64)> {
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let number = |key: &str| -> Option<i64> {
        let value = state.get(key)?;
        value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
    };
    Some((
        u64::try_from(number("height")?).ok()?,
        number("round").unwrap_or(0),
        number("step").unwrap_or(0),
    ))
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

    /// A home as a swap killed right after its first rename leaves it.
    fn killed_after_the_first_rename(home: &Path) -> Layout {
        let layout = extracted(home);
        for name in KEEP_FILES {
            keep_file(&layout.data().join(name), &layout.staged_data().join(name)).unwrap();
        }
        std::fs::rename(layout.data(), layout.old_data()).unwrap();
        layout
    }

    fn assert_signed_state_kept(layout: &Layout) {
        assert_eq!(
            read(&layout.data().join("priv_validator_state.json")),
            SIGNED
        );
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
        assert_signed_state_kept(&layout);
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
        let layout = killed_after_the_first_rename(home.path());
        assert_eq!(layout.recover().unwrap(), Recovery::OldDataPutBack);
        assert_signed_state_kept(&layout);
        assert_eq!(read(&layout.data().join("old.db")), "old");
        assert_eq!(home_entries(home.path()), ["data"]);
    }

    #[test]
    fn killed_after_the_renames_the_swap_is_finished() {
        let home = tempfile::tempdir().unwrap();
        let layout = killed_after_the_first_rename(home.path());
        std::fs::rename(layout.staged_data(), layout.data()).unwrap();
        assert_eq!(layout.recover().unwrap(), Recovery::SwapFinished);
        assert_signed_state_kept(&layout);
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
        assert_signed_state_kept(&layout);
    }

    #[test]
    fn killed_while_extracting_only_the_staging_dir_goes() {
        let home = tempfile::tempdir().unwrap();
        let layout = extracted(home.path());
        assert_eq!(layout.recover().unwrap(), Recovery::StagingRemoved);
        assert_signed_state_kept(&layout);
        assert_eq!(read(&layout.data().join("old.db")), "old");
        assert_eq!(home_entries(home.path()), ["data"]);
    }

    #[test]
    fn the_reported_loss_cannot_happen_again() {
        // The review's sequence: a kill between the renames, then a retry that starts by
        // clearing staging and swaps a new extraction in.
        let home = tempfile::tempdir().unwrap();
        let layout = killed_after_the_first_rename(home.path());
        layout.recover().unwrap();
        layout.prepare_staging().unwrap();
        write(&layout.staged_data().join("new.db"), "new");
        layout.swap_in().unwrap();
        assert_signed_state_kept(&layout);
        assert_eq!(home_entries(home.path()), ["data"]);
    }

    #[test]
    fn a_data_dir_made_by_someone_else_mid_swap_is_refused_and_nothing_is_lost() {
        // Killed between the renames; then the node started and made a fresh data dir
        // with a height-0 state. Keeping that and dropping the old dir would double-sign.
        let home = tempfile::tempdir().unwrap();
        let layout = killed_after_the_first_rename(home.path());
        write(
            &layout.data().join("priv_validator_state.json"),
            FROM_ARCHIVE,
        );

        match layout.recover() {
            Err(SwapError::Refused(why)) => assert!(why.contains(OLD_DATA), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(
            read(&layout.old_data().join("priv_validator_state.json")),
            SIGNED
        );
    }

    #[test]
    fn after_the_swap_the_state_that_signed_furthest_is_kept() {
        let home = tempfile::tempdir().unwrap();
        let layout = Layout::new(home.path());
        // The node ran after the swap and signed further than the old dir's copy.
        let later = r#"{"height":"4242","round":2,"step":1}"#;
        write(&layout.old_data().join("priv_validator_state.json"), SIGNED);
        write(&layout.data().join("priv_validator_state.json"), later);
        assert_eq!(layout.recover().unwrap(), Recovery::SwapFinished);
        assert_eq!(
            read(&layout.data().join("priv_validator_state.json")),
            later
        );

        // A copy torn or older than the old dir's is replaced by it.
        write(&layout.old_data().join("priv_validator_state.json"), SIGNED);
        write(&layout.data().join("priv_validator_state.json"), "{\"hei");
        assert_eq!(layout.recover().unwrap(), Recovery::SwapFinished);
        assert_eq!(
            read(&layout.data().join("priv_validator_state.json")),
            SIGNED
        );
        assert_eq!(
            signed_position(&layout.data().join("priv_validator_state.json")),
            Some((4242, 0, 3))
        );
    }

    #[test]
    fn a_symlinked_keep_file_stays_a_symlink_and_a_symlinked_data_dir_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let layout = Layout::new(home.path());
        write(&home.path().join("kms/state.json"), SIGNED);
        std::fs::create_dir_all(layout.data()).unwrap();
        std::os::unix::fs::symlink(
            "../kms/state.json",
            layout.data().join("priv_validator_state.json"),
        )
        .unwrap();
        write(&layout.staged_data().join("new.db"), "new");
        layout.swap_in().unwrap();
        let kept = layout.data().join("priv_validator_state.json");
        assert_eq!(
            std::fs::read_link(&kept).unwrap(),
            Path::new("../kms/state.json")
        );
        assert_eq!(read(&kept), SIGNED);

        let elsewhere = home.path().join("big-disk/data");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::remove_dir_all(layout.data()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, layout.data()).unwrap();
        assert!(
            matches!(layout.recover(), Err(SwapError::Refused(why)) if why.contains("symlink"))
        );
    }
}
