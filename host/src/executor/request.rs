//! What the task and plan APIs (`planrt serve`) refuse beyond what the service does.

use crate::plan::{Phase, PlanId, TaskId, TaskType};

use super::service::ServiceError;

/// A request of the task or plan API that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request is malformed (the field is named).
    #[error("{0}")]
    BadRequest(String),
    /// No task with this ID (or it was removed).
    #[error("no task {0}")]
    UnknownTask(TaskId),
    /// The ID belongs to a task of another type.
    #[error("task {id} exists with type `{existing}`, not `{requested}`")]
    TypeMismatch {
        /// The task.
        id: TaskId,
        /// Its type.
        existing: TaskType,
        /// The type submitted.
        requested: TaskType,
    },
    /// The task waits behind a failed task of its plan: it cannot run on its own.
    #[error(
        "task {id} waits for task {failed} of plan {plan}, which failed: resubmit that task or resume the plan"
    )]
    BlockedByFailure {
        /// The task.
        id: TaskId,
        /// Its plan.
        plan: PlanId,
        /// The failed task's index.
        failed: usize,
    },
    /// The plan runs already (resume it once it stops).
    #[error("plan {0} is running")]
    PlanRunning(PlanId),
    /// Nothing runs or waits to run in the plan.
    #[error("plan {plan} is {phase}: there is nothing to cancel")]
    NothingToCancel {
        /// The plan.
        plan: PlanId,
        /// Its phase.
        phase: Phase,
    },
    /// The service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The run could not start.
    #[error(transparent)]
    Supervise(#[from] super::supervisor::SuperviseError),
}
