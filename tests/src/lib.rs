//! Helpers for end-to-end tests: run the real `planrt` binary in a scratch directory
//! with a chosen set of real plugin components.
//!
//! The binary and plugins are built by `cargo xtask test` (or `cargo build -p planrt`
//! and `cargo xtask plugins`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod server;

pub use planrt_fixtures as fixtures;
pub use planrt_fixtures::HttpFixture;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The `planrt` binary next to this test executable (`target/<profile>/planrt`).
pub fn planrt_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PLANRT_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("planrt");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p planrt` (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// The built component of `task_type` (shipped or test-only).
pub fn plugin_file(task_type: &str) -> PathBuf {
    let root = workspace_root();
    for dir in ["target/plugins", "target/test-plugins"] {
        let file = root.join(dir).join(format!("{task_type}.wasm"));
        if file.exists() {
            return file;
        }
    }
    panic!(
        "plugin {task_type} is not built: run `cargo xtask plugins` (Rust plugins) and \
         `cargo xtask examples` (the C test plugins of tests/plugins)"
    );
}

/// A scratch directory with a plugin dir, a state dir and room for plans.
pub struct Scratch {
    /// Holds everything; removed on drop.
    pub dir: tempfile::TempDir,
}

/// What a `planrt` run produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Stdout as one JSON document (panics with both streams if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Waits for `child` to exit: its exit code, and what it printed where its streams were
/// piped (a child of [`Scratch::spawn`] writes stderr to [`Scratch::spawned_stderr`]).
pub fn finished(child: Child) -> Run {
    child.wait_with_output().expect("waiting for planrt").into()
}

/// Sends `signal` (`TERM`, `INT`, …) to `child`, then waits for it as [`finished`] does.
pub fn signalled(child: Child, signal: &str) -> Run {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(sent.success(), "kill -{signal} failed");
    finished(child)
}

impl Scratch {
    /// A scratch dir whose plugin dir holds copies of `task_types`' components.
    pub fn with_plugins(task_types: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        for task_type in task_types {
            std::fs::copy(
                plugin_file(task_type),
                plugins.join(format!("{task_type}.wasm")),
            )
            .unwrap();
        }
        Self { dir }
    }

    /// The scratch directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The plugin directory.
    pub fn plugins(&self) -> PathBuf {
        self.path().join("plugins")
    }

    /// Writes a file (relative to the scratch dir) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `planrt ARGS --plugins <plugins> --state <state>`, not started yet (for spawning,
    /// extra environment, other stdio).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(planrt_bin());
        command
            .args(args)
            .arg("--plugins")
            .arg(self.plugins())
            .arg("--state")
            .arg(self.state())
            .env("RUST_LOG", "info")
            .env_remove("PLANRT_PLUGINS")
            .env_remove("PLANRT_STATE");
        command
    }

    /// Starts `planrt ARGS --plugins <plugins> --state <state>` in the background, stdout
    /// discarded, stderr to `spawned.stderr` in the scratch dir.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        let stderr = std::fs::File::create(self.path().join("spawned.stderr")).unwrap();
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// What the `planrt` of [`Scratch::spawn`] wrote to stderr so far.
    pub fn spawned_stderr(&self) -> String {
        std::fs::read_to_string(self.path().join("spawned.stderr")).unwrap_or_default()
    }

    /// Polls `ready` until it holds; after 30 s panics naming `what`, with what the
    /// spawned `planrt` said.
    pub fn wait_until(&self, what: &str, ready: impl FnMut() -> bool) {
        let said = || format!("planrt said:\n{}", self.spawned_stderr());
        wait_until(what, Duration::from_secs(30), ready, said);
    }

    /// Polls `status PLAN --output json` until `ready` holds of the document; returns it.
    pub fn wait_for_plan(&self, plan_id: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let mut last = None;
        self.wait_until(&format!("plan {plan_id}"), || {
            let run = self.planrt(&["status", plan_id, "--output", "json"]);
            let doc = (run.code == 0).then(|| run.json());
            let done = doc.as_ref().is_some_and(&ready);
            last = doc;
            done
        });
        last.expect("the plan was read")
    }

    /// Runs `planrt ARGS --plugins <plugins> --state <state>` to completion.
    pub fn planrt(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("planrt runs").into()
    }

    /// Writes `plan` to `p.toml`, saves it with `planrt plan --out saved.json`, and returns
    /// the saved file's path and the Plan document `plan` printed.
    pub fn save_plan(&self, plan: &str) -> (PathBuf, serde_json::Value) {
        let path = self.write("p.toml", plan);
        let saved = self.path().join("saved.json");
        let run = self.planrt(&[
            "plan",
            path.to_str().unwrap(),
            "--out",
            saved.to_str().unwrap(),
            "--output",
            "json",
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        (saved, run.json())
    }

    /// The state directory.
    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Gives the installed component of `task_type` another sha256 (a trailing custom
    /// section: still a valid component, doing the same), as an upgraded plugin would.
    pub fn change_plugin(&self, task_type: &str) {
        let file = self.plugins().join(format!("{task_type}.wasm"));
        let mut bytes = std::fs::read(&file).unwrap();
        let (name, payload) = (b"planrt-test".as_slice(), b"changed".as_slice());
        bytes.extend_from_slice(&[0, (1 + name.len() + payload.len()) as u8, name.len() as u8]);
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(payload);
        std::fs::write(file, bytes).unwrap();
    }
}

/// Polls `ready` every 20 ms until it holds; past `within` panics naming `what`, with
/// what `said` tells then (a log, the last answer).
pub fn wait_until(
    what: &str,
    within: Duration,
    mut ready: impl FnMut() -> bool,
    said: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "waited {within:?} for {what}; {}",
            said()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many plugin lines the host log says it dropped (its "N line(s) dropped from the
/// host log" notices, summed), in planrt's stderr.
pub fn dropped_from_host_log(stderr: &str) -> usize {
    stderr
        .lines()
        .filter_map(|l| {
            let (before, _) = l.split_once(" line(s) dropped from the host log")?;
            before.rsplit(' ').next()?.parse::<usize>().ok()
        })
        .sum()
}

/// UUID v5 (RFC 9562 §5.5) of `"{plan}/{type}/{index}"` in the reference controller's
/// namespace, written out here with SHA-1 so that it shares no code with the host's
/// (which uses the `uuid` crate), and checked against vectors made by Python's `uuid5`.
pub fn reference_task_id(plan_id: &str, task_type: &str, index: usize) -> String {
    use sha1::{Digest, Sha1};
    let namespace = hex::decode("b7e89c3a4f124d8b9a6e1c2d3e4f5a6b").unwrap();
    let mut sha1 = Sha1::new();
    sha1.update(&namespace);
    sha1.update(format!("{plan_id}/{task_type}/{index}").as_bytes());
    let mut bytes: [u8; 16] = sha1.finalize()[..16].try_into().unwrap();
    bytes[6] = (bytes[6] & 0x0f) | 0x50; // version 5
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC variant
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// (plan ID, task type, index, task ID) computed with Python's `uuid.uuid5`.
pub const TASK_ID_VECTORS: &[(&str, &str, usize, &str)] = &[
    (
        "5f0c2f8e-3c4b-4d8a-9f1e-2a3b4c5d6e7f",
        "config-patch",
        1,
        "53a4b984-a88d-5bda-b8f4-42f4afa25618",
    ),
    (
        "00000000-0000-4000-8000-000000000000",
        "snapshot-restore",
        0,
        "43ebdbf0-32d0-564a-ab22-0979bb7b3bf5",
    ),
    (
        "d7a4c1e2-9b3f-4e6a-8c5d-1f2e3a4b5c6d",
        "test-echo",
        0,
        "d8bbc87f-2841-5c0d-a28f-d73cf7740c46",
    ),
    (
        "d7a4c1e2-9b3f-4e6a-8c5d-1f2e3a4b5c6d",
        "test-echo",
        1,
        "3e4594a0-25eb-5bd0-b2fa-032c85eb189c",
    ),
    (
        "d7a4c1e2-9b3f-4e6a-8c5d-1f2e3a4b5c6d",
        "configure-state-sync",
        12,
        "cf4de2ea-de80-5bb6-8725-68455f8cb403",
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_reference_task_id_matches_pythons_uuid5() {
        for (plan, task_type, index, id) in super::TASK_ID_VECTORS {
            assert_eq!(super::reference_task_id(plan, task_type, *index), *id);
        }
    }
}
