//! What the task and plan APIs (`planrt serve`) refuse beyond what the service does: the
//! errors, and the limits a request over HTTP must stay within — secrets the server
//! lists, grants no wider than its own.

use serde_json::Value;

use crate::plan::{DirMode, Grants, Phase, PlanId, TaskId, TaskType};

use super::service::ServiceError;

/// Environment variables no request may name: planrt's own settings, its token among them.
const RESERVED_ENV_PREFIX: &str = "PLANRT_";

/// A request of the task or plan API that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request is malformed (the field is named).
    #[error("{0}")]
    BadRequest(String),
    /// No task with this ID (or it was removed).
    #[error("no task {0}")]
    UnknownTask(TaskId),
    /// The ID belongs to a task of another type.
    #[error("task {id} exists with type `{existing}`, not `{requested}`")]
    TypeMismatch {
        /// The task.
        id: TaskId,
        /// Its type.
        existing: TaskType,
        /// The type submitted.
        requested: TaskType,
    },
    /// The task waits behind a failed task of its plan: it cannot run on its own.
    #[error(
        "task {id} waits for task {failed} of plan {plan}, which failed: resubmit that task or resume the plan"
    )]
    BlockedByFailure {
        /// The task.
        id: TaskId,
        /// Its plan.
        plan: PlanId,
        /// The failed task's index.
        failed: usize,
    },
    /// The plan runs already (resume it once it stops).
    #[error("plan {0} is running")]
    PlanRunning(PlanId),
    /// Nothing runs or waits to run in the plan.
    #[error("plan {plan} is {phase}: there is nothing to cancel")]
    NothingToCancel {
        /// The plan.
        plan: PlanId,
        /// Its phase.
        phase: Phase,
    },
    /// A task of a plan of several tasks: cancel or remove it through its plan.
    #[error(
        "task {id} is one of the {tasks} tasks of plan {plan}: cancel the plan with DELETE /v0/plans/{plan}"
    )]
    PartOfPlan {
        /// The task.
        id: TaskId,
        /// Its plan.
        plan: PlanId,
        /// How many tasks the plan has.
        tasks: usize,
    },
    /// The run was stopped but what it stopped could not be recorded; the plan is left as
    /// last recorded (the request can be retried).
    #[error("plan {plan} stopped, but the state store could not record it: {message}")]
    Unrecorded {
        /// The plan.
        plan: PlanId,
        /// What failed.
        message: String,
    },
    /// The server began shutting down first: the run was stopped as `interrupted`.
    #[error("planrt is shutting down; plan {0} runs again when it starts")]
    ShuttingDown(PlanId),
    /// The service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The run could not start.
    #[error(transparent)]
    Supervise(#[from] super::supervisor::SuperviseError),
}

/// Refuses `$env` references a request may not make: names the server does not list in
/// `[secrets] env` of its `--grants` file, and planrt's own `PLANRT_*` settings. The
/// message never says whether the variable exists.
pub(super) fn check_secrets(params: &Value, allowed: &[String]) -> Result<(), String> {
    for name in super::secrets::referenced(params) {
        if name.starts_with(RESERVED_ENV_PREFIX) {
            return Err(format!(
                "a `$env` secret may not name `{name}` (planrt's own settings are not for tasks)"
            ));
        }
        if !allowed.contains(&name) {
            return Err(format!(
                "`$env` secret `{name}` is not one the server lets requests use (list it in `[secrets] env` of the serve --grants file)"
            ));
        }
    }
    Ok(())
}

/// Refuses grants wider than `ceiling` (the server's `--grants`): each directory must lie
/// inside a granted one — compared after resolving symlinks, so a link inside a granted
/// directory leads nowhere else — with no more than its mode; each HTTP entry must be
/// covered by an allowed one.
pub(super) fn check_grants_within(grants: &Grants, ceiling: &Grants) -> Result<(), String> {
    // A directory that does not exist (yet: a volume not mounted) is compared as written;
    // that it is missing is a passing problem the preparation reports, not this check.
    let resolved =
        |path: &std::path::Path| std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    for (index, dir) in grants.dirs.iter().enumerate() {
        let host = resolved(&dir.host);
        let inside = ceiling.dirs.iter().any(|granted| {
            host.starts_with(resolved(&granted.host))
                && (dir.mode == DirMode::Ro || granted.mode == DirMode::Rw)
        });
        if !inside {
            return Err(format!(
                "`grants.dirs[{index}]`: {} ({}) is not inside a directory the server grants with that mode (see its --grants file)",
                dir.host.display(),
                dir.mode.as_str()
            ));
        }
    }
    for (index, entry) in grants.http.iter().enumerate() {
        if !ceiling.http.iter().any(|allowed| entry.covered_by(allowed)) {
            return Err(format!(
                "`grants.http[{index}]`: `{entry}` is not allowed by the server's --grants file"
            ));
        }
    }
    Ok(())
}

/// What a plugin suggests for its attempts (`describe`): its timeout and memory limit.
pub(super) type Suggested = (Option<std::time::Duration>, Option<u64>);

/// Refuses per-attempt limits above what the server allows: a plan sent over HTTP may set
/// `timeout`, `memoryLimit` and `maxOutput` up to the server's `[defaults]` (of its
/// `--grants` file) — where it sets none, up to what the task would get unset: its
/// plugin's suggestion, else the built-in default — so requests cannot make attempts that
/// exhaust the host, and may always ask for less. `suggested` is per task.
pub(super) fn check_limits_within(
    tasks: &[crate::plan::TaskSpec],
    suggested: &[Suggested],
    server: &crate::plan::PlanDefaults,
) -> Result<(), String> {
    use crate::plan::units::{format_duration, format_size};
    use crate::runtime::capability::limits::{
        DEFAULT_MAX_OUTPUT, DEFAULT_MEMORY_LIMIT, DEFAULT_TIMEOUT,
    };
    for (index, task) in tasks.iter().enumerate() {
        let (plugin_timeout, plugin_memory) = suggested.get(index).copied().unwrap_or_default();
        let timeout = server
            .limits
            .timeout
            .or(plugin_timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
        let memory = server
            .limits
            .memory_limit
            .or(plugin_memory)
            .unwrap_or(DEFAULT_MEMORY_LIMIT);
        let output = server.limits.max_output.unwrap_or(DEFAULT_MAX_OUTPUT);
        let limits = &task.limits;
        if let Some(asked) = limits.timeout.filter(|t| *t > timeout) {
            return Err(format!(
                "task {index}: `timeout` {} is over this server's {}",
                format_duration(asked),
                format_duration(timeout)
            ));
        }
        if let Some(asked) = limits.memory_limit.filter(|m| *m > memory) {
            return Err(format!(
                "task {index}: `memoryLimit` {} is over this server's {}",
                format_size(asked),
                format_size(memory)
            ));
        }
        if let Some(asked) = limits.max_output.filter(|m| *m > output) {
            return Err(format!(
                "task {index}: `maxOutput` {} is over this server's {}",
                format_size(asked),
                format_size(output)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::plan::{DirGrant, HttpAllow};

    #[test]
    fn only_listed_secrets_and_never_planrts_own() {
        let allowed = vec!["RPC_TOKEN".to_owned()];
        let params = |name: &str| serde_json::json!({"a": [{"$env": name}]});
        assert_eq!(check_secrets(&params("RPC_TOKEN"), &allowed), Ok(()));
        let other = check_secrets(&params("HOME"), &allowed).unwrap_err();
        assert!(
            other.contains("`HOME`") && other.contains("[secrets] env"),
            "{other}"
        );
        let own = check_secrets(&params("PLANRT_TOKEN"), &["PLANRT_TOKEN".into()]);
        assert!(own.unwrap_err().contains("planrt's own"));
        assert_eq!(check_secrets(&serde_json::json!({"x": 1}), &[]), Ok(()));
    }

    fn dir(host: &Path, mode: DirMode) -> DirGrant {
        DirGrant {
            host: host.to_owned(),
            guest: "/home".into(),
            mode,
        }
    }

    #[test]
    fn grants_must_lie_inside_the_servers_own() {
        let root = tempfile::tempdir().unwrap();
        let node = root.path().join("node");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(node.join("data")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, node.join("escape")).unwrap();
        let ceiling = Grants {
            dirs: vec![dir(&node, DirMode::Rw), dir(&outside, DirMode::Ro)],
            http: vec![HttpAllow::parse("*.example.com").unwrap()],
        };
        let within = |dirs: Vec<DirGrant>, http: &[&str]| {
            let grants = Grants {
                dirs,
                http: http.iter().map(|h| HttpAllow::parse(h).unwrap()).collect(),
            };
            check_grants_within(&grants, &ceiling)
        };
        assert_eq!(
            within(
                vec![dir(&node.join("data"), DirMode::Rw)],
                &["a.example.com"]
            ),
            Ok(())
        );
        assert_eq!(within(vec![dir(&outside, DirMode::Ro)], &[]), Ok(()));
        assert!(
            within(vec![dir(&outside, DirMode::Rw)], &[]).is_err(),
            "mode"
        );
        let escape = within(vec![dir(&node.join("escape"), DirMode::Rw)], &[]);
        assert!(escape.is_err(), "a symlink out of a granted dir");
        assert!(
            within(vec![dir(root.path(), DirMode::Ro)], &[]).is_err(),
            "a parent"
        );
        assert_eq!(
            within(vec![dir(&node.join("missing"), DirMode::Ro)], &[]),
            Ok(()),
            "a missing directory inside a granted one is a passing problem, reported elsewhere"
        );
        assert!(within(vec![dir(Path::new("/elsewhere/missing"), DirMode::Ro)], &[]).is_err());
        assert!(
            within(vec![], &["example.org"])
                .unwrap_err()
                .contains("grants.http[0]")
        );
    }

    #[test]
    fn limits_are_capped_by_the_servers_defaults_or_the_built_in_ones() {
        let spec = |text: &str| {
            crate::plan::PlanSpec::parse(
                &format!("[[tasks]]\ntype = \"a\"\n{text}"),
                Path::new("/p.toml"),
            )
            .unwrap()
            .tasks
        };
        let builtin = crate::plan::PlanDefaults::default();
        let none = [(None, None)];
        let check = |text: &str, suggested: &[Suggested], server| {
            check_limits_within(&spec(text), suggested, server)
        };
        assert_eq!(check("", &none, &builtin), Ok(()));
        assert_eq!(check("timeout = \"10m\"", &none, &builtin), Ok(()));
        let over = check("memoryLimit = \"64GiB\"", &none, &builtin).unwrap_err();
        assert!(over.contains("`memoryLimit`"), "{over}");
        // A plugin suggesting 6 h: a plan may ask for less, not more.
        let six_hours = [(Some(std::time::Duration::from_secs(6 * 3600)), None)];
        assert_eq!(check("timeout = \"1h\"", &six_hours, &builtin), Ok(()));
        assert!(check("timeout = \"7h\"", &six_hours, &builtin).is_err());
        let mut server = builtin;
        server.limits.timeout = Some(std::time::Duration::from_secs(2 * 3600));
        assert_eq!(check("timeout = \"2h\"", &six_hours, &server), Ok(()));
        assert!(
            check("timeout = \"3h\"", &six_hours, &server).is_err(),
            "the server's cap"
        );
        assert!(check("maxOutput = \"2MiB\"", &none, &server).is_err());
    }
}
