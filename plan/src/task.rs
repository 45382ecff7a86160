//! One task's state and its single transition function (docs/DESIGN.md §2).
//!
//! Every status change of a task goes through [`Task::apply`]; the fields are private so
//! nothing else can change them. The legal moves are the rows of [`Task::target`].

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error_kind::{Disposition, ErrorKind};
use super::graph::{Links, TaskName};
use super::ids::{PlanId, TaskId, TaskType};
use super::policy::{LimitOverrides, RetryPolicy};

/// Where a task is in its life. Named as in the reference controller's JSON (`Pending`,
/// …) everywhere: serde and strum both use the variant name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
pub enum TaskStatus {
    /// Waiting for its turn, its dependencies or its backoff.
    Pending,
    /// An attempt is in flight.
    Running,
    /// Its last attempt succeeded.
    Complete,
    /// Its last attempt failed and no retry is left (or the error is not retried).
    Failed,
}

/// How an attempt ended (or that it has not): `running`, `complete` or `failed`
/// everywhere (serde and strum share the rule).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum AttemptOutcome {
    /// Still in flight (or the host died during it, until it is recorded interrupted).
    Running,
    /// The plugin returned output.
    Complete,
    /// The attempt failed; `error_kind` says why.
    Failed,
}

/// What a progress report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressUnit {
    /// Things (files, blocks…), or a count of no stated unit (plugins built before
    /// `planrt:task@0.3.0`).
    #[default]
    Items,
    /// Bytes.
    Bytes,
}

/// The last progress an attempt reported, kept in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// How much was done.
    pub done: u64,
    /// Of how much, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// What `done` and `total` count.
    pub unit: ProgressUnit,
    /// What was happening (secrets masked).
    pub note: String,
}

/// One attempt of a task. Attempts are append-only: a retry adds one, never rewrites one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1-based attempt number.
    pub attempt: u32,
    /// When the attempt started.
    pub started_at: Timestamp,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// The failure's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The guest call stack of a trap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backtrace: Option<String>,
    /// The end of what the plugin logged and wrote to stdout/stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    /// The last progress the plugin reported, recorded when the attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// A failed attempt as the executor saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Why it failed; decides the retry.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
    /// The guest call stack, for traps.
    pub backtrace: Option<String>,
    /// The end of the attempt's log.
    pub log_tail: Option<String>,
    /// The last progress the attempt reported.
    pub progress: Option<Progress>,
}

/// Something that happens to a task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    /// The executor starts a new attempt.
    Start {
        /// The current time.
        at: Timestamp,
    },
    /// The running attempt returned output.
    Succeed {
        /// The current time.
        at: Timestamp,
        /// The plugin's output.
        output: Value,
        /// The end of the attempt's log.
        log_tail: Option<String>,
        /// The last progress the attempt reported.
        progress: Option<Progress>,
    },
    /// The running attempt failed.
    Fail {
        /// The current time.
        at: Timestamp,
        /// What failed.
        failure: Failure,
        /// A uniform sample in `[0, 1)` for the backoff's jitter.
        jitter_sample: f64,
    },
    /// Operator: run a failed task again as its next attempt (resume, or a failed task
    /// submitted again over HTTP, with new params when given). Keeps the retry count.
    Resubmit {
        /// The params of the next attempts (`None`: unchanged).
        params: Option<Value>,
    },
    /// Operator (`resume --from`, or a removed task submitted again over HTTP): back to
    /// pending with a fresh retry budget, even if the task completed. The only way a
    /// completed task runs again.
    Reset {
        /// The params of the next attempts (`None`: unchanged).
        params: Option<Value>,
    },
    /// Operator (`DELETE` over HTTP): the task stops — its running attempt ends
    /// `cancelled`, or its next attempt never starts — and it is failed until resumed or
    /// resubmitted. No retry budget is used.
    Cancel {
        /// The current time.
        at: Timestamp,
        /// Who or what cancelled it, for people.
        reason: String,
        /// The last progress the running attempt reported, if one runs and reported.
        progress: Option<Progress>,
    },
}

impl TaskEvent {
    /// Which kind of event this is.
    pub fn kind(&self) -> EventKind {
        match self {
            TaskEvent::Start { .. } => EventKind::Start,
            TaskEvent::Succeed { .. } => EventKind::Succeed,
            TaskEvent::Fail { .. } => EventKind::Fail,
            TaskEvent::Resubmit { .. } => EventKind::Resubmit,
            TaskEvent::Reset { .. } => EventKind::Reset,
            TaskEvent::Cancel { .. } => EventKind::Cancel,
        }
    }

    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

/// A status change that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Status before.
    pub from: TaskStatus,
    /// Status after.
    pub to: TaskStatus,
    /// The row of [`TRANSITIONS`] that applied.
    pub row: usize,
}

/// A stored task in a state the transition table cannot reach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored task {index} cannot be restored: {what}")]
pub struct RestoreError {
    /// The task's position.
    pub index: usize,
    /// What is inconsistent.
    pub what: String,
}

/// An event that does not apply to the task as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// No row of the transition table matches.
    #[error("task {index} is {from}: cannot {event}")]
    Illegal {
        /// The task's position.
        index: usize,
        /// The task's status.
        from: TaskStatus,
        /// The event's name.
        event: &'static str,
    },
    /// A start before the stored backoff has elapsed.
    #[error("task {index} may not start before {until}")]
    BackoffNotElapsed {
        /// The task's position.
        index: usize,
        /// When it may start.
        until: Timestamp,
    },
    /// A start while a task it waits for is not complete.
    #[error("task {index} may not start before task {blocking} is complete")]
    Blocked {
        /// The task's position.
        index: usize,
        /// The first incomplete task it waits for.
        blocking: usize,
    },
    /// No task at that position.
    #[error("the plan has no task {0}")]
    NoSuchTask(usize),
}

/// One task of a plan: identity, params, policy, status and attempt history.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    index: usize,
    task_type: TaskType,
    id: TaskId,
    name: Option<TaskName>,
    depends_on: Option<Vec<TaskName>>,
    params: Value,
    policy: RetryPolicy,
    limits: LimitOverrides,
    status: TaskStatus,
    retry_count: u32,
    next_attempt_at: Option<Timestamp>,
    output: Option<Value>,
    error: Option<String>,
    attempts: Vec<Attempt>,
}

/// A task's fields as durable state keeps them, to rebuild it with [`Task::restore`].
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// 0-based position in the plan.
    pub index: usize,
    /// The task type.
    pub task_type: TaskType,
    /// The task ID.
    pub id: TaskId,
    /// Its name in the plan, if it has one.
    pub name: Option<TaskName>,
    /// The names of the tasks it waits for, if it says.
    pub depends_on: Option<Vec<TaskName>>,
    /// Params as JSON.
    pub params: Value,
    /// Retry policy.
    pub policy: RetryPolicy,
    /// Per-attempt limits set by the plan.
    pub limits: LimitOverrides,
    /// Status.
    pub status: TaskStatus,
    /// Retries used.
    pub retry_count: u32,
    /// Earliest start of the next attempt.
    pub next_attempt_at: Option<Timestamp>,
    /// Output of the successful attempt.
    pub output: Option<Value>,
    /// Error of the latest failed attempt.
    pub error: Option<String>,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
}

impl Task {
    /// The task's fields, moved out: what [`Task::restore`] takes back.
    pub fn into_record(self) -> TaskRecord {
        TaskRecord {
            index: self.index,
            task_type: self.task_type,
            id: self.id,
            name: self.name,
            depends_on: self.depends_on,
            params: self.params,
            policy: self.policy,
            limits: self.limits,
            status: self.status,
            retry_count: self.retry_count,
            next_attempt_at: self.next_attempt_at,
            output: self.output,
            error: self.error,
            attempts: self.attempts,
        }
    }

    /// A new pending task; its ID is derived from the plan ID, type and index.
    pub fn new(
        plan_id: PlanId,
        index: usize,
        task_type: TaskType,
        params: Value,
        policy: RetryPolicy,
        limits: LimitOverrides,
    ) -> Self {
        let id = TaskId::derive(plan_id, &task_type, index);
        Self::pending(index, id, task_type, params, policy, limits)
    }

    /// A new pending task submitted on its own with a caller-chosen ID (the task API):
    /// the only task of its plan.
    pub fn submitted(
        id: TaskId,
        task_type: TaskType,
        params: Value,
        policy: RetryPolicy,
        limits: LimitOverrides,
    ) -> Self {
        Self::pending(0, id, task_type, params, policy, limits)
    }

    /// A task that has not run yet.
    fn pending(
        index: usize,
        id: TaskId,
        task_type: TaskType,
        params: Value,
        policy: RetryPolicy,
        limits: LimitOverrides,
    ) -> Self {
        Self::from_record(TaskRecord {
            index,
            task_type,
            id,
            name: None,
            depends_on: None,
            params,
            policy,
            limits,
            status: TaskStatus::Pending,
            retry_count: 0,
            next_attempt_at: None,
            output: None,
            error: None,
            attempts: Vec::new(),
        })
    }

    /// Rebuilds a task the state store kept. Only states the transition table can reach
    /// are accepted: attempts numbered 1…n, a running attempt exactly when the task is
    /// `Running` (and only the last), the last attempt complete with an output when it is
    /// `Complete`, no running attempt, an error and neither output nor backoff when it is
    /// `Failed`.
    pub fn restore(record: TaskRecord) -> Result<Self, RestoreError> {
        let problem = |what: String| RestoreError {
            index: record.index,
            what,
        };
        if let Some((i, a)) = record
            .attempts
            .iter()
            .enumerate()
            .find(|(i, a)| a.attempt as usize != i + 1)
        {
            return Err(problem(format!(
                "attempt {} is numbered {}",
                i + 1,
                a.attempt
            )));
        }
        let running = record
            .attempts
            .iter()
            .filter(|a| a.outcome == AttemptOutcome::Running)
            .count();
        let last = record.attempts.last().map(|a| a.outcome);
        let consistent = match record.status {
            TaskStatus::Running => running == 1 && last == Some(AttemptOutcome::Running),
            TaskStatus::Complete => {
                running == 0 && last == Some(AttemptOutcome::Complete) && record.output.is_some()
            }
            // Usually its last attempt failed; a task cancelled before its next attempt
            // started keeps only the error saying so. Every way in clears the output and
            // the backoff.
            TaskStatus::Failed => {
                running == 0
                    && record.error.is_some()
                    && record.output.is_none()
                    && record.next_attempt_at.is_none()
            }
            TaskStatus::Pending => running == 0,
        };
        if !consistent {
            return Err(problem(format!(
                "it is {} with {running} running attempt(s), the last one {}",
                record.status,
                last.map_or("absent".to_owned(), |o| o.to_string())
            )));
        }
        Ok(Self::from_record(record))
    }

    fn from_record(parts: TaskRecord) -> Self {
        Self {
            index: parts.index,
            task_type: parts.task_type,
            id: parts.id,
            name: parts.name,
            depends_on: parts.depends_on,
            params: parts.params,
            policy: parts.policy,
            limits: parts.limits,
            status: parts.status,
            retry_count: parts.retry_count,
            next_attempt_at: parts.next_attempt_at,
            output: parts.output,
            error: parts.error,
            attempts: parts.attempts,
        }
    }

    /// 0-based position in the plan.
    pub fn index(&self) -> usize {
        self.index
    }
    /// The task type.
    pub fn task_type(&self) -> &TaskType {
        &self.task_type
    }
    /// The task ID.
    pub fn id(&self) -> TaskId {
        self.id
    }
    /// Its name in the plan, if it has one.
    pub fn name(&self) -> Option<&TaskName> {
        self.name.as_ref()
    }
    /// The names of the tasks it waits for, if it says (in a plan where no task says, each
    /// waits for the task before it).
    pub fn depends_on(&self) -> Option<&[TaskName]> {
        self.depends_on.as_deref()
    }
    /// Its name and `dependsOn`, for the plan's graph.
    pub fn links(&self) -> Links<'_> {
        Links {
            name: self.name.as_ref(),
            depends_on: self.depends_on.as_deref(),
        }
    }
    /// The new task with a name and the names of the tasks it waits for: set once, when
    /// the plan is made.
    pub fn with_links(mut self, name: Option<TaskName>, depends_on: Option<Vec<TaskName>>) -> Self {
        self.name = name;
        self.depends_on = depends_on;
        self
    }
    /// Params as JSON.
    pub fn params(&self) -> &Value {
        &self.params
    }
    /// Retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
    /// Per-attempt limits set by the plan.
    pub fn limits(&self) -> &LimitOverrides {
        &self.limits
    }
    /// Status.
    pub fn status(&self) -> TaskStatus {
        self.status
    }
    /// Retries used so far.
    pub fn retry_count(&self) -> u32 {
        self.retry_count
    }
    /// Earliest start of the next attempt (a stored backoff).
    pub fn next_attempt_at(&self) -> Option<Timestamp> {
        self.next_attempt_at
    }
    /// Output of the successful attempt.
    pub fn output(&self) -> Option<&Value> {
        self.output.as_ref()
    }
    /// Message of the latest failure.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    /// Every attempt, in order.
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }
    /// The attempt in flight or the latest one.
    pub fn last_attempt(&self) -> Option<&Attempt> {
        self.attempts.last()
    }
    /// A copy of the task with its newest attempt only: its state after a transition as
    /// a store writes it (fields and newest attempt; earlier attempts never change) and
    /// as an observer reads it. Not a task to run: its attempt count starts past one.
    pub fn with_newest_attempt_only(&self) -> Task {
        let newest = self.attempts.len().saturating_sub(1);
        Task {
            task_type: self.task_type.clone(),
            name: self.name.clone(),
            depends_on: self.depends_on.clone(),
            params: self.params.clone(),
            output: self.output.clone(),
            error: self.error.clone(),
            attempts: self.attempts[newest..].to_vec(),
            ..*self
        }
    }

    /// Applies `event` when no earlier task holds this one back: the only way a task's
    /// status changes (the plan passes its order with [`Task::apply_in_order`]).
    pub fn apply(&mut self, event: TaskEvent) -> Result<Transition, TransitionError> {
        self.apply_in_order(event, None)
    }

    /// Applies `event` by the first row of [`TRANSITIONS`] for this status and event
    /// whose guard holds; `blocked_by` is the earlier task that must complete before this
    /// one may start, if any. Nothing changes when no row applies.
    pub fn apply_in_order(
        &mut self,
        event: TaskEvent,
        blocked_by: Option<usize>,
    ) -> Result<Transition, TransitionError> {
        let from = self.status;
        let kind = event.kind();
        for (row_index, row) in TRANSITIONS.iter().enumerate() {
            if row.from != from || row.event != kind {
                continue;
            }
            if !row.guard.holds(self, &event, blocked_by)? {
                continue;
            }
            self.run_effect(row.effect, event);
            self.status = row.to;
            return Ok(Transition {
                from,
                to: row.to,
                row: row_index,
            });
        }
        Err(TransitionError::Illegal {
            index: self.index,
            from,
            event: kind.name(),
        })
    }

    /// Does what a row says, with the event's data. Rows pair each effect with the event
    /// that carries its data (the test `every_row_applies_with_its_effect` runs each).
    fn run_effect(&mut self, effect: Effect, event: TaskEvent) {
        match (effect, event) {
            (Effect::OpenAttempt, TaskEvent::Start { at }) => {
                self.next_attempt_at = None;
                // Most tasks have one attempt: room for exactly one, not the four a first
                // push reserves (a plan of 100 000 tasks keeps every attempt). Later
                // attempts grow the vector as usual.
                if self.attempts.capacity() == 0 {
                    self.attempts.reserve_exact(1);
                }
                self.attempts.push(Attempt {
                    attempt: self.attempts.len() as u32 + 1,
                    started_at: at,
                    ended_at: None,
                    outcome: AttemptOutcome::Running,
                    error_kind: None,
                    message: None,
                    backtrace: None,
                    log_tail: None,
                    progress: None,
                });
            }
            (
                Effect::Complete,
                TaskEvent::Succeed {
                    at,
                    output,
                    log_tail,
                    progress,
                },
            ) => {
                let attempt = self.running_attempt();
                attempt.ended_at = Some(at);
                attempt.outcome = AttemptOutcome::Complete;
                attempt.log_tail = log_tail;
                attempt.progress = progress;
                self.output = Some(output);
                self.error = None;
            }
            (Effect::Fail, TaskEvent::Fail { at, failure, .. }) => self.end_failed(at, failure),
            (
                Effect::FailAndBackOff,
                TaskEvent::Fail {
                    at,
                    failure,
                    jitter_sample,
                },
            ) => {
                self.end_failed(at, failure);
                self.retry_count += 1;
                let delay = self.policy.backoff.delay(self.retry_count, jitter_sample);
                self.next_attempt_at = Some(add_duration(at, delay));
            }
            (Effect::Resubmit, TaskEvent::Resubmit { params }) => {
                if let Some(params) = params {
                    self.params = params;
                }
            }
            (
                Effect::CancelAttempt,
                TaskEvent::Cancel {
                    at,
                    reason,
                    progress,
                },
            ) => {
                self.end_failed(
                    at,
                    Failure {
                        kind: ErrorKind::Cancelled,
                        message: reason,
                        backtrace: None,
                        log_tail: None,
                        progress,
                    },
                );
            }
            (Effect::CancelNext, TaskEvent::Cancel { reason, .. }) => {
                self.next_attempt_at = None;
                self.error = Some(format!(
                    "{}: {reason} (before attempt {} started)",
                    ErrorKind::Cancelled,
                    self.attempts.len() + 1
                ));
            }
            (Effect::Reset, TaskEvent::Reset { params }) => {
                if let Some(params) = params {
                    self.params = params;
                }
                self.retry_count = 0;
                self.next_attempt_at = None;
                self.output = None;
                self.error = None;
            }
            (effect, event) => unreachable!(
                "the transition table pairs {effect:?} with {}",
                event.name()
            ),
        }
    }

    /// Ends the running attempt `failed` and records why on the task.
    fn end_failed(&mut self, at: Timestamp, failure: Failure) {
        let kind = failure.kind;
        let attempt = self.running_attempt();
        attempt.ended_at = Some(at);
        attempt.outcome = AttemptOutcome::Failed;
        attempt.error_kind = Some(kind);
        attempt.message = Some(failure.message.clone());
        attempt.backtrace = failure.backtrace;
        attempt.log_tail = failure.log_tail;
        attempt.progress = failure.progress;
        self.error = Some(format!("{kind}: {}", failure.message));
    }

    fn running_attempt(&mut self) -> &mut Attempt {
        // Only rows from Running end an attempt, and the row into Running opened it.
        self.attempts
            .last_mut()
            .expect("a running task has an attempt")
    }
}

/// The kinds of [`TaskEvent`], for the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray)]
pub enum EventKind {
    /// [`TaskEvent::Start`].
    Start,
    /// [`TaskEvent::Succeed`].
    Succeed,
    /// [`TaskEvent::Fail`].
    Fail,
    /// [`TaskEvent::Resubmit`].
    Resubmit,
    /// [`TaskEvent::Reset`].
    Reset,
    /// [`TaskEvent::Cancel`].
    Cancel,
}

impl EventKind {
    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Succeed => "succeed",
            EventKind::Fail => "fail",
            EventKind::Resubmit => "resubmit",
            EventKind::Reset => "reset",
            EventKind::Cancel => "cancel",
        }
    }
}

/// What must hold, beyond the status and the event, for a row to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Nothing more.
    Always,
    /// The task's turn: no earlier task holds it back and its stored backoff has passed
    /// (else the event is refused, saying which).
    Turn,
    /// The failure does not count: it is run again without using budget (`interrupted`).
    RerunFree,
    /// The failure is retried and the retry budget has room.
    BudgetLeft,
    /// The failure is terminal, or retried with the budget spent.
    NoRetry,
}

impl Guard {
    /// Whether the guard holds; `Err` when it refuses the event outright.
    fn holds(
        self,
        task: &Task,
        event: &TaskEvent,
        blocked_by: Option<usize>,
    ) -> Result<bool, TransitionError> {
        let disposition = match event {
            TaskEvent::Fail { failure, .. } => Some(failure.kind.disposition()),
            _ => None,
        };
        let budget_left = task.retry_count < task.policy.max_retries;
        Ok(match self {
            Guard::Always => true,
            Guard::Turn => {
                if let Some(blocking) = blocked_by {
                    return Err(TransitionError::Blocked {
                        index: task.index,
                        blocking,
                    });
                }
                if let (TaskEvent::Start { at }, Some(until)) = (event, task.next_attempt_at)
                    && *at < until
                {
                    return Err(TransitionError::BackoffNotElapsed {
                        index: task.index,
                        until,
                    });
                }
                true
            }
            Guard::RerunFree => disposition == Some(Disposition::RerunFree),
            Guard::BudgetLeft => disposition == Some(Disposition::Retry) && budget_left,
            Guard::NoRetry => {
                disposition == Some(Disposition::Terminal)
                    || (disposition == Some(Disposition::Retry) && !budget_left)
            }
        })
    }
}

/// What a row does to the task besides setting its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Clears the stored backoff and appends a running attempt (numbered from 1).
    OpenAttempt,
    /// Ends the attempt `complete` with its log tail; keeps the output; clears the error.
    Complete,
    /// Ends the attempt `failed` with its kind, message, backtrace and log tail; records
    /// the task's error.
    Fail,
    /// As [`Effect::Fail`], and uses one retry: stores when the next attempt may start.
    FailAndBackOff,
    /// Takes the new params, if the event has some (the retry count and history are kept).
    Resubmit,
    /// A fresh budget: clears the retry count, backoff, output and error (attempts stay);
    /// takes the new params, if the event has some.
    Reset,
    /// Ends the running attempt `failed` as `cancelled` with the reason; uses no budget.
    CancelAttempt,
    /// Clears the stored backoff and records why the next attempt will not start.
    CancelNext,
}

/// One row of the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The status it applies in.
    pub from: TaskStatus,
    /// The event it applies to.
    pub event: EventKind,
    /// What else must hold.
    pub guard: Guard,
    /// The status after.
    pub to: TaskStatus,
    /// What it does.
    pub effect: Effect,
}

const fn row(
    from: TaskStatus,
    event: EventKind,
    guard: Guard,
    to: TaskStatus,
    effect: Effect,
) -> Row {
    Row {
        from,
        event,
        guard,
        to,
        effect,
    }
}

/// Every legal move of a task (docs/DESIGN.md §2): in `from`, on `event`, if `guard`, go
/// to `to` doing `effect`. Rows are tried in order; anything else is refused.
pub const TRANSITIONS: &[Row] = {
    use EventKind as E;
    use Guard as G;
    use TaskStatus::*;
    &[
        row(Pending, E::Start, G::Turn, Running, Effect::OpenAttempt),
        row(Running, E::Succeed, G::Always, Complete, Effect::Complete),
        row(Running, E::Fail, G::RerunFree, Pending, Effect::Fail),
        row(
            Running,
            E::Fail,
            G::BudgetLeft,
            Pending,
            Effect::FailAndBackOff,
        ),
        row(Running, E::Fail, G::NoRetry, Failed, Effect::Fail),
        row(Failed, E::Resubmit, G::Always, Pending, Effect::Resubmit),
        row(Pending, E::Reset, G::Always, Pending, Effect::Reset),
        row(Complete, E::Reset, G::Always, Pending, Effect::Reset),
        row(Failed, E::Reset, G::Always, Pending, Effect::Reset),
        row(Running, E::Cancel, G::Always, Failed, Effect::CancelAttempt),
        row(Pending, E::Cancel, G::Always, Failed, Effect::CancelNext),
    ]
};

fn add_duration(at: Timestamp, delay: std::time::Duration) -> Timestamp {
    let span = jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX);
    at.checked_add(span).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use strum::VariantArray;

    use super::*;
    use crate::policy::Backoff;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn task(max_retries: u32) -> Task {
        let backoff = Backoff {
            initial: Duration::from_secs(10),
            factor: 2.0,
            max: Duration::from_secs(60),
            jitter: false,
        };
        Task::new(
            PlanId::new_random(),
            0,
            TaskType::new("echo").unwrap(),
            serde_json::json!({}),
            RetryPolicy {
                max_retries,
                backoff,
            },
            LimitOverrides::default(),
        )
    }

    fn fail(at: Timestamp, kind: ErrorKind) -> TaskEvent {
        TaskEvent::Fail {
            at,
            failure: Failure {
                kind,
                message: format!("{kind} happened"),
                backtrace: None,
                log_tail: Some("tail".into()),
                progress: None,
            },
            jitter_sample: 0.0,
        }
    }

    #[test]
    fn a_copy_with_the_newest_attempt_only_keeps_every_field_and_that_attempt() {
        let mut retried = task(2);
        retried.apply(TaskEvent::Start { at: t(0) }).unwrap();
        retried.apply(fail(t(1), ErrorKind::Transient)).unwrap();
        retried.apply(TaskEvent::Start { at: t(100) }).unwrap();
        let copy = retried.with_newest_attempt_only();
        assert_eq!(copy.attempts(), &retried.attempts()[1..]);
        assert_eq!(copy.last_attempt(), retried.last_attempt());
        assert_eq!(copy.last_attempt().unwrap().attempt, 2);
        assert_eq!(
            (
                copy.status(),
                copy.retry_count(),
                copy.error(),
                copy.next_attempt_at()
            ),
            (
                retried.status(),
                retried.retry_count(),
                retried.error(),
                retried.next_attempt_at()
            )
        );
        assert_eq!(
            (copy.id(), copy.index(), copy.params()),
            (retried.id(), retried.index(), retried.params())
        );
        // A task never started has no attempt to keep.
        assert!(task(0).with_newest_attempt_only().attempts().is_empty());
    }

    fn with_status(status: TaskStatus) -> Task {
        let mut task = task(3);
        match status {
            TaskStatus::Pending => {}
            TaskStatus::Running => {
                task.apply(TaskEvent::Start { at: t(0) }).unwrap();
            }
            TaskStatus::Complete => {
                task.apply(TaskEvent::Start { at: t(0) }).unwrap();
                let ok = TaskEvent::Succeed {
                    at: t(1),
                    output: Value::Null,
                    log_tail: None,
                    progress: None,
                };
                task.apply(ok).unwrap();
            }
            TaskStatus::Failed => {
                task.apply(TaskEvent::Start { at: t(0) }).unwrap();
                task.apply(fail(t(1), ErrorKind::Permanent)).unwrap();
            }
        }
        assert_eq!(task.status(), status);
        task
    }

    #[test]
    fn pending_start_running_records_attempt_one() {
        let mut task = task(0);
        let tr = task.apply(TaskEvent::Start { at: t(0) }).unwrap();
        assert_eq!(
            tr,
            Transition {
                from: TaskStatus::Pending,
                to: TaskStatus::Running,
                row: 0,
            }
        );
        assert_eq!(task.attempts().len(), 1);
        let attempt = &task.attempts()[0];
        assert_eq!(
            (attempt.attempt, attempt.outcome),
            (1, AttemptOutcome::Running)
        );
        assert_eq!(attempt.started_at, t(0));
    }

    #[test]
    fn running_succeed_complete_keeps_output() {
        let mut task = with_status(TaskStatus::Running);
        let event = TaskEvent::Succeed {
            at: t(2),
            output: serde_json::json!({"ok": true}),
            log_tail: Some("done".into()),
            progress: Some(Progress {
                done: 3,
                total: Some(4),
                unit: ProgressUnit::Bytes,
                note: "copying".into(),
            }),
        };
        assert_eq!(task.apply(event).unwrap().to, TaskStatus::Complete);
        assert_eq!(task.output(), Some(&serde_json::json!({"ok": true})));
        let attempt = task.last_attempt().unwrap();
        assert_eq!(attempt.outcome, AttemptOutcome::Complete);
        assert_eq!(attempt.ended_at, Some(t(2)));
        assert_eq!(attempt.log_tail.as_deref(), Some("done"));
        assert_eq!(
            serde_json::to_value(&attempt.progress).unwrap(),
            serde_json::json!({"done": 3, "total": 4, "unit": "bytes", "note": "copying"})
        );
    }

    #[test]
    fn running_retryable_fail_with_budget_goes_pending_with_backoff() {
        let mut task = task(2);
        task.apply(TaskEvent::Start { at: t(0) }).unwrap();
        let tr = task.apply(fail(t(1), ErrorKind::Transient)).unwrap();
        assert_eq!(tr.to, TaskStatus::Pending);
        assert_eq!(task.retry_count(), 1);
        assert_eq!(task.next_attempt_at(), Some(t(11)));
        assert_eq!(task.error(), Some("transient: transient happened"));
        let attempt = task.last_attempt().unwrap();
        assert_eq!(attempt.error_kind, Some(ErrorKind::Transient));
        assert_eq!(attempt.outcome, AttemptOutcome::Failed);

        // The backoff is a guard on the next start; the second retry waits twice as long.
        let early = task.apply(TaskEvent::Start { at: t(5) }).unwrap_err();
        assert_eq!(
            early,
            TransitionError::BackoffNotElapsed {
                index: 0,
                until: t(11)
            }
        );
        assert_eq!(
            task.status(),
            TaskStatus::Pending,
            "a refused event changes nothing"
        );
        task.apply(TaskEvent::Start { at: t(11) }).unwrap();
        assert_eq!(task.last_attempt().unwrap().attempt, 2);
        task.apply(fail(t(12), ErrorKind::Timeout)).unwrap();
        assert_eq!(task.next_attempt_at(), Some(t(32)));
        assert_eq!(task.retry_count(), 2);
    }

    #[test]
    fn running_retryable_fail_without_budget_fails() {
        let mut task = task(1);
        task.apply(TaskEvent::Start { at: t(0) }).unwrap();
        task.apply(fail(t(1), ErrorKind::Transient)).unwrap();
        task.apply(TaskEvent::Start { at: t(20) }).unwrap();
        let tr = task.apply(fail(t(21), ErrorKind::Transient)).unwrap();
        assert_eq!(tr.to, TaskStatus::Failed);
        assert_eq!(task.retry_count(), 1);
        assert_eq!(task.next_attempt_at(), None);
        assert_eq!(task.attempts().len(), 2);
    }

    #[test]
    fn running_terminal_fail_fails_even_with_budget() {
        for &kind in ErrorKind::VARIANTS
            .iter()
            .filter(|k| k.disposition() == Disposition::Terminal)
        {
            let mut task = with_status(TaskStatus::Running);
            assert_eq!(
                task.apply(fail(t(1), kind)).unwrap().to,
                TaskStatus::Failed,
                "{kind}"
            );
            assert_eq!(task.retry_count(), 0);
        }
    }

    #[test]
    fn running_interrupted_goes_pending_without_using_budget() {
        let mut task = task(0);
        task.apply(TaskEvent::Start { at: t(0) }).unwrap();
        assert_eq!(
            task.apply(fail(t(1), ErrorKind::Interrupted)).unwrap().to,
            TaskStatus::Pending
        );
        assert_eq!(task.retry_count(), 0);
        assert_eq!(task.next_attempt_at(), None);
        task.apply(TaskEvent::Start { at: t(1) }).unwrap();
        assert_eq!(task.last_attempt().unwrap().attempt, 2);
    }

    #[test]
    fn cancelled_fails_the_task_without_using_budget_until_resubmitted() {
        let mut task = task(3);
        task.apply(TaskEvent::Start { at: t(0) }).unwrap();
        assert_eq!(
            task.apply(fail(t(1), ErrorKind::Cancelled)).unwrap().to,
            TaskStatus::Failed
        );
        assert_eq!(task.retry_count(), 0);
        task.apply(TaskEvent::Resubmit { params: None }).unwrap();
        task.apply(TaskEvent::Start { at: t(2) }).unwrap();
        assert_eq!(task.last_attempt().unwrap().attempt, 2);
    }

    #[test]
    fn failed_resubmit_goes_pending_keeping_retry_count() {
        let mut task = task(1);
        task.apply(TaskEvent::Start { at: t(0) }).unwrap();
        task.apply(fail(t(1), ErrorKind::Transient)).unwrap();
        task.apply(TaskEvent::Start { at: t(30) }).unwrap();
        task.apply(fail(t(31), ErrorKind::Permanent)).unwrap();
        assert_eq!(
            task.apply(TaskEvent::Resubmit { params: None }).unwrap().to,
            TaskStatus::Pending
        );
        assert_eq!(task.retry_count(), 1);
        task.apply(TaskEvent::Start { at: t(32) }).unwrap();
        assert_eq!(
            task.last_attempt().unwrap().attempt,
            3,
            "history is append-only"
        );
    }

    #[test]
    fn reset_returns_to_pending_with_fresh_budget_from_any_resting_status() {
        for status in [
            TaskStatus::Pending,
            TaskStatus::Complete,
            TaskStatus::Failed,
        ] {
            let mut task = with_status(status);
            let attempts = task.attempts().len();
            assert_eq!(
                task.apply(TaskEvent::Reset { params: None }).unwrap().to,
                TaskStatus::Pending
            );
            assert_eq!(
                (task.retry_count(), task.output(), task.error()),
                (0, None, None)
            );
            assert_eq!(task.attempts().len(), attempts, "history is kept");
        }
    }

    #[test]
    fn names_are_spelled_the_same_in_json_text_and_the_store() {
        for &status in TaskStatus::VARIANTS {
            assert_eq!(serde_json::to_value(status).unwrap(), status.to_string());
            assert_eq!(status.to_string().parse::<TaskStatus>(), Ok(status));
        }
        for &outcome in AttemptOutcome::VARIANTS {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.to_string());
            assert_eq!(<&str>::from(outcome).parse::<AttemptOutcome>(), Ok(outcome));
        }
        for &phase in crate::Phase::VARIANTS {
            assert_eq!(serde_json::to_value(phase).unwrap(), phase.to_string());
        }
        assert_eq!(AttemptOutcome::Complete.to_string(), "complete");
        assert_eq!(TaskStatus::Complete.to_string(), "Complete");
    }

    /// A task whose first attempt failed `transient`: pending, one retry used, a backoff
    /// stored until t(11).
    fn backed_off() -> Task {
        let mut task = task(3);
        task.apply(TaskEvent::Start { at: t(0) }).unwrap();
        task.apply(fail(t(1), ErrorKind::Transient)).unwrap();
        assert_eq!(
            (task.retry_count(), task.next_attempt_at()),
            (1, Some(t(11)))
        );
        task
    }

    /// Running its second attempt, with one retry used.
    fn running_again() -> Task {
        let mut task = backed_off();
        task.apply(TaskEvent::Start { at: t(11) }).unwrap();
        task
    }

    /// A failure carrying everything an attempt records.
    fn full_failure(at: Timestamp, kind: ErrorKind) -> TaskEvent {
        TaskEvent::Fail {
            at,
            failure: Failure {
                kind,
                message: "it broke".into(),
                backtrace: Some("frame 0".into()),
                log_tail: Some("last words".into()),
                progress: Some(Progress {
                    done: 1,
                    total: None,
                    unit: ProgressUnit::Items,
                    note: "halfway".into(),
                }),
            },
            jitter_sample: 0.0,
        }
    }

    /// What every row from Running that ends an attempt `failed` must leave.
    fn check_attempt_failed(after: &Task, kind: ErrorKind) {
        let attempt = after.last_attempt().unwrap();
        assert_eq!(
            (attempt.outcome, attempt.ended_at, attempt.error_kind),
            (AttemptOutcome::Failed, Some(t(100)), Some(kind))
        );
        assert_eq!(
            (
                attempt.message.as_deref(),
                attempt.backtrace.as_deref(),
                attempt.log_tail.as_deref()
            ),
            (Some("it broke"), Some("frame 0"), Some("last words"))
        );
        assert_eq!(
            attempt.progress.as_ref().map(|p| (p.done, p.note.as_str())),
            Some((1, "halfway"))
        );
        assert_eq!(after.error(), Some(format!("{kind}: it broke").as_str()));
    }

    /// One case per row: a task the row applies to (with state the effect must change
    /// or keep), the event, and what must hold after. The table is covered when every
    /// row has applied with its effect.
    #[test]
    fn every_row_applies_with_its_effect() {
        type Check = fn(&Task, &Task);
        let cases: Vec<(usize, Task, TaskEvent, Check)> = vec![
            (
                0,
                backed_off(),
                TaskEvent::Start { at: t(20) },
                |before, after| {
                    assert_eq!(after.attempts().len(), before.attempts().len() + 1);
                    let attempt = after.last_attempt().unwrap();
                    assert_eq!(
                        (attempt.attempt, attempt.outcome, attempt.started_at),
                        (2, AttemptOutcome::Running, t(20))
                    );
                    assert_eq!(after.next_attempt_at(), None, "the backoff is spent");
                    assert_eq!(after.retry_count(), 1, "starting uses no budget");
                },
            ),
            (
                1,
                running_again(),
                TaskEvent::Succeed {
                    at: t(100),
                    output: serde_json::json!({"out": 1}),
                    log_tail: Some("ok".into()),
                    progress: None,
                },
                |_, after| {
                    assert_eq!(after.output(), Some(&serde_json::json!({"out": 1})));
                    assert_eq!(after.error(), None, "the earlier failure is cleared");
                    let attempt = after.last_attempt().unwrap();
                    assert_eq!(
                        (
                            attempt.outcome,
                            attempt.ended_at,
                            attempt.log_tail.as_deref()
                        ),
                        (AttemptOutcome::Complete, Some(t(100)), Some("ok"))
                    );
                    assert_eq!(after.retry_count(), 1);
                },
            ),
            (
                2,
                running_again(),
                full_failure(t(100), ErrorKind::Interrupted),
                |before, after| {
                    check_attempt_failed(after, ErrorKind::Interrupted);
                    assert_eq!(after.retry_count(), before.retry_count(), "no budget used");
                    assert_eq!(after.next_attempt_at(), None, "no backoff");
                },
            ),
            (
                3,
                running_again(),
                full_failure(t(100), ErrorKind::Transient),
                |before, after| {
                    check_attempt_failed(after, ErrorKind::Transient);
                    assert_eq!(after.retry_count(), before.retry_count() + 1);
                    assert_eq!(
                        after.next_attempt_at(),
                        Some(t(120)),
                        "the second backoff doubles"
                    );
                },
            ),
            (
                4,
                running_again(),
                full_failure(t(100), ErrorKind::Trap),
                |before, after| {
                    check_attempt_failed(after, ErrorKind::Trap);
                    assert_eq!(
                        after.retry_count(),
                        before.retry_count(),
                        "terminal despite budget"
                    );
                    assert_eq!(after.next_attempt_at(), None);
                },
            ),
            (
                4,
                {
                    let mut spent = task(1);
                    spent.apply(TaskEvent::Start { at: t(0) }).unwrap();
                    spent.apply(fail(t(1), ErrorKind::Transient)).unwrap();
                    spent.apply(TaskEvent::Start { at: t(11) }).unwrap();
                    spent
                },
                full_failure(t(100), ErrorKind::Timeout),
                |_, after| {
                    check_attempt_failed(after, ErrorKind::Timeout);
                    assert_eq!(after.retry_count(), 1, "the budget was spent");
                    assert_eq!(after.next_attempt_at(), None);
                },
            ),
            (
                5,
                with_status(TaskStatus::Failed),
                TaskEvent::Resubmit {
                    params: Some(serde_json::json!({"second": "try"})),
                },
                |before, after| {
                    assert_eq!(after.params(), &serde_json::json!({"second": "try"}));
                    assert_eq!(
                        (after.retry_count(), after.error(), after.attempts()),
                        (before.retry_count(), before.error(), before.attempts()),
                        "budget, last error and history are kept"
                    );
                },
            ),
            (
                6,
                backed_off(),
                TaskEvent::Reset { params: None },
                check_reset,
            ),
            (
                7,
                with_status(TaskStatus::Complete),
                TaskEvent::Reset {
                    params: Some(serde_json::json!({"again": true})),
                },
                |before, after| {
                    check_reset(before, after);
                    assert_eq!(after.params(), &serde_json::json!({"again": true}));
                },
            ),
            (
                8,
                with_status(TaskStatus::Failed),
                TaskEvent::Reset { params: None },
                check_reset,
            ),
            (
                9,
                running_again(),
                TaskEvent::Cancel {
                    at: t(100),
                    reason: "cancelled by DELETE".into(),
                    progress: None,
                },
                |before, after| {
                    let attempt = after.last_attempt().unwrap();
                    assert_eq!(
                        (
                            attempt.outcome,
                            attempt.ended_at,
                            attempt.error_kind,
                            attempt.message.as_deref()
                        ),
                        (
                            AttemptOutcome::Failed,
                            Some(t(100)),
                            Some(ErrorKind::Cancelled),
                            Some("cancelled by DELETE")
                        )
                    );
                    assert_eq!(after.error(), Some("cancelled: cancelled by DELETE"));
                    assert_eq!(after.retry_count(), before.retry_count(), "no budget used");
                    assert_eq!(after.next_attempt_at(), None);
                },
            ),
            (
                10,
                backed_off(),
                TaskEvent::Cancel {
                    at: t(5),
                    reason: "cancelled by DELETE".into(),
                    progress: None,
                },
                |before, after| {
                    assert_eq!(after.attempts(), before.attempts(), "no attempt is made up");
                    assert_eq!(after.next_attempt_at(), None, "the backoff is dropped");
                    assert_eq!(after.retry_count(), before.retry_count());
                    assert_eq!(
                        after.error(),
                        Some("cancelled: cancelled by DELETE (before attempt 2 started)")
                    );
                },
            ),
        ];
        fn check_reset(before: &Task, after: &Task) {
            assert_eq!((after.retry_count(), after.next_attempt_at()), (0, None));
            assert_eq!((after.output(), after.error()), (None, None));
            assert_eq!(after.attempts(), before.attempts(), "history kept");
        }
        let mut covered = std::collections::BTreeSet::new();
        for (row, before, event, check) in cases {
            let mut after = before.clone();
            let transition = after.apply(event).unwrap();
            let expected = TRANSITIONS[row];
            assert_eq!(transition.row, row, "{expected:?}");
            assert_eq!(
                (transition.from, transition.to),
                (expected.from, expected.to)
            );
            assert_eq!(after.status(), expected.to);
            check(&before, &after);
            covered.insert(row);
        }
        let all: std::collections::BTreeSet<usize> = (0..TRANSITIONS.len()).collect();
        assert_eq!(covered, all, "every row of the table applies in a case");
    }

    /// Where a failure takes a running task, by its kind's disposition and the budget,
    /// written out by hand (not read from the table it checks).
    #[test]
    fn a_failure_goes_where_its_disposition_and_the_budget_say() {
        for &kind in ErrorKind::VARIANTS {
            for budget_left in [true, false] {
                let mut task = task(u32::from(budget_left));
                task.apply(TaskEvent::Start { at: t(0) }).unwrap();
                let expected = match (kind.disposition(), budget_left) {
                    (Disposition::RerunFree, _) => TaskStatus::Pending,
                    (Disposition::Retry, true) => TaskStatus::Pending,
                    (Disposition::Retry, false) => TaskStatus::Failed,
                    (Disposition::Terminal, _) => TaskStatus::Failed,
                };
                let to = task.apply(fail(t(1), kind)).unwrap().to;
                assert_eq!(to, expected, "{kind}, budget left: {budget_left}");
            }
        }
    }

    #[test]
    fn every_illegal_pair_is_refused_and_changes_nothing() {
        let events = || {
            vec![
                TaskEvent::Start { at: t(100) },
                TaskEvent::Succeed {
                    at: t(100),
                    output: Value::Null,
                    log_tail: None,
                    progress: None,
                },
                fail(t(100), ErrorKind::Transient),
                TaskEvent::Resubmit { params: None },
                TaskEvent::Reset { params: None },
                TaskEvent::Cancel {
                    at: t(100),
                    reason: "operator".into(),
                    progress: None,
                },
            ]
        };
        // The contract (docs/DESIGN.md §2), written out by hand: the table must agree.
        let legal: &[(TaskStatus, &str)] = &[
            (TaskStatus::Pending, "start"),
            (TaskStatus::Running, "succeed"),
            (TaskStatus::Running, "fail"),
            (TaskStatus::Failed, "resubmit"),
            (TaskStatus::Pending, "reset"),
            (TaskStatus::Complete, "reset"),
            (TaskStatus::Failed, "reset"),
            (TaskStatus::Running, "cancel"),
            (TaskStatus::Pending, "cancel"),
        ];
        for &status in TaskStatus::VARIANTS {
            for event in events() {
                let mut task = with_status(status);
                let before = task.clone();
                let name = event.name();
                let result = task.apply(event);
                if legal.contains(&(status, name)) {
                    assert!(result.is_ok(), "{status:?} --{name}--> should be legal");
                } else {
                    assert_eq!(
                        result,
                        Err(TransitionError::Illegal {
                            index: 0,
                            from: status,
                            event: name
                        })
                    );
                    assert_eq!(task, before, "{status:?} --{name}--> changed the task");
                }
            }
        }
    }

    #[test]
    fn a_stored_task_is_restored_only_in_a_state_the_table_reaches() {
        let record = |task: &Task| task.clone().into_record();
        for &status in TaskStatus::VARIANTS {
            let task = with_status(status);
            assert_eq!(Task::restore(record(&task)), Ok(task));
        }
        let mut running_but_ended = record(&with_status(TaskStatus::Complete));
        running_but_ended.status = TaskStatus::Running;
        assert!(Task::restore(running_but_ended).is_err());
        let mut complete_without_output = record(&with_status(TaskStatus::Complete));
        complete_without_output.output = None;
        assert!(Task::restore(complete_without_output).is_err());
        let mut failed_without_error = record(&with_status(TaskStatus::Failed));
        failed_without_error.error = None;
        assert!(Task::restore(failed_without_error).is_err());
        let mut failed_with_output = record(&with_status(TaskStatus::Failed));
        failed_with_output.output = Some(serde_json::json!({}));
        assert!(Task::restore(failed_with_output).is_err());
        let mut failed_with_backoff = record(&with_status(TaskStatus::Failed));
        failed_with_backoff.next_attempt_at = Some(t(1));
        assert!(Task::restore(failed_with_backoff).is_err());
        let mut cancelled_before_start = backed_off();
        cancelled_before_start
            .apply(TaskEvent::Cancel {
                at: t(5),
                reason: "operator".into(),
                progress: None,
            })
            .unwrap();
        assert_eq!(
            Task::restore(record(&cancelled_before_start)),
            Ok(cancelled_before_start)
        );
        let mut gap = record(&backed_off());
        gap.attempts[0].attempt = 2;
        assert!(
            Task::restore(gap)
                .unwrap_err()
                .to_string()
                .contains("attempt 1 is numbered 2")
        );
    }
}
