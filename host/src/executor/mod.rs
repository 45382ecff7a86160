//! The executor: checks a plan against plugins and grants, runs its attempts recording
//! every transition in the store before reporting it, and applies operator actions.

pub mod execute;
pub mod prepare;
pub mod resume;
pub mod secrets;
pub mod service;

pub use execute::{ExecuteError, Observer, RunEnd, execute, interrupt_running};
pub use prepare::{
    PinChange, PluginChange, PrepareError, PreparedPlan, PreparedTask, prepare, resolve_spec,
};
pub use resume::{ResumeError, ResumeFrom, reopen};
pub use service::{ErrorClass, Finished, Reader, Service, ServiceConfig, ServiceError};
