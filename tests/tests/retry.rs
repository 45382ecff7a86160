//! Retry with the same task ID, backoff, and the failure fields (docs/DESIGN.md §2–§4).

use jiff::Timestamp;
use planrt_e2e::Scratch;

fn flaky_plan(max_retries: u32) -> String {
    format!(
        r#"
[defaults]
backoff = {{ initial = "200ms", factor = 2, max = "5s", jitter = true }}
[[tasks]]
type = "test-flaky"
maxRetries = {max_retries}
params = {{ failures = 2 }}
[[tasks]]
type = "test-echo"
"#
    )
}

fn time(value: &serde_json::Value) -> Timestamp {
    value.as_str().unwrap().parse().unwrap()
}

#[test]
fn two_transient_failures_within_budget_complete_with_backoff_between_attempts() {
    let s = Scratch::with_plugins(&["test-flaky", "test-echo"]);
    let plan = s.write("p.toml", &flaky_plan(2));
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["phase"], "Complete");
    assert!(doc.get("failedTaskIndex").is_none());
    let task = &doc["tasks"][0];
    assert_eq!(task["status"], "Complete");
    assert_eq!(task["retryCount"], 2);
    assert_eq!(task["maxRetries"], 2);
    let attempts = task["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    for (i, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["attempt"], i + 1);
    }
    assert_eq!(attempts[0]["outcome"], "failed");
    assert_eq!(attempts[0]["errorKind"], "transient");
    assert!(
        attempts[0]["logTail"]
            .as_str()
            .unwrap()
            .contains("attempt 1 of 2 planned failures")
    );
    assert_eq!(attempts[2]["outcome"], "complete");
    // The third attempt saw the same task ID.
    assert_eq!(task["output"]["taskId"], task["id"]);
    assert_eq!(task["output"]["attempt"], 3);

    // Backoff: 200ms before retry 1, 400ms before retry 2 (jitter only adds).
    for (gap, min_ms) in [(0, 200), (1, 400)] {
        let ended = time(&attempts[gap]["endedAt"]);
        let next = time(&attempts[gap + 1]["startedAt"]);
        let waited = next.duration_since(ended).as_millis();
        assert!(
            waited >= min_ms,
            "attempt {} started {waited} ms after the previous one ended",
            gap + 2
        );
    }
    assert_eq!(doc["tasks"][1]["status"], "Complete");
}

#[test]
fn transient_failures_past_the_budget_fail_the_plan_with_its_detail() {
    let s = Scratch::with_plugins(&["test-flaky", "test-echo"]);
    let plan = s.write("p.toml", &flaky_plan(1));
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["phase"], "Failed");
    assert_eq!(doc["failedTaskIndex"], 0);
    let task = &doc["tasks"][0];
    assert_eq!(task["status"], "Failed");
    assert_eq!(task["attempts"].as_array().unwrap().len(), 2);
    let detail = &doc["failedTaskDetail"];
    assert_eq!(detail["type"], "test-flaky");
    assert_eq!(detail["id"], task["id"]);
    assert_eq!(detail["retryCount"], 1);
    assert_eq!(detail["maxRetries"], 1);
    let error = detail["error"].as_str().unwrap();
    assert!(error.contains("planned failure on attempt 2"), "{error}");
    assert_eq!(detail.as_object().unwrap().len(), 5, "{detail}");
    // The next task never ran.
    assert_eq!(doc["tasks"][1]["status"], "Pending");
    assert!(doc["tasks"][1]["attempts"].as_array().unwrap().is_empty());
}

#[test]
fn text_output_names_the_failed_task() {
    let s = Scratch::with_plugins(&["test-flaky", "test-echo"]);
    let plan = s.write("p.toml", &flaky_plan(0));
    let run = s.planrt(&["run", plan.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.contains("Failed"), "{}", run.stdout);
    assert!(
        run.stdout.contains("failed at task 0 (test-flaky"),
        "{}",
        run.stdout
    );
}
