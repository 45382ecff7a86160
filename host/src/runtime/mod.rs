//! The WebAssembly side: engine, compiled cache, plugin registry, sandbox and host
//! imports. Knows nothing of stores or executors: it loads plugins and runs calls.

pub mod bindings;
pub mod cache;
pub mod engine;
pub mod guest_log;
pub mod plugin;
pub mod registry;
pub mod sandbox;

use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Linker;

pub use bindings::WIT_VERSION;
pub use cache::CompiledCache;
pub use plugin::{
    AttemptContext, AttemptError, AttemptReport, AttemptRequest, DirNeed, Limits, LoadedPlugin,
    PluginErrorKind, PluginInfo,
};
pub use registry::{LoadWarning, Registry};
pub use sandbox::{Preopen, ProgressSink};

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

/// The engine, linker and compiled cache every plugin runs on.
pub struct Runtime {
    engine: Engine,
    linker: Linker<sandbox::AttemptState>,
    cache: CompiledCache,
    _ticker: engine::EpochTicker,
}

impl Runtime {
    /// A runtime whose compiled cache lives under `cache_root`, its entries authenticated
    /// with `cache_key`.
    pub fn new(
        cache_root: &Path,
        cache_key: [u8; crate::state_dir::CACHE_KEY_LEN],
    ) -> Result<Self, RuntimeError> {
        let engine = engine::new_engine()?;
        let mut linker = Linker::new(&engine);
        plugin::add_to_linker(&mut linker).map_err(|e| RuntimeError::Link(e.to_string()))?;
        let cache = CompiledCache::open(cache_root, &engine, cache_key)?;
        let ticker = engine::EpochTicker::start(&engine);
        Ok(Self {
            engine,
            linker,
            cache,
            _ticker: ticker,
        })
    }
}
