//! The state directory: private to the user that runs planrt, as ssh treats `~/.ssh`.
//!
//! It holds the database (plan params, outputs, log tails), plan claims, the compiled
//! component cache (native code planrt runs) and the key that authenticates that cache.
//! Whoever can write any of it can make planrt run their code or rewrite its history, so:
//! directories planrt creates here are `0700` and files `0600`, and a directory owned by
//! another user or writable by group or others is refused, never used. A directory that
//! is merely readable by others is used as it is (its files are still `0600`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of directories planrt creates in the state dir.
pub const DIR_MODE: u32 = 0o700;
/// Mode of files planrt creates in the state dir.
pub const FILE_MODE: u32 = 0o600;
/// Permission bits that let someone else change what is inside a directory.
const OTHERS_WRITE: u32 = 0o022;

/// Name of the key that authenticates compiled-cache entries.
pub const CACHE_KEY_FILE: &str = "cache.key";
/// Length of that key in bytes.
pub const CACHE_KEY_LEN: usize = 32;

/// Why the state dir (or a directory in it) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    /// Owned by someone else: they could change anything in it.
    #[error(
        "{} is owned by uid {owner}, not by this user (uid {me}): planrt refuses a state directory another user controls",
        path.display()
    )]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// Group or others may write into it.
    #[error(
        "{} is writable by group or others (mode {mode:04o}): planrt refuses it (fix with `chmod go-w {}`)",
        path.display(),
        path.display()
    )]
    OpenToOthers {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// An I/O error on a named path.
    #[error("{}: {error}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error (not a `source`: the message already says it).
        error: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StateDirError + '_ {
    move |error| StateDirError::Io {
        path: path.to_owned(),
        error,
    }
}

/// A state directory checked to be private to this user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// For commands that write: creates `path` (`0700`) if it is missing, then checks it.
    pub fn open_or_create(path: &Path) -> Result<Self, StateDirError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        create_private_dir(path)?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// For commands that only read: the state dir if it exists (`None` if not), checked;
    /// nothing is created or changed.
    pub fn open_existing(path: &Path) -> Result<Option<Self>, StateDirError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(path)(e)),
            Ok(_) => check_private_dir(path)?,
        }
        Ok(Some(Self {
            path: path.to_owned(),
        }))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A private subdirectory, created (`0700`) if missing and checked.
    pub fn subdir(&self, name: &str) -> Result<PathBuf, StateDirError> {
        let dir = self.path.join(name);
        create_private_dir(&dir)?;
        Ok(dir)
    }

    /// The key that authenticates compiled-cache entries: made once (random, `0600`) and
    /// kept in the state dir. A key file that is not this user's, not private or not
    /// [`CACHE_KEY_LEN`] bytes is replaced (costing only recompiles), never trusted.
    pub fn cache_key(&self) -> Result<[u8; CACHE_KEY_LEN], StateDirError> {
        let path = self.path.join(CACHE_KEY_FILE);
        if let Some(key) = read_private_key(&path)? {
            return Ok(key);
        }
        let key: [u8; CACHE_KEY_LEN] = rand::random();
        // Written aside (tempfile makes it 0600) and put in place without clobbering: a
        // concurrent reader sees no key or a whole one, and of two processes making one
        // at once, the first wins for both.
        let mut file = tempfile::NamedTempFile::new_in(&self.path).map_err(io_error(&self.path))?;
        file.write_all(&key)
            .and_then(|()| file.as_file().sync_all())
            .map_err(io_error(file.path()))?;
        if let Err(e) = file.persist_noclobber(&path) {
            if e.error.kind() != io::ErrorKind::AlreadyExists {
                return Err(io_error(&path)(e.error));
            }
            // Someone else's key is there: ours replaces it only if theirs is unusable.
            if read_private_key(&path)?.is_none() {
                e.file
                    .persist(&path)
                    .map_err(|e| io_error(&path)(e.error))?;
            }
        }
        read_private_key(&path)?
            .ok_or_else(|| io_error(&path)(io::Error::other("the cache key cannot be read back")))
    }
}

/// Creates `dir` with mode `0700` if it is missing, then checks it is private.
pub fn create_private_dir(dir: &Path) -> Result<(), StateDirError> {
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(dir)(e)),
    }
    check_private_dir(dir)
}

/// Checks that `dir` is a directory owned by this user and not writable by group or
/// others (symlinks are followed: what matters is the directory written to).
pub fn check_private_dir(dir: &Path) -> Result<(), StateDirError> {
    let meta = std::fs::metadata(dir).map_err(io_error(dir))?;
    if !meta.is_dir() {
        return Err(StateDirError::NotADirectory {
            path: dir.to_owned(),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(StateDirError::ForeignOwner {
            path: dir.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & OTHERS_WRITE != 0 {
        return Err(StateDirError::OpenToOthers {
            path: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Creates a new file (it must not exist) readable and writable by this user only.
pub fn create_private_file(path: &Path) -> Result<File, StateDirError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_error(path))
}

/// Makes an existing file of this user's private (`0600`), for files other programs
/// create (SQLite's) or older planrt versions left with the default umask. A file owned
/// by someone else is refused.
pub fn make_private(path: &Path) -> Result<(), StateDirError> {
    let meta = match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(io_error(path))?,
    };
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(StateDirError::ForeignOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(io_error(path))?;
    }
    Ok(())
}

/// The key at `path` if it is usable: this user's, private, exactly the right length.
fn read_private_key(path: &Path) -> Result<Option<[u8; CACHE_KEY_LEN]>, StateDirError> {
    let mut file = match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other.map_err(io_error(path))?,
    };
    let meta = file.metadata().map_err(io_error(path))?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        tracing::warn!(
            "{} is not a private file of this user: making a new compiled-cache key",
            path.display()
        );
        return Ok(None);
    }
    let mut key = [0u8; CACHE_KEY_LEN];
    let mut extra = [0u8; 1];
    let whole = file.read_exact(&mut key).is_ok() && matches!(file.read(&mut extra), Ok(0));
    Ok(whole.then_some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_new_state_dir_and_its_subdirs_are_private() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/state");
        let state = StateDir::open_or_create(&path).unwrap();
        assert_eq!(mode(&path), DIR_MODE);
        let claims = state.subdir("claims").unwrap();
        assert_eq!(mode(&claims), DIR_MODE);
        assert_eq!(StateDir::open_existing(&path).unwrap(), Some(state.clone()));
        assert_eq!(
            StateDir::open_existing(&root.path().join("missing")).unwrap(),
            None
        );
        assert!(
            !root.path().join("missing").exists(),
            "reading creates nothing"
        );
    }

    #[test]
    fn a_dir_others_can_write_is_refused() {
        let root = tempfile::tempdir().unwrap();
        for bits in [0o720, 0o702, 0o777] {
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(bits)).unwrap();
            let err = StateDir::open_or_create(root.path()).unwrap_err();
            assert!(
                matches!(err, StateDirError::OpenToOthers { mode, .. } if mode == bits),
                "{err}"
            );
            assert!(err.to_string().contains("chmod go-w"), "{err}");
            assert!(StateDir::open_existing(root.path()).is_err());
        }
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::open_or_create(root.path()).unwrap();
    }

    #[test]
    #[ignore = "needs root (to give a directory to another user); cargo xtask test runs it as root"]
    fn a_dir_of_another_user_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let nobody = rustix::process::Uid::from_raw(65534);
        rustix::fs::chown(root.path(), Some(nobody), None).unwrap();
        let err = StateDir::open_or_create(root.path()).unwrap_err();
        assert!(
            matches!(err, StateDirError::ForeignOwner { owner: 65534, .. }),
            "{err}"
        );
        let file = root.path().join("planrt.db");
        std::fs::write(&file, "").unwrap();
        rustix::fs::chown(&file, Some(nobody), None).unwrap();
        assert!(matches!(
            make_private(&file),
            Err(StateDirError::ForeignOwner { .. })
        ));
    }

    #[test]
    fn files_are_made_private() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("planrt.db");
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        make_private(&file).unwrap();
        assert_eq!(mode(&file), FILE_MODE);
        make_private(&root.path().join("absent")).unwrap();
        let new = root.path().join("new");
        create_private_file(&new).unwrap();
        assert_eq!(mode(&new), FILE_MODE);
        assert!(create_private_file(&new).is_err(), "never reused");
    }

    #[test]
    fn the_cache_key_is_made_once_private_and_replaced_when_unusable() {
        let root = tempfile::tempdir().unwrap();
        let state = StateDir::open_or_create(root.path()).unwrap();
        let key = state.cache_key().unwrap();
        let path = root.path().join(CACHE_KEY_FILE);
        assert_eq!(mode(&path), FILE_MODE);
        assert_eq!(state.cache_key().unwrap(), key, "stable");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let replaced = state.cache_key().unwrap();
        assert_ne!(replaced, key, "a key others could read is not trusted");
        assert_eq!(mode(&path), FILE_MODE);

        std::fs::write(&path, b"short").unwrap();
        assert_ne!(state.cache_key().unwrap(), replaced);
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [CACHE_KEY_FILE], "no temporary file stays");
    }
}
