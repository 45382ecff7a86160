//! `docs/openapi.yaml` says exactly what `planrt serve` does: every route, method and
//! status it lists is produced here against a running server — but those it marks
//! `x-planrt-not-walked`, saying why — and every status produced here is listed. Error
//! statuses carry the `{"error": ...}` body it promises.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use planrt_e2e::server::Response;
use planrt_e2e::{Scratch, workspace_root};
use serde_json::{Value, json};

/// (path template, method, status).
type Operation = (String, String, u16);

/// Every documented operation, and those of them marked as not walked (with why).
fn documented() -> (BTreeSet<Operation>, BTreeSet<Operation>) {
    let text = std::fs::read_to_string(workspace_root().join("docs/openapi.yaml")).unwrap();
    let spec: Value = serde_yaml_ng::from_str(&text).unwrap();
    let resolve = |response: &Value| -> Value {
        match response["$ref"].as_str() {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap();
                spec["components"]["responses"][name].clone()
            }
            None => response.clone(),
        }
    };
    let (mut operations, mut not_walked) = (BTreeSet::new(), BTreeSet::new());
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                let key = (path.clone(), method.to_uppercase(), status.parse().unwrap());
                if let Some(reason) = resolve(response).get("x-planrt-not-walked") {
                    assert!(
                        reason.as_str().is_some_and(|r| r.len() > 10),
                        "{key:?}: say why it is not walked"
                    );
                    not_walked.insert(key.clone());
                }
                operations.insert(key);
            }
        }
    }
    (operations, not_walked)
}

/// Requests made, by the operation they walk.
struct Walk {
    walked: BTreeSet<Operation>,
}

impl Walk {
    /// Checks that `response` to `method template` has `status` (and the error body an
    /// error status promises) and records the operation walked.
    fn check(&mut self, template: &str, method: &str, status: u16, response: &Response) {
        assert_eq!(
            response.status, status,
            "{method} {template}: {}",
            response.body
        );
        let bare_probe = template.ends_with("z") && status == 503 && response.body.is_empty();
        if status >= 400 && !bare_probe {
            let body = response.json();
            assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{method} {template} {status}: no error message: {body}"
            );
        }
        self.walked
            .insert((template.to_owned(), method.to_owned(), status));
    }
}

fn id_of(response: &Response) -> String {
    response.json()["id"].as_str().unwrap().to_owned()
}

#[test]
fn every_documented_route_and_status_is_what_the_server_does() {
    let s = Scratch::with_plugins(&["test-echo", "test-spin", "test-permanent", "mark-ready"]);
    let server = s.serve(&[]);
    let mut walk = Walk {
        walked: BTreeSet::new(),
    };
    let tasks = "/v0/tasks";
    let task = "/v0/tasks/{id}";
    let plans = "/v0/plans";
    let plan = "/v0/plans/{id}";
    let resume = "/v0/plans/{id}/resume";

    // Probes before anything is ready.
    for probe in ["/v0/healthz", "/v0/startupz"] {
        walk.check(probe, "GET", 503, &server.get(probe));
    }
    walk.check("/v0/livez", "GET", 200, &server.get("/v0/livez"));
    walk.check("/v0/status", "GET", 200, &server.get("/v0/status"));

    // Tasks.
    let echo = uuid::Uuid::new_v4().to_string();
    let submitted = server.post(tasks, &json!({"id": echo, "type": "test-echo"}));
    walk.check(tasks, "POST", 201, &submitted);
    server.wait_for(&format!("/v0/tasks/{echo}"), |t| t["status"] == "completed");
    let again = server.post(tasks, &json!({"id": echo, "type": "test-echo"}));
    walk.check(tasks, "POST", 202, &again);
    let other_type = server.post(tasks, &json!({"id": echo, "type": "test-spin"}));
    walk.check(tasks, "POST", 409, &other_type);
    walk.check(
        tasks,
        "POST",
        400,
        &server.post(tasks, &json!({"type": "nope"})),
    );
    let big = vec![b'a'; 2 << 20];
    for (template, path) in [
        (tasks, "/v0/tasks".to_owned()),
        (plans, "/v0/plans".to_owned()),
        (resume, format!("/v0/plans/{}/resume", uuid::Uuid::new_v4())),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
            big.len()
        );
        assert_eq!(server.raw_status(&head, &big), 413, "{path}");
        walk.walked.insert((template.into(), "POST".into(), 413));
    }
    walk.check(tasks, "GET", 200, &server.get(tasks));
    walk.check(tasks, "GET", 400, &server.get("/v0/tasks?limit=0"));
    walk.check(task, "GET", 200, &server.get(&format!("/v0/tasks/{echo}")));
    walk.check(task, "GET", 400, &server.get("/v0/tasks/not-a-uuid"));
    let unknown = uuid::Uuid::new_v4();
    walk.check(
        task,
        "GET",
        404,
        &server.get(&format!("/v0/tasks/{unknown}")),
    );
    let spin = id_of(&server.post(tasks, &json!({"type": "test-spin"})));
    server.wait_for(&format!("/v0/tasks/{spin}"), |t| {
        t["attempts"][0]["outcome"] == "running"
    });
    walk.check(
        task,
        "DELETE",
        204,
        &server.delete(&format!("/v0/tasks/{spin}")),
    );
    walk.check(task, "DELETE", 400, &server.delete("/v0/tasks/not-a-uuid"));
    walk.check(
        task,
        "DELETE",
        404,
        &server.delete(&format!("/v0/tasks/{unknown}")),
    );

    // A task another planrt process runs: it cannot be cancelled from here.
    let plan_file = s.write("spin.toml", "[[tasks]]\ntype = \"test-spin\"\n");
    let mut cli = s
        .command(&["run", plan_file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cli_task = server
        .wait_for(tasks, |list| {
            list.as_array().unwrap().iter().any(|t| {
                t["type"] == "test-spin"
                    && t["attempts"][0]["outcome"] == "running"
                    && t["id"] != spin
            })
        })
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "test-spin" && t["id"] != spin)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    walk.check(
        task,
        "DELETE",
        409,
        &server.delete(&format!("/v0/tasks/{cli_task}")),
    );
    cli.kill().unwrap();
    cli.wait().unwrap();

    // Plans.
    let created = server.post(plans, &json!({"tasks": [{"type": "test-permanent"}]}));
    walk.check(plans, "POST", 201, &created);
    let failed = id_of(&created);
    server.wait_for(&format!("/v0/plans/{failed}"), |p| p["phase"] == "Failed");
    walk.check(
        plans,
        "POST",
        400,
        &server.post(plans, &json!({"tasks": []})),
    );
    walk.check(plans, "GET", 200, &server.get(plans));
    walk.check(plans, "GET", 400, &server.get("/v0/plans?limit=0"));
    walk.check(
        plan,
        "GET",
        200,
        &server.get(&format!("/v0/plans/{failed}")),
    );
    walk.check(plan, "GET", 400, &server.get("/v0/plans/not-a-uuid"));
    walk.check(
        plan,
        "GET",
        404,
        &server.get(&format!("/v0/plans/{unknown}")),
    );
    let past = server.post(&format!("/v0/plans/{failed}/resume"), &json!({"from": 5}));
    walk.check(resume, "POST", 400, &past);
    let resumed = server.post(&format!("/v0/plans/{failed}/resume"), &json!({}));
    walk.check(resume, "POST", 202, &resumed);
    let missing = server.post(&format!("/v0/plans/{unknown}/resume"), &json!({}));
    walk.check(resume, "POST", 404, &missing);
    let spinning = id_of(&server.post(plans, &json!({"tasks": [{"type": "test-spin"}]})));
    server.wait_for(&format!("/v0/plans/{spinning}"), |p| {
        p["tasks"][0]["status"] == "Running"
    });
    let running = server.post(&format!("/v0/plans/{spinning}/resume"), &json!({}));
    walk.check(resume, "POST", 409, &running);
    walk.check(
        plan,
        "DELETE",
        204,
        &server.delete(&format!("/v0/plans/{spinning}")),
    );
    walk.check(
        plan,
        "DELETE",
        409,
        &server.delete(&format!("/v0/plans/{spinning}")),
    );
    walk.check(plan, "DELETE", 400, &server.delete("/v0/plans/not-a-uuid"));
    walk.check(
        plan,
        "DELETE",
        404,
        &server.delete(&format!("/v0/plans/{unknown}")),
    );

    // Ready, metrics.
    let ready = id_of(&server.post(tasks, &json!({"type": "mark-ready"})));
    server.wait_for(&format!("/v0/tasks/{ready}"), |t| {
        t["status"] == "completed"
    });
    for probe in ["/v0/healthz", "/v0/startupz"] {
        walk.check(probe, "GET", 200, &server.get(probe));
    }
    walk.check("/v0/metrics", "GET", 200, &server.get("/v0/metrics"));

    // The store cannot record (another connection holds its write lock): 503 for every
    // request that must record, each within the store's 10 s wait; reads still answer.
    let spinning_again = id_of(&server.post(plans, &json!({"tasks": [{"type": "test-spin"}]})));
    server.wait_for(&format!("/v0/plans/{spinning_again}"), |p| {
        p["tasks"][0]["status"] == "Running"
    });
    server.wait_for(&format!("/v0/plans/{failed}"), |p| p["phase"] == "Failed");
    let db = rusqlite::Connection::open(s.state().join("planrt.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let locked = std::thread::scope(|scope| {
        type Request<'a> = Box<dyn FnOnce() -> Response + Send + 'a>;
        let requests: Vec<(&str, &str, Request)> = vec![
            (
                "/v0/livez",
                "GET",
                Box::new(|| server.get("/v0/livez?verbose=1")),
            ),
            (
                tasks,
                "POST",
                Box::new(|| server.post(tasks, &json!({"type": "test-echo"}))),
            ),
            (
                task,
                "DELETE",
                Box::new(|| server.delete(&format!("/v0/tasks/{echo}"))),
            ),
            (
                plans,
                "POST",
                Box::new(|| server.post(plans, &json!({"tasks": [{"type": "test-echo"}]}))),
            ),
            (
                resume,
                "POST",
                Box::new(|| server.post(&format!("/v0/plans/{failed}/resume"), &json!({}))),
            ),
            (
                plan,
                "DELETE",
                Box::new(|| server.delete(&format!("/v0/plans/{spinning_again}"))),
            ),
        ];
        let handles: Vec<_> = requests
            .into_iter()
            .map(|(template, method, request)| (template, method, scope.spawn(request)))
            .collect();
        handles
            .into_iter()
            .map(|(template, method, handle)| (template, method, handle.join().unwrap()))
            .collect::<Vec<_>>()
    });
    let took = started.elapsed();
    assert_eq!(
        server.get(&format!("/v0/tasks/{echo}")).status,
        200,
        "reads answer"
    );
    db.execute_batch("ROLLBACK").unwrap();
    for (template, method, response) in &locked {
        walk.check(template, method, 503, response);
        // Probes answer bare statuses (with `?verbose=1` an error body); the API says
        // when to retry.
        if *template != "/v0/livez" {
            assert!(
                response.header("retry-after").is_some(),
                "{method} {template}"
            );
        }
    }
    assert!(
        took < Duration::from_secs(25),
        "writes waited one after another: {took:?}"
    );
    assert_eq!(server.get("/v0/livez").status, 200, "live again");
    // The cancel that could not be recorded can be sent again.
    assert_eq!(
        server.delete(&format!("/v0/plans/{spinning_again}")).status,
        204
    );
    let cancelled = server.get(&format!("/v0/plans/{spinning_again}")).json();
    assert_eq!(
        cancelled["tasks"][0]["attempts"][0]["errorKind"], "cancelled",
        "{cancelled}"
    );
    drop(server);

    // A body that does not arrive in time: 408, from a server with a short timeout.
    let impatient = s.serve(&["--request-timeout", "1s"]);
    for (template, path) in [
        (tasks, "/v0/tasks".to_owned()),
        (plans, "/v0/plans".to_owned()),
        (resume, format!("/v0/plans/{}/resume", uuid::Uuid::new_v4())),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100"
        );
        assert_eq!(impatient.raw_status(&head, b"{\"ty"), 408, "{path}");
        walk.walked.insert((template.into(), "POST".into(), 408));
    }
    drop(impatient);

    // 401 on every route that lists it, from a server that requires a token.
    let guarded = s.serve_with(&[], |command| {
        command.env("PLANRT_TOKEN", "walk-token");
    });
    let id = uuid::Uuid::new_v4();
    let (documented, not_walked) = documented();
    for (template, method, status) in documented.clone() {
        if status != 401 {
            continue;
        }
        let path = template.replace("{id}", &id.to_string());
        let body = (method == "POST").then_some("{}");
        let response = guarded.request(&method, &path, body, &[]);
        walk.check(&template, &method, 401, &response);
    }

    let undocumented: Vec<_> = walk.walked.difference(&documented).collect();
    let unwalked: Vec<_> = documented
        .difference(&walk.walked)
        .filter(|operation| !not_walked.contains(*operation))
        .collect();
    let marked_but_walked: Vec<_> = not_walked.intersection(&walk.walked).collect();
    assert!(
        marked_but_walked.is_empty(),
        "walked after all: {marked_but_walked:?}"
    );
    assert!(
        undocumented.is_empty() && unwalked.is_empty(),
        "walked but not in docs/openapi.yaml: {undocumented:?}\nin docs/openapi.yaml but not walked: {unwalked:?}"
    );
}

/// The Kubernetes example in docs/deploy: its flags, grants file and probes work.
#[test]
fn the_kubernetes_example_runs_as_written() {
    let text =
        std::fs::read_to_string(workspace_root().join("docs/deploy/statefulset.yaml")).unwrap();
    let documents: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect();
    let of_kind = |kind: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let grants = of_kind("ConfigMap")["data"]["grants.toml"]
        .as_str()
        .unwrap();
    let containers = of_kind("StatefulSet")["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let planrt = containers.iter().find(|c| c["name"] == "planrt").unwrap();
    let args: Vec<&str> = planrt["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "serve");
    assert!(planrt["env"].to_string().contains("PLANRT_TOKEN"));

    // The same flags, with this machine's paths and an ephemeral loopback port.
    let s = Scratch::with_plugins(&["mark-ready"]);
    let grants_file = s.write("grants.toml", grants);
    let mut local: Vec<String> = Vec::new();
    for arg in &args[1..] {
        let (flag, _) = arg.split_once('=').unwrap();
        match flag {
            "--listen" | "--plugins" | "--state" => {}
            "--grants" => local.push(format!("--grants={}", grants_file.display())),
            _ => local.push((*arg).to_owned()),
        }
    }
    let local: Vec<&str> = local.iter().map(String::as_str).collect();
    let server = s.serve_with(&local, |command| {
        command.env("PLANRT_TOKEN", "example-token");
    });
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let path = planrt[probe]["httpGet"]["path"].as_str().unwrap();
        let status = server.get(path).status;
        let expected = if probe == "livenessProbe" { 200 } else { 503 };
        assert_eq!(
            status, expected,
            "{probe} {path} without credentials, before mark-ready"
        );
    }
    // Its state lies outside everything it grants tasks (planrt refuses otherwise).
    let state = args
        .iter()
        .find_map(|a| a.strip_prefix("--state="))
        .unwrap();
    let granted: Vec<&str> = grants
        .lines()
        .filter_map(|line| line.split("host = \"").nth(1))
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert!(!granted.is_empty());
    for dir in granted {
        assert!(
            !std::path::Path::new(state).starts_with(dir)
                && !std::path::Path::new(dir).starts_with(state),
            "--state={state} overlaps the grant of {dir}"
        );
    }
    assert_eq!(
        server.get("/v0/tasks").status,
        401,
        "the API needs the token"
    );
}
