//! Plans running in the background of a long-lived process (`planrt serve`): each admitted
//! plan executes in its own tokio task; a plan can be cancelled, waited for, and every
//! run is stopped — recorded `interrupted`, resumable — when the process shuts down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::execute::{Observer, RunEnd, StopReason};
use super::service::{Admitted, Service, ServiceError};
use crate::plan::PlanId;

/// One plan running in the background.
struct Run {
    stop: watch::Sender<Option<StopReason>>,
    done: watch::Receiver<bool>,
}

/// Runs admitted plans in the background.
pub struct Supervisor {
    service: Arc<Service>,
    observer: Arc<dyn Observer>,
    runs: Mutex<HashMap<PlanId, Run>>,
    /// Set once shutting down: nothing new starts.
    closed: Mutex<bool>,
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// The process is shutting down; the plan stays recorded, resumable.
    #[error("planrt is shutting down; plan {0} is recorded and runs when planrt starts again")]
    ShuttingDown(PlanId),
    /// This process already runs the plan.
    #[error("plan {0} is already running")]
    AlreadyRunning(PlanId),
}

impl Supervisor {
    /// A supervisor running plans on `service`, telling `observer` of every transition.
    pub fn new(service: Arc<Service>, observer: Arc<dyn Observer>) -> Arc<Self> {
        Arc::new(Self {
            service,
            observer,
            runs: Mutex::new(HashMap::new()),
            closed: Mutex::new(false),
        })
    }

    /// The service it runs plans on.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The observer every run reports to.
    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.observer
    }

    /// Starts executing an admitted plan in the background.
    pub fn spawn(self: &Arc<Self>, admitted: Admitted) -> Result<(), SuperviseError> {
        let id = admitted.plan().id();
        let (stop_tx, mut stop_rx) = watch::channel(None);
        let (done_tx, done_rx) = watch::channel(false);
        {
            // Checked under the runs lock, so `shutdown` either sees this run or refuses it.
            let mut runs = self.lock_runs();
            if *self.closed.lock().unwrap_or_else(|e| e.into_inner()) {
                return Err(SuperviseError::ShuttingDown(id));
            }
            if runs.contains_key(&id) {
                return Err(SuperviseError::AlreadyRunning(id));
            }
            runs.insert(
                id,
                Run {
                    stop: stop_tx,
                    done: done_rx,
                },
            );
        }
        let this = self.clone();
        tokio::spawn(async move {
            // Removes the run and says it is done however the task ends (even a panic).
            let _finish = Finish {
                supervisor: &this,
                id,
                done: done_tx,
            };
            let stop = async move {
                match stop_rx.wait_for(Option::is_some).await {
                    Ok(reason) => reason.unwrap_or(StopReason::Shutdown),
                    // The sender is gone only with the supervisor: stop as for a shutdown.
                    Err(_) => StopReason::Shutdown,
                }
            };
            let outcome = this
                .service
                .execute(admitted, this.observer.as_ref(), stop)
                .await;
            log_end(id, outcome);
        });
        Ok(())
    }

    /// Whether this process runs the plan now.
    pub fn is_running(&self, id: PlanId) -> bool {
        self.lock_runs().contains_key(&id)
    }

    /// Stops the plan's run for `reason` and waits until what it stopped is recorded.
    /// Returns false if this process was not running it.
    pub async fn stop(&self, id: PlanId, reason: StopReason) -> bool {
        let done = {
            let runs = self.lock_runs();
            let Some(run) = runs.get(&id) else {
                return false;
            };
            // A stop already asked for (a shutdown) is not replaced.
            run.stop.send_if_modified(|current| {
                current.is_none() && {
                    *current = Some(reason);
                    true
                }
            });
            run.done.clone()
        };
        wait_done(done).await;
        true
    }

    /// Waits until this process no longer runs the plan (at once if it does not).
    pub async fn wait_idle(&self, id: PlanId) {
        let done = self.lock_runs().get(&id).map(|run| run.done.clone());
        if let Some(done) = done {
            wait_done(done).await;
        }
    }

    /// Plans running now.
    pub fn running(&self) -> usize {
        self.lock_runs().len()
    }

    /// Refuses new runs, stops every run as for a shutdown (what runs is recorded
    /// `interrupted`) and waits until all of them are recorded.
    pub async fn shutdown(&self) {
        let done: Vec<watch::Receiver<bool>> = {
            let runs = self.lock_runs();
            *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
            runs.values()
                .map(|run| {
                    run.stop.send_if_modified(|current| {
                        current.is_none() && {
                            *current = Some(StopReason::Shutdown);
                            true
                        }
                    });
                    run.done.clone()
                })
                .collect()
        };
        for done in done {
            wait_done(done).await;
        }
    }

    /// Opens every plan the API created that still has work (after a restart or a crash:
    /// attempts found running are recorded `interrupted`) and runs it. A plan that cannot
    /// be opened (its plugin changed, another process holds it) is reported and left.
    pub async fn rehydrate(self: &Arc<Self>) -> Result<usize, ServiceError> {
        let store = self.service.store()?;
        let plans = store
            .active_plans(crate::store::Origin::Api)
            .map_err(|error| self.service.store_error(error))?;
        let mut started = 0;
        for id in plans {
            let how = super::service::Reopen {
                from: super::ResumeFrom::WhereItStopped,
                plugin_change: super::PluginChange::Refuse {
                    hint: "resume it with `planrt resume --allow-plugin-change` or POST /v0/plans/{id}/resume",
                },
                new_params: None,
            };
            match self.service.reopen(id, how, self.observer.as_ref()).await {
                Ok(admitted) => match self.spawn(admitted) {
                    Ok(()) => started += 1,
                    Err(error) => tracing::warn!("plan {id} not resumed: {error}"),
                },
                Err(error) => tracing::error!("plan {id} not resumed: {error}"),
            }
        }
        Ok(started)
    }

    fn lock_runs(&self) -> std::sync::MutexGuard<'_, HashMap<PlanId, Run>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Waits until a run says it is done (or its task is gone).
async fn wait_done(mut done: watch::Receiver<bool>) {
    // An error means the sender is gone: the run's task ended.
    let _ = done.wait_for(|done| *done).await;
}

fn log_end(id: PlanId, outcome: Result<super::Finished, ServiceError>) {
    match outcome {
        Ok(finished) => match finished.end {
            RunEnd::Finished(phase) => tracing::info!(plan = %id, "plan {id} is {phase}"),
            RunEnd::Interrupted => {
                tracing::info!(plan = %id, "plan {id} stopped; it runs again at the next start")
            }
            RunEnd::Cancelled => tracing::info!(plan = %id, "plan {id} cancelled"),
        },
        Err(error) => tracing::error!(plan = %id, "plan {id}: {error}"),
    }
}

/// Ends a run's bookkeeping when its task ends.
struct Finish<'a> {
    supervisor: &'a Supervisor,
    id: PlanId,
    done: watch::Sender<bool>,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        // The claim was released when `execute` returned: whoever waits may claim it.
        self.supervisor.lock_runs().remove(&self.id);
        self.done.send_replace(true);
    }
}
