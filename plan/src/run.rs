//! A plan being executed: its tasks, its phase, and what may run next.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use std::collections::BTreeSet;
use std::ops::Bound;

use super::graph::{Graph, GraphError};
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

/// What a caller starting one task at a time would do next: [`PlanRun::next_step`]'s
/// answer, the scheduler's state summed up for this crate's tests (the executor asks
/// [`PlanRun::runnable`] and [`PlanRun::next_wake`]).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start an attempt of the task at this index.
    Run(usize),
    /// Nothing may start before this time (a stored backoff).
    WaitUntil(Timestamp),
    /// Attempts are in flight and nothing else is ready (or, with a task failed for
    /// good, the attempts still in flight must end before the plan is finished).
    Busy,
    /// Nothing more will run: the plan is complete or failed.
    Finished(Phase),
}

/// A plan and the state of its tasks, with the order they run in and what is ready.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRun {
    id: PlanId,
    name: Option<String>,
    tasks: Vec<Task>,
    graph: Graph,
    schedule: Schedule,
}

/// Counts the scheduler's elementary steps (ready-set changes, dependents visited, tasks
/// offered): what the linearity test measures.
#[cfg(test)]
mod work {
    thread_local!(static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
    pub fn add(n: u64) {
        STEPS.with(|s| s.set(s.get() + n));
    }
    pub fn take() -> u64 {
        STEPS.with(|s| s.replace(0))
    }
}
#[cfg(not(test))]
mod work {
    #[inline(always)]
    pub fn add(_: u64) {}
}

/// What the scheduler keeps up to date at each transition, so that no step scans the
/// plan: its cost is O(log n + the task's edges), whatever the plan's size.
#[derive(Debug, Clone, PartialEq, Default)]
struct Schedule {
    /// Per task, how many tasks it waits for are not complete.
    unmet: Vec<u32>,
    /// Pending tasks whose dependencies are all complete, by (end of their stored
    /// backoff, index): those without a backoff first, in plan order.
    ready: BTreeSet<(Option<Timestamp>, usize)>,
    running: usize,
    complete: usize,
    failed: BTreeSet<usize>,
}

impl Schedule {
    fn of(tasks: &[Task], graph: &Graph) -> Self {
        let mut schedule = Schedule {
            unmet: vec![0; tasks.len()],
            ..Schedule::default()
        };
        for task in tasks {
            let index = task.index();
            schedule.unmet[index] = graph
                .dependencies(index)
                .filter(|&d| tasks[d].status() != TaskStatus::Complete)
                .count() as u32;
        }
        for task in tasks {
            schedule.enter(task);
        }
        schedule
    }

    /// Counts `task` in its status.
    fn enter(&mut self, task: &Task) {
        let index = task.index();
        match task.status() {
            TaskStatus::Pending if self.unmet[index] == 0 => {
                work::add(1);
                self.ready.insert((task.next_attempt_at(), index));
            }
            TaskStatus::Pending => {}
            TaskStatus::Running => self.running += 1,
            TaskStatus::Complete => self.complete += 1,
            TaskStatus::Failed => {
                self.failed.insert(index);
            }
        }
    }

    /// Stops counting a task that was `status` with `next_attempt_at`.
    fn leave(&mut self, index: usize, (status, next_attempt_at): (TaskStatus, Option<Timestamp>)) {
        match status {
            TaskStatus::Pending => {
                work::add(1);
                self.ready.remove(&(next_attempt_at, index));
            }
            TaskStatus::Running => self.running -= 1,
            TaskStatus::Complete => self.complete -= 1,
            TaskStatus::Failed => {
                self.failed.remove(&index);
            }
        }
    }

    /// Brings the schedule up to date after the task at `index`, which was `before`,
    /// changed.
    fn update(
        &mut self,
        tasks: &[Task],
        graph: &Graph,
        index: usize,
        before: (TaskStatus, Option<Timestamp>),
    ) {
        self.leave(index, before);
        self.enter(&tasks[index]);
        let was_complete = before.0 == TaskStatus::Complete;
        let is_complete = tasks[index].status() == TaskStatus::Complete;
        if was_complete == is_complete {
            return;
        }
        for dependent in graph.dependents(index) {
            work::add(1);
            let task = &tasks[dependent];
            let key = (task.next_attempt_at(), dependent);
            let pending = task.status() == TaskStatus::Pending;
            if is_complete {
                self.unmet[dependent] -= 1;
                if self.unmet[dependent] == 0 && pending {
                    self.ready.insert(key);
                }
            } else {
                if self.unmet[dependent] == 0 && pending {
                    self.ready.remove(&key);
                }
                self.unmet[dependent] += 1;
            }
        }
    }
}

/// The first task that failed among `failed` (index, when its last attempt ended): the
/// earliest, then the lowest index; a task without an ended attempt after those with one.
/// The one rule for full plans and stored summaries alike. (A task cancelled before its
/// next attempt carries its previous attempt's end; such a cancel happens only when
/// nothing runs and nothing has failed, so it is the plan's only failure.)
pub fn first_failure(
    failed: impl IntoIterator<Item = (usize, Option<Timestamp>)>,
) -> Option<usize> {
    failed
        .into_iter()
        .min_by_key(|&(index, at)| (at.is_none(), at, index))
        .map(|(index, _)| index)
}

impl PlanRun {
    /// A new plan: every task pending, task IDs derived from `id`. `tasks` come from a
    /// parsed plan, whose graph was checked.
    pub fn new(id: PlanId, name: Option<String>, tasks: &[TaskSpec]) -> Result<Self, GraphError> {
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
                .with_links(spec.name.clone(), spec.depends_on.clone())
            })
            .collect();
        Self::from_tasks(id, name, tasks)
    }

    /// The plan of one task submitted on its own (the task API): the plan has the task's
    /// ID, so the task's ID also names its plan in `status` and `history`.
    pub fn single(task: Task) -> Self {
        let graph = Graph::chain(1);
        let tasks = vec![task];
        Self {
            id: PlanId::from(tasks[0].id().as_uuid()),
            name: None,
            schedule: Schedule::of(&tasks, &graph),
            graph,
            tasks,
        }
    }

    /// Rebuilds a plan from its tasks (in plan order: task `i` at index `i`), checking
    /// their graph.
    pub fn from_tasks(
        id: PlanId,
        name: Option<String>,
        tasks: Vec<Task>,
    ) -> Result<Self, GraphError> {
        if let Some((position, task)) = tasks.iter().enumerate().find(|(i, t)| t.index() != *i) {
            return Err(GraphError::OutOfOrder {
                position,
                index: task.index(),
            });
        }
        let graph = Graph::build(tasks.iter().map(Task::links))?;
        Ok(Self {
            id,
            name,
            schedule: Schedule::of(&tasks, &graph),
            graph,
            tasks,
        })
    }

    /// The plan ID.
    pub fn id(&self) -> PlanId {
        self.id
    }
    /// The optional label.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Its tasks, moved out.
    pub(crate) fn into_tasks(self) -> Vec<Task> {
        self.tasks
    }

    /// The tasks in plan order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }
    /// The task at `index`.
    pub fn task(&self, index: usize) -> Option<&Task> {
        self.tasks.get(index)
    }
    /// The order the tasks run in.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// `Failed` if a task failed, `Complete` if all completed, else `Active`: O(1).
    pub fn phase(&self) -> Phase {
        let failed = self.schedule.failed.first().copied();
        Phase::of(self.tasks.len(), self.schedule.complete, failed)
    }

    /// The first task that failed (see [`first_failure`]).
    pub fn failed_task_index(&self) -> Option<usize> {
        first_failure(self.schedule.failed.iter().map(|&index| {
            let at = self.tasks[index].last_attempt().and_then(|a| a.ended_at);
            (index, at)
        }))
    }

    /// The failed tasks, in plan order (kept by the scheduler: no scan).
    pub fn failed_tasks(&self) -> impl Iterator<Item = usize> + '_ {
        self.schedule.failed.iter().copied()
    }

    /// How many tasks have an attempt in flight.
    pub fn running(&self) -> usize {
        self.schedule.running
    }

    /// The tasks with an attempt in flight, in plan order (a scan: for stops and
    /// operator actions, not for steps).
    pub fn running_tasks(&self) -> Vec<usize> {
        self.tasks
            .iter()
            .filter(|t| t.status() == TaskStatus::Running)
            .map(Task::index)
            .collect()
    }

    /// The task that would start next once its backoff (if any) has passed: the first
    /// ready task, else (nothing ready: a plan whose tasks wait on running ones) the first
    /// pending one.
    pub fn next_ready(&self) -> Option<usize> {
        self.schedule
            .ready
            .first()
            .map(|&(_, index)| index)
            .or_else(|| {
                self.tasks
                    .iter()
                    .find(|t| t.status() == TaskStatus::Pending)
                    .map(Task::index)
            })
    }

    /// Applies `event` to the task at `index`, checking the plan-level guards: a task
    /// starts only once every task it waits for is complete.
    pub fn apply(&mut self, index: usize, event: TaskEvent) -> Result<Transition, TransitionError> {
        let Some(task) = self.tasks.get(index) else {
            return Err(TransitionError::NoSuchTask(index));
        };
        let before = (task.status(), task.next_attempt_at());
        let blocked_by = match self.schedule.unmet[index] {
            0 => None,
            _ => self
                .graph
                .dependencies(index)
                .find(|&d| self.tasks[d].status() != TaskStatus::Complete),
        };
        let transition = self.tasks[index].apply_in_order(event, blocked_by)?;
        self.schedule
            .update(&self.tasks, &self.graph, index, before);
        Ok(transition)
    }

    /// The tasks that may start at `now`, in the order they should: those without a
    /// backoff in plan order, then those whose backoff has passed. Empty unless the
    /// plan is active.
    pub fn runnable(&self, now: Timestamp) -> impl Iterator<Item = usize> + '_ {
        let active = self.phase() == Phase::Active;
        self.schedule
            .ready
            .iter()
            .take_while(move |(until, _)| active && until.is_none_or(|until| until <= now))
            .map(|&(_, index)| {
                work::add(1);
                index
            })
    }

    /// When the next stored backoff ends, if a ready task waits for one past `now`.
    pub fn next_wake(&self, now: Timestamp) -> Option<Timestamp> {
        // Keys sort tasks without a backoff first, then by the backoff's end.
        let after_now = (Bound::Excluded((Some(now), usize::MAX)), Bound::Unbounded);
        self.schedule
            .ready
            .range(after_now)
            .next()
            .and_then(|&(until, _)| until)
    }

    /// What may happen next at time `now`: one step of [`PlanRun::runnable`], for a
    /// caller that starts one task at a time (this crate's tests).
    #[cfg(test)]
    pub fn next_step(&self, now: Timestamp) -> Step {
        let phase = self.phase();
        if phase != Phase::Active {
            return match self.schedule.running {
                0 => Step::Finished(phase),
                _ => Step::Busy,
            };
        }
        if let Some(index) = self.runnable(now).next() {
            return Step::Run(index);
        }
        match self.next_wake(now) {
            Some(until) => Step::WaitUntil(until),
            // Active with nothing ready, nothing waiting and nothing running cannot
            // happen: the graph has no cycle, so some incomplete task has every task it
            // waits for complete.
            None => Step::Busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error_kind::ErrorKind;
    use crate::ids::TaskType;
    use crate::policy::{Backoff, RetryPolicy};
    use crate::task::Failure;

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
                name: None,
                depends_on: None,
                params: serde_json::json!({ "i": i }),
                policy,
                limits: Default::default(),
            })
            .collect();
        PlanRun::new(PlanId::new_random(), Some("p".into()), &specs).unwrap()
    }

    fn succeed(plan: &mut PlanRun, index: usize, at: Timestamp) {
        plan.apply(index, TaskEvent::Start { at }).unwrap();
        let ok = TaskEvent::Succeed {
            at,
            output: serde_json::Value::Null,
            log_tail: None,
            progress: None,
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
                progress: None,
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
                progress: None,
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
            let expected = crate::ids::TaskId::derive(plan.id(), task.task_type(), task.index());
            assert_eq!(task.id(), expected);
        }
    }

    /// A graph: `deps[i]` lists the tasks task `i` waits for (tasks are named `t{i}`).
    fn graph_plan(deps: &[&[usize]], max_retries: u32) -> PlanRun {
        let mut plan = plan(deps.len(), max_retries);
        let name = |i: usize| crate::TaskName::new(format!("t{i}")).unwrap();
        let tasks = plan
            .tasks
            .drain(..)
            .map(|task| {
                let index = task.index();
                let depends_on = deps[index].iter().map(|&d| name(d)).collect();
                task.with_links(Some(name(index)), Some(depends_on))
            })
            .collect();
        PlanRun::from_tasks(plan.id, None, tasks).unwrap()
    }

    fn runnable(plan: &PlanRun, now: Timestamp) -> Vec<usize> {
        plan.runnable(now).collect()
    }

    #[test]
    fn a_graph_runs_what_is_ready_together_and_waits_for_dependencies() {
        // 0 ─┬─ 1 ─┐
        //    └─ 2 ─┴─ 3
        let mut plan = graph_plan(&[&[], &[0], &[0], &[1, 2]], 0);
        assert_eq!(runnable(&plan, t(0)), [0]);
        succeed(&mut plan, 0, t(1));
        assert_eq!(runnable(&plan, t(1)), [1, 2]);
        plan.apply(1, TaskEvent::Start { at: t(2) }).unwrap();
        plan.apply(2, TaskEvent::Start { at: t(2) }).unwrap();
        assert_eq!(plan.running(), 2);
        assert_eq!(plan.next_step(t(2)), Step::Busy);
        assert_eq!(
            plan.apply(3, TaskEvent::Start { at: t(2) }),
            Err(TransitionError::Blocked {
                index: 3,
                blocking: 1
            })
        );
        let ok = |at| TaskEvent::Succeed {
            at,
            output: serde_json::json!(null),
            log_tail: None,
            progress: None,
        };
        plan.apply(2, ok(t(3))).unwrap();
        assert_eq!(
            runnable(&plan, t(3)),
            Vec::<usize>::new(),
            "3 still waits for 1"
        );
        plan.apply(1, ok(t(4))).unwrap();
        assert_eq!(plan.next_step(t(4)), Step::Run(3));
        succeed(&mut plan, 3, t(5));
        assert_eq!(plan.next_step(t(5)), Step::Finished(Phase::Complete));
    }

    #[test]
    fn after_a_failure_nothing_starts_and_the_first_failure_is_the_plans() {
        let mut plan = graph_plan(&[&[], &[], &[], &[0]], 0);
        assert_eq!(runnable(&plan, t(0)), [0, 1, 2]);
        for i in 0..3 {
            plan.apply(i, TaskEvent::Start { at: t(0) }).unwrap();
        }
        // Task 2 fails first, then task 1: the plan failed at 2, and waits for 0.
        plan.apply(2, fail(ErrorKind::Permanent, t(1))).unwrap();
        assert_eq!(plan.phase(), Phase::Failed);
        assert_eq!(
            plan.next_step(t(1)),
            Step::Busy,
            "attempts in flight end first"
        );
        plan.apply(1, fail(ErrorKind::Permanent, t(2))).unwrap();
        assert_eq!(plan.failed_task_index(), Some(2));
        succeed_running(&mut plan, 0, t(3));
        assert_eq!(
            runnable(&plan, t(3)),
            Vec::<usize>::new(),
            "3 does not start"
        );
        assert_eq!(plan.next_step(t(3)), Step::Finished(Phase::Failed));
        assert_eq!(plan.document().failed_task_index, Some(2));
    }

    #[test]
    fn backoffs_are_waited_for_while_other_tasks_run() {
        let mut plan = graph_plan(&[&[], &[]], 1);
        plan.apply(0, TaskEvent::Start { at: t(0) }).unwrap();
        plan.apply(0, fail(ErrorKind::Transient, t(1))).unwrap();
        assert_eq!(runnable(&plan, t(1)), [1], "0 backs off until t(6)");
        assert_eq!(plan.next_wake(t(1)), Some(t(6)));
        plan.apply(1, TaskEvent::Start { at: t(1) }).unwrap();
        assert_eq!(plan.next_step(t(2)), Step::WaitUntil(t(6)));
        assert_eq!(runnable(&plan, t(6)), [0]);
        assert_eq!(plan.next_wake(t(6)), None);
    }

    #[test]
    fn first_failure_orders_by_time_then_index() {
        assert_eq!(first_failure([]), None);
        assert_eq!(first_failure([(3, Some(t(2))), (1, Some(t(5)))]), Some(3));
        assert_eq!(first_failure([(3, Some(t(2))), (1, Some(t(2)))]), Some(1));
        assert_eq!(first_failure([(0, None), (4, Some(t(9)))]), Some(4));
    }

    fn succeed_running(plan: &mut PlanRun, index: usize, at: Timestamp) {
        let ok = TaskEvent::Succeed {
            at,
            output: serde_json::Value::Null,
            log_tail: None,
            progress: None,
        };
        plan.apply(index, ok).unwrap();
    }

    /// xorshift64*: small, seeded, reproducible.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
        }
    }

    #[test]
    fn the_schedule_kept_step_by_step_equals_the_one_recomputed() {
        // Random graphs, random legal events: after each, what the scheduler kept must
        // be what a full recount of the tasks gives.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut applied = 0;
        for _ in 0..40 {
            let n = 2 + rng.below(10);
            let deps: Vec<Vec<usize>> = (0..n)
                .map(|i| (0..i).filter(|_| rng.below(3) == 0).collect())
                .collect();
            let deps: Vec<&[usize]> = deps.iter().map(Vec::as_slice).collect();
            let mut plan = graph_plan(&deps, 1);
            for step in 0..200 {
                let index = rng.below(n);
                let at = t(step);
                let event = match rng.below(6) {
                    0 | 1 => TaskEvent::Start { at },
                    2 => TaskEvent::Succeed {
                        at,
                        output: serde_json::Value::Null,
                        log_tail: None,
                        progress: None,
                    },
                    3 => fail(
                        [ErrorKind::Transient, ErrorKind::Permanent][rng.below(2)],
                        at,
                    ),
                    4 => TaskEvent::Reset { params: None },
                    _ => TaskEvent::Resubmit { params: None },
                };
                if plan.apply(index, event).is_ok() {
                    applied += 1;
                }
                assert_eq!(
                    plan.schedule,
                    Schedule::of(&plan.tasks, &plan.graph),
                    "after step {step}"
                );
                if let Step::Run(i) = plan.next_step(at) {
                    assert!(
                        plan.graph
                            .dependencies(i)
                            .all(|d| { plan.tasks[d].status() == TaskStatus::Complete })
                    );
                }
            }
        }
        assert!(applied > 2000, "the events exercised the table: {applied}");
    }

    /// Runs a plan to completion as the executor does (up to 8 at once) and returns the
    /// scheduler's steps.
    fn scheduler_steps(mut plan: PlanRun) -> u64 {
        work::take();
        loop {
            let batch: Vec<usize> = plan.runnable(t(0)).take(8).collect();
            if batch.is_empty() {
                break;
            }
            for &index in &batch {
                plan.apply(index, TaskEvent::Start { at: t(0) }).unwrap();
            }
            for &index in &batch {
                succeed_running(&mut plan, index, t(1));
            }
            assert!(plan.next_wake(t(1)).is_none());
        }
        assert_eq!(plan.phase(), Phase::Complete);
        work::take()
    }

    /// A chain of `n` tasks, and a graph of `n` tasks each waiting for one of 4 roots.
    fn chain_and_fan(n: usize) -> (PlanRun, PlanRun) {
        let fan: Vec<Vec<usize>> = (0..n)
            .map(|i| if i < 4 { vec![] } else { vec![i % 4] })
            .collect();
        let fan: Vec<&[usize]> = fan.iter().map(Vec::as_slice).collect();
        (plan(n, 0), graph_plan(&fan, 0))
    }

    #[test]
    fn the_scheduler_does_the_same_work_per_task_whatever_the_plan_size() {
        let steps = |n| {
            let (chain, fan) = chain_and_fan(n);
            (scheduler_steps(chain), scheduler_steps(fan))
        };
        let (s100, s1k, s10k) = (steps(100), steps(1_000), steps(10_000));
        // Linear, a·n + b, exactly: each further 9 000 tasks cost 10 × each further 900.
        for (name, small, mid, large) in [
            ("chain", s100.0, s1k.0, s10k.0),
            ("fan", s100.1, s1k.1, s10k.1),
        ] {
            assert_eq!(
                large - mid,
                10 * (mid - small),
                "{name}: {small} {mid} {large}"
            );
            assert!(
                large <= 6 * 10_000,
                "{name}: {large} steps for 10 000 tasks"
            );
        }
    }
}
