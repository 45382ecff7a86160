//! What must hold for any input to planrt's parsers and to the snapshot extractor. Each
//! oracle takes raw bytes, panics on a violation (which `cargo fuzz` and proptest both
//! report with the input), and returns normally otherwise. A clean rejection is fine; a
//! panic inside the code under test, an empty error message, an accepted plan that cannot
//! run, or a byte written outside the extraction root is not.

use std::path::{Path, PathBuf};

pub mod seeds;

use planrt_plan::{
    Phase, PlanId, PlanRun, PlanSpec, SavedPlan, TaskEvent, TaskSettings, TaskStatus,
};

/// The file name parse errors must name.
const PLAN_FILE: &str = "fuzz-plan.toml";

/// A plan file (TOML): refused with `file:line:col: message`, or accepted as a plan that
/// runs to completion.
pub fn plan_toml(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return; // The CLI reads files as UTF-8 and refuses others before parsing.
    };
    match PlanSpec::parse(text, Path::new(PLAN_FILE)) {
        Ok(spec) => runs_to_completion(&spec),
        Err(error) => {
            let shown = error.to_string();
            assert!(
                shown.starts_with(&format!("{PLAN_FILE}:")),
                "the error does not name the file: {shown}"
            );
            assert!(
                !error.message.trim().is_empty(),
                "an empty message: {shown}"
            );
            assert!(
                error.location.line >= 1 && error.location.column >= 1,
                "{shown}"
            );
        }
    }
}

/// A plan sent as JSON (the body of `POST /v0/plans`): refused with a message naming what
/// is wrong, or accepted as a plan that runs to completion.
pub fn plan_json(input: &[u8]) {
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(input) else {
        return; // serde_json's own refusal: the server answers 400 with its message.
    };
    match PlanSpec::from_json(&document) {
        Ok(spec) => runs_to_completion(&spec),
        Err(error) => {
            assert!(
                !error.0.trim().is_empty(),
                "an empty message for {document}"
            );
        }
    }
}

/// The settings of a task submitted on its own (TOML): refused with `file:line:col`, or
/// accepted.
pub fn task_settings(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Err(error) = TaskSettings::parse(text, Path::new(PLAN_FILE)) {
        assert!(
            !error.message.trim().is_empty(),
            "an empty message: {error}"
        );
        assert!(
            error.to_string().starts_with(&format!("{PLAN_FILE}:")),
            "{error}"
        );
    }
}

/// A saved plan as the store keeps it (JSON): refused with a message, or a fresh plan
/// that runs to completion and saves back to the same plan.
pub fn saved_plan(input: &[u8]) {
    let Ok(saved) = serde_json::from_slice::<SavedPlan>(input) else {
        return;
    };
    match saved.to_plan_run() {
        Ok(run) => {
            let again = SavedPlan::of(saved.resolution(), run.document());
            let text = serde_json::to_vec(&again).expect("a saved plan serializes");
            let reread: SavedPlan = serde_json::from_slice(&text).expect("it reads back");
            assert_eq!(reread, again, "a saved plan does not read back as written");
            let rerun = reread
                .to_plan_run()
                .expect("a saved plan written back still runs");
            assert_eq!(rerun.document(), run.document());
            drive_to_completion(run);
        }
        Err(error) => assert!(!error.to_string().trim().is_empty()),
    }
}

/// Every task of an accepted plan runs, each only after its dependencies completed, and
/// the plan completes: no accepted graph deadlocks or runs a task early.
fn runs_to_completion(spec: &PlanSpec) {
    let run = PlanRun::new(PlanId::new_random(), spec.name.clone(), &spec.tasks)
        .expect("a plan the parser accepted must build");
    assert_eq!(run.tasks().len(), spec.tasks.len());
    drive_to_completion(run);
}

/// Succeeds every runnable task, round after round, checking each waited for its
/// dependencies, until the plan completes.
fn drive_to_completion(mut run: PlanRun) {
    let now = jiff::Timestamp::UNIX_EPOCH;
    let tasks = run.tasks().len();
    // A chain needs one round per task; no plan needs more.
    for _ in 0..=tasks {
        if run.phase() == Phase::Complete {
            return;
        }
        let ready: Vec<usize> = run.runnable(now).collect();
        assert!(!ready.is_empty(), "an active plan with nothing runnable");
        for index in ready {
            for dependency in run.graph().dependencies(index) {
                assert_eq!(
                    run.tasks()[dependency].status(),
                    TaskStatus::Complete,
                    "task {index} runnable before its dependency {dependency}"
                );
            }
            run.apply(index, TaskEvent::Start { at: now }).unwrap();
            let done = TaskEvent::Succeed {
                at: now,
                output: serde_json::Value::Null,
                log_tail: None,
                progress: None,
            };
            run.apply(index, done).unwrap();
        }
    }
    assert_eq!(run.phase(), Phase::Complete, "the plan did not complete");
}

/// A tar stream given to the extractor.
pub fn snapshot_tar(input: &[u8]) {
    extract_and_check(input);
}

/// A gzip stream, unpacked on the way in as the plugin does.
pub fn snapshot_targz(input: &[u8]) {
    extract_and_check(flate2::read::GzDecoder::new(input));
}

/// Extracts `archive` into a [`Home`], then checks that nothing but `staging/data/…` was
/// created, that every symlink there leads inside it, and that the sentinels are untouched.
fn extract_and_check(archive: impl std::io::Read) {
    let home = Home::new();
    if let Err(error) = snapshot_restore::archive::extract(archive, &home.staging()) {
        assert!(!error.to_string().trim().is_empty(), "an empty error");
    }
    home.assert_only_data_written();
}

/// A node home for one extraction, two levels below the temporary dir so that an escape
/// of several `..` lands where it is seen: `top/home/staging/` is the root given to the
/// extractor, with sentinel files beside it (`top/home/config/config.toml`) and above it
/// (`top/sentinel`) that no entry may reach.
struct Home(tempfile::TempDir);

/// The sentinel files, relative to the temporary dir.
const SENTINELS: [&str; 2] = ["top/home/config/config.toml", "top/sentinel"];

impl Home {
    fn new() -> Self {
        let home = Home(scratch_dir());
        std::fs::create_dir_all(home.staging()).unwrap();
        for sentinel in SENTINELS {
            let path = home.0.path().join(sentinel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"sentinel").unwrap();
        }
        home
    }

    fn staging(&self) -> PathBuf {
        self.0.path().join("top/home/staging")
    }

    fn assert_only_data_written(&self) {
        let root = self.0.path();
        let staging = self.staging();
        let data = staging.join(snapshot_restore::archive::DATA_DIR);
        let expected: Vec<PathBuf> = ["top", "top/home", "top/home/config", "top/home/staging"]
            .iter()
            .chain(SENTINELS.iter())
            .map(|p| root.join(p))
            .collect();
        for entry in walkdir::WalkDir::new(root).min_depth(1) {
            let entry = entry.unwrap();
            let path = entry.path();
            let allowed = expected.iter().any(|p| p == path) || path.starts_with(&data);
            assert!(
                allowed,
                "the extractor wrote outside data/: {}",
                path.display()
            );
            if entry.path_is_symlink() {
                assert_link_stays_inside(path, &data);
            }
        }
        for sentinel in SENTINELS {
            assert_eq!(
                std::fs::read(root.join(sentinel)).unwrap(),
                b"sentinel",
                "a file outside the root changed: {sentinel}"
            );
        }
    }
}

/// A symlink left in `data/` must lead inside it on disk: resolved when its target exists,
/// else (dangling) at least without going up or out as text.
fn assert_link_stays_inside(link: &Path, data: &Path) {
    match std::fs::canonicalize(link) {
        Ok(resolved) => {
            let data = std::fs::canonicalize(data).unwrap();
            assert!(
                resolved.starts_with(&data),
                "the symlink {} leads out of data/, to {}",
                link.display(),
                resolved.display()
            );
        }
        Err(_) => {
            let target = std::fs::read_link(link).unwrap();
            assert!(
                target.components().all(|c| matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )),
                "the dangling symlink {} points up or out: {}",
                link.display(),
                target.display()
            );
        }
    }
}

/// A temporary dir, on tmpfs when there is one: the extractor syncs every file, and disk
/// syncs would make fuzzing slow without testing anything more.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_under_the_root_is_allowed() {
        let home = Home::new();
        std::fs::create_dir_all(home.staging().join("data/a")).unwrap();
        std::fs::write(home.staging().join("data/a/f"), b"x").unwrap();
        std::os::unix::fs::symlink("a/f", home.staging().join("data/link")).unwrap();
        home.assert_only_data_written();
    }

    #[test]
    #[should_panic(expected = "wrote outside data/")]
    fn a_file_beside_data_is_caught() {
        let home = Home::new();
        std::fs::write(home.staging().join("escaped"), b"x").unwrap();
        home.assert_only_data_written();
    }

    #[test]
    #[should_panic(expected = "wrote outside data/")]
    fn a_file_two_levels_up_is_caught() {
        let home = Home::new();
        std::fs::write(home.0.path().join("top/planted"), b"x").unwrap();
        home.assert_only_data_written();
    }

    #[test]
    #[should_panic(expected = "a file outside the root changed")]
    fn a_changed_sentinel_is_caught() {
        let home = Home::new();
        std::fs::write(home.0.path().join("top/sentinel"), b"changed").unwrap();
        home.assert_only_data_written();
    }

    #[test]
    #[should_panic(expected = "leads out of data/")]
    fn a_link_inside_data_that_resolves_outside_is_caught() {
        let home = Home::new();
        std::fs::create_dir_all(home.staging().join("data/a")).unwrap();
        std::os::unix::fs::symlink("..", home.staging().join("data/a/up")).unwrap();
        std::os::unix::fs::symlink("a/up/..", home.staging().join("data/out")).unwrap();
        home.assert_only_data_written();
    }

    #[test]
    #[should_panic(expected = "points up or out")]
    fn a_dangling_link_going_up_is_caught() {
        let home = Home::new();
        std::fs::create_dir_all(home.staging().join("data")).unwrap();
        std::os::unix::fs::symlink("../../nowhere", home.staging().join("data/l")).unwrap();
        home.assert_only_data_written();
    }
}
