//! Failures that are not retried: permanent, invalid params, traps (docs/DESIGN.md §3).

use planrt_e2e::Scratch;

fn run_one(task: &str, params: &str) -> serde_json::Value {
    let s = Scratch::with_plugins(&[task, "test-echo"]);
    let plan = s.write(
        "p.toml",
        &format!("[defaults]\nmaxRetries = 3\nbackoff = {{ initial = \"10ms\" }}\n[[tasks]]\ntype = \"{task}\"\nparams = {params}\n[[tasks]]\ntype = \"test-echo\"\n"),
    );
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["phase"], "Failed");
    assert_eq!(doc["failedTaskIndex"], 0);
    let task = doc["tasks"][0].clone();
    assert_eq!(
        task["attempts"].as_array().unwrap().len(),
        1,
        "not retried despite maxRetries = 3"
    );
    assert_eq!(task["retryCount"], 0);
    assert_eq!(doc["tasks"][1]["status"], "Pending");
    task
}

#[test]
fn a_permanent_error_is_not_retried() {
    let task = run_one("test-permanent", "{}");
    assert_eq!(task["attempts"][0]["errorKind"], "permanent");
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .contains("attempt 1 failed for good")
    );
}

#[test]
fn invalid_params_at_run_time_are_not_retried() {
    let task = run_one("test-invalid-params", "{ required = 1 }");
    assert_eq!(task["attempts"][0]["errorKind"], "invalid-params");
}

#[test]
fn a_trap_fails_the_attempt_with_a_named_backtrace_and_the_panic_message() {
    let task = run_one("test-trap", "{}");
    let attempt = &task["attempts"][0];
    assert_eq!(attempt["errorKind"], "trap");
    assert_eq!(attempt["outcome"], "failed");
    let message = attempt["message"].as_str().unwrap();
    assert!(message.contains("unreachable"), "{message}");
    assert!(
        message.contains("test-trap panics on attempt 1"),
        "{message}"
    );
    let backtrace = attempt["backtrace"].as_str().unwrap();
    assert!(backtrace.contains("explode_on_purpose"), "{backtrace}");
    assert!(attempt["logTail"].as_str().unwrap().contains("panicked at"));
}

#[test]
fn params_rejected_by_validate_stop_the_plan_before_it_runs() {
    let s = Scratch::with_plugins(&["test-echo", "test-invalid-params"]);
    let plan = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-echo\"\n[[tasks]]\ntype = \"test-invalid-params\"\n",
    );
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains(
            "p.toml:4:8: task 1 (`test-invalid-params`): invalid params: missing key `required`"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("started"),
        "no task ran: {}",
        run.stderr
    );
}

#[test]
fn the_echo_plugin_output_and_logs_are_kept() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let plan = s.write("p.toml", "[[tasks]]\ntype = \"test-echo\"\n");
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tail = run.json()["tasks"][0]["attempts"][0]["logTail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(tail.contains("[info] echoing task"), "{tail}");
    assert!(
        tail.contains("stdout line from test-echo"),
        "guest stdout is captured: {tail}"
    );
    assert!(
        run.stderr.contains("echoing task"),
        "plugin log lines reach the host log: {}",
        run.stderr
    );
}

#[test]
fn params_breaking_the_plugins_schema_stop_the_plan_naming_task_path_and_rule() {
    let s = Scratch::with_plugins(&["test-echo", "test-flaky"]);
    let plan = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-echo\"\n[[tasks]]\ntype = \"test-flaky\"\n[tasks.params]\nfailures = \"two\"\n",
    );
    let run = s.planrt(&["run", plan.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("p.toml:4:8: task 1 (`test-flaky`): params do not match the plugin's schema: at `/failures`")
            && run.stderr.contains("(rule `type`)"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("started"),
        "nothing ran: {}",
        run.stderr
    );
    let missing = s.write("q.toml", "[[tasks]]\ntype = \"test-flaky\"\n");
    let run = s.planrt(&["plan", missing.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("at `/`") && run.stderr.contains("(rule `required`)"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_plugin_whose_schema_is_not_a_json_schema_is_a_load_warning_naming_the_file() {
    let s = Scratch::with_plugins(&["test-echo", "test-bad-schema"]);
    let run = s.planrt(&["plugins"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("test-bad-schema.wasm")
            && run
                .stderr
                .contains("params-schema is not a valid JSON Schema"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("test-echo") && !run.stdout.contains("test-bad-schema"));
}
