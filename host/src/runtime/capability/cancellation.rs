//! Cooperative cancellation (`planrt:task@0.2.0`, interface `cancellation`). The caller
//! hands a [`CancelSignal`] and raises it to stop the call — an operator's cancel, a
//! shutdown. From then on the plugin's `cancelled()` answers true, and a call that has
//! asked `cancelled()` before has [`GRACE`] from the signal to return before its guest
//! code is interrupted; one that never asked (every 0.1.0 plugin: it cannot) is
//! interrupted at the next epoch tick. Unless the plugin returned success, the call ends
//! with the signal's kind and reason (an operator's cancel is `cancelled`, a shutdown
//! `interrupted`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};

use super::{AttemptSetup, CallEnd, Capability, Sandbox, rank};
use crate::plan::ErrorKind;
use crate::runtime::error::AttemptError;
use crate::runtime::state::AttemptState;
use crate::runtime::wit::latest::cancellation;
use crate::runtime::wit::v0_2_0;

/// How long a call that has asked `cancelled()` has, from the signal, to return.
pub const GRACE: Duration = Duration::from_secs(3);

/// Why and since when a signal is raised, and how long the call has from then on.
#[derive(Debug)]
struct Raised {
    at: Instant,
    kind: ErrorKind,
    reason: String,
    /// [`GRACE`] if the call had asked `cancelled()` before the signal, else nothing:
    /// decided once, so the executor and the epoch callback agree.
    patience: Duration,
}

#[derive(Debug, Default)]
struct SignalState {
    raised: OnceLock<Raised>,
    /// Whether the call asked `cancelled()`: only then does it get the grace.
    asked: AtomicBool,
}

/// Asks a running call to stop (an input from the caller): raised once, read by the
/// call's store at every `cancelled()` and epoch tick.
#[derive(Debug, Clone, Default)]
pub struct CancelSignal(Arc<SignalState>);

impl CancelSignal {
    /// A signal not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the signal: the call ends as `kind` with `reason` unless it succeeds. Only
    /// the first raise counts.
    pub fn raise(&self, kind: ErrorKind, reason: impl Into<String>) {
        let patience = match self.0.asked.load(Ordering::SeqCst) {
            true => GRACE,
            false => Duration::ZERO,
        };
        let _ = self.0.raised.set(Raised {
            at: Instant::now(),
            kind,
            reason: reason.into(),
            patience,
        });
    }

    /// Whether the signal is raised.
    pub fn is_raised(&self) -> bool {
        self.0.raised.get().is_some()
    }

    /// How long the call may run on after the signal: [`GRACE`] if it had asked
    /// `cancelled()` before the signal, else nothing (nothing either while not raised).
    pub fn patience(&self) -> Duration {
        self.raised()
            .map_or(Duration::ZERO, |raised| raised.patience)
    }

    fn raised(&self) -> Option<&Raised> {
        self.0.raised.get()
    }
}

/// The cancellation capability.
#[derive(Debug, Clone, Copy)]
pub struct Cancellation;

impl Capability for Cancellation {
    fn rank(&self) -> u8 {
        rank::OPERATOR
    }

    fn init(&self, linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
        // 0.3.0 kept 0.2.0's interface unchanged: one implementation serves both.
        v0_2_0::planrt::task::cancellation::add_to_linker::<_, HasSelf<AttemptState>>(
            linker,
            |state| state,
        )?;
        cancellation::add_to_linker::<_, HasSelf<AttemptState>>(linker, |state| state)
    }

    fn prepare(
        &self,
        _sandbox: &Sandbox,
        setup: &mut AttemptSetup<'_>,
    ) -> Result<(), AttemptError> {
        setup.pass_on::<CancelSignal>();
        Ok(())
    }

    fn should_stop(&self, state: &AttemptState) -> bool {
        state.part::<CancelSignal>().is_some_and(|signal| {
            signal
                .raised()
                .is_some_and(|raised| raised.at.elapsed() >= raised.patience)
        })
    }

    fn conclude(
        &self,
        _sandbox: &Sandbox,
        state: &AttemptState,
        end: &CallEnd<'_>,
    ) -> Option<AttemptError> {
        let raised = state.part::<CancelSignal>()?.raised()?;
        // A plugin that finished its work in the grace period succeeded.
        let succeeded = end.error.is_none() && !end.timed_out && end.output_len.is_some();
        (!succeeded).then(|| AttemptError::Capability {
            kind: raised.kind,
            message: raised.reason.clone(),
        })
    }
}

impl cancellation::Host for AttemptState {
    fn cancelled(&mut self) -> bool {
        self.part::<CancelSignal>().is_some_and(|signal| {
            signal.0.asked.store(true, Ordering::SeqCst);
            signal.is_raised()
        })
    }
}

impl v0_2_0::planrt::task::cancellation::Host for AttemptState {
    fn cancelled(&mut self) -> bool {
        cancellation::Host::cancelled(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_raise_counts() {
        let signal = CancelSignal::new();
        assert!(!signal.is_raised());
        signal.raise(ErrorKind::Cancelled, "by an operator");
        signal.raise(ErrorKind::Interrupted, "shutdown");
        let raised = signal.raised().unwrap();
        assert_eq!(
            (raised.kind, raised.reason.as_str()),
            (ErrorKind::Cancelled, "by an operator")
        );
    }

    #[test]
    fn only_a_call_that_asked_before_the_signal_gets_the_grace() {
        let asked = CancelSignal::new();
        asked.0.asked.store(true, Ordering::SeqCst);
        assert_eq!(asked.patience(), Duration::ZERO, "not raised yet");
        asked.raise(ErrorKind::Cancelled, "stop");
        assert_eq!(asked.patience(), GRACE);

        let late = CancelSignal::new();
        late.raise(ErrorKind::Cancelled, "stop");
        // Asking after the signal buys no time: the executor already decided how long
        // it waits.
        late.0.asked.store(true, Ordering::SeqCst);
        assert_eq!(late.patience(), Duration::ZERO);
    }
}
