//! How many stores may live at once. With the pooling allocator every store's instance
//! takes a slot of the engine's fixed pool; a store made when the pool is full would fail
//! to instantiate. Each store is admitted first and holds its place until it is dropped,
//! so a call beyond the pool waits for a place instead of failing.
//!
//! Attempts are admitted as part of their turn (`executor::execute`: a task waiting for a
//! place is still `Pending`), and never take the last [`RESERVED_FOR_CHECKS`] places:
//! `describe` and `validate` find one even while attempts fill the rest. Nothing waits for
//! a place while it holds another (a plan's `validate` calls give up their kept
//! instances before they wait, see `executor::prepare`), so admissions cannot deadlock.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Places of the pool only `describe` and `validate` calls take.
pub const RESERVED_FOR_CHECKS: usize = 16;

/// Admits stores into the engine's instance pool. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct Admission(Option<Arc<Places>>);

#[derive(Debug)]
struct Places {
    /// Every place of the pool.
    any: Arc<Semaphore>,
    /// The places attempts may take: all but the reserved ones.
    attempts: Arc<Semaphore>,
}

/// One store's place in the pool, given back when dropped. Keep it until the store is
/// dropped: declared before the store (a local) or after it (a field).
#[derive(Debug)]
pub struct Place {
    _place: Option<OwnedSemaphorePermit>,
    _attempt: Option<OwnedSemaphorePermit>,
}

impl Admission {
    /// No bound: the on-demand allocator maps each instance when it is made.
    pub fn unbounded() -> Self {
        Self(None)
    }

    /// At most `places` stores at once, attempts in all but [`RESERVED_FOR_CHECKS`] of
    /// them (at least one).
    pub fn bounded(places: usize) -> Self {
        let places = places.max(1);
        let attempts = places.saturating_sub(RESERVED_FOR_CHECKS).max(1);
        Self(Some(Arc::new(Places {
            any: Arc::new(Semaphore::new(places)),
            attempts: Arc::new(Semaphore::new(attempts)),
        })))
    }

    /// Waits for a place for a `describe` or `validate` call.
    pub async fn admit(&self) -> Place {
        let place = match &self.0 {
            // The semaphores are never closed.
            Some(places) => places.any.clone().acquire_owned().await.ok(),
            None => None,
        };
        Place {
            _place: place,
            _attempt: None,
        }
    }

    /// A place for a `describe` or `validate` call if one is free now.
    pub fn try_admit(&self) -> Option<Place> {
        let place = match &self.0 {
            Some(places) => Some(places.any.clone().try_acquire_owned().ok()?),
            None => None,
        };
        Some(Place {
            _place: place,
            _attempt: None,
        })
    }

    /// Waits for a place for an attempt (one not reserved for checks).
    pub async fn admit_attempt(&self) -> Place {
        match &self.0 {
            Some(places) => {
                // Holding an attempt's share while waiting for a place cannot deadlock:
                // no holder of a place waits for a share or a place, and each one gives
                // its place back on its own (an attempt when it ends, a check when its
                // plan is checked).
                let attempt = places.attempts.clone().acquire_owned().await.ok();
                let place = places.any.clone().acquire_owned().await.ok();
                Place {
                    _place: place,
                    _attempt: attempt,
                }
            }
            None => Place {
                _place: None,
                _attempt: None,
            },
        }
    }

    /// A place for an attempt if one is free now.
    pub fn try_admit_attempt(&self) -> Option<Place> {
        match &self.0 {
            Some(places) => {
                let attempt = places.attempts.clone().try_acquire_owned().ok()?;
                let place = places.any.clone().try_acquire_owned().ok()?;
                Some(Place {
                    _place: Some(place),
                    _attempt: Some(attempt),
                })
            }
            None => Some(Place {
                _place: None,
                _attempt: None,
            }),
        }
    }

    /// Places free now (`None`: unbounded).
    #[cfg(test)]
    pub fn available(&self) -> Option<usize> {
        self.0.as_ref().map(|places| places.any.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn waits<F: Future>(future: F) -> bool {
        tokio::time::timeout(Duration::from_millis(50), future)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_full_pool_makes_the_next_store_wait_until_one_is_dropped() {
        let admission = Admission::bounded(2);
        let first = admission.admit().await;
        let _second = admission.admit().await;
        assert_eq!(admission.available(), Some(0));
        assert!(waits(admission.admit()).await, "a third store waits");
        assert!(admission.try_admit().is_none());
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), admission.admit()).await;
        assert!(third.is_ok(), "a dropped store's place goes to the next");
        assert_eq!(admission.available(), Some(0));
    }

    #[tokio::test]
    async fn attempts_leave_the_reserved_places_to_checks() {
        let admission = Admission::bounded(RESERVED_FOR_CHECKS + 2);
        let attempts = [
            admission.admit_attempt().await,
            admission
                .try_admit_attempt()
                .expect("a second attempt's place"),
        ];
        assert!(waits(admission.admit_attempt()).await, "attempts are full");
        assert!(admission.try_admit_attempt().is_none());
        // Checks still get every reserved place.
        let mut checks = Vec::new();
        for _ in 0..RESERVED_FOR_CHECKS {
            checks.push(admission.try_admit().expect("a reserved place"));
        }
        assert_eq!(admission.available(), Some(0));
        drop(attempts);
        // A place freed by an attempt goes to the next attempt.
        assert!(admission.try_admit_attempt().is_some());
    }

    #[tokio::test]
    async fn a_tiny_pool_still_admits_one_attempt() {
        let admission = Admission::bounded(1);
        let attempt = admission.try_admit_attempt().expect("one attempt");
        assert!(admission.try_admit().is_none());
        drop(attempt);
        assert!(admission.try_admit().is_some());
    }

    #[tokio::test]
    async fn unbounded_admission_never_waits() {
        let admission = Admission::unbounded();
        let held: Vec<Place> =
            futures_util::future::join_all((0..1000).map(|_| admission.admit_attempt())).await;
        assert_eq!(held.len(), 1000);
        assert!(admission.try_admit().is_some());
        assert_eq!(admission.available(), None);
    }
}
