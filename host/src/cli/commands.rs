//! The commands: each turns settings and arguments into an [`Outcome`].

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::json;

use super::args::OutputFormat;
use super::render;
use super::settings::Settings;
use crate::executor::{self, Observer, PreparedPlan};
use crate::plan::{Phase, PlanRun, PlanSpec, SavedPlan, Task, TaskStatus, Transition};
use crate::runtime::{Registry, Runtime};
use crate::store::{MemoryStore, StateStore};

/// How a command ended, when it did not fail on bad input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Complete, or the query answered (exit 0).
    Success,
    /// The plan failed (exit 1).
    PlanFailed,
}

async fn load_registry(settings: &Settings) -> anyhow::Result<(Runtime, Registry)> {
    let runtime = Runtime::new(&settings.compiled_cache_dir())?;
    let (registry, warnings) = runtime.load_plugins(&settings.plugin_dir).await?;
    for warning in warnings {
        tracing::warn!(
            "plugin {} not loaded: {}",
            warning.file.display(),
            warning.reason
        );
    }
    Ok((runtime, registry))
}

/// A plan file or saved plan, checked and ready to run.
async fn prepare_file(
    settings: &Settings,
    registry: &Registry,
    file: &Path,
) -> anyhow::Result<PreparedPlan> {
    let source = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read plan {}", file.display()))?;
    if source.trim_start().starts_with('{') {
        let saved: SavedPlan = serde_json::from_str(&source).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}:{}: not a saved plan: {e}",
                file.display(),
                e.line(),
                e.column()
            )
        })?;
        saved.to_plan_run()?;
        return Ok(executor::prepare(saved, registry, &settings.plugin_dir, None).await?);
    }
    let file =
        std::path::absolute(file).with_context(|| format!("cannot resolve {}", file.display()))?;
    let spec = PlanSpec::parse(&source, &file)?;
    let saved = executor::resolve_spec(&spec, &file, registry, &settings.plugin_dir)?;
    Ok(executor::prepare(
        saved,
        registry,
        &settings.plugin_dir,
        Some((&file, &spec.task_locations)),
    )
    .await?)
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("documents serialize")
    );
}

/// `planrt plan PLAN [--out FILE]`.
pub async fn plan(settings: &Settings, file: &Path, out: Option<&Path>) -> anyhow::Result<Outcome> {
    let (_runtime, registry) = load_registry(settings).await?;
    let prepared = prepare_file(settings, &registry, file).await?;
    if let Some(out) = out {
        let text =
            serde_json::to_string_pretty(&prepared.saved).expect("documents serialize") + "\n";
        std::fs::write(out, text)
            .with_context(|| format!("cannot write saved plan {}", out.display()))?;
        tracing::info!(plan = %prepared.saved.plan.id, "saved plan to {}", out.display());
    }
    match settings.output {
        OutputFormat::Json => print_json(&prepared.saved.plan),
        OutputFormat::Text => print!("{}", render::plan(&prepared.saved.plan)),
    }
    Ok(Outcome::Success)
}

/// Logs each recorded transition to stderr.
struct LogObserver;

impl Observer for LogObserver {
    fn transition(&self, _plan: &PlanRun, task: &Task, transition: Transition) {
        let index = task.index();
        let task_type = task.task_type().as_str();
        let attempt = task.last_attempt().map_or(0, |a| a.attempt);
        match transition.to {
            TaskStatus::Running => {
                tracing::info!("task {index} ({task_type}): attempt {attempt} started")
            }
            TaskStatus::Complete => tracing::info!("task {index} ({task_type}): complete"),
            TaskStatus::Pending => tracing::warn!(
                "task {index} ({task_type}): attempt {attempt} failed: {}; retry {}/{} not before {}",
                task.error().unwrap_or_default(),
                task.retry_count(),
                task.policy().max_retries,
                task.next_attempt_at()
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "now".into()),
            ),
            TaskStatus::Failed => tracing::error!(
                "task {index} ({task_type}): failed after {attempt} attempt(s): {}",
                task.error().unwrap_or_default()
            ),
        }
    }
}

/// `planrt run PLAN|FILE`.
pub async fn run(settings: &Settings, file: &Path) -> anyhow::Result<Outcome> {
    let (_runtime, registry) = load_registry(settings).await?;
    let prepared = prepare_file(settings, &registry, file).await?;
    let store = MemoryStore::new();
    store.create_plan(&prepared.saved)?;
    let mut plan = prepared.saved.to_plan_run()?;
    tracing::info!(plan = %plan.id(), "running plan {}", plan.id());
    let phase = executor::execute(&mut plan, &prepared, &store, &LogObserver).await?;
    let doc = plan.document();
    match settings.output {
        OutputFormat::Json => print_json(&doc),
        OutputFormat::Text => print!("{}", render::plan(&doc)),
    }
    Ok(match phase {
        Phase::Complete => Outcome::Success,
        Phase::Failed => Outcome::PlanFailed,
        Phase::Active => bail!("internal error: plan {} stopped while active", plan.id()),
    })
}

/// `planrt plugins`.
pub async fn plugins(settings: &Settings) -> anyhow::Result<Outcome> {
    let (_runtime, registry) = load_registry(settings).await?;
    match settings.output {
        OutputFormat::Json => {
            let list: Vec<_> = registry
                .iter()
                .map(|(_, plugin)| {
                    let info = plugin.info();
                    let schema: serde_json::Value =
                        serde_json::from_str(&info.params_schema).unwrap_or(serde_json::Value::String(info.params_schema.clone()));
                    json!({
                        "taskType": info.task_type,
                        "version": info.version,
                        "description": info.description,
                        "file": plugin.file(),
                        "sha256": plugin.sha256(),
                        "witVersion": crate::runtime::WIT_VERSION,
                        "needs": {
                            "dirs": info.dirs.iter().map(|d| json!({
                                "guestPath": d.guest_path,
                                "mode": if d.writable { "rw" } else { "ro" },
                            })).collect::<Vec<_>>(),
                            "network": info.network,
                        },
                        "defaultTimeout": info.default_timeout.map(crate::plan::units::format_duration),
                        "defaultMemoryLimit": info.default_memory_limit.map(crate::plan::units::format_size),
                        "paramsSchema": schema,
                    })
                })
                .collect();
            print_json(&list);
        }
        OutputFormat::Text => print!("{}", render::plugins(registry.iter().map(|(_, p)| &**p))),
    }
    Ok(Outcome::Success)
}
