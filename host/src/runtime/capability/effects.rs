//! Effects: whatever a call does that reaches outside its sandbox waits for the caller's
//! [`EffectGate`]. The executor gates each attempt on the commit that stores its start
//! (and the ends of the tasks it waited for), so an attempt is instantiated and computes
//! while that commit is being written, and nothing it does is seen outside the process
//! before its start is durable.
//!
//! What waits, at the one place each kind of effect begins:
//!
//! - files: `wasi:filesystem/preopens.get-directories`, where every descriptor comes from
//!   (no other import yields one);
//! - stdout and stderr: `wasi:cli/stdout.get-stdout` and `wasi:cli/stderr.get-stderr`,
//!   the only sources of those streams;
//! - HTTP: the request leaves in wasi:http's `send_request` hook ([`super::http`]);
//! - the plugin's log and progress (`planrt:task/host`, [`super::log`]) and its key-value
//!   store ([`super::kv`]), every version.
//!
//! The rest never waits, as [`IMPORTS`] says of each interface: clocks, random, the
//! host-side codecs, `cancelled()`, the empty environment and stdin, wasi:sockets (every
//! address and name lookup is refused to every plugin), request and response values, and
//! the operations on resources only a gated import hands out.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{ComponentNamedList, Linker, Lower};
use wasmtime_wasi::cli::WasiCliView;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::cli::{stderr, stdout};
use wasmtime_wasi::p2::bindings::filesystem::preopens;

use super::{AttemptSetup, Capability, Sandbox};
use crate::runtime::error::AttemptError;
use crate::runtime::state::AttemptState;

/// What an attempt's effects wait for.
pub trait Barrier: Send + Sync + 'static {
    /// Resolves once effects may happen, or says why they never will.
    fn passed(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;

    /// When it was decided (opened or closed for good), if it was: the end of the wait
    /// that is credited, whoever waited and whenever they looked.
    fn decided_at(&self) -> Option<Instant>;
}

/// The barrier of one attempt's effects (an input from the caller; without one, nothing
/// waits). It is passed once: the first effect waits for it, the later ones go through.
/// That first wait is the host's (a commit being written), not the call's: it is not
/// counted against the call's time limit ([`EffectGate::waited`]), up to a credit the
/// caller sets — a guest must not stretch its time by making the host wait.
#[derive(Clone)]
pub struct EffectGate {
    barrier: Arc<dyn Barrier>,
    /// At most this much of the wait is not counted against the call.
    max_credit: Duration,
    state: Arc<GateState>,
}

/// When the gate was first reached, and when and how it was passed (once it was).
#[derive(Debug, Default)]
struct GateState {
    reached: OnceLock<Instant>,
    passed: OnceLock<(Instant, Result<(), String>)>,
}

impl std::fmt::Debug for EffectGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EffectGate")
            .field("waited", &self.waited())
            .finish_non_exhaustive()
    }
}

impl EffectGate {
    /// A gate that opens when `barrier` is passed; at most `max_credit` of the wait is not
    /// counted against the call.
    pub fn new(barrier: impl Barrier, max_credit: Duration) -> Self {
        Self {
            barrier: Arc::new(barrier),
            max_credit,
            state: Arc::default(),
        }
    }

    /// Waits until effects may happen; an error ends the call (a trap).
    pub async fn passed(&self) -> wasmtime::Result<()> {
        let passed = match self.state.passed.get() {
            Some((_, passed)) => passed,
            None => {
                self.state.reached.get_or_init(Instant::now);
                let passed = self.barrier.passed().await;
                debug_assert!(
                    self.barrier.decided_at().is_some(),
                    "a barrier passed says when it was decided"
                );
                &self.state.passed.get_or_init(|| (Instant::now(), passed)).1
            }
        };
        passed.clone().map_err(|why| {
            wasmtime::format_err!("this attempt may not act outside its sandbox: {why}")
        })
    }

    /// How long the gate held the call: from when it was first reached until the barrier
    /// was decided (or until now), at most the credit. A wait dropped half-way (an HTTP
    /// request the guest gave up on) earns nothing past the barrier's decision, and an
    /// HTTP request's wait runs beside the guest, which may compute meanwhile: the credit
    /// bounds what that gains it.
    pub fn waited(&self) -> Duration {
        let Some(reached) = self.state.reached.get() else {
            return Duration::ZERO;
        };
        // The barrier's own time first; a waiter's, should a barrier not say.
        let until = self
            .barrier
            .decided_at()
            .or_else(|| self.state.passed.get().map(|(at, _)| *at))
            .unwrap_or_else(Instant::now);
        until
            .saturating_duration_since(*reached)
            .min(self.max_credit)
    }
}

/// The gate time one call has been given back so far: what its gate held it since the
/// call began (a kept instance's gate may have credited earlier calls already).
#[derive(Debug, Clone, Default)]
pub struct CallCredit {
    gate: Option<EffectGate>,
    before: Duration,
}

impl CallCredit {
    /// The credit of a call beginning now behind `gate`.
    pub fn new(gate: Option<EffectGate>) -> Self {
        let before = gate.as_ref().map_or(Duration::ZERO, EffectGate::waited);
        Self { gate, before }
    }

    /// How long the gate has held this call, within its credit.
    pub fn earned(&self) -> Duration {
        self.gate.as_ref().map_or(Duration::ZERO, |gate| {
            gate.waited().saturating_sub(self.before)
        })
    }
}

/// Waits for `gate`, if the call has one (taken out of the call's state first, so no
/// borrow of the state lives across the wait).
pub async fn effects_allowed(gate: Option<EffectGate>) -> wasmtime::Result<()> {
    match gate {
        Some(gate) => gate.passed().await,
        None => Ok(()),
    }
}

impl AttemptState {
    /// The gate this call's effects wait for, if any.
    pub fn effect_gate(&self) -> Option<EffectGate> {
        self.part::<EffectGate>().cloned()
    }
}

/// Whether an interface's imports may act outside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// They may: each waits for the gate (where is said in the module documentation).
    Gated,
    /// They cannot, or only through a resource a gated import handed out.
    Inside,
}

/// Every interface a plugin may import (without its version), and whether it reaches
/// outside. A new import is decided here before it is linked: the test of this module
/// finds any interface of the served contracts missing from this list.
pub const IMPORTS: &[(&str, Reach)] = &[
    ("wasi:filesystem/preopens", Reach::Gated),
    ("wasi:cli/stdout", Reach::Gated),
    ("wasi:cli/stderr", Reach::Gated),
    ("wasi:http/outgoing-handler", Reach::Gated),
    ("planrt:task/host", Reach::Gated),
    ("planrt:task/kv", Reach::Gated),
    // Descriptors come only from `preopens`; output streams from stdout, stderr, files
    // and HTTP bodies — all gated at their source.
    ("wasi:filesystem/types", Reach::Inside),
    ("wasi:io/streams", Reach::Inside),
    ("wasi:io/error", Reach::Inside),
    ("wasi:io/poll", Reach::Inside),
    ("wasi:http/types", Reach::Inside),
    ("wasi:clocks/monotonic-clock", Reach::Inside),
    ("wasi:clocks/wall-clock", Reach::Inside),
    ("wasi:random/random", Reach::Inside),
    ("wasi:random/insecure", Reach::Inside),
    ("wasi:random/insecure-seed", Reach::Inside),
    // An empty environment and stdin; `exit` ends the call.
    ("wasi:cli/environment", Reach::Inside),
    ("wasi:cli/exit", Reach::Inside),
    ("wasi:cli/stdin", Reach::Inside),
    ("wasi:cli/terminal-input", Reach::Inside),
    ("wasi:cli/terminal-output", Reach::Inside),
    ("wasi:cli/terminal-stdin", Reach::Inside),
    ("wasi:cli/terminal-stdout", Reach::Inside),
    ("wasi:cli/terminal-stderr", Reach::Inside),
    // Every address and name lookup is refused (wasmtime-wasi's defaults, never widened).
    ("wasi:sockets/network", Reach::Inside),
    ("wasi:sockets/instance-network", Reach::Inside),
    ("wasi:sockets/tcp", Reach::Inside),
    ("wasi:sockets/tcp-create-socket", Reach::Inside),
    ("wasi:sockets/udp", Reach::Inside),
    ("wasi:sockets/udp-create-socket", Reach::Inside),
    ("wasi:sockets/ip-name-lookup", Reach::Inside),
    ("planrt:task/types", Reach::Inside),
    ("planrt:task/cancellation", Reach::Inside),
    ("planrt:task/digest", Reach::Inside),
    ("planrt:task/compression", Reach::Inside),
];

/// The WASI version whose imports wasmtime-wasi links (and this module shadows): a
/// component importing any 0.2 version is served by these definitions. Were wasmtime-wasi
/// to link another version, these would stand beside its own instead of replacing them —
/// and this module's tests that files, stdout and stderr wait for the gate would fail.
const WASI: &str = "0.2.12";

/// The effects capability.
#[derive(Debug, Clone, Copy)]
pub struct Effects;

impl Capability for Effects {
    fn init(&self, linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
        // wasmtime-wasi linked these already: they are replaced by the same functions
        // behind the gate.
        linker.allow_shadowing(true);
        let shadowed = gate(
            linker,
            &format!("wasi:filesystem/preopens@{WASI}"),
            "get-directories",
            |state| preopens::Host::get_directories(&mut state.filesystem()),
        )
        .and_then(|()| {
            gate(
                linker,
                &format!("wasi:cli/stdout@{WASI}"),
                "get-stdout",
                |state| stdout::Host::get_stdout(&mut state.cli()),
            )
        })
        .and_then(|()| {
            gate(
                linker,
                &format!("wasi:cli/stderr@{WASI}"),
                "get-stderr",
                |state| stderr::Host::get_stderr(&mut state.cli()),
            )
        });
        linker.allow_shadowing(false);
        shadowed
    }

    fn prepare(
        &self,
        _sandbox: &Sandbox,
        setup: &mut AttemptSetup<'_>,
    ) -> Result<(), AttemptError> {
        setup.pass_on::<EffectGate>();
        Ok(())
    }
}

/// Defines `instance`'s function `name` (no parameters, one result) as `get` behind the
/// call's gate.
fn gate<R>(
    linker: &mut Linker<AttemptState>,
    instance: &str,
    name: &str,
    get: fn(&mut AttemptState) -> wasmtime::Result<R>,
) -> wasmtime::Result<()>
where
    R: Send + 'static,
    (R,): ComponentNamedList + Lower,
{
    linker
        .instance(instance)?
        .func_wrap_async(name, move |mut store, (): ()| {
            Box::new(async move {
                effects_allowed(store.data().effect_gate()).await?;
                Ok((get(store.data_mut())?,))
            })
        })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::plan::{DirGrant, DirMode, Grants, HttpAllow, LimitOverrides};
    use crate::runtime::capability::kv::{KvAccess, KvBackend, KvFull, KvLimits};
    use crate::runtime::capability::log::ProgressSlot;
    use crate::runtime::capability::{AttemptInputs, Sandbox};
    use crate::runtime::test_support::load_test_plugin;
    use crate::runtime::{
        AttemptContext, AttemptReport, AttemptRequest, Capabilities, LoadedPlugin,
    };

    /// A barrier the test opens, or closes for good; it says when a call first reached it.
    #[derive(Clone)]
    struct Switch {
        state: Arc<tokio::sync::watch::Sender<Option<Result<(), String>>>>,
        reached: Arc<tokio::sync::watch::Sender<bool>>,
        decided_at: Arc<OnceLock<Instant>>,
    }

    impl Switch {
        fn new() -> Self {
            Self {
                state: Arc::new(tokio::sync::watch::Sender::new(None)),
                reached: Arc::new(tokio::sync::watch::Sender::new(false)),
                decided_at: Arc::default(),
            }
        }

        fn set(&self, to: Result<(), String>) {
            self.decided_at.get_or_init(Instant::now);
            self.state.send_replace(Some(to));
        }

        fn was_reached(&self) -> bool {
            *self.reached.borrow()
        }

        /// Waits until a call is waiting at the switch.
        async fn reached(&self) {
            let mut reached = self.reached.subscribe();
            let waited = tokio::time::timeout(Duration::from_secs(30), reached.wait_for(|r| *r));
            assert!(waited.await.is_ok(), "no call reached the gate");
        }
    }

    impl Barrier for Switch {
        fn passed(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
            self.reached.send_replace(true);
            let mut state = self.state.subscribe();
            Box::pin(async move {
                let state = state
                    .wait_for(Option::is_some)
                    .await
                    .expect("the switch lives");
                state.clone().expect("set")
            })
        }

        fn decided_at(&self) -> Option<Instant> {
            self.decided_at.get().copied()
        }
    }

    /// Runs `plugin` with `params` in `sandbox` behind `switch` (its wait credited in
    /// full), in a task of its own.
    fn start(
        plugin: &Arc<LoadedPlugin>,
        sandbox: Sandbox,
        params: &str,
        inputs: AttemptInputs,
        switch: &Switch,
    ) -> tokio::task::JoinHandle<AttemptReport> {
        let gate = EffectGate::new(switch.clone(), Duration::from_secs(60));
        start_behind(plugin, sandbox, params, inputs.with(gate))
    }

    /// Runs `plugin` with `params` in `sandbox`, in a task of its own.
    fn start_behind(
        plugin: &Arc<LoadedPlugin>,
        sandbox: Sandbox,
        params: &str,
        inputs: AttemptInputs,
    ) -> tokio::task::JoinHandle<AttemptReport> {
        let request = AttemptRequest {
            context: AttemptContext {
                plan_id: "p".into(),
                task_id: "t".into(),
                task_type: plugin.info().task_type.clone(),
                plan_index: 0,
                attempt: 1,
                max_retries: 0,
                deadline_unix_ms: 0,
            },
            params: params.into(),
            inputs,
        };
        let plugin = plugin.clone();
        tokio::spawn(async move {
            let place = plugin.admission().admit_attempt().await;
            plugin.run(&sandbox, request, place).await
        })
    }

    /// Waits until the call behind `switch` reaches its gate, checks that it has not ended
    /// and that its effect (when the test can see it from outside: `happened`) has not
    /// happened; then opens the gate and returns how the call ended.
    async fn waits_for_the_gate(
        call: tokio::task::JoinHandle<AttemptReport>,
        switch: &Switch,
        happened: Option<&dyn Fn() -> bool>,
    ) -> AttemptReport {
        switch.reached().await;
        // A moment for an effect that would not have waited to show.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(happened) = happened {
            assert!(!happened(), "the effect happened behind a closed gate");
        }
        assert!(!call.is_finished(), "the call ended behind a closed gate");
        switch.set(Ok(()));
        let report = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("the call ends once the gate opens")
            .unwrap();
        if let Some(happened) = happened {
            assert!(happened(), "the effect happened once the gate opened");
        }
        report
    }

    fn sandbox(plugin: &LoadedPlugin, grants: &Grants) -> Sandbox {
        plugin.sandbox(grants, &LimitOverrides::default()).unwrap()
    }

    fn work_grant(dir: &Path) -> Grants {
        Grants {
            dirs: vec![DirGrant {
                host: dir.to_owned(),
                guest: "/work".into(),
                mode: DirMode::Rw,
            }],
            http: Vec::new(),
        }
    }

    use std::path::Path;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_call_that_reaches_nothing_outside_runs_to_its_end_behind_a_closed_gate() {
        // What lets an executor run an attempt while its start is being written.
        let (_runtime, plugin, _dir) = load_test_plugin("test-noop", Capabilities::builtin()).await;
        let switch = Switch::new();
        let sandbox = sandbox(&plugin, &Grants::default());
        let call = start(&plugin, sandbox, "{}", AttemptInputs::default(), &switch);
        let report = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("a no-op never waits for the gate")
            .unwrap();
        assert_eq!(report.result.unwrap(), "{}");
        assert!(!switch.was_reached(), "a no-op asked to act");
    }

    /// Runs `test-append` with a 1 s timeout behind a gate held 3 s that credits `credit`
    /// of that wait; returns how it ended and whether it acted.
    async fn held_three_times_the_timeout(credit: Duration) -> (AttemptReport, bool) {
        let (_runtime, plugin, dir) =
            load_test_plugin("test-append", Capabilities::builtin()).await;
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let switch = Switch::new();
        let short = LimitOverrides {
            timeout: Some(Duration::from_secs(1)),
            ..LimitOverrides::default()
        };
        let sandbox = plugin.sandbox(&work_grant(&work), &short).unwrap();
        let inputs = AttemptInputs::default().with(EffectGate::new(switch.clone(), credit));
        let call = start_behind(&plugin, sandbox, "{}", inputs);
        switch.reached().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        switch.set(Ok(()));
        let report = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .unwrap()
            .unwrap();
        (report, work.join("effects.log").exists())
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn time_at_the_gate_is_not_counted_against_the_call() {
        // The gate is the host's wait (a commit being written): held three times the task's
        // timeout, the task still has its whole time once it is let through.
        let (report, acted) = held_three_times_the_timeout(Duration::from_secs(60)).await;
        assert!(report.result.is_ok(), "{:?}", report.result);
        assert!(acted);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_gate_held_past_its_credit_counts_against_the_call() {
        // Credit for 100 ms of the 3 s the gate holds: the call's 1 s runs out.
        let (report, _) = held_three_times_the_timeout(Duration::from_millis(100)).await;
        let error = report.result.unwrap_err();
        assert_eq!(error.kind(), crate::plan::ErrorKind::Timeout, "{error}");
    }

    /// Starts a wait at `gate` in a task of its own, and returns once it is waiting.
    async fn waiting_at(
        gate: &EffectGate,
        switch: &Switch,
    ) -> tokio::task::JoinHandle<wasmtime::Result<()>> {
        let wait = tokio::spawn({
            let gate = gate.clone();
            async move { gate.passed().await }
        });
        switch.reached().await;
        wait
    }

    #[tokio::test]
    async fn the_wait_is_credited_until_the_barrier_is_decided_and_never_after() {
        let switch = Switch::new();
        let gate = EffectGate::new(switch.clone(), Duration::from_secs(10));
        assert_eq!(gate.waited(), Duration::ZERO, "nothing waited yet");
        let wait = waiting_at(&gate, &switch).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        switch.set(Ok(()));
        wait.await.unwrap().unwrap();
        let credited = gate.waited();
        assert!(credited >= Duration::from_millis(30), "{credited:?}");
        assert!(credited < Duration::from_secs(10), "{credited:?}");
        // Passed once, the gate lets every later effect through without counting it.
        for _ in 0..1_000 {
            gate.passed().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(gate.waited(), credited);
    }

    #[tokio::test]
    async fn a_wait_given_up_half_way_earns_nothing_past_the_barriers_decision() {
        // A guest that sends a request while its start is being written, drops it, and
        // computes on: its credit ends when the commit does, not when it next acts.
        let switch = Switch::new();
        let gate = EffectGate::new(switch.clone(), Duration::from_secs(10));
        waiting_at(&gate, &switch).await.abort();
        tokio::time::sleep(Duration::from_millis(30)).await;
        switch.set(Ok(()));
        let credited = gate.waited();
        tokio::time::sleep(Duration::from_millis(100)).await;
        gate.passed().await.unwrap();
        assert_eq!(gate.waited(), credited);
    }

    #[tokio::test]
    async fn no_more_than_the_credit_is_credited() {
        let switch = Switch::new();
        let gate = EffectGate::new(switch.clone(), Duration::from_millis(50));
        let wait = waiting_at(&gate, &switch).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            gate.waited(),
            Duration::from_millis(50),
            "held past the credit"
        );
        switch.set(Ok(()));
        wait.await.unwrap().unwrap();
        assert_eq!(gate.waited(), Duration::from_millis(50));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn files_wait_for_the_gate() {
        let (_runtime, plugin, dir) =
            load_test_plugin("test-append", Capabilities::builtin()).await;
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let switch = Switch::new();
        let sandbox = sandbox(&plugin, &work_grant(&work));
        let call = start(&plugin, sandbox, "{}", AttemptInputs::default(), &switch);
        let log = work.join("effects.log");
        let report = waits_for_the_gate(call, &switch, Some(&|| log.exists())).await;
        assert!(report.result.is_ok(), "{:?}", report.result);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "t 1\n");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_gate_that_never_opens_ends_the_call_before_its_first_effect() {
        let (_runtime, plugin, dir) =
            load_test_plugin("test-append", Capabilities::builtin()).await;
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let switch = Switch::new();
        switch.set(Err("the disk is full".into()));
        let sandbox = sandbox(&plugin, &work_grant(&work));
        let report = start(&plugin, sandbox, "{}", AttemptInputs::default(), &switch)
            .await
            .unwrap();
        let error = report.result.unwrap_err();
        assert!(error.to_string().contains("the disk is full"), "{error}");
        assert!(!work.join("effects.log").exists());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn stdout_stderr_log_and_progress_wait_for_the_gate() {
        let (_runtime, plugin, _dir) =
            load_test_plugin("test-chatty", Capabilities::builtin()).await;
        for only in ["stdout", "stderr", "log", "progress"] {
            let switch = Switch::new();
            let slot = ProgressSlot::new();
            let inputs = AttemptInputs::default().with(slot.clone());
            let params = format!(r#"{{"only":"{only}","say":"said to {only}"}}"#);
            let sandbox = sandbox(&plugin, &Grants::default());
            let call = start(&plugin, sandbox, &params, inputs, &switch);
            // The plugin does nothing else: until it has said it, the call does not end.
            let reported = || slot.get().is_some();
            let seen: Option<&dyn Fn() -> bool> = (only == "progress").then_some(&reported);
            let report = waits_for_the_gate(call, &switch, seen).await;
            assert_eq!(report.result.unwrap(), "{}", "{only}");
            if only != "progress" {
                let tail = report.log_tail.unwrap_or_default();
                assert!(tail.contains(&format!("said to {only}")), "{only}: {tail}");
            }
        }
    }

    /// A key-value store that counts the calls that reach it.
    #[derive(Default)]
    struct Counted(AtomicUsize, Mutex<Option<Vec<u8>>>);

    impl KvBackend for Counted {
        fn get(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(self.1.lock().unwrap().clone())
        }
        fn set(
            &self,
            _: &str,
            _: &str,
            value: &[u8],
            _: KvLimits,
        ) -> Result<Result<(), KvFull>, String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            *self.1.lock().unwrap() = Some(value.to_vec());
            Ok(Ok(()))
        }
        fn delete(&self, _: &str, _: &str) -> Result<(), String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_key_value_store_waits_for_the_gate() {
        let (_runtime, plugin, _dir) = load_test_plugin("test-kv", Capabilities::builtin()).await;
        let store = Arc::new(Counted::default());
        let switch = Switch::new();
        let inputs = AttemptInputs::default().with(KvAccess(store.clone()));
        let sandbox = sandbox(&plugin, &Grants::default());
        let call = start(&plugin, sandbox, r#"{"key":"k"}"#, inputs, &switch);
        let calls = || store.0.load(Ordering::SeqCst) > 0;
        let report = waits_for_the_gate(call, &switch, Some(&calls)).await;
        assert!(report.result.is_ok(), "{:?}", report.result);
        assert_eq!(
            store.1.lock().unwrap().as_deref(),
            Some(&b"t attempt 1"[..])
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_http_request_waits_for_the_gate() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let served = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                served.fetch_add(1, Ordering::SeqCst);
                let mut request = [0; 4096];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        let (_runtime, plugin, _dir) =
            load_test_plugin("test-fetch", Capabilities::builtin()).await;
        let grants = Grants {
            dirs: Vec::new(),
            http: vec![HttpAllow::parse(&format!("127.0.0.1:{port}")).unwrap()],
        };
        let switch = Switch::new();
        let params = format!(r#"{{"urls":["http://127.0.0.1:{port}/"]}}"#);
        let call = start(
            &plugin,
            sandbox(&plugin, &grants),
            &params,
            AttemptInputs::default(),
            &switch,
        );
        let served = || requests.load(Ordering::SeqCst) > 0;
        let report = waits_for_the_gate(call, &switch, Some(&served)).await;
        let output = report.result.unwrap();
        assert!(output.contains(r#""body":"ok""#), "{output}");
    }

    #[test]
    fn every_interface_a_plugin_may_import_is_decided() {
        // The worlds of every served contract version: each interface they import is in
        // IMPORTS, gated or inside — none linked without a decision.
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let decided = |name: &str| IMPORTS.iter().any(|(known, _)| *known == name);
        let mut seen = 0;
        let mut imported = std::collections::BTreeSet::<String>::new();
        for version in ["v0.1.0", "v0.2.0", "v0.3.0"] {
            let mut resolve = wit_parser::Resolve::default();
            let (package, _) = resolve.push_dir(wit.join(version)).unwrap();
            let world = resolve.select_world(&[package], Some("plugin")).unwrap();
            for (key, item) in &resolve.worlds[world].imports {
                let id = match item {
                    wit_parser::WorldItem::Interface { id, .. } => id,
                    // A type the world uses from an interface it imports.
                    wit_parser::WorldItem::Type { .. } => continue,
                    wit_parser::WorldItem::Function(_) => {
                        panic!("{version}: a function imported outside an interface: {key:?}")
                    }
                };
                let name = resolve.id_of(*id).expect("a named interface");
                let unversioned = name.split('@').next().unwrap().to_owned();
                assert!(
                    decided(&unversioned),
                    "{version} imports {name}: not in IMPORTS"
                );
                imported.insert(unversioned);
                seen += 1;
            }
        }
        assert!(seen > 30, "only {seen} imports found");
        // And nothing in IMPORTS is imported by no contract (a decision gone stale).
        for (name, _) in IMPORTS {
            assert!(
                imported.contains(*name),
                "{name} is imported by no contract"
            );
        }
    }
}
