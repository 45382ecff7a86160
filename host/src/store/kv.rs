//! The plugins' key-value store (`planrt:task@0.2.0` `kv`), one key space per task type,
//! in the `kv` table. A write is one immediate transaction, committed as durably as the
//! store's [`super::Durability`] before it returns.

use rusqlite::OptionalExtension;

use super::StoreError;
use super::sqlite::{SqliteStore, write_transaction};
use crate::blocking::blocking;

/// How a `kv_set` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvWrite {
    /// Committed.
    Written,
    /// Refused: a new key over the type's key limit.
    TooManyKeys,
    /// Refused: the type's values would exceed the byte limit.
    TooManyBytes,
}

impl SqliteStore {
    /// The value of `key` for `task_type`.
    pub fn kv_get(&self, task_type: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        blocking(|| {
            let conn = self.read_conn();
            let mut get =
                conn.prepare_cached("SELECT value FROM kv WHERE task_type = ?1 AND key = ?2")?;
            Ok(get
                .query_row((task_type, key), |row| row.get(0))
                .optional()?)
        })
    }

    /// Sets `key` for `task_type` unless `task_type` would then hold more than
    /// `max_keys` keys or `max_bytes` bytes of values ([`KvWrite`]: nothing written).
    pub fn kv_set(
        &self,
        task_type: &str,
        key: &str,
        value: &[u8],
        max_keys: u64,
        max_bytes: u64,
    ) -> Result<KvWrite, StoreError> {
        blocking(|| {
            let mut conn = self.writer()?;
            let tx = write_transaction(&mut conn)?;
            // Keys and bytes of the type, not counting `key`: what it would hold with the
            // new value is that plus one key and the value's length. A scan of the type's
            // rows (at most 1024) inside the write: bounded, and kv writes are rare next to
            // attempts; keep running totals if that ever changes.
            let (others, other_bytes): (i64, i64) = tx
                .prepare_cached(
                    "SELECT count(*), coalesce(sum(length(value)), 0) FROM kv
                     WHERE task_type = ?1 AND key <> ?2",
                )?
                .query_row((task_type, key), |row| Ok((row.get(0)?, row.get(1)?)))?;
            if others as u64 + 1 > max_keys {
                return Ok(KvWrite::TooManyKeys);
            }
            if other_bytes as u64 + value.len() as u64 > max_bytes {
                return Ok(KvWrite::TooManyBytes);
            }
            tx.prepare_cached(
                "INSERT INTO kv (task_type, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (task_type, key) DO UPDATE SET value = excluded.value,
                                                            updated_at = excluded.updated_at",
            )?
            .execute((task_type, key, value, jiff::Timestamp::now().to_string()))?;
            tx.commit()?;
            Ok(KvWrite::Written)
        })
    }

    /// Removes `key` for `task_type` (nothing to do when it is not set).
    pub fn kv_delete(&self, task_type: &str, key: &str) -> Result<(), StoreError> {
        blocking(|| {
            let mut conn = self.writer()?;
            let tx = write_transaction(&mut conn)?;
            tx.prepare_cached("DELETE FROM kv WHERE task_type = ?1 AND key = ?2")?
                .execute((task_type, key))?;
            tx.commit()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Durability;

    #[test]
    fn values_are_kept_per_task_type_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state_dir::StateDir::open_or_create(dir.path()).unwrap();
        {
            let store = SqliteStore::open(&state, Durability::Full).unwrap();
            assert_eq!(store.kv_get("a", "k").unwrap(), None);
            let set = |scope, value: &[u8]| store.kv_set(scope, "k", value, 10, 100).unwrap();
            assert_eq!(set("a", b"one"), KvWrite::Written);
            assert_eq!(set("a", b"two"), KvWrite::Written);
            assert_eq!(set("b", b"other"), KvWrite::Written);
        }
        let store = SqliteStore::open(&state, Durability::Full).unwrap();
        assert_eq!(
            store.kv_get("a", "k").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(
            store.kv_get("b", "k").unwrap().as_deref(),
            Some(&b"other"[..])
        );
        store.kv_delete("a", "k").unwrap();
        store.kv_delete("a", "k").unwrap();
        assert_eq!(store.kv_get("a", "k").unwrap(), None);
        assert_eq!(
            store.kv_get("b", "k").unwrap().as_deref(),
            Some(&b"other"[..])
        );
    }

    #[test]
    fn writes_over_the_limits_are_refused_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state_dir::StateDir::open_or_create(dir.path()).unwrap();
        let store = SqliteStore::open(&state, Durability::Process).unwrap();
        // At most 2 keys and 10 bytes per task type.
        let set = |scope, key, value: &[u8]| store.kv_set(scope, key, value, 2, 10).unwrap();
        assert_eq!(set("t", "1", b"xxxx"), KvWrite::Written);
        assert_eq!(set("t", "2", b"xxxx"), KvWrite::Written);
        assert_eq!(set("t", "3", b"x"), KvWrite::TooManyKeys);
        assert_eq!(store.kv_get("t", "3").unwrap(), None);
        // Replacing a value counts its new length, not both.
        assert_eq!(set("t", "2", b"xxxxxx"), KvWrite::Written);
        assert_eq!(set("t", "2", b"xxxxxxx"), KvWrite::TooManyBytes);
        assert_eq!(
            store.kv_get("t", "2").unwrap().as_deref(),
            Some(&b"xxxxxx"[..])
        );
        // Other task types have their own limits.
        assert_eq!(set("other", "3", b"xxxxxxxxxx"), KvWrite::Written);
    }
}
