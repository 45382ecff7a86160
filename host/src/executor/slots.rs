//! How many attempts may run at once across every plan of this process (`serve
//! --max-concurrent`), and how many are running or waiting for a turn — the figures
//! `/v0/metrics` reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Turns to run an attempt. Cheap to clone: clones share the limit and the gauges.
#[derive(Debug, Clone)]
pub struct Slots(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    limit: Option<Arc<Semaphore>>,
    waiting: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
}

impl Slots {
    /// No limit (one plan at a time, as the CLI runs).
    pub fn unlimited() -> Self {
        Self::new(None)
    }

    /// At most `max` attempts at once (at least one).
    pub fn limited(max: usize) -> Self {
        Self::new(Some(Arc::new(Semaphore::new(max.max(1)))))
    }

    fn new(limit: Option<Arc<Semaphore>>) -> Self {
        Self(Arc::new(Shared {
            limit,
            waiting: Arc::default(),
            running: Arc::default(),
        }))
    }

    /// Waits for a turn, then for `then` (what else an attempt needs before it starts:
    /// its place in the instance pool). The attempt counts as waiting until both are
    /// there, and as running from then on. The turn ends when the returned slot is
    /// dropped (it may move to another task). Dropping this future while it waits (a
    /// stop) gives up its place.
    pub async fn acquire_then<T>(&self, then: impl Future<Output = T>) -> (Slot, T) {
        let waiting = Count::up(&self.0.waiting);
        let permit = match &self.0.limit {
            // The semaphore is never closed, so `acquire` only ever returns a permit.
            Some(semaphore) => semaphore.clone().acquire_owned().await.ok(),
            None => None,
        };
        let value = then.await;
        drop(waiting);
        let slot = Slot {
            _permit: permit,
            _running: Count::up(&self.0.running),
        };
        (slot, value)
    }

    /// A turn and what `then` gives if both are free now, without waiting (and without
    /// passing anyone who waits: a freed turn goes to a waiter first).
    pub fn try_acquire_then<T>(&self, then: impl FnOnce() -> Option<T>) -> Option<(Slot, T)> {
        let permit = match &self.0.limit {
            Some(semaphore) => Some(semaphore.clone().try_acquire_owned().ok()?),
            None => None,
        };
        let value = then()?;
        let slot = Slot {
            _permit: permit,
            _running: Count::up(&self.0.running),
        };
        Some((slot, value))
    }

    /// Attempts running now.
    pub fn running(&self) -> usize {
        self.0.running.load(Ordering::Relaxed)
    }

    /// Attempts ready to start but waiting for a turn (or, with a turn, for what else
    /// they need: [`Slots::acquire_then`]).
    pub fn waiting(&self) -> usize {
        self.0.waiting.load(Ordering::Relaxed)
    }
}

/// One attempt's turn.
#[derive(Debug)]
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    _running: Count,
}

/// One in a gauge, for as long as it lives.
#[derive(Debug)]
struct Count(Arc<AtomicUsize>);

impl Count {
    fn up(gauge: &Arc<AtomicUsize>) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge.clone())
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_limit_holds_the_extra_attempts_back_and_counts_them() {
        let slots = Slots::limited(1);
        let first = acquire(&slots).await;
        assert_eq!((slots.running(), slots.waiting()), (1, 0));
        let mut second = Box::pin(acquire(&slots));
        assert!(
            poll_once(second.as_mut()).is_none(),
            "the second turn waits"
        );
        assert_eq!((slots.running(), slots.waiting()), (1, 1));
        drop(first);
        let second = second.await;
        assert_eq!((slots.running(), slots.waiting()), (1, 0));
        drop(second);
        assert_eq!((slots.running(), slots.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn a_waiter_dropped_gives_up_its_place() {
        let slots = Slots::limited(1);
        let first = acquire(&slots).await;
        let mut waiter = Box::pin(acquire(&slots));
        assert!(poll_once(waiter.as_mut()).is_none());
        drop(waiter);
        assert_eq!(slots.waiting(), 0);
        drop(first);
        let _again = acquire(&slots).await;
        assert_eq!(slots.running(), 1);
    }

    async fn acquire(slots: &Slots) -> Slot {
        slots.acquire_then(async {}).await.0
    }

    fn try_acquire(slots: &Slots) -> Option<Slot> {
        slots.try_acquire_then(|| Some(())).map(|(slot, ())| slot)
    }

    #[tokio::test]
    async fn a_free_turn_is_taken_at_once_and_a_waiter_is_never_passed() {
        let slots = Slots::limited(1);
        let first = try_acquire(&slots).expect("a free turn");
        assert!(try_acquire(&slots).is_none(), "the only turn is taken");
        let mut waiter = Box::pin(acquire(&slots));
        assert!(poll_once(waiter.as_mut()).is_none());
        drop(first);
        // The freed turn went to the waiter, not to whoever asks next.
        assert!(try_acquire(&slots).is_none());
        let waited = poll_once(waiter.as_mut()).expect("the waiter has the turn");
        assert_eq!((slots.running(), slots.waiting()), (1, 0));
        drop(waited);
        assert!(try_acquire(&slots).is_some());
        assert!(try_acquire(&Slots::unlimited()).is_some());
    }

    #[tokio::test]
    async fn a_turn_waiting_for_what_else_it_needs_counts_as_waiting_not_running() {
        let slots = Slots::unlimited();
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let mut turn = Box::pin(slots.acquire_then(wait));
        assert!(poll_once(turn.as_mut()).is_none());
        assert_eq!((slots.running(), slots.waiting()), (0, 1));
        // Nothing else free now: no turn is taken, and none is counted.
        assert!(slots.try_acquire_then(|| None::<()>).is_none());
        assert_eq!((slots.running(), slots.waiting()), (0, 1));
        release.send(()).unwrap();
        let (slot, _) = poll_once(turn.as_mut()).expect("the turn is complete");
        assert_eq!((slots.running(), slots.waiting()), (1, 0));
        drop(slot);
        assert_eq!((slots.running(), slots.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn unlimited_slots_never_wait() {
        let slots = Slots::unlimited();
        let turns: Vec<_> = take_turns(&slots, 64).await;
        assert_eq!(slots.running(), 64);
        drop(turns);
        assert_eq!(slots.running(), 0);
    }

    async fn take_turns(slots: &Slots, n: usize) -> Vec<Slot> {
        let mut turns = Vec::new();
        for _ in 0..n {
            turns.push(acquire(slots).await);
        }
        turns
    }

    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        match future.poll(&mut context) {
            std::task::Poll::Ready(value) => Some(value),
            std::task::Poll::Pending => None,
        }
    }
}
