//! `planrt serve` end to end: the real binary on 127.0.0.1, real plugins, a real SQLite
//! state dir — the reference sidecar's submit table, concurrency, kill -9, cancel,
//! probes, auth and bad requests.

use std::time::{Duration, Instant};

use planrt_e2e::Scratch;
use planrt_e2e::server::Server;
use serde_json::{Value, json};

const GRANTS: &str = "[grants]\ndirs = [{ host = \"work\", guest = \"/work\", mode = \"rw\" }]\n[secrets]\nenv = [\"SERVE_TEST_SECRET\", \"SERVE_TEST_UNSET\"]\n";

fn scratch() -> Scratch {
    let s = Scratch::with_plugins(&[
        "test-append",
        "test-echo",
        "test-spin",
        "test-invalid-params",
        "mark-ready",
    ]);
    std::fs::create_dir(s.path().join("work")).unwrap();
    s.write("grants.toml", GRANTS);
    s
}

fn serve(s: &Scratch) -> Server {
    let grants = s.path().join("grants.toml");
    s.serve(&["--grants", grants.to_str().unwrap()])
}

fn effects(s: &Scratch) -> Vec<String> {
    std::fs::read_to_string(s.path().join("work/effects.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn status_is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |task| task["status"] == status
}

#[test]
fn the_reference_submit_table_holds_per_id() {
    let s = scratch();
    let server = serve(&s);
    let id = new_id();
    let submit = |params: Value| {
        server.post(
            "/v0/tasks",
            &json!({"id": id, "type": "test-append", "params": params}),
        )
    };

    // New → runs (201); while it runs → no-op (202, same ID).
    let first = submit(json!({"sleepMs": 2000, "failures": 1}));
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.json()["id"], id.as_str());
    let running = submit(json!({"sleepMs": 0}));
    assert_eq!(running.status, 202, "{}", running.body);
    assert_eq!(running.json()["id"], id.as_str());

    // Failed → runs again as attempt 2 with the new params; failed again → attempt 3.
    let failed = server.wait_task(&id, status_is("failed"));
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(failed["attempts"][0]["errorKind"], "transient");
    assert!(failed["completedAt"].is_string());
    let second = submit(json!({"failures": 2}));
    assert_eq!(second.status, 201, "{}", second.body);
    let failed = server.wait_task(&id, |t| {
        t["status"] == "failed" && t["attempts"].as_array().unwrap().len() == 2
    });
    assert_eq!(failed["params"], json!({"failures": 2}), "the new params");
    let third = submit(json!({"failures": 0}));
    assert_eq!(third.status, 201, "{}", third.body);
    let done = server.wait_task(&id, status_is("completed"));
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{done}");
    assert_eq!(attempts[2]["outcome"], "complete");
    assert_eq!(done["type"], "test-append");
    assert!(done["result"].is_object(), "{done}");
    assert_eq!(effects(&s), [format!("{id} 3")]);

    // Completed → no-op: nothing runs again.
    let again = submit(json!({"failures": 0}));
    assert_eq!(again.status, 202, "{}", again.body);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(effects(&s), [format!("{id} 3")]);
    let task = server.get(&format!("/v0/tasks/{id}")).json();
    assert_eq!(task["attempts"].as_array().unwrap().len(), 3);
}

#[test]
fn a_hundred_concurrent_submits_of_one_new_id_run_it_once() {
    let s = scratch();
    let server = serve(&s);
    let id = new_id();
    let body = json!({"id": id, "type": "test-append", "params": {"sleepMs": 200}});
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..100)
            .map(|_| scope.spawn(|| server.post("/v0/tasks", &body).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 202).count(),
        99,
        "{statuses:?}"
    );
    server.wait_task(&id, status_is("completed"));
    assert_eq!(effects(&s), [format!("{id} 1")]);
}

#[test]
fn kill_9_mid_task_then_restart_completes_it_once_with_the_interrupted_attempt_kept() {
    let s = scratch();
    let server = serve(&s);
    let id = new_id();
    let submitted = server.post(
        "/v0/tasks",
        &json!({"id": id, "type": "test-append", "params": {"sleepMs": 5000}}),
    );
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    server.wait_task(&id, |t| t["attempts"][0]["outcome"] == "running");
    server.kill_9();
    assert!(effects(&s).is_empty(), "killed before the effect");

    let server = serve(&s);
    let done = server.wait_task(&id, status_is("completed"));
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{done}");
    assert_eq!(attempts[0]["errorKind"], "interrupted");
    assert_eq!(attempts[1]["outcome"], "complete");
    assert_eq!(
        done["retryCount"], 0,
        "an interruption uses no retry budget"
    );
    assert_eq!(effects(&s), [format!("{id} 2")]);

    // A second restart finds nothing to do.
    drop(server);
    let server = serve(&s);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(effects(&s), [format!("{id} 2")]);
    let task = server.get(&format!("/v0/tasks/{id}")).json();
    assert_eq!(task["attempts"].as_array().unwrap().len(), 2);
}

#[test]
fn sigterm_stops_what_runs_as_interrupted_and_the_next_start_finishes_it() {
    let s = scratch();
    let server = serve(&s);
    let id = new_id();
    server.post(
        "/v0/tasks",
        &json!({"id": id, "type": "test-append", "params": {"sleepMs": 5000}}),
    );
    server.wait_task(&id, |t| t["attempts"][0]["outcome"] == "running");
    let (code, log) = server.terminate();
    assert_eq!(code, 130, "stopped by a signal, as every command: {log}");

    let server = serve(&s);
    let done = server.wait_task(&id, status_is("completed"));
    assert_eq!(done["attempts"][0]["errorKind"], "interrupted");
    assert_eq!(effects(&s), [format!("{id} 2")]);
}

#[test]
fn delete_cancels_a_spinning_task_promptly_and_the_server_keeps_serving() {
    let s = scratch();
    let server = serve(&s);
    let id = new_id();
    let submitted = server.post("/v0/tasks", &json!({"id": id, "type": "test-spin"}));
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    server.wait_task(&id, |t| t["attempts"][0]["outcome"] == "running");

    let asked = Instant::now();
    let deleted = server.delete(&format!("/v0/tasks/{id}"));
    let took = asked.elapsed();
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    let task = server.get(&format!("/v0/tasks/{id}")).json();
    assert_eq!(task["status"], "failed");
    assert_eq!(task["attempts"][0]["errorKind"], "cancelled");
    assert_eq!(task["retryCount"], 0);

    // The server still serves, and a cancelled task stays cancelled across a restart.
    let echo = new_id();
    assert_eq!(
        server
            .post("/v0/tasks", &json!({"id": echo, "type": "test-echo"}))
            .status,
        201
    );
    server.wait_task(&echo, status_is("completed"));
    drop(server);
    let server = serve(&s);
    std::thread::sleep(Duration::from_millis(300));
    let task = server.get(&format!("/v0/tasks/{id}")).json();
    assert_eq!(task["status"], "failed");
    assert_eq!(task["attempts"].as_array().unwrap().len(), 1);

    // A finished task is removed by DELETE; then it is gone from the API.
    assert_eq!(server.delete(&format!("/v0/tasks/{id}")).status, 204);
    assert_eq!(server.get(&format!("/v0/tasks/{id}")).status, 404);
    assert_eq!(server.delete(&format!("/v0/tasks/{id}")).status, 404);
    let listed = server.get("/v0/tasks").json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != id.as_str()),
        "{listed}"
    );

    // A removed task's ID submitted again reads as new to the client, as in the
    // reference: it runs again (its history kept), with the new params.
    assert_eq!(server.delete(&format!("/v0/tasks/{echo}")).status, 204);
    assert_eq!(server.get(&format!("/v0/tasks/{echo}")).status, 404);
    let again = server.post(
        "/v0/tasks",
        &json!({"id": echo, "type": "test-echo", "params": {"round": 2}}),
    );
    assert_eq!(again.status, 201, "{}", again.body);
    let rerun = server.wait_task(&echo, |t| {
        t["status"] == "completed" && t["attempts"].as_array().unwrap().len() == 2
    });
    assert_eq!(rerun["result"]["params"], json!({"round": 2}));
}

#[test]
fn bad_submissions_are_400_naming_the_problem_and_store_nothing() {
    let s = scratch();
    // Secrets but no directory: test-append's /work is not granted.
    let secrets = s.write("secrets.toml", "[secrets]\nenv = [\"SERVE_TEST_UNSET\"]\n");
    let server = s.serve(&["--grants", secrets.to_str().unwrap()]);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"type": "no-such-type"}),
            "unknown task type `no-such-type`",
        ),
        (json!({"type": "Bad_Type"}), "`type`"),
        (json!({"type": "test-invalid-params"}), "invalid params"),
        (
            json!({"type": "test-echo", "params": [1, 2]}),
            "`params` must be a JSON object",
        ),
        (json!({"type": "test-append"}), "/work"),
        (
            json!({"type": "test-echo", "params": {"t": {"$env": "PLANRT_TOKEN"}}}),
            "PLANRT_TOKEN",
        ),
        (
            json!({"type": "test-echo", "params": {"t": {"$env": "HOME"}}}),
            "`HOME` is not one the server lets requests use",
        ),
        (
            json!({"type": "test-echo", "params": {"t": {"$env": "SERVE_TEST_UNSET"}}}),
            "`SERVE_TEST_UNSET` (a `$env` secret in the params) is not set",
        ),
    ];
    for (body, expected) in cases {
        let response = server.post("/v0/tasks", &body);
        assert_eq!(response.status, 400, "{body}: {}", response.body);
        let error = response.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(expected), "{body}: {error}");
    }
    for (raw, expected) in [
        ("{\"type\": ", "malformed JSON"),
        ("{\"type\": 7}", "`type`"),
        ("{\"id\": \"not-a-uuid\", \"type\": \"test-echo\"}", "`id`"),
        ("{}", "missing field `type`"),
    ] {
        let response = server.request("POST", "/v0/tasks", Some(raw), &[]);
        assert_eq!(response.status, 400, "{raw}: {}", response.body);
        let error = response.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(expected), "{raw}: {error}");
    }
    assert_eq!(server.get("/v0/tasks").json(), json!([]), "nothing stored");
    assert_eq!(server.get("/v0/tasks/not-a-uuid").status, 400);
    assert_eq!(server.get(&format!("/v0/tasks/{}", new_id())).status, 404);
    // Over the 1 MiB default: refused by its Content-Length before it is read, and when
    // sent in chunks, once it grows past the limit.
    let big = vec![b'a'; 2 << 20];
    let head = format!(
        "POST /v0/tasks HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
        big.len()
    );
    assert_eq!(server.raw_status(&head, &big), 413);
    let mut chunked = format!("{:x}\r\n", big.len()).into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let head =
        "POST /v0/tasks HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked";
    assert_eq!(server.raw_status(head, &chunked), 413);
    assert_eq!(
        server.get("/v0/tasks").json(),
        json!([]),
        "still nothing stored"
    );
}

#[test]
fn a_token_is_required_on_everything_but_the_probes() {
    let s = scratch();
    let server = s.serve_with(&[], |command| {
        command.env("PLANRT_TOKEN", "s3cret-token");
    });
    let denied = server.get("/v0/tasks");
    assert_eq!(denied.status, 401, "{}", denied.body);
    assert!(denied.json()["error"].as_str().unwrap().contains("Bearer"));
    let wrong = server.request(
        "GET",
        "/v0/tasks",
        None,
        &[("authorization", "Bearer s3cret-tokeN")],
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(server.get("/v0/livez").status, 200, "probes answer");
    let server = server.with_token("s3cret-token");
    assert_eq!(server.get("/v0/tasks").status, 200);
}

#[test]
fn listening_beyond_loopback_without_a_token_is_refused() {
    let s = scratch();
    let run = s.planrt(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("PLANRT_TOKEN"), "{}", run.stderr);
}

#[test]
fn trusted_header_mode_needs_the_remote_user_except_on_probes_and_metrics() {
    let s = scratch();
    let server = s.serve(&["--trusted-header"]);
    assert_eq!(server.get("/v0/tasks").status, 401);
    let with_user = server.request("GET", "/v0/tasks", None, &[("x-remote-user", "ops")]);
    assert_eq!(with_user.status, 200, "{}", with_user.body);
    for probe in ["/v0/livez", "/v0/healthz", "/v0/startupz", "/v0/metrics"] {
        assert_ne!(server.get(probe).status, 401, "{probe}");
    }
    assert_eq!(
        server
            .request("GET", "/v0/tasks", None, &[("x-remote-user", " ")])
            .status,
        401,
        "a blank user"
    );
}

#[test]
fn readiness_follows_mark_ready_and_survives_a_restart() {
    let s = scratch();
    let server = serve(&s);
    assert_eq!(server.get("/v0/healthz").status, 503);
    assert_eq!(server.get("/v0/startupz").status, 503);
    assert_eq!(
        server.get("/v0/status").json(),
        json!({"status": "Initializing"})
    );
    assert_eq!(server.get("/v0/livez").status, 200);
    let id = new_id();
    assert_eq!(
        server
            .post("/v0/tasks", &json!({"id": id, "type": "mark-ready"}))
            .status,
        201
    );
    server.wait_task(&id, status_is("completed"));
    assert_eq!(server.get("/v0/healthz").status, 200);
    assert_eq!(server.get("/v0/status").json(), json!({"status": "Ready"}));
    drop(server);
    let server = serve(&s);
    assert_eq!(
        server.get("/v0/healthz").status,
        200,
        "readiness is persisted"
    );
    assert_eq!(server.get("/v0/startupz").status, 200);
}

#[test]
fn tasks_are_listed_newest_first_a_page_at_a_time_with_secrets_as_references() {
    let s = scratch();
    let grants = s.path().join("grants.toml");
    let server = s.serve_with(&["--grants", grants.to_str().unwrap()], |command| {
        command.env("SERVE_TEST_SECRET", "hunter2-very-secret");
    });
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = new_id();
        let params = json!({"n": n, "token": {"$env": "SERVE_TEST_SECRET"}});
        let response = server.post(
            "/v0/tasks",
            &json!({"id": id, "type": "test-echo", "params": params}),
        );
        assert_eq!(response.status, 201, "{}", response.body);
        server.wait_task(&id, status_is("completed"));
        ids.push(id);
    }
    let first = server.get("/v0/tasks?limit=2");
    assert_eq!(first.status, 200);
    let page: Vec<String> = first
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(page, [ids[4].clone(), ids[3].clone()]);
    let cursor = first
        .header("x-next-cursor")
        .expect("a next page")
        .to_owned();
    assert!(first.header("link").unwrap().contains("rel=\"next\""));
    let second = server.get(&format!("/v0/tasks?limit=2&cursor={cursor}"));
    let page: Vec<String> = second
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(page, [ids[2].clone(), ids[1].clone()]);
    assert_eq!(server.get("/v0/tasks?limit=0").status, 400);
    assert_eq!(server.get("/v0/tasks?cursor=nonsense").status, 400);

    let all = server.get("/v0/tasks").body;
    assert!(!all.contains("hunter2-very-secret"), "{all}");
    let task = server.get(&format!("/v0/tasks/{}", ids[0])).json();
    assert_eq!(
        task["params"]["token"],
        json!({"$env": "SERVE_TEST_SECRET"})
    );
    assert_eq!(
        task["result"]["params"]["token"], "***",
        "what the plugin saw is masked"
    );
}

#[test]
fn a_refused_submission_changes_nothing() {
    let s = scratch();
    let server = serve(&s);
    let id = new_id();
    server.post("/v0/tasks", &json!({"id": id, "type": "test-echo"}));
    server.wait_task(&id, status_is("completed"));
    assert_eq!(server.delete(&format!("/v0/tasks/{id}")).status, 204);
    let other_type = server.post("/v0/tasks", &json!({"id": id, "type": "test-spin"}));
    assert_eq!(other_type.status, 409, "{}", other_type.body);
    assert_eq!(
        server.get(&format!("/v0/tasks/{id}")).status,
        404,
        "still removed"
    );
}

#[test]
fn grants_reaching_planrts_own_dirs_are_refused() {
    let s = scratch();
    // The scratch dir holds the state dir: granting it would hand tasks planrt's
    // database and compiled-code cache.
    let grants = s.write(
        "wide.toml",
        &format!(
            "[grants]\ndirs = [{{ host = \"{}\", guest = \"/work\", mode = \"ro\" }}]\n",
            s.path().display()
        ),
    );
    std::fs::create_dir_all(s.state()).unwrap();
    let run = s.planrt(&["serve", "--grants", grants.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("planrt's own state directory"),
        "{}",
        run.stderr
    );
    let plan = s.write(
        "own.toml",
        &format!(
            "[grants]\ndirs = [{{ host = \"{}\", guest = \"/work\", mode = \"rw\" }}]\n[[tasks]]\ntype = \"test-append\"\n",
            s.state().display()
        ),
    );
    let run = s.planrt(&["run", plan.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("planrt's own state directory"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use std::io::{Read, Write};
    let s = scratch();
    let server = serve(&s);
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET /v0/livez HTTP/1.1\r\nHost: planrt\r\n")
        .unwrap();
    // Meanwhile the server serves everyone else.
    assert_eq!(server.get("/v0/livez").status, 200);
    // The server closes the connection (the header-read timeout is 10 s); a server that
    // waited for ever would make this read time out instead.
    slow.set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    assert!(read.is_ok(), "the connection was left open: {read:?}");
}
