//! The plugin index: an unchanged plugin file is neither read nor compiled at start; its
//! component is loaded when a task of its type first runs. A changed file is loaded in
//! full again.

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

/// A file is indexed only once it has been still for 3 s (a rewrite within one timestamp
/// tick would not show): the files just copied must settle first.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(3200));
}

#[test]
fn an_unchanged_plugin_is_loaded_only_when_a_task_of_its_type_runs() {
    let s = Scratch::with_plugins(&["test-echo", "test-noop"]);
    settle();
    run(&s, "test-echo");
    let all = compiled(&s);
    assert_eq!(
        all.len(),
        2,
        "the first start compiles every plugin: {all:?}"
    );

    // Without their compiled entries, the next start reads neither file: a plan of
    // `test-echo` loads (and so compiles) `test-echo` alone.
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

    // Its first task loads it: from its file, checked against the sha256 it was indexed
    // with.
    run(&s, "test-noop");
    assert_eq!(compiled(&s).len(), 2);
}

#[test]
fn a_changed_plugin_file_is_loaded_again_in_full() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let before = s.planrt(&["plugins", "--output", "json"]).json();
    s.change_plugin("test-echo");
    let after = s.planrt(&["plugins", "--output", "json"]).json();
    let sha = |doc: &serde_json::Value| doc[0]["sha256"].clone();
    assert_ne!(sha(&before), sha(&after), "{before} {after}");
    assert_eq!(run(&s, "test-echo")["phase"], "Complete");
}

#[test]
fn a_plugin_file_whose_name_is_not_utf8_is_a_warning_not_a_crash() {
    use std::os::unix::ffi::OsStrExt;
    let s = Scratch::with_plugins(&["test-echo"]);
    let odd = s
        .plugins()
        .join(std::ffi::OsStr::from_bytes(b"noop-\xff.wasm"));
    std::fs::copy(planrt_e2e::plugin_file("test-noop"), &odd).unwrap();
    settle();
    for _ in 0..2 {
        let listed = s.planrt(&["plugins"]);
        assert_eq!(listed.code, 0, "{}", listed.stderr);
        assert!(
            listed.stderr.contains("its path is not UTF-8"),
            "{}",
            listed.stderr
        );
        assert!(!listed.stdout.contains("test-noop"), "{}", listed.stdout);
    }
    assert_eq!(run(&s, "test-echo")["phase"], "Complete");
}
