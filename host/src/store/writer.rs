//! The state store's writer: a thread of its own that records the task transitions
//! executors queue, in the order they were queued. The entries waiting together when it
//! comes to them share one transaction — one commit, one sync with `--durability full` —
//! and each entry's report runs once it is stored, in order. An executor goes on with its
//! plan meanwhile; whatever it lets out of the process (a report, an attempt's first
//! effect) waits for the entry's [`Commit`].

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{StoreError, rows};
use crate::blocking::blocking;
use crate::plan::{PlanId, Task};

/// Entries queued and not yet taken by the writer, at most: past it, whoever queues
/// waits (a disk that cannot keep up slows the executors instead of filling memory; an
/// entry holds its tasks' fields and newest attempts, output and log tail included).
const QUEUE: usize = 256;

/// Entries stored in one transaction, at most.
const MAX_GROUP: usize = 256;

/// What runs once an entry is stored, with the tasks it stored (the executor's reports).
pub type Report = Box<dyn FnOnce(&[Task]) + Send>;

/// Whether an entry was stored: settled once, by whoever stores it (the writer), and
/// awaited by any number of holders (the executor, the gates of the attempts whose starts it holds).
#[derive(Clone)]
pub struct Commit(Arc<Completion>);

struct Completion {
    /// How it ended, and when: set once.
    outcome: OnceLock<(Instant, Result<(), Arc<StoreError>>)>,
    /// Blocking waiters sleep on `settled` under it (it guards nothing else).
    sleep: Mutex<()>,
    settled: Condvar,
    /// Wakes async waiters.
    notify: tokio::sync::Notify,
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Commit").field(&self.outcome()).finish()
    }
}

impl Commit {
    fn new(outcome: Option<Result<(), Arc<StoreError>>>) -> Self {
        Self(Arc::new(Completion {
            outcome: match outcome {
                Some(outcome) => OnceLock::from((Instant::now(), outcome)),
                None => OnceLock::new(),
            },
            sleep: Mutex::new(()),
            settled: Condvar::new(),
            notify: tokio::sync::Notify::new(),
        }))
    }

    /// Whether `self` and `other` are the same entry's commit.
    fn is(&self, other: &Commit) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// An entry not stored yet: settled by whoever stores it ([`Commit::settle`]).
    pub(crate) fn pending() -> Self {
        Self::new(None)
    }

    /// An entry already stored.
    pub fn already_stored() -> Self {
        Self::new(Some(Ok(())))
    }

    /// An entry that will never be stored, and why.
    pub fn refused(error: impl Into<Arc<StoreError>>) -> Self {
        Self::new(Some(Err(error.into())))
    }

    /// How it ended, if it did.
    pub fn outcome(&self) -> Option<Result<(), Arc<StoreError>>> {
        self.0.outcome.get().map(|(_, outcome)| outcome.clone())
    }

    /// When it was settled (stored or refused), if it was.
    pub fn settled_at(&self) -> Option<Instant> {
        self.0.outcome.get().map(|(at, _)| *at)
    }

    /// Why it was not stored, if it was refused already.
    pub fn failure(&self) -> Option<Arc<StoreError>> {
        self.0.outcome.get()?.1.as_ref().err().cloned()
    }

    /// Waits until the entry is stored, or says why it never will be.
    pub async fn stored(&self) -> Result<(), StoreError> {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the check: a settle in between still wakes this waiter.
            notified.as_mut().enable();
            if let Some(outcome) = self.outcome() {
                return outcome.map_err(StoreError::Shared);
            }
            notified.await;
        }
    }

    /// Blocks until the entry is stored, or says why it never will be (a worker of a
    /// multi-threaded runtime first hands its other tasks on).
    pub fn wait(&self) -> Result<(), StoreError> {
        blocking(|| {
            let mut asleep = self.0.sleep.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(outcome) = self.outcome() {
                    return outcome.map_err(StoreError::Shared);
                }
                asleep = self
                    .0
                    .settled
                    .wait(asleep)
                    .unwrap_or_else(|e| e.into_inner());
            }
        })
    }

    /// Says how the entry ended (the first word counts: a commit is settled once).
    pub(crate) fn settle(&self, result: Result<(), Arc<StoreError>>) {
        if self.0.outcome.set((Instant::now(), result)).is_ok() {
            // Taken once: a blocking waiter that found nothing is asleep by now.
            drop(self.0.sleep.lock());
            self.0.settled.notify_all();
            self.0.notify.notify_waiters();
        }
    }
}

/// Tasks to record, as one all-or-nothing entry of the queue.
pub struct Entry {
    /// Their plan.
    pub plan: PlanId,
    /// Each task's state after its transition (at most one per task).
    pub tasks: Vec<Task>,
    /// The entry the same executor queued before: if it was not stored, neither is this
    /// one (a plan's transitions are stored in order, with no gap).
    pub after: Option<Commit>,
    /// Runs once the entry is stored, before its commit says so.
    pub report: Option<Report>,
}

impl Entry {
    /// Why its predecessor was not stored, if it is known refused already (then neither is
    /// this entry).
    pub fn predecessor_refused(&self) -> Option<Arc<StoreError>> {
        self.after.as_ref().and_then(Commit::failure)
    }
}

/// An entry in the writer's hands: settled when stored, refused, or dropped unstored (the
/// writer stopped).
struct Job {
    entry: Entry,
    done: Commit,
    /// Until when it may wait for another process's write lock (as any write: its
    /// writer's `wait` from when it was queued).
    deadline: Instant,
}

impl Drop for Job {
    fn drop(&mut self) {
        // Settled already, as almost every job is: nothing to say.
        if self.done.settled_at().is_none() {
            self.done.settle(Err(Arc::new(StoreError::Backend(
                "the state store's writer stopped before it could confirm this was stored".into(),
            ))));
        }
    }
}

/// The writer thread and its queue. Dropping it lets the thread store what is queued, then
/// waits for it.
pub struct Writer {
    queue: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    /// How long an entry may wait for another process's write lock.
    wait: Duration,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Starts the thread, writing through `conn` (which others may lock between its
    /// transactions); an entry waits at most `wait` for another process's write lock.
    pub fn start(
        conn: Arc<parking_lot::Mutex<Connection>>,
        wait: Duration,
    ) -> std::io::Result<Self> {
        let (queue, jobs) = std::sync::mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("planrt-store".into())
            .spawn(move || run(&conn, &jobs))?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            wait,
        })
    }

    /// Queues `entry` and returns at once with its commit — unless the queue is full, then
    /// once there is room. An entry whose predecessor was refused is refused at once.
    pub fn submit(&self, entry: Entry) -> Commit {
        if let Some(error) = entry.predecessor_refused() {
            return Commit::refused(error);
        }
        let done = Commit::pending();
        let job = Job {
            entry,
            done: done.clone(),
            deadline: Instant::now() + self.wait,
        };
        let queue = self
            .queue
            .as_ref()
            .expect("the queue lives as long as the writer");
        match queue.try_send(Message::Store(job)) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                // A job the thread can no longer take is dropped, which refuses it.
                let _ = blocking(|| queue.send(job));
            }
            // The thread is gone: dropping the job refused it.
            Err(TrySendError::Disconnected(_)) => {}
        }
        done
    }

    /// Whether the thread has stopped (it panicked: nothing queued is stored any more).
    pub fn stopped(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Makes the thread panic once it comes to this message.
    #[cfg(test)]
    pub(super) fn panic_thread(&self) {
        self.queue.as_ref().unwrap().send(Message::Panic).unwrap();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: takes what is queued, stores it, then reports and settles it in
/// queue order.
fn run(conn: &parking_lot::Mutex<Connection>, jobs: &Receiver<Message>) {
    while let Ok(first) = jobs.recv() {
        let mut group = Group::default();
        let mut message = Some(first);
        // The connection first: what is queued while another writer holds it joins the
        // group.
        let mut held = Some(conn.lock());
        while let Some(next) = message.take() {
            match next {
                Message::Store(job) => group.push(job),
                #[cfg(test)]
                Message::Panic => panic!("the writer was told to panic"),
            }
            if group.len() < MAX_GROUP {
                message = jobs.try_recv().ok();
            }
        }
        loop {
            // An entry whose predecessor was refused is decided before the connection is
            // taken again (in the first round it is held already, from the group's taking).
            group.refuse_after_refused();
            let decided = group.take_decided();
            if !decided.is_empty() {
                drop(held.take());
                for (job, outcome) in decided {
                    finish(job, outcome);
                }
            }
            if group.is_empty() {
                break;
            }
            let conn = held.get_or_insert_with(|| conn.lock());
            let backoff = group.try_store(conn);
            drop(held.take());
            if backoff {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// What the writer is sent.
enum Message {
    /// An entry to store.
    Store(Job),
    /// Makes the thread panic (what a bug in it would do), for tests of what is left.
    #[cfg(test)]
    Panic,
}

/// Entries taken together, each decided (stored or refused) in one of the rounds that try
/// to store those still undecided in one transaction; reported and settled in queue order
/// as soon as every entry before them is decided.
#[derive(Default)]
struct Group {
    jobs: Vec<Job>,
    outcomes: Vec<Option<Result<(), Arc<StoreError>>>>,
    /// An entry's rows were refused (a bug): the rest are stored one by one, so that the
    /// others are stored all the same.
    one_by_one: bool,
}

impl Group {
    fn push(&mut self, job: Job) {
        self.jobs.push(job);
        self.outcomes.push(None);
    }

    fn len(&self) -> usize {
        self.jobs.len()
    }

    fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Why entry `i`'s predecessor was not stored, if it is known not to be: decided so
    /// earlier in this group, or settled so before it.
    fn predecessor_refused(&self, i: usize) -> Option<Arc<StoreError>> {
        let after = self.jobs[i].entry.after.as_ref()?;
        // Settled: before this group, or earlier in it and finished already.
        if let Some(outcome) = after.outcome() {
            return outcome.err();
        }
        // Not settled: it is earlier in this group, almost always just before.
        let j = self.jobs[..i].iter().rposition(|job| job.done.is(after))?;
        self.outcomes[j].clone()?.err()
    }

    /// Refuses the undecided entries whose predecessor was refused (in order, so a chain
    /// of refusals is decided in one pass).
    fn refuse_after_refused(&mut self) {
        for i in 0..self.len() {
            if self.outcomes[i].is_none()
                && let Some(error) = self.predecessor_refused(i)
            {
                self.outcomes[i] = Some(Err(error));
            }
        }
    }

    /// One round: stores the undecided entries in one transaction, each waiting for
    /// another process's write lock until its own deadline (past it, it is refused; the
    /// others wait on in the next round). Returns whether the lock was refused before any
    /// deadline (not a wait SQLite did: the next round should not follow at once).
    fn try_store(&mut self, conn: &mut Connection) -> bool {
        let mut waiting: Vec<usize> = (0..self.len())
            .filter(|&i| self.outcomes[i].is_none())
            .collect();
        if self.one_by_one {
            waiting.truncate(1);
        }
        let Some(earliest) = waiting.iter().map(|&i| self.jobs[i].deadline).min() else {
            return false;
        };
        let left = earliest.saturating_duration_since(Instant::now());
        let jobs: Vec<&Job> = waiting.iter().map(|&i| &self.jobs[i]).collect();
        let stored = match conn.busy_timeout(left.max(Duration::from_millis(1))) {
            Ok(()) => store_group(conn, &jobs),
            Err(error) => Err(GroupError::Whole(error.into())),
        };
        match stored {
            Ok(()) => {
                for i in waiting {
                    self.outcomes[i] = Some(Ok(()));
                }
            }
            Err(GroupError::Busy(error)) => {
                let (now, error) = (Instant::now(), Arc::new(error));
                let late: Vec<usize> = waiting
                    .into_iter()
                    .filter(|&i| self.jobs[i].deadline <= now)
                    .collect();
                if late.is_empty() {
                    return true;
                }
                for i in late {
                    self.outcomes[i] = Some(Err(error.clone()));
                }
            }
            Err(GroupError::Whole(error)) => {
                let error = Arc::new(error);
                for i in waiting {
                    self.outcomes[i] = Some(Err(error.clone()));
                }
            }
            Err(GroupError::Entry(error)) if jobs.len() == 1 => {
                self.outcomes[waiting[0]] = Some(Err(Arc::new(error)));
            }
            Err(GroupError::Entry(_)) => self.one_by_one = true,
        }
        false
    }

    /// The entries decided, up to the first one that is not: they leave the group.
    fn take_decided(&mut self) -> Vec<(Job, Result<(), Arc<StoreError>>)> {
        let decided = self.outcomes.iter().take_while(|o| o.is_some()).count();
        self.jobs
            .drain(..decided)
            .zip(self.outcomes.drain(..decided).flatten())
            .collect()
    }
}

/// Reports a stored entry, then settles its commit. A report that panics (a bug in an
/// observer; the panic hook has printed it) is logged: the entry is stored all the same,
/// and the writer goes on.
fn finish(mut job: Job, outcome: Result<(), Arc<StoreError>>) {
    if outcome.is_ok()
        && let Some(report) = job.entry.report.take()
    {
        let tasks = &job.entry.tasks;
        if std::panic::catch_unwind(AssertUnwindSafe(|| report(tasks))).is_err() {
            tracing::error!(
                "reporting transitions of plan {} panicked; they are stored",
                job.entry.plan
            );
        }
    }
    job.done.settle(outcome);
}

/// Why a group was not stored.
enum GroupError {
    /// Another process holds the write lock past the wait allowed.
    Busy(StoreError),
    /// Nothing of it was (the transaction could not begin or commit).
    Whole(StoreError),
    /// An entry's rows were refused; the transaction was rolled back.
    Entry(StoreError),
}

/// Stores every entry of `group` in one transaction, all of them or none.
fn store_group(conn: &mut Connection, group: &[&Job]) -> Result<(), GroupError> {
    let whole = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) => GroupError::Busy(e.into()),
        _ => GroupError::Whole(e.into()),
    };
    conn.prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut begin| begin.execute([]))
        .map_err(whole)?;
    for job in group {
        let plan = job.entry.plan;
        let stored = job
            .entry
            .tasks
            .iter()
            .try_for_each(|task| rows::update_task(conn, plan, task));
        if let Err(error) = stored {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(GroupError::Entry(error));
        }
    }
    if let Err(error) = conn
        .prepare_cached("COMMIT")
        .and_then(|mut commit| commit.execute([]))
    {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(whole(error));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use jiff::Timestamp;

    use super::*;
    use crate::plan::{
        PlanRun, PlanSpec, Resolution, SAVED_PLAN_FORMAT_VERSION, TaskEvent, TaskStatus,
    };
    use crate::state_dir::StateDir;
    use crate::store::{Durability, Origin, SqliteStore, StateStore};

    /// A store in `dir` holding a recorded plan of `tasks` tasks.
    fn store_with_plan(dir: &tempfile::TempDir, tasks: usize) -> (SqliteStore, PlanRun) {
        let state = StateDir::open_or_create(dir.path()).unwrap();
        let store = SqliteStore::open(&state, Durability::Process).unwrap();
        // Independent tasks: any may start while others run.
        let text = "[[tasks]]\ntype = \"a\"\ndependsOn = []\n".repeat(tasks);
        let spec = PlanSpec::parse(&text, Path::new("/p")).unwrap();
        let plan = PlanRun::new(PlanId::new_random(), None, &spec.tasks).unwrap();
        let resolution = Resolution {
            format_version: SAVED_PLAN_FORMAT_VERSION,
            defaults: spec.defaults,
            grants: spec.grants.clone(),
            plugins: Default::default(),
        };
        store.create_plan(&resolution, &plan, Origin::Cli).unwrap();
        (store, plan)
    }

    /// Starts task `index` of `plan` and returns the entry that records it, reporting to
    /// `reported` when stored.
    fn start(
        plan: &mut PlanRun,
        index: usize,
        after: Option<Commit>,
        reported: &Arc<Mutex<Vec<usize>>>,
    ) -> Entry {
        plan.apply(
            index,
            TaskEvent::Start {
                at: Timestamp::now(),
            },
        )
        .unwrap();
        let reported = reported.clone();
        Entry {
            plan: plan.id(),
            tasks: vec![plan.tasks()[index].clone()],
            after,
            report: Some(Box::new(move |tasks: &[Task]| {
                let mut reported = reported.lock().unwrap();
                reported.extend(tasks.iter().map(Task::index));
            })),
        }
    }

    /// Counts the transactions `store`'s writes commit from now on.
    fn count_commits(store: &SqliteStore) -> Arc<AtomicUsize> {
        let commits = Arc::new(AtomicUsize::new(0));
        let counter = commits.clone();
        store
            .conn()
            .trace_v2(
                rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT,
                Some(move |event: rusqlite::trace::TraceEvent<'_>| {
                    if let rusqlite::trace::TraceEvent::Stmt(_, sql) = event
                        && sql == "COMMIT"
                    {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }),
            )
            .unwrap();
        commits
    }

    fn status(store: &SqliteStore, plan: &PlanRun, index: usize) -> TaskStatus {
        let (_, stored) = store.load_plan(plan.id()).unwrap().unwrap();
        stored.tasks()[index].status()
    }

    #[test]
    fn entries_that_wait_together_are_one_transaction_stored_and_reported_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut plan) = store_with_plan(&dir, 50);
        let commits = count_commits(&store);
        let reported = Arc::new(Mutex::new(Vec::new()));
        // The writer cannot store anything while the connection is held: everything
        // queued meanwhile waits together.
        let held = store.conn();
        let mut tail = None;
        let mut queued = Vec::new();
        for index in 0..50 {
            let entry = start(&mut plan, index, tail.take(), &reported);
            let commit = store.submit(entry);
            tail = Some(commit.clone());
            queued.push(commit);
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            queued.iter().all(|c| c.outcome().is_none()),
            "nothing stored yet"
        );
        assert!(reported.lock().unwrap().is_empty(), "nothing reported yet");
        drop(held);
        for commit in &queued {
            commit.wait().unwrap();
        }
        assert_eq!(*reported.lock().unwrap(), (0..50).collect::<Vec<_>>());
        assert_eq!(
            commits.load(Ordering::Relaxed),
            1,
            "one transaction for the 50 entries"
        );
        assert!((0..50).all(|i| status(&store, &plan, i) == TaskStatus::Running));
    }

    #[test]
    fn an_entry_after_a_refused_one_is_not_stored_and_other_plans_entries_are() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut plan) = store_with_plan(&dir, 2);
        let (_, mut unknown) = store_with_plan(&tempfile::tempdir().unwrap(), 1);
        let reported = Arc::new(Mutex::new(Vec::new()));
        let held = store.conn();
        // A plan this store does not have: its entry is refused (unknown task), so its
        // successor is refused as well; the other plan's entries, queued in between and
        // in the same group, are stored.
        let refused = store.submit(start(&mut unknown, 0, None, &reported));
        let first = store.submit(start(&mut plan, 0, None, &reported));
        let ended = TaskEvent::Succeed {
            at: Timestamp::now(),
            output: serde_json::Value::Null,
            log_tail: None,
            progress: None,
        };
        unknown.apply(0, ended).unwrap();
        let after_refused = store.submit(Entry {
            plan: unknown.id(),
            tasks: vec![unknown.tasks()[0].clone()],
            after: Some(refused.clone()),
            report: None,
        });
        let second = store.submit(start(&mut plan, 1, Some(first.clone()), &reported));
        drop(held);
        assert!(matches!(
            refused.wait().unwrap_err().root(),
            StoreError::UnknownTask { .. }
        ));
        assert!(
            after_refused.wait().is_err(),
            "stored after a refused entry"
        );
        first.wait().unwrap();
        second.wait().unwrap();
        assert_eq!(*reported.lock().unwrap(), [0, 1], "only what was stored");
        assert_eq!(status(&store, &plan, 1), TaskStatus::Running);
        // Refused at once now: its predecessor is known refused.
        let again = store.submit(Entry {
            plan: plan.id(),
            tasks: Vec::new(),
            after: Some(refused),
            report: None,
        });
        assert!(again.failure().is_some());
    }

    #[test]
    fn entries_are_reported_and_settled_in_queue_order_refused_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut plan) = store_with_plan(&dir, 1);
        let (_, mut unknown) = store_with_plan(&tempfile::tempdir().unwrap(), 1);
        let reported = Arc::new(Mutex::new(Vec::new()));
        let held = store.conn();
        let mut first = start(&mut plan, 0, None, &reported);
        let report = first.report.take().unwrap();
        // A slow report: a refusal settled before it had run would be seen first.
        first.report = Some(Box::new(move |tasks: &[Task]| {
            std::thread::sleep(Duration::from_millis(100));
            report(tasks);
        }));
        let stored = store.submit(first);
        let refused = store.submit(start(&mut unknown, 0, None, &Arc::default()));
        drop(held);
        // Whoever learns of a refusal the writer decided (an executor that then stops and
        // prints it) finds every entry queued before it already reported and settled.
        refused.wait().unwrap_err();
        assert!(matches!(stored.outcome(), Some(Ok(()))));
        assert_eq!(*reported.lock().unwrap(), [0]);
    }

    #[test]
    fn a_commit_says_when_it_was_settled_once() {
        let commit = Commit::pending();
        assert_eq!(commit.settled_at(), None);
        let before = Instant::now();
        commit.settle(Ok(()));
        let at = commit.settled_at().expect("settled");
        assert!(before <= at && at <= Instant::now());
        commit.settle(Err(Arc::new(StoreError::Backend("late".into()))));
        assert_eq!(commit.settled_at(), Some(at), "the first word counts");
        assert!(matches!(commit.outcome(), Some(Ok(()))));
        assert!(Commit::already_stored().settled_at().is_some());
        assert!(
            Commit::refused(StoreError::Backend("no".into()))
                .settled_at()
                .is_some()
        );
    }

    #[test]
    fn what_is_queued_when_the_store_is_dropped_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut plan) = store_with_plan(&dir, 20);
        let reported = Arc::new(Mutex::new(Vec::new()));
        let commits: Vec<Commit> = (0..20)
            .map(|index| store.submit(start(&mut plan, index, None, &reported)))
            .collect();
        drop(store);
        assert!(commits.iter().all(|c| matches!(c.outcome(), Some(Ok(())))));
        let state = StateDir::open_or_create(dir.path()).unwrap();
        let store = SqliteStore::open(&state, Durability::Process).unwrap();
        assert!((0..20).all(|i| status(&store, &plan, i) == TaskStatus::Running));
    }

    #[test]
    fn a_report_that_panics_leaves_its_entry_stored_and_the_writer_running() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut plan) = store_with_plan(&dir, 2);
        let mut first = start(&mut plan, 0, None, &Arc::default());
        first.report = Some(Box::new(|_: &[Task]| panic!("a report that panics")));
        let first = store.submit(first);
        first.wait().unwrap();
        let reported = Arc::new(Mutex::new(Vec::new()));
        let second = store.submit(start(&mut plan, 1, Some(first), &reported));
        second.wait().unwrap();
        assert_eq!(*reported.lock().unwrap(), [1]);
        assert!(!store.writer_stopped());
        assert_eq!(status(&store, &plan, 0), TaskStatus::Running);
    }

    #[test]
    fn a_writer_that_died_refuses_what_it_held_what_was_queued_and_what_comes_after() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut plan) = store_with_plan(&dir, 3);
        let reported = Arc::new(Mutex::new(Vec::new()));
        // The thread takes the first entry and waits for the connection; the panic and
        // the second entry are queued behind it.
        let held = store.conn();
        let taken = store.submit(start(&mut plan, 0, None, &reported));
        store.panic_writer();
        let queued = store.submit(start(&mut plan, 1, None, &reported));
        assert!(!store.writer_stopped());
        store.ping(Duration::ZERO).unwrap_err();
        drop(held);
        for commit in [&taken, &queued] {
            let error = commit.wait().unwrap_err();
            assert!(error.to_string().contains("writer stopped"), "{error}");
        }
        let after = store.submit(start(&mut plan, 2, None, &reported));
        after.wait().unwrap_err();
        // The thread ends once it has unwound.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !store.writer_stopped() {
            assert!(Instant::now() < deadline, "the writer thread never ended");
            std::thread::sleep(Duration::from_millis(5));
        }
        let error = store.ping(Duration::from_secs(1)).unwrap_err();
        assert!(
            error.to_string().contains("writer thread stopped"),
            "{error}"
        );
        assert!(reported.lock().unwrap().is_empty());
        assert!((0..3).all(|i| status(&store, &plan, i) == TaskStatus::Pending));
    }

    #[test]
    fn an_entry_waits_for_another_process_lock_until_its_own_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut plan) = store_with_plan(&dir, 2);
        let database = store.path().to_owned();
        let other = Connection::open(&database).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let conn = Connection::open(&database).unwrap();
        let writer = Writer::start(
            Arc::new(parking_lot::Mutex::new(conn)),
            Duration::from_secs(2),
        )
        .unwrap();
        let reported = Arc::new(Mutex::new(Vec::new()));
        let first = writer.submit(start(&mut plan, 0, None, &reported));
        // A second apart: the first's deadline passes a whole second before the second's.
        std::thread::sleep(Duration::from_secs(1));
        let second = writer.submit(start(&mut plan, 1, None, &reported));
        // The first gives up at its deadline; the second, queued later, waits on and is
        // stored once the lock is free.
        let refused = first.wait().unwrap_err();
        assert!(refused.to_string().contains("locked"), "{refused}");
        assert!(second.outcome().is_none(), "still waiting for the lock");
        other.execute_batch("ROLLBACK").unwrap();
        second.wait().unwrap();
        assert_eq!(*reported.lock().unwrap(), [1]);
        drop(writer);
        assert_eq!(status(&store, &plan, 0), TaskStatus::Pending);
        assert_eq!(status(&store, &plan, 1), TaskStatus::Running);
    }

    #[tokio::test]
    // Holding the connection across the wait is the point: the writer must wait.
    #[allow(clippy::await_holding_lock)]
    async fn an_async_waiter_is_woken_when_its_entry_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut plan) = store_with_plan(&dir, 1);
        let held = store.conn();
        let commit = store.submit(start(&mut plan, 0, None, &Arc::default()));
        let waiter = tokio::spawn({
            let commit = commit.clone();
            async move { commit.stored().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .unwrap()
            .unwrap();
    }
}
