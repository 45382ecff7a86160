//! Tasks submitted one at a time with stable IDs (the reference sidecar's task API, served
//! by `planrt serve`): status-aware submission per ID, reads, cancel and removal. Each
//! submitted task is a plan of one task whose plan ID is the task's ID.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value;

use super::execute::{RunEnd, StopReason};
use super::prepare::PluginChange;
use super::request::{RequestError, check_secrets};
use super::resume::ResumeFrom;
use super::service::{Reopen, ReopenRecord, Service, ServiceError};
use super::supervisor::{RunOutcome, Supervisor};
use crate::plan::{
    Phase, PlanId, PlanRun, Resolution, Task, TaskId, TaskSettings, TaskStatus, TaskType,
};
use crate::store::{ClaimError, Origin, TaskCursor, TaskRef};

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
    /// When it was last submitted.
    pub submitted_at: Timestamp,
    /// The sha256 of the plugin its plan is pinned to (what its next attempt runs).
    pub plugin_sha256: Option<String>,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// It was running (or waiting for its next attempt): it is cancelled, and failed.
    Cancelled,
    /// It had finished: it no longer shows in the API (its history stays in the store).
    Removed,
}

/// Status-aware task submission over a service and its background runs.
pub struct TaskApi {
    supervisor: Arc<Supervisor>,
    settings: Arc<TaskSettings>,
}

impl TaskApi {
    /// Tasks run by `supervisor`, each resolved with `settings` (`serve --grants`).
    pub fn new(supervisor: Arc<Supervisor>, settings: Arc<TaskSettings>) -> Self {
        Self {
            supervisor,
            settings,
        }
    }

    fn service(&self) -> &Service {
        self.supervisor.service()
    }

    /// Submits a task: a new ID runs; a running or completed task is left as it is; a
    /// failed one runs again as its next attempt, with the new params. A task removed by
    /// `DELETE` runs again (its history kept). Bad input (type, params, grants, secrets)
    /// is refused before anything is stored.
    pub async fn submit(&self, submission: Submission) -> Result<Submitted, RequestError> {
        let id = submission
            .id
            .unwrap_or_else(|| TaskId::from(uuid::Uuid::new_v4()));
        let task_type = TaskType::new(submission.task_type)
            .map_err(|e| RequestError::BadRequest(format!("`type`: {e}")))?;
        let params = submission
            .params
            .unwrap_or_else(|| Value::Object(Default::default()));
        if !params.is_object() {
            return Err(RequestError::BadRequest(
                "`params` must be a JSON object".into(),
            ));
        }
        check_secrets(&params, &self.settings.secrets)
            .map_err(|e| RequestError::BadRequest(format!("`params`: {e}")))?;
        // The plan a new task gets: its lock also serializes requests for the ID.
        let own = PlanId::from(id.as_uuid());
        if self.supervisor.is_closed() {
            return Err(RequestError::ShuttingDown(own));
        }
        let _own = self.supervisor.lock_plan(own).await;
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
            self.supervisor.start(admitted)?;
            return Ok(Submitted::Started(id));
        };
        let _plan = match found.plan == own {
            true => None,
            false => Some(self.supervisor.lock_plan(found.plan).await),
        };

        let (_, plan) = service.load(found.plan)?;
        let task = plan
            .task(found.index)
            .ok_or(RequestError::UnknownTask(id))?;
        if task.task_type() != &task_type {
            return Err(RequestError::TypeMismatch {
                id,
                existing: task.task_type().clone(),
                requested: task_type,
            });
        }
        let again = |from| Reopen {
            from,
            plugin_change: PluginChange::Refuse {
                hint: "submit it with a new ID, or resume its plan with {\"allowPluginChange\": true}",
            },
            new_params: Some((found.index, params.clone())),
            record: ReopenRecord::Resubmission,
            within: Some(self.settings.grants.clone()),
        };
        let observer = self.supervisor.observer().clone();
        match (task.status(), plan.phase()) {
            (TaskStatus::Failed, _) => {
                self.supervisor.wait_idle(found.plan).await;
                let how = again(ResumeFrom::WhereItStopped);
                let admitted = service.reopen(found.plan, how, observer.as_ref()).await?;
                self.supervisor.start(admitted)?;
                Ok(Submitted::Started(id))
            }
            // Removed by DELETE: the ID reads as new to the client, so it runs again.
            (TaskStatus::Complete, _) if found.removed => {
                self.supervisor.wait_idle(found.plan).await;
                let how = again(ResumeFrom::Task(found.index));
                let admitted = service.reopen(found.plan, how, observer.as_ref()).await?;
                self.supervisor.start(admitted)?;
                Ok(Submitted::Started(id))
            }
            (TaskStatus::Pending, Phase::Failed) => Err(RequestError::BlockedByFailure {
                id,
                plan: found.plan,
                failed: plan.failed_task_index().unwrap_or_default(),
            }),
            (_, Phase::Active) if !self.supervisor.is_running(found.plan) => {
                // Recorded as active but run by nothing here (its run stopped on a store
                // error, a CLI run was killed): it runs again — unless another process
                // runs it.
                let how = Reopen {
                    from: ResumeFrom::WhereItStopped,
                    plugin_change: PluginChange::Refuse {
                        hint: "resume its plan with {\"allowPluginChange\": true}",
                    },
                    new_params: None,
                    record: if found.removed {
                        ReopenRecord::Resubmission
                    } else {
                        ReopenRecord::Adopt
                    },
                    within: Some(self.settings.grants.clone()),
                };
                match service.reopen(found.plan, how, observer.as_ref()).await {
                    Ok(admitted) => self.supervisor.start(admitted)?,
                    Err(ServiceError::Claim(ClaimError::Held { .. })) => {}
                    Err(error) => return Err(error.into()),
                }
                Ok(Submitted::Deduplicated(id))
            }
            _ => Ok(Submitted::Deduplicated(id)),
        }
    }

    /// The task as last recorded (also a removed one: its ID still names it).
    pub fn get(&self, id: TaskId) -> Result<TaskView, RequestError> {
        let store = self.service().store()?;
        let found = store
            .find_task(id)
            .map_err(|error| self.service().store_error(error))?
            .filter(|found| !found.removed)
            .ok_or(RequestError::UnknownTask(id))?;
        self.load(found.plan)?
            .and_then(|(resolution, plan)| view(&resolution, &plan, &found))
            .ok_or(RequestError::UnknownTask(id))
    }

    /// Up to `limit` tasks, newest first, after `cursor`; and the cursor of the next page.
    pub fn list(
        &self,
        limit: usize,
        cursor: Option<TaskCursor>,
    ) -> Result<(Vec<TaskView>, Option<TaskCursor>), RequestError> {
        let store = self.service().store()?;
        let (refs, next) = store
            .list_tasks(limit, cursor)
            .map_err(|error| self.service().store_error(error))?;
        let mut views = Vec::with_capacity(refs.len());
        // A page lists a plan's tasks together: each plan is loaded once.
        let mut loaded: Option<(PlanId, Option<(Resolution, PlanRun)>)> = None;
        for found in &refs {
            if loaded.as_ref().is_none_or(|(id, _)| *id != found.plan) {
                loaded = Some((found.plan, self.load(found.plan)?));
            }
            if let Some((_, Some((resolution, plan)))) = &loaded {
                views.extend(view(resolution, plan, found));
            }
        }
        Ok((views, next))
    }

    /// Cancels a task that runs or waits for its next attempt (it ends `cancelled`, its
    /// plan failed and resumable) once that is recorded, or removes a finished one from
    /// the API's views. A task of a plan of several tasks is cancelled through its plan.
    pub async fn delete(&self, id: TaskId) -> Result<Deleted, RequestError> {
        let own = PlanId::from(id.as_uuid());
        let _own = self.supervisor.lock_plan(own).await;
        let service = self.service();
        let store = service.store()?;
        let found = store
            .find_task(id)
            .map_err(|error| service.store_error(error))?
            .filter(|found| !found.removed)
            .ok_or(RequestError::UnknownTask(id))?;
        let _plan = match found.plan == own {
            true => None,
            false => Some(self.supervisor.lock_plan(found.plan).await),
        };
        let (_, plan) = service.load(found.plan)?;
        if plan.tasks().len() > 1 {
            return Err(RequestError::PartOfPlan {
                id,
                plan: found.plan,
                tasks: plan.tasks().len(),
            });
        }
        match self.supervisor.stop(found.plan, StopReason::Cancel).await {
            Some(RunOutcome::Ended(RunEnd::Cancelled)) => return Ok(Deleted::Cancelled),
            Some(RunOutcome::Ended(RunEnd::Interrupted)) => {
                return Err(RequestError::ShuttingDown(found.plan));
            }
            Some(RunOutcome::Failed(message)) => {
                return Err(RequestError::Unrecorded {
                    plan: found.plan,
                    message,
                });
            }
            // It finished before the cancel reached it, or it was not running here.
            Some(RunOutcome::Ended(RunEnd::Finished(_))) | None => {}
        }
        let (_, plan) = service.load(found.plan)?;
        if plan.phase() == Phase::Active {
            // Active but run by nothing here: its run stopped on an error, or another
            // process runs it (then the claim is refused: 409).
            let observer = self.supervisor.observer().clone();
            let reason = format!("cancelled by an operator (DELETE /v0/tasks/{id})");
            if service.cancel_idle(found.plan, observer.as_ref(), &reason)? {
                return Ok(Deleted::Cancelled);
            }
        }
        store
            .set_removed(found.plan, true)
            .map_err(|error| service.store_error(error))?;
        Ok(Deleted::Removed)
    }

    /// The plan, if it is still stored.
    fn load(&self, id: PlanId) -> Result<Option<(Resolution, PlanRun)>, RequestError> {
        match self.service().load(id) {
            Ok(loaded) => Ok(Some(loaded)),
            Err(ServiceError::UnknownPlan { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

fn view(resolution: &Resolution, plan: &PlanRun, found: &TaskRef) -> Option<TaskView> {
    plan.task(found.index).map(|task| TaskView {
        plugin_sha256: resolution
            .plugins
            .get(task.task_type())
            .map(|pin| pin.sha256.clone()),
        task: task.clone(),
        plan: found.plan,
        phase: plan.phase(),
        submitted_at: found.submitted_at,
    })
}
