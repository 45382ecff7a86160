//! The sandbox: HTTP allowlist, timeouts (CPU and network) and memory limits (docs/DESIGN.md §6).

use std::time::Duration;

use jiff::Timestamp;
use planrt_e2e::fixtures::Reply;
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
        // Never before its time; how long after is the machine's business (benchmarks).
        assert!(attempt_duration(attempt) >= Duration::from_millis(300));
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
    assert!(attempt_duration(attempt) >= Duration::from_millis(400));
    assert!(
        attempt["message"].as_str().unwrap().contains("400ms"),
        "{attempt}"
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
    let server = HttpFixture::start(std::sync::Arc::new(|path: &str| {
        Some(match path {
            "/a" => Reply::ok("hello from the fixture"),
            _ => Reply::not_found(),
        })
    }));
    let s = Scratch::with_plugins(&["test-fetch"]);
    let ok = run_json(
        &s,
        &format!(
            "[grants]\nhttp = [\"{addr}\"]\n[[tasks]]\ntype = \"test-fetch\"\nparams = {{ urls = [\"http://{addr}/a\", \"http://{addr}/b\"] }}\n",
            addr = server.addr
        ),
        0,
    );
    // What the server answered reaches the plugin, status included.
    let responses = &ok["tasks"][0]["output"]["responses"];
    let got: Vec<_> = (0..2)
        .map(|i| {
            (
                responses[i]["status"].as_u64(),
                responses[i]["body"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some(200), Some("hello from the fixture")),
            (Some(404), Some("not found"))
        ]
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
        run.stderr.contains("task 0 (test-echo): 1/1 100% echoed"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stdout.contains("100%"),
        "stdout holds only the document"
    );
    // Where the note does appear on stdout: in the attempt's record of its last report.
    assert_eq!(
        run.json()["tasks"][0]["attempts"][0]["progress"]["note"],
        "echoed"
    );
}

#[test]
fn an_attempt_dropped_at_a_stop_keeps_the_progress_it_reported() {
    // Ten sleeps of 2 s, a progress report after each. SIGTERM during the second sleep:
    // the plugin never asks `cancelled()`, so it has no grace, and it sits in a host call
    // the epoch cannot interrupt: planrt drops it and records it `interrupted`, with the
    // report it made before.
    let s = Scratch::with_plugins(&["test-append"]);
    std::fs::create_dir(s.path().join("work")).unwrap();
    let (saved, doc) = s.save_plan(
        "[grants]\ndirs = [{ host = \"work\", guest = \"/work\", mode = \"rw\" }]\n\
         [[tasks]]\ntype = \"test-append\"\nparams = { sleepMs = 20000 }\n",
    );
    let plan_id = doc["id"].as_str().unwrap().to_owned();
    let child = s.spawn(&["run", saved.to_str().unwrap()]);
    s.wait_until("the first progress report", || {
        s.spawned_stderr().contains("1/10 10% sleeping")
    });
    assert_eq!(planrt_e2e::signalled(child, "TERM").code, 130);
    let doc = s.planrt(&["status", &plan_id, "--output", "json"]).json();
    let attempt = &doc["tasks"][0]["attempts"][0];
    assert_eq!(attempt["errorKind"], "interrupted", "{attempt}");
    assert_eq!(
        attempt["progress"],
        serde_json::json!({"done": 1, "total": 10, "unit": "items", "note": "sleeping"}),
        "{attempt}"
    );
}

#[test]
fn progress_is_a_bar_on_a_terminal() {
    let s = Scratch::with_plugins(&["test-append"]);
    std::fs::create_dir(s.path().join("work")).unwrap();
    let path = s.write(
        "p.toml",
        "[grants]\ndirs = [{ host = \"work\", guest = \"/work\", mode = \"rw\" }]\n[[tasks]]\ntype = \"test-append\"\nparams = { sleepMs = 1500 }\n",
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
    assert!(screen.contains("/10 "), "{screen}");
    assert!(screen.contains("sleeping"), "{screen}");
    // Ten steps of 150 ms: the bar shows a rate and the time left once 250 ms have
    // passed, and is drawn many times after that even on a loaded machine.
    assert!(screen.contains("/s ETA "), "no rate or ETA: {screen}");
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

#[test]
fn a_stderr_flood_is_rate_capped_in_the_host_log_saying_how_much_was_dropped() {
    let s = Scratch::with_plugins(&["test-chatty"]);
    let path = s.write(
        "flood.toml",
        "[[tasks]]\ntype = \"test-chatty\"\nparams = { say = \"flood\", stderrLines = 20000, logLines = 0 }\n",
    );
    let run = s.planrt(&["run", path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", &run.stderr[..run.stderr.len().min(2000)]);
    // When each line that reached the host log was written.
    let echoed: Vec<Timestamp> = run
        .stderr
        .lines()
        .filter(|l| l.contains(": stderr ") && l.ends_with(": flood"))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    let dropped = planrt_e2e::dropped_from_host_log(&run.stderr);
    assert!(
        echoed.len() >= 100,
        "the first lines reach the log: {}",
        echoed.len()
    );
    assert!(dropped > 0, "a flood is cut");
    assert_eq!(
        echoed.len() + dropped,
        20000,
        "every line is logged or counted"
    );
    // At most 100 lines per one-second window: any 201 lines in a row span three windows,
    // so more than a second, however fast or slow the machine.
    for (first, last) in echoed.iter().zip(echoed.iter().skip(200)) {
        assert!(
            last.duration_since(*first) >= jiff::SignedDuration::from_secs(1),
            "201 lines within {first}..{last}"
        );
    }
}

#[test]
fn an_output_over_max_output_fails_permanent_naming_the_limit() {
    let s = Scratch::with_plugins(&["test-chatty"]);
    let big =
        "[[tasks]]\ntype = \"test-chatty\"\nmaxRetries = 2\nparams = { outputBytes = 2000000 }\n";
    let doc = run_json(&s, big, 1);
    let attempts = doc["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "permanent: not retried");
    assert_eq!(attempts[0]["errorKind"], "permanent");
    let message = attempts[0]["message"].as_str().unwrap();
    assert!(message.contains("maxOutput limit of 1MiB"), "{message}");
    assert!(doc["tasks"][0].get("output").is_none());
    // Nothing of it was stored.
    let db = rusqlite::Connection::open(s.state().join("planrt.db")).unwrap();
    let stored: i64 = db
        .query_row(
            "SELECT coalesce(sum(length(coalesce(output, ''))), 0) FROM tasks",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0);

    // A plan that expects big outputs raises the limit.
    let raised = format!("[defaults]\nmaxOutput = \"4MiB\"\n{big}");
    let doc = run_json(&s, &raised, 0);
    assert_eq!(
        doc["tasks"][0]["output"]["padding"].as_str().unwrap().len(),
        2_000_000
    );
}

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let s = Scratch::with_plugins(&["test-chatty"]);
    let path = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-chatty\"\nparams = { say = \"hi\" }\n",
    );
    let run = s.planrt(&["run", path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("INFO"), "{}", run.stderr);
    assert!(!run.stderr.contains('\x1b'), "{:?}", run.stderr);
}

/// `planrt ARGS` on a pseudo-terminal (`script`) `cols` wide, with `env`; what it drew.
fn on_a_terminal(s: &Scratch, args: &str, env: &[(&str, &str)], cols: u16) -> String {
    let command = format!(
        "stty cols {cols} rows 50; {} {args} --plugins {} --state {}",
        planrt_e2e::planrt_bin().display(),
        s.plugins().display(),
        s.state().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{screen}");
    screen
}

/// Whether `text` holds an ANSI colour (SGR) sequence: ESC [ digits/semicolons m.
fn has_colour(text: &str) -> bool {
    text.split("\x1b[").skip(1).any(|rest| {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(rest.len());
        rest[end..].starts_with('m') && end > 0
    })
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let s = Scratch::with_plugins(&["test-chatty"]);
    let path = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-chatty\"\nparams = { say = \"hi\" }\n",
    );
    let args = format!("run {}", path.display());
    assert!(
        has_colour(&on_a_terminal(&s, &args, &[], 200)),
        "a terminal gets colour"
    );
    let plain = on_a_terminal(&s, &args, &[("NO_COLOR", "1")], 200);
    assert!(plain.contains("INFO"), "{plain}");
    assert!(!has_colour(&plain), "NO_COLOR: {plain:?}");
}

#[test]
fn log_lines_and_progress_bars_share_a_terminal_without_tearing() {
    let s = Scratch::with_plugins(&["test-chatty"]);
    let path = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-chatty\"\nparams = { say = \"steady line\", logLines = 40, stderrLines = 0, sleepMs = 300 }\n",
    );
    let (rows, cols) = (1000, 250);
    let raw = on_a_terminal(
        &s,
        &format!("run {}", path.display()),
        &[("NO_COLOR", "1")],
        cols,
    );
    assert!(
        raw.contains("0/2 0% progress: steady line"),
        "no bar drawn: {raw}"
    );
    // Replay what planrt drew on a terminal emulator and read the screen it left: each
    // log line must sit alone on its row, from its timestamp to its end.
    let mut terminal = vt100::Parser::new(
        std::num::NonZeroU16::new(rows).unwrap(),
        std::num::NonZeroU16::new(cols).unwrap(),
        0,
    );
    terminal.process(raw.as_bytes());
    let screen: Vec<String> = terminal.screen().rows(0, cols).collect();
    for i in 0..40 {
        let suffix = format!("log {i}: steady line");
        let row = screen
            .iter()
            .find(|row| row.trim_end().ends_with(&suffix))
            .unwrap_or_else(|| panic!("`{suffix}` is not on the screen:\n{}", screen.join("\n")));
        assert!(
            row.starts_with("20") && row.contains("INFO"),
            "a torn row: {row:?}"
        );
    }
}
