//! Bad input: exit 2 before any task runs, nothing on stdout, the problem and its
//! location on stderr (docs/DESIGN.md §4, §8).

use planrt_e2e::{Run, Scratch};

fn refused(s: &Scratch, plan: &str) -> Run {
    let path = s.write("p.toml", plan);
    let run = s.planrt(&["run", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(
        run.code, 2,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert_eq!(run.stdout, "", "nothing on stdout on exit 2");
    assert!(
        !run.stderr.contains("attempt 1 started"),
        "a task ran: {}",
        run.stderr
    );
    run
}

fn assert_mentions(run: &Run, needles: &[&str]) {
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            run.stderr
        );
    }
}

const ECHO: &str = "[[tasks]]\ntype = \"test-echo\"\n";

#[test]
fn unknown_task_type() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let run = refused(&s, &format!("{ECHO}[[tasks]]\ntype = \"no-such-type\"\n"));
    assert_mentions(&run, &["p.toml:4:8", "unknown task type `no-such-type`"]);
}

#[test]
fn unknown_key() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let run = refused(&s, &format!("{ECHO}maxRetriez = 3\n"));
    assert_mentions(&run, &["p.toml:3:1", "unknown field `maxRetriez`"]);
}

#[test]
fn bad_names_and_depends_on_are_located() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let run = refused(&s, &format!("{ECHO}dependsOn = [0]\n"));
    assert_mentions(
        &run,
        &[
            "p.toml:3:14",
            "invalid type: integer `0`, expected a string",
        ],
    );
    let run = refused(&s, &format!("{ECHO}name = \"Fetch\"\n"));
    assert_mentions(&run, &["p.toml:3:8", "task name `Fetch` must match"]);
}

#[test]
fn bad_limits_and_http_grants_are_located() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let run = refused(&s, &format!("{ECHO}timeout = \"soon\"\n"));
    assert_mentions(&run, &["p.toml:3:11", "not a duration"]);
    let run = refused(&s, &format!("[defaults]\nmemoryLimit = \"lots\"\n{ECHO}"));
    assert_mentions(&run, &["p.toml:2:15", "not a size"]);
    let run = refused(
        &s,
        &format!("[grants]\nhttp = [\"https://example.com/\"]\n{ECHO}"),
    );
    assert_mentions(&run, &["p.toml:2:9", "not an HTTP grant"]);
}

#[test]
fn bad_toml_and_wrong_types() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let run = refused(&s, "[[tasks]\ntype = \"test-echo\"\n");
    assert_mentions(&run, &["p.toml:1:"]);
    let run = refused(&s, &format!("{ECHO}maxRetries = \"three\"\n"));
    assert_mentions(&run, &["p.toml:3:14", "invalid type"]);
    let run = refused(
        &s,
        &format!("[defaults]\nbackoff = {{ initial = \"soon\" }}\n{ECHO}"),
    );
    assert_mentions(&run, &["p.toml:2:23", "not a duration"]);
}

#[test]
fn a_missing_plan_file_or_plugin_dir() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let run = s.planrt(&["run", s.path().join("missing.toml").to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert_mentions(&run, &["missing.toml"]);
    std::fs::remove_dir_all(s.plugins()).unwrap();
    let plan = s.write("p.toml", ECHO);
    let run = s.planrt(&["run", plan.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert_mentions(&run, &["plugin directory", "does not exist"]);
}

#[test]
fn a_need_the_plan_does_not_grant() {
    let s = Scratch::with_plugins(&["config-patch"]);
    let plan = "[[tasks]]\ntype = \"config-patch\"\n[tasks.params.files.\"config.toml\"]\nmoniker = \"x\"\n";
    let run = refused(&s, plan);
    assert_mentions(
        &run,
        &[
            "task 0",
            "config-patch",
            "config-patch.wasm",
            "directory `/home/config` (rw)",
        ],
    );

    // Read-only is not enough for a read-write need.
    std::fs::create_dir_all(s.path().join("home/config")).unwrap();
    let run = refused(
        &s,
        &format!(
            "[grants]\ndirs = [{{ host = \"home\", guest = \"/home\", mode = \"ro\" }}]\n{plan}"
        ),
    );
    assert_mentions(&run, &["directory `/home/config` (rw)"]);

    // A granted host directory must exist.
    let run = refused(
        &s,
        &format!(
            "[grants]\ndirs = [{{ host = \"nowhere\", guest = \"/home\", mode = \"rw\" }}]\n{plan}"
        ),
    );
    assert_mentions(&run, &["nowhere", "does not exist"]);
}

#[test]
fn a_broken_plugin_file_is_a_warning_and_a_duplicate_type_an_error() {
    let s = Scratch::with_plugins(&["test-echo"]);
    std::fs::write(s.plugins().join("broken.wasm"), b"not a component").unwrap();
    let run = s.planrt(&["plugins", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_mentions(&run, &["broken.wasm", "not a valid component"]);
    let list = run.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["taskType"], "test-echo");
    assert_eq!(list[0]["witVersion"], "0.3.0");

    std::fs::copy(
        s.plugins().join("test-echo.wasm"),
        s.plugins().join("echo-copy.wasm"),
    )
    .unwrap();
    let run = s.planrt(&["plugins"]);
    assert_eq!(run.code, 2);
    assert_mentions(
        &run,
        &[
            "task type `test-echo`",
            "echo-copy.wasm",
            "plugins/test-echo.wasm",
        ],
    );
}

#[test]
fn usage_errors_exit_2() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let run = s.planrt(&["frobnicate"]);
    assert_eq!(run.code, 2);
    let run = s.planrt(&["plugins", "--output", "yaml"]);
    assert_eq!(run.code, 2);
}

#[test]
fn global_flags_work_before_the_command_and_from_the_environment() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let plan = s.write("p.toml", ECHO);
    let out = std::process::Command::new(planrt_e2e::planrt_bin())
        .args(["--output", "json", "--plugins"])
        .arg(s.plugins())
        .arg("plan")
        .arg(&plan)
        .env("PLANRT_STATE", s.path().join("state-from-env"))
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["tasks"][0]["type"], "test-echo");
    assert!(
        s.path().join("state-from-env").is_dir(),
        "a missing state dir is created"
    );
}

#[test]
fn an_allocator_planrt_does_not_know_is_refused_naming_the_known_ones() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let plan = s.write("p.toml", ECHO);
    let mut command = s.command(&["run", plan.to_str().unwrap(), "--output", "json"]);
    command.env("PLANRT_ALLOCATOR", "arena");
    let run = Run::from(command.output().unwrap());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert_mentions(
        &run,
        &["PLANRT_ALLOCATOR=arena is not an allocator planrt knows (pooling, on-demand)"],
    );
    // Both known ones run the plan.
    for allocator in ["pooling", "on-demand"] {
        let mut command = s.command(&["run", plan.to_str().unwrap()]);
        command.env("PLANRT_ALLOCATOR", allocator);
        let run = Run::from(command.output().unwrap());
        assert_eq!(run.code, 0, "{allocator}: {}", run.stderr);
    }
}
