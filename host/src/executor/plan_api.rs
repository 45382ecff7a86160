//! Plans over HTTP (`planrt serve`): create and run a plan sent as JSON, read plans,
//! resume and cancel them — the CLI's `run`, `status`, `resume` and ctrl-c, with the same
//! rules, for a process that keeps running.

use std::sync::Arc;

use serde_json::Value;

use super::execute::StopReason;
use super::id_locks::IdLocks;
use super::prepare::PluginChange;
use super::request::RequestError;
use super::resume::ResumeFrom;
use super::service::{Reopen, Service};
use super::supervisor::Supervisor;
use crate::plan::{PlanId, PlanRun, PlanSpec};
use crate::store::{Origin, PlanSummary, StateStore};

/// Plans created, read, resumed and cancelled over HTTP.
pub struct PlanApi {
    supervisor: Arc<Supervisor>,
    locks: IdLocks<PlanId>,
}

impl PlanApi {
    /// Plans run by `supervisor`.
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self {
            supervisor,
            locks: IdLocks::default(),
        }
    }

    fn service(&self) -> &Service {
        self.supervisor.service()
    }

    /// Checks a plan sent as JSON (the plan file's schema) like `planrt run` does, records
    /// it with a fresh plan ID and starts it. Returns the plan as recorded.
    pub async fn create(&self, document: &Value) -> Result<PlanRun, RequestError> {
        let spec =
            PlanSpec::from_json(document).map_err(|e| RequestError::BadRequest(e.to_string()))?;
        for (index, task) in spec.tasks.iter().enumerate() {
            super::task_api::refuse_reserved_secrets(&task.params)
                .map_err(|e| RequestError::BadRequest(format!("task {index}: {e}")))?;
        }
        let service = self.service();
        let prepared = service.prepare_spec(&spec, None).await?;
        let admitted = service.admit(prepared, None, Origin::Api)?;
        let plan = admitted.plan().clone();
        self.supervisor.spawn(admitted)?;
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
    /// [--allow-plugin-change]` does, and runs it in the background. Returns the plan as
    /// recorded once reopened.
    pub async fn resume(
        &self,
        id: PlanId,
        from: Option<usize>,
        allow_plugin_change: bool,
    ) -> Result<PlanRun, RequestError> {
        let _lock = self.locks.lock(id).await;
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
        };
        let observer = self.supervisor.observer().clone();
        let admitted = self.service().reopen(id, how, observer.as_ref()).await?;
        let plan = admitted.plan().clone();
        self.supervisor.spawn(admitted)?;
        Ok(plan)
    }

    /// Cancels the plan's running attempt (or its next one): it ends `cancelled`, and the
    /// plan is failed and resumable. Waits until that is recorded.
    pub async fn cancel(&self, id: PlanId) -> Result<(), RequestError> {
        let _lock = self.locks.lock(id).await;
        if self.supervisor.stop(id, StopReason::Cancel).await {
            return Ok(());
        }
        let service = self.service();
        let (_, plan) = service.load(id)?;
        let observer = self.supervisor.observer().clone();
        if service.cancel_idle(id, observer.as_ref())? {
            return Ok(());
        }
        Err(RequestError::NothingToCancel {
            plan: id,
            phase: plan.phase(),
        })
    }
}
