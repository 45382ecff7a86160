//! The WebAssembly side, one concept per file: the engine, the compiled cache, the
//! plugin registry, the contract versions served (`wit/`, one module per frozen WIT
//! version), a loaded plugin, one call, its errors, its store state, and the
//! capabilities (directories, HTTP, limits, log, kv, cancellation) that shape every call. Knows nothing of
//! stores or executors: it loads plugins and runs calls.

pub mod admission;
pub mod cache;
mod call;
pub mod capability;
pub mod engine;
pub mod error;
pub mod guest_log;
pub mod info;
pub mod params_schema;
pub mod plugin;
pub mod plugin_index;
pub mod registry;
pub mod state;
#[cfg(test)]
pub(crate) mod test_support;
pub mod wit;

use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Linker;

pub use cache::CompiledCache;
pub use capability::log::ProgressSlot;
pub use capability::{AttemptInputs, Capabilities, Limits, ProgressSink, Refusal, Sandbox};
pub use error::AttemptError;
pub use info::{DirNeed, PluginInfo};
pub use params_schema::{ParamsSchema, SchemaViolation};
pub use plugin::{AttemptContext, AttemptReport, AttemptRequest, LoadedPlugin, Validator};
pub use registry::{LoadWarning, Registry};
pub use state::AttemptState;
pub use wit::{VersionError, WitVersion};

/// Runtime failures that stop the host from using plugins at all.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine could not be built.
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    /// The host imports could not be linked.
    #[error("cannot link host imports: {0}")]
    Link(String),
    /// The compiled cache's directory is not private to this user.
    #[error("compiled cache")]
    Cache(#[from] crate::state_dir::StateDirError),
    /// The plugin directory cannot be read.
    #[error("plugin directory {}: {reason}", dir.display())]
    PluginDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// Two plugin files implement the same task type.
    #[error("task type `{task_type}` is provided by both {} and {}", first.display(), second.display())]
    DuplicateTaskType {
        /// The task type.
        task_type: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
}

/// The engine, linker, capabilities and compiled cache every plugin runs on.
pub struct Runtime {
    engine: Engine,
    source: std::sync::Arc<plugin::ComponentSource>,
    capabilities: Capabilities,
    _ticker: engine::EpochTicker,
}

impl Runtime {
    /// A runtime whose plugins get `capabilities` (usually [`Capabilities::builtin`]) and
    /// whose compiled cache lives under `cache_root`, its entries authenticated with
    /// `cache_key`.
    pub fn new(
        capabilities: Capabilities,
        cache_root: &Path,
        cache_key: [u8; crate::state_dir::CACHE_KEY_LEN],
    ) -> Result<Self, RuntimeError> {
        let (engine, admission) = engine::new_engine()?;
        Self::assemble(capabilities, cache_root, cache_key, (engine, admission))
    }

    /// A runtime as [`Runtime::new`] makes, whose stores pass `admission` (a pool of
    /// another size).
    #[cfg(test)]
    pub(crate) fn with_admission(
        capabilities: Capabilities,
        cache_root: &Path,
        admission: admission::Admission,
    ) -> Self {
        let (engine, _) = engine::new_engine().unwrap();
        Self::assemble(capabilities, cache_root, [0; 32], (engine, admission)).unwrap()
    }

    fn assemble(
        capabilities: Capabilities,
        cache_root: &Path,
        cache_key: [u8; crate::state_dir::CACHE_KEY_LEN],
        (engine, admission): (Engine, admission::Admission),
    ) -> Result<Self, RuntimeError> {
        let mut linker = Linker::new(&engine);
        // WASI 0.2 itself; what a call may reach through it is each capability's part.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| capabilities.init(&mut linker))
            .map_err(|e| RuntimeError::Link(e.to_string()))?;
        let cache = CompiledCache::open(cache_root, &engine, cache_key)?;
        let ticker = engine::EpochTicker::start(&engine);
        Ok(Self {
            engine,
            source: std::sync::Arc::new(plugin::ComponentSource {
                cache,
                linker,
                admission,
            }),
            capabilities,
            _ticker: ticker,
        })
    }

    /// The admission every store of this runtime passes (the instance pool's places).
    pub fn admission(&self) -> &admission::Admission {
        &self.source.admission
    }
}
