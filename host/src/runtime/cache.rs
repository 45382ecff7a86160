//! Compiled-component cache under the state dir.
//!
//! Compiling a component takes 50 ms to several seconds; deserializing the compiled form
//! takes about a millisecond. But `Component::deserialize` runs whatever native code the
//! file holds, so an entry is used only if it carries an HMAC-SHA256, under a key kept in
//! the state dir ([`crate::state_dir::StateDir::cache_key`]), over the engine's
//! compatibility hash, the sha256 of the component it was compiled from, and the compiled
//! bytes. A planted file, an entry copied from another component's name, another engine's
//! entry or a damaged one fails the check and is compiled again and overwritten: it is
//! never deserialized. The cache directories must be private to this user (checked when
//! the cache is opened).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::state_dir::{self, CACHE_KEY_LEN, StateDirError};

/// A component's name in the cache and the plugin index: the hex sha256 of its bytes.
pub fn sha256_hex(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

const MAGIC: &[u8; 8] = b"PLANRTC2";
const MAC_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + MAC_LEN;

type HmacSha256 = Hmac<Sha256>;

/// What a record's MAC binds instead of a component's sha256: a prefix no hex digest
/// has, and the name's length, so a record never authenticates as a component (nor one
/// record as another).
fn record_label(name: &str) -> String {
    format!("record:{}:{name}", name.len())
}

/// Where a component came from this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from an authenticated entry.
    Hit,
    /// No entry: compiled and stored.
    Miss,
    /// An entry that did not authenticate (or that wasmtime refused): compiled again and
    /// replaced.
    Replaced,
}

/// The compiled-component cache of one engine.
#[derive(Clone)]
pub struct CompiledCache {
    dir: PathBuf,
    engine_hash: [u8; 32],
    key: [u8; CACHE_KEY_LEN],
}

impl std::fmt::Debug for CompiledCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("CompiledCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Feeds `Hash` output into sha256, so the engine hash is stable across runs.
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
    /// The cache for `engine` under `root` (e.g. `<state>/compiled`), authenticated with
    /// `key`. Creates its directories private to this user, and refuses ones that are not.
    pub fn open(
        root: &Path,
        engine: &Engine,
        key: [u8; CACHE_KEY_LEN],
    ) -> Result<Self, StateDirError> {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash: [u8; 32] = hasher.0.finalize().into();
        let dir = root.join(hex::encode(&engine_hash[..8]));
        state_dir::create_private_dir(root)?;
        state_dir::create_private_dir(&dir)?;
        Ok(Self {
            dir,
            engine_hash,
            key,
        })
    }

    /// The entry file of a component.
    pub fn entry_path(&self, component_sha256: &str) -> PathBuf {
        self.dir.join(format!("{component_sha256}.cwasm"))
    }

    /// The MAC binding `payload` to this engine and to the component `sha256`.
    fn mac(&self, sha256: &str, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(MAGIC);
        mac.update(&self.engine_hash);
        mac.update(sha256.as_bytes());
        mac.update(payload);
        mac
    }

    /// The compiled component for `wasm` (whose sha256 is `sha256`), from the cache when
    /// an authenticated entry exists. Cache write failures only cost speed: they are
    /// logged.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        self.load_with(engine, sha256, || Ok(std::borrow::Cow::Borrowed(wasm)))
    }

    /// [`CompiledCache::load`], with the component's bytes asked of `wasm` only when they
    /// must be compiled (no authenticated entry).
    pub fn load_with<'a>(
        &self,
        engine: &Engine,
        sha256: &str,
        wasm: impl FnOnce() -> wasmtime::Result<std::borrow::Cow<'a, [u8]>>,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(sha256);
        let mut outcome = CacheOutcome::Miss;
        if let Ok(entry) = std::fs::read(&path) {
            match self.authenticated_payload(&entry, sha256) {
                Some(payload) => {
                    // SAFETY: the payload carries a MAC under this state dir's private key
                    // over this engine's compatibility hash, this component's sha256 and
                    // the bytes: only `store` below writes such entries, from
                    // `Component::serialize` of this component on an engine that
                    // precompiles the same way. wasmtime checks the rest.
                    match unsafe { Component::deserialize(engine, payload) } {
                        Ok(component) => return Ok((component, CacheOutcome::Hit)),
                        // Compiling again would be refused the same way.
                        Err(e) if super::engine::exceeds_pool(&e) => return Err(e),
                        Err(e) => {
                            tracing::warn!(entry = %path.display(), "compiled cache entry rejected, recompiling: {e}")
                        }
                    }
                }
                None => {
                    tracing::warn!(entry = %path.display(), "compiled cache entry does not authenticate (planted, copied or damaged): recompiling, never loading it")
                }
            }
            outcome = CacheOutcome::Replaced;
        }
        let component = Component::new(engine, &*wasm()?)?;
        match component.serialize() {
            Ok(bytes) => {
                if let Err(e) = self.store(&path, sha256, &bytes) {
                    tracing::warn!(entry = %path.display(), "could not write compiled cache entry: {e}");
                }
            }
            Err(e) => tracing::warn!("could not serialize compiled component: {e}"),
        }
        Ok((component, outcome))
    }

    /// A small record the host keeps beside the compiled components (the plugin index),
    /// named `name` — not a sha256, so it never stands for a component — if it
    /// authenticates.
    pub fn read_record(&self, name: &str) -> Option<Vec<u8>> {
        let entry = std::fs::read(self.record_path(name)).ok()?;
        self.authenticated_payload(&entry, &record_label(name))
            .map(<[u8]>::to_vec)
    }

    /// Writes the record `name` (atomically, authenticated, private to this user).
    pub fn write_record(&self, name: &str, payload: &[u8]) -> std::io::Result<()> {
        self.store(&self.record_path(name), &record_label(name), payload)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.record"))
    }

    /// The payload of `entry` if its MAC checks out (in constant time).
    fn authenticated_payload<'e>(&self, entry: &'e [u8], sha256: &str) -> Option<&'e [u8]> {
        if entry.len() < HEADER_LEN || &entry[..MAGIC.len()] != MAGIC {
            return None;
        }
        let (tag, payload) = entry[MAGIC.len()..].split_at(MAC_LEN);
        self.mac(sha256, payload)
            .verify_slice(tag)
            .ok()
            .map(|()| payload)
    }

    fn store(&self, path: &Path, sha256: &str, payload: &[u8]) -> std::io::Result<()> {
        // tempfile creates its files 0600.
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(MAGIC)?;
        file.write_all(&self.mac(sha256, payload).finalize().into_bytes())?;
        file.write_all(payload)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The smallest valid component, and another one (a custom section added).
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
    const OTHER_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0\0\x02\x01x";

    fn engine() -> Engine {
        super::super::engine::new_engine().unwrap().0
    }

    fn load(cache: &CompiledCache, engine: &Engine, wasm: &[u8]) -> CacheOutcome {
        cache.load(engine, wasm, &sha256_hex(wasm)).unwrap().1
    }

    #[test]
    fn miss_then_hit_then_damaged_entry_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = CompiledCache::open(dir.path(), &engine, [7; 32]).unwrap();
        assert_eq!(load(&cache, &engine, EMPTY_COMPONENT), CacheOutcome::Miss);
        assert_eq!(load(&cache, &engine, EMPTY_COMPONENT), CacheOutcome::Hit);

        // A flipped payload byte fails the MAC; a foreign file fails the header.
        let path = cache.entry_path(&sha256_hex(EMPTY_COMPONENT));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            load(&cache, &engine, EMPTY_COMPONENT),
            CacheOutcome::Replaced
        );
        assert_eq!(load(&cache, &engine, EMPTY_COMPONENT), CacheOutcome::Hit);
        std::fs::write(&path, b"not ours").unwrap();
        assert_eq!(
            load(&cache, &engine, EMPTY_COMPONENT),
            CacheOutcome::Replaced
        );
        assert_eq!(load(&cache, &engine, EMPTY_COMPONENT), CacheOutcome::Hit);
    }

    #[test]
    fn an_entry_too_large_for_the_pool_is_refused_without_compiling_again() {
        // An entry compiled on demand, read by a pooled engine (the compatibility hash is
        // the same) whose slots it does not fit: compiling it again would be refused the
        // same way, so the entry's refusal is the answer — shown here by bytes that would
        // not even compile.
        let dir = tempfile::tempdir().unwrap();
        let noop = super::super::test_support::built_plugin_bytes("test-noop");
        let on_demand = super::super::engine::on_demand_engine();
        let pooled = super::super::engine::small_pool(|pool| {
            pool.max_core_instances_per_component(1);
        });
        let cache = CompiledCache::open(dir.path(), &on_demand, [7; 32]).unwrap();
        assert_eq!(load(&cache, &on_demand, &noop), CacheOutcome::Miss);
        let cache = CompiledCache::open(dir.path(), &pooled, [7; 32]).unwrap();
        assert!(
            cache.entry_path(&sha256_hex(&noop)).exists(),
            "the same entry is read"
        );
        let error = cache
            .load(&pooled, b"not wasm", &sha256_hex(&noop))
            .err()
            .unwrap();
        assert!(super::super::engine::exceeds_pool(&error), "{error:#}");
    }

    #[test]
    fn an_entry_under_another_components_name_is_never_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = CompiledCache::open(dir.path(), &engine, [7; 32]).unwrap();
        load(&cache, &engine, EMPTY_COMPONENT);
        std::fs::copy(
            cache.entry_path(&sha256_hex(EMPTY_COMPONENT)),
            cache.entry_path(&sha256_hex(OTHER_COMPONENT)),
        )
        .unwrap();
        assert_eq!(
            load(&cache, &engine, OTHER_COMPONENT),
            CacheOutcome::Replaced
        );
        assert_eq!(load(&cache, &engine, OTHER_COMPONENT), CacheOutcome::Hit);
    }

    #[test]
    fn an_entry_made_with_another_key_is_never_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let planted = CompiledCache::open(dir.path(), &engine, [1; 32]).unwrap();
        load(&planted, &engine, EMPTY_COMPONENT);
        let cache = CompiledCache::open(dir.path(), &engine, [2; 32]).unwrap();
        assert_eq!(
            load(&cache, &engine, EMPTY_COMPONENT),
            CacheOutcome::Replaced
        );
    }

    #[test]
    fn cache_dirs_are_private_and_an_open_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("compiled");
        let engine = engine();
        let cache = CompiledCache::open(&root, &engine, [7; 32]).unwrap();
        for d in [&root, &cache.dir] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        load(&cache, &engine, EMPTY_COMPONENT);
        let entry = cache.entry_path(&sha256_hex(EMPTY_COMPONENT));
        let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&cache.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            CompiledCache::open(&root, &engine, [7; 32]),
            Err(StateDirError::OpenToOthers { .. })
        ));
    }

    #[test]
    fn the_engine_hash_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = CompiledCache::open(dir.path(), &engine(), [0; 32]).unwrap();
        let b = CompiledCache::open(dir.path(), &engine(), [0; 32]).unwrap();
        assert_eq!(a.entry_path("x"), b.entry_path("x"));
    }
}
