//! Everything checked before a task runs: task types have plugins, pinned plugins are
//! unchanged, each capability accepts the task (declared needs ∩ grants, usable grants,
//! limits), and every task's params pass its plugin's `validate`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::plan::{
    Location, PlanId, PlanRun, PlanSpec, PluginPin, Redactor, SAVED_PLAN_FORMAT_VERSION, SavedPlan,
    TaskType,
};
use crate::runtime::{
    AttemptError, LoadedPlugin, Refusal, Registry, Sandbox, SchemaViolation, Validator,
};

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
    /// Plugin files differ from the ones the plan was made with.
    #[error(
        "plugin(s) changed since plan {plan} was made (the sha256 of the component differs): {}; {hint}",
        changes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    PluginsChanged {
        /// The plan.
        plan: PlanId,
        /// Each change.
        changes: Vec<PinChange>,
        /// What the operator can do.
        hint: &'static str,
    },
    /// A grant of the plan cannot be used (a granted directory is missing).
    #[error("{0}")]
    Grants(Refusal),
    /// A capability refused the task: a declared need the plan does not grant, or a
    /// grant that cannot be used.
    #[error("task {index} (`{task_type}`, plugin {}): {refusal}", plugin.display())]
    Refused {
        /// Task index.
        index: usize,
        /// Task type.
        task_type: TaskType,
        /// The plugin file.
        plugin: PathBuf,
        /// Why.
        refusal: Refusal,
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
    /// The params break the plugin's params schema (checked by the host, before the
    /// plugin's `validate`).
    #[error(
        "{}task {index} (`{task_type}`): params do not match the plugin's schema: {}",
        at(.location),
        violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    ParamsSchema {
        /// Where the task is written.
        location: Option<(PathBuf, Location)>,
        /// Task index.
        index: usize,
        /// Task type.
        task_type: TaskType,
        /// What breaks it (messages masked).
        violations: Vec<SchemaViolation>,
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
    /// A plugin the plan uses cannot be loaded (its file unreadable, or changed since
    /// the plugin dir was read).
    #[error("task {index} (`{task_type}`): {error}")]
    PluginLoad {
        /// The first task of that type.
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
    SavedPlan(#[from] crate::plan::SavedPlanError),
}

fn at(location: &Option<(PathBuf, Location)>) -> String {
    match location {
        Some((file, location)) => format!("{}:{location}: ", file.display()),
        None => String::new(),
    }
}

/// What one task runs with: its plugin, and what the capabilities decided for it.
#[derive(Debug, Clone)]
pub struct PreparedTask {
    /// Its plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// Its grants and limits.
    pub sandbox: Sandbox,
}

/// What to do when a plugin differs from the one a plan was pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginChange {
    /// Refuse, telling the operator how to go on.
    Refuse {
        /// What the operator can do.
        hint: &'static str,
    },
    /// Run with the current plugin: the prepared plan carries the new pins.
    Repin,
}

/// A task type whose plugin differs from its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinChange {
    /// The type.
    pub task_type: TaskType,
    /// sha256 in the pin.
    pub pinned: String,
    /// sha256 of the plugin now.
    pub current: String,
    /// The plugin's file now.
    pub file: PathBuf,
}

impl std::fmt::Display for PinChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |sha: &str| sha.get(..12).unwrap_or(sha).to_owned();
        write!(
            f,
            "`{}` ({} → {}, {})",
            self.task_type,
            short(&self.pinned),
            short(&self.current),
            self.file.display()
        )
    }
}

/// A plan checked against the plugins and grants, ready to execute.
#[derive(Debug, Clone)]
pub struct PreparedPlan {
    /// The resolved plan, as `plan --out` writes it.
    pub saved: SavedPlan,
    /// What each task runs with, in plan order.
    pub tasks: Vec<PreparedTask>,
    /// The values of the plan's `$env` secrets, masked in everything stored or printed.
    pub redactor: Redactor,
    /// Pins moved to the current plugins ([`PluginChange::Repin`]); not yet stored.
    pub repinned: Vec<PinChange>,
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
    let run = PlanRun::new(PlanId::new_random(), spec.name.clone(), &spec.tasks)
        .map_err(crate::plan::SavedPlanError::from)?;
    Ok(SavedPlan {
        format_version: SAVED_PLAN_FORMAT_VERSION,
        plan: run.into_document(),
        defaults: spec.defaults,
        grants: spec.grants.clone(),
        plugins,
    })
}

/// The pins that differ from the loaded plugins: refused, or moved to them.
fn check_pins(
    saved: &mut SavedPlan,
    registry: &Registry,
    plugin_change: PluginChange,
) -> Result<Vec<PinChange>, PrepareError> {
    let changes: Vec<PinChange> = saved
        .plugins
        .iter()
        .filter_map(|(task_type, pinned)| {
            let plugin = registry.get(task_type)?;
            (plugin.sha256() != pinned.sha256).then(|| PinChange {
                task_type: task_type.clone(),
                pinned: pinned.sha256.clone(),
                current: plugin.sha256().to_owned(),
                file: plugin.file().to_owned(),
            })
        })
        .collect();
    match plugin_change {
        _ if changes.is_empty() => Ok(changes),
        PluginChange::Refuse { hint } => Err(PrepareError::PluginsChanged {
            plan: saved.plan.id,
            changes,
            hint,
        }),
        PluginChange::Repin => {
            for change in &changes {
                if let Some(plugin) = registry.get(&change.task_type) {
                    saved.plugins.insert(change.task_type.clone(), pin(plugin));
                }
            }
            Ok(changes)
        }
    }
}

/// The pin of a loaded plugin: its file, digest and contract version.
pub fn pin(plugin: &LoadedPlugin) -> PluginPin {
    PluginPin {
        file: plugin.file().to_owned(),
        sha256: plugin.sha256().to_owned(),
        wit_version: plugin.info().wit_version.to_string(),
    }
}

/// Checks a saved plan against the loaded plugins and the host, and builds each task's
/// sandbox. `locations` (from the plan file, when there is one) place params errors;
/// `plugin_change` says what a plugin that differs from its pin does.
pub async fn prepare(
    mut saved: SavedPlan,
    registry: &Registry,
    plugin_dir: &Path,
    locations: Option<(&Path, &[Location])>,
    plugin_change: PluginChange,
) -> Result<PreparedPlan, PrepareError> {
    let location_of = |index: usize| {
        locations.and_then(|(file, all)| all.get(index).map(|l| (file.to_owned(), *l)))
    };
    let repinned = check_pins(&mut saved, registry, plugin_change)?;
    registry
        .check_grants(&saved.grants)
        .map_err(PrepareError::Grants)?;
    let mut tasks = Vec::with_capacity(saved.plan.tasks.len());
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
        let sandbox = plugin
            .sandbox(&saved.grants, &task.limits)
            .map_err(|refusal| PrepareError::Refused {
                index,
                task_type: task.task_type.clone(),
                plugin: plugin.file().to_owned(),
                refusal,
            })?;
        tasks.push(PreparedTask {
            plugin: plugin.clone(),
            sandbox,
        });
    }
    // Every plugin the plan uses is loaded now (one taken from the plugin index is not
    // yet): one that cannot be is bad input, before anything runs.
    let mut loaded = std::collections::HashSet::new();
    for (index, (task, prepared)) in saved.plan.tasks.iter().zip(&tasks).enumerate() {
        if loaded.insert(&task.task_type) {
            prepared
                .plugin
                .ensure_loaded()
                .await
                .map_err(|error| PrepareError::PluginLoad {
                    index,
                    task_type: task.task_type.clone(),
                    error,
                })?;
        }
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
    // Each task with its index, its checked form and its resolved params.
    let each = || {
        saved
            .plan
            .tasks
            .iter()
            .zip(&tasks)
            .zip(&resolved)
            .enumerate()
    };
    // The params schema, checked by the host for every language; on the resolved params
    // (a `$env` secret is a string where the schema wants one), its messages masked. All
    // tasks before any `validate`: no plugin code runs for a plan a schema refuses.
    for (index, ((task, prepared_task), resolved)) in each() {
        if let Err(violations) = prepared_task.plugin.schema().check(&resolved.params) {
            return Err(PrepareError::ParamsSchema {
                location: location_of(index),
                index,
                task_type: task.task_type.clone(),
                violations: violations
                    .into_iter()
                    .map(|v| SchemaViolation {
                        message: redactor.redact_string(v.message),
                        ..v
                    })
                    .collect(),
            });
        }
    }
    // Params last: validate() runs plugin code, so only once the plan is otherwise sound.
    // One validator per plugin: its instance serves every task of the type, and is
    // dropped after the type's last task (a plan of many types, each in one stretch,
    // holds few at once). Each holds a place in the instance pool; when none is free,
    // the others give theirs up before this one waits — nothing waits for a place while
    // it holds another (`runtime::admission`).
    let last_of_type: HashMap<&TaskType, usize> = saved
        .plan
        .tasks
        .iter()
        .enumerate()
        .map(|(index, task)| (&task.task_type, index))
        .collect();
    let mut validators: HashMap<&TaskType, Validator<'_>> = HashMap::new();
    for (index, ((task, prepared_task), resolved)) in each() {
        let params = serde_json::to_string(&resolved.params).expect("JSON values serialize");
        let plugin = &prepared_task.plugin;
        let mut validator = validators
            .remove(&task.task_type)
            .unwrap_or_else(|| plugin.validator(&redactor));
        if !validator.holds_place() {
            let place = match plugin.admission().try_admit() {
                Some(place) => place,
                None => {
                    validators.clear();
                    plugin.admission().admit().await
                }
            };
            validator.give_place(place);
        }
        let answer = validator.validate(&params).await;
        if last_of_type.get(&task.task_type) != Some(&index) {
            validators.insert(&task.task_type, validator);
        }
        match answer {
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
        tasks,
        redactor,
        repinned,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plan::PlanSpec;
    use crate::runtime::admission::Admission;
    use crate::runtime::{Capabilities, Runtime, test_support};

    #[tokio::test(flavor = "multi_thread")]
    async fn validators_of_interleaved_types_share_a_pool_of_one_place_without_deadlock() {
        // One place for every check: each validator gives it up when another type needs
        // it. A validator that kept it while the next one waited would wait forever.
        let dir = tempfile::tempdir().unwrap();
        let plugins = test_support::plugin_dir(dir.path(), &["test-noop", "test-echo"]);
        let runtime = Runtime::with_admission(
            Capabilities::builtin(),
            &dir.path().join("compiled"),
            Admission::bounded(1),
        );
        let (registry, warnings) = runtime.load_plugins(&plugins).await.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let file = Path::new("/p.toml");
        let text = "[[tasks]]\ntype = \"test-noop\"\n[[tasks]]\ntype = \"test-echo\"\n\
                    [[tasks]]\ntype = \"test-noop\"\n[[tasks]]\ntype = \"test-echo\"\n";
        let spec = PlanSpec::parse(text, file).unwrap();
        let saved = resolve_spec(&spec, file, &registry, &plugins).unwrap();
        let refuse = PluginChange::Refuse { hint: "" };
        let prepared = tokio::time::timeout(
            Duration::from_secs(60),
            prepare(saved, &registry, &plugins, None, refuse),
        )
        .await
        .expect("every validator found the place")
        .unwrap();
        assert_eq!(prepared.tasks.len(), 4);
        assert_eq!(
            runtime.admission().available(),
            Some(1),
            "the place is back"
        );
    }
}
