//! Per-ID locks for the APIs of a long-lived process.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// A lock per ID (task or plan), made on demand and dropped when no one holds or waits
/// for it: one submission, delete, resume or cancel at a time per ID.
pub(super) struct IdLocks<K> {
    locks: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for IdLocks<K> {
    fn default() -> Self {
        Self {
            locks: Mutex::new(HashMap::new()),
        }
    }
}

/// Holds one ID's lock.
pub(super) struct IdGuard<'a, K: Hash + Eq> {
    locks: &'a IdLocks<K>,
    id: K,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<K: Hash + Eq + Copy> IdLocks<K> {
    /// Waits for the ID's lock.
    pub(super) async fn lock(&self, id: K) -> IdGuard<'_, K> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default()
            .clone();
        IdGuard {
            locks: self,
            id,
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl<K: Hash + Eq> Drop for IdGuard<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map holds it now: no one holds or waits for this ID.
        if locks
            .get(&self.id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_id_and_the_entry_goes_with_the_last() {
        let locks = IdLocks::<u32>::default();
        let first = locks.lock(1).await;
        let _other_id = locks.lock(2).await;
        let mut second = Box::pin(locks.lock(1));
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        assert!(
            second.as_mut().poll(&mut context).is_pending(),
            "ID 1 is held"
        );
        drop(first);
        let second = second.await;
        drop(second);
        drop(_other_id);
        assert!(
            locks.locks.lock().unwrap().is_empty(),
            "no entry left behind"
        );
    }
}
