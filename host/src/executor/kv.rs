//! The plugins' key-value store as the runtime asks for it: the state store's `kv` table.

use std::sync::Arc;

use crate::runtime::capability::kv::{KvBackend, KvFull, KvLimits};
use crate::store::{KvWrite, SqliteStore};

/// [`KvBackend`] over the state store.
pub struct StoreKv(pub Arc<SqliteStore>);

impl KvBackend for StoreKv {
    fn get(&self, scope: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.0.kv_get(scope, key).map_err(|e| e.to_string())
    }

    fn set(
        &self,
        scope: &str,
        key: &str,
        value: &[u8],
        limits: KvLimits,
    ) -> Result<Result<(), KvFull>, String> {
        match self.0.kv_set(scope, key, value, limits.keys, limits.bytes) {
            Ok(KvWrite::Written) => Ok(Ok(())),
            Ok(KvWrite::TooManyKeys) => Ok(Err(KvFull::Keys)),
            Ok(KvWrite::TooManyBytes) => Ok(Err(KvFull::Bytes)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn delete(&self, scope: &str, key: &str) -> Result<(), String> {
        self.0.kv_delete(scope, key).map_err(|e| e.to_string())
    }
}
