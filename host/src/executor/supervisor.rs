//! Plans running in the background of a long-lived process (`planrt serve`): each admitted
//! plan executes in its own tokio task; a plan can be stopped (and the stop's outcome
//! waited for), and every run is stopped — recorded `interrupted`, resumable — when the
//! process shuts down. Operations on one plan are serialized by its lock
//! ([`Supervisor::lock_plan`]), shared by the task and plan APIs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::execute::{Observer, RunEnd, StopReason};
use super::id_locks::{IdGuard, IdLocks};
use super::service::{Admitted, Reopen, ReopenRecord, Service, ServiceError};
use crate::plan::{Grants, PlanId};

/// How a background run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Execution ended as recorded.
    Ended(RunEnd),
    /// Execution stopped on an error (a transition could not be recorded, a panic); the
    /// plan is as last recorded.
    Failed(String),
}

/// One plan running in the background.
struct Run {
    stop: watch::Sender<Option<StopReason>>,
    done: watch::Receiver<Option<RunOutcome>>,
}

/// Runs admitted plans in the background.
pub struct Supervisor {
    service: Arc<Service>,
    observer: Arc<dyn Observer>,
    runs: Mutex<HashMap<PlanId, Run>>,
    locks: IdLocks<PlanId>,
    /// Runs that stopped on an error, by plan: how many in a row, and when the next
    /// automatic restart may come.
    failures: Mutex<HashMap<PlanId, Failures>>,
    /// Set once shutting down: nothing new starts.
    closed: AtomicBool,
}

/// Runs of a plan that stopped on an error, in a row.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    retry_after: std::time::Instant,
}

/// How many runs in a row may stop on an error before a plan is left to an operator.
pub const MAX_AUTOMATIC_RESTARTS: u32 = 5;
/// The wait before the first automatic restart; it doubles with each failure.
const FIRST_RESTART_DELAY: std::time::Duration = std::time::Duration::from_secs(30);

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
            locks: IdLocks::default(),
            failures: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
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

    /// Waits for the plan's lock: one request at a time acts on a plan (submit, resume,
    /// cancel, remove), so nothing recorded for it is followed by a refused start.
    pub(super) async fn lock_plan(&self, id: PlanId) -> IdGuard<'_, PlanId> {
        self.locks.lock(id).await
    }

    /// Whether the process is shutting down (nothing new starts).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Starts executing an admitted plan in the background.
    pub fn spawn(self: &Arc<Self>, admitted: Admitted) -> Result<(), SuperviseError> {
        let id = admitted.plan().id();
        let (stop_tx, mut stop_rx) = watch::channel(None);
        let (done_tx, done_rx) = watch::channel(None);
        {
            // Checked under the runs lock, so `shutdown` either sees this run or refuses it.
            let mut runs = self.lock_runs();
            if self.is_closed() {
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
            // Removes the run and tells its waiters how it ended, however the task ends
            // (a panic included).
            let mut finish = Finish {
                supervisor: &this,
                id,
                done: done_tx,
                outcome: None,
            };
            let stop = async move {
                match stop_rx.wait_for(Option::is_some).await {
                    Ok(reason) => reason.unwrap_or(StopReason::Shutdown),
                    // The sender is gone only with the supervisor: stop as for a shutdown.
                    Err(_) => StopReason::Shutdown,
                }
            };
            let outcome = match this
                .service
                .execute(admitted, this.observer.clone(), stop)
                .await
            {
                Ok(finished) => RunOutcome::Ended(finished.end),
                Err(error) => RunOutcome::Failed(format!("{:#}", anyhow::Error::from(error))),
            };
            log_end(id, &outcome);
            this.note(id, &outcome);
            finish.outcome = Some(outcome);
        });
        Ok(())
    }

    /// Starts an admitted plan, or — when the process is shutting down — leaves it as
    /// recorded: it runs when planrt starts again (the API's plans are rehydrated), so a
    /// request that recorded it has done its part.
    pub fn start(self: &Arc<Self>, admitted: Admitted) -> Result<(), SuperviseError> {
        match self.spawn(admitted) {
            Err(SuperviseError::ShuttingDown(id)) => {
                tracing::warn!(plan = %id, "plan {id} is recorded; it runs when planrt starts again");
                Ok(())
            }
            other => other,
        }
    }

    /// Whether this process runs the plan now.
    pub fn is_running(&self, id: PlanId) -> bool {
        self.lock_runs().contains_key(&id)
    }

    /// Stops the plan's run for `reason` and waits until it has ended: how it ended, or
    /// `None` if this process was not running it. A run may end otherwise than asked: it
    /// finished first, a shutdown came first, or the stop could not be recorded.
    pub async fn stop(&self, id: PlanId, reason: StopReason) -> Option<RunOutcome> {
        let done = {
            let runs = self.lock_runs();
            let run = runs.get(&id)?;
            // A stop already asked for (a shutdown) is not replaced.
            run.stop.send_if_modified(|current| {
                current.is_none() && {
                    *current = Some(reason);
                    true
                }
            });
            run.done.clone()
        };
        Some(wait_done(done).await)
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
        let done: Vec<watch::Receiver<Option<RunOutcome>>> = {
            let runs = self.lock_runs();
            self.closed.store(true, Ordering::SeqCst);
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

    /// Opens every plan the API runs that is still active and not running here (after a
    /// restart or a crash: attempts found running are recorded `interrupted`) and runs it.
    /// A plan that can no longer run as it was made (its plugin changed, its params or
    /// grants are refused) is cancelled with the reason, so it does not read `running`
    /// forever; one another process holds, or that cannot be opened for a passing reason
    /// (a plugin not loaded, a directory not mounted, a secret not set, the store), is
    /// left and reported. A plan whose runs stopped on an error is restarted with a
    /// doubling delay, at most [`MAX_AUTOMATIC_RESTARTS`] times in a row.
    /// `within` is the most a plan may grant (the server's `--grants`), checked again.
    /// Run at start, and again from time to time for plans whose run stopped on an error
    /// or that could not be reopened for a passing reason (a plugin that did not load, a
    /// directory not mounted yet, a secret not set).
    pub async fn rehydrate(self: &Arc<Self>, within: &Grants) -> Result<usize, ServiceError> {
        let store = self.service.store()?;
        let stranded = store
            .failed_plans_with_running_attempts(crate::store::Origin::Api)
            .map_err(|error| self.service.store_error(error))?;
        for id in stranded {
            let _lock = self.lock_plan(id).await;
            if self.is_running(id) {
                continue;
            }
            if let Err(error) = self.service.interrupt_idle(id, self.observer.as_ref()) {
                tracing::warn!(plan = %id, "plan {id}: attempts left running not recorded: {error}");
            }
        }
        let plans = store
            .active_plans(crate::store::Origin::Api)
            .map_err(|error| self.service.store_error(error))?;
        let mut started = 0;
        for id in plans {
            if self.is_closed() {
                break;
            }
            let _lock = self.lock_plan(id).await;
            if self.is_running(id) || !self.may_restart(id) {
                continue;
            }
            let how = Reopen {
                from: super::ResumeFrom::WhereItStopped,
                plugin_change: super::PluginChange::Refuse {
                    hint: "resume it with POST /v0/plans/{id}/resume {\"allowPluginChange\": true}",
                },
                new_params: None,
                record: ReopenRecord::Nothing,
                within: Some(within.clone()),
            };
            match self.service.reopen(id, how, self.observer.as_ref()).await {
                Ok(admitted) => match self.spawn(admitted) {
                    Ok(()) => started += 1,
                    Err(error) => tracing::warn!("plan {id} not resumed: {error}"),
                },
                Err(error) if error.is_about_the_plan() => {
                    let reason = format!("not resumed when planrt started: {error}");
                    tracing::error!(plan = %id, "plan {id} {reason}");
                    if let Err(error) =
                        self.service
                            .cancel_idle(id, self.observer.as_ref(), &reason)
                    {
                        tracing::error!(plan = %id, "plan {id} could not be cancelled: {error}");
                    }
                }
                Err(ServiceError::Claim(crate::store::ClaimError::Held { .. })) => {
                    tracing::debug!(plan = %id, "plan {id} is run by another process")
                }
                // It ended (failed, cancelled) since the list was read.
                Err(ServiceError::NotActive { .. }) => {}
                Err(error) => tracing::warn!(
                    plan = %id,
                    "plan {id} not resumed now (tried again later): {error}"
                ),
            }
        }
        Ok(started)
    }

    /// Counts a run that stopped on an error (a clean end clears the count).
    fn note(&self, id: PlanId, outcome: &RunOutcome) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            RunOutcome::Failed(_) => {
                let count = failures.get(&id).map_or(0, |f| f.count) + 1;
                let delay = FIRST_RESTART_DELAY.saturating_mul(1 << (count - 1).min(10));
                failures.insert(
                    id,
                    Failures {
                        count,
                        retry_after: std::time::Instant::now() + delay,
                    },
                );
                if count == MAX_AUTOMATIC_RESTARTS {
                    tracing::error!(
                        plan = %id,
                        "plan {id} stopped on an error {count} times in a row: it is left as recorded; resume it by hand"
                    );
                }
            }
            RunOutcome::Ended(_) => {
                failures.remove(&id);
            }
        }
    }

    /// Whether an automatic restart of the plan may come now.
    fn may_restart(&self, id: PlanId) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.get(&id).is_none_or(|f| {
            f.count < MAX_AUTOMATIC_RESTARTS && std::time::Instant::now() >= f.retry_after
        })
    }

    fn lock_runs(&self) -> std::sync::MutexGuard<'_, HashMap<PlanId, Run>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Waits until a run says how it ended.
async fn wait_done(mut done: watch::Receiver<Option<RunOutcome>>) -> RunOutcome {
    match done.wait_for(Option::is_some).await {
        Ok(outcome) => outcome
            .clone()
            .unwrap_or_else(|| RunOutcome::Failed("the run ended".into())),
        // The sender is gone without an outcome: its task ended abnormally.
        Err(_) => RunOutcome::Failed("the run ended without an outcome".into()),
    }
}

fn log_end(id: PlanId, outcome: &RunOutcome) {
    match outcome {
        RunOutcome::Ended(RunEnd::Finished(phase)) => {
            tracing::info!(plan = %id, "plan {id} is {phase}")
        }
        RunOutcome::Ended(RunEnd::Interrupted) => {
            tracing::info!(plan = %id, "plan {id} stopped; it runs again at the next start")
        }
        RunOutcome::Ended(RunEnd::Cancelled) => tracing::info!(plan = %id, "plan {id} cancelled"),
        RunOutcome::Failed(error) => tracing::error!(plan = %id, "plan {id}: {error}"),
    }
}

/// Ends a run's bookkeeping when its task ends.
struct Finish<'a> {
    supervisor: &'a Supervisor,
    id: PlanId,
    done: watch::Sender<Option<RunOutcome>>,
    outcome: Option<RunOutcome>,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        // The claim was released when `execute` returned: whoever waits may claim it.
        self.supervisor.lock_runs().remove(&self.id);
        let outcome = self
            .outcome
            .take()
            .unwrap_or_else(|| RunOutcome::Failed("the run panicked".into()));
        self.done.send_replace(Some(outcome));
    }
}
