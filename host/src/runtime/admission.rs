//! How many stores may live at once. With the pooling allocator every store's instance
//! takes a slot of the engine's fixed pool; a store made when the pool is full would fail
//! to instantiate. Each store is admitted first, and holds its admission until it is
//! dropped, so a call beyond the pool waits for a slot instead of failing.
//!
//! A holder never waits for a second admission while it holds one (a plan's `validate`
//! calls keep at most one instance, see `executor::prepare`), so admissions cannot
//! deadlock.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Admits stores into the engine's instance pool. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct Admission(Option<Arc<Semaphore>>);

/// One store's place in the pool, given back when dropped. Keep it until the store is
/// dropped: declared before the store (a local) or after it (a field).
#[derive(Debug)]
pub struct Admitted(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Admission {
    /// No bound: the on-demand allocator maps each instance when it is made.
    pub fn unbounded() -> Self {
        Self(None)
    }

    /// At most `slots` stores at once.
    pub fn bounded(slots: usize) -> Self {
        Self(Some(Arc::new(Semaphore::new(slots))))
    }

    /// Waits for a place for one store.
    pub async fn admit(&self) -> Admitted {
        match &self.0 {
            // The semaphore is never closed.
            Some(pool) => Admitted(pool.clone().acquire_owned().await.ok()),
            None => Admitted(None),
        }
    }

    /// Places free now (`None`: unbounded).
    pub fn available(&self) -> Option<usize> {
        self.0.as_ref().map(|pool| pool.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_full_pool_makes_the_next_store_wait_until_one_is_dropped() {
        let admission = Admission::bounded(2);
        let first = admission.admit().await;
        let _second = admission.admit().await;
        assert_eq!(admission.available(), Some(0));
        let waiting = tokio::time::timeout(Duration::from_millis(50), admission.admit()).await;
        assert!(waiting.is_err(), "a third store waits while two live");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), admission.admit()).await;
        assert!(third.is_ok(), "a dropped store's place goes to the next");
        assert_eq!(admission.available(), Some(0));
    }

    #[tokio::test]
    async fn unbounded_admission_never_waits() {
        let admission = Admission::unbounded();
        let held: Vec<Admitted> =
            futures_util::future::join_all((0..1000).map(|_| admission.admit())).await;
        assert_eq!(held.len(), 1000);
        assert_eq!(admission.available(), None);
    }
}
