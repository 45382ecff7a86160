//! Limits of each call: time, memory and output. Each is the plan's value (task, then
//! `[defaults]`), else the plugin's suggestion, else the built-in default.
//!
//! Time is enforced twice: an epoch deadline whose callback yields to tokio at every tick
//! while time is left and interrupts the guest at the deadline (so CPU-bound guests share
//! the workers and never overrun), and the call harness's tokio timeout, since epochs do
//! not count time a guest waits on host I/O. Memory is capped over all linear memories
//! together by a limiter that records a hit, so the failure says `memory-limit` without
//! reading messages; so is the growth of tables past [`MAX_TABLE_ELEMENTS`] in all (tables
//! live in host memory). Output is measured when `run` returns.

use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, Store, Trap, format_err};

use super::effects::{CallCredit, EffectGate};
use super::{AttemptSetup, CallEnd, Capability, Refusal, Sandbox, TaskRequest};
use crate::runtime::error::AttemptError;
use crate::runtime::state::AttemptState;

/// Per-attempt timeout when neither plan nor plugin says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Per-attempt memory limit when neither plan nor plugin says otherwise.
pub const DEFAULT_MEMORY_LIMIT: u64 = 512 << 20;
/// Per-attempt output limit when the plan does not say otherwise.
pub const DEFAULT_MAX_OUTPUT: u64 = 1 << 20;
/// Most table elements one store may hold, over all its tables together: far above what
/// real guests use (a Rust or C guest's function table holds its address-taken functions;
/// JS and Python runtimes a few thousand), and at most about 8 MiB of host memory.
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Per-call limits (a task's sandbox part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time for the call, instantiation included.
    pub timeout: Duration,
    /// Bytes of linear memory, all memories together.
    pub memory: u64,
    /// Bytes of output `run` may return.
    pub max_output: u64,
}

impl Limits {
    /// Limits of `describe` and `validate`, which must be quick and small.
    pub const METADATA: Limits = Limits {
        timeout: Duration::from_secs(30),
        memory: 512 << 20,
        max_output: 1 << 20,
    };
}

/// The limits capability.
#[derive(Debug, Clone, Copy)]
pub struct LimitsCapability;

/// When one call's time is up (a store part): at `at`, pushed back by the time the gate
/// held the call.
#[derive(Debug, Clone)]
struct Deadline {
    at: Instant,
    credit: CallCredit,
}

impl Deadline {
    fn new(timeout: Duration, gate: Option<EffectGate>) -> Self {
        Self {
            at: Instant::now() + timeout,
            credit: CallCredit::new(gate),
        }
    }

    fn passed(&self, now: Instant) -> bool {
        now >= self.at + self.credit.earned()
    }
}

impl Capability for LimitsCapability {
    fn rank(&self) -> u8 {
        super::rank::LIMIT
    }

    fn configure(&self, task: &TaskRequest<'_>, sandbox: &mut Sandbox) -> Result<(), Refusal> {
        sandbox.insert(Limits {
            timeout: task
                .limits
                .timeout
                .or(task.info.default_timeout)
                .unwrap_or(DEFAULT_TIMEOUT)
                // What a plugin suggests (or a plan stored before the bound) too.
                .min(crate::plan::LimitOverrides::MAX_TIMEOUT),
            memory: task
                .limits
                .memory_limit
                .or(task.info.default_memory_limit)
                .unwrap_or(DEFAULT_MEMORY_LIMIT),
            max_output: task.limits.max_output.unwrap_or(DEFAULT_MAX_OUTPUT),
        });
        Ok(())
    }

    fn prepare(&self, sandbox: &Sandbox, setup: &mut AttemptSetup<'_>) -> Result<(), AttemptError> {
        let limits = sandbox.limits();
        setup.parts.insert(StoreLimiter::new(limits.memory));
        setup.parts.insert(Deadline::new(
            limits.timeout,
            setup.inputs.get::<EffectGate>().cloned(),
        ));
        Ok(())
    }

    fn arm(&self, _sandbox: &Sandbox, store: &mut Store<AttemptState>) {
        // `prepare` put the limiter in; a store made without it is not limited here.
        store.limiter(|state| state.part_or_insert_with(|| StoreLimiter::new(u64::MAX)));
    }

    fn rearm(&self, sandbox: &Sandbox, store: &mut Store<AttemptState>) {
        // The memory a kept instance holds stays counted; only the time starts again.
        let gate = store.data().effect_gate();
        let deadline = Deadline::new(sandbox.limits().timeout, gate);
        let renewed = deadline.clone();
        *store.data_mut().part_or_insert_with(|| renewed) = deadline;
    }

    fn should_stop(&self, state: &AttemptState) -> bool {
        state
            .part::<Deadline>()
            .is_some_and(|deadline| deadline.passed(Instant::now()))
    }

    fn conclude(
        &self,
        sandbox: &Sandbox,
        state: &AttemptState,
        end: &CallEnd<'_>,
    ) -> Option<AttemptError> {
        let limits = sandbox.limits();
        let timeout = AttemptError::Timeout {
            limit: limits.timeout,
        };
        if end.timed_out {
            return Some(timeout);
        }
        if let Some(error) = end.error {
            match state.part::<StoreLimiter>().and_then(StoreLimiter::hit) {
                Some(LimitHit::Memory) => {
                    return Some(AttemptError::MemoryLimit {
                        limit: limits.memory,
                    });
                }
                Some(LimitHit::Table) => {
                    return Some(AttemptError::TableLimit {
                        limit: MAX_TABLE_ELEMENTS,
                    });
                }
                None => {}
            }
            // An interrupt is ours when our deadline passed (another capability may stop
            // a call too: a cancel).
            let interrupted = error.downcast_ref::<Trap>() == Some(&Trap::Interrupt);
            return (interrupted && self.should_stop(state)).then_some(timeout);
        }
        match end.output_len {
            Some(size) if size as u64 > limits.max_output => Some(AttemptError::OutputTooLarge {
                size: size as u64,
                limit: limits.max_output,
            }),
            _ => None,
        }
    }
}

/// Which cap a growth ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// The memory limit, over all linear memories.
    Memory,
    /// [`MAX_TABLE_ELEMENTS`], over all tables.
    Table,
}

/// Caps the memory of all linear memories of one store together, and the elements of all
/// its tables together, and remembers which cap was hit (a store part).
#[derive(Debug, Clone)]
pub struct StoreLimiter {
    limit: u64,
    used: u64,
    table_elements: usize,
    hit: Option<LimitHit>,
}

impl StoreLimiter {
    /// A limiter allowing `limit` bytes of linear memory in total, and
    /// [`MAX_TABLE_ELEMENTS`] table elements in total.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: 0,
            table_elements: 0,
            hit: None,
        }
    }

    /// The cap a refused growth ran into, if one was.
    pub fn hit(&self) -> Option<LimitHit> {
        self.hit
    }
}

impl ResourceLimiter for StoreLimiter {
    /// Growth within the limit past the memory's own maximum is refused without counting
    /// (`memory.grow` returns -1, as wasm says); growth past the limit over all memories
    /// ends the call, whatever the memory's maximum (as for tables).
    /// The sums saturate: a 64-bit memory may ask for any size. A growth wasmtime fails
    /// after it was approved here stays counted: the limit is then stricter, never looser
    /// (wasmtime may also report a failure it never asked about, so there is nothing to
    /// undo safely).
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let past_maximum = maximum.is_some_and(|max| desired > max);
        let (current, desired) = (current as u64, desired as u64);
        let next = self.used.saturating_sub(current).saturating_add(desired);
        if next <= self.limit && past_maximum {
            return Ok(false);
        }
        if next > self.limit {
            self.hit = Some(LimitHit::Memory);
            return Err(format_err!(
                "memory limit of {} reached (growing to {})",
                crate::plan::units::format_size(self.limit),
                crate::plan::units::format_size(next)
            ));
        }
        self.used = next;
        Ok(true)
    }

    /// Tables past the cap end the call (a trap, like memory), rather than `table.grow`
    /// returning -1 to a guest that may retry forever — whatever the table's maximum
    /// (with the pooling allocator that includes the pool slot's size, and the same
    /// guest must end the same way with either allocator). Growth within the cap past a
    /// table's own maximum is refused without counting; the sums saturate (64-bit tables
    /// ask for any size).
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let past_maximum = maximum.is_some_and(|max| desired > max);
        let next = self
            .table_elements
            .saturating_sub(current)
            .saturating_add(desired);
        if next <= MAX_TABLE_ELEMENTS && past_maximum {
            return Ok(false);
        }
        if next > MAX_TABLE_ELEMENTS {
            self.hit = Some(LimitHit::Table);
            return Err(format_err!(
                "table limit of {MAX_TABLE_ELEMENTS} elements reached (growing to {next} over all tables)"
            ));
        }
        self.table_elements = next;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Grants, LimitOverrides};
    use crate::runtime::capability::CallEnd;
    use crate::runtime::info::PluginInfo;

    #[test]
    fn limiter_sums_memories_and_records_the_hit() {
        let mut limiter = StoreLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(
            limiter.memory_growing(0, 40, None).unwrap(),
            "a second memory fits exactly"
        );
        assert_eq!(limiter.hit(), None);
        let err = limiter.memory_growing(40, 41, None).unwrap_err();
        assert!(
            err.to_string().contains("memory limit of 100B reached"),
            "{err}"
        );
        assert_eq!(limiter.hit(), Some(LimitHit::Memory));
        assert!(
            limiter.memory_growing(60, 60, None).unwrap(),
            "no growth is fine"
        );
    }

    #[test]
    fn tables_past_the_cap_together_are_refused_and_recorded_apart_from_memory() {
        let mut limiter = StoreLimiter::new(100);
        let half = MAX_TABLE_ELEMENTS / 2;
        assert!(limiter.table_growing(0, half, None).unwrap());
        assert!(
            limiter.table_growing(0, half, None).unwrap(),
            "a second table fits exactly"
        );
        assert_eq!(limiter.hit(), None);
        let err = limiter.table_growing(half, half + 1, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("table limit of 1000000 elements reached"),
            "{err}"
        );
        assert_eq!(limiter.hit(), Some(LimitHit::Table));
        assert!(
            limiter.memory_growing(0, 100, None).unwrap(),
            "tables do not count against memory"
        );
    }

    #[test]
    fn huge_requests_saturate_into_a_hit_instead_of_wrapping() {
        let mut limiter = StoreLimiter::new(100);
        assert!(limiter.table_growing(0, 10, None).unwrap());
        // A 64-bit table growing by -2 elements asks for usize::MAX.
        assert!(limiter.table_growing(1, usize::MAX, None).is_err());
        assert_eq!(limiter.hit(), Some(LimitHit::Table));
        let mut limiter = StoreLimiter::new(100);
        assert!(limiter.memory_growing(0, 50, None).unwrap());
        assert!(limiter.memory_growing(10, usize::MAX, None).is_err());
        assert_eq!(limiter.hit(), Some(LimitHit::Memory));
    }

    #[test]
    fn growth_past_its_own_maximum_is_refused_without_counting() {
        let mut limiter = StoreLimiter::new(100);
        assert!(!limiter.memory_growing(0, 80, Some(64)).unwrap());
        assert!(
            limiter.memory_growing(0, 100, None).unwrap(),
            "the refused 80 bytes were not counted"
        );
        assert_eq!(limiter.hit(), None);

        let mut limiter = StoreLimiter::new(100);
        assert!(
            !limiter
                .table_growing(0, MAX_TABLE_ELEMENTS, Some(5))
                .unwrap()
        );
        assert!(limiter.table_growing(0, MAX_TABLE_ELEMENTS, None).unwrap());
        assert_eq!(limiter.hit(), None);
    }

    #[test]
    fn growth_past_the_cap_is_a_hit_even_past_its_own_maximum() {
        // The pooling allocator passes its slot size as the maximum: a bomb's step that
        // crosses both still ends the call, as it does with on-demand allocation.
        let mut limiter = StoreLimiter::new(100);
        let step = 65_536;
        let below = MAX_TABLE_ELEMENTS - MAX_TABLE_ELEMENTS % step;
        assert!(
            limiter
                .table_growing(0, below, Some(MAX_TABLE_ELEMENTS))
                .unwrap()
        );
        let err = limiter
            .table_growing(below, below + step, Some(MAX_TABLE_ELEMENTS))
            .unwrap_err();
        assert!(err.to_string().contains("table limit"), "{err}");
        assert_eq!(limiter.hit(), Some(LimitHit::Table));

        let mut limiter = StoreLimiter::new(100);
        assert!(limiter.memory_growing(0, 101, Some(64)).is_err());
        assert_eq!(limiter.hit(), Some(LimitHit::Memory));
    }

    #[test]
    fn a_failure_wasmtime_reports_never_loosens_the_limit() {
        // wasmtime may report a failed growth it never asked about (an overflowing
        // `table.grow`): the counted elements stay. (A guard: StoreLimiter keeps
        // wasmtime's default, which does nothing; an undo added later fails here.)
        let mut limiter = StoreLimiter::new(100);
        assert!(limiter.table_growing(0, MAX_TABLE_ELEMENTS, None).unwrap());
        limiter.table_grow_failed(format_err!("overflow")).unwrap();
        assert!(limiter.table_growing(0, 1, None).is_err());
    }

    #[test]
    fn limits_come_from_the_plan_then_the_plugin_then_the_defaults() {
        let mut info = PluginInfo {
            task_type: "t".into(),
            version: "1".into(),
            description: String::new(),
            params_schema: "{}".into(),
            dirs: vec![],
            network: false,
            default_timeout: Some(Duration::from_secs(7)),
            default_memory_limit: None,
            wit_version: crate::runtime::WitVersion::LATEST,
        };
        let grants = Grants::default();
        let configured = |info: &PluginInfo, limits: &LimitOverrides| {
            let mut sandbox = Sandbox::default();
            let task = TaskRequest {
                info,
                grants: &grants,
                limits,
            };
            LimitsCapability.configure(&task, &mut sandbox).unwrap();
            sandbox.limits()
        };
        assert_eq!(
            configured(&info, &LimitOverrides::default()),
            Limits {
                timeout: Duration::from_secs(7),
                memory: DEFAULT_MEMORY_LIMIT,
                max_output: DEFAULT_MAX_OUTPUT
            }
        );
        info.default_memory_limit = Some(64 << 20);
        let plan = LimitOverrides {
            timeout: Some(Duration::from_secs(1)),
            memory_limit: None,
            max_output: Some(10),
        };
        assert_eq!(
            configured(&info, &plan),
            Limits {
                timeout: Duration::from_secs(1),
                memory: 64 << 20,
                max_output: 10
            }
        );
    }

    #[test]
    fn the_call_s_end_decides_which_limit_claims_it() {
        let limits = Limits {
            timeout: Duration::from_secs(60),
            memory: 100,
            max_output: 10,
        };
        let mut sandbox = Sandbox::default();
        sandbox.insert(limits);
        let state = |hit: bool, deadline_passed: bool| {
            let mut parts = http::Extensions::new();
            let mut limiter = StoreLimiter::new(100);
            if hit {
                assert!(limiter.memory_growing(0, 200, None).is_err());
            }
            parts.insert(limiter);
            let deadline = if deadline_passed {
                Instant::now() - Duration::from_secs(1)
            } else {
                Instant::now() + Duration::from_secs(60)
            };
            parts.insert(Deadline {
                at: deadline,
                credit: CallCredit::default(),
            });
            AttemptState::new(wasmtime_wasi::WasiCtx::builder().build(), parts)
        };
        let interrupt = wasmtime::Error::from(wasmtime::Trap::Interrupt);
        let other_trap = wasmtime::Error::from(wasmtime::Trap::UnreachableCodeReached);
        let end = |error, timed_out, output_len| CallEnd {
            error,
            timed_out,
            output_len,
        };
        let claim = |state: &AttemptState, end: &CallEnd<'_>| {
            LimitsCapability
                .conclude(&sandbox, state, end)
                .map(|e| e.kind())
        };
        use crate::plan::ErrorKind::{MemoryLimit, Permanent, Timeout};
        // The outer timeout outranks a memory hit; a hit claims only a failed call.
        assert_eq!(
            claim(&state(true, false), &end(None, true, None)),
            Some(Timeout)
        );
        assert_eq!(
            claim(&state(true, false), &end(Some(&other_trap), false, None)),
            Some(MemoryLimit)
        );
        assert_eq!(claim(&state(true, false), &end(None, false, Some(1))), None);
        // An interrupt is a timeout only once the deadline passed (else: another stop).
        assert_eq!(
            claim(&state(false, true), &end(Some(&interrupt), false, None)),
            Some(Timeout)
        );
        assert_eq!(
            claim(&state(false, false), &end(Some(&interrupt), false, None)),
            None
        );
        assert_eq!(
            claim(&state(false, false), &end(Some(&other_trap), false, None)),
            None
        );
        // Output is measured on success only.
        assert_eq!(
            claim(&state(false, false), &end(None, false, Some(11))),
            Some(Permanent)
        );
        assert_eq!(
            claim(&state(false, false), &end(None, false, Some(10))),
            None
        );
    }
}
