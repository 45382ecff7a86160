//! Compiled-component cache under the state dir.
//!
//! Compiling a component takes 50 ms to several seconds; deserializing the compiled form
//! takes about a millisecond. Entries are keyed by the component's sha256 and the engine's
//! compatibility hash. Deserializing is only sound for bytes this host wrote, so each
//! entry carries a header and a sha256 of its payload, written atomically (temp file +
//! rename); anything that does not check out is compiled again and overwritten.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"PLANRTC1";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// Where a component came from this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from a valid entry.
    Hit,
    /// No entry: compiled and stored.
    Miss,
    /// An entry that did not check out: compiled again and replaced.
    Replaced,
}

/// The compiled-component cache of one engine.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: PathBuf,
}

/// Feeds `Hash` output into sha256, so the key is stable across runs.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only `digest` is used")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl CompiledCache {
    /// The cache for `engine` under `root` (e.g. `<state>/compiled`).
    pub fn new(root: &Path, engine: &Engine) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        Self {
            dir: root.join(engine_key),
        }
    }

    /// The entry file of a component.
    pub fn entry_path(&self, component_sha256: &str) -> PathBuf {
        self.dir.join(format!("{component_sha256}.cwasm"))
    }

    /// The compiled component for `wasm` (whose sha256 is `sha256`), from the cache when a
    /// valid entry exists. Cache write failures only cost speed: they are logged.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(sha256);
        let mut outcome = CacheOutcome::Miss;
        if let Ok(entry) = std::fs::read(&path) {
            match Self::payload(&entry) {
                Some(payload) => {
                    // SAFETY: the payload was written by `store` below (header and digest
                    // checked), from `Component::serialize` of an engine with the same
                    // compatibility hash (the directory key); wasmtime checks the rest.
                    match unsafe { Component::deserialize(engine, payload) } {
                        Ok(component) => return Ok((component, CacheOutcome::Hit)),
                        Err(e) => {
                            tracing::warn!(entry = %path.display(), "compiled cache entry rejected, recompiling: {e}")
                        }
                    }
                }
                None => {
                    tracing::warn!(entry = %path.display(), "compiled cache entry is damaged, recompiling")
                }
            }
            outcome = CacheOutcome::Replaced;
        }
        let component = Component::new(engine, wasm)?;
        match component.serialize() {
            Ok(bytes) => {
                if let Err(e) = self.store(&path, &bytes) {
                    tracing::warn!(entry = %path.display(), "could not write compiled cache entry: {e}");
                }
            }
            Err(e) => tracing::warn!("could not serialize compiled component: {e}"),
        }
        Ok((component, outcome))
    }

    fn payload(entry: &[u8]) -> Option<&[u8]> {
        if entry.len() < HEADER_LEN || &entry[..MAGIC.len()] != MAGIC {
            return None;
        }
        let (digest, payload) = entry[MAGIC.len()..].split_at(32);
        (Sha256::digest(payload).as_slice() == digest).then_some(payload)
    }

    fn store(&self, path: &Path, payload: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(MAGIC)?;
        file.write_all(&Sha256::digest(payload))?;
        file.write_all(payload)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The smallest valid component.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine() -> Engine {
        super::super::engine::new_engine().unwrap()
    }

    #[test]
    fn miss_then_hit_then_damaged_entry_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = CompiledCache::new(dir.path(), &engine);
        let sha = hex::encode(Sha256::digest(EMPTY_COMPONENT));
        assert_eq!(
            cache.load(&engine, EMPTY_COMPONENT, &sha).unwrap().1,
            CacheOutcome::Miss
        );
        assert_eq!(
            cache.load(&engine, EMPTY_COMPONENT, &sha).unwrap().1,
            CacheOutcome::Hit
        );

        // A flipped payload byte fails the digest; a foreign file fails the header.
        let path = cache.entry_path(&sha);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            cache.load(&engine, EMPTY_COMPONENT, &sha).unwrap().1,
            CacheOutcome::Replaced
        );
        assert_eq!(
            cache.load(&engine, EMPTY_COMPONENT, &sha).unwrap().1,
            CacheOutcome::Hit
        );
        std::fs::write(&path, b"not ours").unwrap();
        assert_eq!(
            cache.load(&engine, EMPTY_COMPONENT, &sha).unwrap().1,
            CacheOutcome::Replaced
        );
        assert_eq!(
            cache.load(&engine, EMPTY_COMPONENT, &sha).unwrap().1,
            CacheOutcome::Hit
        );
    }

    #[test]
    fn engine_key_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = CompiledCache::new(dir.path(), &engine());
        let b = CompiledCache::new(dir.path(), &engine());
        assert_eq!(a.entry_path("x"), b.entry_path("x"));
    }
}
