//! Per-ID locks for the APIs of a long-lived process: one request at a time acts on an
//! ID. Entries are made on demand and dropped with the last request holding or waiting
//! for them — also when a waiting request is dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// A lock per ID (task or plan).
pub(super) struct IdLocks<K> {
    entries: Mutex<HashMap<K, Entry>>,
}

struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Requests holding or waiting for the lock.
    users: usize,
}

impl<K> Default for IdLocks<K> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

/// Holds (or, while being awaited, waits for) one ID's lock.
pub(super) struct IdGuard<'a, K: Hash + Eq> {
    locks: &'a IdLocks<K>,
    id: K,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<K: Hash + Eq + Copy> IdLocks<K> {
    /// Waits for the ID's lock.
    pub(super) async fn lock(&self, id: K) -> IdGuard<'_, K> {
        let lock = {
            let mut entries = self.entries();
            let entry = entries.entry(id).or_insert_with(|| Entry {
                lock: Arc::default(),
                users: 0,
            });
            entry.users += 1;
            entry.lock.clone()
        };
        // Counted as a user from here: if this future is dropped while it waits, the
        // guard's drop still gives the count back.
        let mut guard = IdGuard {
            locks: self,
            id,
            held: None,
        };
        guard.held = Some(lock.lock_owned().await);
        guard
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Hash + Eq> Drop for IdGuard<'_, K> {
    fn drop(&mut self) {
        let mut entries = self.locks.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(&self.id) {
            entry.users -= 1;
            if entry.users == 0 {
                entries.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        match future.poll(&mut context) {
            std::task::Poll::Ready(value) => Some(value),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn one_holder_per_id_and_the_entry_goes_with_the_last() {
        let locks = IdLocks::<u32>::default();
        let first = locks.lock(1).await;
        let other_id = locks.lock(2).await;
        let mut second = Box::pin(locks.lock(1));
        assert!(poll_once(second.as_mut()).is_none(), "ID 1 is held");
        drop(first);
        let second = second.await;
        drop(second);
        drop(other_id);
        assert!(locks.entries().is_empty(), "no entry left behind");
    }

    #[tokio::test]
    async fn a_waiter_dropped_after_the_holder_left_leaves_no_entry() {
        let locks = IdLocks::<u32>::default();
        let first = locks.lock(1).await;
        let mut waiter = Box::pin(locks.lock(1));
        assert!(poll_once(waiter.as_mut()).is_none());
        drop(first);
        drop(waiter);
        assert!(locks.entries().is_empty(), "no entry left behind");
        let _again = locks.lock(1).await;
        assert_eq!(locks.entries()[&1].users, 1);
    }
}
