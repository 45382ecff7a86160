//! Task types in other languages, through the real binary: the C, JavaScript and Python
//! example plugins of `examples/plugins` (built from source by `cargo xtask examples`,
//! which `cargo xtask test` runs first) each complete a plan and get the host's params
//! schema check; and the project `planrt new` writes for each language builds with its
//! `build.sh` and completes its plan.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use planrt_e2e::fixtures::{HttpFixture, Reply};
use planrt_e2e::{Scratch, planrt_bin, workspace_root};
use serde_json::Value;

/// A built example plugin.
fn example_plugin(name: &str) -> PathBuf {
    let file = workspace_root()
        .join("target/examples-build/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        file.exists(),
        "{} is missing: run `cargo xtask examples`",
        file.display()
    );
    file
}

/// The toolchains `cargo xtask examples` installed.
fn lang_tools() -> PathBuf {
    let tools = workspace_root().join("target/lang-tools");
    assert!(
        tools.join("venv/bin/wasm-tools").exists(),
        "no toolchains in {}: run `cargo xtask examples`",
        tools.display()
    );
    tools
}

/// A scratch dir whose plugin dir holds the example plugin `name`.
fn scratch_with(name: &str) -> Scratch {
    let s = Scratch::with_plugins(&[]);
    std::fs::copy(
        example_plugin(name),
        s.plugins().join(format!("{name}.wasm")),
    )
    .unwrap();
    s
}

fn example_file(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join("examples/plugins").join(path)).unwrap()
}

fn run(s: &Scratch, plan: &Path, code: i32) -> (Value, String) {
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, code, "{}", run.stderr);
    let doc = if run.stdout.is_empty() {
        Value::Null
    } else {
        run.json()
    };
    (doc, run.stderr)
}

/// Asserts that the host refused `plan` for its schema, before any task ran, naming the
/// task, the JSON path and the rule.
fn assert_schema_refusal(s: &Scratch, plan: &Path, path: &str, rule: &str) {
    let (_, stderr) = run(s, plan, 2);
    for expected in [
        "task 0",
        "params do not match the plugin's schema",
        &format!("at `{path}`"),
        &format!("(rule `{rule}`)"),
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("started"), "a task ran:\n{stderr}");
}

#[test]
fn the_c_example_writes_its_file_once_and_bad_params_stop_the_plan() {
    let s = scratch_with("write-file");
    std::fs::create_dir(s.path().join("files")).unwrap();
    let plan_text = example_file("write-file-c/plan.toml");
    let plan = s.write("plan.toml", &plan_text);
    let (doc, _) = run(&s, &plan, 0);
    assert_eq!(doc["phase"], "Complete");
    assert_eq!(doc["tasks"][0]["output"]["changed"], true);
    let written = std::fs::read_to_string(s.path().join("files/etc/greeting.conf")).unwrap();
    assert!(
        written.contains("greeting = \"Hello, world!\""),
        "{written}"
    );
    let (again, _) = run(&s, &plan, 0);
    assert_eq!(again["tasks"][0]["output"]["changed"], false);

    // The plugin's own `validate`: a placeholder without a value.
    let unknown = s.write("unknown.toml", &plan_text.replace("{{name}}", "{{user}}"));
    let (_, stderr) = run(&s, &unknown, 2);
    assert!(stderr.contains("{{user}}"), "{stderr}");
    // The host's schema check, before `validate`.
    let extra = s.write(
        "extra.toml",
        &plan_text.replace("vars = {", "mode = \"0644\"\nvars = {"),
    );
    assert_schema_refusal(&s, &extra, "/", "additionalProperties");
}

#[test]
fn the_javascript_example_checks_a_server_and_a_mismatch_is_transient() {
    let s = scratch_with("http-check");
    let server = HttpFixture::start(Arc::new(|target: &str| {
        Some(match target {
            "/health.txt" => Reply::ok("status: ok\n"),
            _ => Reply::not_found(),
        })
    }));
    let plan_text = example_file("http-check-js/plan.toml")
        .replace("127.0.0.1:18080", &server.addr.to_string());
    let plan = s.write("plan.toml", &plan_text);
    let (doc, _) = run(&s, &plan, 0);
    assert_eq!(doc["phase"], "Complete");
    assert_eq!(doc["tasks"][0]["output"]["status"], 200);

    let missing = s.write(
        "missing.toml",
        &plan_text.replace("/health.txt", "/missing"),
    );
    let (failed, _) = run(&s, &missing, 1);
    let attempts = failed["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "retried as transient: {attempts:?}");
    assert!(attempts.iter().all(|a| a["errorKind"] == "transient"));
    assert!(
        attempts[0]["message"].as_str().unwrap().contains("404"),
        "{}",
        attempts[0]
    );

    let wrong_type = s.write(
        "wrong.toml",
        &plan_text.replace("expectStatus = 200", "expectStatus = \"200\""),
    );
    assert_schema_refusal(&s, &wrong_type, "/expectStatus", "type");
}

#[test]
fn the_python_example_renders_a_template_once() {
    let s = scratch_with("render-template");
    let templates = s.path().join("home/templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("motd.txt"),
        example_file("render-template-py/home/templates/motd.txt"),
    )
    .unwrap();
    let plan_text = example_file("render-template-py/plan.toml");
    let plan = s.write("plan.toml", &plan_text);
    let (doc, _) = run(&s, &plan, 0);
    assert_eq!(doc["phase"], "Complete");
    assert_eq!(doc["tasks"][0]["output"]["changed"], true);
    let rendered = std::fs::read_to_string(s.path().join("home/out/motd.txt")).unwrap();
    assert!(rendered.starts_with("Welcome to node-1."), "{rendered}");
    assert!(
        rendered.contains("ask ${owner} (that is, ops)"),
        "{rendered}"
    );
    let (again, _) = run(&s, &plan, 0);
    assert_eq!(again["tasks"][0]["output"]["changed"], false);

    let wrong_type = s.write(
        "wrong.toml",
        &plan_text.replace("owner = \"ops\"", "owner = 7"),
    );
    assert_schema_refusal(&s, &wrong_type, "/vars/owner", "type");
}

/// `planrt new demo --lang LANG` in an empty dir, `./build.sh` as its README says (the
/// tools `cargo xtask examples` installed on PATH), then its `plan.toml` through `planrt
/// run`: the plan's only task's output.
fn new_project_builds_and_runs(lang: &str) -> Value {
    let tools = lang_tools();
    let dir = tempfile::tempdir().unwrap();
    let new = Command::new(planrt_bin())
        .args(["new", "demo", "--lang", lang])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        new.status.success(),
        "{}",
        String::from_utf8_lossy(&new.stderr)
    );
    let project = dir.path().join("demo");
    let adapter = std::fs::read_dir(tools.join("adapter"))
        .unwrap()
        .flatten()
        .map(|e| {
            e.path()
                .join("artefacts/wasi_snapshot_preview1.reactor.wasm")
        })
        .find(|p| p.exists())
        .expect("the reactor adapter");
    let path = std::env::join_paths(
        [
            tools.join("bin"),
            tools.join("venv/bin"),
            tools.join("js/node_modules/.bin"),
        ]
        .into_iter()
        .chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap();
    let build = Command::new(project.join("build.sh"))
        .current_dir(&project)
        .env("PATH", path)
        .env("WASI_ADAPTER", adapter)
        // Rust: the target dir the plugins are built in (its std is built already).
        .env("CARGO_TARGET_DIR", workspace_root().join("target/wasm"))
        .env("XDG_CACHE_HOME", tools.join("cache"))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "build.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    assert!(project.join("plugins/demo.wasm").exists());
    let run = Command::new(planrt_bin())
        .args([
            "run",
            "plan.toml",
            "--plugins",
            "plugins",
            "--state",
            "state",
            "--output",
            "json",
        ])
        .current_dir(&project)
        .env_remove("PLANRT_PLUGINS")
        .env_remove("PLANRT_STATE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let doc: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(doc["phase"], "Complete", "{stderr}");
    doc["tasks"][0]["output"].clone()
}

#[test]
fn planrt_new_rust_builds_and_runs() {
    let output = new_project_builds_and_runs("rust");
    assert_eq!(output["greeting"], "hello, planrt");
    assert_eq!(output["greetings"], 1);
}

#[test]
fn planrt_new_c_builds_and_runs() {
    let output = new_project_builds_and_runs("c");
    assert_eq!(output["params"]["name"], "planrt");
    assert_eq!(output["attempt"], 1);
}

#[test]
fn planrt_new_js_builds_and_runs() {
    let output = new_project_builds_and_runs("js");
    assert_eq!(output["greeting"], "hello, planrt");
    assert_eq!(output["greetings"], 1);
}

#[test]
fn planrt_new_python_builds_and_runs() {
    let output = new_project_builds_and_runs("python");
    assert_eq!(output["greeting"], "hello, planrt");
    assert_eq!(output["greetings"], 1);
}
