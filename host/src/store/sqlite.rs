//! The SQLite state store: one database file in the state dir, WAL mode so readers
//! (`status`, `history`) never block the writer, one transaction per transition.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::rows::{self, backend, from_json, json};
use super::schema::{self, MigrationError};
use super::writer::{Commit, Entry, Writer};
use super::{Durability, Origin, PlanSummary, StateStore, StoreError};
use crate::blocking::blocking;
use crate::plan::{Phase, PlanId, PlanRun, PluginPin, Resolution, TaskStatus, TaskType};
use crate::state_dir::{self, StateDir};

/// How long a statement waits for another connection's lock before failing (and a queued
/// transition for another process's write lock, from when it was queued).
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// File name of the database inside the state dir.
pub const DATABASE_FILE: &str = "planrt.db";

/// A [`StateStore`] in a SQLite database. Writes go through one connection; reads through
/// a second one, so a reader (an HTTP `GET`, a probe) never waits behind a commit: with
/// WAL, readers see the last commit without the write lock. Task transitions go through
/// a queue to a writer thread ([`Writer`]), which stores what waits together in one
/// transaction.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    /// Waiting writers are parked in a queue (parking_lot: eventually fair), and a write
    /// can give up at a deadline. Shared with the writer thread.
    writer: Arc<parking_lot::Mutex<Connection>>,
    /// `None` for a read-only store (its one connection reads).
    reader: Option<parking_lot::Mutex<Connection>>,
    /// The writer thread, started by the first transition queued. Declared last: dropped
    /// after the connections' owners above are gone, it stores what is queued first.
    queue: OnceLock<Writer>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        backend(e)
    }
}

impl From<MigrationError> for StoreError {
    fn from(e: MigrationError) -> Self {
        backend(e)
    }
}

/// Switches to WAL (readers never block the writer). Switching needs a moment alone with
/// the file, and SQLite answers BUSY at once rather than waiting: retry for a while.
fn set_wal(conn: &Connection) -> Result<(), StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(backend(format!(
                    "the state database refused WAL mode (it is in {mode} mode)"
                )));
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `state_dir`, migrated to the current
    /// schema, with the given durability. The database is private (`0600`); SQLite gives
    /// its `-wal` and `-shm` files the database's mode.
    pub fn open(state_dir: &StateDir, durability: Durability) -> Result<Self, StoreError> {
        let path = state_dir.path().join(DATABASE_FILE);
        // SQLite would say only "unable to open database file". The effective IDs are
        // checked, as a write would be.
        let writable = rustix::fs::accessat(
            rustix::fs::CWD,
            state_dir.path(),
            rustix::fs::Access::WRITE_OK,
            rustix::fs::AtFlags::EACCESS,
        );
        if let Err(errno) = writable {
            return Err(backend(format!(
                "the state directory cannot be written ({}): planrt records every transition there",
                std::io::Error::from(errno)
            )));
        }
        for file in [DATABASE_FILE, WAL_FILE, "planrt.db-shm"] {
            state_dir::make_private(&state_dir.path().join(file))?;
        }
        match state_dir::create_private_file(&path) {
            Err(state_dir::StateDirError::Io { error, .. })
                if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => drop(other?),
        }
        let mut conn =
            Connection::open(&path).map_err(|e| backend(format!("{}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        set_wal(&conn)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let synchronous = match durability {
            // An fsync per commit: a transition survives power loss.
            Durability::Full => "FULL",
            // WAL + NORMAL: survives kill -9 and OOM kills, not power loss.
            Durability::Process => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        schema::migrate(&mut conn)?;
        let reader =
            Connection::open(&path).map_err(|e| backend(format!("{}: {e}", path.display())))?;
        reader.busy_timeout(BUSY_TIMEOUT)?;
        reader.pragma_update(None, "query_only", "ON")?;
        Ok(Self {
            path,
            writer: Arc::new(parking_lot::Mutex::new(conn)),
            reader: Some(parking_lot::Mutex::new(reader)),
            queue: OnceLock::new(),
        })
    }

    /// Opens the database in `state_dir` for reading only (`status`, `history`): `None`
    /// if there is none. Nothing is migrated or written (SQLite may add the `-shm` index
    /// any WAL reader needs, with the database's mode), and a read-only state dir works. A
    /// database of another schema version is refused, saying which.
    pub fn open_read_only(state_dir: &StateDir) -> Result<Option<Self>, StoreError> {
        let path = state_dir.path().join(DATABASE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let open = |uri: String| -> Result<Connection, StoreError> {
            let conn = Connection::open_with_flags(uri, flags)
                .map_err(|e| backend(format!("{}: {e}", path.display())))?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            schema::check_version(&conn)?;
            Ok(conn)
        };
        let uri = format!("file:{}", uri_path(&path));
        let conn = match open(uri.clone()) {
            Ok(conn) => conn,
            // A WAL database in a dir this user cannot write, closed cleanly: SQLite
            // cannot make the -shm index it reads through, so it is read as immutable —
            // right only when no committed rows wait in a -wal file (after a crash).
            Err(first)
                if !dir_is_writable(state_dir.path())
                    && !has_content(&state_dir.path().join(WAL_FILE)) =>
            {
                open(format!("{uri}?immutable=1")).map_err(|_| first)?
            }
            Err(e) => return Err(e),
        };
        Ok(Some(Self {
            path,
            writer: Arc::new(parking_lot::Mutex::new(conn)),
            reader: None,
            queue: OnceLock::new(),
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Holds the write connection until the guard is dropped: nothing this process
    /// stores meanwhile is stored (tests of what waits for a commit).
    #[cfg(test)]
    pub(crate) fn hold_writes(&self) -> parking_lot::MutexGuard<'_, Connection> {
        self.conn()
    }

    /// Whether the writer thread stopped (it panicked): nothing queued is stored any more.
    pub(super) fn writer_stopped(&self) -> bool {
        self.queue.get().is_some_and(Writer::stopped)
    }

    /// Whether the writer thread was started (by a first queued entry).
    #[cfg(test)]
    pub(crate) fn writer_started(&self) -> bool {
        self.queue.get().is_some()
    }

    /// Makes the writer thread panic once it comes to what is queued now.
    #[cfg(test)]
    pub(crate) fn panic_writer(&self) {
        self.queue.get().expect("the writer started").panic_thread();
    }

    /// The connection that writes.
    pub(super) fn conn(&self) -> parking_lot::MutexGuard<'_, Connection> {
        self.writer.lock()
    }

    /// The write connection if it is free by `deadline`.
    pub(super) fn conn_before(
        &self,
        deadline: std::time::Instant,
    ) -> Option<parking_lot::MutexGuard<'_, Connection>> {
        self.writer.try_lock_until(deadline)
    }

    /// The write connection for one write: waiting for this process's other writers and
    /// for other processes' locks together at most [`BUSY_TIMEOUT`], so writes queued
    /// behind a lock held elsewhere each fail in time instead of one after another.
    pub(super) fn writer(&self) -> Result<parking_lot::MutexGuard<'_, Connection>, StoreError> {
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let conn = self.conn_before(deadline).ok_or_else(|| {
            backend(format!(
                "the state store's writer was busy for more than {}s",
                BUSY_TIMEOUT.as_secs()
            ))
        })?;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        conn.busy_timeout(left.max(std::time::Duration::from_millis(1)))?;
        Ok(conn)
    }

    /// The connection that reads.
    pub(super) fn read_conn(&self) -> parking_lot::MutexGuard<'_, Connection> {
        match &self.reader {
            Some(reader) => reader.lock(),
            None => self.conn(),
        }
    }
}

/// `path` for a `file:` URI: `%`, `?` and `#` escaped.
fn uri_path(path: &Path) -> String {
    path.to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}

/// The database's write-ahead log, beside it.
const WAL_FILE: &str = "planrt.db-wal";

fn has_content(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

fn dir_is_writable(dir: &Path) -> bool {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
}

/// Starts a write transaction holding the write lock from its first statement: a
/// read-then-write in a deferred transaction fails with `SQLITE_BUSY_SNAPSHOT` (which
/// `busy_timeout` does not retry) when another process committed since the read.
pub(super) fn write_transaction(
    conn: &mut Connection,
) -> Result<rusqlite::Transaction<'_>, StoreError> {
    Ok(conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
}

impl StateStore for SqliteStore {
    fn create_plan(
        &self,
        resolution: &Resolution,
        plan: &PlanRun,
        origin: Origin,
    ) -> Result<(), StoreError> {
        blocking(|| self.insert_plan(resolution, plan, origin))
    }

    fn submit(&self, entry: Entry) -> Commit {
        let queue = match self.queue.get() {
            Some(queue) => queue,
            None => match Writer::start(self.writer.clone(), BUSY_TIMEOUT) {
                // Two first submissions at once: one thread is kept, the other stops.
                Ok(started) => self.queue.get_or_init(|| started),
                Err(error) => {
                    return Commit::refused(backend(format!(
                        "cannot start the state store's writer thread: {error}"
                    )));
                }
            },
        };
        queue.submit(entry)
    }

    fn load_plan(&self, plan: PlanId) -> Result<Option<(Resolution, PlanRun)>, StoreError> {
        blocking(|| self.read_plan(plan))
    }

    fn list_plans(&self, limit: usize) -> Result<Vec<PlanSummary>, StoreError> {
        blocking(|| self.read_plan_list(limit))
    }

    fn repin_plugins(
        &self,
        plan: PlanId,
        pins: &std::collections::BTreeMap<TaskType, PluginPin>,
    ) -> Result<(), StoreError> {
        blocking(|| self.write_pins(plan, pins))
    }
}

impl SqliteStore {
    fn insert_plan(
        &self,
        resolution: &Resolution,
        plan: &PlanRun,
        origin: Origin,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer()?;
        let tx = write_transaction(&mut conn)?;
        if plan_exists(&tx, plan.id())? {
            return Err(StoreError::PlanExists(plan.id()));
        }
        rows::insert_plan(
            &tx,
            plan.id(),
            plan.name(),
            resolution,
            origin,
            plan.tasks(),
        )?;
        tx.commit()?;
        Ok(())
    }

    fn read_plan(&self, plan: PlanId) -> Result<Option<(Resolution, PlanRun)>, StoreError> {
        let mut guard = self.read_conn();
        // One read transaction: a consistent snapshot even while another process writes.
        let conn = guard.transaction()?;
        let found: Option<(String, Option<String>)> = conn
            .query_row(
                "SELECT resolved, name FROM plans WHERE id = ?1",
                [plan.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((resolved, name)) = found else {
            return Ok(None);
        };
        let resolution: Resolution = from_json(&resolved, "plan resolution")?;
        let run = PlanRun::from_tasks(plan, name, rows::load_tasks(&conn, plan)?)
            .map_err(|e| backend(format!("stored plan {plan} is not a valid graph: {e}")))?;
        // The tasks once, as the plan: a caller that wants a saved plan's document makes it.
        Ok(Some((resolution, run)))
    }

    fn read_plan_list(&self, limit: usize) -> Result<Vec<PlanSummary>, StoreError> {
        // Counts only: listing must not read every attempt (and log tail) of every plan.
        // Newest first by insertion order: RFC 3339 text with trimmed fractions does not
        // sort as time does.
        let conn = self.read_conn();
        let mut stmt = conn.prepare_cached(
            "SELECT p.id, p.name, p.created_at, count(t.idx),
                    coalesce(sum(t.status = ?2), 0),
                    min(CASE WHEN t.status = ?3 THEN t.idx END),
                    coalesce(sum(t.status = ?3), 0)
             FROM plans p LEFT JOIN tasks t ON t.plan_id = p.id
             GROUP BY p.id ORDER BY p.rowid DESC LIMIT ?1",
        )?;
        let params = params![
            limit as i64,
            rows::status_name(TaskStatus::Complete),
            rows::status_name(TaskStatus::Failed)
        ];
        let rows = stmt.query_map(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?;
        let mut summaries = Vec::new();
        for row in rows {
            let (id, name, created_at, tasks, complete, failed, failed_count) = row?;
            let (tasks, complete) = (tasks as usize, complete as usize);
            let id: PlanId = id.parse().map_err(backend)?;
            // Tasks of a graph fail side by side: the first to fail is the plan's.
            let failed_task_index = match failed_count {
                0 | 1 => failed.map(|i| i as usize),
                _ => first_failed_task(&conn, id)?,
            };
            summaries.push(PlanSummary {
                id,
                name,
                created_at: rows::timestamp(&created_at)?,
                phase: Phase::of(tasks, complete, failed_task_index),
                tasks,
                complete,
                failed_task_index,
            });
        }
        Ok(summaries)
    }

    fn write_pins(
        &self,
        plan: PlanId,
        pins: &std::collections::BTreeMap<TaskType, PluginPin>,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer()?;
        let tx = write_transaction(&mut conn)?;
        let resolved: Option<String> = tx
            .query_row(
                "SELECT resolved FROM plans WHERE id = ?1",
                [plan.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let mut resolution: Resolution = from_json(
            &resolved.ok_or(StoreError::UnknownPlan(plan))?,
            "plan resolution",
        )?;
        resolution.plugins = pins.clone();
        tx.execute(
            "UPDATE plans SET resolved = ?2 WHERE id = ?1",
            params![plan.to_string(), json(&resolution)],
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// Whether `plan` is recorded.
fn plan_exists(conn: &Connection, plan: PlanId) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM plans WHERE id = ?1")?
        .query_row([plan.to_string()], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The first task of `plan` that failed, by when its last attempt ended (see
/// [`crate::plan::run::first_failure`]): read only for plans with several failed tasks.
fn first_failed_task(conn: &Connection, plan: PlanId) -> Result<Option<usize>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.idx,
                (SELECT a.ended_at FROM attempts a WHERE a.plan_id = t.plan_id AND a.task_idx = t.idx
                 ORDER BY a.attempt DESC LIMIT 1)
         FROM tasks t WHERE t.plan_id = ?1 AND t.status = ?2",
    )?;
    let rows = stmt.query_map(
        params![plan.to_string(), rows::status_name(TaskStatus::Failed)],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?)),
    )?;
    let mut failed = Vec::new();
    for row in rows {
        let (index, ended_at) = row?;
        let ended_at = ended_at.map(|t| rows::timestamp(&t)).transpose()?;
        failed.push((index as usize, ended_at));
    }
    Ok(crate::plan::run::first_failure(failed))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use jiff::Timestamp;

    use super::*;
    use crate::plan::{
        ErrorKind, Failure, PlanSpec, SAVED_PLAN_FORMAT_VERSION, SavedPlan, TaskEvent,
    };

    fn state(dir: &tempfile::TempDir) -> StateDir {
        StateDir::open_or_create(dir.path()).unwrap()
    }

    fn resolution(spec: &PlanSpec) -> Resolution {
        Resolution {
            format_version: SAVED_PLAN_FORMAT_VERSION,
            defaults: spec.defaults,
            grants: spec.grants.clone(),
            plugins: Default::default(),
        }
    }

    fn saved(run: &PlanRun, spec: &PlanSpec) -> SavedPlan {
        SavedPlan {
            format_version: SAVED_PLAN_FORMAT_VERSION,
            plan: run.document(),
            defaults: spec.defaults,
            grants: spec.grants.clone(),
            plugins: Default::default(),
        }
    }

    fn plan() -> (PlanSpec, PlanRun) {
        let spec = PlanSpec::parse(
            "name = \"n\"\n[[tasks]]\ntype = \"a\"\nmaxRetries = 1\nparams = { x = 1 }\n[[tasks]]\ntype = \"b\"\n",
            Path::new("/p.toml"),
        )
        .unwrap();
        let run = PlanRun::new(PlanId::new_random(), spec.name.clone(), &spec.tasks).unwrap();
        (spec, run)
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn every_transition_round_trips_through_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&state(&dir), Durability::Full).unwrap();
        let (spec, mut run) = plan();
        store
            .create_plan(&resolution(&spec), &run, Origin::Cli)
            .unwrap();
        assert!(matches!(
            store.create_plan(&resolution(&spec), &run, Origin::Cli),
            Err(StoreError::PlanExists(_))
        ));

        let fail = TaskEvent::Fail {
            at: t(1),
            failure: Failure {
                kind: ErrorKind::Transient,
                message: "m".into(),
                backtrace: Some("bt".into()),
                log_tail: Some("tail".into()),
                progress: Some(crate::plan::Progress {
                    done: 7,
                    total: None,
                    unit: crate::plan::ProgressUnit::Items,
                    note: "n".into(),
                }),
            },
            jitter_sample: 0.5,
        };
        for event in [
            TaskEvent::Start { at: t(0) },
            fail,
            TaskEvent::Start { at: t(10) },
        ] {
            run.apply(0, event).unwrap();
            store.record_task(run.id(), &run.tasks()[0]).unwrap();
            let (resolution, loaded) = store.load_plan(run.id()).unwrap().unwrap();
            assert_eq!(loaded, run);
            assert_eq!(resolution, self::resolution(&spec));
        }
        run.apply(
            0,
            TaskEvent::Succeed {
                at: t(11),
                output: serde_json::json!({"ok": [1, 2]}),
                log_tail: None,
                progress: Some(crate::plan::Progress {
                    done: 3,
                    total: Some(3),
                    unit: crate::plan::ProgressUnit::Bytes,
                    note: "done".into(),
                }),
            },
        )
        .unwrap();
        store.record_task(run.id(), &run.tasks()[0]).unwrap();
        assert_eq!(store.load_plan(run.id()).unwrap().unwrap().1, run);

        // Reopening (another process) sees the same state.
        drop(store);
        let store = SqliteStore::open(&state(&dir), Durability::Process).unwrap();
        assert_eq!(store.load_plan(run.id()).unwrap().unwrap().1, run);
        let list = store.list_plans(10).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].id, list[0].complete, list[0].tasks),
            (run.id(), 1, 2)
        );
        assert!(store.load_plan(PlanId::new_random()).unwrap().is_none());
    }

    /// Runs a plan of `tasks` tasks to completion as the executor does (ask what may
    /// run, record the start, record the end) and counts the SQL statements executed.
    fn statements_to_run(tasks: usize) -> usize {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&state(&dir), Durability::Process).unwrap();
        let text = "[[tasks]]\ntype = \"a\"\n".repeat(tasks);
        let spec = PlanSpec::parse(&text, Path::new("/p.toml")).unwrap();
        let mut run = PlanRun::new(PlanId::new_random(), None, &spec.tasks).unwrap();
        store
            .create_plan(&resolution(&spec), &run, Origin::Cli)
            .unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = count.clone();
        store
            .writer
            .lock()
            .trace_v2(
                rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT,
                Some(move |_: rusqlite::trace::TraceEvent<'_>| {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }),
            )
            .unwrap();
        loop {
            // Taken before `apply`: the iterator borrows the plan.
            let Some(index) = run.runnable(t(0)).next() else {
                break;
            };
            run.apply(index, TaskEvent::Start { at: t(0) }).unwrap();
            store.record_task(run.id(), &run.tasks()[index]).unwrap();
            let done = TaskEvent::Succeed {
                at: t(1),
                output: serde_json::json!(null),
                log_tail: None,
                progress: None,
            };
            run.apply(index, done).unwrap();
            store.record_task(run.id(), &run.tasks()[index]).unwrap();
        }
        assert_eq!(run.phase(), Phase::Complete);
        count.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn running_a_plan_costs_the_same_statements_per_task_whatever_its_size() {
        let small = statements_to_run(10);
        let large = statements_to_run(2000);
        assert!(small > 0, "the trace counted nothing");
        assert_eq!(large, small * 200, "small: {small}, large: {large}");
    }

    #[test]
    fn the_plan_list_agrees_with_the_full_plans() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&state(&dir), Durability::Process).unwrap();
        let (spec, mut failed) = plan();
        store
            .create_plan(&resolution(&spec), &failed, Origin::Cli)
            .unwrap();
        failed.apply(0, TaskEvent::Start { at: t(0) }).unwrap();
        store.record_task(failed.id(), &failed.tasks()[0]).unwrap();
        failed
            .apply(
                0,
                TaskEvent::Succeed {
                    at: t(1),
                    output: serde_json::Value::Null,
                    log_tail: None,
                    progress: None,
                },
            )
            .unwrap();
        store.record_task(failed.id(), &failed.tasks()[0]).unwrap();
        failed.apply(1, TaskEvent::Start { at: t(2) }).unwrap();
        let permanent = Failure {
            kind: ErrorKind::Permanent,
            message: "no".into(),
            backtrace: None,
            log_tail: None,
            progress: None,
        };
        failed
            .apply(
                1,
                TaskEvent::Fail {
                    at: t(3),
                    failure: permanent,
                    jitter_sample: 0.0,
                },
            )
            .unwrap();
        store.record_task(failed.id(), &failed.tasks()[1]).unwrap();
        let (_, active) = plan();
        store
            .create_plan(&resolution(&spec), &active, Origin::Cli)
            .unwrap();

        let list = store.list_plans(10).unwrap();
        assert_eq!(list.len(), 2);
        for summary in &list {
            let (_, run) = store.load_plan(summary.id).unwrap().unwrap();
            assert_eq!(summary.phase, run.phase(), "{summary:?}");
            assert_eq!(summary.failed_task_index, run.failed_task_index());
            assert_eq!(summary.tasks, run.tasks().len());
            assert_eq!(summary.name.as_deref(), run.name());
        }
        assert_eq!(list[1].phase, Phase::Failed);
        assert_eq!((list[1].complete, list[1].failed_task_index), (1, Some(1)));
        assert_eq!(list[0].phase, Phase::Active, "newest first");
        assert_eq!(store.list_plans(1).unwrap().len(), 1);
    }

    #[test]
    fn a_graph_whose_tasks_failed_side_by_side_is_listed_failed_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&state(&dir), Durability::Process).unwrap();
        let text = "[[tasks]]\ntype = \"a\"\ndependsOn = []\n".repeat(3);
        let spec = PlanSpec::parse(&text, Path::new("/p.toml")).unwrap();
        let mut run = PlanRun::new(PlanId::new_random(), None, &spec.tasks).unwrap();
        store
            .create_plan(&resolution(&spec), &run, Origin::Cli)
            .unwrap();
        for index in 0..3 {
            run.apply(index, TaskEvent::Start { at: t(0) }).unwrap();
        }
        // Task 2 fails first, then task 0 (fractions of seconds, which text does not sort).
        let at = |ms: i64| Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap();
        for (index, ended) in [(2, at(1500)), (0, at(1501)), (1, at(10_000))] {
            let failure = Failure {
                kind: ErrorKind::Permanent,
                message: "no".into(),
                backtrace: None,
                log_tail: None,
                progress: None,
            };
            let event = TaskEvent::Fail {
                at: ended,
                failure,
                jitter_sample: 0.0,
            };
            run.apply(index, event).unwrap();
            store.record_task(run.id(), &run.tasks()[index]).unwrap();
        }
        assert_eq!(run.failed_task_index(), Some(2));
        let (_, loaded) = store.load_plan(run.id()).unwrap().unwrap();
        assert_eq!(loaded, run);
        assert!(loaded.graph().is_explicit(), "dependsOn is stored");
        let list = store.list_plans(10).unwrap();
        assert_eq!(list[0].failed_task_index, Some(2));
        assert_eq!(list[0].phase, Phase::Failed);
    }

    #[test]
    fn ended_attempts_cannot_be_rewritten_or_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&state(&dir), Durability::Full).unwrap();
        let (spec, mut run) = plan();
        store
            .create_plan(&resolution(&spec), &run, Origin::Cli)
            .unwrap();
        run.apply(0, TaskEvent::Start { at: t(0) }).unwrap();
        run.apply(
            0,
            TaskEvent::Succeed {
                at: t(1),
                output: serde_json::Value::Null,
                log_tail: None,
                progress: None,
            },
        )
        .unwrap();
        store.record_task(run.id(), &run.tasks()[0]).unwrap();
        let conn = store.conn();
        let err = conn
            .execute("UPDATE attempts SET message = 'x'", [])
            .unwrap_err();
        assert!(err.to_string().contains("never rewritten"), "{err}");
        let err = conn.execute("DELETE FROM attempts", []).unwrap_err();
        assert!(err.to_string().contains("never deleted"), "{err}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(&state(&dir), Durability::Full).unwrap());
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteStore::open(&state(&dir), Durability::Full).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    #[test]
    fn unknown_tasks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&state(&dir), Durability::Full).unwrap();
        let (_, run) = plan();
        let refused = store.record_task(run.id(), &run.tasks()[0]).unwrap_err();
        assert!(
            matches!(refused.root(), StoreError::UnknownTask { .. }),
            "{refused:?}"
        );
    }

    #[test]
    fn the_database_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // As an older planrt left it: world-readable.
        drop(Connection::open(dir.path().join(DATABASE_FILE)).unwrap());
        let db = dir.path().join(DATABASE_FILE);
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = SqliteStore::open(&state(&dir), Durability::Full).unwrap();
        let (spec, run) = plan();
        store
            .create_plan(&resolution(&spec), &run, Origin::Cli)
            .unwrap();
        for file in ["planrt.db", "planrt.db-wal", "planrt.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let fresh = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(&state(&fresh), Durability::Full).unwrap());
        let mode = std::fs::metadata(fresh.path().join(DATABASE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_reader_creates_and_migrates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir);
        assert!(SqliteStore::open_read_only(&state).unwrap().is_none());
        assert!(!dir.path().join(DATABASE_FILE).exists());

        let writer = SqliteStore::open(&state, Durability::Full).unwrap();
        let (spec, run) = plan();
        writer
            .create_plan(&resolution(&spec), &run, Origin::Cli)
            .unwrap();
        let reader = SqliteStore::open_read_only(&state).unwrap().unwrap();
        assert_eq!(reader.load_plan(run.id()).unwrap().unwrap().1, run);
        assert_eq!(reader.list_plans(5).unwrap().len(), 1);
        let (_, other) = plan();
        let refused = reader
            .create_plan(&resolution(&spec), &other, Origin::Cli)
            .unwrap_err();
        assert!(refused.to_string().contains("readonly"), "{refused}");
        drop((reader, writer));

        // An older schema is named, not migrated.
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        drop(conn);
        let err = SqliteStore::open_read_only(&state).err().unwrap();
        assert!(err.to_string().contains("schema version 1, older"), "{err}");
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
    }

    #[test]
    fn a_read_then_write_waits_for_another_writer_instead_of_failing() {
        // Another process holds the write lock and commits after our transaction began:
        // a deferred transaction would read, then fail with SQLITE_BUSY_SNAPSHOT.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&state(&dir), Durability::Process).unwrap();
        let (spec, first) = plan();
        store
            .create_plan(&resolution(&spec), &first, Origin::Cli)
            .unwrap();
        let mut other = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        other
            .busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        let tx = other
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        tx.execute("UPDATE plans SET name = 'renamed'", []).unwrap();
        let (_, second) = plan();
        let second_resolution = resolution(&spec);
        let (started, ready) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                started.send(()).unwrap();
                store.create_plan(&second_resolution, &second, Origin::Cli)?;
                store.repin_plugins(first.id(), &Default::default())
            });
            // The writer is on its way into its transaction (microseconds of work before it
            // waits for the lock): commit well after that.
            ready.recv().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
            tx.commit().unwrap();
            writer.join().unwrap().unwrap();
        });
        assert!(store.load_plan(second.id()).unwrap().is_some());
    }

    #[test]
    fn a_plan_keeps_its_resolution_once_never_a_stale_copy_of_its_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&state(&dir), Durability::Process).unwrap();
        let (spec, mut run) = plan();
        let saved_plan = saved(&run, &spec);
        store
            .create_plan(&saved_plan.resolution(), &run, Origin::Cli)
            .unwrap();
        let resolved = |store: &SqliteStore| -> serde_json::Value {
            let text: String = store
                .conn()
                .query_row("SELECT resolved FROM plans", [], |r| r.get(0))
                .unwrap();
            serde_json::from_str(&text).unwrap()
        };
        let stored = resolved(&store);
        assert!(stored.get("tasks").is_none(), "{stored}");
        assert_eq!(stored["formatVersion"], SAVED_PLAN_FORMAT_VERSION);
        run.apply(0, TaskEvent::Start { at: t(0) }).unwrap();
        store.record_task(run.id(), &run.tasks()[0]).unwrap();
        let (loaded, loaded_run) = store.load_plan(run.id()).unwrap().unwrap();
        assert_eq!(
            loaded_run.document(),
            run.document(),
            "the tasks come from their rows"
        );
        assert_eq!(loaded, saved_plan.resolution());

        // A database of schema 2 kept the whole saved plan: migration 3 trims it.
        store
            .conn()
            .execute(
                "UPDATE plans SET resolved = ?1",
                [serde_json::to_string(&saved_plan).unwrap()],
            )
            .unwrap();
        // Schema 2 had none of the later columns either.
        store
            .conn()
            .execute_batch(
                "ALTER TABLE plans DROP COLUMN origin; ALTER TABLE plans DROP COLUMN submitted_at;
                 ALTER TABLE plans DROP COLUMN removed_at; ALTER TABLE tasks DROP COLUMN name;
                 ALTER TABLE tasks DROP COLUMN depends_on; ALTER TABLE attempts DROP COLUMN progress;
                 CREATE INDEX attempts_by_start ON attempts(plan_id, started_at);",
            )
            .unwrap();
        store.conn().pragma_update(None, "user_version", 2).unwrap();
        drop(store);
        let store = SqliteStore::open(&state(&dir), Durability::Process).unwrap();
        let index_left: bool = store
            .conn()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'attempts_by_start')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(!index_left, "migration 9 drops the unused index");
        let migrated = resolved(&store);
        assert!(
            migrated.get("tasks").is_none() && migrated.get("id").is_none(),
            "{migrated}"
        );
        let (resolution, migrated_run) = store.load_plan(run.id()).unwrap().unwrap();
        assert_eq!(resolution, saved_plan.resolution());
        // Its attempt, recorded before attempts had a progress column, loads without one.
        assert_eq!(migrated_run, run);
        assert_eq!(migrated_run.tasks()[0].attempts()[0].progress, None);
    }

    #[test]
    fn recording_a_transition_builds_no_temporary_btree() {
        // What migration 10 is for: a CHECK with an `IN (…)` list of constants makes
        // SQLite build and drop a b-tree for every row written.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&state(&dir), Durability::Process).unwrap();
        let conn = store.conn();
        for sql in [
            "UPDATE tasks SET status = ?3, retry_count = ?4 WHERE plan_id = ?1 AND idx = ?2",
            "INSERT INTO attempts (plan_id, task_idx, attempt, started_at, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            "UPDATE attempts SET outcome = ?4 WHERE plan_id = ?1 AND task_idx = ?2 AND attempt = ?3",
        ] {
            let mut explain = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let unbound = std::iter::repeat_n(rusqlite::types::Null, explain.parameter_count());
            let opcodes: Vec<String> = explain
                .query_map(rusqlite::params_from_iter(unbound), |row| {
                    row.get::<_, String>(1)
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                !opcodes.iter().any(|op| op == "OpenEphemeral"),
                "{sql}: {opcodes:?}"
            );
        }
        // The CHECKs still refuse what the domain never writes.
        let refused = conn.execute(
            "INSERT INTO attempts (plan_id, task_idx, attempt, started_at, outcome)
             VALUES ('p', 0, 1, 't', 'exploded')",
            [],
        );
        assert!(refused.unwrap_err().to_string().contains("CHECK"));
    }

    #[test]
    fn a_database_that_has_a_column_a_later_migration_adds_still_migrates() {
        // A development build put migration 5's column into migration 4.
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(&state(&dir), Durability::Process).unwrap());
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 4).unwrap();
        drop(conn);
        let store = SqliteStore::open(&state(&dir), Durability::Process).unwrap();
        let (spec, run) = plan();
        store
            .create_plan(&resolution(&spec), &run, Origin::Api)
            .unwrap();
        assert!(store.find_task(run.tasks()[0].id()).unwrap().is_some());
    }
}
