//! One call into a plugin: a fresh store from the plugin's `InstancePre`, set up and
//! armed by the capabilities, run under the host's outer timeout, and its end turned
//! into a result — the failure a capability claims, else a trap, else the value.

use wasmtime::{Engine, Store, UpdateDeadline};

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
/// `inputs`, and runs `f` on it. Also returns the call's log (what the plugin printed).
pub(super) async fn call<R: CallOutput>(
    site: CallSite<'_>,
    sandbox: &Sandbox,
    inputs: &AttemptInputs,
    f: impl AsyncFnOnce(&PluginInstance, &mut Store<AttemptState>) -> wasmtime::Result<R>,
) -> (Result<R, AttemptError>, Option<GuestLog>) {
    let (wasi, parts) = match site.capabilities.prepare(sandbox, inputs) {
        Ok(made) => made,
        Err(error) => return (Err(error), None),
    };
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

    let work = async {
        let bindings = site.pre.instantiate_async(&mut store).await?;
        f(&bindings, &mut store).await
    };
    // Epochs do not count time spent waiting on host I/O: the outer timeout covers that.
    let timeout = sandbox.limits().timeout;
    let (value, error, timed_out) = match tokio::time::timeout(timeout + 2 * EPOCH_TICK, work).await
    {
        Err(_elapsed) => (None, None, true),
        Ok(Ok(value)) => (Some(value), None, false),
        Ok(Err(error)) => (None, Some(error), false),
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
