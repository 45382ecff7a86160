//! The stable JSON shapes (docs/DESIGN.md §4): the Plan document and the saved plan.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{PlanId, TaskId, TaskType};
use super::policy::{Backoff, LimitOverrides, PlanDefaults, RetryPolicy};
use super::run::{Phase, PlanRun};
use super::spec::Grants;
use super::task::{Attempt, Task, TaskParts, TaskStatus};

/// The `formatVersion` this planrt writes and reads.
pub const SAVED_PLAN_FORMAT_VERSION: u32 = 1;

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

/// The plugin a saved plan was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginPin {
    /// The component file it was loaded from.
    pub file: PathBuf,
    /// sha256 of the file, hex.
    pub sha256: String,
    /// The WIT package version it implements.
    pub wit_version: String,
}

/// A resolved plan written by `plan --out` and run by `run FILE`, like a saved
/// Terraform plan: the same IDs, grants and plugins every time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedPlan {
    /// [`SAVED_PLAN_FORMAT_VERSION`].
    pub format_version: u32,
    /// The plan itself.
    #[serde(flatten)]
    pub plan: PlanDocument,
    /// The defaults the tasks were resolved with.
    pub defaults: PlanDefaults,
    /// Grants with absolute host paths.
    pub grants: Grants,
    /// The plugin of each task type.
    pub plugins: BTreeMap<TaskType, PluginPin>,
}

/// A document that does not describe a plan this planrt can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Written by another planrt.
    #[error(
        "saved plan format {found} is not supported (this planrt reads format {SAVED_PLAN_FORMAT_VERSION})"
    )]
    FormatVersion {
        /// The version in the file.
        found: u32,
    },
    /// A task ID that is not the one its plan ID, type and index give.
    #[error(
        "task {index} has ID {found}, but plan {plan} gives a `{task_type}` task at index {index} the ID {expected}"
    )]
    TaskIdMismatch {
        /// The plan ID.
        plan: PlanId,
        /// Task index.
        index: usize,
        /// Task type.
        task_type: TaskType,
        /// ID in the file.
        found: TaskId,
        /// ID it must be.
        expected: TaskId,
    },
    /// A saved plan that has already run.
    #[error("task {index} is {status:?}: a saved plan holds only pending tasks that never ran")]
    NotFresh {
        /// Task index.
        index: usize,
        /// Its status.
        status: TaskStatus,
    },
    /// A task type without a pinned plugin.
    #[error("task {index} has type `{task_type}` but the saved plan pins no plugin for it")]
    UnpinnedType {
        /// Task index.
        index: usize,
        /// Task type.
        task_type: TaskType,
    },
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

impl Task {
    /// Rebuilds a task from its document (as stored or saved).
    pub fn from_document(index: usize, doc: &TaskDocument) -> Self {
        Task::from_parts(TaskParts {
            index,
            task_type: doc.task_type.clone(),
            id: doc.id,
            params: doc.params.clone(),
            policy: RetryPolicy {
                max_retries: doc.max_retries,
                backoff: doc.backoff,
            },
            limits: doc.limits,
            status: doc.status,
            retry_count: doc.retry_count,
            next_attempt_at: doc.next_attempt_at,
            output: doc.output.clone(),
            error: doc.error.clone(),
            attempts: doc.attempts.clone(),
        })
    }
}

impl SavedPlan {
    /// Checks that the document is a fresh plan this planrt can run, and builds it.
    pub fn to_plan_run(&self) -> Result<PlanRun, DocumentError> {
        if self.format_version != SAVED_PLAN_FORMAT_VERSION {
            return Err(DocumentError::FormatVersion {
                found: self.format_version,
            });
        }
        let plan_id = self.plan.id;
        let mut tasks = Vec::with_capacity(self.plan.tasks.len());
        for (index, doc) in self.plan.tasks.iter().enumerate() {
            let expected = TaskId::derive(plan_id, &doc.task_type, index);
            if doc.id != expected {
                return Err(DocumentError::TaskIdMismatch {
                    plan: plan_id,
                    index,
                    task_type: doc.task_type.clone(),
                    found: doc.id,
                    expected,
                });
            }
            let never_ran = doc.status == TaskStatus::Pending && doc.attempts.is_empty();
            if !never_ran {
                return Err(DocumentError::NotFresh {
                    index,
                    status: doc.status,
                });
            }
            if !self.plugins.contains_key(&doc.task_type) {
                return Err(DocumentError::UnpinnedType {
                    index,
                    task_type: doc.task_type.clone(),
                });
            }
            tasks.push(Task::from_document(index, doc));
        }
        Ok(PlanRun::from_tasks(plan_id, self.plan.name.clone(), tasks))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::plan::spec::PlanSpec;

    fn saved() -> SavedPlan {
        let spec = PlanSpec::parse(
            "name = \"n\"\n[[tasks]]\ntype = \"echo\"\nmaxRetries = 2\n[tasks.params]\nx = 1\n[[tasks]]\ntype = \"echo\"\n",
            Path::new("/p.toml"),
        )
        .unwrap();
        let run = PlanRun::new(PlanId::new_random(), spec.name.clone(), &spec.tasks);
        let pin = PluginPin {
            file: "/plugins/echo.wasm".into(),
            sha256: "ab".into(),
            wit_version: "0.1.0".into(),
        };
        SavedPlan {
            format_version: SAVED_PLAN_FORMAT_VERSION,
            plan: run.document(),
            defaults: spec.defaults,
            grants: spec.grants,
            plugins: [(TaskType::new("echo").unwrap(), pin)].into(),
        }
    }

    #[test]
    fn saved_plan_round_trips_through_json_with_the_same_ids() {
        let saved = saved();
        let json = serde_json::to_value(&saved).unwrap();
        assert_eq!(json["formatVersion"], 1);
        assert_eq!(json["phase"], "Active");
        assert_eq!(json["tasks"][0]["type"], "echo");
        assert_eq!(json["tasks"][0]["status"], "Pending");
        assert_eq!(json["tasks"][0]["maxRetries"], 2);
        assert_eq!(json["tasks"][0]["retryCount"], 0);
        assert_eq!(json["tasks"][0]["backoff"]["initial"], "1s");
        assert_eq!(json["plugins"]["echo"]["witVersion"], "0.1.0");
        assert!(json.get("failedTaskIndex").is_none());
        let back: SavedPlan = serde_json::from_value(json).unwrap();
        assert_eq!(back, saved);
        let run = back.to_plan_run().unwrap();
        assert_eq!(run.document(), saved.plan);
    }

    #[test]
    fn edited_ids_and_used_plans_are_refused() {
        let mut saved = saved();
        saved.plan.tasks[0].id = saved.plan.tasks[1].id;
        assert!(matches!(
            saved.to_plan_run(),
            Err(DocumentError::TaskIdMismatch { index: 0, .. })
        ));

        let mut saved = self::saved();
        saved.plan.tasks[1].status = TaskStatus::Complete;
        assert!(matches!(
            saved.to_plan_run(),
            Err(DocumentError::NotFresh { index: 1, .. })
        ));

        let mut saved = self::saved();
        saved.format_version = 9;
        assert_eq!(
            saved.to_plan_run(),
            Err(DocumentError::FormatVersion { found: 9 })
        );

        let mut saved = self::saved();
        saved.plugins.clear();
        assert!(matches!(
            saved.to_plan_run(),
            Err(DocumentError::UnpinnedType { index: 0, .. })
        ));
    }
}
