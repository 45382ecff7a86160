//! The commands: each turns settings and arguments into an [`Outcome`].

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::json;

use super::args::OutputFormat;
use super::progress::ProgressMode;
use super::render;
use super::settings::Settings;
use crate::executor::{self, Observer, PreparedPlan, ResumeError, ResumeFrom, RunEnd};
use crate::plan::{Phase, PlanId, PlanRun, PlanSpec, SavedPlan, Task, TaskStatus, Transition};
use crate::runtime::{Capabilities, Registry, Runtime, WIT_VERSION};
use crate::state_dir::StateDir;
use crate::store::{PlanClaim, SqliteStore, StateStore};

/// How a command ended, when it did not fail on bad input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Complete, or the query answered (exit 0).
    Success,
    /// The plan failed (exit 1).
    PlanFailed,
    /// Stopped by SIGINT/SIGTERM; the plan is resumable (exit 130).
    Interrupted,
}

/// A failure after work started (the store or the disk gave way): the plan is left as last
/// recorded, resumable. Exit code [`super::EXIT_ENVIRONMENT`].
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct AfterWorkStarted(pub anyhow::Error);

async fn load_registry(
    settings: &Settings,
    state: &StateDir,
) -> anyhow::Result<(Runtime, Registry)> {
    let plugin_dir = settings.plugin_dir()?;
    let runtime = Runtime::new(
        Capabilities::builtin(),
        &state.subdir("compiled")?,
        state.cache_key()?,
    )?;
    let (registry, warnings) = runtime.load_plugins(plugin_dir).await?;
    for warning in warnings {
        tracing::warn!(
            "plugin {} not loaded: {}",
            warning.file.display(),
            warning.reason
        );
    }
    Ok((runtime, registry))
}

fn open_store(settings: &Settings, state: &StateDir) -> anyhow::Result<SqliteStore> {
    SqliteStore::open(state, settings.durability)
        .with_context(|| format!("cannot use the state directory {}", state.path().display()))
}

/// The store for a command that only reads: `None` if there is no state yet.
fn open_store_read_only(settings: &Settings) -> anyhow::Result<Option<SqliteStore>> {
    let Some(state) = settings.existing_state_dir()? else {
        return Ok(None);
    };
    SqliteStore::open_read_only(&state)
        .with_context(|| format!("cannot read the state directory {}", state.path().display()))
}

/// A stored plan, or a bad-input error naming the state dir.
fn load_stored(
    settings: &Settings,
    store: Option<&SqliteStore>,
    id: PlanId,
) -> anyhow::Result<(SavedPlan, PlanRun)> {
    let found = match store {
        Some(store) => store.load_plan(id)?,
        None => None,
    };
    found.ok_or_else(|| anyhow::anyhow!("no plan {id} in {}", settings.state_dir_path().display()))
}

fn parse_plan_id(text: &str) -> anyhow::Result<PlanId> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("`{text}` is not a plan ID (a UUID)"))
}

/// A plan file or saved plan, checked and ready to run.
async fn prepare_file(
    settings: &Settings,
    registry: &Registry,
    file: &Path,
) -> anyhow::Result<PreparedPlan> {
    let plugin_dir = settings.plugin_dir()?;
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
        return Ok(executor::prepare(saved, registry, plugin_dir, None).await?);
    }
    let file =
        std::path::absolute(file).with_context(|| format!("cannot resolve {}", file.display()))?;
    let spec = PlanSpec::parse(&source, &file)?;
    let saved = executor::resolve_spec(&spec, &file, registry, plugin_dir)?;
    Ok(executor::prepare(
        saved,
        registry,
        plugin_dir,
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

fn print_plan(settings: &Settings, run: &PlanRun) {
    let doc = run.document();
    match settings.output {
        OutputFormat::Json => print_json(&doc),
        OutputFormat::Text => print!("{}", render::plan(&doc)),
    }
}

/// `planrt plan PLAN [--out FILE]`.
pub async fn plan(settings: &Settings, file: &Path, out: Option<&Path>) -> anyhow::Result<Outcome> {
    let state = settings.open_state_dir()?;
    let (_runtime, registry) = load_registry(settings, &state).await?;
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

/// Logs each recorded transition to stderr and shows plugin progress there.
struct LogObserver {
    progress: ProgressMode,
}

impl LogObserver {
    fn new(settings: &Settings) -> Self {
        Self {
            progress: ProgressMode::for_terminal(&settings.terminal),
        }
    }
}

impl Observer for LogObserver {
    fn progress_sink(
        &self,
        task: &Task,
    ) -> Option<std::sync::Arc<dyn crate::runtime::ProgressSink>> {
        Some(self.progress.sink(task))
    }

    fn transition(&self, _plan: &PlanRun, task: &Task, transition: Transition) {
        let index = task.index();
        let task_type = task.task_type().as_str();
        let attempt = task.last_attempt().map_or(0, |a| a.attempt);
        match (transition.from, transition.to) {
            (_, TaskStatus::Running) => {
                tracing::info!("task {index} ({task_type}): attempt {attempt} started")
            }
            (_, TaskStatus::Complete) => tracing::info!("task {index} ({task_type}): complete"),
            (TaskStatus::Running, TaskStatus::Pending) => tracing::warn!(
                "task {index} ({task_type}): attempt {attempt} failed: {}; next attempt (retry {}/{}) not before {}",
                task.error().unwrap_or_default(),
                task.retry_count(),
                task.policy().max_retries,
                task.next_attempt_at()
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "now".into()),
            ),
            (_, TaskStatus::Pending) => tracing::info!("task {index} ({task_type}): pending again"),
            (_, TaskStatus::Failed) => tracing::error!(
                "task {index} ({task_type}): failed after {attempt} attempt(s): {}",
                task.error().unwrap_or_default()
            ),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default action (exit) applies; never resolve.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::warn!("SIGINT: stopping; the plan stays resumable"),
        _ = terminate.recv() => tracing::warn!("SIGTERM: stopping; the plan stays resumable"),
    }
}

/// Executes a claimed, stored plan and prints its final state.
async fn execute_and_report(
    settings: &Settings,
    plan: &mut PlanRun,
    prepared: &PreparedPlan,
    store: &SqliteStore,
) -> anyhow::Result<Outcome> {
    tracing::info!(plan = %plan.id(), "running plan {}", plan.id());
    let end = executor::execute(plan, prepared, store, &LogObserver::new(settings), stop_signal())
        .await
        .map_err(|e| {
            AfterWorkStarted(anyhow::Error::new(e).context(format!(
                "plan {} stopped; it is resumable with `planrt resume {}` once the state directory is usable",
                plan.id(),
                plan.id()
            )))
        })?;
    print_plan(settings, plan);
    Ok(match end {
        RunEnd::Finished(Phase::Complete) => Outcome::Success,
        RunEnd::Finished(Phase::Failed) => Outcome::PlanFailed,
        RunEnd::Finished(Phase::Active) => {
            return Err(AfterWorkStarted(anyhow::anyhow!(
                "internal error: plan {} stopped while active; it is resumable with `planrt resume {}`",
                plan.id(),
                plan.id()
            ))
            .into());
        }
        RunEnd::Interrupted => {
            tracing::warn!("continue with `planrt resume {}`", plan.id());
            Outcome::Interrupted
        }
    })
}

/// `planrt run PLAN|FILE`.
pub async fn run(settings: &Settings, file: &Path) -> anyhow::Result<Outcome> {
    let state = settings.open_state_dir()?;
    let store = open_store(settings, &state)?;
    let (_runtime, registry) = load_registry(settings, &state).await?;
    let prepared = prepare_file(settings, &registry, file).await?;
    let mut plan = prepared.saved.to_plan_run()?;
    let _claim = PlanClaim::acquire(&state, plan.id())?;
    store.create_plan(&prepared.saved.resolution(), &plan)?;
    execute_and_report(settings, &mut plan, &prepared, &store).await
}

/// `planrt resume PLAN_ID [--from N] [--allow-plugin-change]`.
pub async fn resume(
    settings: &Settings,
    plan_id: &str,
    from: Option<usize>,
    allow_plugin_change: bool,
) -> anyhow::Result<Outcome> {
    let plan_id = parse_plan_id(plan_id)?;
    let state = settings.open_state_dir()?;
    let store = open_store(settings, &state)?;
    // Claim before reading: the state read is then the latest, and no one else moves it.
    let _claim = PlanClaim::acquire(&state, plan_id)?;
    let (mut saved, mut plan) = load_stored(settings, Some(&store), plan_id)?;

    let (_runtime, registry) = load_registry(settings, &state).await?;
    let mut changed = Vec::new();
    for (task_type, pin) in saved.plugins.iter_mut() {
        let Some(plugin) = registry.get(task_type) else {
            continue;
        };
        if plugin.sha256() != pin.sha256 {
            changed.push(format!(
                "`{task_type}` ({} → {})",
                &pin.sha256[..12.min(pin.sha256.len())],
                &plugin.sha256()[..12]
            ));
            if allow_plugin_change {
                pin.sha256 = plugin.sha256().to_owned();
                pin.file = plugin.file().to_owned();
                pin.wit_version = WIT_VERSION.to_owned();
            }
        }
    }
    if !changed.is_empty() {
        if !allow_plugin_change {
            bail!(
                "plugin(s) changed since plan {plan_id} was made: {}; pass --allow-plugin-change to run with them",
                changed.join(", ")
            );
        }
        tracing::warn!(
            "running plan {plan_id} with changed plugin(s): {}",
            changed.join(", ")
        );
        store.repin_plugins(plan_id, &saved.plugins)?;
    }
    // Check grants, plugins and params before changing any task state.
    let prepared = executor::prepare(saved, &registry, settings.plugin_dir()?, None).await?;

    let from = from.map_or(ResumeFrom::WhereItStopped, ResumeFrom::Task);
    executor::reopen(&mut plan, from, &store, &LogObserver::new(settings)).map_err(
        |e| match e {
            ResumeError::Execute(e) => anyhow::Error::new(AfterWorkStarted(anyhow::Error::new(e))),
            bad_input => anyhow::Error::new(bad_input),
        },
    )?;
    if plan.phase() == Phase::Complete {
        tracing::info!(
            "plan {plan_id} is already complete; nothing to run (use --from N to run tasks again)"
        );
    }
    execute_and_report(settings, &mut plan, &prepared, &store).await
}

/// `planrt status [PLAN_ID]`.
pub fn status(settings: &Settings, plan_id: Option<&str>, limit: usize) -> anyhow::Result<Outcome> {
    let store = open_store_read_only(settings)?;
    match plan_id {
        Some(id) => {
            let id = parse_plan_id(id)?;
            let (_, plan) = load_stored(settings, store.as_ref(), id)?;
            print_plan(settings, &plan);
        }
        None => {
            let plans = match &store {
                Some(store) => store.list_plans(limit)?,
                None => Vec::new(),
            };
            match settings.output {
                OutputFormat::Json => print_json(&plans),
                OutputFormat::Text => {
                    print!("{}", render::plan_list(&plans, jiff::Timestamp::now()))
                }
            }
        }
    }
    Ok(Outcome::Success)
}

/// `planrt history PLAN_ID`.
pub fn history(settings: &Settings, plan_id: &str) -> anyhow::Result<Outcome> {
    let id = parse_plan_id(plan_id)?;
    let store = open_store_read_only(settings)?;
    let (_, plan) = load_stored(settings, store.as_ref(), id)?;
    let entries = render::history_entries(&plan);
    match settings.output {
        OutputFormat::Json => print_json(&entries),
        OutputFormat::Text => print!("{}", render::history(&entries)),
    }
    Ok(Outcome::Success)
}

/// `planrt plugins`.
pub async fn plugins(settings: &Settings) -> anyhow::Result<Outcome> {
    let state = settings.open_state_dir()?;
    let (_runtime, registry) = load_registry(settings, &state).await?;
    match settings.output {
        OutputFormat::Json => {
            let list: Vec<_> = registry
                .iter()
                .map(|(_, plugin)| {
                    let info = plugin.info();
                    let schema: serde_json::Value = serde_json::from_str(&info.params_schema)
                        .unwrap_or(serde_json::Value::String(info.params_schema.clone()));
                    json!({
                        "taskType": info.task_type,
                        "version": info.version,
                        "description": info.description,
                        "file": plugin.file(),
                        "sha256": plugin.sha256(),
                        "witVersion": WIT_VERSION,
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
