//! The plan domain: specs, identity, the task state machine and retry arithmetic.
//!
//! Pure: no I/O and no clock reads. Callers pass the time and random samples in. The
//! `planrt` host re-exports it as `planrt::plan`.

pub mod document;
pub mod error_kind;
pub mod graph;
pub mod http_allow;
pub mod ids;
pub mod policy;
pub mod redact;
pub mod run;
pub mod saved;
pub mod spec;
pub mod task;
pub mod units;

pub use document::{FailedTaskDetail, PlanDocument, TaskDocument};
pub use error_kind::{Disposition, ErrorKind};
pub use graph::{Graph, GraphError, TaskName};
pub use http_allow::HttpAllow;
pub use ids::{PlanId, TaskId, TaskType};
pub use policy::{Backoff, LimitOverrides, PlanDefaults, RetryPolicy};
pub use redact::Redactor;
pub use run::{Phase, PlanRun};
pub use saved::{PluginPin, Resolution, SAVED_PLAN_FORMAT_VERSION, SavedPlan, SavedPlanError};
pub use spec::{DirGrant, DirMode, Grants, Location, PlanSpec, SpecError, TaskSettings, TaskSpec};
pub use task::{
    Attempt, AttemptOutcome, Failure, Progress, ProgressUnit, RestoreError, Task, TaskEvent,
    TaskRecord, TaskStatus, Transition, TransitionError,
};
