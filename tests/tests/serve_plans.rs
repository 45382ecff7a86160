//! `planrt serve` beyond single tasks: plans over HTTP (create, read, resume, cancel),
//! metrics, and the plugin dir reloaded while serving.

use std::time::{Duration, Instant};

use planrt_e2e::server::Server;
use planrt_e2e::{Scratch, plugin_file, reference_task_id};
use serde_json::{Value, json};

fn scratch() -> Scratch {
    let s = Scratch::with_plugins(&["test-append", "test-echo", "test-spin"]);
    std::fs::create_dir(s.path().join("work")).unwrap();
    s
}

/// Serves with a `--grants` file granting the scratch dir's `work` (rw): the most a plan
/// sent over HTTP may grant.
fn serve(s: &Scratch) -> Server {
    let grants = s.write(
        "grants.toml",
        &format!(
            "[grants]\ndirs = [{{ host = \"{}\", guest = \"/work\", mode = \"rw\" }}]\n",
            s.path().join("work").display()
        ),
    );
    s.serve(&["--grants", grants.to_str().unwrap()])
}

fn effects(s: &Scratch) -> Vec<String> {
    std::fs::read_to_string(s.path().join("work/effects.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A plan document granting the scratch dir's `work` at `/work`.
fn plan(s: &Scratch, tasks: Value) -> Value {
    json!({
        "name": "over-http",
        "grants": {"dirs": [{"host": s.path().join("work"), "guest": "/work", "mode": "rw"}]},
        "tasks": tasks,
    })
}

fn wait_plan(server: &Server, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
    server.wait_for(&format!("/v0/plans/{id}"), ready)
}

fn phase_is(phase: &'static str) -> impl Fn(&Value) -> bool {
    move |plan| plan["phase"] == phase
}

#[test]
fn a_plan_sent_as_json_runs_with_reference_task_ids_and_resumes_after_a_failure() {
    let s = scratch();
    let server = serve(&s);
    let document = plan(
        &s,
        json!([
            {"type": "test-append", "params": {"failures": 1}},
            {"type": "test-echo", "params": {"n": 2}},
        ]),
    );
    let created = server.post("/v0/plans", &document);
    assert_eq!(created.status, 201, "{}", created.body);
    let created = created.json();
    let id = created["id"].as_str().unwrap().to_owned();
    let task_ids: Vec<&str> = created["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        task_ids,
        [
            reference_task_id(&id, "test-append", 0),
            reference_task_id(&id, "test-echo", 1)
        ]
    );

    let failed = wait_plan(&server, &id, phase_is("Failed"));
    assert_eq!(failed["failedTaskIndex"], 0);
    assert_eq!(failed["name"], "over-http");
    // A plan's task is also a task of the task API; it is cancelled through its plan.
    let task = server.get(&format!("/v0/tasks/{}", task_ids[1])).json();
    assert_eq!(task["status"], "failed", "it waits behind the failed task");
    assert_eq!(task["planId"], id.as_str());
    let part = server.delete(&format!("/v0/tasks/{}", task_ids[1]));
    assert_eq!(part.status, 409, "{}", part.body);
    assert!(
        part.body.contains(&format!("DELETE /v0/plans/{id}")),
        "{}",
        part.body
    );

    let resumed = server.post(&format!("/v0/plans/{id}/resume"), &json!({}));
    assert_eq!(resumed.status, 202, "{}", resumed.body);
    let done = wait_plan(&server, &id, phase_is("Complete"));
    assert_eq!(done["tasks"][0]["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(effects(&s), [format!("{} 2", task_ids[0])]);

    let listed = server.get("/v0/plans").json();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["phase"], "Complete");

    // --from past the end is bad input; an unknown plan is 404; nothing to cancel is 409.
    let past = server.post(&format!("/v0/plans/{id}/resume"), &json!({"from": 9}));
    assert_eq!(past.status, 400, "{}", past.body);
    assert!(past.json()["error"].as_str().unwrap().contains("no task 9"));
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(server.get(&format!("/v0/plans/{unknown}")).status, 404);
    assert_eq!(
        server
            .post(&format!("/v0/plans/{unknown}/resume"), &json!({}))
            .status,
        404
    );
    assert_eq!(server.delete(&format!("/v0/plans/{id}")).status, 409);
    let strict = server.post(&format!("/v0/plans/{id}/resume"), &json!({"bogus": 1}));
    assert_eq!(strict.status, 400, "{}", strict.body);
}

#[test]
fn a_bad_plan_is_refused_naming_the_key_and_nothing_is_stored() {
    let s = scratch();
    let server = serve(&s);
    let cases = [
        (
            json!({"tasks": [{"type": "test-echo", "bogus": 1}]}),
            "unknown field `bogus`",
        ),
        (
            json!({"tasks": [{"type": "no-such-type"}]}),
            "unknown task type `no-such-type`",
        ),
        (
            json!({"grants": {"dirs": [{"host": "work", "guest": "/work", "mode": "rw"}]},
                   "tasks": [{"type": "test-append"}]}),
            "`grants.dirs[0].host`",
        ),
        (json!({"tasks": [{"type": "test-append"}]}), "/work"),
        (
            json!({"tasks": [{"type": "test-echo", "params": {"x": null}}]}),
            "is null",
        ),
        (json!({"tasks": []}), "no [[tasks]]"),
    ];
    for (document, expected) in cases {
        let response = server.post("/v0/plans", &document);
        assert_eq!(response.status, 400, "{document}: {}", response.body);
        let error = response.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(expected), "{document}: {error}");
    }
    assert_eq!(server.get("/v0/plans").json(), json!([]));
}

#[test]
fn delete_cancels_a_running_plan_which_stays_resumable_and_metrics_count_it() {
    let s = scratch();
    let server = serve(&s);
    let document = plan(&s, json!([{"type": "test-spin"}, {"type": "test-echo"}]));
    let id = server.post("/v0/plans", &document).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_plan(&server, &id, |p| p["tasks"][0]["status"] == "Running");
    let resume_running = server.post(&format!("/v0/plans/{id}/resume"), &json!({}));
    assert_eq!(resume_running.status, 409, "{}", resume_running.body);

    let asked = Instant::now();
    assert_eq!(server.delete(&format!("/v0/plans/{id}")).status, 204);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    let cancelled = server.get(&format!("/v0/plans/{id}")).json();
    assert_eq!(cancelled["phase"], "Failed");
    assert_eq!(
        cancelled["tasks"][0]["attempts"][0]["errorKind"],
        "cancelled"
    );

    // Resumable: the spin runs again (attempt 2), and is cancelled again.
    assert_eq!(
        server
            .post(&format!("/v0/plans/{id}/resume"), &json!({}))
            .status,
        202
    );
    wait_plan(&server, &id, |p| {
        p["tasks"][0]["attempts"][1]["outcome"] == "running"
    });
    assert_eq!(server.delete(&format!("/v0/plans/{id}")).status, 204);

    let echo = uuid::Uuid::new_v4().to_string();
    server.post("/v0/tasks", &json!({"id": echo, "type": "test-echo"}));
    server.wait_task(&echo, |t| t["status"] == "completed");
    // The gauges drop once the last run's bookkeeping is done, just after its commit.
    wait_until("the gauges drop", &server, || {
        server
            .get("/v0/metrics")
            .body
            .contains("planrt_plans_running 0")
    });
    let metrics = server.get("/v0/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .contains("openmetrics"),
        "{:?}",
        metrics.headers
    );
    for expected in [
        r#"planrt_attempts_total{task_type="test-spin",outcome="cancelled"} 2"#,
        r#"planrt_attempts_total{task_type="test-echo",outcome="complete"} 1"#,
        r#"planrt_attempt_duration_seconds_count{task_type="test-echo"} 1"#,
        "planrt_attempts_running 0",
        "planrt_attempts_waiting 0",
        "planrt_plans_running 0",
        "planrt_plugins_loaded 3",
    ] {
        assert!(
            metrics.body.contains(expected),
            "{expected}:\n{}",
            metrics.body
        );
    }
}

#[test]
fn an_unfinished_plan_over_http_runs_again_after_kill_9() {
    let s = scratch();
    let server = serve(&s);
    let document = plan(
        &s,
        json!([{"type": "test-append", "params": {"sleepMs": 3000}}]),
    );
    let id = server.post("/v0/plans", &document).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_plan(&server, &id, |p| p["tasks"][0]["status"] == "Running");
    server.kill_9();
    let server = serve(&s);
    let done = wait_plan(&server, &id, phase_is("Complete"));
    assert_eq!(
        done["tasks"][0]["attempts"][0]["errorKind"], "interrupted",
        "{done}"
    );
    assert_eq!(effects(&s).len(), 1);
}

/// Replaces a plugin file the way an installer should: write beside it, then rename.
fn install(s: &Scratch, name: &str, bytes: &[u8]) {
    let staged = s.plugins().join(format!(".{name}.partial"));
    std::fs::write(&staged, bytes).unwrap();
    std::fs::rename(&staged, s.plugins().join(name)).unwrap();
}

fn wait_until(what: &str, server: &Server, ready: impl Fn() -> bool) {
    let said = || format!("server log:\n{}", server.log());
    planrt_e2e::wait_until(what, Duration::from_secs(30), ready, said);
}

#[test]
fn plugins_added_replaced_and_removed_while_serving_are_picked_up_and_running_attempts_keep_theirs()
{
    let s = scratch();
    std::fs::write(
        s.path().join("grants.toml"),
        format!(
            "[grants]\ndirs = [{{ host = \"{}\", guest = \"/work\", mode = \"rw\" }}]\n",
            s.path().join("work").display()
        ),
    )
    .unwrap();
    let grants = s.path().join("grants.toml");
    let server = s.serve(&["--grants", grants.to_str().unwrap()]);

    // A running test-append attempt; meanwhile its file becomes another plugin.
    let running = uuid::Uuid::new_v4().to_string();
    let body = json!({"id": running, "type": "test-append", "params": {"sleepMs": 2500}});
    assert_eq!(server.post("/v0/tasks", &body).status, 201);
    server.wait_task(&running, |t| t["attempts"][0]["outcome"] == "running");
    install(
        &s,
        "test-append.wasm",
        &std::fs::read(plugin_file("test-permanent")).unwrap(),
    );
    wait_until("test-permanent is served", &server, || {
        server
            .post("/v0/tasks", &json!({"type": "test-permanent"}))
            .status
            == 201
    });
    let gone = server.post("/v0/tasks", &json!({"type": "test-append"}));
    assert_eq!(gone.status, 400, "{}", gone.body);
    assert!(gone.body.contains("unknown task type"), "{}", gone.body);
    // The attempt that was running finishes on the component it started with.
    server.wait_task(&running, |t| t["status"] == "completed");
    assert_eq!(effects(&s), [format!("{running} 1")]);

    // A plugin replaced by a new build (another sha256): the next task is pinned to it.
    let before = uuid::Uuid::new_v4().to_string();
    server.post("/v0/tasks", &json!({"id": before, "type": "test-echo"}));
    let first = server.wait_task(&before, |t| t["status"] == "completed");
    let mut rebuilt = std::fs::read(s.plugins().join("test-echo.wasm")).unwrap();
    let (name, payload) = (b"planrt-test".as_slice(), b"rebuilt".as_slice());
    rebuilt.extend_from_slice(&[0, (1 + name.len() + payload.len()) as u8, name.len() as u8]);
    rebuilt.extend_from_slice(name);
    rebuilt.extend_from_slice(payload);
    install(&s, "test-echo.wasm", &rebuilt);
    let new_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&rebuilt))
    };
    assert_ne!(first["pluginSha256"], new_sha.as_str());
    wait_until("the rebuilt test-echo is served", &server, || {
        let id = uuid::Uuid::new_v4().to_string();
        server.post("/v0/tasks", &json!({"id": id, "type": "test-echo"}));
        server.get(&format!("/v0/tasks/{id}")).json()["pluginSha256"] == new_sha.as_str()
    });

    // A new plugin file is added; a removed one is gone.
    install(
        &s,
        "test-flaky.wasm",
        &std::fs::read(plugin_file("test-flaky")).unwrap(),
    );
    std::fs::remove_file(s.plugins().join("test-spin.wasm")).unwrap();
    wait_until("test-flaky added and test-spin removed", &server, || {
        server
            .post(
                "/v0/tasks",
                &json!({"type": "test-flaky", "params": {"failures": 0}}),
            )
            .status
            == 201
            && server
                .post("/v0/tasks", &json!({"type": "test-spin"}))
                .status
                == 400
    });
}

#[test]
fn a_failed_task_whose_plugin_changed_is_not_rerun_on_the_new_one() {
    let s = scratch();
    std::fs::write(
        s.path().join("grants.toml"),
        format!(
            "[grants]\ndirs = [{{ host = \"{}\", guest = \"/work\", mode = \"rw\" }}]\n",
            s.path().join("work").display()
        ),
    )
    .unwrap();
    let grants = s.path().join("grants.toml");
    let server = s.serve(&["--grants", grants.to_str().unwrap()]);
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({"id": id, "type": "test-append", "params": {"failures": 1}});
    assert_eq!(server.post("/v0/tasks", &body).status, 201);
    server.wait_task(&id, |t| t["status"] == "failed");
    s.change_plugin("test-append");
    wait_until("the changed plugin is loaded", &server, || {
        server.log().contains("replaced [test-append]")
    });
    let refused = server.post("/v0/tasks", &body);
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("plugin(s) changed"),
        "{}",
        refused.body
    );
    let task = server.get(&format!("/v0/tasks/{id}")).json();
    assert_eq!(task["attempts"].as_array().unwrap().len(), 1, "nothing ran");
}

#[test]
fn an_unfinished_task_whose_plugin_changed_is_failed_at_start_saying_why_and_resumable() {
    let s = scratch();
    let server = serve(&s);
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({"id": id, "type": "test-append", "params": {"sleepMs": 5000}});
    assert_eq!(server.post("/v0/tasks", &body).status, 201);
    server.wait_task(&id, |t| t["attempts"][0]["outcome"] == "running");
    server.kill_9();
    s.change_plugin("test-append");

    let server = serve(&s);
    let task = server.wait_task(&id, |t| t["status"] == "failed");
    let error = task["error"].as_str().unwrap();
    assert!(error.contains("not resumed when planrt started"), "{error}");
    assert!(error.contains("plugin(s) changed"), "{error}");
    assert_eq!(task["attempts"][0]["errorKind"], "cancelled", "{task}");
    assert!(effects(&s).is_empty());

    // The operator allows the new plugin: the task runs on it.
    let resumed = server.post(
        &format!("/v0/plans/{id}/resume"),
        &json!({"allowPluginChange": true}),
    );
    assert_eq!(resumed.status, 202, "{}", resumed.body);
    server.wait_task(&id, |t| t["status"] == "completed");
    assert_eq!(effects(&s), [format!("{id} 2")]);
}

#[test]
fn a_task_recorded_running_that_nothing_runs_runs_again_when_submitted() {
    let s = scratch();
    // A CLI run killed mid-attempt leaves its task recorded `running`; the server does
    // not take over CLI plans by itself.
    let plan = s.write(
        "p.toml",
        &format!(
            "[grants]\ndirs = [{{ host = \"{}\", guest = \"/work\", mode = \"rw\" }}]\n[[tasks]]\ntype = \"test-append\"\nparams = {{ waitFor = \"go\" }}\n",
            s.path().join("work").display()
        ),
    );
    let mut cli = s
        .command(&["run", plan.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = serve(&s);
    let task = server
        .get("/v0/tasks")
        .json()
        .as_array()
        .unwrap()
        .first()
        .cloned();
    let task = match task {
        Some(task) => task,
        None => {
            wait_until("the CLI plan is recorded", &server, || {
                !server
                    .get("/v0/tasks")
                    .json()
                    .as_array()
                    .unwrap()
                    .is_empty()
            });
            server.get("/v0/tasks").json()[0].clone()
        }
    };
    let id = task["id"].as_str().unwrap().to_owned();
    server.wait_task(&id, |t| t["attempts"][0]["outcome"] == "running");
    cli.kill().unwrap();
    cli.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let stuck = server.get(&format!("/v0/tasks/{id}")).json();
    assert_eq!(
        stuck["status"], "running",
        "recorded running, run by nothing"
    );

    let submitted = server.post(
        "/v0/tasks",
        &json!({"id": id, "type": "test-append", "params": {"sleepMs": 0}}),
    );
    assert_eq!(submitted.status, 202, "{}", submitted.body);
    // It runs again, as recorded (a 202 changes nothing): its attempt waits for the gate.
    server.wait_task(&id, |t| t["attempts"][1]["outcome"] == "running");
    std::fs::write(s.path().join("work/go"), "").unwrap();
    let done = server.wait_task(&id, |t| t["status"] == "completed");
    assert_eq!(done["attempts"][0]["errorKind"], "interrupted", "{done}");
    assert_eq!(
        done["params"],
        json!({"waitFor": "go"}),
        "a 202 keeps the params"
    );
    assert_eq!(effects(&s), [format!("{id} 2")]);
}

#[test]
fn an_unfinished_task_waits_out_a_passing_problem_at_start_instead_of_failing() {
    let s = scratch();
    let grants = s.write(
        "grants.toml",
        &format!(
            "[grants]\ndirs = [{{ host = \"{}\", guest = \"/work\", mode = \"rw\" }}]\n[secrets]\nenv = [\"SERVE_PLANS_SECRET\"]\n",
            s.path().join("work").display()
        ),
    );
    let grants = grants.to_str().unwrap().to_owned();
    let with_secret = |command: &mut std::process::Command| {
        command.env("SERVE_PLANS_SECRET", "s3cret-value");
    };
    let server = s.serve_with(&["--grants", &grants], with_secret);
    let id = uuid::Uuid::new_v4().to_string();
    let params = json!({"sleepMs": 5000, "token": {"$env": "SERVE_PLANS_SECRET"}});
    let submitted = server.post(
        "/v0/tasks",
        &json!({"id": id, "type": "test-append", "params": params}),
    );
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    server.wait_task(&id, |t| t["attempts"][0]["outcome"] == "running");
    server.kill_9();

    // Restarted without the secret: the task cannot run now, and is not failed for it.
    let server = s.serve(&["--grants", &grants]);
    wait_until("the passing problem is logged", &server, || {
        server.log().contains("tried again later")
    });
    let task = server.get(&format!("/v0/tasks/{id}")).json();
    assert_eq!(task["status"], "running", "{task}");
    drop(server);

    let server = s.serve_with(&["--grants", &grants], with_secret);
    let done = server.wait_task(&id, |t| t["status"] == "completed");
    assert_eq!(done["attempts"][0]["errorKind"], "interrupted", "{done}");
    assert_eq!(effects(&s), [format!("{id} 2")]);
}

#[test]
fn a_graph_over_http_runs_side_by_side_is_cancelled_whole_and_a_crash_leaves_nothing_running() {
    let s = scratch();
    let server = serve(&s);

    // A cycle is bad input, naming the tasks.
    let cycle = plan(
        &s,
        json!([
            {"type": "test-echo", "name": "a", "dependsOn": ["b"]},
            {"type": "test-echo", "name": "b", "dependsOn": ["a"]},
        ]),
    );
    let refused = server.post("/v0/plans", &cycle);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("`a` (task 0) → `b` (task 1)"),
        "{}",
        refused.body
    );

    // Two spinning tasks side by side; DELETE cancels both in flight.
    let spinning = plan(
        &s,
        json!([
            {"type": "test-spin", "name": "x", "dependsOn": []},
            {"type": "test-spin", "name": "y", "dependsOn": []},
            {"type": "test-echo", "dependsOn": ["x", "y"]},
        ]),
    );
    let created = server.post("/v0/plans", &spinning);
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let read = server.get(&format!("/v0/plans/{id}")).json();
    assert_eq!(read["tasks"][2]["dependsOn"], json!(["x", "y"]));
    let both_running =
        |p: &Value| p["tasks"][0]["status"] == "Running" && p["tasks"][1]["status"] == "Running";
    wait_plan(&server, &id, both_running);
    assert_eq!(server.delete(&format!("/v0/plans/{id}")).status, 204);
    let cancelled = wait_plan(&server, &id, phase_is("Failed"));
    for index in 0..2 {
        let attempts = cancelled["tasks"][index]["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0]["errorKind"], "cancelled", "task {index}");
    }
    assert_eq!(cancelled["tasks"][2]["attempts"], json!([]));

    // A task fails for good while another spins; the server dies with that attempt in
    // flight. The next server records it interrupted (nothing else would).
    let failing = plan(
        &s,
        json!([
            {"type": "test-spin", "name": "spin", "dependsOn": []},
            {"type": "test-append", "dependsOn": [], "params": {"failures": 1}},
        ]),
    );
    let created = server.post("/v0/plans", &failing);
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let stranded = wait_plan(&server, &id, |p| {
        p["phase"] == "Failed" && p["tasks"][0]["status"] == "Running"
    });
    assert_eq!(stranded["failedTaskIndex"], 1);
    server.kill_9();
    let server = serve(&s);
    let recorded = wait_plan(&server, &id, |p| p["tasks"][0]["status"] != "Running");
    let attempt = &recorded["tasks"][0]["attempts"][0];
    assert_eq!(attempt["errorKind"], "interrupted", "{recorded}");
    assert_eq!(recorded["phase"], "Failed");
    assert_eq!(
        recorded["failedTaskIndex"], 1,
        "the first failure stays the plan's"
    );
}
