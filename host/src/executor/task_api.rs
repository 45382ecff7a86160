//! Tasks submitted one at a time with stable IDs (the reference sidecar's task API, served
//! by `planrt serve`): status-aware submission per ID, reads, cancel and removal. Each
//! submitted task is a plan of one task whose plan ID is the task's ID.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde_json::Value;

use super::execute::StopReason;
use super::prepare::PluginChange;
use super::resume::ResumeFrom;
use super::service::{Reopen, Service, ServiceError};
use super::supervisor::Supervisor;
use crate::plan::{Phase, PlanId, PlanRun, Task, TaskId, TaskSettings, TaskStatus, TaskType};
use crate::store::{Origin, TaskCursor, TaskRef};

/// Environment variables a `$env` reference submitted over the API may not name: the
/// server's own settings (its token among them) are not secrets for tasks.
const RESERVED_ENV_PREFIX: &str = "PLANRT_";

/// A task as a client submits it.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// The caller's ID (a UUID), or none for a fresh one.
    pub id: Option<TaskId>,
    /// The task type.
    pub task_type: String,
    /// Its params (a JSON object; none: `{}`).
    pub params: Option<Value>,
}

/// What a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new task, or a failed one run again: it started.
    Started(TaskId),
    /// The task exists and is running or completed: nothing changed.
    Deduplicated(TaskId),
}

/// A task as last recorded, with what the API shows beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// The task.
    pub task: Task,
    /// Its plan.
    pub plan: PlanId,
    /// Its plan's phase.
    pub phase: Phase,
    /// When it was submitted (its plan created).
    pub submitted_at: Timestamp,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// It was running (or waiting for its next attempt): it is cancelled, and failed.
    Cancelled,
    /// It had finished: it no longer shows in the API (its history stays in the store).
    Removed,
}

/// A task API request that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TaskApiError {
    /// The request is malformed (the field is named).
    #[error("{0}")]
    BadRequest(String),
    /// No task with this ID (or it was removed).
    #[error("no task {0}")]
    UnknownTask(TaskId),
    /// The ID belongs to a task of another type.
    #[error("task {id} exists with type `{existing}`, not `{requested}`")]
    TypeMismatch {
        /// The task.
        id: TaskId,
        /// Its type.
        existing: TaskType,
        /// The type submitted.
        requested: TaskType,
    },
    /// The task waits behind a failed task of its plan: it cannot run on its own.
    #[error(
        "task {id} waits for task {failed} of plan {plan}, which failed: resubmit that task or resume the plan"
    )]
    BlockedByFailure {
        /// The task.
        id: TaskId,
        /// Its plan.
        plan: PlanId,
        /// The failed task's index.
        failed: usize,
    },
    /// The service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The run could not start.
    #[error(transparent)]
    Supervise(#[from] super::supervisor::SuperviseError),
}

/// Status-aware task submission over a service and its background runs.
pub struct TaskApi {
    supervisor: Arc<Supervisor>,
    settings: TaskSettings,
    /// One submission or delete at a time per task ID.
    locks: IdLocks,
}

impl TaskApi {
    /// Tasks run by `supervisor`, each resolved with `settings` (`serve --grants`).
    pub fn new(supervisor: Arc<Supervisor>, settings: TaskSettings) -> Self {
        Self {
            supervisor,
            settings,
            locks: IdLocks::default(),
        }
    }

    fn service(&self) -> &Service {
        self.supervisor.service()
    }

    /// Submits a task: a new ID runs; a running or completed task is left as it is; a
    /// failed one runs again as its next attempt, with the new params. Bad input (type,
    /// params, grants) is refused before anything is stored.
    pub async fn submit(&self, submission: Submission) -> Result<Submitted, TaskApiError> {
        let id = submission
            .id
            .unwrap_or_else(|| TaskId::from(uuid::Uuid::new_v4()));
        let task_type = TaskType::new(submission.task_type)
            .map_err(|e| TaskApiError::BadRequest(format!("`type`: {e}")))?;
        let params = submission
            .params
            .unwrap_or_else(|| Value::Object(Default::default()));
        if !params.is_object() {
            return Err(TaskApiError::BadRequest(
                "`params` must be a JSON object".into(),
            ));
        }
        if let Some(name) = super::secrets::referenced(&params)
            .into_iter()
            .find(|name| name.starts_with(RESERVED_ENV_PREFIX))
        {
            return Err(TaskApiError::BadRequest(format!(
                "`params`: a `$env` secret may not name `{name}` (planrt's own settings are not for tasks)"
            )));
        }

        let _lock = self.locks.lock(id).await;
        let service = self.service();
        let store = service.store()?;
        let found = store
            .find_task(id)
            .map_err(|error| service.store_error(error))?;
        let Some(found) = found else {
            let (prepared, plan) = service
                .prepare_task(id, task_type, params, &self.settings)
                .await?;
            let admitted = service.admit(prepared, Some(plan), Origin::Api)?;
            self.supervisor.spawn(admitted)?;
            return Ok(Submitted::Started(id));
        };

        let (_, plan) = service.load(found.plan)?;
        let task = plan
            .task(found.index)
            .ok_or(TaskApiError::UnknownTask(id))?;
        if task.task_type() != &task_type {
            return Err(TaskApiError::TypeMismatch {
                id,
                existing: task.task_type().clone(),
                requested: task_type,
            });
        }
        if found.removed {
            // Submitted again after a delete: it shows again, and follows its status.
            store
                .set_removed(found.plan, false)
                .map_err(|error| service.store_error(error))?;
        }
        match (task.status(), plan.phase()) {
            (TaskStatus::Failed, _) => {
                self.supervisor.wait_idle(found.plan).await;
                let how = Reopen {
                    from: ResumeFrom::WhereItStopped,
                    plugin_change: PluginChange::Refuse {
                        hint: "submit it with a new ID, or resume its plan with `planrt resume --allow-plugin-change`",
                    },
                    new_params: Some((found.index, params)),
                };
                let observer = self.supervisor.observer().clone();
                let admitted = service.reopen(found.plan, how, observer.as_ref()).await?;
                self.supervisor.spawn(admitted)?;
                Ok(Submitted::Started(id))
            }
            (TaskStatus::Pending, Phase::Failed) => Err(TaskApiError::BlockedByFailure {
                id,
                plan: found.plan,
                failed: plan.failed_task_index().unwrap_or_default(),
            }),
            _ => Ok(Submitted::Deduplicated(id)),
        }
    }

    /// The task as last recorded (also a removed one: its ID still names it).
    pub fn get(&self, id: TaskId) -> Result<TaskView, TaskApiError> {
        let store = self.service().store()?;
        let found = store
            .find_task(id)
            .map_err(|error| self.service().store_error(error))?
            .filter(|found| !found.removed)
            .ok_or(TaskApiError::UnknownTask(id))?;
        self.load(found.plan)?
            .and_then(|plan| view(&plan, &found))
            .ok_or(TaskApiError::UnknownTask(id))
    }

    /// Up to `limit` tasks, newest first, after `cursor`; and the cursor of the next page.
    pub fn list(
        &self,
        limit: usize,
        cursor: Option<TaskCursor>,
    ) -> Result<(Vec<TaskView>, Option<TaskCursor>), TaskApiError> {
        let store = self.service().store()?;
        let (refs, next) = store
            .list_tasks(limit, cursor)
            .map_err(|error| self.service().store_error(error))?;
        let mut views = Vec::with_capacity(refs.len());
        // A page lists a plan's tasks together: each plan is loaded once.
        let mut loaded: Option<(PlanId, Option<PlanRun>)> = None;
        for found in &refs {
            if loaded.as_ref().is_none_or(|(id, _)| *id != found.plan) {
                loaded = Some((found.plan, self.load(found.plan)?));
            }
            if let Some((_, Some(plan))) = &loaded {
                views.extend(view(plan, found));
            }
        }
        Ok((views, next))
    }

    /// Cancels a task that runs or waits for its next attempt (it ends `cancelled`, its
    /// plan failed and resumable), or removes a finished one from the API's views.
    pub async fn delete(&self, id: TaskId) -> Result<Deleted, TaskApiError> {
        let _lock = self.locks.lock(id).await;
        let service = self.service();
        let store = service.store()?;
        let found = store
            .find_task(id)
            .map_err(|error| service.store_error(error))?
            .filter(|found| !found.removed)
            .ok_or(TaskApiError::UnknownTask(id))?;
        if self.supervisor.stop(found.plan, StopReason::Cancel).await {
            return Ok(Deleted::Cancelled);
        }
        let (_, plan) = service.load(found.plan)?;
        if plan.phase() == Phase::Active {
            // Active but not running here: its run ended with an error, or another
            // process runs it (then the claim is refused).
            let observer = self.supervisor.observer().clone();
            if service.cancel_idle(found.plan, observer.as_ref())? {
                return Ok(Deleted::Cancelled);
            }
        }
        store
            .set_removed(found.plan, true)
            .map_err(|error| service.store_error(error))?;
        Ok(Deleted::Removed)
    }

    /// The plan, if it is still stored.
    fn load(&self, id: PlanId) -> Result<Option<PlanRun>, TaskApiError> {
        match self.service().load(id) {
            Ok((_, plan)) => Ok(Some(plan)),
            Err(ServiceError::UnknownPlan { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

fn view(plan: &PlanRun, found: &TaskRef) -> Option<TaskView> {
    plan.task(found.index).map(|task| TaskView {
        task: task.clone(),
        plan: found.plan,
        phase: plan.phase(),
        submitted_at: found.submitted_at,
    })
}

/// A lock per task ID, made on demand and dropped when no one holds or waits for it.
#[derive(Default)]
struct IdLocks {
    locks: Mutex<HashMap<TaskId, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds one ID's lock.
struct IdGuard<'a> {
    locks: &'a IdLocks,
    id: TaskId,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl IdLocks {
    async fn lock(&self, id: TaskId) -> IdGuard<'_> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default()
            .clone();
        IdGuard {
            locks: self,
            id,
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for IdGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map holds it now: no one holds or waits for this ID.
        if locks
            .get(&self.id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.id);
        }
    }
}
