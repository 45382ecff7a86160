//! The executor: checks a plan against plugins and grants, runs its attempts recording
//! every transition in the store before reporting it, and applies operator actions.

pub mod execute;
pub mod prepare;
pub mod resume;
pub mod secrets;
pub mod service;
pub mod slots;
pub mod supervisor;
pub mod task_api;

pub use execute::{
    ExecuteError, Execution, Observer, RunEnd, StopReason, cancel, execute, interrupt_running,
};
pub use prepare::{
    PinChange, PluginChange, PrepareError, PreparedPlan, PreparedTask, prepare, resolve_spec,
};
pub use resume::{ResumeError, ResumeFrom, reopen};
pub use service::{
    Admitted, ErrorClass, Finished, Reader, Reopen, Service, ServiceConfig, ServiceError,
};
pub use slots::{Slot, Slots};
pub use supervisor::{SuperviseError, Supervisor};
pub use task_api::{Deleted, Submission, Submitted, TaskApi, TaskApiError, TaskView};
