//! The JSON the HTTP API speaks: the reference sidecar's 0.8.0 shapes (`TaskRequest`,
//! `TaskSubmitResponse`, `TaskResult`, `ErrorResponse`, `StatusResponse`) plus what planrt
//! adds beside them (`attempts`, `planId`, `retryCount`). See `docs/openapi.yaml`.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::executor::{Submission, TaskView};
use crate::plan::{Attempt, Phase, PlanId, TaskId, TaskStatus};

/// `POST /v0/tasks` body. Unknown fields are ignored, as the reference's Go decoder does,
/// so newer clients keep working.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskRequest {
    /// The caller's task ID (a UUID), or none for a fresh one.
    #[serde(default)]
    pub id: Option<uuid::Uuid>,
    /// The task type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// Task-type-specific params (a JSON object).
    #[serde(default)]
    pub params: Option<Value>,
}

impl From<TaskRequest> for Submission {
    fn from(request: TaskRequest) -> Self {
        Submission {
            id: request.id.map(TaskId::from),
            task_type: request.task_type,
            params: request.params,
        }
    }
}

/// `201`/`202` body of `POST /v0/tasks`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskSubmitResponse {
    /// The task's ID.
    pub id: TaskId,
}

/// `201` body of `POST /v0/plans`: the plan's ID and its tasks' IDs, in plan order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanCreated {
    /// The plan's ID.
    pub id: PlanId,
    /// Its tasks.
    pub tasks: Vec<TaskSubmitResponse>,
}

/// `POST /v0/plans/{id}/resume` body: the flags of `planrt resume`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResumeRequest {
    /// Restart at this task (`--from N`).
    #[serde(default)]
    pub from: Option<usize>,
    /// Run even if a plugin changed since the plan was made (`--allow-plugin-change`).
    #[serde(default)]
    pub allow_plugin_change: Option<bool>,
}

/// A task's status as the reference reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WireStatus {
    /// Submitted and not finished: running, waiting for a turn or for its backoff.
    Running,
    /// Its last attempt succeeded.
    Completed,
    /// It failed (or was cancelled); submitting it again runs its next attempt.
    Failed,
}

/// `GET /v0/tasks[/{id}]`: the reference's `TaskResult` plus planrt's attempt history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    /// The task's ID.
    pub id: TaskId,
    /// Its type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// Where it is.
    pub status: WireStatus,
    /// Its params, `$env` secrets as references.
    pub params: Value,
    /// The plugin's output, once complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was first submitted.
    pub submitted_at: Timestamp,
    /// When its last attempt ended, once completed or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// planrt: its plan (a task submitted on its own has a plan of the same ID).
    pub plan_id: PlanId,
    /// planrt: retries used.
    pub retry_count: u32,
    /// planrt: the sha256 of the plugin component its plan is pinned to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_sha256: Option<String>,
    /// planrt: every attempt, as in the plan JSON.
    pub attempts: Vec<Attempt>,
}

impl From<&TaskView> for TaskResult {
    fn from(view: &TaskView) -> Self {
        let task = &view.task;
        let status = match (task.status(), view.phase) {
            (TaskStatus::Complete, _) => WireStatus::Completed,
            (TaskStatus::Failed, _) => WireStatus::Failed,
            // Waiting behind a failed task of its plan: it will not run unless resumed.
            (TaskStatus::Pending, Phase::Failed) => WireStatus::Failed,
            (TaskStatus::Pending | TaskStatus::Running, _) => WireStatus::Running,
        };
        let completed_at = match status {
            WireStatus::Running => None,
            _ => task.last_attempt().and_then(|a| a.ended_at),
        };
        let error = match (status, task.error()) {
            (WireStatus::Failed, None) => Some(format!(
                "not run: an earlier task of plan {} failed",
                view.plan
            )),
            (_, error) => error.map(str::to_owned),
        };
        TaskResult {
            id: task.id(),
            task_type: task.task_type().to_string(),
            status,
            params: task.params().clone(),
            result: task.output().cloned(),
            error,
            submitted_at: view.submitted_at,
            completed_at,
            plan_id: view.plan,
            retry_count: task.retry_count(),
            plugin_sha256: view.plugin_sha256.clone(),
            attempts: task.attempts().to_vec(),
        }
    }
}

/// Every error body: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong, naming the field or the plugin's message.
    pub error: String,
}

/// `GET /v0/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusResponse {
    /// `Initializing` until a `mark-ready` task completed, then `Ready`.
    pub status: Readiness,
}

/// Whether the node was marked ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Readiness {
    /// No `mark-ready` task has completed yet.
    Initializing,
    /// A `mark-ready` task completed (persisted: a restart keeps it).
    Ready,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{RetryPolicy, Task, TaskEvent, TaskType};

    fn view(task: Task, phase: Phase) -> TaskView {
        TaskView {
            plan: PlanId::from(task.id().as_uuid()),
            task,
            phase,
            submitted_at: Timestamp::from_second(1_700_000_000).unwrap(),
            plugin_sha256: Some("ab12".into()),
        }
    }

    fn task() -> Task {
        Task::submitted(
            TaskId::from(uuid::Uuid::new_v4()),
            TaskType::new("echo").unwrap(),
            serde_json::json!({"token": {"$env": "TOKEN"}}),
            RetryPolicy::default(),
            Default::default(),
        )
    }

    #[test]
    fn a_result_has_the_reference_fields_and_names() {
        let mut task = task();
        let at = Timestamp::from_second(1_700_000_100).unwrap();
        task.apply(TaskEvent::Start { at }).unwrap();
        task.apply(TaskEvent::Succeed {
            at,
            output: serde_json::json!({"hash": "ab"}),
            log_tail: None,
            progress: None,
        })
        .unwrap();
        let json =
            serde_json::to_value(TaskResult::from(&view(task.clone(), Phase::Complete))).unwrap();
        assert_eq!(json["id"], task.id().to_string());
        assert_eq!(json["type"], "echo");
        assert_eq!(json["status"], "completed");
        assert_eq!(
            json["params"]["token"]["$env"], "TOKEN",
            "secrets stay references"
        );
        assert_eq!(json["result"]["hash"], "ab");
        assert_eq!(json["submittedAt"], "2023-11-14T22:13:20Z");
        assert_eq!(json["completedAt"], "2023-11-14T22:15:00Z");
        assert_eq!(json["attempts"][0]["outcome"], "complete");
        assert_eq!(json["pluginSha256"], "ab12");
        assert!(json.get("error").is_none());
    }

    #[test]
    fn pending_and_running_tasks_are_running_unless_their_plan_failed() {
        let pending = task();
        let status = |task: &Task, phase| TaskResult::from(&view(task.clone(), phase)).status;
        assert_eq!(status(&pending, Phase::Active), WireStatus::Running);
        let blocked = TaskResult::from(&view(pending.clone(), Phase::Failed));
        assert_eq!(blocked.status, WireStatus::Failed);
        assert!(blocked.error.unwrap().contains("earlier task"));
        let mut running = pending;
        running
            .apply(TaskEvent::Start {
                at: Timestamp::now(),
            })
            .unwrap();
        assert_eq!(status(&running, Phase::Active), WireStatus::Running);
        assert_eq!(
            TaskResult::from(&view(running, Phase::Active)).completed_at,
            None
        );
    }

    #[test]
    fn a_request_takes_the_reference_fields_and_ignores_others() {
        let request: TaskRequest = serde_json::from_str(
            r#"{"id":"6f1c9d8e-3b2a-4c5d-8e7f-0a1b2c3d4e5f","type":"echo","params":{"a":1},"extra":true}"#,
        )
        .unwrap();
        assert_eq!(request.task_type, "echo");
        assert_eq!(request.params, Some(serde_json::json!({"a": 1})));
        let bare: TaskRequest = serde_json::from_str(r#"{"type":"echo"}"#).unwrap();
        assert_eq!((bare.id, bare.params), (None, None));
    }
}
