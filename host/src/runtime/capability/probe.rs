//! A test-only capability: proof that a capability is one module plus one registration
//! line. It refuses tasks of type `forbidden-by-probe`, records the task type in the
//! sandbox, and gives each call's store a part of its own.

use super::{AttemptSetup, Capability, Refusal, Sandbox, TaskRequest};
use crate::runtime::error::AttemptError;

/// What the probe decided for a task (its sandbox part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed(pub String);

/// The probe's part of a call's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCall(pub String);

/// The probe capability.
#[derive(Debug, Clone, Copy)]
pub struct Probe;

impl Capability for Probe {
    fn configure(&self, task: &TaskRequest<'_>, sandbox: &mut Sandbox) -> Result<(), Refusal> {
        if task.info.task_type == "forbidden-by-probe" {
            return Err(Refusal::NotGranted("the probe's approval".into()));
        }
        sandbox.insert(Probed(task.info.task_type.clone()));
        Ok(())
    }

    fn prepare(&self, sandbox: &Sandbox, setup: &mut AttemptSetup<'_>) -> Result<(), AttemptError> {
        let probed = sandbox.get::<Probed>().map_or("", |p| &p.0);
        setup.parts.insert(ProbeCall(format!("call of {probed}")));
        Ok(())
    }
}
