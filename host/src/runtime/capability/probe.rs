//! A test-only capability: proof that a capability is one module plus one registration
//! line, through every step of the lifecycle. It refuses tasks of type
//! `forbidden-by-probe` (plan time), records the task type in the sandbox, takes an
//! input from the caller ([`StopAtOnce`]), keeps a part in each call's store, stops a
//! call at its first epoch tick when asked, and claims that stop as `cancelled`.

use wasmtime::Trap;

use super::{AttemptSetup, CallEnd, Capability, Refusal, Sandbox, TaskRequest, rank};
use crate::plan::ErrorKind;
use crate::runtime::error::AttemptError;
use crate::runtime::state::AttemptState;

/// What the probe decided for a task (its sandbox part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed(pub String);

/// An input: stop the call as soon as possible.
#[derive(Debug, Clone, Copy)]
pub struct StopAtOnce;

/// The probe's part of a call's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCall {
    /// The task type it was configured for.
    pub task_type: String,
    /// Whether the caller asked to stop.
    pub stop: bool,
}

/// The probe capability.
#[derive(Debug, Clone, Copy)]
pub struct Probe;

impl Capability for Probe {
    fn rank(&self) -> u8 {
        rank::OPERATOR
    }

    fn configure(&self, task: &TaskRequest<'_>, sandbox: &mut Sandbox) -> Result<(), Refusal> {
        if task.info.task_type == "forbidden-by-probe" {
            return Err(Refusal::NotGranted("the probe's approval".into()));
        }
        sandbox.insert(Probed(task.info.task_type.clone()));
        Ok(())
    }

    fn prepare(&self, sandbox: &Sandbox, setup: &mut AttemptSetup<'_>) -> Result<(), AttemptError> {
        setup.parts.insert(ProbeCall {
            task_type: sandbox.get::<Probed>().map_or("", |p| &p.0).to_owned(),
            stop: setup.inputs.get::<StopAtOnce>().is_some(),
        });
        Ok(())
    }

    fn should_stop(&self, state: &AttemptState) -> bool {
        state.part::<ProbeCall>().is_some_and(|call| call.stop)
    }

    fn conclude(
        &self,
        _sandbox: &Sandbox,
        state: &AttemptState,
        end: &CallEnd<'_>,
    ) -> Option<AttemptError> {
        let interrupted = end
            .error
            .is_some_and(|e| e.downcast_ref::<Trap>() == Some(&Trap::Interrupt));
        (interrupted && self.should_stop(state)).then(|| AttemptError::Capability {
            kind: ErrorKind::Cancelled,
            message: "stopped by the probe".into(),
        })
    }
}
