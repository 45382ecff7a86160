//! Transitions stored together: applied to the plan one by one, stored in one
//! transaction, then reported — never reported before they are stored. The executor puts
//! an attempt's end and the starts it makes possible in one batch, so a chain pays one
//! commit (one fsync with `--durability full`) per task rather than two — and it queues
//! the batch ([`Batch::queued`]): the store's writer stores it (with whatever else waits)
//! and reports it, while the executor goes on; what the batch's new attempts do outside
//! their sandbox waits for that commit.

use std::collections::HashSet;
use std::sync::Arc;

use super::execute::{ExecuteError, Observer};
use crate::plan::{PlanRun, Task, TaskEvent, Transition};
use crate::store::{Commit, Entry, StateStore};

/// Transitions applied to a plan and not yet stored.
pub(super) struct Batch<'a> {
    store: &'a dyn StateStore,
    reports: Reports<'a>,
    /// In the order they were applied, at most one per task: the store writes a task's
    /// newest attempt only, so a second transition of a task first stores the first.
    applied: Vec<(usize, Transition)>,
    /// The tasks of `applied` (a wide graph starts thousands at once).
    held: HashSet<usize>,
}

/// When a batch is stored, and who reports it.
enum Reports<'a> {
    /// Stored before [`Batch::commit`] returns, then reported to the observer.
    Now(&'a dyn Observer),
    /// Queued: the store's writer stores it after `tail` (the batch this executor queued
    /// last), then reports it.
    Queued {
        observer: Arc<dyn Observer>,
        tail: Option<Commit>,
    },
}

impl<'a> Batch<'a> {
    /// An empty batch, stored in `store` when committed and reported to `observer` then.
    pub fn new(store: &'a dyn StateStore, observer: &'a dyn Observer) -> Self {
        Self::with(store, Reports::Now(observer))
    }

    /// An empty batch queued to `store` when committed, after `tail` (the last batch this
    /// executor queued), and reported to `observer` by the store once stored.
    pub fn queued(
        store: &'a dyn StateStore,
        observer: Arc<dyn Observer>,
        tail: Option<Commit>,
    ) -> Self {
        Self::with(store, Reports::Queued { observer, tail })
    }

    fn with(store: &'a dyn StateStore, reports: Reports<'a>) -> Self {
        Self {
            store,
            reports,
            applied: Vec::new(),
            held: HashSet::new(),
        }
    }

    /// The commit of the last batch queued (`None` for a batch stored at once, or when
    /// nothing was queued).
    pub fn into_tail(self) -> Option<Commit> {
        match self.reports {
            Reports::Now(_) => None,
            Reports::Queued { tail, .. } => tail,
        }
    }

    /// Whether a transition of the task at `index` waits in the batch.
    pub fn holds(&self, index: usize) -> bool {
        self.held.contains(&index)
    }

    /// Applies `event` to the task at `index`. If the batch already holds a transition of
    /// that task, the batch is committed first (see [`Batch::applied`]).
    pub fn apply(
        &mut self,
        plan: &mut PlanRun,
        index: usize,
        event: TaskEvent,
    ) -> Result<(), ExecuteError> {
        if self.holds(index) {
            self.commit(plan)?;
        }
        let transition = plan.apply(index, event)?;
        self.applied.push((index, transition));
        self.held.insert(index);
        Ok(())
    }

    /// Commits what was applied, then returns `result`: when applying the rest of a
    /// batch failed, the transitions applied before the failure are stored all the
    /// same (an attempt's end is never lost to a later refusal). A failed commit wins.
    pub fn commit_then<T>(
        &mut self,
        plan: &PlanRun,
        result: Result<T, ExecuteError>,
    ) -> Result<T, ExecuteError> {
        self.commit(plan)?;
        result
    }

    /// Stores every task the batch changed in one transaction, then reports the
    /// transitions in the order they were applied — before returning, or, queued, once the
    /// store's writer has stored them (an error then is that of an earlier batch this
    /// executor queued, which this one cannot be stored without). The batch is empty
    /// afterwards.
    pub fn commit(&mut self, plan: &PlanRun) -> Result<(), ExecuteError> {
        if self.applied.is_empty() {
            return Ok(());
        }
        match &mut self.reports {
            Reports::Now(observer) => {
                let tasks: Vec<&Task> = self
                    .applied
                    .iter()
                    .map(|&(index, _)| &plan.tasks()[index])
                    .collect();
                self.store.record_tasks(plan.id(), &tasks)?;
                self.held.clear();
                for (index, transition) in self.applied.drain(..) {
                    observer.transition(plan.id(), &plan.tasks()[index], transition);
                }
            }
            Reports::Queued { observer, tail } => {
                self.held.clear();
                let (indices, transitions): (Vec<usize>, Vec<Transition>) =
                    self.applied.drain(..).unzip();
                // What the store writes and the observers read: not the earlier attempts.
                let tasks = indices
                    .iter()
                    .map(|&i| plan.tasks()[i].with_newest_attempt_only())
                    .collect();
                let (id, observer) = (plan.id(), observer.clone());
                let commit = self.store.submit(Entry {
                    plan: id,
                    tasks,
                    after: tail.take(),
                    report: Some(Box::new(move |tasks: &[Task]| {
                        for (task, transition) in tasks.iter().zip(transitions) {
                            observer.transition(id, task, transition);
                        }
                    })),
                });
                let refused = commit.failure();
                *tail = Some(commit);
                if let Some(error) = refused {
                    return Err(ExecuteError::Store(crate::store::StoreError::Shared(error)));
                }
            }
        }
        Ok(())
    }
}

/// Applies `events` in order and commits them: an operator action or a stop is recorded
/// whole or not at all (the events name distinct tasks).
pub(super) fn apply_and_commit(
    plan: &mut PlanRun,
    events: Vec<(usize, TaskEvent)>,
    store: &dyn StateStore,
    observer: &dyn Observer,
) -> Result<(), ExecuteError> {
    let mut batch = Batch::new(store, observer);
    for (index, event) in events {
        debug_assert!(
            !batch.holds(index),
            "task {index} twice in one operator action"
        );
        batch.apply(plan, index, event)?;
    }
    batch.commit(plan)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Mutex;

    use jiff::Timestamp;

    use super::*;
    use crate::plan::{PlanId, PlanSpec, PluginPin, Resolution, TaskStatus, TaskType};
    use crate::store::{Origin, PlanSummary, StoreError};

    /// What the store and the observer saw, in order.
    #[derive(Debug, Clone, PartialEq)]
    enum Seen {
        /// One transaction: each task with its status and its attempts' count.
        Commit(Vec<(usize, TaskStatus, usize)>),
        Reported(usize, TaskStatus),
    }

    #[derive(Default)]
    struct Log(Mutex<Vec<Seen>>);

    impl StateStore for Log {
        fn create_plan(&self, _: &Resolution, _: &PlanRun, _: Origin) -> Result<(), StoreError> {
            Ok(())
        }
        fn submit(&self, entry: Entry) -> Commit {
            if let Some(error) = entry.predecessor_refused() {
                return Commit::refused(error);
            }
            let commit = entry
                .tasks
                .iter()
                .map(|t| (t.index(), t.status(), t.attempts().len()))
                .collect();
            self.0.lock().unwrap().push(Seen::Commit(commit));
            if let Some(report) = entry.report {
                report(&entry.tasks);
            }
            Commit::already_stored()
        }
        fn load_plan(&self, _: PlanId) -> Result<Option<(Resolution, PlanRun)>, StoreError> {
            Ok(None)
        }
        fn list_plans(&self, _: usize) -> Result<Vec<PlanSummary>, StoreError> {
            Ok(Vec::new())
        }
        fn repin_plugins(
            &self,
            _: PlanId,
            _: &BTreeMap<TaskType, PluginPin>,
        ) -> Result<(), StoreError> {
            Ok(())
        }
    }

    impl Observer for Log {
        fn transition(&self, _: PlanId, task: &Task, _: Transition) {
            let seen = Seen::Reported(task.index(), task.status());
            self.0.lock().unwrap().push(seen);
        }
    }

    fn chain(tasks: usize) -> PlanRun {
        let text = "[[tasks]]\ntype = \"a\"\n".repeat(tasks);
        let spec = PlanSpec::parse(&text, Path::new("/p.toml")).unwrap();
        PlanRun::new(PlanId::new_random(), None, &spec.tasks).unwrap()
    }

    fn succeed() -> TaskEvent {
        TaskEvent::Succeed {
            at: Timestamp::now(),
            output: serde_json::Value::Null,
            log_tail: None,
            progress: None,
        }
    }

    fn start() -> TaskEvent {
        TaskEvent::Start {
            at: Timestamp::now(),
        }
    }

    #[test]
    fn an_end_and_the_next_start_are_one_commit_reported_after_it_in_order() {
        let log = Log::default();
        let mut plan = chain(2);
        let mut batch = Batch::new(&log, &log);
        batch.apply(&mut plan, 0, start()).unwrap();
        batch.commit(&plan).unwrap();
        batch.apply(&mut plan, 0, succeed()).unwrap();
        batch.apply(&mut plan, 1, start()).unwrap();
        assert!(batch.holds(0) && batch.holds(1));
        assert_eq!(
            log.0.lock().unwrap().len(),
            2,
            "nothing stored before commit"
        );
        batch.commit(&plan).unwrap();
        assert!(!batch.holds(0), "a commit empties the batch");
        use TaskStatus::{Complete, Running};
        assert_eq!(
            *log.0.lock().unwrap(),
            [
                Seen::Commit(vec![(0, Running, 1)]),
                Seen::Reported(0, Running),
                Seen::Commit(vec![(0, Complete, 1), (1, Running, 1)]),
                Seen::Reported(0, Complete),
                Seen::Reported(1, Running),
            ]
        );
        // Committing an empty batch stores nothing.
        batch.commit(&plan).unwrap();
        assert_eq!(log.0.lock().unwrap().len(), 5);
    }

    #[test]
    fn a_second_transition_of_a_task_stores_the_first_before_it() {
        // The store writes a task's newest attempt only: the start must be stored while
        // it is the newest, before the end is applied.
        let log = Log::default();
        let mut plan = chain(1);
        let mut batch = Batch::new(&log, &log);
        batch.apply(&mut plan, 0, start()).unwrap();
        batch.apply(&mut plan, 0, succeed()).unwrap();
        assert_eq!(
            *log.0.lock().unwrap(),
            [
                Seen::Commit(vec![(0, TaskStatus::Running, 1)]),
                Seen::Reported(0, TaskStatus::Running),
            ]
        );
        batch.commit(&plan).unwrap();
        assert_eq!(
            log.0.lock().unwrap()[2],
            Seen::Commit(vec![(0, TaskStatus::Complete, 1)])
        );
    }

    #[test]
    fn an_operator_action_with_a_refused_event_stores_none_of_it() {
        let log = Log::default();
        let mut plan = chain(2);
        // Task 0 may start; task 1 may not while it runs (a chain): nothing is stored.
        let events = vec![(0, start()), (1, start())];
        assert!(apply_and_commit(&mut plan, events, &log, &log).is_err());
        assert!(log.0.lock().unwrap().is_empty());
    }

    #[test]
    fn an_end_applied_before_a_refusal_is_stored_all_the_same() {
        let log = Log::default();
        let mut plan = chain(2);
        let mut batch = Batch::new(&log, &log);
        batch.apply(&mut plan, 0, start()).unwrap();
        batch.commit(&plan).unwrap();
        // Task 1 never started: its end is refused, after task 0's end was applied.
        let applied = batch
            .apply(&mut plan, 0, succeed())
            .and_then(|()| batch.apply(&mut plan, 1, succeed()));
        assert!(batch.commit_then(&plan, applied).is_err());
        assert_eq!(
            log.0.lock().unwrap()[2..],
            [
                Seen::Commit(vec![(0, TaskStatus::Complete, 1)]),
                Seen::Reported(0, TaskStatus::Complete),
            ]
        );
    }
}
