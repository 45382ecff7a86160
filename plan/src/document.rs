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
use super::task::{Attempt, Task, TaskRecord, TaskStatus};

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
    /// The plan as a JSON document, its tasks' data moved rather than copied: for a
    /// caller done with the plan (the CLI printing a finished run of 100 000 tasks holds
    /// one copy of them, not two).
    pub fn into_document(self) -> PlanDocument {
        let mut document = self.document_without_tasks();
        document.tasks = self
            .into_tasks()
            .into_iter()
            .map(|task| TaskDocument::from(task.into_record()))
            .collect();
        document
    }

    /// The plan as a JSON document.
    pub fn document(&self) -> PlanDocument {
        let mut document = self.document_without_tasks();
        document.tasks = self.tasks().iter().map(Task::document).collect();
        document
    }

    /// Everything of [`PlanRun::document`] but the tasks.
    fn document_without_tasks(&self) -> PlanDocument {
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
            tasks: Vec::new(),
            failed_task_index,
            failed_task_detail,
        }
    }
}

impl From<TaskRecord> for TaskDocument {
    fn from(task: TaskRecord) -> Self {
        TaskDocument {
            task_type: task.task_type,
            id: task.id,
            name: task.name,
            depends_on: task.depends_on,
            status: task.status,
            params: task.params,
            output: task.output,
            error: task.error,
            max_retries: task.policy.max_retries,
            retry_count: task.retry_count,
            backoff: task.policy.backoff,
            limits: task.limits,
            next_attempt_at: task.next_attempt_at,
            attempts: task.attempts,
        }
    }
}

impl Task {
    /// The task as a JSON document (its fields copied: [`PlanRun::into_document`] moves
    /// them instead).
    pub fn document(&self) -> TaskDocument {
        self.clone().into_record().into()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{ErrorKind, Failure, PlanSpec, TaskEvent};

    #[test]
    fn the_moved_document_is_the_copied_one() {
        let spec = PlanSpec::parse(
            "name = \"p\"\n\
             [[tasks]]\ntype = \"a\"\nname = \"first\"\nparams = { x = 1 }\n\
             [[tasks]]\ntype = \"b\"\ndependsOn = [\"first\"]\nmaxRetries = 0\n",
            std::path::Path::new("p.toml"),
        )
        .unwrap();
        let mut run = PlanRun::new(PlanId::new_random(), spec.name, &spec.tasks).unwrap();
        let at = Timestamp::UNIX_EPOCH;
        run.apply(0, TaskEvent::Start { at }).unwrap();
        let output = json!({"ok": true});
        let done = TaskEvent::Succeed {
            at,
            output,
            log_tail: Some("tail".into()),
            progress: None,
        };
        run.apply(0, done).unwrap();
        run.apply(1, TaskEvent::Start { at }).unwrap();
        let failure = Failure {
            kind: ErrorKind::Permanent,
            message: "no".into(),
            backtrace: None,
            log_tail: None,
            progress: None,
        };
        let failed = TaskEvent::Fail {
            at,
            failure,
            jitter_sample: 0.0,
        };
        run.apply(1, failed).unwrap();
        let copied = run.document();
        assert_eq!(copied.failed_task_index, Some(1));
        assert_eq!(run.into_document(), copied);
    }
}
