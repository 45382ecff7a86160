//! Durable plan state. The executor writes every transition through [`StateStore`]
//! *before* it reports it; the SQLite store implements the same trait.

pub mod memory;

use crate::plan::{PlanId, PlanRun, SavedPlan, Task};

pub use memory::MemoryStore;

/// A store that cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A plan with this ID is already recorded.
    #[error("plan {0} already exists in the state store")]
    PlanExists(PlanId),
    /// No plan with this ID.
    #[error("no plan {0} in the state store")]
    UnknownPlan(PlanId),
    /// A task index the plan does not have.
    #[error("plan {plan} has no task {index}")]
    UnknownTask {
        /// The plan.
        plan: PlanId,
        /// The index.
        index: usize,
    },
    /// The backing storage failed.
    #[error("state store: {0}")]
    Backend(String),
}

/// Where plans, tasks and attempts are kept.
pub trait StateStore: Send + Sync {
    /// Records a new plan as resolved (grants, plugin pins, all tasks pending).
    fn create_plan(&self, plan: &SavedPlan) -> Result<(), StoreError>;

    /// Records a task's state after a transition: its fields and its attempts (attempts
    /// are append-only: earlier ones never change once ended).
    fn record_task(&self, plan: PlanId, task: &Task) -> Result<(), StoreError>;

    /// The plan with its tasks as last recorded, with what it was resolved with.
    fn load_plan(&self, plan: PlanId) -> Result<Option<(SavedPlan, PlanRun)>, StoreError>;
}
