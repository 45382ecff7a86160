//! A file created and written in large pieces. In a WASI guest, std's writes go through
//! wasi-libc and the preview1 adapter, which splits every write into 4 KiB host calls —
//! each a handoff to the host's blocking pool; this writes through wasi:filesystem's
//! `descriptor.write` directly, one host call per buffer given. Natively it is a
//! `std::fs::File`.
//!
//! Wrap it in a `BufWriter` with the piece size wanted (snapshot-restore uses 1 MiB).

use std::io::{self, Write};
use std::path::Path;

/// A new file (truncated if it exists), written sequentially.
pub struct LargeFile {
    #[cfg(target_os = "wasi")]
    descriptor: wasip2::filesystem::types::Descriptor,
    #[cfg(target_os = "wasi")]
    offset: u64,
    #[cfg(not(target_os = "wasi"))]
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl LargeFile {
    /// Creates `path` (a path inside a preopened directory, in a guest).
    #[cfg(target_os = "wasi")]
    pub fn create(path: &Path) -> io::Result<Self> {
        use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
        let (preopen, relative) = crate::durable::preopen_for(path)?;
        let descriptor = preopen
            .open_at(
                PathFlags::empty(),
                &relative,
                OpenFlags::CREATE | OpenFlags::TRUNCATE,
                DescriptorFlags::WRITE,
            )
            .map_err(|e| io::Error::other(format!("creating {}: {e:?}", path.display())))?;
        Ok(Self {
            descriptor,
            offset: 0,
            path: path.to_owned(),
        })
    }

    /// Creates `path`.
    #[cfg(not(target_os = "wasi"))]
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: std::fs::File::create(path)?,
            path: path.to_owned(),
        })
    }

    /// Flushes the file's data to disk.
    pub fn sync_all(&self) -> io::Result<()> {
        #[cfg(target_os = "wasi")]
        let synced = self
            .descriptor
            .sync()
            .map_err(|e| io::Error::other(format!("{e:?}")));
        #[cfg(not(target_os = "wasi"))]
        let synced = self.file.sync_all();
        synced
            .map_err(|e| io::Error::new(e.kind(), format!("syncing {}: {e}", self.path.display())))
    }
}

impl Write for LargeFile {
    #[cfg(target_os = "wasi")]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self
            .descriptor
            .write(buf, self.offset)
            .map_err(|e| io::Error::other(format!("writing {}: {e:?}", self.path.display())))?;
        self.offset += written;
        Ok(written as usize)
    }

    #[cfg(not(target_os = "wasi"))]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_file_holds_what_was_written_and_replaces_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "an older, longer content").unwrap();
        let mut file = io::BufWriter::with_capacity(4, LargeFile::create(&path).unwrap());
        file.write_all(b"hello, world").unwrap();
        let file = file.into_inner().map_err(|e| e.into_error()).unwrap();
        file.sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello, world");
    }
}
