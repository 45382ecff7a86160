//! The attempt loop: ask the plan what may run, record the start, run the attempt in its
//! sandbox, record the outcome — each transition stored before it is reported.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use jiff::Timestamp;
use tokio::task::JoinSet;

use super::batch::Batch;
use super::batch::apply_and_commit;
use super::prepare::PreparedPlan;
use super::secrets::MissingSecret;
use super::slots::{Slot, Slots};
use crate::plan::{
    ErrorKind, Failure, Phase, PlanId, PlanRun, Progress, Task, TaskEvent, Transition,
    TransitionError,
};
use crate::runtime::admission::{Admission, Place};
use crate::runtime::capability::cancellation::CancelSignal;
use crate::runtime::capability::effects::{Barrier, EffectGate};
use crate::runtime::capability::kv::KvAccess;
use crate::runtime::{
    AttemptContext, AttemptError, AttemptInputs, AttemptReport, AttemptRequest, ProgressSink,
    ProgressSlot,
};
use crate::store::{BUSY_TIMEOUT, Commit, StateStore, StoreError};

/// Why execution stopped before the plan finished.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// A transition could not be recorded; the plan is left as last recorded.
    #[error("could not record task state")]
    Store(#[from] StoreError),
    /// The executor asked for a transition the state machine refuses (a bug).
    #[error("internal error")]
    Transition(#[from] TransitionError),
    /// Nothing can run and nothing is running (a bug).
    #[error("internal error: plan {0} is active but no task can run")]
    Stalled(crate::plan::PlanId),
}

/// Told about every recorded transition (after it is stored) and about progress.
pub trait Observer: Send + Sync {
    /// A task of `plan` changed status; `task` is its state after the change, as it was
    /// stored (its fields and, from the executor's loop, only its newest attempt). Called
    /// in the order the transitions happened, on whatever thread stored them.
    fn transition(&self, plan: PlanId, task: &Task, transition: Transition);
    /// Where a running attempt's progress reports go.
    fn progress_sink(&self, _task: &Task) -> Option<Arc<dyn ProgressSink>> {
        None
    }
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The plan completed or failed.
    Finished(Phase),
    /// Stopped for a shutdown: the running attempt was recorded `interrupted`; the plan
    /// re-runs it, without using budget, when it is resumed.
    Interrupted,
    /// Cancelled by an operator: the running attempt (or the next one) was recorded
    /// `cancelled` and the plan is failed, resumable.
    Cancelled,
}

/// Why a run is asked to stop before its plan finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The process is stopping (a signal): what runs is `interrupted`.
    Shutdown,
    /// An operator cancelled the plan: what runs is `cancelled`.
    Cancel,
}

impl StopReason {
    /// What a running attempt stopped for this reason is recorded as, and why.
    fn attempt_end(self) -> (ErrorKind, &'static str) {
        match self {
            StopReason::Shutdown => (
                ErrorKind::Interrupted,
                "planrt was stopped during this attempt",
            ),
            StopReason::Cancel => (ErrorKind::Cancelled, "cancelled by an operator"),
        }
    }
}

/// How long past a call's cancellation grace (none unless it asked `cancelled()`) the
/// executor still waits for it to end on its own (interrupted guest code unwinds within
/// an epoch tick or two) before it drops the call — a guest waiting on host I/O is not
/// interrupted by epochs.
const STOP_MARGIN: Duration = Duration::from_millis(250);

/// How much of an attempt's wait for the commit of its start is not counted against its
/// timeout: the longest a queued transition waits for another process's write lock, and
/// a margin for the commit itself. Past it the wait counts (a disk that hangs ends the
/// attempt by its timeout, never keeps it forever).
const GATE_CREDIT: Duration = Duration::from_secs(BUSY_TIMEOUT.as_secs() + 5);

/// What executing a plan works with besides the plan.
pub struct Execution<'a> {
    /// The plan checked against plugins and grants.
    pub prepared: &'a PreparedPlan,
    /// Where every transition is recorded first.
    pub store: &'a dyn StateStore,
    /// Told about each recorded transition (by the store's writer, for what the loop
    /// queues).
    pub observer: Arc<dyn Observer>,
    /// Turns to run attempts, shared with other plans.
    pub slots: &'a Slots,
    /// Places in the instance pool, shared with every other store of the runtime.
    pub admission: &'a Admission,
    /// The plugins' key-value store.
    pub kv: KvAccess,
    /// At most this many of the plan's attempts at once (a graph's `maxParallel`; a plan
    /// without `dependsOn` runs one task at a time whatever this is).
    pub max_parallel: usize,
}

/// One attempt, from its request to its report.
type AttemptFuture = Pin<Box<dyn Future<Output = (usize, AttemptReport)> + Send>>;

/// Where the attempts run.
enum Attempts {
    /// Each in a tokio task of its own, so a graph's guests run on every worker thread.
    Spawned(JoinSet<(usize, AttemptReport)>),
    /// On the executor's own thread: a plan that runs one attempt at a time (a chain, or
    /// `maxParallel = 1`) gains nothing from another thread but two handoffs per task.
    Inline(FuturesUnordered<AttemptFuture>),
}

/// The attempts in flight, with the handles the executor keeps on each.
struct InFlight {
    attempts: Attempts,
    handles: HashMap<usize, Handles>,
}

/// An attempt that ended, with the last progress it reported.
struct Ended {
    index: usize,
    report: AttemptReport,
    progress: Option<Progress>,
}

/// What the executor shares with one attempt in flight.
struct Handles {
    /// Tells it to stop.
    cancel: CancelSignal,
    /// Where it keeps its last progress (read when it ends, or is dropped at a stop).
    progress: ProgressSlot,
}

impl InFlight {
    fn new(one_at_a_time: bool) -> Self {
        let attempts = match one_at_a_time {
            true => Attempts::Inline(FuturesUnordered::new()),
            false => Attempts::Spawned(JoinSet::new()),
        };
        Self {
            attempts,
            handles: HashMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.handles.len()
    }

    /// Runs the attempts whose starts were queued in `started`, each holding its turn
    /// until it ends; what each does outside its sandbox waits for that commit.
    fn launch(&mut self, launches: Vec<Launch>, prepared: &PreparedPlan, started: &Commit) {
        for launch in launches {
            let Launch {
                index,
                turn,
                handles,
                request,
            } = launch;
            let gate = EffectGate::new(StartStored(started.clone()), GATE_CREDIT);
            let request = request.map(|request| AttemptRequest {
                inputs: request.inputs.with(gate),
                ..request
            });
            self.handles.insert(index, handles);
            let task = prepared.tasks[index].clone();
            let attempt: AttemptFuture = Box::pin(async move {
                let Turn { slot, place } = turn;
                let report = match request {
                    Ok(request) => task.plugin.run(&task.sandbox, request, place).await,
                    Err(missing) => AttemptReport {
                        result: Err(AttemptError::Sandbox(missing.to_string())),
                        log_tail: None,
                    },
                };
                drop(slot);
                (index, report)
            });
            match &mut self.attempts {
                Attempts::Spawned(set) => drop(set.spawn(attempt)),
                Attempts::Inline(inline) => inline.push(attempt),
            }
        }
    }

    /// The attempts that have ended already, without waiting for the others.
    fn ended(&mut self) -> Vec<Ended> {
        let mut ended = Vec::new();
        loop {
            let next = match &mut self.attempts {
                Attempts::Spawned(set) => set.try_join_next().map(unwrap_joined),
                Attempts::Inline(inline) => inline.next().now_or_never().flatten(),
            };
            let Some(next) = next else {
                return ended;
            };
            ended.push(self.settle(next));
        }
    }

    /// An attempt that ended, no longer in flight: its handles go, its last progress is
    /// read.
    fn settle(&mut self, (index, report): (usize, AttemptReport)) -> Ended {
        let progress = self.handles.remove(&index).and_then(|h| h.progress.get());
        Ended {
            index,
            report,
            progress,
        }
    }

    /// Aborts what still runs and collects, for at most `patience`, the attempts that
    /// end meanwhile (one may finish in the instant before its abort lands: its report
    /// counts). An attempt inside a blocking host call ends when the call returns; work
    /// a guest handed to tokio's blocking pool runs on to its end regardless.
    async fn abort(self, patience: Duration) -> Vec<(usize, AttemptReport)> {
        let mut ended = Vec::new();
        match self.attempts {
            Attempts::Spawned(mut set) => {
                set.abort_all();
                let deadline = tokio::time::Instant::now() + patience;
                loop {
                    match tokio::time::timeout_at(deadline, set.join_next()).await {
                        Ok(Some(Ok(report))) => ended.push(report),
                        Ok(Some(Err(error))) if error.is_panic() => {
                            std::panic::resume_unwind(error.into_panic())
                        }
                        Ok(Some(Err(_aborted))) => {}
                        Ok(None) => break,
                        Err(_) => {
                            tracing::warn!(
                                "{} attempt(s) still inside a host call after the stop",
                                set.len()
                            );
                            set.detach_all();
                            break;
                        }
                    }
                }
            }
            Attempts::Inline(inline) => drop(inline),
        }
        ended
    }

    /// The next attempt to end. A panic in an attempt's task is a bug: it is raised here.
    async fn next(&mut self) -> Option<Ended> {
        let next = match &mut self.attempts {
            Attempts::Spawned(set) => unwrap_joined(set.join_next().await?),
            Attempts::Inline(inline) => inline.next().await?,
        };
        Some(self.settle(next))
    }
}

/// An attempt's task's result; a panic in it (a bug) is raised here.
fn unwrap_joined(
    joined: Result<(usize, AttemptReport), tokio::task::JoinError>,
) -> (usize, AttemptReport) {
    match joined {
        Ok(ended) => ended,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Tasks are aborted only by `InFlight::abort`, which takes the set.
        Err(error) => unreachable!("an attempt's task ended without a result: {error}"),
    }
}

/// An attempt's turn: a slot among the attempts this process runs at once, then a place
/// in the instance pool — both taken before the task starts, so a task waiting for
/// either is still `Pending`.
struct Turn {
    slot: Slot,
    place: Place,
}

/// Turns asked for and not yet given (a turn is not tied to a task: the task is chosen
/// when the turn comes, from what is runnable then).
type Turns = FuturesUnordered<Pin<Box<dyn Future<Output = Turn> + Send>>>;

/// What woke the executor.
enum Wake {
    Stop(StopReason),
    Refused(StoreError),
    Turn(Turn),
    Ended(Ended),
    Backoff,
}

/// Runs `plan` until it completes or fails, or until `stop` resolves (a signal, a
/// cancel). `plan` must already be recorded in the store.
///
/// Every task the plan says is runnable starts, up to `max_parallel` at once, each with a
/// turn from `slots` (a graph's each in a tokio task of its own, a chain's on this
/// thread); every transition is recorded
/// before anything else sees it, by this loop alone. Once a task has failed for good,
/// nothing new starts; the attempts in flight end and are recorded.
pub async fn execute(
    plan: &mut PlanRun,
    execution: Execution<'_>,
    stop: impl Future<Output = StopReason>,
) -> Result<RunEnd, ExecuteError> {
    let execution = Execution {
        max_parallel: execution.max_parallel.max(1),
        ..execution
    };
    // The last batch queued: what comes out of the loop waits until it is stored.
    let mut tail: Option<Commit> = None;
    let result = drive(plan, &execution, stop, &mut tail).await;
    if result.is_err() {
        // What was queued is stored or refused before the plan is let go (its claim with
        // it): rows written later could be read, stale, by whoever takes it next.
        let _ = stored(&tail).await;
    }
    result
}

/// The loop of [`execute`]; `tail` is the last batch it queued.
async fn drive(
    plan: &mut PlanRun,
    execution: &Execution<'_>,
    stop: impl Future<Output = StopReason>,
    tail: &mut Option<Commit>,
) -> Result<RunEnd, ExecuteError> {
    let (slots, admission, max_parallel) =
        (execution.slots, execution.admission, execution.max_parallel);
    tokio::pin!(stop);
    let mut in_flight = InFlight::new(!plan.graph().is_explicit() || max_parallel == 1);
    let mut turns: Turns = FuturesUnordered::new();
    loop {
        let now = Timestamp::now();
        if plan.phase() == Phase::Active {
            // As many turns as tasks that could use one now.
            let room = max_parallel.saturating_sub(in_flight.len());
            let wanted = plan.runnable(now).take(room).count();
            while turns.len() < wanted {
                let (slots, admission) = (slots.clone(), admission.clone());
                turns.push(Box::pin(async move {
                    let (slot, place) = slots.acquire_then(admission.admit_attempt()).await;
                    Turn { slot, place }
                }));
            }
        } else {
            // Nothing new starts: give up the places in the queue.
            turns.clear();
        }
        let wake = plan.next_wake(now);
        if in_flight.len() == 0 && turns.is_empty() {
            match (plan.phase(), wake) {
                (Phase::Active, None) => return Err(ExecuteError::Stalled(plan.id())),
                (Phase::Active, Some(_)) => {}
                (phase, _) => {
                    // Reported once the last of its transitions is stored.
                    stored(tail).await?;
                    return Ok(RunEnd::Finished(phase));
                }
            }
        }
        let sleep = async {
            match wake {
                Some(until) => {
                    let wait = until.duration_since(Timestamp::now());
                    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await
                }
                None => std::future::pending().await,
            }
        };
        // Queuing a batch never awaits, so no branch is ever dropped halfway through one.
        let woke = tokio::select! {
            biased;
            reason = &mut stop => Wake::Stop(reason),
            error = refused(tail) => Wake::Refused(error),
            Some(ended) = in_flight.next() => Wake::Ended(ended),
            Some(turn) = turns.next() => Wake::Turn(turn),
            () = sleep => Wake::Backoff,
        };
        let result = match woke {
            Wake::Stop(reason) => {
                drop(turns);
                return stop_all(plan, reason, in_flight, execution, tail).await;
            }
            // The store refused a batch: nothing after it can be stored.
            Wake::Refused(error) => Err(ExecuteError::Store(error)),
            Wake::Backoff => Ok(()),
            Wake::Ended(first) => {
                // With the ends of any others that ended meanwhile, and the turns already
                // given (they go first: a free turn would pass them).
                let mut ended = vec![first];
                ended.extend(in_flight.ended());
                let given = given_turns(&mut turns);
                execution.advance(plan, ended, given, &mut in_flight, tail)
            }
            // Room is checked again: turns asked for earlier may outnumber it now. A turn
            // with nothing to run (a failure, a backoff) goes back.
            Wake::Turn(turn) => {
                let mut given = vec![turn];
                given.extend(given_turns(&mut turns));
                execution.advance(plan, Vec::new(), given, &mut in_flight, tail)
            }
        };
        if let Err(error) = result {
            // Nothing more can be recorded: the attempts in flight are told and dropped
            // (their rows stay `running`; `resume` records them interrupted).
            for handles in in_flight.handles.values() {
                handles.cancel.raise(
                    ErrorKind::Interrupted,
                    "planrt stopped after an internal error",
                );
            }
            return Err(error);
        }
    }
}

/// The turns asked for earlier that are already given, without waiting for the others.
/// (Polling them here with no waker loses no wake-up: the loop polls `turns` again.)
fn given_turns(turns: &mut Turns) -> Vec<Turn> {
    std::iter::from_fn(|| turns.next().now_or_never().flatten()).collect()
}

/// An attempt whose start is in a batch: launched once the batch is queued (what it does
/// outside its sandbox waits for the batch to be stored).
struct Launch {
    index: usize,
    turn: Turn,
    handles: Handles,
    request: Result<AttemptRequest, MissingSecret>,
}

/// An attempt's effects wait for the commit that stores its start.
struct StartStored(Commit);

impl Barrier for StartStored {
    fn passed(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async {
            self.0
                .stored()
                .await
                .map_err(|error| format!("its start could not be recorded: {error}"))
        })
    }

    fn decided_at(&self) -> Option<std::time::Instant> {
        self.0.settled_at()
    }
}

/// Waits until the last batch the loop queued (`tail`) — and so every one before it — is
/// stored.
async fn stored(tail: &Option<Commit>) -> Result<(), ExecuteError> {
    match tail {
        Some(commit) => Ok(commit.stored().await?),
        None => Ok(()),
    }
}

/// Resolves if the last batch queued (`tail`) is refused; never if it is stored.
async fn refused(tail: &Option<Commit>) -> StoreError {
    match tail {
        Some(commit) => match commit.stored().await {
            Err(error) => error,
            Ok(()) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

impl Execution<'_> {
    /// Queues the `ended` attempts and the starts they make possible (with the `given`
    /// turns first, then turns free at once, within `max_parallel`) as one commit after
    /// `tail`, then launches the started attempts, their effects gated on that commit.
    /// Turns left unused go back.
    fn advance(
        &self,
        plan: &mut PlanRun,
        ended: Vec<Ended>,
        given: Vec<Turn>,
        in_flight: &mut InFlight,
        tail: &mut Option<Commit>,
    ) -> Result<(), ExecuteError> {
        let mut batch = Batch::queued(self.store, self.observer.clone(), tail.take());
        let applied = end_all(plan, &mut batch, ended, self.prepared).and_then(|()| {
            let room = self.max_parallel.saturating_sub(in_flight.len());
            self.start_ready(plan, &mut batch, given, room)
        });
        // Starts stored and not launched (after a refusal) are found `running` by
        // `resume`, which records them interrupted.
        let launches = batch.commit_then(plan, applied);
        *tail = batch.into_tail();
        let launches = launches?;
        if !launches.is_empty() {
            let started = tail
                .as_ref()
                .expect("the batch holding their starts was queued");
            in_flight.launch(launches, self.prepared, started);
        }
        Ok(())
    }

    /// Starts, in `batch`, up to `room` of the tasks runnable now that the batch does not
    /// hold yet, each with a turn: the `given` ones first, then turns free at once (none
    /// waits here; the executor's loop asks for the rest). Nothing starts once the plan
    /// is no longer active; unused turns go back.
    fn start_ready(
        &self,
        plan: &mut PlanRun,
        batch: &mut Batch<'_>,
        given: Vec<Turn>,
        room: usize,
    ) -> Result<Vec<Launch>, ExecuteError> {
        let mut given = given.into_iter();
        let now = Timestamp::now();
        let ready: Vec<usize> = plan
            .runnable(now)
            .filter(|&index| !batch.holds(index))
            .take(room)
            .collect();
        let mut launches = Vec::with_capacity(ready.len());
        for index in ready {
            let Some(turn) = given.next().or_else(|| self.free_turn()) else {
                break;
            };
            launches.push(self.start(plan, batch, index, now, turn)?);
        }
        Ok(launches)
    }

    /// A turn if a slot and a place are both free now.
    fn free_turn(&self) -> Option<Turn> {
        let (slot, place) = self
            .slots
            .try_acquire_then(|| self.admission.try_admit_attempt())?;
        Some(Turn { slot, place })
    }

    /// Applies the start of an attempt of the task at `index` in `batch` and builds its
    /// request (or the missing secret that fails it).
    fn start(
        &self,
        plan: &mut PlanRun,
        batch: &mut Batch<'_>,
        index: usize,
        started: Timestamp,
        turn: Turn,
    ) -> Result<Launch, ExecuteError> {
        batch.apply(plan, index, TaskEvent::Start { at: started })?;
        let handles = Handles {
            cancel: CancelSignal::new(),
            progress: ProgressSlot::new(),
        };
        let task = &plan.tasks()[index];
        let prepared_task = &self.prepared.tasks[index];
        let attempt = task.last_attempt().map_or(1, |a| a.attempt);
        let deadline = std::time::SystemTime::now() + prepared_task.sandbox.limits().timeout;
        // Secrets are resolved now, into this attempt's request only.
        let redactor = &self.prepared.redactor;
        let request =
            super::secrets::resolve_from_env(task.params()).map(|resolved| AttemptRequest {
                context: AttemptContext {
                    plan_id: plan.id().to_string(),
                    task_id: task.id().to_string(),
                    task_type: task.task_type().to_string(),
                    plan_index: index as u32,
                    attempt,
                    max_retries: task.policy().max_retries,
                    deadline_unix_ms: deadline
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                },
                params: serde_json::to_string(&resolved.params).expect("JSON values serialize"),
                inputs: AttemptInputs::new(redactor.clone(), self.observer.progress_sink(task))
                    .with(handles.cancel.clone())
                    .with(handles.progress.clone())
                    .with(self.kv.clone()),
            });
        Ok(Launch {
            index,
            turn,
            handles,
            request,
        })
    }
}

/// After a stop: every attempt in flight is told (a 0.2.0 plugin sees `cancelled()`) and
/// given its grace to end, recorded as it ends; past the longest grace, what still runs
/// is dropped and recorded as the stop says. Nothing new starts.
async fn stop_all(
    plan: &mut PlanRun,
    reason: StopReason,
    mut in_flight: InFlight,
    execution: &Execution<'_>,
    tail: &Option<Commit>,
) -> Result<RunEnd, ExecuteError> {
    let (prepared, store, observer) = (execution.prepared, execution.store, &*execution.observer);
    let (kind, why) = reason.attempt_end();
    for handles in in_flight.handles.values() {
        handles.cancel.raise(kind, why);
    }
    // What was queued before the stop is stored first: the stop is recorded after it, or
    // not at all (its attempts are then dropped, their rows left as last stored).
    stored(tail).await?;
    let patience = in_flight
        .handles
        .values()
        .map(|handles| handles.cancel.patience())
        .max();
    if let Some(patience) = patience {
        let deadline = tokio::time::Instant::now() + patience + STOP_MARGIN;
        while let Ok(Some(first)) = tokio::time::timeout_at(deadline, in_flight.next()).await {
            // With the others that ended meanwhile: one commit for them all.
            let mut ended = vec![first];
            ended.extend(in_flight.ended());
            let mut batch = Batch::new(store, observer);
            let applied = end_all(plan, &mut batch, ended, prepared);
            batch.commit_then(plan, applied)?;
        }
    }
    // Attempts that ended by the deadline, or in the instant before their abort, are
    // recorded as they ended; the others, once aborted, as the stop says, with the last
    // progress they reported.
    let mut ended = in_flight.ended();
    let handles = std::mem::take(&mut in_flight.handles);
    let last_progress = |index: usize| handles.get(&index).and_then(|h| h.progress.get());
    let aborted = in_flight.abort(STOP_MARGIN).await;
    ended.extend(aborted.into_iter().map(|(index, report)| Ended {
        index,
        report,
        progress: last_progress(index),
    }));
    let mut batch = Batch::new(store, observer);
    let applied = end_all(plan, &mut batch, ended, prepared);
    batch.commit_then(plan, applied)?;
    match reason {
        StopReason::Shutdown => {
            interrupt_running(plan, store, observer, why, &last_progress)?;
            // The attempts may have finished the plan during their grace.
            if plan.phase() != Phase::Active {
                return Ok(RunEnd::Finished(plan.phase()));
            }
            Ok(RunEnd::Interrupted)
        }
        StopReason::Cancel => {
            let cancelled = cancel(plan, store, observer, why, &last_progress)?;
            // The attempts may have ended during their grace: if that finished the plan,
            // there is nothing left to cancel.
            if !cancelled && plan.phase() == Phase::Complete {
                return Ok(RunEnd::Finished(plan.phase()));
            }
            Ok(RunEnd::Cancelled)
        }
    }
}

/// Stops a plan for good until an operator runs it again: every running attempt is
/// recorded `cancelled`; if none runs, the task that would run next is failed before it
/// starts. All in one commit; each attempt keeps the last progress `last_progress` knows
/// of its task. Returns whether anything was cancelled (not for a finished plan).
pub fn cancel(
    plan: &mut PlanRun,
    store: &dyn StateStore,
    observer: &dyn Observer,
    reason: &str,
    last_progress: &dyn Fn(usize) -> Option<Progress>,
) -> Result<bool, ExecuteError> {
    let mut targets = plan.running_tasks();
    if targets.is_empty()
        && plan.phase() == Phase::Active
        && let Some(next) = plan.next_ready()
    {
        targets.push(next);
    }
    let at = Timestamp::now();
    let events = targets.iter().map(|&index| {
        let reason = reason.to_owned();
        let progress = last_progress(index);
        (
            index,
            TaskEvent::Cancel {
                at,
                reason,
                progress,
            },
        )
    });
    apply_and_commit(plan, events.collect(), store, observer)?;
    Ok(!targets.is_empty())
}

/// Records every running task's attempt `interrupted` (it re-runs without using retry
/// budget), in one commit: after a stop signal, or on resume after a crash (when
/// `last_progress` knows nothing: the process that ran them is gone).
pub fn interrupt_running(
    plan: &mut PlanRun,
    store: &dyn StateStore,
    observer: &dyn Observer,
    why: &str,
    last_progress: &dyn Fn(usize) -> Option<Progress>,
) -> Result<(), ExecuteError> {
    let at = Timestamp::now();
    let events = plan
        .running_tasks()
        .into_iter()
        .map(|index| {
            let progress = last_progress(index);
            let event = fail(
                at,
                ErrorKind::Interrupted,
                why.to_owned(),
                None,
                None,
                progress,
            );
            (index, event)
        })
        .collect();
    apply_and_commit(plan, events, store, observer)
}

/// Applies, in `batch`, how each of the `ended` attempts ended: all of them, even past a
/// refusal (a bug), which is returned after — an attempt that ended is never dropped
/// unrecorded because another one was refused.
fn end_all(
    plan: &mut PlanRun,
    batch: &mut Batch<'_>,
    ended: Vec<Ended>,
    prepared: &PreparedPlan,
) -> Result<(), ExecuteError> {
    let mut first_error = None;
    for ended in ended {
        if let Err(error) = end_attempt(plan, batch, ended, prepared) {
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Applies, in `batch`, how the attempt `ended` ended, with the last progress it reported.
fn end_attempt(
    plan: &mut PlanRun,
    batch: &mut Batch<'_>,
    Ended {
        index,
        report,
        progress,
    }: Ended,
    prepared: &PreparedPlan,
) -> Result<(), ExecuteError> {
    let redactor = &prepared.redactor;
    let at = Timestamp::now();
    // What the plugin said is masked before it is stored or reported (its log tail is
    // masked by the runtime).
    let event = match report.result.map_err(|e| e.redacted(redactor)) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(output) => TaskEvent::Succeed {
                at,
                output: redactor.redact_json(output),
                log_tail: report.log_tail,
                progress,
            },
            Err(e) => fail(
                at,
                ErrorKind::Permanent,
                format!("the plugin's output is not JSON: {e}"),
                None,
                report.log_tail,
                progress,
            ),
        },
        Err(error) => fail(
            at,
            error.kind(),
            error.to_string(),
            error.backtrace().map(str::to_owned),
            report.log_tail,
            progress,
        ),
    };
    batch.apply(plan, index, event)
}

fn fail(
    at: Timestamp,
    kind: ErrorKind,
    message: String,
    backtrace: Option<String>,
    log_tail: Option<String>,
    progress: Option<Progress>,
) -> TaskEvent {
    TaskEvent::Fail {
        at,
        failure: Failure {
            kind,
            message,
            backtrace,
            log_tail,
            progress,
        },
        jitter_sample: rand::random::<f64>(),
    }
}
