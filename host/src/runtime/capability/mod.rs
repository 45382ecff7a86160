//! Capabilities: what a plugin may reach or is bounded by — directories, HTTP, limits,
//! its log — each a unit with the same lifecycle, in the spirit of Spin's factors:
//!
//! 1. `init`: add its host imports to the linker, once per runtime;
//! 2. `check_grants` and `configure`: at plan time, check the plan's grants, and for one
//!    task what its plugin declares against them, deciding what every attempt of the task
//!    gets — or refuse, naming the need (`planrt plan` and `run` stop before anything
//!    runs);
//! 3. `prepare`: for each call, set up its part of the store (a preopen, a gate, a
//!    limiter…) from the task's sandbox and the caller's inputs; `arm` the store itself
//!    where it must; `rearm` before each later call on a kept store (`validate`'s
//!    session: a new deadline — a session is kept only after clean calls, so nothing
//!    else a call leaves needs renewing); `should_stop` is asked at every epoch tick;
//! 4. `conclude`: after the call, claim its outcome when the capability caused it (a
//!    denied request, a limit, a cancel); the lowest [`Capability::rank`] claim wins.
//!
//! Adding a capability is a new module here and one line in [`Capabilities::builtin`]
//! (or in whatever list an embedder hands [`crate::runtime::Runtime::new`]): it brings its
//! host imports, its sandbox part, its store part, its inputs (any type, through
//! [`AttemptInputs`]), its stop condition and its outcome. The plan-time checks and the
//! per-attempt sandbox come from the same code.

pub mod cancellation;
pub mod codec;
pub mod dirs;
pub mod effects;
pub mod http;
pub mod kv;
pub mod limits;
pub mod log;
#[cfg(test)]
mod probe;

use std::sync::Arc;

use ::http::Extensions;
use wasmtime::Store;
use wasmtime::component::Linker;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use super::error::AttemptError;
use super::info::PluginInfo;
use super::state::AttemptState;
use crate::plan::{Grants, LimitOverrides, Redactor};

pub use limits::Limits;
pub use log::ProgressSink;

/// How soon a capability's claim on a call's outcome ranks (lower first): a
/// configuration error outranks an operator's stop, which outranks a limit.
pub mod rank {
    /// A request the plan does not allow (a denial is never an endpoint to skip).
    pub const CONFIGURATION: u8 = 10;
    /// An operator stopped the call.
    pub const OPERATOR: u8 = 20;
    /// A limit of the call was reached.
    pub const LIMIT: u8 = 30;
    /// Anything else.
    pub const OTHER: u8 = 100;
}

/// What `configure` looks at for one task.
#[derive(Debug, Clone, Copy)]
pub struct TaskRequest<'a> {
    /// What the plugin declared.
    pub info: &'a PluginInfo,
    /// What the plan grants.
    pub grants: &'a Grants,
    /// Limits the plan sets for the task.
    pub limits: &'a LimitOverrides,
}

/// Why a task cannot have what its plugin needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A declared need the plan does not grant.
    #[error("needs {0}, which the plan's [grants] do not give")]
    NotGranted(String),
    /// A grant that cannot be used as it is.
    #[error("{0}")]
    Unusable(String),
}

/// What one task runs with: each capability's configuration, decided at plan time.
/// Cheap to clone (every attempt of the task takes a copy): the parts are shared.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    parts: Arc<Extensions>,
}

impl Sandbox {
    /// A capability's configuration.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<&T> {
        self.parts.get::<T>()
    }

    /// Sets a capability's configuration.
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, part: T) {
        Arc::make_mut(&mut self.parts).insert(part);
    }

    /// The limits of each call (the metadata limits when none were configured).
    pub fn limits(&self) -> Limits {
        self.get::<Limits>().copied().unwrap_or(Limits::METADATA)
    }
}

/// What the caller of one call hands the capabilities, by type: the plan's
/// [`Redactor`], a progress sink ([`log::ProgressTo`]), and whatever a capability asks
/// its callers for (a cancel flag, a store handle…).
#[derive(Clone, Default, Debug)]
pub struct AttemptInputs {
    parts: Extensions,
}

impl AttemptInputs {
    /// Inputs masking `redactor`'s secrets and sending progress to `progress`.
    pub fn new(redactor: Redactor, progress: Option<Arc<dyn ProgressSink>>) -> Self {
        Self::default()
            .with(redactor)
            .with(log::ProgressTo(progress))
    }

    /// These inputs and `part`.
    pub fn with<T: Clone + Send + Sync + 'static>(mut self, part: T) -> Self {
        self.parts.insert(part);
        self
    }

    /// An input, by type.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<&T> {
        self.parts.get::<T>()
    }

    /// The secrets to mask (none when the caller gave none).
    pub fn redactor(&self) -> Redactor {
        self.get::<Redactor>().cloned().unwrap_or_default()
    }
}

/// What `prepare` builds one call's store from.
pub struct AttemptSetup<'a> {
    /// The WASI context being built (preopens, stdio).
    pub wasi: &'a mut WasiCtxBuilder,
    /// The store's parts, by type.
    pub parts: &'a mut Extensions,
    /// What the caller handed in.
    pub inputs: &'a AttemptInputs,
}

impl AttemptSetup<'_> {
    /// Makes the caller's input `T`, if it handed one in, a part of the store.
    pub fn pass_on<T: Clone + Send + Sync + 'static>(&mut self) {
        if let Some(input) = self.inputs.get::<T>() {
            self.parts.insert(input.clone());
        }
    }
}

/// How a call ended, for `conclude`.
#[derive(Debug)]
pub struct CallEnd<'a> {
    /// The call's failure, if it failed inside wasmtime.
    pub error: Option<&'a wasmtime::Error>,
    /// Whether the host's outer timeout ended it.
    pub timed_out: bool,
    /// Bytes of output the call returned, when it is a `run` that returned some.
    pub output_len: Option<usize>,
}

/// One capability (see the module documentation).
pub trait Capability: Send + Sync + 'static {
    /// Where its claims rank ([`rank`]).
    fn rank(&self) -> u8 {
        rank::OTHER
    }

    /// Adds the host imports it provides.
    fn init(&self, _linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
        Ok(())
    }

    /// At plan time, once per plan: checks the plan's grants themselves.
    fn check_grants(&self, _grants: &Grants) -> Result<(), Refusal> {
        Ok(())
    }

    /// At plan time: checks the task's needs against the grants and records in `sandbox`
    /// what its attempts get.
    fn configure(&self, _task: &TaskRequest<'_>, _sandbox: &mut Sandbox) -> Result<(), Refusal> {
        // A capability with nothing to grant.
        Ok(())
    }

    /// For each call: sets up its part of the store. A call with no configuration
    /// (`describe`, `validate`) gets the least: no grants.
    fn prepare(&self, sandbox: &Sandbox, setup: &mut AttemptSetup<'_>) -> Result<(), AttemptError>;

    /// For each call, once its store exists: settings that live on the store itself.
    fn arm(&self, _sandbox: &Sandbox, _store: &mut Store<AttemptState>) {}

    /// Before each later call on a kept store (a `validate` session): renews what
    /// `prepare` set up per call, such as a deadline.
    fn rearm(&self, _sandbox: &Sandbox, _store: &mut Store<AttemptState>) {}

    /// At every epoch tick while the guest runs: whether the call must stop now (it
    /// then ends with `Trap::Interrupt`, which this capability claims in `conclude`).
    fn should_stop(&self, _state: &AttemptState) -> bool {
        false
    }

    /// After the call: the failure this capability caused, if any. Every capability is
    /// asked (it may also close what it opened); the claim of the lowest rank is the
    /// outcome.
    fn conclude(
        &self,
        _sandbox: &Sandbox,
        _state: &AttemptState,
        _end: &CallEnd<'_>,
    ) -> Option<AttemptError> {
        None
    }
}

/// The capabilities of a runtime, kept in the order their claims rank.
#[derive(Clone)]
pub struct Capabilities {
    all: Arc<[Arc<dyn Capability>]>,
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Capabilities({})", self.all.len())
    }
}

impl Capabilities {
    /// Every capability planrt has.
    pub fn builtin() -> Self {
        Self::builtin_guarding(Vec::new())
    }

    /// Every capability planrt has, no preopen reaching the `guarded` directories.
    pub fn builtin_guarding(guarded: Vec<dirs::Guarded>) -> Self {
        Self::of(vec![
            Arc::new(dirs::Dirs::guarding(guarded)),
            Arc::new(http::Http),
            Arc::new(limits::LimitsCapability),
            Arc::new(log::Log),
            Arc::new(kv::Kv),
            Arc::new(cancellation::Cancellation),
            Arc::new(codec::Codec),
            Arc::new(effects::Effects),
        ])
    }

    /// These capabilities.
    pub fn of(mut all: Vec<Arc<dyn Capability>>) -> Self {
        // Stable: equal ranks keep their listed order.
        all.sort_by_key(|c| c.rank());
        Self { all: all.into() }
    }

    /// These capabilities and `capability`.
    pub fn with(self, capability: Arc<dyn Capability>) -> Self {
        let mut all = self.all.to_vec();
        all.push(capability);
        Self::of(all)
    }

    /// Adds every capability's host imports.
    pub fn init(&self, linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
        self.all.iter().try_for_each(|c| c.init(linker))
    }

    /// Checks a plan's grants, or the first refused.
    pub fn check_grants(&self, grants: &Grants) -> Result<(), Refusal> {
        self.all.iter().try_for_each(|c| c.check_grants(grants))
    }

    /// The sandbox of one task, or the first need that is refused.
    pub fn configure(&self, task: &TaskRequest<'_>) -> Result<Sandbox, Refusal> {
        let mut sandbox = Sandbox::default();
        for capability in self.all.iter() {
            capability.configure(task, &mut sandbox)?;
        }
        Ok(sandbox)
    }

    /// The WASI context and parts of one call.
    pub(super) fn prepare(
        &self,
        sandbox: &Sandbox,
        inputs: &AttemptInputs,
    ) -> Result<(WasiCtx, Extensions), AttemptError> {
        // Not `allow_blocking_current_thread`: a guest's blocking file call would then run
        // inside the call's own future, where neither the call's timeout nor a cancel nor
        // a shutdown can end it (a FIFO, a stalled disk), and hold a tokio worker.
        let mut wasi = WasiCtx::builder();
        let mut parts = Extensions::new();
        let mut setup = AttemptSetup {
            wasi: &mut wasi,
            parts: &mut parts,
            inputs,
        };
        for capability in self.all.iter() {
            capability.prepare(sandbox, &mut setup)?;
        }
        Ok((wasi.build(), parts))
    }

    /// Arms one call's store.
    pub(super) fn arm(&self, sandbox: &Sandbox, store: &mut Store<AttemptState>) {
        self.all.iter().for_each(|c| c.arm(sandbox, store));
    }

    /// Renews a kept store's per-call parts before its next call.
    pub(super) fn rearm(&self, sandbox: &Sandbox, store: &mut Store<AttemptState>) {
        self.all.iter().for_each(|c| c.rearm(sandbox, store));
    }

    /// Whether any capability stops the call now.
    pub(super) fn should_stop(&self, state: &AttemptState) -> bool {
        self.all.iter().any(|c| c.should_stop(state))
    }

    /// The failure a capability claims for the call, if any.
    pub(super) fn conclude(
        &self,
        sandbox: &Sandbox,
        state: &AttemptState,
        end: &CallEnd<'_>,
    ) -> Option<AttemptError> {
        let mut claimed = None;
        for capability in self.all.iter() {
            let answer = capability.conclude(sandbox, state, end);
            claimed = claimed.or(answer);
        }
        claimed
    }
}

#[cfg(test)]
mod tests {
    use super::probe::{Probe, ProbeCall, Probed, StopAtOnce};
    use super::*;
    use crate::plan::{DirGrant, DirMode, HttpAllow};
    use crate::runtime::info::DirNeed;

    fn info(task_type: &str, network: bool, dirs: Vec<DirNeed>) -> PluginInfo {
        PluginInfo {
            task_type: task_type.into(),
            version: "1".into(),
            description: String::new(),
            params_schema: "{}".into(),
            dirs,
            network,
            default_timeout: None,
            default_memory_limit: None,
            wit_version: crate::runtime::WitVersion::LATEST,
        }
    }

    #[test]
    fn every_capability_configures_a_task_and_prepares_its_calls() {
        let home = tempfile::tempdir().unwrap();
        let grants = Grants {
            dirs: vec![DirGrant {
                host: home.path().to_owned(),
                guest: "/home".into(),
                mode: DirMode::Rw,
            }],
            http: vec![HttpAllow::parse("example.com").unwrap()],
        };
        let needs = vec![DirNeed {
            guest_path: "/home".into(),
            writable: true,
        }];
        let plugin = info("fetcher", true, needs);
        let limits = LimitOverrides::default();
        let task = TaskRequest {
            info: &plugin,
            grants: &grants,
            limits: &limits,
        };
        let capabilities = Capabilities::builtin().with(Arc::new(Probe));
        let sandbox = capabilities.configure(&task).unwrap();
        assert_eq!(sandbox.get::<dirs::Preopens>().unwrap().0.len(), 1);
        assert_eq!(sandbox.get::<http::Allowlist>().unwrap().0.len(), 1);
        assert_eq!(sandbox.limits().timeout, limits::DEFAULT_TIMEOUT);
        // The test-only probe took part through its registration alone.
        assert_eq!(sandbox.get::<Probed>(), Some(&Probed("fetcher".into())));

        let (_, parts) = capabilities
            .prepare(&sandbox, &AttemptInputs::default())
            .unwrap();
        assert!(parts.get::<http::HttpGate>().is_some());
        assert!(parts.get::<limits::StoreLimiter>().is_some());
        assert!(parts.get::<crate::runtime::guest_log::GuestLog>().is_some());
        assert_eq!(
            parts.get::<ProbeCall>(),
            Some(&ProbeCall {
                task_type: "fetcher".into(),
                stop: false
            })
        );
    }

    #[test]
    fn the_first_refusal_stops_the_task_naming_the_need() {
        let grants = Grants::default();
        let limits = LimitOverrides::default();
        let refused = |plugin: &PluginInfo| {
            Capabilities::builtin()
                .with(Arc::new(Probe))
                .configure(&TaskRequest {
                    info: plugin,
                    grants: &grants,
                    limits: &limits,
                })
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&info("net", true, vec![])).contains("network (outgoing HTTP)"));
        let needs_home = info(
            "dir",
            false,
            vec![DirNeed {
                guest_path: "/home".into(),
                writable: false,
            }],
        );
        assert!(refused(&needs_home).contains("directory `/home` (ro)"));
        assert!(refused(&info("forbidden-by-probe", false, vec![])).contains("probe's approval"));
    }

    #[test]
    fn a_grant_whose_directory_is_missing_is_unusable() {
        let grants = Grants {
            dirs: vec![DirGrant {
                host: "/nonexistent/planrt-home".into(),
                guest: "/home".into(),
                mode: DirMode::Rw,
            }],
            http: vec![],
        };
        let capabilities = Capabilities::builtin();
        let refusal = capabilities.check_grants(&grants).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::Unusable(m) if m.contains("/nonexistent/planrt-home")),
            "{refusal}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_capability_stops_a_real_call_and_claims_its_outcome() {
        // The probe, registered by one line, stops a guest spinning on the CPU at the
        // first epoch tick: its input, store part, stop condition and claim all take part
        // in a real call.
        let (_runtime, plugin, _dir) = crate::runtime::test_support::load_test_plugin(
            "test-spin",
            Capabilities::builtin().with(Arc::new(Probe)),
        )
        .await;
        let sandbox = plugin
            .sandbox(&Grants::default(), &LimitOverrides::default())
            .unwrap();
        assert_eq!(sandbox.get::<Probed>(), Some(&Probed("test-spin".into())));
        let request = |inputs: AttemptInputs| crate::runtime::AttemptRequest {
            context: crate::runtime::AttemptContext {
                plan_id: "p".into(),
                task_id: "t".into(),
                task_type: "test-spin".into(),
                plan_index: 0,
                attempt: 1,
                max_retries: 0,
                deadline_unix_ms: 0,
            },
            params: "{}".into(),
            inputs,
        };
        let report = plugin
            .run(
                &sandbox,
                request(AttemptInputs::default().with(StopAtOnce)),
                plugin.admission().admit_attempt().await,
            )
            .await;
        let error = report.result.unwrap_err();
        assert_eq!(error.kind(), crate::plan::ErrorKind::Cancelled, "{error}");
        assert_eq!(error.to_string(), "stopped by the probe");

        // Without the input, the limits capability's deadline ends the same guest.
        let short = LimitOverrides {
            timeout: Some(std::time::Duration::from_millis(50)),
            ..LimitOverrides::default()
        };
        let sandbox = plugin.sandbox(&Grants::default(), &short).unwrap();
        let report = plugin
            .run(
                &sandbox,
                request(AttemptInputs::default()),
                plugin.admission().admit_attempt().await,
            )
            .await;
        assert_eq!(
            report.result.unwrap_err().kind(),
            crate::plan::ErrorKind::Timeout
        );
    }
}
