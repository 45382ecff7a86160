//! Plans over HTTP (`planrt serve`): create and run a plan sent as JSON, read plans,
//! resume and cancel them — the CLI's `run`, `status`, `resume` and ctrl-c, with the same
//! rules, for a process that keeps running. A plan sent over HTTP may grant no more than
//! the server's `--grants` and name only the secrets it lists.

use std::sync::Arc;

use serde_json::Value;

use super::execute::{RunEnd, StopReason};
use super::prepare::PluginChange;
use super::request::{RequestError, check_grants_within, check_limits_within, check_secrets};
use super::resume::ResumeFrom;
use super::service::{Reopen, ReopenRecord, Service};
use super::supervisor::{RunOutcome, Supervisor};
use crate::plan::{PlanId, PlanRun, PlanSpec, TaskSettings};
use crate::store::{Origin, PlanSummary, StateStore};

/// Plans created, read, resumed and cancelled over HTTP.
pub struct PlanApi {
    supervisor: Arc<Supervisor>,
    settings: Arc<TaskSettings>,
}

impl PlanApi {
    /// Plans run by `supervisor`, within `settings` (`serve --grants`).
    pub fn new(supervisor: Arc<Supervisor>, settings: Arc<TaskSettings>) -> Self {
        Self {
            supervisor,
            settings,
        }
    }

    fn service(&self) -> &Service {
        self.supervisor.service()
    }

    /// Checks a plan sent as JSON (the plan file's schema) like `planrt run` does, and
    /// against the server's limits; records it with a fresh plan ID and starts it.
    /// Returns the plan as recorded.
    pub async fn create(&self, document: &Value) -> Result<PlanRun, RequestError> {
        let spec =
            PlanSpec::from_json(document).map_err(|e| RequestError::BadRequest(e.to_string()))?;
        for (index, task) in spec.tasks.iter().enumerate() {
            check_secrets(&task.params, &self.settings.secrets)
                .map_err(|e| RequestError::BadRequest(format!("`tasks[{index}].params`: {e}")))?;
        }
        check_grants_within(&spec.grants, &self.settings.grants)
            .map_err(|e| RequestError::BadRequest(format!("plan: {e}")))?;
        let service = self.service();
        let prepared = service.prepare_spec(&spec, None).await?;
        let suggested: Vec<_> = prepared
            .tasks
            .iter()
            .map(|task| {
                let info = task.plugin.info();
                (info.default_timeout, info.default_memory_limit)
            })
            .collect();
        check_limits_within(&spec.tasks, &suggested, &self.settings.defaults)
            .map_err(|e| RequestError::BadRequest(format!("plan: {e}")))?;
        let id = prepared.saved.plan.id;
        if self.supervisor.is_closed() {
            return Err(RequestError::ShuttingDown(id));
        }
        let _lock = self.supervisor.lock_plan(id).await;
        let admitted = service.admit(prepared, None, Origin::Api)?;
        let plan = admitted.plan().clone();
        self.supervisor.start(admitted)?;
        Ok(plan)
    }

    /// The most recent plans, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<PlanSummary>, RequestError> {
        let service = self.service();
        let store = service.store()?;
        Ok(store
            .list_plans(limit)
            .map_err(|error| service.store_error(error))?)
    }

    /// The plan as last recorded.
    pub fn get(&self, id: PlanId) -> Result<PlanRun, RequestError> {
        Ok(self.service().load(id)?.1)
    }

    /// Continues a stored plan with the same IDs, as `planrt resume [--from N]
    /// [--allow-plugin-change]` does, and runs it in the background; from then on the
    /// server runs it (also after a restart). Returns the plan as recorded once reopened.
    pub async fn resume(
        &self,
        id: PlanId,
        from: Option<usize>,
        allow_plugin_change: bool,
    ) -> Result<PlanRun, RequestError> {
        if self.supervisor.is_closed() {
            return Err(RequestError::ShuttingDown(id));
        }
        let _lock = self.supervisor.lock_plan(id).await;
        if self.supervisor.is_running(id) {
            return Err(RequestError::PlanRunning(id));
        }
        let how = Reopen {
            from: from.map_or(ResumeFrom::WhereItStopped, ResumeFrom::Task),
            plugin_change: if allow_plugin_change {
                PluginChange::Repin
            } else {
                PluginChange::Refuse {
                    hint: "resume with {\"allowPluginChange\": true} to run with them",
                }
            },
            new_params: None,
            record: ReopenRecord::Adopt,
            within: Some(self.settings.grants.clone()),
        };
        let observer = self.supervisor.observer().clone();
        let admitted = self.service().reopen(id, how, observer.as_ref()).await?;
        let plan = admitted.plan().clone();
        self.supervisor.start(admitted)?;
        Ok(plan)
    }

    /// Cancels the plan's running attempt (or its next one): it ends `cancelled`, and the
    /// plan is failed and resumable. Returns once that is recorded.
    pub async fn cancel(&self, id: PlanId) -> Result<(), RequestError> {
        let _lock = self.supervisor.lock_plan(id).await;
        match self.supervisor.stop(id, StopReason::Cancel).await {
            Some(RunOutcome::Ended(RunEnd::Cancelled)) => return Ok(()),
            Some(RunOutcome::Ended(RunEnd::Interrupted)) => {
                return Err(RequestError::ShuttingDown(id));
            }
            Some(RunOutcome::Failed(message)) => {
                return Err(RequestError::Unrecorded { plan: id, message });
            }
            // It finished before the cancel reached it, or it was not running here.
            Some(RunOutcome::Ended(RunEnd::Finished(_))) | None => {}
        }
        let service = self.service();
        let (_, plan) = service.load(id)?;
        let observer = self.supervisor.observer().clone();
        let reason = format!("cancelled by an operator (DELETE /v0/plans/{id})");
        if service.cancel_idle(id, observer.as_ref(), &reason)? {
            return Ok(());
        }
        Err(RequestError::NothingToCancel {
            plan: id,
            phase: plan.phase(),
        })
    }
}
