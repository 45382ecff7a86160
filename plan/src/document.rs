//! The Plan document (docs/DESIGN.md §4): a plan and its tasks as `plan`, `run` and
//! `status` print them (and as the HTTP API will serve them). The saved-plan file format
//! is [`super::saved`]; the store's rows are the store's own.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::graph::TaskName;
use super::ids::{PlanId, TaskId, TaskType};
use super::policy::{Backoff, LimitOverrides};
use super::run::{Phase, PlanRun};
use super::task::{Attempt, Task, TaskStatus};

/// A plan as `plan`, `run` and `status` print it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDocument {
    /// Plan ID.
    pub id: PlanId,
    /// Optional label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Derived phase.
    pub phase: Phase,
    /// Tasks in plan order.
    pub tasks: Vec<TaskDocument>,
    /// Index of the failed task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_task_index: Option<usize>,
    /// Summary of the failed task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_task_detail: Option<FailedTaskDetail>,
}

/// A task inside a [`PlanDocument`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDocument {
    /// Task type.
    #[serde(rename = "type")]
    pub task_type: TaskType,
    /// Task ID.
    pub id: TaskId,
    /// Its name in the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<TaskName>,
    /// The names of the tasks it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<TaskName>>,
    /// Status.
    pub status: TaskStatus,
    /// Params.
    pub params: Value,
    /// Output of the successful attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Latest failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Retries allowed.
    pub max_retries: u32,
    /// Retries used.
    pub retry_count: u32,
    /// Waits between attempts.
    pub backoff: Backoff,
    /// Per-attempt limits set by the plan (`timeout`, `memoryLimit`, `maxOutput`).
    #[serde(flatten)]
    pub limits: LimitOverrides,
    /// Earliest start of the next attempt, while a backoff runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
}

/// Why the plan failed, in the reference controller's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedTaskDetail {
    /// Task type.
    #[serde(rename = "type")]
    pub task_type: TaskType,
    /// Task ID.
    pub id: TaskId,
    /// The failure.
    pub error: String,
    /// Retries used.
    pub retry_count: u32,
    /// Retries allowed.
    pub max_retries: u32,
}

impl PlanRun {
    /// The plan as a JSON document.
    pub fn document(&self) -> PlanDocument {
        let failed_task_index = self.failed_task_index();
        let failed_task_detail =
            failed_task_index
                .and_then(|i| self.task(i))
                .map(|task| FailedTaskDetail {
                    task_type: task.task_type().clone(),
                    id: task.id(),
                    error: task.error().unwrap_or_default().to_owned(),
                    retry_count: task.retry_count(),
                    max_retries: task.policy().max_retries,
                });
        PlanDocument {
            id: self.id(),
            name: self.name().map(str::to_owned),
            phase: self.phase(),
            tasks: self.tasks().iter().map(Task::document).collect(),
            failed_task_index,
            failed_task_detail,
        }
    }
}

impl Task {
    /// The task as a JSON document.
    pub fn document(&self) -> TaskDocument {
        TaskDocument {
            task_type: self.task_type().clone(),
            id: self.id(),
            name: self.name().cloned(),
            depends_on: self.depends_on().map(<[_]>::to_vec),
            status: self.status(),
            params: self.params().clone(),
            output: self.output().cloned(),
            error: self.error().map(str::to_owned),
            max_retries: self.policy().max_retries,
            retry_count: self.retry_count(),
            backoff: self.policy().backoff,
            limits: *self.limits(),
            next_attempt_at: self.next_attempt_at(),
            attempts: self.attempts().to_vec(),
        }
    }
}
