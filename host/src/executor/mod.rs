//! The executor: checks a plan against plugins and grants, runs its attempts recording
//! every transition in the store before reporting it, and applies operator actions.

mod batch;
pub mod execute;
mod id_locks;
pub mod kv;
pub mod plan_api;
pub mod plugin_watch;
pub mod prepare;
pub mod request;
pub mod resume;
pub mod secrets;
pub mod service;
pub mod slots;
pub mod supervisor;
pub mod task_api;

pub use execute::{
    ExecuteError, Execution, Observer, RunEnd, StopReason, cancel, execute, interrupt_running,
};
pub use plan_api::PlanApi;
pub use plugin_watch::{PluginWatch, WatchError};
pub use prepare::{
    PinChange, PluginChange, PrepareError, PreparedPlan, PreparedTask, prepare, resolve_spec,
};
pub use request::RequestError;
pub use resume::{ResumeError, ResumeFrom, reopen};
pub use service::{
    Admitted, ErrorClass, Finished, PluginChanges, Reader, Reloaded, Reopen, ReopenRecord, Service,
    ServiceConfig, ServiceError,
};
pub use slots::{Slot, Slots};
pub use supervisor::{RunOutcome, SuperviseError, Supervisor};
pub use task_api::{Deleted, Submission, Submitted, TaskApi, TaskView};
