//! Everything checked before a task runs: task types have plugins, pinned plugins are
//! unchanged, every declared need is granted (declared ∩ granted), granted directories
//! exist, and every task's params pass its plugin's `validate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::plan::{
    DirGrant, DirMode, HttpAllow, Location, PlanId, PlanRun, PlanSpec, PluginPin, Redactor,
    SAVED_PLAN_FORMAT_VERSION, SavedPlan, TaskType,
};
use crate::runtime::{AttemptError, DirNeed, Limits, LoadedPlugin, Preopen, Registry, WIT_VERSION};

/// Per-attempt timeout when neither plan nor plugin says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Per-attempt memory limit when neither plan nor plugin says otherwise.
pub const DEFAULT_MEMORY_LIMIT: u64 = 512 << 20;
/// Per-attempt output limit when the plan does not say otherwise.
pub const DEFAULT_MAX_OUTPUT: u64 = 1 << 20;

/// A plan that cannot run as asked; nothing has run. Every variant is bad input.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// No loaded plugin provides the task type.
    #[error("{}task {index}: unknown task type `{task_type}` (no plugin in {} provides it; see `planrt plugins`)", at(.location), plugin_dir.display())]
    UnknownTaskType {
        /// Where the task is written.
        location: Option<(PathBuf, Location)>,
        /// Task index.
        index: usize,
        /// The type.
        task_type: TaskType,
        /// Where plugins were looked for.
        plugin_dir: PathBuf,
    },
    /// The plugin file differs from the one the saved plan was made with.
    #[error("task type `{task_type}`: plugin {} has sha256 {current}, but the saved plan was made with {pinned}; make a new plan", file.display())]
    PluginChanged {
        /// The type.
        task_type: TaskType,
        /// The current file.
        file: PathBuf,
        /// sha256 in the saved plan.
        pinned: String,
        /// sha256 now.
        current: String,
    },
    /// A declared need the plan does not grant.
    #[error("task {index} (`{task_type}`, plugin {}): needs {need}, which the plan's [grants] do not give", plugin.display())]
    MissingGrant {
        /// Task index.
        index: usize,
        /// Task type.
        task_type: TaskType,
        /// The plugin file.
        plugin: PathBuf,
        /// The need, described.
        need: String,
    },
    /// A granted host directory that does not exist.
    #[error("grant of {} at `{guest}`: the host directory does not exist or is not a directory", host.display())]
    GrantDirMissing {
        /// Host path.
        host: PathBuf,
        /// Guest path.
        guest: String,
    },
    /// The plugin rejected the task's params.
    #[error("{}task {index} (`{task_type}`): invalid params: {message}", at(.location))]
    InvalidParams {
        /// Where the task is written.
        location: Option<(PathBuf, Location)>,
        /// Task index.
        index: usize,
        /// Task type.
        task_type: TaskType,
        /// The plugin's message.
        message: String,
    },
    /// `validate` itself failed (trap, timeout, …).
    #[error("task {index} (`{task_type}`): the plugin's validate() failed: {error}")]
    ValidateFailed {
        /// Task index.
        index: usize,
        /// Task type.
        task_type: TaskType,
        /// What happened.
        error: AttemptError,
    },
    /// A `$env` secret whose variable is not set.
    #[error("task {index} (`{task_type}`): {missing}")]
    MissingSecret {
        /// Task index.
        index: usize,
        /// Task type.
        task_type: TaskType,
        /// The variable.
        missing: super::secrets::MissingSecret,
    },
    /// The saved plan is not usable.
    #[error(transparent)]
    Document(#[from] crate::plan::DocumentError),
}

fn at(location: &Option<(PathBuf, Location)>) -> String {
    match location {
        Some((file, location)) => format!("{}:{location}: ", file.display()),
        None => String::new(),
    }
}

/// What one task runs with.
#[derive(Debug, Clone)]
pub struct TaskSandbox {
    /// Its plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// Directories it sees.
    pub preopens: Vec<Preopen>,
    /// Its per-attempt limits.
    pub limits: Limits,
    /// Hosts it may reach over HTTP (empty: none).
    pub http: Arc<[HttpAllow]>,
}

/// A plan checked against the plugins and grants, ready to execute.
#[derive(Debug, Clone)]
pub struct PreparedPlan {
    /// The resolved plan, as `plan --out` writes it.
    pub saved: SavedPlan,
    /// One sandbox per task, in plan order.
    pub sandboxes: Vec<TaskSandbox>,
    /// The values of the plan's `$env` secrets, masked in everything stored or printed.
    pub redactor: Redactor,
}

/// Resolves a plan file into a saved plan with a fresh plan ID: looks up each task's
/// plugin and pins it. Unknown task types are reported at their location in `file`.
pub fn resolve_spec(
    spec: &PlanSpec,
    file: &Path,
    registry: &Registry,
    plugin_dir: &Path,
) -> Result<SavedPlan, PrepareError> {
    let mut plugins = BTreeMap::new();
    for (index, task) in spec.tasks.iter().enumerate() {
        let plugin =
            registry
                .get(&task.task_type)
                .ok_or_else(|| PrepareError::UnknownTaskType {
                    location: spec
                        .task_locations
                        .get(index)
                        .map(|l| (file.to_owned(), *l)),
                    index,
                    task_type: task.task_type.clone(),
                    plugin_dir: plugin_dir.to_owned(),
                })?;
        plugins.insert(task.task_type.clone(), pin(plugin));
    }
    let run = PlanRun::new(PlanId::new_random(), spec.name.clone(), &spec.tasks);
    Ok(SavedPlan {
        format_version: SAVED_PLAN_FORMAT_VERSION,
        plan: run.document(),
        defaults: spec.defaults,
        grants: spec.grants.clone(),
        plugins,
    })
}

fn pin(plugin: &LoadedPlugin) -> PluginPin {
    PluginPin {
        file: plugin.file().to_owned(),
        sha256: plugin.sha256().to_owned(),
        wit_version: WIT_VERSION.to_owned(),
    }
}

/// Checks a saved plan against the loaded plugins and the host, and builds each task's
/// sandbox. `locations` (from the plan file, when there is one) place params errors.
pub async fn prepare(
    saved: SavedPlan,
    registry: &Registry,
    plugin_dir: &Path,
    locations: Option<(&Path, &[Location])>,
) -> Result<PreparedPlan, PrepareError> {
    let location_of = |index: usize| {
        locations.and_then(|(file, all)| all.get(index).map(|l| (file.to_owned(), *l)))
    };
    for grant in &saved.grants.dirs {
        if !grant.host.is_dir() {
            return Err(PrepareError::GrantDirMissing {
                host: grant.host.clone(),
                guest: grant.guest.clone(),
            });
        }
    }
    let mut sandboxes = Vec::with_capacity(saved.plan.tasks.len());
    for (index, task) in saved.plan.tasks.iter().enumerate() {
        let plugin =
            registry
                .get(&task.task_type)
                .ok_or_else(|| PrepareError::UnknownTaskType {
                    location: location_of(index),
                    index,
                    task_type: task.task_type.clone(),
                    plugin_dir: plugin_dir.to_owned(),
                })?;
        if let Some(pinned) = saved.plugins.get(&task.task_type)
            && pinned.sha256 != plugin.sha256()
        {
            return Err(PrepareError::PluginChanged {
                task_type: task.task_type.clone(),
                file: plugin.file().to_owned(),
                pinned: pinned.sha256.clone(),
                current: plugin.sha256().to_owned(),
            });
        }
        let missing = |need: String| PrepareError::MissingGrant {
            index,
            task_type: task.task_type.clone(),
            plugin: plugin.file().to_owned(),
            need,
        };
        let info = plugin.info();
        // Deny by default: only a plugin that declares `network` gets the allowlist.
        let http = if info.network {
            if saved.grants.http.is_empty() {
                return Err(missing(
                    "network (outgoing HTTP), but the plan's [grants] http allows no host".into(),
                ));
            }
            Arc::from(saved.grants.http.as_slice())
        } else {
            Arc::from([])
        };
        let preopens = info
            .dirs
            .iter()
            .map(|need| {
                grant_for(need, &saved.grants.dirs).ok_or_else(|| missing(describe_need(need)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The plan's limit, else the plugin's suggestion, else the built-in default.
        let limits = Limits {
            timeout: task
                .limits
                .timeout
                .or(info.default_timeout)
                .unwrap_or(DEFAULT_TIMEOUT),
            memory: task
                .limits
                .memory_limit
                .or(info.default_memory_limit)
                .unwrap_or(DEFAULT_MEMORY_LIMIT),
            max_output: task.limits.max_output.unwrap_or(DEFAULT_MAX_OUTPUT),
        };
        sandboxes.push(TaskSandbox {
            plugin: plugin.clone(),
            preopens,
            limits,
            http,
        });
    }
    // Every secret is resolved before any plugin code runs, so all of them are masked in
    // whatever any plugin says.
    let resolved = saved
        .plan
        .tasks
        .iter()
        .enumerate()
        .map(|(index, task)| {
            super::secrets::resolve_from_env(&task.params).map_err(|missing| {
                PrepareError::MissingSecret {
                    index,
                    task_type: task.task_type.clone(),
                    missing,
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let redactor = Redactor::new(resolved.iter().flat_map(|r| r.secrets.iter().cloned()));
    for task in &saved.plan.tasks {
        for name in super::secrets::short_secrets(&task.params) {
            tracing::warn!(
                "secret `{name}` is shorter than {} characters: masking it in outputs and logs also masks unrelated text",
                crate::plan::redact::MIN_FRAGMENT_LEN
            );
        }
    }
    // Params last: validate() runs plugin code, so only once the plan is otherwise sound.
    for (index, ((task, sandbox), resolved)) in saved
        .plan
        .tasks
        .iter()
        .zip(&sandboxes)
        .zip(&resolved)
        .enumerate()
    {
        let params = serde_json::to_string(&resolved.params).expect("JSON values serialize");
        match sandbox.plugin.validate(&params, &redactor).await {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(PrepareError::InvalidParams {
                    location: location_of(index),
                    index,
                    task_type: task.task_type.clone(),
                    message: redactor.redact_string(message),
                });
            }
            Err(error) => {
                return Err(PrepareError::ValidateFailed {
                    index,
                    task_type: task.task_type.clone(),
                    error: error.redacted(&redactor),
                });
            }
        }
    }
    Ok(PreparedPlan {
        saved,
        sandboxes,
        redactor,
    })
}

fn describe_need(need: &DirNeed) -> String {
    format!(
        "directory `{}` ({})",
        need.guest_path,
        if need.writable { "rw" } else { "ro" }
    )
}

/// The preopen for `need` from the grant that covers its guest path (the same path or a
/// parent), if that grant allows the mode. The guest sees the need's path, nothing more.
fn grant_for(need: &DirNeed, grants: &[DirGrant]) -> Option<Preopen> {
    let need_path = Path::new(&need.guest_path);
    grants
        .iter()
        .filter(|g| g.mode == DirMode::Rw || !need.writable)
        .find_map(|g| {
            let rest = need_path.strip_prefix(&g.guest).ok()?;
            Some(Preopen {
                host: g.host.join(rest),
                guest: need.guest_path.clone(),
                writable: need.writable,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(host: &str, guest: &str, mode: DirMode) -> DirGrant {
        DirGrant {
            host: host.into(),
            guest: guest.into(),
            mode,
        }
    }

    fn need(path: &str, writable: bool) -> DirNeed {
        DirNeed {
            guest_path: path.into(),
            writable,
        }
    }

    #[test]
    fn a_need_is_granted_by_the_same_path_or_a_parent() {
        let grants = [
            grant("/srv/node", "/home", DirMode::Rw),
            grant("/etc/ro", "/ro", DirMode::Ro),
        ];
        assert_eq!(
            grant_for(&need("/home", true), &grants),
            Some(Preopen {
                host: "/srv/node".into(),
                guest: "/home".into(),
                writable: true
            })
        );
        assert_eq!(
            grant_for(&need("/home/config", false), &grants),
            Some(Preopen {
                host: "/srv/node/config".into(),
                guest: "/home/config".into(),
                writable: false
            })
        );
        assert_eq!(
            grant_for(&need("/ro", false), &grants).map(|p| p.writable),
            Some(false)
        );
    }

    #[test]
    fn a_need_beyond_the_grant_is_missing() {
        let grants = [
            grant("/srv/node", "/home", DirMode::Rw),
            grant("/etc/ro", "/ro", DirMode::Ro),
        ];
        assert_eq!(
            grant_for(&need("/ro", true), &grants),
            None,
            "rw need, ro grant"
        );
        assert_eq!(
            grant_for(&need("/homes", false), &grants),
            None,
            "a prefix is not a parent"
        );
        assert_eq!(grant_for(&need("/data", false), &grants), None);
        assert_eq!(
            grant_for(&need("/", false), &grants),
            None,
            "a parent of a grant is not granted"
        );
    }
}
