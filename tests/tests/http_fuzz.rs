//! Fuzzing the HTTP API of a real `planrt serve` (issue 11): generated and damaged bodies
//! for every endpoint that takes one. Each answer is a success or a 4xx with a JSON
//! `error` that says something — never a 5xx, never a dropped connection — and the server
//! is live after all of them. `PROPTEST_CASES` sets the number of requests per
//! endpoint.

use planrt_e2e::Scratch;
use planrt_e2e::server::Server;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

/// Keys the API knows, and some it does not.
const KEYS: &[&str] = &[
    "id",
    "type",
    "params",
    "name",
    "tasks",
    "dependsOn",
    "grants",
    "dirs",
    "host",
    "guest",
    "mode",
    "http",
    "defaults",
    "maxRetries",
    "maxParallel",
    "timeout",
    "memoryLimit",
    "backoff",
    "from",
    "allowPluginChange",
    "$env",
    "",
    "unknown",
];

/// Strings worth sending: valid values, paths out of a grant, odd text.
const STRINGS: &[&str] = &[
    "test-echo",
    "no-such-type",
    "Test-Echo",
    "a",
    "b",
    "/",
    "/etc",
    "..",
    "../../etc/passwd",
    "/work",
    "rw",
    "ro",
    "10s",
    "0s",
    "999999999999h",
    "1EiB",
    "PLANRT_TOKEN",
    "HOME",
    "0d9d8c43-2f3a-4c1e-9d2b-7f5e1a3c4b6d",
    "not-a-uuid",
    "",
    "\u{0}",
    "\u{202e}",
];

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        select(&[0i64, 1, -1, 4096, 4097, u32::MAX as i64 + 1][..]).prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        select(STRINGS).prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((select(KEYS), inner), 0..6)
                .prop_map(|pairs| Value::Object(object(pairs))),
        ]
    })
}

fn object(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Usually `usual` (so that requests get past the first check), else anything.
fn mostly(usual: Value) -> impl Strategy<Value = Value> {
    prop_oneof![3 => Just(usual), 1 => value()]
}

/// Usually nothing, else anything.
fn rarely() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![3 => Just(None), 1 => value().prop_map(Some)]
}

/// Keys the body should not have, usually none.
fn extra_keys() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec((select(KEYS), value()), 1..3),
    ]
}

/// A task submission: mostly the right shape, with any key's value replaced.
fn task_body() -> impl Strategy<Value = Value> {
    (mostly(json!("test-echo")), rarely(), rarely(), extra_keys()).prop_map(
        |(task_type, params, id, extra)| {
            let mut body = object(extra);
            body.insert("type".into(), task_type);
            if let Some(p) = params {
                body.insert("params".into(), p);
            }
            if let Some(id) = id {
                body.insert("id".into(), id);
            }
            Value::Object(body)
        },
    )
}

/// A plan: tasks with names and `dependsOn` (unknown names, duplicates and cycles
/// among them), grants and defaults, any of them replaced.
fn plan_body() -> impl Strategy<Value = Value> {
    let task = (
        mostly(json!("test-echo")),
        prop::option::of(select(&["a", "b", "c", "d", ""][..])),
        prop::option::of(prop::collection::vec(
            select(&["a", "b", "c", "z"][..]),
            0..3,
        )),
        rarely(),
    )
        .prop_map(|(task_type, name, depends_on, params)| {
            let mut task = Map::new();
            task.insert("type".into(), task_type);
            if let Some(n) = name {
                task.insert("name".into(), json!(n));
            }
            if let Some(d) = depends_on {
                task.insert("dependsOn".into(), json!(d));
            }
            if let Some(p) = params {
                task.insert("params".into(), p);
            }
            Value::Object(task)
        });
    (
        prop::collection::vec(task, 0..5),
        rarely(),
        rarely(),
        extra_keys(),
    )
        .prop_map(|(tasks, grants, defaults, extra)| {
            let mut body = object(extra);
            body.insert("tasks".into(), json!(tasks));
            if let Some(g) = grants {
                body.insert("grants".into(), g);
            }
            if let Some(d) = defaults {
                body.insert("defaults".into(), d);
            }
            Value::Object(body)
        })
}

/// How the text of a body is damaged before it is sent.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Truncate(Index),
    Replace(Index, char),
    Append(&'static str),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => Just(Damage::None),
        1 => any::<Index>().prop_map(Damage::Truncate),
        1 => (any::<Index>(), any::<char>()).prop_map(|(at, c)| Damage::Replace(at, c)),
        1 => select(&["}", "]", ",", " {}", "\u{0}", "\"", "null"][..]).prop_map(Damage::Append),
    ]
}

fn damaged(text: String, damage: &Damage) -> String {
    let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let at = |index: &Index| {
        boundaries
            .get(index.index(boundaries.len().max(1)))
            .copied()
    };
    match damage {
        Damage::None => text,
        Damage::Truncate(index) => text[..at(index).unwrap_or(0)].to_owned(),
        Damage::Replace(index, c) => {
            let mut text = text;
            if let Some(start) = at(index) {
                let end = text[start..]
                    .chars()
                    .next()
                    .map_or(start, |old| start + old.len_utf8());
                text.replace_range(start..end, &c.to_string());
            }
            text
        }
        Damage::Append(tail) => text + tail,
    }
}

/// Sends `cases` bodies from `bodies` to `path`, checking each answer.
fn fuzz_endpoint(server: &Server, path: &str, bodies: impl Strategy<Value = Value>) -> Counts {
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let counts = std::cell::RefCell::new(Counts::default());
    runner
        .run(&(bodies, damage()), |(body, damage)| {
            let text = damaged(body.to_string(), &damage);
            let response = server.request("POST", path, Some(&text), &[]);
            let status = response.status;
            prop_assert!(
                matches!(status, 200 | 201 | 202 | 400 | 404 | 409 | 413 | 422),
                "POST {path} answered {status}: {}\nbody: {text}",
                response.body
            );
            if status >= 400 {
                let error: Value = serde_json::from_str(&response.body).map_err(|e| {
                    TestCaseError::fail(format!(
                        "a {status} without a JSON body ({e}): {}",
                        response.body
                    ))
                })?;
                let message = error["error"].as_str().unwrap_or_default();
                prop_assert!(
                    !message.trim().is_empty(),
                    "a {} with no message: {}",
                    status,
                    response.body
                );
                counts.borrow_mut().refused += 1;
            } else {
                counts.borrow_mut().accepted += 1;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", server.log()));
    counts.into_inner()
}

#[derive(Debug, Default)]
struct Counts {
    accepted: usize,
    refused: usize,
}

#[test]
fn generated_and_damaged_bodies_get_a_clear_answer_and_the_server_stays_up() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let server = s.serve(&[]);
    let tasks = fuzz_endpoint(&server, "/v0/tasks", task_body());
    let plans = fuzz_endpoint(&server, "/v0/plans", plan_body());
    // A plan that exists, so resume bodies reach their own checks.
    let created = server.post("/v0/plans", &json!({"tasks": [{"type": "test-echo"}]}));
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let resume = json!({"from": 0, "allowPluginChange": false});
    let resumes = fuzz_endpoint(&server, &format!("/v0/plans/{id}/resume"), mostly(resume));
    eprintln!("tasks: {tasks:?}, plans: {plans:?}, resume: {resumes:?}");
    // Both sides were reached: the generators are not all refused, nor all accepted.
    for (name, counts) in [("tasks", &tasks), ("plans", &plans), ("resume", &resumes)] {
        assert!(
            counts.accepted > 0 && counts.refused > 0,
            "{name}: {counts:?}"
        );
    }
    assert_eq!(server.get("/v0/livez").status, 200);
    // 130: accepted tasks may still be running when SIGTERM comes (they stay resumable).
    let (code, log) = server.terminate();
    assert!(matches!(code, 0 | 130), "exit {code}\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}
