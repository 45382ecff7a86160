//! A plan being executed: its tasks, its phase, and what may run next.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::ids::PlanId;
use super::spec::TaskSpec;
use super::task::{Task, TaskEvent, TaskStatus, Transition, TransitionError};

/// Where a plan is in its life. Derived from its tasks, never stored apart from them.
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
pub enum Phase {
    /// Some task is still to run.
    Active,
    /// Every task completed.
    Complete,
    /// A task failed; only an operator (`resume`) makes the plan active again.
    Failed,
}

impl Phase {
    /// The phase of a plan of `tasks` tasks, `complete` of them complete, whose first
    /// failed task is `failed`: the one rule, for full plans and for stored counts alike.
    pub fn of(tasks: usize, complete: usize, failed: Option<usize>) -> Phase {
        match failed {
            Some(_) => Phase::Failed,
            None if complete == tasks => Phase::Complete,
            None => Phase::Active,
        }
    }
}

/// What the executor should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start an attempt of the task at this index.
    Run(usize),
    /// Nothing may start before this time (a stored backoff).
    WaitUntil(Timestamp),
    /// An attempt is in flight and nothing else is ready.
    Busy,
    /// Nothing more will run: the plan is complete or failed.
    Finished(Phase),
}

/// A plan and the state of its tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRun {
    id: PlanId,
    name: Option<String>,
    tasks: Vec<Task>,
}

impl PlanRun {
    /// A new plan: every task pending, task IDs derived from `id`.
    pub fn new(id: PlanId, name: Option<String>, tasks: &[TaskSpec]) -> Self {
        let tasks = tasks
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                Task::new(
                    id,
                    index,
                    spec.task_type.clone(),
                    spec.params.clone(),
                    spec.policy,
                    spec.limits,
                )
            })
            .collect();
        Self { id, name, tasks }
    }

    /// The plan of one task submitted on its own (the task API): the plan has the task's
    /// ID, so the task's ID also names its plan in `status` and `history`.
    pub fn single(task: Task) -> Self {
        Self {
            id: PlanId::from(task.id().as_uuid()),
            name: None,
            tasks: vec![task],
        }
    }

    /// Rebuilds a plan from stored tasks (in plan order).
    pub fn from_tasks(id: PlanId, name: Option<String>, tasks: Vec<Task>) -> Self {
        Self { id, name, tasks }
    }

    /// The plan ID.
    pub fn id(&self) -> PlanId {
        self.id
    }
    /// The optional label.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The tasks in plan order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }
    /// The task at `index`.
    pub fn task(&self, index: usize) -> Option<&Task> {
        self.tasks.get(index)
    }

    /// `Failed` if a task failed, `Complete` if all completed, else `Active`.
    pub fn phase(&self) -> Phase {
        let complete = self
            .tasks
            .iter()
            .filter(|t| t.status() == TaskStatus::Complete)
            .count();
        Phase::of(self.tasks.len(), complete, self.failed_task_index())
    }

    /// The first failed task.
    pub fn failed_task_index(&self) -> Option<usize> {
        self.tasks
            .iter()
            .position(|t| t.status() == TaskStatus::Failed)
    }

    /// The first task before `index` that is not complete: tasks run in plan order, so
    /// each depends on the ones before it (explicit `dependsOn` will refine this).
    fn blocking_task(&self, index: usize) -> Option<usize> {
        self.tasks[..index]
            .iter()
            .position(|t| t.status() != TaskStatus::Complete)
    }

    /// Applies `event` to the task at `index`, checking the plan-level guards.
    pub fn apply(&mut self, index: usize, event: TaskEvent) -> Result<Transition, TransitionError> {
        if index >= self.tasks.len() {
            return Err(TransitionError::NoSuchTask(index));
        }
        let blocked_by = self.blocking_task(index);
        self.tasks[index].apply_in_order(event, blocked_by)
    }

    /// What may happen next at time `now`.
    pub fn next_step(&self, now: Timestamp) -> Step {
        let phase = self.phase();
        if phase != Phase::Active {
            return Step::Finished(phase);
        }
        let mut earliest_wait: Option<Timestamp> = None;
        let mut busy = false;
        for task in &self.tasks {
            match task.status() {
                TaskStatus::Running => busy = true,
                TaskStatus::Pending if self.blocking_task(task.index()).is_none() => {
                    match task.next_attempt_at() {
                        Some(until) if until > now => {
                            earliest_wait = Some(earliest_wait.map_or(until, |w| w.min(until)));
                        }
                        _ => return Step::Run(task.index()),
                    }
                }
                _ => {}
            }
        }
        match (busy, earliest_wait) {
            (true, _) => Step::Busy,
            (false, Some(until)) => Step::WaitUntil(until),
            // Active with nothing pending and nothing running cannot happen: a plan with
            // no failed task and an incomplete one has a pending or running task.
            (false, None) => Step::Busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plan::error_kind::ErrorKind;
    use crate::plan::ids::TaskType;
    use crate::plan::policy::{Backoff, RetryPolicy};
    use crate::plan::task::Failure;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn plan(n: usize, max_retries: u32) -> PlanRun {
        let policy = RetryPolicy {
            max_retries,
            backoff: Backoff {
                initial: Duration::from_secs(5),
                factor: 2.0,
                max: Duration::from_secs(60),
                jitter: false,
            },
        };
        let specs: Vec<TaskSpec> = (0..n)
            .map(|i| TaskSpec {
                task_type: TaskType::new(format!("type-{i}")).unwrap(),
                params: serde_json::json!({ "i": i }),
                policy,
                limits: Default::default(),
            })
            .collect();
        PlanRun::new(PlanId::new_random(), Some("p".into()), &specs)
    }

    fn succeed(plan: &mut PlanRun, index: usize, at: Timestamp) {
        plan.apply(index, TaskEvent::Start { at }).unwrap();
        let ok = TaskEvent::Succeed {
            at,
            output: serde_json::Value::Null,
            log_tail: None,
        };
        plan.apply(index, ok).unwrap();
    }

    fn fail(kind: ErrorKind, at: Timestamp) -> TaskEvent {
        TaskEvent::Fail {
            at,
            failure: Failure {
                kind,
                message: "x".into(),
                backtrace: None,
                log_tail: None,
            },
            jitter_sample: 0.0,
        }
    }

    #[test]
    fn tasks_run_in_order_and_the_plan_completes() {
        let mut plan = plan(3, 0);
        assert_eq!(plan.phase(), Phase::Active);
        assert_eq!(plan.next_step(t(0)), Step::Run(0));
        assert_eq!(
            plan.apply(1, TaskEvent::Start { at: t(0) }),
            Err(TransitionError::Blocked {
                index: 1,
                blocking: 0
            })
        );
        plan.apply(0, TaskEvent::Start { at: t(0) }).unwrap();
        assert_eq!(plan.next_step(t(0)), Step::Busy);
        plan.apply(
            0,
            TaskEvent::Succeed {
                at: t(1),
                output: serde_json::json!(1),
                log_tail: None,
            },
        )
        .unwrap();
        assert_eq!(plan.next_step(t(1)), Step::Run(1));
        succeed(&mut plan, 1, t(2));
        succeed(&mut plan, 2, t(3));
        assert_eq!(plan.phase(), Phase::Complete);
        assert_eq!(plan.next_step(t(4)), Step::Finished(Phase::Complete));
    }

    #[test]
    fn backoff_makes_the_executor_wait() {
        let mut plan = plan(2, 1);
        plan.apply(0, TaskEvent::Start { at: t(0) }).unwrap();
        plan.apply(0, fail(ErrorKind::Transient, t(1))).unwrap();
        assert_eq!(plan.next_step(t(2)), Step::WaitUntil(t(6)));
        assert_eq!(plan.next_step(t(6)), Step::Run(0));
    }

    #[test]
    fn a_failed_task_fails_the_plan_until_an_operator_acts() {
        let mut plan = plan(3, 0);
        succeed(&mut plan, 0, t(0));
        plan.apply(1, TaskEvent::Start { at: t(1) }).unwrap();
        plan.apply(1, fail(ErrorKind::Permanent, t(2))).unwrap();
        assert_eq!(plan.phase(), Phase::Failed);
        assert_eq!(plan.failed_task_index(), Some(1));
        assert_eq!(plan.next_step(t(3)), Step::Finished(Phase::Failed));
        plan.apply(1, TaskEvent::Resubmit { params: None }).unwrap();
        assert_eq!(plan.phase(), Phase::Active);
        assert_eq!(plan.failed_task_index(), None);
        assert_eq!(plan.next_step(t(3)), Step::Run(1));
    }

    #[test]
    fn phase_of_counts() {
        assert_eq!(Phase::of(3, 3, None), Phase::Complete);
        assert_eq!(Phase::of(3, 2, None), Phase::Active);
        assert_eq!(Phase::of(3, 2, Some(2)), Phase::Failed);
        assert_eq!(Phase::of(0, 0, None), Phase::Complete);
    }

    #[test]
    fn unknown_task_index_is_an_error() {
        let mut plan = plan(1, 0);
        assert_eq!(
            plan.apply(5, TaskEvent::Reset { params: None }),
            Err(TransitionError::NoSuchTask(5))
        );
    }

    #[test]
    fn task_ids_follow_plan_id_type_and_index() {
        let plan = plan(2, 0);
        for task in plan.tasks() {
            let expected =
                crate::plan::ids::TaskId::derive(plan.id(), task.task_type(), task.index());
            assert_eq!(task.id(), expected);
        }
    }
}
