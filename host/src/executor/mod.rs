//! The executor: checks a plan against plugins and grants, then runs its attempts,
//! recording every transition in the store before reporting it.

pub mod execute;
pub mod prepare;

pub use execute::{ExecuteError, Observer, execute};
pub use prepare::{
    DEFAULT_MEMORY_LIMIT, DEFAULT_TIMEOUT, PrepareError, PreparedPlan, TaskSandbox, prepare,
    resolve_spec,
};
