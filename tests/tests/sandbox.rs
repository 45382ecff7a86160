//! The sandbox: HTTP allowlist, timeouts (CPU and network) and memory limits (DESIGN §6).

use std::time::Duration;

use jiff::Timestamp;
use planrt_e2e::{HttpFixture, Scratch};
use serde_json::Value;

fn attempt_duration(attempt: &Value) -> Duration {
    let started: Timestamp = attempt["startedAt"].as_str().unwrap().parse().unwrap();
    let ended: Timestamp = attempt["endedAt"].as_str().unwrap().parse().unwrap();
    Duration::try_from(ended.duration_since(started)).unwrap()
}

fn run_json(s: &Scratch, plan: &str, expected_code: i32) -> Value {
    let path = s.write("p.toml", plan);
    let run = s.planrt(&["run", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, expected_code, "{}", run.stderr);
    run.json()
}

#[test]
fn a_cpu_loop_ends_at_its_timeout_and_is_retried_per_policy() {
    let s = Scratch::with_plugins(&["test-spin", "test-echo"]);
    let doc = run_json(
        &s,
        "[[tasks]]\ntype = \"test-spin\"\ntimeout = \"300ms\"\nmaxRetries = 1\nbackoff = { initial = \"10ms\" }\n[[tasks]]\ntype = \"test-echo\"\n",
        1,
    );
    let task = &doc["tasks"][0];
    let attempts = task["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "timeout is retried");
    for attempt in attempts {
        assert_eq!(attempt["errorKind"], "timeout");
        assert!(
            attempt["message"].as_str().unwrap().contains("300ms"),
            "{attempt}"
        );
        let took = attempt_duration(attempt);
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1300),
            "{took:?}"
        );
    }
    assert_eq!(task["retryCount"], 1);
    assert_eq!(doc["failedTaskDetail"]["maxRetries"], 1);
}

#[test]
fn a_guest_waiting_on_a_silent_server_ends_at_its_timeout() {
    let silent = HttpFixture::silent();
    let s = Scratch::with_plugins(&["test-fetch"]);
    let doc = run_json(
        &s,
        &format!(
            "[grants]\nhttp = [\"{addr}\"]\n[[tasks]]\ntype = \"test-fetch\"\ntimeout = \"400ms\"\nparams = {{ urls = [\"http://{addr}/\"] }}\n",
            addr = silent.addr
        ),
        1,
    );
    let attempt = &doc["tasks"][0]["attempts"][0];
    assert_eq!(attempt["errorKind"], "timeout", "{attempt}");
    let took = attempt_duration(attempt);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1400),
        "{took:?}"
    );
}

#[test]
fn a_memory_bomb_ends_at_its_limit_and_the_host_carries_on() {
    let s = Scratch::with_plugins(&["test-hog", "test-echo"]);
    let doc = run_json(
        &s,
        "[defaults]\nmemoryLimit = \"32MiB\"\nmaxRetries = 3\n[[tasks]]\ntype = \"test-hog\"\n[[tasks]]\ntype = \"test-echo\"\n",
        1,
    );
    let attempts = doc["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "memory-limit is not retried");
    assert_eq!(attempts[0]["errorKind"], "memory-limit");
    assert!(
        attempts[0]["message"].as_str().unwrap().contains("32MiB"),
        "{}",
        attempts[0]
    );
    assert_eq!(doc["phase"], "Failed");
}

#[test]
fn allowed_hosts_are_reached_and_others_denied_by_name() {
    let server = HttpFixture::serving("hello from the fixture");
    let s = Scratch::with_plugins(&["test-fetch"]);
    let ok = run_json(
        &s,
        &format!(
            "[grants]\nhttp = [\"{addr}\"]\n[[tasks]]\ntype = \"test-fetch\"\nparams = {{ urls = [\"http://{addr}/a\"] }}\n",
            addr = server.addr
        ),
        0,
    );
    let response = &ok["tasks"][0]["output"]["responses"][0];
    assert_eq!(
        (response["status"].as_u64(), response["body"].as_str()),
        (Some(200), Some("hello from the fixture"))
    );

    // Same server by another name, and another port of an allowed host: both denied.
    let port = server.addr.port();
    for url in [
        format!("http://localhost:{port}/"),
        format!("http://127.0.0.1:{}/", port + 1),
    ] {
        let doc = run_json(
            &s,
            &format!(
                "[grants]\nhttp = [\"127.0.0.1:{port}\"]\n[[tasks]]\ntype = \"test-fetch\"\nmaxRetries = 2\nparams = {{ urls = [\"{url}\"] }}\n"
            ),
            1,
        );
        let attempts = doc["tasks"][0]["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "http-denied is not retried");
        assert_eq!(attempts[0]["errorKind"], "http-denied");
        let host = url.trim_start_matches("http://").trim_end_matches('/');
        assert!(
            attempts[0]["message"].as_str().unwrap().contains(host),
            "{}",
            attempts[0]
        );
    }
}

#[test]
fn a_network_plugin_without_an_http_grant_stops_before_running() {
    let s = Scratch::with_plugins(&["test-fetch"]);
    let path = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-fetch\"\nparams = { urls = [\"http://127.0.0.1:9/\"] }\n",
    );
    for command in ["plan", "run"] {
        let run = s.planrt(&[command, path.to_str().unwrap(), "--output", "json"]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert_eq!(run.stdout, "");
        for needle in ["task 0", "test-fetch", "test-fetch.wasm", "network"] {
            assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
        }
    }
}

#[test]
fn progress_is_plain_lines_on_stderr_when_not_a_terminal_and_never_on_stdout() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let path = s.write("p.toml", "[[tasks]]\ntype = \"test-echo\"\n");
    let run = s.planrt(&["run", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("task 0 (test-echo): 1/1 echoed"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stdout.contains("echoed"),
        "stdout holds only the document"
    );
    run.json();
}

#[test]
fn progress_is_a_bar_on_a_terminal() {
    let s = Scratch::with_plugins(&["test-append"]);
    std::fs::create_dir(s.path().join("work")).unwrap();
    let path = s.write(
        "p.toml",
        "[grants]\ndirs = [{ host = \"work\", guest = \"/work\", mode = \"rw\" }]\n[[tasks]]\ntype = \"test-append\"\nparams = { sleepMs = 400 }\n",
    );
    // `script` gives planrt a pseudo-terminal and records what it drew.
    let command = format!(
        "{} run {} --plugins {} --state {}",
        planrt_e2e::planrt_bin().display(),
        path.display(),
        s.plugins().display(),
        s.path().join("state").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("task 0 (test-append) ="),
        "no bar drawn: {screen}"
    );
    assert!(screen.contains("/10 sleeping"), "{screen}");
}

#[test]
fn guest_stderr_reaches_the_host_log_and_the_log_tail() {
    let s = Scratch::with_plugins(&["test-flaky"]);
    let path = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-flaky\"\nparams = { failures = 1 }\n",
    );
    let run = s.planrt(&["run", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("attempt 1 of 1 planned failures"),
        "{}",
        run.stderr
    );
    let tail = run.json()["tasks"][0]["attempts"][0]["logTail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(tail.contains("attempt 1 of 1 planned failures"), "{tail}");
}
