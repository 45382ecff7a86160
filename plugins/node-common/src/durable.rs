//! Writes that survive a crash or a power cut at any point: a file is replaced whole or
//! not at all, and a rename is on disk before the caller goes on.
//!
//! Plain `std::fs` calls, so the same code runs natively (unit tests) and in a WASI guest
//! — except syncing a directory, which a guest does through wasi:filesystem itself (the
//! preview1 layer under std syncs files only).

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Flushes a directory's entries (a rename or a new file in it) to disk.
#[cfg(not(target_os = "wasi"))]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io::Error::new(e.kind(), format!("syncing {}: {e}", dir.display())))
}

/// Flushes a directory's entries (a rename or a new file in it) to disk.
#[cfg(target_os = "wasi")]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let (preopen, relative) = preopen_for(dir)?;
    let synced = if relative.is_empty() {
        preopen.sync()
    } else {
        preopen
            .open_at(
                PathFlags::SYMLINK_FOLLOW,
                &relative,
                OpenFlags::DIRECTORY,
                DescriptorFlags::READ,
            )
            .and_then(|d| d.sync())
    };
    synced.map_err(|e| io::Error::other(format!("syncing {}: {e:?}", dir.display())))
}

/// The preopened directory that holds `path` (the deepest one), and `path` relative to it.
#[cfg(target_os = "wasi")]
pub fn preopen_for(path: &Path) -> io::Result<(wasip2::filesystem::types::Descriptor, String)> {
    let (dir, guest) = wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .filter(|(_, guest)| path.starts_with(guest))
        .max_by_key(|(_, guest)| guest.len())
        .ok_or_else(|| {
            io::Error::other(format!("{} is in no preopened directory", path.display()))
        })?;
    let relative = path
        .strip_prefix(&guest)
        .expect("filtered by prefix")
        .to_string_lossy()
        .into_owned();
    Ok((dir, relative))
}

/// Renames `from` to `to` and syncs the directories that held and now hold it.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("renaming {} to {}: {e}", from.display(), to.display()),
        )
    })?;
    sync_dir(parent(to))?;
    if parent(from) != parent(to) {
        sync_dir(parent(from))?;
    }
    Ok(())
}

/// Replaces `to` with a copy of the file `from` (read whole: for small files), through
/// [`write_atomically`]: a crash leaves the old `to` or the whole copy, never a torn one.
pub fn copy(from: &Path, to: &Path) -> io::Result<()> {
    let bytes = std::fs::read(from)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", from.display())))?;
    write_atomically(to, &bytes)
}

/// Makes `at` a symlink to `target` (replacing whatever `at` was) and syncs its directory.
pub fn symlink(target: &Path, at: &Path) -> io::Result<()> {
    match std::fs::remove_file(at) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io::Error::new(
                e.kind(),
                format!("replacing {}: {e}", at.display()),
            ));
        }
        _ => {}
    }
    make_symlink(target, at)
        .map_err(|e| io::Error::new(e.kind(), format!("linking {}: {e}", at.display())))?;
    sync_dir(parent(at))
}

#[cfg(not(target_os = "wasi"))]
fn make_symlink(target: &Path, at: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, at)
}

/// std's WASI symlink is unstable: made through the preopen that holds `at`.
#[cfg(target_os = "wasi")]
fn make_symlink(target: &Path, at: &Path) -> io::Result<()> {
    let (dir, relative) = preopen_for(at)?;
    dir.symlink_at(&target.to_string_lossy(), &relative)
        .map_err(|e| io::Error::other(format!("symlink: {e:?}")))
}

/// Removes the directory tree `dir` if it exists, and syncs its parent.
pub fn remove_dir_all(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => sync_dir(parent(dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("removing {}: {e}", dir.display()),
        )),
    }
}

/// Replaces `path` with `bytes`: written to a new temporary file beside it (a name no
/// other writer uses), synced, renamed over `path`, and the directory synced. A crash
/// leaves either the old file or the new one, never a mix; at worst a stray
/// `.<name>.planrt-*.tmp` file. The new file has the default mode for new files (WASI
/// cannot copy the old file's permissions).
pub fn write_atomically(path: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
    let path = path.as_ref();
    let (tmp, mut file) = create_temp_beside(path)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io::Error::new(
            e.kind(),
            format!("writing {}: {e}", path.display()),
        ));
    }
    sync_dir(parent(path))
}

/// A new, exclusively created file next to `path`. (Not `tempfile`: its WASI support
/// rests on rustix and getrandom builds that Debian's 2022 wasi-libc cannot link.)
fn create_temp_beside(path: &Path) -> io::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?
        .to_string_lossy();
    let mut attempts = 0;
    loop {
        let tmp = parent(path).join(format!(".{name}.planrt-{:016x}.tmp", random_u64()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("creating {}: {e}", tmp.display()),
                ));
            }
        }
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// 64 random bits from std's per-process hash keys (seeded from the OS, or from
/// wasi:random in a guest), with no extra dependency.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.toml"]);
    }

    #[test]
    fn temporary_names_differ_between_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let (a, _) = create_temp_beside(&path).unwrap();
        let (b, _) = create_temp_beside(&path).unwrap();
        assert_ne!(a, b);
        assert!(
            a.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".config.toml.planrt-")
        );
    }

    #[test]
    fn a_write_into_a_missing_directory_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomically(dir.path().join("missing/config.toml"), b"x").unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn rename_copy_link_and_remove_do_their_job_on_files_and_directories() {
        // (Whether the syncs reach the disk cannot be seen from here: that they run on
        // directories without failing can.)
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join("f"), "x").unwrap();
        rename(&a, &b).unwrap();
        std::fs::create_dir(dir.path().join("c")).unwrap();
        rename(&b.join("f"), &dir.path().join("c/f")).unwrap();
        std::fs::write(b.join("g"), "old").unwrap();
        copy(&dir.path().join("c/f"), &b.join("g")).unwrap();
        assert_eq!(std::fs::read_to_string(b.join("g")).unwrap(), "x");
        symlink(Path::new("../c/f"), &b.join("g")).unwrap();
        assert_eq!(
            std::fs::read_link(b.join("g")).unwrap(),
            Path::new("../c/f")
        );
        remove_dir_all(&b).unwrap();
        remove_dir_all(&b).unwrap();
        assert!(!b.exists());
    }
}
