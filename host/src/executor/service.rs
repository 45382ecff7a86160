//! The one API the CLI and the server drive: open the state and the plugins, prepare a
//! plan, run it, resume it, read what is stored. Every orchestration step lives here —
//! claims, recording, pin checks and re-pins, operator transitions — so a front end only
//! parses its input, calls, and renders the outcome. Errors say which class they are
//! ([`ErrorClass`]) so each front end maps them the same way (exit codes, HTTP statuses).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use super::execute::{
    ExecuteError, Execution, Observer, RunEnd, StopReason, cancel, execute, interrupt_running,
};
use super::prepare::{PluginChange, PrepareError, PreparedPlan, pin, prepare, resolve_spec};
use super::resume::{ResumeError, ResumeFrom, reopen};
use super::slots::Slots;
use crate::plan::{
    Grants, Phase, PlanId, PlanRun, PlanSpec, Resolution, SAVED_PLAN_FORMAT_VERSION, SavedPlan,
    SavedPlanError, SpecError, Task, TaskId, TaskSettings, TaskType,
};
use crate::runtime::capability::dirs::Guarded;
use crate::runtime::capability::kv::KvAccess;
use crate::runtime::{Capabilities, LoadWarning, Registry, Runtime, RuntimeError};
use crate::state_dir::{StateDir, StateDirError};
use crate::store::{
    ClaimError, Durability, Origin, PlanClaim, PlanSummary, SqliteStore, StateStore, StoreError,
};

/// How a front end should treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The input cannot be used; nothing ran (exit 2, HTTP 400).
    BadInput,
    /// What was asked for does not exist (exit 2, HTTP 404).
    NotFound,
    /// Someone else holds it (exit 2, HTTP 409).
    Conflict,
    /// The state dir or the disk failed after work started; the plan is left resumable
    /// (exit 3, HTTP 503).
    Environment,
}

/// Why the service could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A plan file that cannot be read.
    #[error("cannot read plan {}: {error}", path.display())]
    ReadPlan {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A JSON file that is not a saved plan.
    #[error("{}:{line}:{column}: not a saved plan: {message}", path.display())]
    NotASavedPlan {
        /// The file.
        path: PathBuf,
        /// Where.
        line: usize,
        /// Where.
        column: usize,
        /// What serde said.
        message: String,
    },
    /// A plan file that is not a valid plan.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A saved plan this planrt cannot run.
    #[error(transparent)]
    SavedPlan(#[from] SavedPlanError),
    /// A plan that cannot run as asked (plugins, grants, params).
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// The plugins cannot be used at all.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The state dir cannot be used.
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    /// The store cannot be used (before any work).
    #[error(
        "cannot use the state database {}: {error}",
        dir.join(crate::store::sqlite::DATABASE_FILE).display()
    )]
    Store {
        /// The state dir.
        dir: PathBuf,
        /// Why.
        error: StoreError,
    },
    /// Another process runs the plan.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// A plan's grants reach planrt's own state or plugin directory.
    #[error(
        "grant of {} reaches planrt's own {what} directory {}: a task must never touch it",
        grant.display(), own.display()
    )]
    OwnDirGranted {
        /// The granted host directory.
        grant: PathBuf,
        /// Which directory of planrt's.
        what: &'static str,
        /// planrt's directory.
        own: PathBuf,
    },
    /// The server's restart does not reopen a plan that is no longer active.
    #[error("plan {plan} is {phase}: only an operator resumes it")]
    NotActive {
        /// The plan.
        plan: PlanId,
        /// Its phase.
        phase: Phase,
    },
    /// A stored plan grants more than the server allows requests now.
    #[error("plan {plan} grants more than this server allows: {reason}")]
    BeyondGrants {
        /// The plan.
        plan: PlanId,
        /// What is beyond.
        reason: String,
    },
    /// A plan with this ID is already recorded.
    #[error("plan {0} already exists (continue it with `planrt resume {0}`)")]
    PlanExists(PlanId),
    /// No such plan in the store.
    #[error("no plan {id} in {}", dir.display())]
    UnknownPlan {
        /// The plan asked for.
        id: PlanId,
        /// The state dir.
        dir: PathBuf,
    },
    /// An operator action that does not apply (`--from` past the end).
    #[error(transparent)]
    Resume(ResumeError),
    /// The run stopped after work started: a transition could not be stored.
    #[error(
        "plan {plan} stopped; it is resumable with `planrt resume {plan}` once the state directory is usable"
    )]
    AfterWorkStarted {
        /// The plan.
        plan: PlanId,
        /// Why.
        #[source]
        error: ExecuteError,
    },
}

impl ServiceError {
    /// Whether the error is about the plan itself (its plugins, grants, params, saved
    /// form): it will not go away by trying again, unlike the store, the state dir or a
    /// claim another process holds.
    pub fn is_about_the_plan(&self) -> bool {
        matches!(
            self,
            ServiceError::Prepare(
                PrepareError::PluginsChanged { .. }
                    | PrepareError::InvalidParams { .. }
                    | PrepareError::SavedPlan(_)
            ) | ServiceError::SavedPlan(_)
                | ServiceError::Resume(_)
                | ServiceError::BeyondGrants { .. }
                | ServiceError::OwnDirGranted { .. }
        )
    }

    /// How a front end should treat it.
    pub fn class(&self) -> ErrorClass {
        match self {
            ServiceError::UnknownPlan { .. } => ErrorClass::NotFound,
            ServiceError::Claim(_)
            | ServiceError::PlanExists(_)
            | ServiceError::BeyondGrants { .. }
            | ServiceError::Prepare(PrepareError::PluginsChanged { .. }) => ErrorClass::Conflict,
            ServiceError::AfterWorkStarted { .. } => ErrorClass::Environment,
            _ => ErrorClass::BadInput,
        }
    }
}

/// Where the service keeps its state and finds its plugins.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The plugin directory.
    pub plugin_dir: PathBuf,
    /// The state directory (checked private).
    pub state: StateDir,
    /// What a recorded transition survives.
    pub durability: Durability,
    /// At most this many attempts at once across all plans (`None`: no limit).
    pub max_concurrent: Option<usize>,
    /// A graph's runnable tasks at once, over the plan's `maxParallel` (`None`: the
    /// plan's, else the CPU count).
    pub max_parallel: Option<usize>,
    /// Load every plugin's component at start and at each reload (a server), rather than
    /// when a plan first uses it (a command, which should not pay for plugins it does
    /// not use).
    pub load_every_plugin: bool,
}

/// What one run or resume ended with.
#[derive(Debug)]
pub struct Finished {
    /// The plan as last recorded.
    pub plan: PlanRun,
    /// How execution ended.
    pub end: RunEnd,
}

/// A plan claimed by this process and recorded, ready to execute: what [`Service::admit`]
/// and [`Service::reopen`] return and [`Service::execute`] runs. Dropping it releases
/// the claim; the plan stays as recorded, resumable.
pub struct Admitted {
    plan: PlanRun,
    prepared: PreparedPlan,
    _claim: PlanClaim,
}

impl Admitted {
    /// The plan as recorded.
    pub fn plan(&self) -> &PlanRun {
        &self.plan
    }
}

/// How a stored plan is opened again by [`Service::reopen`].
#[derive(Debug, Clone)]
pub struct Reopen {
    /// Where it continues.
    pub from: ResumeFrom,
    /// What a plugin that changed since the plan was made does.
    pub plugin_change: PluginChange,
    /// New params for the task that runs again (the task API), by index: the failed task
    /// (`WhereItStopped`) or the first task reset (`Task(i)`).
    pub new_params: Option<(usize, Value)>,
    /// What else is recorded once the plan is reopened.
    pub record: ReopenRecord,
    /// The most the plan may grant, for a reopen a request or the server asks for (its
    /// `--grants`): checked again each time, as symlinks and the limits may have changed.
    pub within: Option<Grants>,
}

/// What a reopen records about the plan itself, besides its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReopenRecord {
    /// Nothing (the CLI's `resume`, the server's own restart).
    Nothing,
    /// The server runs the plan from now on (origin `api`): resumed over HTTP.
    Adopt,
    /// A task of the plan was submitted again over the task API: as `Adopt`, and the plan
    /// is dated now and shown again if it was removed.
    Resubmission,
}

/// What a reload of the plugin dir did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Files that could not be loaded.
    pub warnings: Vec<LoadWarning>,
    /// Of those, files whose previous version is kept.
    pub kept: Vec<PathBuf>,
    /// Task types added, replaced and removed.
    pub changes: PluginChanges,
}

/// How the plugins differ between two loads, by task type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginChanges {
    /// New task types.
    pub added: Vec<TaskType>,
    /// Task types whose component changed (another sha256).
    pub replaced: Vec<TaskType>,
    /// Task types no longer provided.
    pub removed: Vec<TaskType>,
}

impl PluginChanges {
    fn between(before: &Registry, after: &Registry) -> Self {
        let mut changes = Self::default();
        for (task_type, plugin) in after.iter() {
            match before.get(task_type) {
                None => changes.added.push(task_type.clone()),
                Some(old) if old.sha256() != plugin.sha256() => {
                    changes.replaced.push(task_type.clone())
                }
                Some(_) => {}
            }
        }
        changes.removed = before
            .iter()
            .filter(|(task_type, _)| after.get(task_type).is_none())
            .map(|(task_type, _)| task_type.clone())
            .collect();
        changes
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.replaced.is_empty() && self.removed.is_empty()
    }
}

/// The plugins and the state of one planrt.
pub struct Service {
    config: ServiceConfig,
    runtime: Runtime,
    /// Swapped whole when the plugin dir is reloaded: a caller holds the registry it got,
    /// and a prepared plan the plugins it was prepared with.
    registry: RwLock<Arc<Registry>>,
    store: Mutex<Option<Arc<SqliteStore>>>,
    slots: Slots,
}

impl Service {
    /// Loads every plugin of the plugin dir (compiled once, cached in the state dir). A
    /// plugin that fails to load is returned as a warning; the others are used.
    pub async fn open(config: ServiceConfig) -> Result<(Self, Vec<LoadWarning>), ServiceError> {
        // planrt's own directories, guarded at every attempt (as `refuse_own_dirs` does
        // when a plan is prepared): whatever links a task plants, it never reaches them.
        let guarded = vec![
            Guarded {
                path: config.state.path().to_owned(),
                writes_only: false,
            },
            Guarded {
                path: config.plugin_dir.clone(),
                writes_only: true,
            },
        ];
        let runtime = Runtime::new(
            Capabilities::builtin_guarding(guarded),
            &config.state.subdir("compiled")?,
            config.state.cache_key()?,
        )?;
        let (mut registry, mut warnings) = runtime.load_plugins(&config.plugin_dir).await?;
        if config.load_every_plugin {
            warnings.extend(registry.load_all().await);
        }
        let slots = match config.max_concurrent {
            Some(max) => Slots::limited(max),
            None => Slots::unlimited(),
        };
        Ok((
            Self {
                config,
                runtime,
                registry: RwLock::new(Arc::new(registry)),
                store: Mutex::new(None),
                slots,
            },
            warnings,
        ))
    }

    /// The plugins loaded now.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads the plugin dir again and swaps the new plugins in at once: a call never sees
    /// a half-loaded plugin dir, and running attempts keep the plugins they started with.
    /// A file that loaded before but cannot be loaded now (still being copied, say) keeps
    /// its previous version, with a warning. On an error (an unreadable dir, two plugins of
    /// one type) the loaded plugins stay.
    pub async fn reload_plugins(&self) -> Result<Reloaded, ServiceError> {
        let before = self.registry();
        let (mut registry, mut warnings) =
            self.runtime.load_plugins(&self.config.plugin_dir).await?;
        if self.config.load_every_plugin {
            warnings.extend(registry.load_all().await);
        }
        let mut kept = Vec::new();
        for warning in &warnings {
            let previous = before.iter().find(|(_, p)| p.file() == warning.file);
            if let Some((_, plugin)) = previous
                && warning.file.exists()
                && registry.keep(plugin.clone())
            {
                kept.push(warning.file.clone());
            }
        }
        let changes = PluginChanges::between(&before, &registry);
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(registry);
        Ok(Reloaded {
            warnings,
            kept,
            changes,
        })
    }

    /// The plugin directory.
    pub fn plugin_dir(&self) -> &Path {
        &self.config.plugin_dir
    }

    /// Turns to run attempts (`--max-concurrent`).
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    /// The state store, opened (and migrated) on first use.
    pub fn store(&self) -> Result<Arc<SqliteStore>, ServiceError> {
        let mut slot = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = &*slot {
            return Ok(store.clone());
        }
        let store = SqliteStore::open(&self.config.state, self.config.durability)
            .map_err(|error| self.store_error(error))?;
        let store = Arc::new(store);
        *slot = Some(store.clone());
        Ok(store)
    }

    /// A store failure before any work, naming the state database.
    pub fn store_error(&self, error: StoreError) -> ServiceError {
        ServiceError::Store {
            dir: self.config.state.path().to_owned(),
            error,
        }
    }

    /// A plan file (TOML) or a saved plan (JSON) resolved and checked against the plugins
    /// and grants — everything but running it.
    pub async fn prepare_file(&self, file: &Path) -> Result<PreparedPlan, ServiceError> {
        let source = std::fs::read_to_string(file).map_err(|error| ServiceError::ReadPlan {
            path: file.to_owned(),
            error,
        })?;
        let refuse = PluginChange::Refuse {
            hint: "make a new plan with `planrt plan`",
        };
        if source.trim_start().starts_with('{') {
            let saved: SavedPlan =
                serde_json::from_str(&source).map_err(|e| ServiceError::NotASavedPlan {
                    path: file.to_owned(),
                    line: e.line(),
                    column: e.column(),
                    message: e.to_string(),
                })?;
            saved.to_plan_run()?;
            return self.checked(saved, None, refuse).await;
        }
        let file = std::path::absolute(file).map_err(|error| ServiceError::ReadPlan {
            path: file.to_owned(),
            error,
        })?;
        let spec = PlanSpec::parse(&source, &file)?;
        self.prepare_spec(&spec, Some(&file)).await
    }

    /// A parsed plan resolved with a fresh plan ID (pinned to the plugins loaded now, so
    /// no pin can differ) and checked. `file` places errors, when the plan has one.
    pub async fn prepare_spec(
        &self,
        spec: &PlanSpec,
        file: Option<&Path>,
    ) -> Result<PreparedPlan, ServiceError> {
        let registry = self.registry();
        let plugin_dir = &self.config.plugin_dir;
        let placed = file.unwrap_or(Path::new("<request>"));
        let saved = resolve_spec(spec, placed, &registry, plugin_dir)?;
        let locations = file.map(|file| (file, spec.task_locations.as_slice()));
        let refuse = PluginChange::Refuse {
            hint: "make a new plan",
        };
        self.checked(saved, locations, refuse).await
    }

    /// [`prepare`] against the plugins loaded now, after refusing grants that reach
    /// planrt's own directories.
    async fn checked(
        &self,
        saved: SavedPlan,
        locations: Option<(&Path, &[crate::plan::Location])>,
        plugin_change: PluginChange,
    ) -> Result<PreparedPlan, ServiceError> {
        self.refuse_own_dirs(&saved.grants)?;
        let registry = self.registry();
        let prepared = prepare(
            saved,
            &registry,
            &self.config.plugin_dir,
            locations,
            plugin_change,
        )
        .await?;
        if !self.config.load_every_plugin {
            // A command runs this one plan, whose plugins `prepare` linked: the others'
            // file bytes, kept to link them lazily, are no longer needed.
            registry.release_unlinked();
        }
        Ok(prepared)
    }

    /// Refuses a grant that reaches the state dir (its database, its compiled-code cache
    /// and the key that authenticates it) in any mode, or the plugin dir read-write: a
    /// task that could write them could rewrite history or run native code as planrt.
    pub fn refuse_own_dirs(&self, grants: &Grants) -> Result<(), ServiceError> {
        let own = [
            (self.config.state.path(), "state", false),
            (self.config.plugin_dir.as_path(), "plugin", true),
        ];
        for grant in &grants.dirs {
            let Ok(host) = std::fs::canonicalize(&grant.host) else {
                continue; // a missing directory is refused as unusable when prepared
            };
            for (dir, what, only_rw) in own {
                if only_rw && grant.mode == crate::plan::DirMode::Ro {
                    continue;
                }
                let Ok(dir) = std::fs::canonicalize(dir) else {
                    continue;
                };
                if host.starts_with(&dir) || dir.starts_with(&host) {
                    return Err(ServiceError::OwnDirGranted {
                        grant: grant.host.clone(),
                        what,
                        own: dir,
                    });
                }
            }
        }
        Ok(())
    }

    /// One task submitted on its own (the task API): resolved with `settings` (the
    /// `serve --grants` file) and checked like a plan of one task. Returns the plan to
    /// [`Service::admit`] with it.
    pub async fn prepare_task(
        &self,
        id: TaskId,
        task_type: TaskType,
        params: Value,
        settings: &TaskSettings,
    ) -> Result<(PreparedPlan, PlanRun), ServiceError> {
        let registry = self.registry();
        let plugin = registry
            .get(&task_type)
            .ok_or_else(|| PrepareError::UnknownTaskType {
                location: None,
                index: 0,
                task_type: task_type.clone(),
                plugin_dir: self.config.plugin_dir.clone(),
            })?;
        let task = Task::submitted(
            id,
            task_type.clone(),
            params,
            settings.defaults.retry(),
            settings.defaults.limits,
        );
        let plan = PlanRun::single(task);
        let resolution = Resolution {
            format_version: SAVED_PLAN_FORMAT_VERSION,
            defaults: settings.defaults,
            grants: settings.grants.clone(),
            plugins: [(task_type, pin(plugin))].into(),
        };
        let saved = SavedPlan::of(resolution, plan.document());
        let refuse = PluginChange::Refuse {
            hint: "submit it again",
        };
        let prepared = self.checked(saved, None, refuse).await?;
        Ok((prepared, plan))
    }

    /// Claims and records a new plan (`plan` as [`Service::prepare_task`] made it, or the
    /// prepared plan's own) created by `origin`; nothing runs yet.
    pub fn admit(
        &self,
        prepared: PreparedPlan,
        plan: Option<PlanRun>,
        origin: Origin,
    ) -> Result<Admitted, ServiceError> {
        let plan = match plan {
            Some(plan) => plan,
            None => prepared.saved.to_plan_run()?,
        };
        let store = self.store()?;
        let claim = PlanClaim::acquire(&self.config.state, plan.id())?;
        store
            .create_plan(&prepared.saved.resolution(), &plan, origin)
            .map_err(|error| match error {
                StoreError::PlanExists(id) => ServiceError::PlanExists(id),
                error => self.store_error(error),
            })?;
        Ok(Admitted {
            plan,
            prepared,
            _claim: claim,
        })
    }

    /// Opens a stored plan to run again with the same IDs: everything is checked
    /// (plugins, grants, params, `from`) before anything is recorded; then attempts found
    /// running are recorded interrupted, `from` (and new params) applied, a plugin change
    /// the operator allowed re-pinned.
    pub async fn reopen(
        &self,
        plan_id: PlanId,
        how: Reopen,
        observer: &dyn Observer,
    ) -> Result<Admitted, ServiceError> {
        let store = self.store()?;
        // Claim before reading: the state read is then the latest, and no one else moves it.
        let claim = PlanClaim::acquire(&self.config.state, plan_id)?;
        let (resolution, mut plan) = self.stored(&store, plan_id)?;
        let mut saved = SavedPlan::of(resolution, plan.document());
        if how.record == ReopenRecord::Nothing
            && how.within.is_some()
            && plan.phase() != Phase::Active
        {
            // The server's own restart continues what was running: a plan that failed
            // or was cancelled meanwhile is an operator's to resume.
            return Err(ServiceError::NotActive {
                plan: plan_id,
                phase: plan.phase(),
            });
        }
        if let Some(ceiling) = &how.within {
            if is_submitted_alone(&plan) {
                // A task submitted on its own runs with the server's grants as they are
                // now; the client never chose them.
                saved.grants = ceiling.clone();
            } else {
                super::request::check_grants_within(&saved.grants, ceiling).map_err(|reason| {
                    ServiceError::BeyondGrants {
                        plan: plan_id,
                        reason,
                    }
                })?;
            }
        }
        if let Some((index, params)) = &how.new_params
            && let Some(task) = saved.plan.tasks.get_mut(*index)
        {
            task.params = params.clone();
        }
        let prepared = self.checked(saved, None, how.plugin_change).await?;
        reopen(&mut plan, how.from, how.new_params, &*store, observer).map_err(|e| match e {
            ResumeError::Execute(error) => ServiceError::AfterWorkStarted {
                plan: plan_id,
                error,
            },
            other => ServiceError::Resume(other),
        })?;
        // Who runs the plan, and whether it shows, once its tasks are reopened: if this
        // fails, the plan is active and run by nothing, and the next submission of the
        // task (or the next start) runs it, recording this again.
        let recorded = match how.record {
            ReopenRecord::Nothing => Ok(()),
            ReopenRecord::Adopt => store.set_origin(plan_id, Origin::Api),
            ReopenRecord::Resubmission => store.mark_submitted(plan_id, Origin::Api),
        };
        recorded.map_err(|error| ServiceError::AfterWorkStarted {
            plan: plan_id,
            error: ExecuteError::Store(error),
        })?;
        if !prepared.repinned.is_empty() {
            tracing::warn!(
                "running plan {plan_id} with changed plugin(s): {}",
                prepared
                    .repinned
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            store
                .repin_plugins(plan_id, &prepared.saved.plugins)
                .map_err(|error| ServiceError::AfterWorkStarted {
                    plan: plan_id,
                    error: ExecuteError::Store(error),
                })?;
        }
        Ok(Admitted {
            plan,
            prepared,
            _claim: claim,
        })
    }

    /// Runs an admitted plan until it completes or fails, or `stop` resolves.
    pub async fn execute(
        &self,
        admitted: Admitted,
        observer: Arc<dyn Observer>,
        stop: impl Future<Output = StopReason>,
    ) -> Result<Finished, ServiceError> {
        let Admitted {
            mut plan,
            prepared,
            _claim,
        } = admitted;
        let id = plan.id();
        let store = self.store()?;
        if plan.phase() == Phase::Complete {
            tracing::info!(
                "plan {id} is already complete; nothing to run (use --from N to run tasks again)"
            );
        }
        tracing::info!(plan = %id, "running plan {id}");
        let execution = Execution {
            prepared: &prepared,
            store: &*store,
            observer,
            slots: &self.slots,
            admission: self.runtime.admission(),
            kv: KvAccess(Arc::new(super::kv::StoreKv(store.clone()))),
            max_parallel: self.max_parallel(&prepared),
        };
        match execute(&mut plan, execution, stop).await {
            Ok(RunEnd::Finished(Phase::Active)) => Err(ServiceError::AfterWorkStarted {
                plan: id,
                error: ExecuteError::Stalled(id),
            }),
            Ok(end) => Ok(Finished { plan, end }),
            Err(error) => Err(ServiceError::AfterWorkStarted { plan: id, error }),
        }
    }

    /// How many of a plan's tasks may run at once: the operator's `--max-parallel`, else
    /// the plan's `maxParallel`, else the CPU count.
    fn max_parallel(&self, prepared: &PreparedPlan) -> usize {
        self.config
            .max_parallel
            .or(prepared.saved.defaults.max_parallel.map(|n| n as usize))
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// Claims, records and runs a prepared plan until it completes or fails, or `stop`
    /// resolves (the CLI's `run`).
    pub async fn run(
        &self,
        prepared: PreparedPlan,
        observer: Arc<dyn Observer>,
        stop: impl Future<Output = StopReason>,
    ) -> Result<Finished, ServiceError> {
        let admitted = self.admit(prepared, None, Origin::Cli)?;
        self.execute(admitted, observer, stop).await
    }

    /// Continues a stored plan with the same IDs (the CLI's `resume`): see
    /// [`Service::reopen`].
    pub async fn resume(
        &self,
        plan_id: PlanId,
        from: ResumeFrom,
        plugin_change: PluginChange,
        observer: Arc<dyn Observer>,
        stop: impl Future<Output = StopReason>,
    ) -> Result<Finished, ServiceError> {
        let how = Reopen {
            from,
            plugin_change,
            new_params: None,
            record: ReopenRecord::Nothing,
            within: None,
        };
        let admitted = self.reopen(plan_id, how, &*observer).await?;
        self.execute(admitted, observer, stop).await
    }

    /// Cancels a stored plan that this process is not running, for `reason`: claims it and
    /// records its running attempt (left by a crash) or its next attempt `cancelled`.
    /// Returns whether anything was cancelled (not for a finished plan).
    pub fn cancel_idle(
        &self,
        plan_id: PlanId,
        observer: &dyn Observer,
        reason: &str,
    ) -> Result<bool, ServiceError> {
        let store = self.store()?;
        let _claim = PlanClaim::acquire(&self.config.state, plan_id)?;
        let (_, mut plan) = self.stored(&store, plan_id)?;
        // No attempt of it runs in this process: none has progress to keep.
        cancel(&mut plan, &*store, observer, reason, &|_| None).map_err(|error| {
            ServiceError::AfterWorkStarted {
                plan: plan_id,
                error,
            }
        })
    }

    /// Records `interrupted` the attempts left running in a stored plan this process is
    /// not running (a failed graph whose host died while other attempts ran): claims it
    /// first.
    pub fn interrupt_idle(
        &self,
        plan_id: PlanId,
        observer: &dyn Observer,
    ) -> Result<(), ServiceError> {
        let store = self.store()?;
        let _claim = PlanClaim::acquire(&self.config.state, plan_id)?;
        let (_, mut plan) = self.stored(&store, plan_id)?;
        let why = "the host stopped or crashed during this attempt";
        interrupt_running(&mut plan, &*store, observer, why, &|_| None).map_err(|error| {
            ServiceError::AfterWorkStarted {
                plan: plan_id,
                error,
            }
        })
    }

    /// The plan as last recorded.
    pub fn load(&self, id: PlanId) -> Result<(Resolution, PlanRun), ServiceError> {
        let store = self.store()?;
        self.stored(&store, id)
    }

    fn stored(
        &self,
        store: &SqliteStore,
        id: PlanId,
    ) -> Result<(Resolution, PlanRun), ServiceError> {
        store
            .load_plan(id)
            .map_err(|error| self.store_error(error))?
            .ok_or_else(|| ServiceError::UnknownPlan {
                id,
                dir: self.config.state.path().to_owned(),
            })
    }
}

/// Whether `plan` is a task submitted on its own (the task API): one task whose ID is the
/// plan's.
fn is_submitted_alone(plan: &PlanRun) -> bool {
    matches!(plan.tasks(), [task] if task.id().as_uuid() == plan.id().as_uuid())
}

/// What `status` and `history` read: the store opened read-only, with no plugins — it
/// creates, migrates and writes nothing, and works on a read-only state dir.
pub struct Reader {
    dir: PathBuf,
    store: Option<SqliteStore>,
}

impl Reader {
    /// Opens the state dir at `dir` for reading; a missing one reads as empty.
    pub fn open(dir: &Path) -> Result<Self, ServiceError> {
        let store = match StateDir::open_existing(dir)? {
            Some(state) => {
                SqliteStore::open_read_only(&state).map_err(|error| ServiceError::Store {
                    dir: dir.to_owned(),
                    error,
                })?
            }
            None => None,
        };
        Ok(Self {
            dir: dir.to_owned(),
            store,
        })
    }

    /// The most recent plans, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<PlanSummary>, ServiceError> {
        match &self.store {
            Some(store) => store
                .list_plans(limit)
                .map_err(|error| ServiceError::Store {
                    dir: self.dir.clone(),
                    error,
                }),
            None => Ok(Vec::new()),
        }
    }

    /// One plan as last recorded.
    pub fn plan(&self, id: PlanId) -> Result<PlanRun, ServiceError> {
        let found = match &self.store {
            Some(store) => store.load_plan(id).map_err(|error| ServiceError::Store {
                dir: self.dir.clone(),
                error,
            })?,
            None => None,
        };
        found
            .map(|(_, plan)| plan)
            .ok_or_else(|| ServiceError::UnknownPlan {
                id,
                dir: self.dir.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::plan::{Task, TaskStatus, Transition};
    use crate::runtime::test_support;

    /// The transitions reported, as (task, status after).
    #[derive(Default)]
    struct Reported(Mutex<Vec<(usize, TaskStatus)>>);

    impl Observer for Reported {
        fn transition(&self, _plan: PlanId, task: &Task, transition: Transition) {
            self.0.lock().unwrap().push((task.index(), transition.to));
        }
    }

    /// A service over `plugins` in `dir`, and the plan of `tasks` (TOML `[[tasks]]`)
    /// admitted with `<dir>/work` granted as `/work`.
    async fn admitted_in(
        dir: &tempfile::TempDir,
        plugins: &[&str],
        tasks: &str,
    ) -> (Service, Admitted) {
        let plugin_dir = test_support::plugin_dir(dir.path(), plugins);
        std::fs::create_dir(dir.path().join("work")).unwrap();
        let config = ServiceConfig {
            plugin_dir,
            state: StateDir::open_or_create(&dir.path().join("state")).unwrap(),
            durability: Durability::Process,
            max_concurrent: None,
            max_parallel: None,
            load_every_plugin: false,
        };
        let (service, warnings) = Service::open(config).await.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let file = dir.path().join("p.toml");
        let grants = "[grants]\ndirs = [{ host = \"work\", guest = \"/work\", mode = \"rw\" }]\n";
        std::fs::write(&file, format!("{grants}{tasks}")).unwrap();
        let prepared = service.prepare_file(&file).await.unwrap();
        let admitted = service.admit(prepared, None, Origin::Cli).unwrap();
        (service, admitted)
    }

    #[tokio::test(flavor = "multi_thread")]
    // Holding the store's writer across the waits is the point of the test.
    #[allow(clippy::await_holding_lock)]
    async fn an_attempt_acts_and_is_reported_only_once_its_start_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (service, admitted) = admitted_in(
            &dir,
            &["test-append"],
            "[[tasks]]\ntype = \"test-append\"\n",
        )
        .await;
        let work = dir.path().join("work");
        let store = service.store().unwrap();
        let reported = Arc::new(Reported::default());
        let effects = work.join("effects.log");
        // Nothing this process stores is stored while the writer is held: the attempt
        // may be made and run, but not reach its directory, and nothing is reported.
        let held = store.hold_writes();
        let admission = service.runtime.admission();
        let free = admission.available().expect("a pooled runtime");
        let (finished, ()) = tokio::join!(
            service.execute(admitted, reported.clone(), std::future::pending()),
            async {
                // Launched (it holds a place in the pool) while its start cannot be stored;
                // then the time it takes to act, were it not held.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                while admission.available() == Some(free) {
                    assert!(tokio::time::Instant::now() < deadline, "never launched");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert!(
                    !effects.exists(),
                    "the attempt acted before its start was stored"
                );
                assert!(
                    reported.0.lock().unwrap().is_empty(),
                    "reported before it was stored"
                );
                drop(held);
            }
        );
        let finished = finished.unwrap();
        assert_eq!(finished.end, RunEnd::Finished(Phase::Complete));
        assert_eq!(
            std::fs::read_to_string(&effects).unwrap().lines().count(),
            1
        );
        assert_eq!(
            *reported.0.lock().unwrap(),
            [(0, TaskStatus::Running), (0, TaskStatus::Complete)]
        );
        // And what the run reported is what the store holds.
        let (_, stored) = store.load_plan(finished.plan.id()).unwrap().unwrap();
        assert_eq!(stored.tasks()[0].status(), TaskStatus::Complete);
    }

    #[tokio::test(flavor = "multi_thread")]
    // Holding the store's writer until its thread is told to die is the point of the test.
    #[allow(clippy::await_holding_lock)]
    async fn a_refused_commit_stops_the_run_at_once_not_when_the_attempt_ends() {
        let dir = tempfile::tempdir().unwrap();
        // A first task that computes for a minute and never reaches its gate, then one
        // that would act.
        let (service, admitted) = admitted_in(
            &dir,
            &["test-spin", "test-append"],
            "[[tasks]]\ntype = \"test-spin\"\ntimeout = \"60s\"\n\
             [[tasks]]\ntype = \"test-append\"\n",
        )
        .await;
        let plan_id = admitted.plan.id();
        let store = service.store().unwrap();
        let reported = Arc::new(Reported::default());
        // The writer takes the first start and waits for the connection; it dies before
        // it has it, which refuses that start (what a disk that fails mid-run does).
        let held = store.hold_writes();
        let refused_at = std::sync::OnceLock::new();
        let (ended, ()) = tokio::join!(
            tokio::time::timeout(
                Duration::from_secs(30),
                service.execute(admitted, reported.clone(), std::future::pending())
            ),
            async {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while !store.writer_started() {
                    assert!(tokio::time::Instant::now() < deadline, "nothing was queued");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                store.panic_writer();
                refused_at.set(std::time::Instant::now()).unwrap();
                drop(held);
            }
        );
        let error = ended
            .expect("the run ended long before its attempt would have")
            .expect_err("a refused commit stops the run");
        let stopped_after = refused_at.get().unwrap().elapsed();
        assert!(
            matches!(
                &error,
                ServiceError::AfterWorkStarted { error: ExecuteError::Store(e), .. }
                    if e.to_string().contains("writer stopped")
            ),
            "{error}"
        );
        // The attempt computes for a minute: the run stopped on the refusal itself.
        assert!(stopped_after < Duration::from_secs(20), "{stopped_after:?}");
        assert!(
            !dir.path().join("work/effects.log").exists(),
            "a later task ran"
        );
        assert!(
            reported.0.lock().unwrap().is_empty(),
            "reported what was not stored"
        );
        // Nothing of the run reached the database: `resume` starts it over.
        let (_, stored) = store.load_plan(plan_id).unwrap().unwrap();
        assert!(
            stored
                .tasks()
                .iter()
                .all(|t| t.status() == TaskStatus::Pending && t.attempts().is_empty())
        );
    }
}
