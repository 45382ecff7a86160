//! Faults around planrt (issue 11): a full disk under the state dir, a damaged state
//! database, a damaged compiled-cache entry, a plugin file deleted mid-run, the plugin
//! dir missing at resume. Each ends with a clear error naming what is wrong and the
//! documented exit code, and what was committed before the fault is all there after it,
//! read through SQLite, not the CLI.

use std::path::Path;
use std::process::Command;

use planrt_e2e::{Scratch, plugin_file};

/// (status, attempts) of every task of `plan`, straight from the database.
fn stored(db: &Path, plan: &str) -> Vec<(String, i64)> {
    // Read-only: a read-write connection could checkpoint the WAL behind planrt's back.
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT t.status, (SELECT count(*) FROM attempts a WHERE a.plan_id = t.plan_id AND a.task_idx = t.idx)
             FROM tasks t WHERE t.plan_id = ?1 ORDER BY t.idx",
        )
        .unwrap();
    stmt.query_map([plan], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn echo_plan(s: &Scratch, tasks: usize, payload: usize) -> std::path::PathBuf {
    let filler = "x".repeat(payload);
    let text = format!("[[tasks]]\ntype = \"test-echo\"\nparams = {{ pad = \"{filler}\" }}\n")
        .repeat(tasks);
    s.write("p.toml", &text)
}

/// A tmpfs of `mib` MiB mounted at `dir` (root only), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .is_ok_and(|out| out.status.success());
        mounted.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.0).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            // Busy (a child still running): detach it rather than leave it mounted.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
#[ignore = "needs root: mounts a small tmpfs (cargo xtask test runs it as root)"]
fn a_full_disk_under_the_state_dir_loses_nothing_committed_and_resume_finishes() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let _tmpfs = Tmpfs::mount(&s.state(), 24).expect("mounting a tmpfs (run as root)");
    // Warm: the compiled cache and the database exist before the disk fills.
    let warm = echo_plan(&s, 1, 10);
    assert_eq!(s.planrt(&["run", warm.to_str().unwrap()]).code, 0);
    // Fill the disk but for a little room.
    let filler = s.state().join("filler");
    let free = || {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(s.state())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    // Room for the plan to be recorded, not for its run: each commit adds pages to the
    // WAL.
    let room = 512 * 1024;
    std::fs::write(&filler, vec![1u8; (free() - room) as usize]).unwrap();

    // 200 tasks with 500 bytes of params each (each output echoes them).
    let plan = echo_plan(&s, TASKS, 500);
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(
        run.code, 3,
        "a full disk mid-run is an environment failure: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("database or disk is full")
            || run.stderr.contains("No space left on device"),
        "the error says the disk is full: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);

    std::fs::remove_file(&filler).unwrap();
    let db = s.state().join("planrt.db");
    let list = s.planrt(&["status", "--output", "json"]).json();
    let plans: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    // The plan was recorded before the disk filled: what was committed is consistent,
    // and resume finishes it.
    let id = plans
        .into_iter()
        .find(|id| stored(&db, id).len() == TASKS)
        .expect("the plan was recorded");
    {
        let before = stored(&db, &id);
        let complete_before = before.iter().filter(|(st, _)| st == "Complete").count();
        for (status, attempts) in &before {
            match status.as_str() {
                "Complete" => assert_eq!(*attempts, 1, "{before:?}"),
                "Pending" => assert!(*attempts <= 1),
                "Running" => assert_eq!(*attempts, 1),
                other => panic!("task {other}: {before:?}"),
            }
        }
        let resumed = s.planrt(&["resume", &id]);
        assert_eq!(resumed.code, 0, "{}", resumed.stderr);
        let after = stored(&db, &id);
        assert!(after.iter().all(|(st, _)| st == "Complete"), "{after:?}");
        for (index, ((status, attempts), (_, attempts_after))) in
            before.iter().zip(&after).enumerate()
        {
            if status == "Complete" {
                assert_eq!(attempts, attempts_after, "task {index} ran again");
            }
        }
        assert!(
            complete_before > 0 && complete_before < TASKS,
            "the disk filled mid-run, after some tasks were committed: {complete_before}"
        );
        eprintln!(
            "full disk: {complete_before} of {TASKS} tasks were committed complete before it; resume finished the rest"
        );
    }
}

/// Tasks of the full-disk plan.
const TASKS: usize = 200;

#[test]
fn a_damaged_state_database_is_named_and_refused_without_a_panic() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let plan = echo_plan(&s, 1, 10);
    assert_eq!(s.planrt(&["run", plan.to_str().unwrap()]).code, 0);
    let db = s.state().join("planrt.db");
    let whole = std::fs::read(&db).unwrap();
    for damage in ["truncated", "garbage"] {
        match damage {
            "truncated" => std::fs::write(&db, &whole[..whole.len().min(4096) / 2]).unwrap(),
            _ => std::fs::write(&db, b"not a database at all".repeat(300)).unwrap(),
        }
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(s.state().join(format!("planrt.db{suffix}")));
        }
        for args in [vec!["status"], vec!["run", plan.to_str().unwrap()]] {
            let run = s.planrt(&args);
            assert_eq!(run.code, 2, "{damage} {args:?}: {}", run.stderr);
            assert!(
                run.stderr.contains("planrt.db"),
                "names the file: {}",
                run.stderr
            );
            assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        }
    }
}

#[test]
fn a_damaged_compiled_cache_entry_is_recompiled_and_the_plan_runs() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let plan = echo_plan(&s, 1, 10);
    assert_eq!(s.planrt(&["run", plan.to_str().unwrap()]).code, 0);
    let entries: Vec<_> = std::fs::read_dir(s.state().join("compiled"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert!(!entries.is_empty());
    for entry in &entries {
        let len = std::fs::metadata(entry).unwrap().len();
        std::fs::File::options()
            .write(true)
            .open(entry)
            .unwrap()
            .set_len(len / 3)
            .unwrap();
    }
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["phase"], "Complete");
    assert!(
        run.stderr.contains("does not authenticate"),
        "{}",
        run.stderr
    );
}

/// A plan of two test-append tasks whose first waits for `work/go`, run in the
/// background until that task is recorded running: the scratch dir, the plan's ID, and
/// the running `planrt run`.
fn running_a_plan_whose_first_task_waits() -> (Scratch, String, std::process::Child) {
    let s = Scratch::with_plugins(&["test-append"]);
    std::fs::create_dir(s.path().join("work")).unwrap();
    let plan = "[grants]\ndirs = [{ host = \"work\", guest = \"/work\", mode = \"rw\" }]\n\
                [[tasks]]\ntype = \"test-append\"\nparams = { waitFor = \"go\" }\n\
                [[tasks]]\ntype = \"test-append\"\n";
    let (saved, doc) = s.save_plan(plan);
    let id = doc["id"].as_str().unwrap().to_owned();
    let child = s.spawn(&["run", saved.to_str().unwrap(), "--output", "json"]);
    s.wait_for_plan(&id, |d| d["tasks"][0]["status"] == "Running");
    (s, id, child)
}

#[test]
fn a_plugin_deleted_mid_run_and_the_plugin_dir_missing_at_resume() {
    let (s, id, child) = running_a_plan_whose_first_task_waits();
    // The file goes while its plugin runs: the run goes on with the plugin it loaded.
    std::fs::remove_file(s.plugins().join("test-append.wasm")).unwrap();
    std::fs::write(s.path().join("work/go"), "").unwrap();
    assert_eq!(
        planrt_e2e::finished(child).code,
        0,
        "{}",
        s.spawned_stderr()
    );
    let db = s.state().join("planrt.db");
    assert_eq!(
        stored(&db, &id),
        [("Complete".into(), 1), ("Complete".into(), 1)]
    );

    // A resume with the plugin dir gone is refused naming it; nothing changes.
    std::fs::remove_dir_all(s.plugins()).unwrap();
    let resumed = s.planrt(&["resume", &id, "--from", "1"]);
    assert_eq!(resumed.code, 2, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains("plugin directory") && resumed.stderr.contains("does not exist"),
        "{}",
        resumed.stderr
    );
    assert_eq!(
        stored(&db, &id),
        [("Complete".into(), 1), ("Complete".into(), 1)]
    );
}

#[test]
fn a_plugin_replaced_mid_run_changes_nothing_in_the_run_and_stops_the_next_resume() {
    let (s, id, child) = running_a_plan_whose_first_task_waits();
    // Another component under the same name (it fails every task, permanently): the run
    // goes on with the bytes it hashed and pinned, so task 1 still runs test-append.
    let file = s.plugins().join("test-append.wasm");
    std::fs::copy(plugin_file("test-permanent"), &file).unwrap();
    std::fs::write(s.path().join("work/go"), "").unwrap();
    assert_eq!(
        planrt_e2e::finished(child).code,
        0,
        "{}",
        s.spawned_stderr()
    );
    let db = s.state().join("planrt.db");
    assert_eq!(
        stored(&db, &id),
        [("Complete".into(), 1), ("Complete".into(), 1)]
    );
    let effects = std::fs::read_to_string(s.path().join("work/effects.log")).unwrap();
    assert_eq!(effects.lines().count(), 2, "{effects}");

    // The next resume sees what is in the dir now and stops before anything runs: the
    // type is gone...
    let resumed = s.planrt(&["resume", &id, "--from", "1"]);
    assert_eq!(resumed.code, 2, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains("unknown task type `test-append`"),
        "{}",
        resumed.stderr
    );
    // ...or, with test-append back but as other bytes, it differs from the pin.
    std::fs::copy(plugin_file("test-append"), &file).unwrap();
    s.change_plugin("test-append");
    let resumed = s.planrt(&["resume", &id, "--from", "1"]);
    assert_eq!(resumed.code, 2, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains(file.to_str().unwrap()) && resumed.stderr.contains("changed"),
        "{}",
        resumed.stderr
    );
    assert_eq!(
        stored(&db, &id),
        [("Complete".into(), 1), ("Complete".into(), 1)]
    );
    let effects = std::fs::read_to_string(s.path().join("work/effects.log")).unwrap();
    assert_eq!(effects.lines().count(), 2, "nothing ran again: {effects}");
}

#[test]
#[cfg(target_os = "linux")]
fn stdout_on_a_full_device_is_exit_3_and_a_reader_that_leaves_early_is_not_an_error() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = s.command(&["plugins"]).stdout(full).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cannot write the result to stdout: No space left on device"),
        "{stderr}"
    );
    // A pipe whose reader is gone before planrt writes: the write fails with EPIPE
    // (planrt ignores SIGPIPE), and that is not a failure of the run.
    let plan = s.write("p.toml", "[[tasks]]\ntype = \"test-echo\"\n");
    let mut child = s
        .command(&["run", plan.to_str().unwrap(), "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = planrt_e2e::finished(child);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
#[ignore = "needs root: remounts a tmpfs read-only (cargo xtask test runs it as root)"]
fn a_read_only_state_dir_refuses_work_and_still_shows_what_it_holds() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let _tmpfs = Tmpfs::mount(&s.state(), 24).expect("mounting a tmpfs (run as root)");
    let plan = echo_plan(&s, 1, 10);
    let first = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let remount = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(s.state())
        .status()
        .unwrap();
    assert!(remount.success());

    let run = s.planrt(&["run", plan.to_str().unwrap()]);
    // Refused before any work: an unusable state dir is bad input (README, exit codes).
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(s.state().to_str().unwrap()) && run.stderr.contains("Read-only"),
        "names the state dir and why: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let status = s.planrt(&["status", &id, "--output", "json"]);
    assert_eq!(status.code, 0, "a reader needs no write: {}", status.stderr);
    assert_eq!(status.json()["phase"], "Complete");
}
