//! Extracting a node snapshot (`data/…` entries, tar) under a root directory, refusing any
//! entry that would land outside `<root>/data/`: absolute paths, `..`, symlinks or
//! hardlinks that lead out (even to elsewhere under the root), symlinks that go up with
//! `..`, and writes through links. Sparse entries are refused too: a few bytes of header
//! could declare terabytes of holes to write.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use planrt_node_common::durable;
use planrt_node_common::large_file::LargeFile;
use tar::{Archive, EntryType};

/// The directory every entry must stay inside.
pub const DATA_DIR: &str = "data";

/// Why extraction stopped.
#[derive(Debug)]
pub enum ExtractError {
    /// An entry that would land outside `data/`: the archive is not a snapshot to trust.
    Hostile {
        /// The entry's path as written in the archive.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the archive or writing a file failed.
    Io(String),
}

impl std::fmt::Display for ExtractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExtractError::Hostile { entry, reason } => {
                write!(f, "archive entry `{entry}` refused: {reason}")
            }
            ExtractError::Io(e) => write!(f, "{e}"),
        }
    }
}

fn hostile(entry: &str, reason: impl Into<String>) -> ExtractError {
    ExtractError::Hostile {
        entry: entry.to_owned(),
        reason: reason.into(),
    }
}

/// What was extracted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Extracted {
    /// Regular files written.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Bytes written to a file per host call.
const WRITE_BUFFER: usize = 1 << 20;

/// `path` checked to be relative, without `..`, and inside `data/`; returned normalized.
pub fn checked_entry_path(entry: &str, path: &Path) -> Result<PathBuf, ExtractError> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(hostile(entry, "`..` leaves the archive root")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(hostile(entry, "absolute path"));
            }
        }
    }
    if clean.components().next() != Some(Component::Normal(DATA_DIR.as_ref())) {
        return Err(hostile(entry, "outside data/"));
    }
    Ok(clean)
}

/// Checks a symlink entry at `entry_path` pointing to `target` (relative to the entry's
/// own directory): it must stay inside `data/` and may not go up with `..`. The second
/// rule is what makes the first hold on disk whatever other links the archive holds, in
/// any order: a link that never goes up resolves inside its own directory's subtree, even
/// through other such links, while `a/up -> ..` and then `out -> a/up/..` would look
/// inside `data/` as text and lead out of it on disk.
pub fn checked_symlink_target(
    entry: &str,
    entry_path: &Path,
    target: &Path,
) -> Result<(), ExtractError> {
    if target.is_absolute() {
        return Err(hostile(
            entry,
            format!("symlink to absolute path {}", target.display()),
        ));
    }
    let mut landing: Vec<&std::ffi::OsStr> = entry_path
        .parent()
        .map_or(Vec::new(), |p| p.iter().collect());
    for component in target.components() {
        match component {
            Component::Normal(part) => landing.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if landing.pop().is_none() {
                    return Err(hostile(
                        entry,
                        format!("symlink to {} leaves the archive root", target.display()),
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => unreachable!("checked absolute above"),
        }
    }
    if landing.first().copied() != Some(DATA_DIR.as_ref()) {
        return Err(hostile(
            entry,
            format!("symlink to {} leads out of data/", target.display()),
        ));
    }
    if target.components().any(|c| c == Component::ParentDir) {
        return Err(hostile(
            entry,
            format!(
                "symlink to {} goes up with `..`: a snapshot's links may only point down, inside their own directory",
                target.display()
            ),
        ));
    }
    Ok(())
}

/// Refuses to write at `relative` under `root` if any existing part of it is a symlink
/// (an earlier entry could otherwise redirect this one anywhere).
fn refuse_links_on_the_way(entry: &str, root: &Path, relative: &Path) -> Result<(), ExtractError> {
    let mut at = root.to_path_buf();
    for part in relative.iter() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(hostile(
                    entry,
                    format!("would be written through the symlink {}", at.display()),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ExtractError::Io(format!("{}: {e}", at.display()))),
        }
    }
    Ok(())
}

fn io_error(what: &Path) -> impl Fn(io::Error) -> ExtractError + '_ {
    move |e| ExtractError::Io(format!("{}: {e}", what.display()))
}

/// Extracts every entry of the tar stream `reader` under `root` (which should be empty).
/// Every file and directory written is synced to disk before this returns, so a data dir
/// swapped in afterwards survives a power cut whole.
pub fn extract(reader: impl Read, root: &Path) -> Result<Extracted, ExtractError> {
    let mut archive = Archive::new(reader);
    let mut extracted = Extracted::default();
    // Directories whose entries changed: synced once at the end, deepest first.
    let mut touched_dirs = BTreeSet::new();
    let entries = archive
        .entries()
        .map_err(|e| ExtractError::Io(format!("reading the archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ExtractError::Io(format!("reading the archive: {e}")))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = entry
            .path()
            .map_err(|e| hostile(&raw, e.to_string()))?
            .into_owned();
        let relative = checked_entry_path(&raw, &path)?;
        refuse_links_on_the_way(&raw, root, &relative)?;
        let target = root.join(&relative);
        let parent = target.parent().expect("inside data/");
        touched_dirs.extend(
            parent
                .ancestors()
                .take_while(|d| d.starts_with(root))
                .map(Path::to_path_buf),
        );
        match entry.header().entry_type() {
            EntryType::Directory => std::fs::create_dir_all(&target).map_err(io_error(&target))?,
            EntryType::Regular | EntryType::Continuous => {
                std::fs::create_dir_all(parent).map_err(io_error(parent))?;
                // Written in MiB pieces, each one host call (std's writes would be split
                // into 4 KiB calls by the preview1 layer).
                let mut file = io::BufWriter::with_capacity(
                    WRITE_BUFFER,
                    LargeFile::create(&target).map_err(io_error(&target))?,
                );
                extracted.bytes += io::copy(&mut entry, &mut file).map_err(io_error(&target))?;
                let file = file
                    .into_inner()
                    .map_err(|e| io_error(&target)(e.into_error()))?;
                file.sync_all().map_err(io_error(&target))?;
                extracted.files += 1;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| hostile(&raw, e.to_string()))?
                    .ok_or_else(|| hostile(&raw, "symlink without a target"))?
                    .into_owned();
                checked_symlink_target(&raw, &relative, &link)?;
                std::fs::create_dir_all(parent).map_err(io_error(parent))?;
                durable::symlink(&link, &target).map_err(io_error(&target))?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| hostile(&raw, e.to_string()))?
                    .ok_or_else(|| hostile(&raw, "hardlink without a target"))?
                    .into_owned();
                // A hardlink names another entry, relative to the archive root.
                let source = checked_entry_path(&raw, &link).map_err(|_| {
                    hostile(
                        &raw,
                        format!("hardlink to {} leads out of data/", link.display()),
                    )
                })?;
                refuse_links_on_the_way(&raw, root, &source)?;
                std::fs::create_dir_all(parent).map_err(io_error(parent))?;
                std::fs::hard_link(root.join(&source), &target).map_err(io_error(&target))?;
            }
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {}
            other => return Err(hostile(&raw, format!("unsupported entry type {other:?}"))),
        }
    }
    for dir in touched_dirs.iter().rev() {
        if dir.is_dir() {
            durable::sync_dir(dir).map_err(|e| ExtractError::Io(e.to_string()))?;
        }
    }
    Ok(extracted)
}

#[cfg(test)]
mod tests {
    use tar::{Builder, Header};

    use super::*;

    /// A tar with entries written raw (hostile names included: `tar` refuses to build them).
    fn archive(entries: &[(&str, EntryType, &str)]) -> Vec<u8> {
        let mut builder = Builder::new(Vec::new());
        for (name, kind, content_or_target) in entries {
            let mut header = Header::new_gnu();
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            let data: &[u8] = match kind {
                EntryType::Regular => content_or_target.as_bytes(),
                _ => {
                    header.as_old_mut().linkname[..content_or_target.len()]
                        .copy_from_slice(content_or_target.as_bytes());
                    &[]
                }
            };
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn extract_into(
        entries: &[(&str, EntryType, &str)],
    ) -> (tempfile::TempDir, Result<Extracted, ExtractError>) {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("config")).unwrap();
        let staging = home.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        let result = extract(archive(entries).as_slice(), &staging);
        (home, result)
    }

    fn refused(entries: &[(&str, EntryType, &str)], entry: &str, reason: &str) {
        let (home, result) = extract_into(entries);
        match result {
            Err(ExtractError::Hostile {
                entry: e,
                reason: r,
            }) => {
                assert_eq!(e, entry);
                assert!(r.contains(reason), "{r}");
            }
            other => panic!("expected a refusal of {entry}, got {other:?}"),
        }
        // Nothing landed outside the staging dir.
        let outside: Vec<_> = std::fs::read_dir(home.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(outside.len(), 2, "{outside:?}");
        assert_eq!(
            std::fs::read_dir(home.path().join("config"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_snapshot_extracts_under_data() {
        let (home, result) = extract_into(&[
            ("data/", EntryType::Directory, ""),
            (
                "data/application.db/000001.log",
                EntryType::Regular,
                "blocks",
            ),
            ("./data/state.db", EntryType::Regular, "state"),
            ("data/link", EntryType::Symlink, "state.db"),
            ("data/hard", EntryType::Link, "data/state.db"),
        ]);
        let extracted = result.unwrap();
        assert_eq!(
            extracted,
            Extracted {
                files: 2,
                bytes: 11
            }
        );
        let data = home.path().join("staging/data");
        assert_eq!(
            std::fs::read_to_string(data.join("application.db/000001.log")).unwrap(),
            "blocks"
        );
        assert_eq!(std::fs::read_to_string(data.join("link")).unwrap(), "state");
        assert_eq!(std::fs::read_to_string(data.join("hard")).unwrap(), "state");
    }

    #[test]
    fn absolute_and_parent_paths_are_refused() {
        refused(
            &[("/etc/passwd", EntryType::Regular, "x")],
            "/etc/passwd",
            "absolute",
        );
        refused(
            &[("data/../../evil", EntryType::Regular, "x")],
            "data/../../evil",
            "`..`",
        );
        refused(
            &[("config/config.toml", EntryType::Regular, "x")],
            "config/config.toml",
            "outside data/",
        );
    }

    #[test]
    fn symlinks_leading_out_of_data_are_refused_even_inside_the_home() {
        refused(
            &[("data/evil", EntryType::Symlink, "/etc")],
            "data/evil",
            "absolute",
        );
        refused(
            &[("data/up", EntryType::Symlink, "../../..")],
            "data/up",
            "leaves the archive root",
        );
        // Stays inside the grant (the home) but leaves data/: to /home/config.
        refused(
            &[("data/cfg", EntryType::Symlink, "../config")],
            "data/cfg",
            "leads out of data/",
        );
        refused(
            &[("data/a/b", EntryType::Symlink, "../../config/config.toml")],
            "data/a/b",
            "leads out of data/",
        );
    }

    #[test]
    fn links_going_up_are_refused_even_when_they_land_inside_data() {
        // As text `a/up/..` is data/a; on disk, through `up -> ..`, it is the root above
        // data/. Either order of the two entries must be refused.
        refused(
            &[
                ("data/a/up", EntryType::Symlink, ".."),
                ("data/out", EntryType::Symlink, "a/up/.."),
            ],
            "data/a/up",
            "goes up with `..`",
        );
        refused(
            &[
                ("data/out", EntryType::Symlink, "a/up/.."),
                ("data/a/up", EntryType::Symlink, ".."),
            ],
            "data/out",
            "goes up with `..`",
        );
        // Pointing down is fine, through another link too.
        let (home, result) = extract_into(&[
            ("data/a/", EntryType::Directory, ""),
            ("data/a/f", EntryType::Regular, "x"),
            ("data/down", EntryType::Symlink, "a"),
            ("data/via", EntryType::Symlink, "down/f"),
        ]);
        result.unwrap();
        assert_eq!(
            std::fs::read_to_string(home.path().join("staging/data/via")).unwrap(),
            "x"
        );
    }

    #[test]
    fn sparse_entries_are_refused_before_anything_is_written() {
        // A GNU sparse header claiming a terabyte, with 4 bytes of data and no holes listed.
        let mut builder = Builder::new(Vec::new());
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::GNUSparse);
        header.set_size(4);
        header.set_mode(0o644);
        // 4 bytes of data at the end of a terabyte: the rest would be written as holes.
        let gnu = header.as_gnu_mut().unwrap();
        gnu.set_real_size(1 << 40);
        gnu.sparse[0].set_offset((1 << 40) - 4);
        gnu.sparse[0].set_length(4);
        builder
            .append_data(&mut header, "data/holes", &b"data"[..])
            .unwrap();
        let home = tempfile::tempdir().unwrap();
        let result = extract(builder.into_inner().unwrap().as_slice(), home.path());
        match result {
            Err(ExtractError::Hostile { entry, reason }) => {
                assert_eq!(entry, "data/holes");
                assert!(reason.contains("unsupported entry type"), "{reason}");
            }
            other => panic!("a sparse entry was not refused: {other:?}"),
        }
        assert!(!home.path().join("data/holes").exists());
    }

    #[test]
    fn writing_through_a_symlinked_directory_is_refused() {
        refused(
            &[
                ("data/dir", EntryType::Symlink, "sub"),
                ("data/dir/file", EntryType::Regular, "x"),
            ],
            "data/dir/file",
            "through the symlink",
        );
    }

    #[test]
    fn hardlinks_leading_out_are_refused() {
        refused(
            &[("data/h", EntryType::Link, "config/config.toml")],
            "data/h",
            "leads out of data/",
        );
        refused(
            &[("data/h", EntryType::Link, "../etc/passwd")],
            "data/h",
            "leads out of data/",
        );
        refused(
            &[("data/h", EntryType::Link, "/etc/passwd")],
            "data/h",
            "leads out of data/",
        );
    }

    #[test]
    fn odd_entry_types_are_refused() {
        refused(
            &[("data/fifo", EntryType::Fifo, "")],
            "data/fifo",
            "unsupported entry type",
        );
    }
}
