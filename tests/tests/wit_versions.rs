//! The contract versions the host serves side by side (docs/DESIGN.md §5): a plugin built
//! against the frozen `planrt:task@0.1.0` and one against 0.2.0 in one plan; 0.2.0's kv
//! store surviving a `kill -9`; `cancelled()` giving a plugin that asks a clean stop;
//! and a component of a version outside the range refused, naming both.

use std::time::{Duration, Instant};

use planrt_e2e::Scratch;
use serde_json::Value;

/// The kv value of `key` for `task_type`, read straight from the state database.
fn kv_value(s: &Scratch, task_type: &str, key: &str) -> Option<Vec<u8>> {
    let db = rusqlite::Connection::open_with_flags(
        s.state().join("planrt.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()?;
    db.query_row(
        "SELECT value FROM kv WHERE task_type = ?1 AND key = ?2",
        (task_type, key),
        |row| row.get(0),
    )
    .ok()
}

/// Polls until `key` of `test-kv` is committed (or panics after 30 s).
fn wait_for_key(s: &Scratch, key: &str) -> Vec<u8> {
    let mut value = None;
    s.wait_until(&format!("`{key}` to be committed"), || {
        value = kv_value(s, "test-kv", key);
        value.is_some()
    });
    value.expect("committed")
}

#[test]
fn plugins_lists_each_plugins_contract_version() {
    let s = Scratch::with_plugins(&["test-v010", "test-v020", "test-kv"]);
    let run = s.planrt(&["plugins", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let versions: Vec<(String, String)> = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["taskType"].as_str().unwrap().to_owned(),
                p["witVersion"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            ("test-kv".to_owned(), "0.3.0".to_owned()),
            ("test-v010".to_owned(), "0.1.0".to_owned()),
            ("test-v020".to_owned(), "0.2.0".to_owned())
        ]
    );
    let text = s.planrt(&["plugins"]);
    let header = text.stdout.lines().next().unwrap();
    assert!(header.contains("WIT"), "{}", text.stdout);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("test-v010") && l.contains("0.1.0")),
        "{}",
        text.stdout
    );
}

#[test]
fn plugins_of_every_served_version_run_in_one_plan_and_kv_persists_across_plans() {
    let s = Scratch::with_plugins(&["test-v010", "test-v020", "test-kv"]);
    let plan = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-v010\"\nparams = { hello = \"world\" }\n\
         [[tasks]]\ntype = \"test-v020\"\nparams = { key = \"shared\" }\n\
         [[tasks]]\ntype = \"test-kv\"\nparams = { key = \"shared\" }\n",
    );
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["tasks"][0]["output"]["wit"], "0.1.0");
    assert_eq!(doc["tasks"][0]["output"]["params"]["hello"], "world");
    assert!(
        doc["tasks"][0]["attempts"][0]["logTail"]
            .as_str()
            .unwrap()
            .contains("a planrt:task@0.1.0 plugin runs")
    );
    // 0.2.0: kv (its own type's keys), `cancelled`, and progress without a unit.
    let v020 = &doc["tasks"][1];
    assert_eq!(v020["output"]["wit"], "0.2.0");
    assert_eq!(v020["output"]["found"], serde_json::Value::Null);
    assert_eq!(v020["output"]["cancelled"], false);
    assert!(
        run.stderr.contains("task 1 (test-v020): 2/2 100% done"),
        "progress without a unit is a plain count: {}",
        run.stderr
    );
    assert_eq!(
        kv_value(&s, "test-v020", "shared").as_deref(),
        v020["id"].as_str().map(str::as_bytes)
    );
    // 0.3.0 (the SDK's): the same key of another type is another value.
    let kv_task = doc["tasks"][2]["id"].as_str().unwrap();
    let written = format!("{kv_task} attempt 1");
    assert_eq!(doc["tasks"][2]["output"]["set"], written.as_str());

    // Another plan: a task of the same type sees the key the first one set.
    let again = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let again = again.json();
    assert_eq!(again["tasks"][1]["output"]["found"], v020["id"]);
    assert_eq!(again["tasks"][2]["output"]["found"], written.as_str());
}

#[test]
fn kv_written_by_an_attempt_killed_with_sigkill_is_read_by_the_next_after_resume() {
    let s = Scratch::with_plugins(&["test-v010", "test-kv"]);
    let (saved, doc) = s.save_plan(
        "[[tasks]]\ntype = \"test-v010\"\n\
         [[tasks]]\ntype = \"test-kv\"\nparams = { key = \"marker\", holdFirst = true }\n",
    );
    let plan_id = doc["id"].as_str().unwrap().to_owned();
    let kv_task = doc["tasks"][1]["id"].as_str().unwrap().to_owned();
    let mut child = s.spawn(&["run", saved.to_str().unwrap()]);
    let committed = wait_for_key(&s, "marker");
    child.kill().unwrap(); // SIGKILL, while attempt 1 holds
    child.wait().unwrap();
    assert_eq!(committed, format!("{kv_task} attempt 1").as_bytes());

    let resumed = s.planrt(&["resume", &plan_id, "--output", "json"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let doc = resumed.json();
    assert_eq!(doc["phase"], "Complete");
    let attempts = doc["tasks"][1]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["errorKind"], "interrupted");
    // The second attempt read what the killed one committed, and did not set it again.
    assert_eq!(
        doc["tasks"][1]["output"]["found"],
        format!("{kv_task} attempt 1")
    );
    assert_eq!(doc["tasks"][0]["output"]["wit"], "0.1.0");
}

/// Runs a one-task plan of `test-kv` holding on key `held` with `params` (TOML inline
/// table entries), sends SIGTERM once the key is committed, and returns planrt's exit
/// code, how long it took to exit after the signal, and the plan's status document.
fn sigterm_a_held_attempt(params: &str) -> (i32, Duration, Value) {
    let s = Scratch::with_plugins(&["test-kv"]);
    let (saved, doc) = s.save_plan(&format!(
        "[[tasks]]\ntype = \"test-kv\"\nparams = {{ key = \"held\", holdFirst = true{params} }}\n"
    ));
    let plan_id = doc["id"].as_str().unwrap().to_owned();
    let child = s.spawn(&["run", saved.to_str().unwrap()]);
    wait_for_key(&s, "held");
    let signalled = Instant::now();
    let out = planrt_e2e::signalled(child, "TERM");
    let took = signalled.elapsed();
    let doc = s.planrt(&["status", &plan_id, "--output", "json"]).json();
    (out.code, took, doc)
}

#[test]
fn sigterm_gives_a_plugin_that_asks_cancelled_a_clean_stop() {
    let (code, took, doc) = sigterm_a_held_attempt("");
    assert_eq!(code, 130);
    // It stopped on its own, well inside the grace period.
    assert!(took < Duration::from_secs(3), "{took:?}");
    let attempt = &doc["tasks"][0]["attempts"][0];
    // Whatever the plugin returned, a shutdown records the attempt `interrupted`.
    assert_eq!(attempt["errorKind"], "interrupted", "{attempt}");
    assert!(
        attempt["logTail"]
            .as_str()
            .unwrap()
            .contains("cancelled() returned true: stopping cleanly"),
        "{attempt}"
    );
    // How far it got, as it said before the stop.
    assert_eq!(attempt["progress"]["note"], "holding", "{attempt}");
    assert_eq!(doc["phase"], "Active", "resumable");
}

#[test]
fn work_finished_within_the_grace_of_a_shutdown_is_recorded_complete() {
    let (code, _, doc) = sigterm_a_held_attempt(", succeedOnCancel = true");
    // The plan is complete, not interrupted: exit 0, nothing left to resume.
    assert_eq!(code, 0);
    assert_eq!(doc["phase"], "Complete");
    assert_eq!(doc["tasks"][0]["output"]["finishedOnCancel"], true);
    assert_eq!(doc["tasks"][0]["attempts"].as_array().unwrap().len(), 1);
}

#[test]
fn delete_over_http_gives_a_plugin_that_asks_its_grace_and_records_it_cancelled() {
    let s = Scratch::with_plugins(&["test-kv"]);
    let server = s.serve(&[]);
    let id = uuid::Uuid::new_v4().to_string();
    let submitted = server.post(
        "/v0/tasks",
        &serde_json::json!({"id": id, "type": "test-kv", "params": {"key": "served", "holdFirst": true}}),
    );
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    wait_for_key(&s, "served");
    let asked = Instant::now();
    let deleted = server.delete(&format!("/v0/tasks/{id}"));
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    let task = server.get(&format!("/v0/tasks/{id}")).json();
    assert_eq!(task["status"], "failed");
    let attempt = &task["attempts"][0];
    assert_eq!(attempt["errorKind"], "cancelled", "{attempt}");
    assert!(
        attempt["logTail"]
            .as_str()
            .unwrap()
            .contains("cancelled() returned true: stopping cleanly"),
        "{attempt}"
    );
}

#[test]
fn a_plugin_that_never_asks_cancelled_is_interrupted_at_once() {
    let s = Scratch::with_plugins(&["test-spin"]);
    let (saved, doc) = s.save_plan("[[tasks]]\ntype = \"test-spin\"\n");
    let plan_id = doc["id"].as_str().unwrap().to_owned();
    let child = s.spawn(&["run", saved.to_str().unwrap()]);
    s.wait_for_plan(&plan_id, |d| d["tasks"][0]["status"] == "Running");
    let signalled = Instant::now();
    assert_eq!(planrt_e2e::signalled(child, "TERM").code, 130);
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "no grace for a plugin that never asked: {:?}",
        signalled.elapsed()
    );
}

#[test]
fn kv_limits_fail_the_attempt_permanent_naming_the_limit() {
    let s = Scratch::with_plugins(&["test-kv"]);
    let plan = s.write(
        "p.toml",
        "[defaults]\nmaxRetries = 2\n[[tasks]]\ntype = \"test-kv\"\nparams = { key = \"big\", setBytes = 1048577 }\n",
    );
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let attempts = run.json()["tasks"][0]["attempts"].clone();
    assert_eq!(attempts.as_array().unwrap().len(), 1, "not retried");
    assert_eq!(attempts[0]["errorKind"], "permanent");
    let message = attempts[0]["message"].as_str().unwrap();
    assert!(message.contains("at most 1048576 bytes"), "{message}");
    assert_eq!(kv_value(&s, "test-kv", "big"), None, "nothing stored");

    let fits = s.write(
        "fits.toml",
        "[[tasks]]\ntype = \"test-kv\"\nparams = { key = \"big\", setBytes = 1048576 }\n",
    );
    assert_eq!(s.planrt(&["run", fits.to_str().unwrap()]).code, 0);
    assert_eq!(
        kv_value(&s, "test-kv", "big").map(|v| v.len()),
        Some(1048576)
    );
}

/// `bytes` with every occurrence of `from` replaced by `to` (same length: the component
/// stays well-formed, only an import name changes).
fn retarget(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut replaced = 0;
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            replaced += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(replaced > 0, "no import to retarget");
    out
}

#[test]
fn components_of_an_unserved_version_of_several_or_of_none_are_refused_saying_so() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let v010 = std::fs::read(planrt_e2e::plugin_file("test-v010")).unwrap();
    let types = |version: &[u8]| [b"planrt:task/types@".as_slice(), version].concat();
    let host = |version: &[u8]| [b"planrt:task/host@".as_slice(), version].concat();
    let bad: [(&str, Vec<u8>); 3] = [
        // Every import of a version this host does not serve.
        (
            "test-future.wasm",
            retarget(
                &retarget(&v010, &types(b"0.1.0"), &types(b"0.9.0")),
                &host(b"0.1.0"),
                &host(b"0.9.0"),
            ),
        ),
        // `types` of one version, `host` of another.
        (
            "test-mixed.wasm",
            retarget(&v010, &types(b"0.1.0"), &types(b"0.2.0")),
        ),
        // No planrt:task import at all: some other package's component.
        (
            "test-foreign.wasm",
            retarget(&v010, b"planrt:task/", b"planrx:task/"),
        ),
    ];
    for (file, bytes) in &bad {
        std::fs::write(s.plugins().join(file), bytes).unwrap();
    }
    let run = s.planrt(&["plugins", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.json().as_array().unwrap().len(),
        1,
        "only test-echo loads"
    );
    for expected in [
        "test-future.wasm",
        "targets planrt:task@0.9.0, but this host serves planrt:task@0.1.0 to 0.3.0",
        "test-mixed.wasm",
        "imports planrt:task at several versions (0.1.0, 0.2.0)",
        "test-foreign.wasm",
        "imports no planrt:task interface: not a planrt plugin",
    ] {
        assert!(
            run.stderr.contains(expected),
            "no {expected:?} in:\n{}",
            run.stderr
        );
    }
}
