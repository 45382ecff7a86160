//! Cost of recording transitions in the SQLite store, per durability.
//!
//! `cargo bench -p planrt --bench store` — two commits per task (start, then outcome),
//! as the executor does. Results and the machine they were measured on: docs/BENCHMARKS.md.

use std::path::Path;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use planrt::plan::{PlanId, PlanRun, PlanSpec, SAVED_PLAN_FORMAT_VERSION, SavedPlan, TaskEvent};
use planrt::store::{Durability, Origin, SqliteStore, StateStore};

const TASKS: usize = 500;
const ROUNDS: usize = 5;

fn one_round(durability: Durability) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        &planrt::state_dir::StateDir::open_or_create(dir.path()).unwrap(),
        durability,
    )
    .unwrap();
    let source = "[[tasks]]\ntype = \"bench\"\n".repeat(TASKS);
    let spec = PlanSpec::parse(&source, Path::new("/bench.toml")).unwrap();
    let mut run = PlanRun::new(PlanId::new_random(), None, &spec.tasks)
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
    let started = Instant::now();
    for index in 0..TASKS {
        run.apply(
            index,
            TaskEvent::Start {
                at: Timestamp::now(),
            },
        )
        .unwrap();
        store.record_task(run.id(), &run.tasks()[index]).unwrap();
        let output = serde_json::json!({ "ok": true });
        run.apply(
            index,
            TaskEvent::Succeed {
                at: Timestamp::now(),
                output,
                log_tail: None,
                progress: None,
            },
        )
        .unwrap();
        store.record_task(run.id(), &run.tasks()[index]).unwrap();
    }
    started.elapsed() / TASKS as u32
}

fn main() {
    for (name, durability) in [("full", Durability::Full), ("process", Durability::Process)] {
        let mut per_task: Vec<Duration> = (0..ROUNDS).map(|_| one_round(durability)).collect();
        per_task.sort();
        println!(
            "durability {name:<8} {TASKS} tasks x {ROUNDS} rounds: median {:>7.1} µs per task (2 commits), min {:>7.1} µs",
            per_task[ROUNDS / 2].as_secs_f64() * 1e6,
            per_task[0].as_secs_f64() * 1e6,
        );
    }
}
