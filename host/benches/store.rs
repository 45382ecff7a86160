//! Cost of recording transitions in the SQLite store, per durability, both ways the
//! executor stores them.
//!
//! `cargo bench -p planrt --bench store`:
//!
//! - *waited for*: each commit waited for before the next is made (`record_task`: what an
//!   operator action or a stop does) — an attempt's end with the next start, one commit
//!   per task;
//! - *queued*: each task's commit queued after the one before (`StateStore::submit`, as
//!   the executor's loop does), and only the last waited for: the store's writer stores
//!   what waits together in one transaction.
//!
//! Results and the machine they were measured on: docs/BENCHMARKS.md.

use std::path::Path;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use planrt::plan::{PlanId, PlanRun, PlanSpec, SAVED_PLAN_FORMAT_VERSION, SavedPlan, TaskEvent};
use planrt::store::{Commit, Durability, Entry, Origin, SqliteStore, StateStore};

const TASKS: usize = 500;
const ROUNDS: usize = 5;

/// How each task's commit is made.
#[derive(Clone, Copy)]
enum Way {
    WaitedFor,
    Queued,
}

/// A store in a fresh state dir holding a plan of [`TASKS`] pending tasks.
fn store_with_plan(dir: &Path, durability: Durability) -> (SqliteStore, PlanRun) {
    let state = planrt::state_dir::StateDir::open_or_create(dir).unwrap();
    let store = SqliteStore::open(&state, durability).unwrap();
    let source = "[[tasks]]\ntype = \"bench\"\n".repeat(TASKS);
    let spec = PlanSpec::parse(&source, Path::new("/bench.toml")).unwrap();
    let run = PlanRun::new(PlanId::new_random(), None, &spec.tasks)
        .expect("a plan without dependsOn is a chain");
    let saved = SavedPlan {
        format_version: SAVED_PLAN_FORMAT_VERSION,
        plan: run.document(),
        defaults: spec.defaults,
        grants: spec.grants,
        plugins: Default::default(),
    };
    store
        .create_plan(&saved.resolution(), &run, Origin::Cli)
        .unwrap();
    (store, run)
}

/// Runs a chain of [`TASKS`] tasks as the executor stores it — an attempt's end and the
/// next start in one commit — and returns the time per task.
fn one_round(durability: Durability, way: Way) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut run) = store_with_plan(dir.path(), durability);
    let started = Instant::now();
    let mut tail: Option<Commit> = None;
    for index in 0..=TASKS {
        let mut changed = Vec::new();
        if index > 0 {
            let output = serde_json::json!({ "ok": true });
            let ended = TaskEvent::Succeed {
                at: Timestamp::now(),
                output,
                log_tail: None,
                progress: None,
            };
            run.apply(index - 1, ended).unwrap();
            changed.push(index - 1);
        }
        if index < TASKS {
            run.apply(
                index,
                TaskEvent::Start {
                    at: Timestamp::now(),
                },
            )
            .unwrap();
            changed.push(index);
        }
        let tasks: Vec<_> = changed.iter().map(|&i| &run.tasks()[i]).collect();
        match way {
            Way::WaitedFor => store.record_tasks(run.id(), &tasks).unwrap(),
            Way::Queued => {
                tail = Some(store.submit(Entry {
                    plan: run.id(),
                    tasks: tasks.into_iter().cloned().collect(),
                    after: tail.take(),
                    report: None,
                }));
            }
        }
    }
    if let Some(last) = tail {
        last.wait().unwrap();
    }
    started.elapsed() / TASKS as u32
}

fn main() {
    for (name, durability) in [("full", Durability::Full), ("process", Durability::Process)] {
        for (way, what) in [(Way::WaitedFor, "waited for"), (Way::Queued, "queued")] {
            let mut per_task: Vec<Duration> =
                (0..ROUNDS).map(|_| one_round(durability, way)).collect();
            per_task.sort();
            println!(
                "durability {name:<8} {what:<11} {TASKS} tasks x {ROUNDS} rounds: median {:>7.1} µs per task, min {:>7.1} µs",
                per_task[ROUNDS / 2].as_secs_f64() * 1e6,
                per_task[0].as_secs_f64() * 1e6,
            );
        }
    }
}
