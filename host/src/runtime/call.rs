//! Calls into a plugin: a fresh store from the plugin's `InstancePre`, set up and armed by
//! the capabilities, run under the host's outer timeout, and its end turned into a result
//! — the failure a capability claims, else a trap, else the value. `describe` and `run`
//! get a fresh store per call; `validate` a [`Session`] kept across a plan's tasks.

use wasmtime::{Engine, Store, UpdateDeadline};

use super::admission::Place;
use super::capability::effects::{CallCredit, EffectGate};
use super::capability::{AttemptInputs, CallEnd, Capabilities, Sandbox};
use super::engine::EPOCH_TICK;
use super::error::AttemptError;
use super::guest_log::GuestLog;
use super::state::AttemptState;
use super::wit::latest::types::{Info, TaskError};
use super::wit::{PluginInstance, PluginPre};

/// What a call returns, as far as the limits care: how much output it is.
pub trait CallOutput {
    /// Bytes of output (`None`: not an output of `run`).
    fn output_len(&self) -> Option<usize>;
}

impl CallOutput for Info {
    fn output_len(&self) -> Option<usize> {
        None
    }
}

impl CallOutput for Result<(), String> {
    fn output_len(&self) -> Option<usize> {
        None
    }
}

impl CallOutput for Result<String, TaskError> {
    fn output_len(&self) -> Option<usize> {
        self.as_ref().ok().map(String::len)
    }
}

/// Everything a call needs from the plugin and the runtime.
pub(super) struct CallSite<'a> {
    pub engine: &'a Engine,
    pub pre: &'a PluginPre,
    pub capabilities: &'a Capabilities,
}

/// Instantiates the plugin in a fresh store made by the capabilities from `sandbox` and
/// `inputs`, in the pool place `place`, and runs `f` on it. Also returns the call's
/// log (what the plugin printed).
pub(super) async fn call<R: CallOutput>(
    site: CallSite<'_>,
    (sandbox, inputs): (&Sandbox, &AttemptInputs),
    place: Place,
    f: impl AsyncFnOnce(&PluginInstance, &mut Store<AttemptState>) -> wasmtime::Result<R>,
) -> (Result<R, AttemptError>, Option<GuestLog>) {
    // Declared before the store, so dropped after it: the pool has its slot back first.
    let _place = place;
    let mut store = match new_store(&site, sandbox, inputs) {
        Ok(store) => store,
        Err(error) => return (Err(error), None),
    };
    let pre = site.pre;
    run_on(&site, sandbox, &mut store, async move |store| {
        let bindings = pre.instantiate_async(&mut *store).await?;
        f(&bindings, store).await
    })
    .await
}

/// One instance kept for several calls of an export that is pure by contract
/// (`validate`): each call after the first is armed afresh (its deadline renewed) and
/// concluded on its own. A call consumes the session and gives it back only when it
/// succeeded: after a trap, a timeout or a limit the instance may be in any state, and the
/// per-call parts a capability does not renew (the HTTP gate's denials, say) are only
/// known clean after a clean call.
pub(super) struct Session {
    store: Store<AttemptState>,
    /// Set by the first call; a session comes back only after clean calls, so a kept
    /// session with an instance has served a call.
    bindings: Option<PluginInstance>,
    /// After the store, so dropped after it.
    place: Place,
}

impl Session {
    /// A store for the session's calls, in the pool place `place`; the plugin is
    /// instantiated by the first call. Fails giving the place back.
    pub fn open(
        site: &CallSite<'_>,
        (sandbox, inputs): (&Sandbox, &AttemptInputs),
        place: Place,
    ) -> Result<Self, (AttemptError, Place)> {
        match new_store(site, sandbox, inputs) {
            Ok(store) => Ok(Self {
                store,
                bindings: None,
                place,
            }),
            Err(error) => Err((error, place)),
        }
    }

    /// Drops the store (its instance first) and gives its place back for another.
    pub fn into_place(self) -> Place {
        let Session { store, place, .. } = self;
        drop(store);
        place
    }

    /// Runs `f` on the session's instance; the session comes back with the value, or,
    /// when the call did not end cleanly, its place without the store.
    pub async fn call<R: CallOutput>(
        mut self,
        site: &CallSite<'_>,
        sandbox: &Sandbox,
        f: impl AsyncFnOnce(&PluginInstance, &mut Store<AttemptState>) -> wasmtime::Result<R>,
    ) -> Result<(R, Session), (AttemptError, Place)> {
        if self.bindings.is_some() {
            site.capabilities.rearm(sandbox, &mut self.store);
            self.store.set_epoch_deadline(1);
        }
        let Session {
            store, bindings, ..
        } = &mut self;
        let pre = site.pre;
        let (result, _log) = run_on(site, sandbox, store, async move |store| {
            if bindings.is_none() {
                *bindings = Some(pre.instantiate_async(&mut *store).await?);
            }
            f(bindings.as_ref().expect("instantiated above"), store).await
        })
        .await;
        match result {
            Ok(value) => Ok((value, self)),
            Err(error) => Err((error, self.into_place())),
        }
    }
}

/// A store made by the capabilities from `sandbox` and `inputs`, armed, whose epoch
/// callback stops the guest when a capability says so.
fn new_store(
    site: &CallSite<'_>,
    sandbox: &Sandbox,
    inputs: &AttemptInputs,
) -> Result<Store<AttemptState>, AttemptError> {
    let (wasi, parts) = site.capabilities.prepare(sandbox, inputs)?;
    let mut store = Store::new(site.engine, AttemptState::new(wasi, parts));
    site.capabilities.arm(sandbox, &mut store);
    // At every epoch tick: stop if a capability says so (a deadline, a cancel), else
    // yield to tokio so CPU-bound guests share the workers.
    let capabilities = site.capabilities.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |context| {
        Ok(if capabilities.should_stop(context.data()) {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
    Ok(store)
}

/// `work`'s end, or `None` if it ran past `timeout` (and two epoch ticks, so the epoch
/// deadline ends a guest first) not counting the time `gate` held it (within its credit).
async fn outer_timeout<T>(
    timeout: std::time::Duration,
    gate: Option<EffectGate>,
    work: impl Future<Output = T>,
) -> Option<T> {
    let credit = CallCredit::new(gate);
    let start = tokio::time::Instant::now();
    tokio::pin!(work);
    let mut until = start + timeout + 2 * EPOCH_TICK;
    loop {
        match tokio::time::timeout_at(until, &mut work).await {
            Ok(end) => return Some(end),
            Err(_) => {
                // The gate held it meanwhile (or holds it still): its time is given back,
                // looked at again a tick later at the earliest.
                let given_back = start + timeout + 2 * EPOCH_TICK + credit.earned();
                if given_back <= until {
                    return None;
                }
                until = given_back.max(tokio::time::Instant::now() + EPOCH_TICK);
            }
        }
    }
}

/// Runs `work` on `store` under the host's outer timeout and turns its end into a
/// result: the failure a capability claims, else a trap, else the value.
async fn run_on<R: CallOutput>(
    site: &CallSite<'_>,
    sandbox: &Sandbox,
    store: &mut Store<AttemptState>,
    work: impl AsyncFnOnce(&mut Store<AttemptState>) -> wasmtime::Result<R>,
) -> (Result<R, AttemptError>, Option<GuestLog>) {
    // Epochs do not count time spent waiting on host I/O: the outer timeout covers that.
    // Neither counts time spent at the effect gate (the host's, not the call's).
    let timeout = sandbox.limits().timeout;
    let gate = store.data().effect_gate();
    let (value, error, timed_out) = match outer_timeout(timeout, gate, work(store)).await {
        None => (None, None, true),
        Some(Ok(value)) => (Some(value), None, false),
        Some(Err(error)) => (None, Some(error), false),
    };
    let end = CallEnd {
        error: error.as_ref(),
        timed_out,
        output_len: value.as_ref().and_then(CallOutput::output_len),
    };
    let state = store.data();
    let log = state.part::<GuestLog>().cloned();
    let result = match site.capabilities.conclude(sandbox, state, &end) {
        Some(claimed) => Err(claimed),
        None => match (value, error) {
            (Some(value), _) => Ok(value),
            (None, Some(error)) => Err(AttemptError::from_wasmtime(
                &error,
                log.as_ref().and_then(GuestLog::tail).as_deref(),
            )),
            // The outer timeout fired and no capability claimed it (the limits capability
            // does; a runtime built without it still ends the call as a timeout).
            (None, None) => Err(AttemptError::Timeout { limit: timeout }),
        },
    };
    (result, log)
}
