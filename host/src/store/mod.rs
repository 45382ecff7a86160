//! Durable plan state. The executor writes every transition through [`StateStore`]
//! *before* it reports it. [`SqliteStore`] keeps it in the state dir; [`PlanClaim`]
//! makes sure one process at a time runs a plan.

pub mod claim;
mod kv;
mod rows;
pub mod schema;
pub mod sqlite;
mod tasks;
pub mod writer;

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::plan::{Phase, PlanId, PlanRun, PluginPin, Resolution, Task, TaskType};

pub use claim::{ClaimError, PlanClaim};
pub use kv::KvWrite;
pub use sqlite::{BUSY_TIMEOUT, SqliteStore};
pub use tasks::{TaskCursor, TaskRef};
pub use writer::{Commit, Entry};

/// How much a committed transition survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// An fsync per transition: survives power loss.
    #[default]
    Full,
    /// Survives the process dying (kill -9, OOM kill), not power loss; far cheaper.
    Process,
}

/// Who created a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum Origin {
    /// `planrt run`: an operator resumes it.
    Cli,
    /// The HTTP API (`planrt serve`): the server runs it, and runs it again after a
    /// restart.
    Api,
}

/// A store that cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A plan with this ID is already recorded.
    #[error("plan {0} already exists in the state store (continue it with `planrt resume {0}`)")]
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
    /// The state directory cannot hold the store.
    #[error(transparent)]
    StateDir(#[from] crate::state_dir::StateDirError),
    /// A queued entry's failure, as every holder of its [`Commit`] sees it.
    #[error(transparent)]
    Shared(std::sync::Arc<StoreError>),
}

impl StoreError {
    /// The error itself, as its first holder saw it (through [`StoreError::Shared`]).
    pub fn root(&self) -> &StoreError {
        match self {
            StoreError::Shared(error) => error.root(),
            error => error,
        }
    }
}

/// One line of `planrt status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// Plan ID.
    pub id: PlanId,
    /// Optional label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Its phase.
    pub phase: Phase,
    /// Number of tasks.
    pub tasks: usize,
    /// Number of complete tasks.
    pub complete: usize,
    /// The failed task, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_task_index: Option<usize>,
}

/// Where plans, tasks and attempts are kept.
pub trait StateStore: Send + Sync {
    /// Records a new plan: what it was resolved with, who created it, and its tasks (all
    /// pending).
    fn create_plan(
        &self,
        resolution: &Resolution,
        plan: &PlanRun,
        origin: Origin,
    ) -> Result<(), StoreError>;

    /// Records a task's state after a transition, in one transaction: its fields and its
    /// newest attempt (attempts are append-only: an ended one never changes).
    fn record_task(&self, plan: PlanId, task: &Task) -> Result<(), StoreError> {
        self.record_tasks(plan, &[task])
    }

    /// Records several tasks' states in one transaction — all of them, or none: after an
    /// operator action or a stop, or an attempt's end with the starts it allows (one
    /// transition per task). Returns once they are stored, after what was queued before
    /// ([`StateStore::submit`]).
    fn record_tasks(&self, plan: PlanId, tasks: &[&Task]) -> Result<(), StoreError> {
        let entry = Entry {
            plan,
            tasks: tasks
                .iter()
                .map(|task| task.with_newest_attempt_only())
                .collect(),
            after: None,
            report: None,
        };
        self.submit(entry).wait()
    }

    /// Queues `entry` to be stored after what was queued before, all of it or none, and
    /// returns at once: the [`Commit`] says when it is stored (its report has run then),
    /// or why it never will be. An entry whose predecessor (`entry.after`) was not stored
    /// is not stored either.
    fn submit(&self, entry: Entry) -> Commit;

    /// The plan as last recorded: what it was resolved with, and its tasks.
    fn load_plan(&self, plan: PlanId) -> Result<Option<(Resolution, PlanRun)>, StoreError>;

    /// The most recent plans, newest first.
    fn list_plans(&self, limit: usize) -> Result<Vec<PlanSummary>, StoreError>;

    /// Replaces the plugin pins of a plan (an operator allowed a plugin change).
    fn repin_plugins(
        &self,
        plan: PlanId,
        pins: &BTreeMap<TaskType, PluginPin>,
    ) -> Result<(), StoreError>;
}
