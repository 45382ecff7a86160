//! Durable state: kill -9 and resume, signals, status and history, resume --from,
//! stored backoffs, claims and plugin changes.

use planrt_e2e::Scratch;
use serde_json::Value;

const GRANT: &str = "[grants]\ndirs = [{ host = \"work\", guest = \"/work\", mode = \"rw\" }]\n";

fn scratch() -> Scratch {
    let s = Scratch::with_plugins(&["test-append", "test-flaky", "test-permanent", "test-echo"]);
    std::fs::create_dir(s.path().join("work")).unwrap();
    s
}

fn saved_plan(s: &Scratch, plan: &str) -> (String, String) {
    let (saved, doc) = s.save_plan(plan);
    (
        saved.to_str().unwrap().to_owned(),
        doc["id"].as_str().unwrap().to_owned(),
    )
}

fn effects(s: &Scratch) -> Vec<String> {
    std::fs::read_to_string(s.path().join("work/effects.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn task_ids(doc: &Value) -> Vec<Value> {
    doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect()
}

fn kill_mid_plan_then_resume(max_retries: u32) {
    let s = scratch();
    let plan = format!(
        "{GRANT}[defaults]\nmaxRetries = {max_retries}\n\
         [[tasks]]\ntype = \"test-append\"\nparams = {{ sleepMs = 100 }}\n\
         [[tasks]]\ntype = \"test-append\"\nparams = {{ sleepMs = 3000 }}\n\
         [[tasks]]\ntype = \"test-append\"\nparams = {{ sleepMs = 100 }}\n"
    );
    let (saved, plan_id) = saved_plan(&s, &plan);
    let mut child = s.spawn(&["run", &saved]);
    // Kill inside task 1's attempt, after task 0 completed.
    let seen = s.wait_for_plan(&plan_id, |d| d["tasks"][1]["status"] == "Running");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(seen["tasks"][0]["status"], "Complete");

    let run = s.planrt(&["resume", &plan_id, "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["phase"], "Complete");
    assert_eq!(task_ids(&doc), task_ids(&seen));
    assert_eq!(
        doc["tasks"][0]["attempts"].as_array().unwrap().len(),
        1,
        "a completed task never runs again"
    );
    let attempts = doc["tasks"][1]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["errorKind"], "interrupted");
    assert_eq!(attempts[1]["outcome"], "complete");
    assert_eq!(
        doc["tasks"][1]["retryCount"], 0,
        "an interruption uses no retry budget"
    );
    let ids: Vec<String> = task_ids(&doc)
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        effects(&s),
        vec![
            format!("{} 1", ids[0]),
            format!("{} 2", ids[1]),
            format!("{} 1", ids[2])
        ]
    );
}

#[test]
fn kill_9_mid_plan_then_resume_completes_with_the_same_ids() {
    kill_mid_plan_then_resume(2);
}

#[test]
fn kill_9_then_resume_finishes_a_plan_without_retries() {
    kill_mid_plan_then_resume(0);
}

#[test]
fn sigterm_records_the_attempt_interrupted_and_exits_130() {
    for signal in ["TERM", "INT"] {
        let s = scratch();
        let (saved, plan_id) = saved_plan(
            &s,
            &format!("{GRANT}[[tasks]]\ntype = \"test-append\"\nparams = {{ sleepMs = 5000 }}\n"),
        );
        let child = s.spawn(&["run", &saved, "--output", "json"]);
        s.wait_for_plan(&plan_id, |d| d["tasks"][0]["status"] == "Running");
        let out = planrt_e2e::signalled(child, signal);
        assert_eq!(out.code, 130, "SIG{signal}");
        let doc = s.planrt(&["status", &plan_id, "--output", "json"]).json();
        assert_eq!(doc["phase"], "Active", "resumable");
        assert_eq!(doc["tasks"][0]["status"], "Pending");
        let attempt = &doc["tasks"][0]["attempts"][0];
        assert_eq!(attempt["errorKind"], "interrupted");
        // Stopped without waiting for the guest to finish its 5 s of sleep.
        let time = |key: &str| {
            attempt[key]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .unwrap()
        };
        assert!(
            time("endedAt").duration_since(time("startedAt")) < jiff::SignedDuration::from_secs(5),
            "{attempt}"
        );
        let resumed = s.planrt(&["resume", &plan_id, "--output", "json"]);
        assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    }
}

#[test]
fn status_and_history_after_a_failed_run_then_resume_from() {
    let s = scratch();
    let plan = format!(
        "name = \"failing\"\n{GRANT}\
         [[tasks]]\ntype = \"test-append\"\n\
         [[tasks]]\ntype = \"test-flaky\"\nmaxRetries = 1\nbackoff = {{ initial = \"10ms\" }}\nparams = {{ failures = 2 }}\n\
         [[tasks]]\ntype = \"test-append\"\n"
    );
    let path = s.write("p.toml", &plan);
    let run = s.planrt(&["run", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let plan_id = run.json()["id"].as_str().unwrap().to_owned();

    let status = s.planrt(&["status", &plan_id, "--output", "json"]);
    assert_eq!(status.code, 0);
    let doc = status.json();
    assert_eq!(doc["phase"], "Failed");
    assert_eq!(doc["failedTaskIndex"], 1);
    assert_eq!(doc["failedTaskDetail"]["retryCount"], 1);
    assert_eq!(doc["failedTaskDetail"]["maxRetries"], 1);

    let list = s.planrt(&["status", "--output", "json"]).json();
    assert_eq!(list[0]["id"], plan_id.as_str());
    assert_eq!(list[0]["phase"], "Failed");
    assert_eq!(list[0]["failedTaskIndex"], 1);
    assert!(s.planrt(&["status"]).stdout.contains(&plan_id));

    let history = s.planrt(&["history", &plan_id, "--output", "json"]).json();
    let kinds: Vec<(u64, u64, Value)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["taskIndex"].as_u64().unwrap(),
                e["attempt"].as_u64().unwrap(),
                e["errorKind"].clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (0, 1, Value::Null),
            (1, 1, "transient".into()),
            (1, 2, "transient".into())
        ]
    );
    let text = s.planrt(&["history", &plan_id]).stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and one line per attempt: {text}");
    assert!(
        lines[0].starts_with("STARTED")
            && lines[0].contains("PROGRESS")
            && lines[0].contains("ERROR"),
        "{text}"
    );
    assert!(
        lines[2].contains("failed") && lines[2].contains("transient: planned failure on attempt 1"),
        "{text}"
    );

    // From task 1: retry budget reset, task 0 untouched, earlier failures kept.
    let resumed = s.planrt(&["resume", &plan_id, "--from", "1", "--output", "json"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let doc = resumed.json();
    assert_eq!(doc["phase"], "Complete");
    assert!(
        doc.get("failedTaskIndex").is_none(),
        "the latest outcome is complete"
    );
    assert_eq!(doc["tasks"][0]["attempts"].as_array().unwrap().len(), 1);
    let flaky = doc["tasks"][1]["attempts"].as_array().unwrap();
    assert_eq!(flaky.len(), 3, "history keeps the failures");
    assert_eq!(flaky[2]["outcome"], "complete");
    assert_eq!(
        s.planrt(&["history", &plan_id, "--output", "json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // --from 0 runs even completed tasks again; --from past the end is bad input.
    let again = s
        .planrt(&["resume", &plan_id, "--from", "0", "--output", "json"])
        .json();
    assert_eq!(again["tasks"][0]["attempts"].as_array().unwrap().len(), 2);
    let bad = s.planrt(&["resume", &plan_id, "--from", "7"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("no task 7"), "{}", bad.stderr);
}

#[test]
fn resume_of_a_failed_plan_gives_the_failed_task_its_next_attempt() {
    let s = scratch();
    let path = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-flaky\"\nparams = { failures = 1 }\n",
    );
    let run = s.planrt(&["run", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 1);
    let plan_id = run.json()["id"].as_str().unwrap().to_owned();
    let doc = s.planrt(&["resume", &plan_id, "--output", "json"]).json();
    assert_eq!(doc["phase"], "Complete");
    assert_eq!(doc["tasks"][0]["attempts"][1]["attempt"], 2);
    assert_eq!(doc["tasks"][0]["output"]["attempt"], 2);
}

#[test]
fn a_stored_backoff_is_honoured_after_a_restart() {
    let s = scratch();
    let plan = "[[tasks]]\ntype = \"test-flaky\"\nmaxRetries = 1\nbackoff = { initial = \"3s\", jitter = false }\nparams = { failures = 1 }\n";
    let (saved, plan_id) = saved_plan(&s, plan);
    let mut child = s.spawn(&["run", &saved]);
    let doc = s.wait_for_plan(&plan_id, |d| d["tasks"][0]["retryCount"] == 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let next: jiff::Timestamp = doc["tasks"][0]["nextAttemptAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let run = s.planrt(&["resume", &plan_id, "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let attempts = run.json()["tasks"][0]["attempts"].clone();
    let second: jiff::Timestamp = attempts[1]["startedAt"].as_str().unwrap().parse().unwrap();
    assert!(
        second >= next,
        "attempt 2 started at {second}, before its stored backoff {next}"
    );
}

#[test]
fn a_second_claimant_is_told_and_two_plans_run_side_by_side() {
    let s = scratch();
    let (saved, plan_id) = saved_plan(
        &s,
        &format!("{GRANT}[[tasks]]\ntype = \"test-append\"\nparams = {{ sleepMs = 2000 }}\n"),
    );
    let mut first = s.spawn(&["run", &saved]);
    s.wait_for_plan(&plan_id, |d| d["tasks"][0]["status"] == "Running");

    let second = s.planrt(&["resume", &plan_id]);
    assert_eq!(second.code, 2);
    assert!(
        second
            .stderr
            .contains("being run by another planrt process"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains(&first.id().to_string()),
        "names the holder's pid: {}",
        second.stderr
    );

    // Another plan in the same state dir runs meanwhile; status reads while both write.
    let other = s.write("q.toml", "[[tasks]]\ntype = \"test-echo\"\n");
    let run = s.planrt(&["run", other.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(first.wait().unwrap().success());
}

#[test]
fn a_changed_plugin_is_refused_on_resume_unless_allowed() {
    let s = scratch();
    let path = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-flaky\"\nparams = { failures = 1 }\n",
    );
    let run = s.planrt(&["run", path.to_str().unwrap(), "--output", "json"]);
    let plan_id = run.json()["id"].as_str().unwrap().to_owned();
    s.change_plugin("test-flaky");

    let refused = s.planrt(&["resume", &plan_id]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("--allow-plugin-change"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        s.planrt(&["status", &plan_id, "--output", "json"]).json()["phase"],
        "Failed",
        "nothing changed"
    );
    let allowed = s.planrt(&[
        "resume",
        &plan_id,
        "--allow-plugin-change",
        "--output",
        "json",
    ]);
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    // The new pin is kept: a later resume needs no flag.
    assert_eq!(s.planrt(&["resume", &plan_id]).code, 0);
}

#[test]
fn an_allowed_plugin_change_is_recorded_only_once_the_plan_checks_out() {
    // A resume that fails its checks (here: a secret no longer set) must leave the stored
    // plan as it was — its pins included.
    let s = scratch();
    let path = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-echo\"\nparams = { token = { \"$env\" = \"PLANRT_REPIN_SECRET\" } }\n",
    );
    let ran: planrt_e2e::Run = s
        .command(&["run", path.to_str().unwrap(), "--output", "json"])
        .env("PLANRT_REPIN_SECRET", "first-value")
        .output()
        .unwrap()
        .into();
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let plan_id = ran.json()["id"].as_str().unwrap().to_owned();
    let pinned = || -> String {
        let db = rusqlite::Connection::open(s.state().join("planrt.db")).unwrap();
        db.query_row(
            "SELECT json_extract(resolved, '$.plugins.\"test-echo\".sha256') FROM plans",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let before = pinned();
    s.change_plugin("test-echo");

    let refused: planrt_e2e::Run = s
        .command(&["resume", &plan_id, "--from", "0", "--allow-plugin-change"])
        .env_remove("PLANRT_REPIN_SECRET")
        .output()
        .unwrap()
        .into();
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("PLANRT_REPIN_SECRET"),
        "{}",
        refused.stderr
    );
    assert_eq!(pinned(), before, "the pin moved although nothing ran");

    let resumed: planrt_e2e::Run = s
        .command(&["resume", &plan_id, "--from", "0", "--allow-plugin-change"])
        .env("PLANRT_REPIN_SECRET", "second-value")
        .output()
        .unwrap()
        .into();
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_ne!(pinned(), before, "the allowed change is recorded");
}
