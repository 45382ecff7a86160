//! The plugin index: a plugin file whose content (sha256) planrt has described before is
//! not compiled, linked or described at start (nor read, while its stamp is unchanged);
//! its component is linked when a task of its type first runs. Other content is loaded
//! in full, whatever the file's name or modification time.

use planrt_e2e::Scratch;

/// The compiled cache entries (`*.cwasm`) in the state dir.
fn compiled(s: &Scratch) -> Vec<std::path::PathBuf> {
    let root = s.state().join("compiled");
    let mut entries: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flat_map(|engine| std::fs::read_dir(engine.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    entries.sort();
    entries
}

fn run(s: &Scratch, task_type: &str) -> serde_json::Value {
    let plan = s.write(
        &format!("{task_type}.toml"),
        &format!("[[tasks]]\ntype = \"{task_type}\"\n"),
    );
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()
}

#[test]
fn an_unchanged_plugin_is_loaded_only_when_a_task_of_its_type_runs() {
    let s = Scratch::with_plugins(&["test-echo", "test-noop"]);
    run(&s, "test-echo");
    let all = compiled(&s);
    assert_eq!(
        all.len(),
        2,
        "the first start compiles every plugin: {all:?}"
    );

    // Without their compiled entries, the next start compiles neither at start: a plan
    // of `test-echo` links (and so compiles) `test-echo` alone.
    for entry in &all {
        std::fs::remove_file(entry).unwrap();
    }
    let doc = run(&s, "test-echo");
    assert_eq!(doc["phase"], "Complete");
    assert_eq!(
        compiled(&s).len(),
        1,
        "only the plugin the plan uses was loaded"
    );
    let listed = s.planrt(&["plugins", "--output", "json"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(listed.stdout.contains("test-noop"), "listed from the index");
    assert_eq!(compiled(&s).len(), 1, "listing loads nothing");

    // Its first task links it: from the bytes hashed at start, or, once its file has been
    // stamped, from the file read again and found to hash as it did.
    run(&s, "test-noop");
    assert_eq!(compiled(&s).len(), 2);
}

#[test]
fn a_file_given_other_content_is_described_again_whatever_its_times() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let before = s.planrt(&["plugins", "--output", "json"]).json();
    assert_eq!(before[0]["taskType"], "test-echo", "{before}");
    // Another plugin's bytes under the same name, its modification time put back.
    let file = s.plugins().join("test-echo.wasm");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::copy(planrt_e2e::plugin_file("test-noop"), &file).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let after = s.planrt(&["plugins", "--output", "json"]).json();
    assert_eq!(after[0]["taskType"], "test-noop", "{after}");
    assert_ne!(before[0]["sha256"], after[0]["sha256"]);
    assert_eq!(run(&s, "test-noop")["phase"], "Complete");
}

#[test]
fn a_plugin_file_whose_name_is_not_utf8_is_a_warning_not_a_crash() {
    use std::os::unix::ffi::OsStrExt;
    let s = Scratch::with_plugins(&["test-echo"]);
    let odd = s
        .plugins()
        .join(std::ffi::OsStr::from_bytes(b"noop-\xff.wasm"));
    std::fs::copy(planrt_e2e::plugin_file("test-noop"), &odd).unwrap();
    for _ in 0..2 {
        let listed = s.planrt(&["plugins"]);
        assert_eq!(listed.code, 0, "{}", listed.stderr);
        assert!(
            listed.stderr.contains("its file name is not UTF-8"),
            "{}",
            listed.stderr
        );
        assert!(!listed.stdout.contains("test-noop"), "{}", listed.stdout);
    }
    assert_eq!(run(&s, "test-echo")["phase"], "Complete");
}
