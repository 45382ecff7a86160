//! Hostile plugins (issue 11, first cases): probes of the sandbox's walls come back
//! empty-handed and the plan goes on (files, environment, sockets); a stack overflow is a
//! trap and the host stays up.

use planrt_e2e::Scratch;

fn scratch() -> Scratch {
    let s = Scratch::with_plugins(&["test-hostile", "test-echo"]);
    std::fs::create_dir(s.path().join("work")).unwrap();
    std::fs::write(s.path().join("work/mine.txt"), "granted").unwrap();
    // Planted by "a previous task": a link out of the grant, which the host must not follow.
    std::os::unix::fs::symlink("/etc", s.path().join("work/link")).unwrap();
    s
}

const GRANT: &str = "[grants]\ndirs = [{ host = \"work\", guest = \"/work\", mode = \"ro\" }]\n";

#[test]
fn probes_of_the_sandbox_come_back_empty_handed_and_the_next_task_runs() {
    let s = scratch();
    let plan = s.write(
        "p.toml",
        &format!(
            "{GRANT}\
             [[tasks]]\ntype = \"test-hostile\"\nparams = {{ attack = \"read-outside\" }}\n\
             [[tasks]]\ntype = \"test-hostile\"\nparams = {{ attack = \"symlink\" }}\n\
             [[tasks]]\ntype = \"test-hostile\"\nparams = {{ attack = \"dotdot\" }}\n\
             [[tasks]]\ntype = \"test-hostile\"\nparams = {{ attack = \"env\" }}\n\
             [[tasks]]\ntype = \"test-echo\"\n"
        ),
    );
    // The host's own environment has something a plugin must not see.
    let run = s
        .command(&["run", plan.to_str().unwrap(), "--output", "json"])
        .env("PLANRT_TEST_HOST_SECRET", "s3cr3t")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(doc["phase"], "Complete");
    for index in [0, 1, 2] {
        let output = &doc["tasks"][index]["output"];
        assert!(
            output.get("read").is_none(),
            "task {index} read it: {output}"
        );
        assert!(output["error"].is_string(), "task {index}: {output}");
    }
    assert_eq!(doc["tasks"][3]["output"]["vars"], serde_json::json!([]));
    assert_eq!(doc["tasks"][4]["status"], "Complete");
}

#[test]
fn sockets_are_refused_to_a_plugin_and_nothing_reaches_the_listener() {
    let s = scratch();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let plan = s.write(
        "p.toml",
        &format!(
            "{GRANT}\
             [[tasks]]\ntype = \"test-hostile\"\nparams = {{ attack = \"sockets\", port = {port} }}\n\
             [[tasks]]\ntype = \"test-echo\"\n"
        ),
    );
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    let output = &doc["tasks"][0]["output"];
    // wasmtime-wasi's default address check refuses every address; planrt never widens it.
    assert_eq!(output["tcp"]["error"], "access-denied", "{output}");
    assert_eq!(output["udp"]["error"], "access-denied", "{output}");
    // Name lookup is off (wasmtime-wasi's default): the resolver fails for good.
    assert_eq!(
        output["lookup"]["error"], "permanent-resolver-failure",
        "{output}"
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the listener was reached: {other:?}"),
    }
    assert_eq!(doc["tasks"][1]["status"], "Complete");
}

/// Runs `plan`, whose first task must end its only attempt as a `memory-limit` saying
/// `message` (a limit is not retried) and fail the plan; then the host, unharmed, runs a
/// next plan of `test-echo`.
fn ends_as_a_memory_limit(s: &Scratch, plan: &std::path::Path, message: &str) {
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let attempts = run.json()["tasks"][0]["attempts"].clone();
    let attempts = attempts.as_array().unwrap();
    assert_eq!(attempts.len(), 1, "a limit is not retried: {attempts:?}");
    assert_eq!(attempts[0]["errorKind"], "memory-limit", "{attempts:?}");
    assert_eq!(attempts[0]["message"], message, "{attempts:?}");
    let next = s.write("next.toml", "[[tasks]]\ntype = \"test-echo\"\n");
    assert_eq!(s.planrt(&["run", next.to_str().unwrap()]).code, 0);
}

#[test]
fn a_table_growth_bomb_ends_its_attempt_at_the_cap_and_the_next_task_runs() {
    let s = Scratch::with_plugins(&["test-table-bomb", "test-echo"]);
    let plan = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-table-bomb\"\n[[tasks]]\ntype = \"test-echo\"\n",
    );
    ends_as_a_memory_limit(&s, &plan, "exceeded the table limit of 1000000 elements");
}

#[test]
fn host_side_decoders_past_the_cap_end_the_attempt_as_a_memory_limit() {
    // Each decoder holds host memory outside the guest's limit: the ninth open at once
    // ends the call, typed, and the host runs the next task.
    let s = scratch();
    let plan = s.write(
        "p.toml",
        &format!(
            "{GRANT}[[tasks]]\ntype = \"test-hostile\"\nparams = {{ attack = \"codec-flood\" }}\n"
        ),
    );
    ends_as_a_memory_limit(&s, &plan, "exceeded the limit of 8 decoders open at once");
}

#[test]
fn validate_reuses_one_instance_and_a_failure_left_by_earlier_calls_is_not_the_tasks() {
    // Each validate call keeps 96 MiB: one instance serves the first five (480 MiB); the
    // sixth passes validate's 512 MiB limit there, so it is made again on a fresh
    // instance, where it succeeds, and that instance serves the rest.
    let s = scratch();
    let mut plan = GRANT.to_owned();
    for _ in 0..8 {
        plan.push_str(
            "[[tasks]]\ntype = \"test-hostile\"\nparams = { attack = \"leak-in-validate\" }\n",
        );
    }
    let plan = s.write("p.toml", &plan);
    let run = s.planrt(&["plan", plan.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let calls: Vec<u32> = run
        .stderr
        .lines()
        .filter_map(|line| line.split("validate call ").nth(1))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(calls, [1, 2, 3, 4, 5, 1, 2, 3], "{}", run.stderr);
}

#[test]
fn an_answer_from_a_kept_validate_instance_is_checked_on_a_fresh_one() {
    let s = scratch();
    // Refused on every instance that validated before, accepted on a fresh one: each
    // refusal is asked again of a fresh instance, and the plan is accepted.
    let mut plan = GRANT.to_owned();
    for _ in 0..3 {
        plan.push_str(
            "[[tasks]]\ntype = \"test-hostile\"\nparams = { attack = \"refuse-when-reused\" }\n",
        );
    }
    let accepted = s.write("accepted.toml", &plan);
    let run = s.planrt(&["plan", accepted.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // A trap on the kept instance is asked again of a fresh one, traps there too, and is
    // reported for the task that trapped: task 1, not task 0.
    let trap = s.write(
        "trap.toml",
        &format!(
            "{GRANT}[[tasks]]\ntype = \"test-hostile\"\nparams = {{ attack = \"env\" }}\n\
             [[tasks]]\ntype = \"test-hostile\"\nparams = {{ attack = \"trap-in-validate\" }}\n"
        ),
    );
    let run = s.planrt(&["plan", trap.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("task 1 (`test-hostile`): the plugin's validate() failed"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_stack_overflow_traps_the_attempt_and_the_host_runs_the_next_plan() {
    let s = scratch();
    let plan = s.write(
        "p.toml",
        &format!(
            "{GRANT}[defaults]\nmaxRetries = 2\n\
             [[tasks]]\ntype = \"test-hostile\"\nparams = {{ attack = \"recursion\" }}\n"
        ),
    );
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let attempts = run.json()["tasks"][0]["attempts"].clone();
    assert_eq!(
        attempts.as_array().unwrap().len(),
        1,
        "a trap is not retried"
    );
    assert_eq!(attempts[0]["errorKind"], "trap");
    // Rust's wasm32 stack is a shadow stack in linear memory: overflowing it runs below
    // address 0 (out of bounds) before wasm's own call stack is exhausted.
    let message = attempts[0]["message"].as_str().unwrap();
    assert!(
        message.contains("out of bounds memory access") || message.contains("call stack exhausted"),
        "{message}"
    );

    let next = s.write("next.toml", "[[tasks]]\ntype = \"test-echo\"\n");
    assert_eq!(s.planrt(&["run", next.to_str().unwrap()]).code, 0);
}

#[test]
fn a_trap_in_validate_refuses_the_plan_and_the_server_answers_the_next_request() {
    let s = scratch();
    let trap = format!(
        "{GRANT}[[tasks]]\ntype = \"test-hostile\"\nparams = {{ attack = \"trap-in-validate\" }}\n"
    );
    let plan = s.write("p.toml", &trap);
    for command in ["plan", "run"] {
        let run = s.planrt(&[command, plan.to_str().unwrap(), "--output", "json"]);
        assert_eq!(run.code, 2, "{command}: {}", run.stderr);
        assert!(run.stdout.is_empty());
        assert!(
            run.stderr
                .contains("task 0 (`test-hostile`): the plugin's validate() failed")
                && run.stderr.contains("trapped"),
            "{command}: {}",
            run.stderr
        );
    }

    // Over HTTP: the plan is a 400, nothing is stored, and the next request is served.
    let grants = s.write(
        "grants.toml",
        &format!(
            "[grants]\ndirs = [{{ host = \"{}\", guest = \"/work\", mode = \"ro\" }}]\n",
            s.path().join("work").display()
        ),
    );
    let server = s.serve(&["--grants", grants.to_str().unwrap()]);
    let document = serde_json::json!({
        "grants": {"dirs": [{"host": s.path().join("work"), "guest": "/work", "mode": "ro"}]},
        "tasks": [{"type": "test-hostile", "params": {"attack": "trap-in-validate"}}],
    });
    let refused = server.post("/v0/plans", &document);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("validate() failed"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("test-hostile"),
        "names the task: {}",
        refused.body
    );
    assert_eq!(
        server.get("/v0/plans").json(),
        serde_json::json!([]),
        "nothing stored"
    );
    // The same plugin, asked something harmless, is served.
    let harmless = serde_json::json!({
        "grants": {"dirs": [{"host": s.path().join("work"), "guest": "/work", "mode": "ro"}]},
        "tasks": [{"type": "test-hostile", "params": {"attack": "env"}}],
    });
    let created = server.post("/v0/plans", &harmless);
    assert_eq!(created.status, 201, "{}", created.body);
}

#[test]
fn a_trap_in_describe_is_a_load_warning_naming_the_file_and_the_rest_loads() {
    let s = Scratch::with_plugins(&["test-describe-trap", "test-echo"]);
    let listed = s.planrt(&["plugins"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stderr.contains("test-describe-trap.wasm")
            && listed.stderr.contains("describe() failed"),
        "{}",
        listed.stderr
    );
    assert!(listed.stdout.contains("test-echo"), "{}", listed.stdout);
    let plan = s.write("p.toml", "[[tasks]]\ntype = \"test-echo\"\n");
    let run = s.planrt(&["run", plan.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_file_that_now_describes_another_task_type_stops_resume_naming_the_type() {
    let s = Scratch::with_plugins(&["test-permanent", "test-echo"]);
    let plan = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-echo\"\n[[tasks]]\ntype = \"test-permanent\"\n",
    );
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let id = run.json()["id"].as_str().unwrap().to_owned();
    // The same file name now holds a plugin of another task type.
    std::fs::copy(
        planrt_e2e::plugin_file("test-noop"),
        s.plugins().join("test-permanent.wasm"),
    )
    .unwrap();
    let resumed = s.planrt(&["resume", &id]);
    assert_eq!(resumed.code, 2, "{}", resumed.stderr);
    assert!(
        resumed
            .stderr
            .contains("unknown task type `test-permanent`"),
        "names the type that has no plugin now: {}",
        resumed.stderr
    );
    let after = s.planrt(&["status", &id, "--output", "json"]).json();
    assert_eq!(
        after["tasks"][1]["attempts"].as_array().unwrap().len(),
        1,
        "nothing ran"
    );
}

#[test]
fn floods_of_log_and_progress_calls_are_capped_and_the_attempt_completes() {
    let s = Scratch::with_plugins(&["test-chatty"]);
    let plan = s.write(
        "flood.toml",
        "[[tasks]]\ntype = \"test-chatty\"\n\
         params = { say = \"flood\", stderrLines = 0, logLines = 20000, progressReports = 100000 }\n",
    );
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    let last_lines: Vec<&str> = run.stderr.lines().rev().take(20).collect();
    assert_eq!(run.code, 0, "{last_lines:?}");
    let doc = run.json();
    assert_eq!(doc["phase"], "Complete");

    // `log`: every line reaches the host log or is counted as dropped.
    let logged = run
        .stderr
        .lines()
        .filter(|l| l.contains("log ") && l.ends_with(": flood"))
        .count();
    let dropped = planrt_e2e::dropped_from_host_log(&run.stderr);
    assert!(
        logged >= 100 && dropped > 0,
        "logged {logged}, dropped {dropped}"
    );
    assert_eq!(logged + dropped, 20000, "every line is logged or counted");

    // `progress`: 100 000 reports become a few throttled lines, never a flood.
    let reports = run
        .stderr
        .lines()
        .filter(|l| l.contains(": flood") && l.contains("report "))
        .count();
    assert!(
        reports <= 50,
        "{reports} progress lines for 100 000 reports"
    );
    // The attempt's log tail stays bounded.
    let tail = doc["tasks"][0]["attempts"][0]["logTail"]
        .as_str()
        .unwrap_or_default();
    assert!(tail.len() <= 64 * 1024, "log tail of {} bytes", tail.len());
}

#[test]
fn each_attempt_starts_from_the_components_own_memory_whatever_the_one_before_wrote() {
    // Consecutive attempts of one plugin reuse the same pool slot, and the pages an
    // attempt wrote stay mapped in it (reset in place, not unmapped): each must still find
    // the memory as the component's image has it.
    let s = scratch();
    let task = "[[tasks]]\ntype = \"test-hostile\"\nparams = { attack = \"leftovers\" }\n";
    let plan = s.write("p.toml", &format!("{GRANT}{}", task.repeat(3)));
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    for index in 0..3 {
        assert_eq!(
            doc["tasks"][index]["output"],
            serde_json::json!({ "left": 0 }),
            "task {index} found what an earlier attempt wrote"
        );
    }
}
