//! The state directory: private to its user, a compiled cache that never loads a file it
//! did not write, readers that change nothing, concurrent plans, and the exit code of a
//! store that fails after work started.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use planrt_e2e::{Run, Scratch, planrt_bin};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn the_state_dir_is_made_private_and_a_shared_one_is_refused() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let plan = s.write("p.toml", "[[tasks]]\ntype = \"test-echo\"\n");
    let run = s.planrt(&["run", plan.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let state = s.state();
    assert_eq!(mode(&state), 0o700);
    for dir in ["claims", "compiled"] {
        assert_eq!(mode(&state.join(dir)), 0o700, "{dir}");
    }
    for file in ["planrt.db", "cache.key"] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
    for entry in std::fs::read_dir(state.join("claims")).unwrap() {
        assert_eq!(mode(&entry.unwrap().path()), 0o600);
    }

    // Writable by group or others: refused before anything runs, saying why.
    for (dir, bits) in [(state.clone(), 0o770), (state.join("compiled"), 0o707)] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bits)).unwrap();
        for args in [vec!["run", plan.to_str().unwrap()], vec!["plugins"]] {
            let run = s.planrt(&args);
            assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
            assert!(
                run.stderr.contains("writable by group or others")
                    && run.stderr.contains(dir.to_str().unwrap()),
                "{}",
                run.stderr
            );
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
}

#[test]
#[ignore = "needs root (to give the state dir to another user); cargo xtask test runs it as root"]
fn a_state_dir_of_another_user_is_refused() {
    let s = Scratch::with_plugins(&["test-echo"]);
    std::fs::create_dir(s.state()).unwrap();
    let chown = Command::new("chown")
        .args(["65534:65534"])
        .arg(s.state())
        .status()
        .unwrap();
    assert!(chown.success());
    let plan = s.write("p.toml", "[[tasks]]\ntype = \"test-echo\"\n");
    for args in [vec!["run", plan.to_str().unwrap()], vec!["status"]] {
        let run = s.planrt(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("owned by uid 65534"), "{}", run.stderr);
    }
}

#[test]
fn a_planted_compiled_cache_entry_is_never_loaded() {
    // Plant test-echo's compiled code under test-trap's name: loading it would run the
    // echo where the trap is expected.
    let s = Scratch::with_plugins(&["test-echo", "test-trap"]);
    assert_eq!(s.planrt(&["plugins"]).code, 0);
    let compiled = std::fs::read_dir(s.state().join("compiled"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let sha = |task_type: &str| {
        let bytes = std::fs::read(s.plugins().join(format!("{task_type}.wasm"))).unwrap();
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    };
    let entry = |task_type: &str| compiled.join(format!("{}.cwasm", sha(task_type)));
    std::fs::copy(entry("test-echo"), entry("test-trap")).unwrap();

    let plan = s.write("p.toml", "[[tasks]]\ntype = \"test-trap\"\n");
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.json()["tasks"][0]["attempts"][0]["errorKind"], "trap");
    assert!(
        run.stderr.contains("does not authenticate"),
        "the planted entry was noticed: {}",
        run.stderr
    );
    // It was replaced by the real compilation, which later runs load.
    let again = s.planrt(&["run", plan.to_str().unwrap()]);
    assert_eq!(again.code, 1);
    assert!(
        !again.stderr.contains("does not authenticate"),
        "{}",
        again.stderr
    );

    // A file that merely looks like an entry, and a damaged one, fare the same.
    std::fs::write(entry("test-trap"), b"PLANRTC2 not a real entry").unwrap();
    let run = s.planrt(&["run", plan.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("does not authenticate"),
        "{}",
        run.stderr
    );
}

#[test]
fn status_and_history_need_no_plugin_dir_and_create_nothing() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let missing_state = s.path().join("no-state-yet");
    let read = |args: &[&str], state: &Path| -> Run {
        Command::new(planrt_bin())
            .args(args)
            .args(["--plugins", "/nonexistent/planrt-plugins", "--state"])
            .arg(state)
            .output()
            .unwrap()
            .into()
    };
    let run = read(&["status"], &missing_state);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "no plans yet\n");
    let run = read(&["status", "--output", "json"], &missing_state);
    assert_eq!(run.json(), serde_json::json!([]));
    let id = "5f0c2f8e-3c4b-4d8a-9f1e-2a3b4c5d6e7f";
    let run = read(&["history", id], &missing_state);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(&format!("no plan {id}")),
        "{}",
        run.stderr
    );
    assert!(!missing_state.exists(), "a reader created the state dir");

    let plan = s.write("p.toml", "[[tasks]]\ntype = \"test-echo\"\n");
    let ran = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let plan_id = ran.json()["id"].as_str().unwrap().to_owned();
    let run = read(&["history", &plan_id], &s.state());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("STARTED"), "{}", run.stdout);
    assert!(run.stdout.contains("test-echo"), "{}", run.stdout);
}

#[test]
fn status_and_history_read_a_read_only_state_dir() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let plan = s.write("p.toml", "[[tasks]]\ntype = \"test-echo\"\n");
    let ran = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let plan_id = ran.json()["id"].as_str().unwrap().to_owned();
    let state = s.state();
    let listing = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing(&state);

    // Root can write anywhere: read as another user who owns the (read-only) state.
    let as_root = is_root();
    if as_root {
        let chown = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&state)
            .status()
            .unwrap();
        assert!(chown.success());
        std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o500)).unwrap();
    let read = |args: &[&str]| -> Run {
        let mut command = if as_root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(planrt_bin());
            c
        } else {
            Command::new(planrt_bin())
        };
        command
            .args(args)
            .arg("--state")
            .arg(&state)
            .env("HOME", "/nonexistent")
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    };
    let status = read(&["status", &plan_id, "--output", "json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(status.json()["phase"], "Complete");
    let list = read(&["status"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(list.stdout.contains(&plan_id), "{}", list.stdout);
    let history = read(&["history", &plan_id, "--output", "json"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    assert_eq!(history.json().as_array().unwrap().len(), 1);
    assert_eq!(listing(&state), before, "nothing was created");

    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    if as_root {
        Command::new("chown")
            .args(["-R", "0:0"])
            .arg(&state)
            .status()
            .unwrap();
    }
}

#[test]
fn several_plans_run_at_once_in_one_fresh_state_dir() {
    let s = Scratch::with_plugins(&["test-echo", "test-flaky"]);
    // Warm the compiled cache (no database yet), so the runs below overlap in their
    // store work: creating the database, migrating it, recording plans.
    assert_eq!(s.planrt(&["plugins"]).code, 0);
    assert!(!s.state().join("planrt.db").exists());
    let children: Vec<_> = (0..6)
        .map(|i| {
            let plan = s.write(
                &format!("p{i}.toml"),
                &"[[tasks]]\ntype = \"test-echo\"\n[[tasks]]\ntype = \"test-flaky\"\nparams = { failures = 0 }\n"
                    .repeat(3),
            );
            s.command(&["run", plan.to_str().unwrap(), "--durability", "process"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = planrt_e2e::finished(child);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let list = s.planrt(&["status", "--output", "json"]).json();
    let plans = list.as_array().unwrap();
    assert_eq!(plans.len(), 6);
    assert!(plans.iter().all(|p| p["phase"] == "Complete"), "{list}");
}

#[test]
fn a_store_that_fails_after_work_started_exits_3_and_the_plan_resumes() {
    // A file size limit stands in for a full disk: the plan is recorded and its attempt
    // starts, then recording the attempt's 600 kB output fails (EFBIG, SIGXFSZ ignored).
    let s = Scratch::with_plugins(&["test-chatty"]);
    let plan = s.write(
        "p.toml",
        "[[tasks]]\ntype = \"test-chatty\"\nparams = { outputBytes = 600000 }\n",
    );
    let command = format!(
        "trap '' XFSZ; exec prlimit --fsize=300000 -- {} run {} --plugins {} --state {} --output json",
        planrt_bin().display(),
        plan.display(),
        s.plugins().display(),
        s.state().display()
    );
    let run: Run = Command::new("sh")
        .args(["-c", &command])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.stdout, "", "no document when the run could not finish");
    assert!(run.stderr.contains("planrt resume"), "{}", run.stderr);
    let plan_id = run
        .stderr
        .split("planrt resume ")
        .nth(1)
        .and_then(|rest| rest.get(..36))
        .unwrap()
        .to_owned();

    // What was committed before the failure is there, and the plan completes on resume.
    let status = s.planrt(&["status", &plan_id, "--output", "json"]).json();
    assert_eq!(status["tasks"][0]["status"], "Running");
    let resumed = s.planrt(&["resume", &plan_id, "--output", "json"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let attempts = &resumed.json()["tasks"][0]["attempts"];
    assert_eq!(attempts[0]["errorKind"], "interrupted");
    assert_eq!(attempts[1]["outcome"], "complete");
}
