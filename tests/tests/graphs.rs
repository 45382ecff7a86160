//! Plans with `dependsOn` (docs/DESIGN.md §2): independent tasks run in parallel up to
//! `maxParallel`, a task starts only once what it depends on completed, a failure stops
//! new starts, bad graphs are refused, and kill -9 / resume / `--from` work on graphs.

use jiff::Timestamp;
use planrt_e2e::Scratch;
use serde_json::Value;

const GRANT: &str = "[grants]\ndirs = [{ host = \"work\", guest = \"/work\", mode = \"rw\" }]\n";

fn scratch() -> Scratch {
    let s = Scratch::with_plugins(&["test-append", "test-permanent"]);
    std::fs::create_dir(s.path().join("work")).unwrap();
    s
}

/// A `test-append` task: `name`, what it depends on (`None`: no `dependsOn` key), and
/// its params.
fn task(name: &str, depends_on: Option<&[&str]>, params: &str) -> String {
    let mut text = format!("[[tasks]]\ntype = \"test-append\"\nname = \"{name}\"\n");
    if let Some(names) = depends_on {
        let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        text += &format!("dependsOn = [{}]\n", list.join(", "));
    }
    text + &format!("params = {{ {params} }}\n")
}

fn time(value: &Value) -> Timestamp {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .parse()
        .unwrap()
}

/// The (start, end) of each attempt of task `index`.
fn spans(doc: &Value, index: usize) -> Vec<(Timestamp, Timestamp)> {
    doc["tasks"][index]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (time(&a["startedAt"]), time(&a["endedAt"])))
        .collect()
}

/// The only attempt of task `index`.
fn only_span(doc: &Value, index: usize) -> (Timestamp, Timestamp) {
    let spans = spans(doc, index);
    assert_eq!(spans.len(), 1, "task {index}: {spans:?}");
    spans[0]
}

fn run_json(s: &Scratch, plan: &str, extra: &[&str]) -> (i32, Value, String) {
    let file = s.write("p.toml", plan);
    let mut args = vec!["run", file.to_str().unwrap(), "--output", "json"];
    args.extend_from_slice(extra);
    let run = s.planrt(&args);
    assert_ne!(run.code, 2, "{}", run.stderr);
    (run.code, run.json(), run.stderr)
}

fn effects(s: &Scratch) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(s.path().join("work/effects.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// "{taskId} {attempt}" for each (task, attempt), sorted: what `effects` must hold.
fn expected_effects(doc: &Value, attempts: &[(usize, u32)]) -> Vec<String> {
    let mut lines: Vec<String> = attempts
        .iter()
        .map(|(index, attempt)| {
            format!("{} {attempt}", doc["tasks"][*index]["id"].as_str().unwrap())
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn independent_branches_run_in_parallel_and_a_join_waits_for_all_of_them() {
    let s = scratch();
    //        ┌ a ┐
    // root ──┼ b ┼── join
    //        └ c ┘
    let plan = format!(
        "{GRANT}[defaults]\nmaxParallel = 3\n{}{}{}{}{}",
        task("root", None, "sleepMs = 100"),
        task("a", Some(&["root"]), "sleepMs = 700"),
        task("b", Some(&["root"]), "sleepMs = 700"),
        task("c", Some(&["root"]), "sleepMs = 700"),
        task("join", Some(&["a", "b", "c"]), "sleepMs = 10"),
    );
    let (code, doc, stderr) = run_json(&s, &plan, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["phase"], "Complete");
    let root = only_span(&doc, 0);
    let branches: Vec<_> = (1..=3).map(|i| only_span(&doc, i)).collect();
    let join = only_span(&doc, 4);
    for (start, _) in &branches {
        assert!(*start >= root.1, "a branch started before root ended");
    }
    // The three branches overlap: each started before any of them ended.
    let last_start = branches.iter().map(|b| b.0).max().unwrap();
    let first_end = branches.iter().map(|b| b.1).min().unwrap();
    assert!(
        last_start < first_end,
        "branches did not overlap: {branches:?}"
    );
    let last_end = branches.iter().map(|b| b.1).max().unwrap();
    assert!(join.0 >= last_end, "join started before every branch ended");
    // Task IDs stay "{planId}/{type}/{index}".
    let plan_id = doc["id"].as_str().unwrap();
    for index in 0..5 {
        assert_eq!(
            doc["tasks"][index]["id"],
            planrt_e2e::reference_task_id(plan_id, "test-append", index)
        );
    }
    let ran: Vec<(usize, u32)> = (0..5).map(|i| (i, 1)).collect();
    assert_eq!(effects(&s), expected_effects(&doc, &ran));
}

#[test]
fn max_parallel_bounds_the_attempts_at_once_and_the_flag_overrides_the_plan() {
    let s = scratch();
    let tasks: String = (0..4)
        .map(|i| task(&format!("t{i}"), Some(&[]), "sleepMs = 400"))
        .collect();
    let plan = format!("{GRANT}[defaults]\nmaxParallel = 4\n{tasks}");
    let (code, doc, stderr) = run_json(&s, &plan, &["--max-parallel", "2"]);
    assert_eq!(code, 0, "{stderr}");
    let spans: Vec<_> = (0..4).map(|i| only_span(&doc, i)).collect();
    // At each start, how many attempts were running (itself included).
    let at_once = |at: Timestamp| spans.iter().filter(|(s, e)| *s <= at && at < *e).count();
    let most = spans
        .iter()
        .map(|(start, _)| at_once(*start))
        .max()
        .unwrap();
    assert_eq!(most, 2, "{spans:?}");
}

#[test]
fn a_failure_stops_new_starts_and_the_running_attempts_are_recorded() {
    let s = scratch();
    // `slow` and `bad` start together; `bad` fails for good at once; `slow` finishes and
    // is recorded; `after` (waiting for `slow`) never starts.
    let plan = format!(
        "{GRANT}[defaults]\nmaxParallel = 4\n{}[[tasks]]\ntype = \"test-permanent\"\nname = \"bad\"\ndependsOn = []\n{}",
        task("slow", Some(&[]), "sleepMs = 800"),
        task("after", Some(&["slow"]), "sleepMs = 10"),
    );
    let (code, doc, stderr) = run_json(&s, &plan, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(doc["phase"], "Failed");
    assert_eq!(doc["failedTaskIndex"], 1);
    assert_eq!(doc["failedTaskDetail"]["type"], "test-permanent");
    assert_eq!(doc["tasks"][0]["status"], "Complete");
    let slow = only_span(&doc, 0);
    let bad = only_span(&doc, 1);
    assert!(bad.1 < slow.1, "bad failed while slow ran");
    assert_eq!(doc["tasks"][2]["status"], "Pending");
    assert_eq!(doc["tasks"][2]["attempts"], serde_json::json!([]));
    assert_eq!(effects(&s), expected_effects(&doc, &[(0, 1)]));

    // The stored plan says the same (the list reads counts, not the document).
    let list = s.planrt(&["status", "--output", "json"]).json();
    assert_eq!(list[0]["failedTaskIndex"], 1, "{list}");

    // Resume runs the failed task again (it fails again); `slow` does not run again.
    let resumed = s.planrt(&["resume", doc["id"].as_str().unwrap(), "--output", "json"]);
    assert_eq!(resumed.code, 1, "{}", resumed.stderr);
    let doc = resumed.json();
    assert_eq!(doc["failedTaskIndex"], 1);
    assert_eq!(doc["tasks"][1]["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(doc["tasks"][0]["attempts"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_graphs_exit_2_naming_the_tasks_and_where() {
    let s = scratch();
    let cases = [
        (
            format!(
                "{}{}",
                task("a", Some(&["b"]), ""),
                task("b", Some(&["a"]), "")
            ),
            "cycle: `a` (task 0) → `b` (task 1) → `a` (task 0)",
        ),
        (
            task("a", Some(&["nowhere"]), ""),
            "task 0 depends on `nowhere`, but no task of the plan is named `nowhere`",
        ),
        (
            format!("{}{}", task("a", None, ""), task("a", None, "")),
            "tasks 0 and 1 are both named `a`",
        ),
    ];
    for (tasks, message) in cases {
        let file = s.write("bad.toml", &format!("{GRANT}{tasks}"));
        for command in ["plan", "run"] {
            let run = s.planrt(&[command, file.to_str().unwrap(), "--output", "json"]);
            assert_eq!(run.code, 2, "{command}: {}", run.stderr);
            assert!(run.stdout.is_empty());
            assert!(run.stderr.contains(message), "{command}: {}", run.stderr);
            assert!(run.stderr.contains("bad.toml:"), "{}", run.stderr);
        }
    }
    assert!(
        !s.state().join("planrt.db").exists()
            || s.planrt(&["status", "--output", "json"]).json() == serde_json::json!([]),
        "nothing was recorded"
    );
}

#[test]
fn plan_shows_the_graph_as_levels_and_dependson_per_task() {
    let s = scratch();
    let plan = format!(
        "{GRANT}{}{}{}",
        task("fetch", None, ""),
        task("patch", Some(&["fetch"]), ""),
        task("check", Some(&["fetch", "patch"]), ""),
    );
    let file = s.write("p.toml", &plan);
    let text = s.planrt(&["plan", file.to_str().unwrap()]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    let header = text.stdout.lines().nth(1).unwrap();
    assert!(header.contains("NAME") && header.contains("LEVEL") && header.contains("AFTER"));
    let row = |index: usize| {
        let line = text.stdout.lines().nth(2 + index).unwrap().to_owned();
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(row(0)[..5], ["0", "test-append", "fetch", "0", "-"]);
    assert_eq!(row(1)[..5], ["1", "test-append", "patch", "1", "fetch"]);
    assert_eq!(
        row(2)[..5],
        ["2", "test-append", "check", "2", "fetch,patch"]
    );
    assert!(text.stdout.contains("graph: 3 level(s)"), "{}", text.stdout);

    let json = s
        .planrt(&["plan", file.to_str().unwrap(), "--output", "json"])
        .json();
    assert_eq!(json["tasks"][0]["name"], "fetch");
    assert!(json["tasks"][0].get("dependsOn").is_none());
    assert_eq!(
        json["tasks"][2]["dependsOn"],
        serde_json::json!(["fetch", "patch"])
    );
}

#[test]
fn kill_9_during_parallel_attempts_then_resume_runs_every_task_once_more_with_the_same_ids() {
    let s = scratch();
    // `a` and `b` hold their attempts until `work/go` exists; `c` waits for both.
    let plan = format!(
        "{GRANT}[defaults]\nmaxParallel = 4\n{}{}{}",
        task("a", Some(&[]), "waitFor = \"go\""),
        task("b", Some(&[]), "waitFor = \"go\""),
        task("c", Some(&["a", "b"]), "sleepMs = 10"),
    );
    let (saved, saved_doc) = s.save_plan(&plan);
    let plan_id = saved_doc["id"].as_str().unwrap().to_owned();
    let mut child = s.spawn(&["run", saved.to_str().unwrap()]);
    let seen = s.wait_for_plan(&plan_id, |d| {
        d["tasks"][0]["status"] == "Running" && d["tasks"][1]["status"] == "Running"
    });
    child.kill().unwrap(); // SIGKILL, with two attempts in flight
    child.wait().unwrap();
    assert_eq!(seen["tasks"][2]["status"], "Pending");
    std::fs::write(s.path().join("work/go"), "").unwrap();

    let run = s.planrt(&["resume", &plan_id, "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["phase"], "Complete");
    for index in 0..3 {
        assert_eq!(doc["tasks"][index]["id"], saved_doc["tasks"][index]["id"]);
    }
    for index in 0..2 {
        let attempts = doc["tasks"][index]["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "task {index}: {attempts:?}");
        assert_eq!(attempts[0]["errorKind"], "interrupted");
        assert_eq!(attempts[1]["outcome"], "complete");
        assert_eq!(doc["tasks"][index]["retryCount"], 0);
    }
    let c = only_span(&doc, 2);
    assert!(c.0 >= spans(&doc, 0)[1].1 && c.0 >= spans(&doc, 1)[1].1);
    assert_eq!(
        effects(&s),
        expected_effects(&doc, &[(0, 2), (1, 2), (2, 1)]),
        "the killed attempts never reached their effect; each task's is there once"
    );
}

#[test]
fn resume_from_a_task_reruns_it_and_what_depends_on_it_only() {
    let s = scratch();
    // a ── b ── c     d (free)
    let plan = format!(
        "{GRANT}{}{}{}{}",
        task("a", None, "sleepMs = 10"),
        task("b", Some(&["a"]), "sleepMs = 10"),
        task("c", Some(&["b"]), "sleepMs = 10"),
        task("d", Some(&[]), "sleepMs = 10"),
    );
    let (code, doc, stderr) = run_json(&s, &plan, &[]);
    assert_eq!(code, 0, "{stderr}");
    let plan_id = doc["id"].as_str().unwrap();
    let run = s.planrt(&["resume", plan_id, "--from", "1", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    let attempts: Vec<usize> = (0..4)
        .map(|i| doc["tasks"][i]["attempts"].as_array().unwrap().len())
        .collect();
    assert_eq!(attempts, [1, 2, 2, 1]);
    assert!(only_span(&doc, 0).1 <= spans(&doc, 1)[1].0);
    assert!(
        spans(&doc, 1)[1].1 <= spans(&doc, 2)[1].0,
        "c re-ran after b"
    );
}

#[test]
fn sigterm_with_attempts_side_by_side_interrupts_them_all_and_exits_130() {
    let s = scratch();
    let plan = format!(
        "{GRANT}[defaults]\nmaxParallel = 4\n{}{}{}",
        task("a", Some(&[]), "waitFor = \"go\""),
        task("b", Some(&[]), "waitFor = \"go\""),
        task("c", Some(&["a"]), "sleepMs = 10"),
    );
    let (saved, saved_doc) = s.save_plan(&plan);
    let plan_id = saved_doc["id"].as_str().unwrap().to_owned();
    let child = s.spawn(&["run", saved.to_str().unwrap(), "--output", "json"]);
    s.wait_for_plan(&plan_id, |d| {
        d["tasks"][0]["status"] == "Running" && d["tasks"][1]["status"] == "Running"
    });
    assert_eq!(planrt_e2e::signalled(child, "TERM").code, 130);
    let doc = s.planrt(&["status", &plan_id, "--output", "json"]).json();
    assert_eq!(doc["phase"], "Active", "resumable");
    for index in 0..2 {
        assert_eq!(doc["tasks"][index]["status"], "Pending");
        assert_eq!(
            doc["tasks"][index]["attempts"][0]["errorKind"],
            "interrupted"
        );
    }
    assert_eq!(doc["tasks"][2]["attempts"], serde_json::json!([]));
    std::fs::write(s.path().join("work/go"), "").unwrap();
    let resumed = s.planrt(&["resume", &plan_id, "--output", "json"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
}

#[test]
fn resume_from_a_task_that_leaves_a_failure_elsewhere_is_refused() {
    let s = scratch();
    // `bad` fails; `--from 0` would rerun `a` and leave `bad` failed: refused, exit 2.
    let plan = format!(
        "{GRANT}{}[[tasks]]\ntype = \"test-permanent\"\nname = \"bad\"\ndependsOn = []\n",
        task("a", Some(&[]), "sleepMs = 10"),
    );
    let (code, doc, stderr) = run_json(&s, &plan, &[]);
    assert_eq!(code, 1, "{stderr}");
    let plan_id = doc["id"].as_str().unwrap();
    let run = s.planrt(&["resume", plan_id, "--from", "0"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("task(s) 1 of plan") && run.stderr.contains("do not depend on task 0"),
        "{}",
        run.stderr
    );
    let after = s.planrt(&["status", plan_id, "--output", "json"]).json();
    assert_eq!(after["tasks"], doc["tasks"], "nothing was changed");
}

/// `planrt run` of a graph of `width` independent `test-noop` tasks sleeping `sleep_ms`,
/// all at once, with `env` set: how many attempts started a sleep or more after the
/// first one (they waited for others to end).
fn late_starts(width: usize, sleep_ms: u64, env: &[(&str, &str)]) -> usize {
    let s = Scratch::with_plugins(&["test-noop"]);
    let tasks: String = (0..width)
        .map(|i| {
            format!(
                "[[tasks]]\ntype = \"test-noop\"\nname = \"t{i}\"\ndependsOn = []\nparams = {{ sleepMs = {sleep_ms} }}\n"
            )
        })
        .collect();
    let file = s.write(
        "p.toml",
        &format!("[defaults]\nmaxParallel = {width}\n{tasks}"),
    );
    let mut command = s.command(&["run", file.to_str().unwrap(), "--output", "json"]);
    command.envs(env.iter().copied());
    let run: planrt_e2e::Run = command.output().unwrap().into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    let starts: Vec<Timestamp> = (0..width).map(|i| only_span(&doc, i).0).collect();
    let first = *starts.iter().min().unwrap();
    let sleep = jiff::SignedDuration::from_millis(sleep_ms as i64);
    starts
        .iter()
        .filter(|start| start.duration_since(first) >= sleep)
        .count()
}

#[test]
fn a_graph_wider_than_the_instance_pool_waits_for_places_instead_of_failing() {
    // 300 attempts at once; the pool has 256 places, 16 of them kept for `validate` and
    // `describe` (`POOL_INSTANCES`, `RESERVED_FOR_CHECKS`): 60 tasks wait, `Pending`, for
    // the first ones to end, and none fails for want of a place.
    assert_eq!(
        late_starts(300, 1000, &[("PLANRT_ALLOCATOR", "pooling")]),
        60
    );
    // Instances mapped one by one are not bounded: all start at once.
    assert_eq!(
        late_starts(300, 1000, &[("PLANRT_ALLOCATOR", "on-demand")]),
        0
    );
}
