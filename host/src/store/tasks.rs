//! What the task API (`planrt serve`) asks of the store beyond plans: a task by its ID,
//! tasks newest first a page at a time, plans that still have work, removal from the
//! API's views, who runs a plan, readiness and liveness.

use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::rows::{backend, status_name};
use super::sqlite::SqliteStore;
use super::{Origin, StoreError};
use crate::blocking::blocking;
use crate::plan::{PlanId, TaskId, TaskStatus};

/// Where a task is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRef {
    /// Its plan.
    pub plan: PlanId,
    /// Its position in the plan.
    pub index: usize,
    /// Whether it was removed from the task API's views.
    pub removed: bool,
    /// When its plan was created (the task submitted).
    pub submitted_at: Timestamp,
}

/// Where a page of tasks ends (opaque to clients): the next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCursor {
    plan_row: i64,
    index: i64,
}

impl std::fmt::Display for TaskCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.plan_row, self.index)
    }
}

impl std::str::FromStr for TaskCursor {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{text}` is not a cursor this server gave out");
        let (plan_row, index) = text.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            plan_row: plan_row.parse().map_err(|_| bad())?,
            index: index.parse().map_err(|_| bad())?,
        })
    }
}

impl SqliteStore {
    /// The task with this ID, removed or not.
    pub fn find_task(&self, id: TaskId) -> Result<Option<TaskRef>, StoreError> {
        blocking(|| {
            let conn = self.read_conn();
            let found: Option<(String, i64, Option<String>, String)> = conn
                .query_row(
                    "SELECT t.plan_id, t.idx, p.removed_at, coalesce(p.submitted_at, p.created_at)
                     FROM tasks t JOIN plans p ON p.id = t.plan_id
                     WHERE t.id = ?1",
                    [id.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            found
                .map(|(plan, index, removed, submitted)| {
                    Ok(TaskRef {
                        plan: plan.parse().map_err(backend)?,
                        index: index as usize,
                        removed: removed.is_some(),
                        submitted_at: submitted.parse().map_err(backend)?,
                    })
                })
                .transpose()
        })
    }

    /// Up to `limit` tasks not removed, newest plan first (its tasks last to first),
    /// starting after `after`; and the cursor of the next page, if there may be one.
    pub fn list_tasks(
        &self,
        limit: usize,
        after: Option<TaskCursor>,
    ) -> Result<(Vec<TaskRef>, Option<TaskCursor>), StoreError> {
        blocking(|| {
            let conn = self.read_conn();
            let mut stmt = conn.prepare_cached(
                "SELECT p.rowid, t.plan_id, t.idx, coalesce(p.submitted_at, p.created_at)
                 FROM tasks t JOIN plans p ON p.id = t.plan_id
                 WHERE p.removed_at IS NULL AND (p.rowid, t.idx) < (?2, ?3)
                 ORDER BY p.rowid DESC, t.idx DESC LIMIT ?1",
            )?;
            let (plan_row, index) = after.map_or((i64::MAX, i64::MAX), |c| (c.plan_row, c.index));
            let mut rows = stmt.query(params![limit as i64, plan_row, index])?;
            let mut tasks = Vec::new();
            let mut last = None;
            while let Some(row) = rows.next()? {
                let cursor = TaskCursor {
                    plan_row: row.get(0)?,
                    index: row.get(2)?,
                };
                tasks.push(TaskRef {
                    plan: row.get::<_, String>(1)?.parse().map_err(backend)?,
                    index: cursor.index as usize,
                    removed: false,
                    submitted_at: row.get::<_, String>(3)?.parse().map_err(backend)?,
                });
                last = Some(cursor);
            }
            let next = if tasks.len() == limit { last } else { None };
            Ok((tasks, next))
        })
    }

    /// Plans of `origin` that still have work, oldest first: no task failed, and some
    /// task not complete.
    pub fn active_plans(&self, origin: Origin) -> Result<Vec<PlanId>, StoreError> {
        self.plans_having(
            origin,
            "sum(t.status = ?1) = 0 AND sum(t.status <> ?2) > 0",
            [TaskStatus::Failed, TaskStatus::Complete],
        )
    }

    /// Failed plans of `origin` with attempts still recorded running: a graph whose task
    /// failed while others ran, when the host died before they ended. Nothing runs them
    /// again; their attempts must be recorded `interrupted`.
    pub fn failed_plans_with_running_attempts(
        &self,
        origin: Origin,
    ) -> Result<Vec<PlanId>, StoreError> {
        self.plans_having(
            origin,
            "sum(t.status = ?1) > 0 AND sum(t.status = ?2) > 0",
            [TaskStatus::Failed, TaskStatus::Running],
        )
    }

    /// Plans of `origin`, oldest first, whose tasks meet `having` (an SQL condition on
    /// the plan's tasks `t`, with `?1` and `?2` the two `statuses`).
    fn plans_having(
        &self,
        origin: Origin,
        having: &'static str,
        statuses: [TaskStatus; 2],
    ) -> Result<Vec<PlanId>, StoreError> {
        blocking(|| {
            let conn = self.read_conn();
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT p.id FROM plans p JOIN tasks t ON t.plan_id = p.id
                 WHERE p.origin = ?3
                 GROUP BY p.id
                 HAVING {having}
                 ORDER BY p.rowid"
            ))?;
            let ids = stmt.query_map(
                params![
                    status_name(statuses[0]),
                    status_name(statuses[1]),
                    <&str>::from(origin),
                ],
                |r| r.get::<_, String>(0),
            )?;
            ids.map(|id| id?.parse().map_err(backend)).collect()
        })
    }

    /// Removes a plan from the task API's views (or brings it back).
    pub fn set_removed(&self, plan: PlanId, removed: bool) -> Result<(), StoreError> {
        let now = jiff::Timestamp::now().to_string();
        self.update_plan(
            plan,
            "UPDATE plans SET removed_at = CASE WHEN ?2 THEN ?3 END WHERE id = ?1",
            params![plan.to_string(), removed, now],
        )
    }

    /// Records that the plan was submitted again now (a failed task of the task API), and
    /// that `origin` runs it from now on.
    pub fn mark_submitted(&self, plan: PlanId, origin: Origin) -> Result<(), StoreError> {
        let now = jiff::Timestamp::now().to_string();
        self.update_plan(
            plan,
            "UPDATE plans SET submitted_at = ?2, origin = ?3, removed_at = NULL WHERE id = ?1",
            params![plan.to_string(), now, <&str>::from(origin)],
        )
    }

    /// Records that `origin` runs the plan from now on (the server took over a plan of
    /// the CLI: it then runs it again after a restart).
    pub fn set_origin(&self, plan: PlanId, origin: Origin) -> Result<(), StoreError> {
        self.update_plan(
            plan,
            "UPDATE plans SET origin = ?2 WHERE id = ?1",
            params![plan.to_string(), <&str>::from(origin)],
        )
    }

    fn update_plan(
        &self,
        plan: PlanId,
        sql: &str,
        values: impl rusqlite::Params,
    ) -> Result<(), StoreError> {
        blocking(|| {
            let mut conn = self.writer()?;
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if tx.execute(sql, values)? != 1 {
                return Err(StoreError::UnknownPlan(plan));
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Whether an attempt of a task of `task_type` ever completed (readiness:
    /// `mark-ready`). Attempts are append-only, so once true it stays true, even if the
    /// task is reset later.
    pub fn completed_once(&self, task_type: &str) -> Result<bool, StoreError> {
        blocking(|| {
            Ok(self.read_conn().query_row(
                "SELECT EXISTS (SELECT 1 FROM attempts a
                                JOIN tasks t ON t.plan_id = a.plan_id AND t.idx = a.task_idx
                                WHERE t.type = ?1 AND a.outcome = 'complete')",
                params![task_type],
                |r| r.get(0),
            )?)
        })
    }

    /// Whether the store can record a transition now (liveness): its writer thread runs,
    /// its write connection is free and it takes the write lock, all within `wait` (a
    /// commit that hangs on the disk, or a lock held by another process, fails it).
    pub fn ping(&self, wait: std::time::Duration) -> Result<(), StoreError> {
        if self.writer_stopped() {
            return Err(backend(
                "the state store's writer thread stopped: nothing can be recorded; restart planrt",
            ));
        }
        blocking(|| {
            let deadline = std::time::Instant::now() + wait;
            let mut conn = self.conn_before(deadline).ok_or_else(|| {
                backend(format!(
                    "the state store's writer has been busy for more than {wait:?}"
                ))
            })?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            conn.busy_timeout(left.max(std::time::Duration::from_millis(1)))?;
            let probe = (|| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                tx.query_row("SELECT count(*) FROM plans", [], |r| r.get::<_, i64>(0))?;
                tx.rollback()
            })();
            conn.busy_timeout(super::sqlite::BUSY_TIMEOUT)?;
            Ok(probe?)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::plan::{PlanRun, PlanSpec, Resolution, SAVED_PLAN_FORMAT_VERSION, TaskEvent};
    use crate::state_dir::StateDir;
    use crate::store::{Durability, StateStore};

    fn store(dir: &tempfile::TempDir) -> SqliteStore {
        let state = StateDir::open_or_create(&dir.path().join("state")).unwrap();
        SqliteStore::open(&state, Durability::Process).unwrap()
    }

    /// Records a new plan of `tasks` tasks of type `a` (or `mark-ready`).
    fn add_plan(store: &SqliteStore, task_type: &str, tasks: usize, origin: Origin) -> PlanRun {
        let text = format!("[[tasks]]\ntype = \"{task_type}\"\n").repeat(tasks);
        let spec = PlanSpec::parse(&text, Path::new("/p.toml")).unwrap();
        let run = PlanRun::new(PlanId::new_random(), None, &spec.tasks).unwrap();
        let resolution = Resolution {
            format_version: SAVED_PLAN_FORMAT_VERSION,
            defaults: spec.defaults,
            grants: spec.grants,
            plugins: Default::default(),
        };
        store.create_plan(&resolution, &run, origin).unwrap();
        run
    }

    fn complete(store: &SqliteStore, run: &mut PlanRun, index: usize) {
        let at = jiff::Timestamp::now();
        run.apply(index, TaskEvent::Start { at }).unwrap();
        run.apply(
            index,
            TaskEvent::Succeed {
                at,
                output: serde_json::json!({}),
                log_tail: None,
                progress: None,
            },
        )
        .unwrap();
        store.record_task(run.id(), &run.tasks()[index]).unwrap();
    }

    #[test]
    fn a_task_is_found_by_its_id_removed_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let run = add_plan(&store, "a", 2, Origin::Api);
        let task = &run.tasks()[1];
        let found = store.find_task(task.id()).unwrap().unwrap();
        assert_eq!(
            (found.plan, found.index, found.removed),
            (run.id(), 1, false)
        );
        store.set_removed(run.id(), true).unwrap();
        assert!(store.find_task(task.id()).unwrap().unwrap().removed);
        store.set_removed(run.id(), false).unwrap();
        assert!(!store.find_task(task.id()).unwrap().unwrap().removed);
        let unknown = crate::plan::TaskId::from(uuid::Uuid::new_v4());
        assert_eq!(store.find_task(unknown).unwrap(), None);
        assert!(matches!(
            store.set_removed(PlanId::new_random(), true),
            Err(StoreError::UnknownPlan(_))
        ));
    }

    #[test]
    fn tasks_are_listed_newest_plan_first_in_pages_without_removed_plans() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let old = add_plan(&store, "a", 2, Origin::Cli);
        let removed = add_plan(&store, "a", 1, Origin::Api);
        let new = add_plan(&store, "a", 1, Origin::Api);
        store.set_removed(removed.id(), true).unwrap();

        let (page, next) = store.list_tasks(2, None).unwrap();
        let ids = |page: &[TaskRef]| page.iter().map(|t| (t.plan, t.index)).collect::<Vec<_>>();
        assert_eq!(ids(&page), [(new.id(), 0), (old.id(), 1)]);
        let (rest, end) = store.list_tasks(2, next).unwrap();
        assert_eq!(ids(&rest), [(old.id(), 0)]);
        assert_eq!(end, None, "a short page is the last");

        let cursor: TaskCursor = next.unwrap().to_string().parse().unwrap();
        assert_eq!(Some(cursor), next, "a cursor round-trips through its text");
        assert!("7".parse::<TaskCursor>().is_err());
        assert!("a.b".parse::<TaskCursor>().is_err());
    }

    #[test]
    fn active_plans_are_those_of_the_origin_with_work_left_and_no_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let cli = add_plan(&store, "a", 1, Origin::Cli);
        let pending = add_plan(&store, "a", 2, Origin::Api);
        let mut done = add_plan(&store, "a", 1, Origin::Api);
        complete(&store, &mut done, 0);
        let mut failed = add_plan(&store, "a", 1, Origin::Api);
        let at = jiff::Timestamp::now();
        failed.apply(0, TaskEvent::Start { at }).unwrap();
        failed
            .apply(
                0,
                TaskEvent::Cancel {
                    at,
                    reason: "test".into(),
                    progress: None,
                },
            )
            .unwrap();
        store.record_task(failed.id(), &failed.tasks()[0]).unwrap();
        // Removed from the API's views, yet still unfinished: it still runs.
        store.set_removed(pending.id(), true).unwrap();

        assert_eq!(store.active_plans(Origin::Api).unwrap(), [pending.id()]);
        assert_eq!(store.active_plans(Origin::Cli).unwrap(), [cli.id()]);
    }

    #[test]
    fn ping_fails_while_another_connection_holds_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let wait = std::time::Duration::from_millis(50);
        store.ping(wait).unwrap();
        let other = rusqlite::Connection::open(dir.path().join("state/planrt.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert!(store.ping(wait).is_err());
        other.execute_batch("ROLLBACK").unwrap();
        store.ping(wait).unwrap();
    }

    #[test]
    fn readiness_is_a_completed_attempt_of_the_type_and_is_never_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let mut run = add_plan(&store, "mark-ready", 1, Origin::Api);
        assert!(!store.completed_once("mark-ready").unwrap());
        complete(&store, &mut run, 0);
        assert!(store.completed_once("mark-ready").unwrap());
        assert!(!store.completed_once("other").unwrap());
        // `resume --from 0` resets the task: its completed attempt stays in the history.
        run.apply(0, TaskEvent::Reset { params: None }).unwrap();
        store.record_task(run.id(), &run.tasks()[0]).unwrap();
        assert!(store.completed_once("mark-ready").unwrap());
    }

    #[test]
    fn a_resubmission_is_dated_shown_again_and_adopted_by_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let run = add_plan(&store, "a", 1, Origin::Cli);
        let id = run.tasks()[0].id();
        let first = store.find_task(id).unwrap().unwrap().submitted_at;
        store.set_removed(run.id(), true).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        store.mark_submitted(run.id(), Origin::Api).unwrap();
        let found = store.find_task(id).unwrap().unwrap();
        assert!(found.submitted_at > first, "{found:?}");
        assert!(!found.removed);
        assert_eq!(store.active_plans(Origin::Api).unwrap(), [run.id()]);
        store.set_origin(run.id(), Origin::Cli).unwrap();
        assert_eq!(store.active_plans(Origin::Api).unwrap(), []);
        assert!(matches!(
            store.mark_submitted(PlanId::new_random(), Origin::Api),
            Err(StoreError::UnknownPlan(_))
        ));
    }

    #[test]
    fn ping_fails_while_this_process_holds_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let held = store.conn();
        let started = std::time::Instant::now();
        assert!(store.ping(std::time::Duration::from_millis(50)).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        drop(held);
        store.ping(std::time::Duration::from_millis(50)).unwrap();
    }
}
