//! The wasmtime engine: configuration, its instance allocator, and the epoch ticker that
//! drives deadlines.

use std::sync::mpsc::RecvTimeoutError;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::RuntimeError;
use super::admission::Admission;

/// How often the epoch advances: the granularity of deadlines and of yields to tokio.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Set to `perfmap` to have guest code named in `perf` profiles (`/tmp/perf-<pid>.map`):
/// `cargo xtask bench --perf` sets it.
pub const PROFILER_ENV: &str = "PLANRT_WASM_PROFILER";

/// Set to `on-demand` to map each instance's memories, tables and stack when it is made
/// instead of reusing slots of a pool (`pooling`, the default): for a component larger
/// than a pool slot allows, or where the pool's address space cannot be reserved.
pub const ALLOCATOR_ENV: &str = "PLANRT_ALLOCATOR";

/// Component instances the pool holds at once (attempts, kept `validate` instances,
/// `describe` calls); more wait for a place ([`Admission`]).
pub const POOL_INSTANCES: u32 = 256;

/// What one component may contain to fit a pool slot, with room above what the shipped
/// toolchains build (counted with this pool shrunk: the Rust, C and JavaScript plugins
/// have 4 core instances, the Python one 14; each has one memory and two tables).
/// Memories are what the pool reserves most address space for (4 GiB each, 2 TiB in
/// all); a component with more is refused at load, naming the limit.
const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 8;
const TABLES_PER_MODULE: u32 = 4;
/// A table may grow up to the limit the limits capability sets on all of a store's
/// tables together: the pool never refuses a growth that limit allows.
const TABLE_ELEMENTS: usize = super::capability::limits::MAX_TABLE_ELEMENTS;
/// How much of what an instance wrote to a memory or table stays mapped in its slot for
/// the next instance, reset by copying the slot's image back over just those pages
/// (found with Linux's `PAGEMAP_SCAN`), instead of unmapping them and taking a page fault
/// on each again. Past it (a large working set) the rest is unmapped as usual. 1 MiB
/// measured no faster than 256 KiB per no-op task (`cargo xtask bench --only overhead`,
/// 2026-12-07).
const KEEP_RESIDENT: usize = 256 << 10;
/// Idle memory slots each shard of the pool keeps for the component that last used them
/// (so each plugin of a plan finds its own slot warm) before it takes over an idle slot
/// of another rather than a cold one. wasmtime 48 splits a pool of 128 memories or more
/// into one shard per CPU (up to 16), each thread allocating from its own first, and
/// divides this budget among them (private rules: check them on an upgrade). So the
/// memory slots a process ever uses — those that keep what their instances wrote
/// resident, up to [`KEEP_RESIDENT`] each — are, per shard, at most its peak of memories
/// in use plus this; tables have no warm budget and are reused, within that peak.
const WARM_IDLE_SLOTS_PER_SHARD: u32 = 8;
// The shard arithmetic above holds for a sharded pool only.
const _: () = assert!(POOL_INSTANCES * MEMORIES_PER_COMPONENT >= 128);

/// Which allocator the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Slots of a pool reserved once, reused by every instance: no `mmap`/`munmap` per
    /// instance. Every component instance's parts fit one slot of [`POOL_INSTANCES`].
    Pooling,
    /// Memories, tables and stacks mapped per instance.
    OnDemand,
}

impl Allocator {
    /// The allocator [`ALLOCATOR_ENV`] asks for: `None` when it is not set (pooling,
    /// falling back to on-demand), an error naming the value when planrt does not know it.
    pub fn from_env() -> Result<Option<Self>, RuntimeError> {
        match std::env::var_os(ALLOCATOR_ENV) {
            None => Ok(None),
            Some(value) if value == "pooling" => Ok(Some(Allocator::Pooling)),
            Some(value) if value == "on-demand" => Ok(Some(Allocator::OnDemand)),
            Some(value) => Err(RuntimeError::Engine(format!(
                "{ALLOCATOR_ENV}={} is not an allocator planrt knows (pooling, on-demand)",
                value.to_string_lossy()
            ))),
        }
    }
}

/// Builds the engine every plugin runs on, with the allocator [`ALLOCATOR_ENV`] asks for,
/// and the admission its stores pass. Unless pooling was asked for by name, an engine
/// whose pool cannot be reserved (a limit on address space) falls back to on-demand
/// allocation, with a warning.
pub fn new_engine() -> Result<(Engine, Admission), RuntimeError> {
    let profiler = profiler();
    let requested = Allocator::from_env()?;
    if requested != Some(Allocator::OnDemand) {
        match Engine::new(&config(Allocator::Pooling, profiler)) {
            Ok(engine) => return Ok((engine, Admission::bounded(POOL_INSTANCES as usize))),
            Err(error) if requested == Some(Allocator::Pooling) => {
                return Err(RuntimeError::Engine(format!(
                    "cannot reserve the instance pool {ALLOCATOR_ENV}=pooling asks for: {error:#}"
                )));
            }
            Err(error) => tracing::warn!(
                "cannot reserve the instance pool ({error:#}): instances are mapped one by one"
            ),
        }
    }
    let engine = Engine::new(&config(Allocator::OnDemand, profiler))
        .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
    Ok((engine, Admission::unbounded()))
}

/// The profiler [`PROFILER_ENV`] asks for.
fn profiler() -> Option<wasmtime::ProfilingStrategy> {
    match std::env::var_os(PROFILER_ENV) {
        Some(value) if value == "perfmap" => Some(wasmtime::ProfilingStrategy::PerfMap),
        Some(value) => {
            tracing::warn!(
                "{PROFILER_ENV}={} is not a profiler planrt knows (perfmap): ignored",
                value.to_string_lossy()
            );
            None
        }
        None => None,
    }
}

/// Why a component could not be compiled or loaded, for a person: a component larger
/// than a pool slot is valid, and the way to run it is named.
pub fn load_error(error: &wasmtime::Error) -> String {
    if exceeds_pool(error) {
        format!(
            "too large for planrt's instance pool: {error:#}; set {ALLOCATOR_ENV}=on-demand to run it"
        )
    } else {
        format!("not a valid component: {}", error.root_cause())
    }
}

/// Whether `error` says a component does not fit the pool's slots (wasmtime names the
/// pooling allocator in the error or in one of its contexts).
pub fn exceeds_pool(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.to_string().contains("pooling allocator"))
}

fn config(allocator: Allocator, profiler: Option<wasmtime::ProfilingStrategy>) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .parallel_compilation(true);
    if allocator == Allocator::Pooling {
        let n = POOL_INSTANCES;
        let mut pool = PoolingAllocationConfig::new();
        // Totals are the per-component maxima times the instances, so an admitted store
        // always finds room for every part of its instance.
        pool.total_component_instances(n)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .total_core_instances(n * CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .total_memories(n * MEMORIES_PER_COMPONENT)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            .max_tables_per_module(TABLES_PER_MODULE)
            .total_tables(n * TABLES_PER_COMPONENT)
            .table_elements(TABLE_ELEMENTS)
            .total_stacks(n)
            .max_unused_warm_slots(WARM_IDLE_SLOTS_PER_SHARD * pool_shards());
        // Without PAGEMAP_SCAN (Linux < 6.7) keeping pages resident means resetting the
        // first bytes of every memory whether they were written or not: not worth it.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT);
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    if let Some(profiler) = profiler {
        config.profiler(profiler);
    }
    config
}

/// The shards wasmtime splits a pool of this size into: one per CPU, at most 16.
fn pool_shards() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16) as u32)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a plain thread until dropped.
pub struct EpochTicker {
    /// Dropped to stop the thread: it waits on the other end between ticks, so it stops
    /// at once, not at its next tick.
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`. Holds only a weak reference, so it never keeps it alive.
    pub fn start(engine: &Engine) -> Self {
        Self::every(engine, EPOCH_TICK)
    }

    fn every(engine: &Engine, tick: Duration) -> Self {
        let weak = engine.weak();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("planrt-epoch".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An engine configured as [`new_engine`]'s, on a small pool `shrink` may make smaller
/// still (tests of what does not fit).
#[cfg(test)]
pub(crate) fn small_pool(shrink: impl FnOnce(&mut PoolingAllocationConfig)) -> Engine {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(4)
        .total_core_instances(16)
        .total_memories(4)
        .total_tables(4)
        .total_stacks(4);
    shrink(&mut pool);
    let mut config = config(Allocator::OnDemand, None);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).unwrap()
}

/// An engine configured as [`new_engine`]'s, allocating on demand.
#[cfg(test)]
pub(crate) fn on_demand_engine() -> Engine {
    Engine::new(&config(Allocator::OnDemand, None)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_ticker_stops_at_once_not_at_its_next_tick() {
        // (That it ticks, every deadline test shows: a spinning guest times out.)
        let (engine, _) = new_engine().unwrap();
        // An hour between ticks: a ticker that slept to its next tick would hold this drop
        // for an hour.
        let ticker = EpochTicker::every(&engine, Duration::from_secs(3600));
        let dropped = std::time::Instant::now();
        drop(ticker);
        assert!(dropped.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_component_larger_than_a_pool_slot_is_named_so_with_the_way_to_run_it() {
        // Each limit wasmtime checks at load, whether it names the pool in the error or in
        // a context around it.
        type Shrink = fn(&mut PoolingAllocationConfig);
        let shrinks: [(&str, Shrink); 3] = [
            ("core instances", |pool| {
                pool.max_core_instances_per_component(1);
            }),
            ("memories of a module", |pool| {
                pool.max_memories_per_module(0);
            }),
            ("instance size", |pool| {
                pool.max_component_instance_size(1);
            }),
        ];
        for (limit, shrink) in shrinks {
            let engine = small_pool(shrink);
            let error = wasmtime::component::Component::new(
                &engine,
                crate::runtime::test_support::built_plugin_bytes("test-noop"),
            )
            .unwrap_err();
            assert!(exceeds_pool(&error), "{limit}: {error:#}");
            let message = load_error(&error);
            assert!(
                message.starts_with("too large for planrt's instance pool: ")
                    && message.ends_with("set PLANRT_ALLOCATOR=on-demand to run it"),
                "{limit}: {message}"
            );
        }
        let engine = small_pool(|_| {});
        let error = wasmtime::component::Component::new(&engine, b"not wasm").unwrap_err();
        assert!(!exceeds_pool(&error));
        assert!(load_error(&error).starts_with("not a valid component: "));
    }

    #[test]
    fn the_shipped_pool_is_reserved_and_takes_a_plugin() {
        let engine = Engine::new(&config(Allocator::Pooling, None)).unwrap();
        wasmtime::component::Component::new(
            &engine,
            crate::runtime::test_support::built_plugin_bytes("test-noop"),
        )
        .unwrap();
    }
}
