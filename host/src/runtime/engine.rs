//! The wasmtime engine: configuration, and the epoch ticker that drives deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine};

use super::RuntimeError;

/// How often the epoch advances: the granularity of deadlines and of yields to tokio.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Set to `perfmap` to have guest code named in `perf` profiles (`/tmp/perf-<pid>.map`):
/// `cargo xtask bench --perf` sets it.
pub const PROFILER_ENV: &str = "PLANRT_WASM_PROFILER";

/// Builds the engine every plugin runs on.
pub fn new_engine() -> Result<Engine, RuntimeError> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .parallel_compilation(true);
    match std::env::var_os(PROFILER_ENV) {
        Some(value) if value == "perfmap" => {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        Some(value) => tracing::warn!(
            "{PROFILER_ENV}={} is not a profiler planrt knows (perfmap): ignored",
            value.to_string_lossy()
        ),
        None => {}
    }
    Engine::new(&config).map_err(|e| RuntimeError::Engine(e.to_string()))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a plain thread until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`. Holds only a weak reference, so it never keeps it alive.
    pub fn start(engine: &Engine) -> Self {
        let weak = engine.weak();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("planrt-epoch".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
