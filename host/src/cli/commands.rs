//! The commands: each turns settings and arguments into an [`Outcome`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::json;

use super::args::OutputFormat;
use super::progress::ProgressMode;
use super::render;
use super::settings::Settings;
use crate::executor::{
    Finished, Observer, PluginChange, Reader, ResumeFrom, RunEnd, Service, ServiceConfig,
    StopReason,
};
use crate::plan::{Phase, PlanDocument, PlanId, Task, TaskStatus, Transition};

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

/// The service over the settings' plugin and state dirs, running at most
/// `max_concurrent` attempts at once; plugins that fail to load are warnings.
pub(super) async fn open_service(
    settings: &Settings,
    max_concurrent: Option<usize>,
) -> anyhow::Result<Service> {
    let config = ServiceConfig {
        plugin_dir: settings.plugin_dir()?.to_owned(),
        state: settings.open_state_dir()?,
        durability: settings.durability,
        max_concurrent,
        max_parallel: settings.max_parallel,
        // Only a server bounds concurrency; it also keeps its plugins for hours, so it
        // loads them all at once rather than as plans first use them.
        load_every_plugin: max_concurrent.is_some(),
    };
    let (service, warnings) = Service::open(config).await?;
    for warning in warnings {
        tracing::warn!(
            "plugin {} not loaded: {}",
            warning.file.display(),
            warning.reason
        );
    }
    Ok(service)
}

fn parse_plan_id(text: &str) -> anyhow::Result<PlanId> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("`{text}` is not a plan ID (a UUID)"))
}

/// The result could not be written to stdout (the environment's failure: exit 3).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the result to stdout")]
pub struct StdoutError(#[source] std::io::Error);

/// Runs `write` on a buffered stdout and flushes it. A reader that went away (`| head`)
/// is not an error; any other failure (a full disk behind a redirect) is a
/// [`StdoutError`].
fn write_stdout(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    use std::io::ErrorKind;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(StdoutError(error).into()),
    }
}

/// Writes `value` to stdout as pretty JSON, streamed: a document of 100 000 tasks is
/// never held as one string (text output is rendered whole first).
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut refused = None;
    write_stdout(|out| {
        if let Err(error) = serde_json::to_writer_pretty(&mut *out, value) {
            if error.is_io() {
                return Err(error.into());
            }
            // The document's own refusal, not the device's: an internal error.
            refused = Some(error);
            return Ok(());
        }
        writeln!(out)
    })?;
    match refused {
        Some(error) => {
            Err(anyhow::Error::new(error).context("internal error: the result does not serialize"))
        }
        None => Ok(()),
    }
}

/// Writes `text` to stdout.
fn print_text(text: &str) -> anyhow::Result<()> {
    write_stdout(|out| out.write_all(text.as_bytes()))
}

fn print_plan(settings: &Settings, doc: &PlanDocument) -> anyhow::Result<()> {
    match settings.output {
        OutputFormat::Json => print_json(doc),
        OutputFormat::Text => print_text(&render::plan(doc)),
    }
}

/// `planrt plan PLAN [--out FILE]`.
pub async fn plan(settings: &Settings, file: &Path, out: Option<&Path>) -> anyhow::Result<Outcome> {
    let service = open_service(settings, None).await?;
    let prepared = service.prepare_file(file).await?;
    if let Some(out) = out {
        let text =
            serde_json::to_string_pretty(&prepared.saved).expect("documents serialize") + "\n";
        std::fs::write(out, text)
            .with_context(|| format!("cannot write saved plan {}", out.display()))?;
        tracing::info!(plan = %prepared.saved.plan.id, "saved plan to {}", out.display());
    }
    match settings.output {
        OutputFormat::Json => print_json(&prepared.saved.plan)?,
        OutputFormat::Text => print_text(&render::plan(&prepared.saved.plan))?,
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

    fn transition(&self, _plan: PlanId, task: &Task, transition: Transition) {
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

/// Resolves on SIGINT or SIGTERM: the process is to shut down.
pub(super) async fn stop_signal() -> StopReason {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default action (exit) applies; never resolve.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::warn!("SIGINT: stopping; what runs stays resumable"),
        _ = terminate.recv() => tracing::warn!("SIGTERM: stopping; what runs stays resumable"),
    }
    StopReason::Shutdown
}

/// Prints a run's final state and says how it ended.
fn report(settings: &Settings, finished: Finished) -> anyhow::Result<Outcome> {
    let Finished { plan, end } = finished;
    let id = plan.id();
    let outcome = match end {
        RunEnd::Finished(Phase::Complete) => Outcome::Success,
        RunEnd::Finished(Phase::Failed) | RunEnd::Cancelled => Outcome::PlanFailed,
        // The service reports a plan that stopped while active as an error.
        RunEnd::Finished(Phase::Active) => {
            bail!("internal error: plan {id} stopped while active")
        }
        RunEnd::Interrupted => {
            tracing::warn!("continue with `planrt resume {id}`");
            Outcome::Interrupted
        }
    };
    // Moved into the document: one copy of the tasks in memory, not two. If stdout
    // cannot take it, that failure is the exit code: the result was not delivered.
    print_plan(settings, &plan.into_document())?;
    Ok(outcome)
}

/// `planrt run PLAN|FILE`.
pub async fn run(settings: &Settings, file: &Path) -> anyhow::Result<Outcome> {
    let service = open_service(settings, None).await?;
    let prepared = service.prepare_file(file).await?;
    let finished = service
        .run(
            prepared,
            Arc::new(LogObserver::new(settings)),
            stop_signal(),
        )
        .await?;
    report(settings, finished)
}

/// `planrt resume PLAN_ID [--from N] [--allow-plugin-change]`.
pub async fn resume(
    settings: &Settings,
    plan_id: &str,
    from: Option<usize>,
    allow_plugin_change: bool,
) -> anyhow::Result<Outcome> {
    let plan_id = parse_plan_id(plan_id)?;
    let service = open_service(settings, None).await?;
    let from = from.map_or(ResumeFrom::WhereItStopped, ResumeFrom::Task);
    let plugin_change = if allow_plugin_change {
        PluginChange::Repin
    } else {
        PluginChange::Refuse {
            hint: "pass --allow-plugin-change to run with them",
        }
    };
    let finished = service
        .resume(
            plan_id,
            from,
            plugin_change,
            Arc::new(LogObserver::new(settings)),
            stop_signal(),
        )
        .await?;
    report(settings, finished)
}

/// `planrt status [PLAN_ID]`.
pub fn status(settings: &Settings, plan_id: Option<&str>, limit: usize) -> anyhow::Result<Outcome> {
    let reader = Reader::open(settings.state_dir_path())?;
    match plan_id {
        Some(id) => print_plan(settings, &reader.plan(parse_plan_id(id)?)?.into_document())?,
        None => {
            let plans = reader.list(limit)?;
            match settings.output {
                OutputFormat::Json => print_json(&plans)?,
                OutputFormat::Text => {
                    print_text(&render::plan_list(&plans, jiff::Timestamp::now()))?
                }
            }
        }
    }
    Ok(Outcome::Success)
}

/// `planrt history PLAN_ID`.
pub fn history(settings: &Settings, plan_id: &str) -> anyhow::Result<Outcome> {
    let id = parse_plan_id(plan_id)?;
    let plan = Reader::open(settings.state_dir_path())?.plan(id)?;
    let entries = render::history_entries(&plan);
    match settings.output {
        OutputFormat::Json => print_json(&entries)?,
        OutputFormat::Text => print_text(&render::history(&entries))?,
    }
    Ok(Outcome::Success)
}

/// `planrt plugins`.
pub async fn plugins(settings: &Settings) -> anyhow::Result<Outcome> {
    let service = open_service(settings, None).await?;
    let registry = service.registry();
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
                        "witVersion": info.wit_version.as_str(),
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
            print_json(&list)?;
        }
        OutputFormat::Text => print_text(&render::plugins(registry.iter().map(|(_, p)| &**p)))?,
    }
    Ok(Outcome::Success)
}

/// `planrt new TYPE --lang L [DIR]`.
pub fn new_project(
    output: OutputFormat,
    task_type: &str,
    lang: super::scaffold::Lang,
    dir: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let task_type = crate::plan::TaskType::new(task_type.to_owned())
        .with_context(|| format!("`{task_type}` cannot be a task type"))?;
    let dir = dir.map_or_else(|| PathBuf::from(task_type.as_str()), Path::to_owned);
    let files = super::scaffold::scaffold(&task_type, lang, &dir)?;
    match output {
        OutputFormat::Json => print_json(&json!({
            "taskType": task_type.as_str(),
            "dir": dir,
            "files": files,
        }))?,
        OutputFormat::Text => {
            let mut text = format!(
                "wrote a `{task_type}` plugin project in {}:\n",
                dir.display()
            );
            for file in &files {
                text += &format!("  {}\n", file.display());
            }
            text += &format!(
                "\nnext: cd {} && ./build.sh && planrt run plan.toml --plugins plugins --state state\n",
                dir.display()
            );
            print_text(&text)?;
        }
    }
    Ok(Outcome::Success)
}
