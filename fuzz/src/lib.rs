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

/// A saved plan as the store keeps it (JSON): refused, or a fresh plan whose task IDs are
/// the ones its plan ID and types derive.
pub fn saved_plan(input: &[u8]) {
    let Ok(saved) = serde_json::from_slice::<SavedPlan>(input) else {
        return;
    };
    match saved.to_plan_run() {
        Ok(run) => {
            for task in run.tasks() {
                assert_eq!(
                    task.id(),
                    planrt_plan::TaskId::derive(run.id(), task.task_type(), task.index()),
                    "a saved plan's task ID is not the derived one"
                );
            }
        }
        Err(error) => assert!(!error.to_string().trim().is_empty()),
    }
}

/// Every task of an accepted plan runs, each only after its dependencies completed, and
/// the plan completes: no accepted graph deadlocks or runs a task early.
fn runs_to_completion(spec: &PlanSpec) {
    let mut run = PlanRun::new(PlanId::new_random(), spec.name.clone(), &spec.tasks)
        .expect("a plan the parser accepted must build");
    assert_eq!(run.tasks().len(), spec.tasks.len());
    let now = jiff::Timestamp::UNIX_EPOCH;
    // A chain needs one round per task; no plan needs more.
    for _ in 0..=spec.tasks.len() {
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

/// Extracts `archive` under `<tmp>/staging` beside a sentinel dir and file, then checks
/// that nothing but `<tmp>/staging/data/…` was created and the sentinels are untouched.
fn extract_and_check(archive: impl std::io::Read) {
    let home = Home::new();
    if let Err(error) = snapshot_restore::archive::extract(archive, &home.staging()) {
        assert!(!error.to_string().trim().is_empty(), "an empty error");
    }
    home.assert_only_data_written();
}

/// A node home for one extraction: `staging/` (the root given to the extractor) and
/// `config/config.toml`, a sentinel no entry may reach.
struct Home(tempfile::TempDir);

impl Home {
    fn new() -> Self {
        let home = Home(scratch_dir());
        std::fs::create_dir(home.staging()).unwrap();
        std::fs::create_dir(home.config()).unwrap();
        std::fs::write(home.config().join("config.toml"), b"sentinel").unwrap();
        home
    }

    fn staging(&self) -> PathBuf {
        self.0.path().join("staging")
    }

    fn config(&self) -> PathBuf {
        self.0.path().join("config")
    }

    fn assert_only_data_written(&self) {
        let (staging, config) = (self.staging(), self.config());
        let data = staging.join(snapshot_restore::archive::DATA_DIR);
        let mut found = Vec::new();
        walk(self.0.path(), &mut found);
        for path in found {
            let allowed = path == staging
                || path == config
                || path == config.join("config.toml")
                || path.starts_with(&data);
            assert!(
                allowed,
                "the extractor wrote outside data/: {}",
                path.display()
            );
        }
        assert_eq!(
            std::fs::read(config.join("config.toml")).unwrap(),
            b"sentinel",
            "a file outside the root changed"
        );
    }
}

/// Every path under `dir`, not following symlinks.
fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let is_dir = entry.file_type().unwrap().is_dir();
        found.push(path.clone());
        if is_dir {
            walk(&path, found);
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
    fn a_file_in_the_sentinel_dir_is_caught() {
        let home = Home::new();
        std::fs::write(home.config().join("planted"), b"x").unwrap();
        home.assert_only_data_written();
    }

    #[test]
    #[should_panic(expected = "a file outside the root changed")]
    fn a_changed_sentinel_is_caught() {
        let home = Home::new();
        std::fs::write(home.config().join("config.toml"), b"changed").unwrap();
        home.assert_only_data_written();
    }
}
