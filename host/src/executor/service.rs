//! The one API the CLI and the server drive: open the state and the plugins, prepare a
//! plan, run it, resume it, read what is stored. Every orchestration step lives here —
//! claims, recording, pin checks and re-pins, operator transitions — so a front end only
//! parses its input, calls, and renders the outcome. Errors say which class they are
//! ([`ErrorClass`]) so each front end maps them the same way (exit codes, HTTP statuses).

use std::path::{Path, PathBuf};

use super::execute::{ExecuteError, Observer, RunEnd, execute};
use super::prepare::{PluginChange, PrepareError, PreparedPlan, prepare, resolve_spec};
use super::resume::{ResumeError, ResumeFrom, reopen};
use crate::plan::{PlanId, PlanRun, PlanSpec, SavedPlan, SavedPlanError, SpecError};
use crate::runtime::{Capabilities, LoadWarning, Registry, Runtime, RuntimeError};
use crate::state_dir::{StateDir, StateDirError};
use crate::store::{
    ClaimError, Durability, PlanClaim, PlanSummary, SqliteStore, StateStore, StoreError,
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
    #[error("cannot use the state directory {}: {error}", dir.display())]
    Store {
        /// The state dir.
        dir: PathBuf,
        /// Why.
        error: StoreError,
    },
    /// Another process runs the plan.
    #[error(transparent)]
    Claim(#[from] ClaimError),
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
    /// How a front end should treat it.
    pub fn class(&self) -> ErrorClass {
        match self {
            ServiceError::UnknownPlan { .. } => ErrorClass::NotFound,
            ServiceError::Claim(_) => ErrorClass::Conflict,
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
}

/// What one run or resume ended with.
#[derive(Debug)]
pub struct Finished {
    /// The plan as last recorded.
    pub plan: PlanRun,
    /// How execution ended.
    pub end: RunEnd,
}

/// The plugins and the state of one planrt.
pub struct Service {
    config: ServiceConfig,
    registry: Registry,
    _runtime: Runtime,
}

impl Service {
    /// Loads every plugin of the plugin dir (compiled once, cached in the state dir). A
    /// plugin that fails to load is returned as a warning; the others are used.
    pub async fn open(config: ServiceConfig) -> Result<(Self, Vec<LoadWarning>), ServiceError> {
        let runtime = Runtime::new(
            Capabilities::builtin(),
            &config.state.subdir("compiled")?,
            config.state.cache_key()?,
        )?;
        let (registry, warnings) = runtime.load_plugins(&config.plugin_dir).await?;
        Ok((
            Self {
                config,
                registry,
                _runtime: runtime,
            },
            warnings,
        ))
    }

    /// The loaded plugins.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn open_store(&self) -> Result<SqliteStore, ServiceError> {
        SqliteStore::open(&self.config.state, self.config.durability).map_err(|error| {
            ServiceError::Store {
                dir: self.config.state.path().to_owned(),
                error,
            }
        })
    }

    /// A plan file (TOML) or a saved plan (JSON) resolved and checked against the plugins
    /// and grants — everything but running it.
    pub async fn prepare_file(&self, file: &Path) -> Result<PreparedPlan, ServiceError> {
        let source = std::fs::read_to_string(file).map_err(|error| ServiceError::ReadPlan {
            path: file.to_owned(),
            error,
        })?;
        let plugin_dir = &self.config.plugin_dir;
        if source.trim_start().starts_with('{') {
            let saved: SavedPlan =
                serde_json::from_str(&source).map_err(|e| ServiceError::NotASavedPlan {
                    path: file.to_owned(),
                    line: e.line(),
                    column: e.column(),
                    message: e.to_string(),
                })?;
            saved.to_plan_run()?;
            let hint = "make a new plan with `planrt plan`";
            let refuse = PluginChange::Refuse { hint };
            return Ok(prepare(saved, &self.registry, plugin_dir, None, refuse).await?);
        }
        let file = std::path::absolute(file).map_err(|error| ServiceError::ReadPlan {
            path: file.to_owned(),
            error,
        })?;
        let spec = PlanSpec::parse(&source, &file)?;
        // Pinned to the plugins loaded now, so no pin can differ.
        let saved = resolve_spec(&spec, &file, &self.registry, plugin_dir)?;
        let locations = Some((file.as_path(), spec.task_locations.as_slice()));
        let refuse = PluginChange::Refuse {
            hint: "make a new plan with `planrt plan`",
        };
        Ok(prepare(saved, &self.registry, plugin_dir, locations, refuse).await?)
    }

    /// Claims, records and runs a prepared plan until it completes or fails, or `stop`
    /// resolves.
    pub async fn run(
        &self,
        prepared: PreparedPlan,
        observer: &dyn Observer,
        stop: impl Future<Output = ()>,
    ) -> Result<Finished, ServiceError> {
        let store = self.open_store()?;
        let mut plan = prepared.saved.to_plan_run()?;
        let _claim = PlanClaim::acquire(&self.config.state, plan.id())?;
        store
            .create_plan(&prepared.saved.resolution(), &plan)
            .map_err(|error| ServiceError::Store {
                dir: self.config.state.path().to_owned(),
                error,
            })?;
        tracing::info!(plan = %plan.id(), "running plan {}", plan.id());
        let end = self
            .execute(&mut plan, &prepared, &store, observer, stop)
            .await?;
        Ok(Finished { plan, end })
    }

    /// Continues a stored plan with the same IDs: everything is checked (plugins, grants,
    /// params, `from`) before anything is recorded; then attempts found running are
    /// recorded interrupted, `from` is applied, a plugin change the operator allowed is
    /// re-pinned, and the plan runs.
    pub async fn resume(
        &self,
        plan_id: PlanId,
        from: ResumeFrom,
        plugin_change: PluginChange,
        observer: &dyn Observer,
        stop: impl Future<Output = ()>,
    ) -> Result<Finished, ServiceError> {
        let store = self.open_store()?;
        // Claim before reading: the state read is then the latest, and no one else moves it.
        let _claim = PlanClaim::acquire(&self.config.state, plan_id)?;
        let (saved, mut plan) = self.stored(&store, plan_id)?;
        let prepared = prepare(
            saved,
            &self.registry,
            &self.config.plugin_dir,
            None,
            plugin_change,
        )
        .await?;
        reopen(&mut plan, from, &store, observer).map_err(|e| match e {
            ResumeError::Execute(error) => ServiceError::AfterWorkStarted {
                plan: plan_id,
                error,
            },
            other => ServiceError::Resume(other),
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
        if plan.phase() == crate::plan::Phase::Complete {
            tracing::info!(
                "plan {plan_id} is already complete; nothing to run (use --from N to run tasks again)"
            );
        }
        tracing::info!(plan = %plan_id, "running plan {plan_id}");
        let end = self
            .execute(&mut plan, &prepared, &store, observer, stop)
            .await?;
        Ok(Finished { plan, end })
    }

    async fn execute(
        &self,
        plan: &mut PlanRun,
        prepared: &PreparedPlan,
        store: &SqliteStore,
        observer: &dyn Observer,
        stop: impl Future<Output = ()>,
    ) -> Result<RunEnd, ServiceError> {
        let id = plan.id();
        match execute(plan, prepared, store, observer, stop).await {
            Ok(RunEnd::Finished(crate::plan::Phase::Active)) => {
                Err(ServiceError::AfterWorkStarted {
                    plan: id,
                    error: ExecuteError::Stalled(id),
                })
            }
            Ok(end) => Ok(end),
            Err(error) => Err(ServiceError::AfterWorkStarted { plan: id, error }),
        }
    }

    fn stored(
        &self,
        store: &SqliteStore,
        id: PlanId,
    ) -> Result<(SavedPlan, PlanRun), ServiceError> {
        store
            .load_plan(id)
            .map_err(|error| ServiceError::Store {
                dir: self.config.state.path().to_owned(),
                error,
            })?
            .ok_or_else(|| ServiceError::UnknownPlan {
                id,
                dir: self.config.state.path().to_owned(),
            })
    }
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
