//! A loaded plugin and its three calls: `describe` (once, at load), `validate` and one
//! attempt of `run`. `describe` and `run` run in a fresh store per call; `validate` on
//! one instance kept across a plan's tasks ([`Validator`], see [`super::call`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::OnceCell;
use tracing::Instrument;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::admission::{Admission, Place};
use super::cache::CompiledCache;
use super::call::{CallSite, Session, call};
use super::capability::{AttemptInputs, Capabilities, Refusal, Sandbox, TaskRequest};
use super::error::{AttemptError, cap_message};
use super::guest_log::GuestLog;
use super::info::PluginInfo;
use super::params_schema::ParamsSchema;
use super::state::AttemptState;
use super::wit::latest::types as wit;
use super::wit::{PluginPre, WitVersion};
use crate::plan::{ErrorKind, Grants, LimitOverrides, Redactor};

/// Context fields, re-exported for callers that build a request.
pub use wit::Context as AttemptContext;

/// Everything one attempt needs besides its sandbox.
pub struct AttemptRequest {
    /// Identity passed to the plugin.
    pub context: AttemptContext,
    /// Params as JSON text (secrets resolved).
    pub params: String,
    /// What the capabilities take from the caller.
    pub inputs: AttemptInputs,
}

/// How one attempt ended, with what the plugin printed. (Its last progress is kept in
/// the `ProgressSlot` the request carried.)
#[derive(Debug)]
pub struct AttemptReport {
    /// Output JSON text, or why there is none.
    pub result: Result<String, AttemptError>,
    /// The end of stdout, stderr and log lines (secrets masked).
    pub log_tail: Option<String>,
}

/// Why a plugin's `describe()` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// The call failed.
    #[error("describe() failed: {0}")]
    Call(AttemptError),
    /// Its params schema cannot be used.
    #[error("{0}")]
    Schema(String),
}

/// A plugin component ready to instantiate.
pub struct LoadedPlugin {
    info: PluginInfo,
    schema: ParamsSchema,
    file: PathBuf,
    sha256: String,
    engine: Engine,
    /// Linked once: at load when the plugin was described, else when a call first needs
    /// it.
    pre: OnceCell<PluginPre>,
    /// Where its bytes are, until they are linked: what is linked is always what was
    /// hashed, whatever happens to the file since.
    unlinked: std::sync::Mutex<Option<Unlinked>>,
    source: Arc<ComponentSource>,
    capabilities: Capabilities,
}

/// Where components come from: the compiled cache, linked with the host's linker.
pub struct ComponentSource {
    /// The compiled cache.
    pub cache: CompiledCache,
    /// The linker every version's bindings are added to.
    pub linker: Linker<AttemptState>,
    /// What every store made from these components passes first.
    pub admission: Admission,
}

impl ComponentSource {
    /// Links `component` with the bindings of the contract version it targets. A version
    /// this host does not serve is refused naming both, not with a link error about some
    /// import.
    pub fn link(&self, engine: &Engine, component: &Component) -> Result<PluginPre, String> {
        let version = WitVersion::of_component(component, engine).map_err(|e| e.to_string())?;
        self.linker
            .instantiate_pre(component)
            .and_then(|pre| PluginPre::new(version, pre))
            .map_err(|e| {
                format!(
                    "does not implement planrt:task@{version} as this host provides it: {}",
                    e.root_cause()
                )
            })
    }
}

/// A plugin's component: linked already, or its bytes to link when first needed.
enum Linking {
    Done(PluginPre),
    Later(Unlinked),
}

/// The bytes of a plugin not linked yet.
#[derive(Debug, Clone)]
pub(super) enum Unlinked {
    /// Read and hashed at load.
    Read(Arc<[u8]>),
    /// Known by the plugin index from the file's stamp, not read: read again only if its
    /// compiled entry is gone, and then refused unless they still hash to its sha256.
    InFile,
}

/// A plugin file that cannot be read again as it was when the plugin dir was read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FileChanged(String);

/// The bytes of `file`, if they still hash to `sha256`.
fn read_unchanged(file: &Path, sha256: &str) -> wasmtime::Result<Vec<u8>> {
    let bytes = std::fs::read(file).map_err(|e| {
        FileChanged(format!(
            "cannot read {} again to compile it: {e}",
            file.display()
        ))
    })?;
    let now = super::cache::sha256_hex(&bytes);
    if now != sha256 {
        return Err(FileChanged(format!(
            "{} changed since planrt read the plugin dir (sha256 {sha256} then, {now} now): run again",
            file.display()
        ))
        .into());
    }
    Ok(bytes)
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("task_type", &self.info.task_type)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Instantiates once to read `describe()`, with no grants.
    pub(super) async fn describe(
        engine: &Engine,
        (pre, source): (PluginPre, Arc<ComponentSource>),
        capabilities: Capabilities,
        file: PathBuf,
        sha256: String,
    ) -> Result<Self, DescribeError> {
        let site = CallSite {
            engine,
            pre: &pre,
            capabilities: &capabilities,
        };
        let place = source.admission.admit().await;
        let (info, _) = call(
            site,
            (&Sandbox::default(), &AttemptInputs::default()),
            place,
            async |bindings, store| bindings.call_describe(store).await,
        )
        .await;
        let info = PluginInfo::new(info.map_err(DescribeError::Call)?, pre.version());
        let linked = Linking::Done(pre);
        Self::assemble(engine, (source, capabilities), (file, sha256), info, linked)
            .map_err(DescribeError::Schema)
    }

    /// A plugin whose component (`wasm`, of sha256 `sha256`) the index knows: what it
    /// said about itself comes from the index; it is linked when a call first needs it.
    pub(super) fn indexed(
        engine: &Engine,
        source: Arc<ComponentSource>,
        capabilities: Capabilities,
        (file, sha256, wasm): (PathBuf, String, Unlinked),
        info: PluginInfo,
    ) -> Result<Self, String> {
        let linked = Linking::Later(wasm);
        Self::assemble(engine, (source, capabilities), (file, sha256), info, linked)
    }

    /// A plugin from what it said about itself (its params schema compiled here) and
    /// how far its component is linked.
    fn assemble(
        engine: &Engine,
        (source, capabilities): (Arc<ComponentSource>, Capabilities),
        (file, sha256): (PathBuf, String),
        info: PluginInfo,
        linking: Linking,
    ) -> Result<Self, String> {
        let schema = ParamsSchema::compile(&info.params_schema)?;
        let (pre, unlinked) = match linking {
            Linking::Done(pre) => (OnceCell::new_with(Some(pre)), None),
            Linking::Later(wasm) => (OnceCell::new(), Some(wasm)),
        };
        Ok(Self {
            info,
            schema,
            file,
            sha256,
            engine: engine.clone(),
            pre,
            unlinked: std::sync::Mutex::new(unlinked),
            source,
            capabilities,
        })
    }

    /// Links the component now if it is not yet (a plugin taken from the index): `plan`,
    /// `run` and `serve` load every plugin a plan uses before anything runs, so a plugin
    /// that cannot be linked is bad input then, not a failed attempt later.
    pub async fn ensure_loaded(&self) -> Result<(), AttemptError> {
        self.pre().await.map(drop)
    }

    /// Drops the file bytes kept to link the plugin later, if it is not linked yet.
    pub fn release_unlinked(&self) {
        *self.unlinked.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    async fn pre(&self) -> Result<&PluginPre, AttemptError> {
        self.pre
            .get_or_try_init(|| async {
                let (source, engine) = (self.source.clone(), self.engine.clone());
                let (file, sha256) = (self.file.clone(), self.sha256.clone());
                let wasm = self
                    .unlinked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .ok_or_else(|| "its bytes are gone".to_owned())?;
                // Off the async workers, and not blocking this task's other branches
                // (a stop) meanwhile.
                let linked = tokio::task::spawn_blocking(move || {
                    let bytes = || match &wasm {
                        Unlinked::Read(bytes) => Ok(std::borrow::Cow::Borrowed(&bytes[..])),
                        Unlinked::InFile => read_unchanged(&file, &sha256).map(Into::into),
                    };
                    let (component, _) =
                        source
                            .cache
                            .load_with(&engine, &sha256, bytes)
                            .map_err(|e| match e.downcast_ref::<FileChanged>() {
                                Some(changed) => changed.to_string(),
                                None => super::engine::load_error(&e),
                            })?;
                    source.link(&engine, &component)
                })
                .await
                .unwrap_or_else(|e| match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(e) => Err(format!("linking stopped: {e}")),
                })?;
                *self.unlinked.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(linked)
            })
            .await
            .map_err(|reason| AttemptError::PluginLoad {
                file: self.file.clone(),
                reason,
            })
    }

    /// The linked component, loaded now if this is its first call.
    async fn site(&self) -> Result<CallSite<'_>, AttemptError> {
        let pre = self.pre().await?;
        Ok(CallSite {
            engine: &self.engine,
            pre,
            capabilities: &self.capabilities,
        })
    }

    /// What the plugin said about itself.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }
    /// Its params schema, compiled.
    pub fn schema(&self) -> &ParamsSchema {
        &self.schema
    }
    /// The component file.
    pub fn file(&self) -> &Path {
        &self.file
    }
    /// sha256 of the component file, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The sandbox of a task of this plugin's type: what it declares ∩ what `grants`
    /// give, with the plan's `limits`; or the first need refused.
    pub fn sandbox(&self, grants: &Grants, limits: &LimitOverrides) -> Result<Sandbox, Refusal> {
        self.capabilities.configure(&TaskRequest {
            info: &self.info,
            grants,
            limits,
        })
    }

    /// A validator of params for this plugin, logging through `redactor` (params may hold
    /// resolved secrets).
    pub fn validator(&self, redactor: &Redactor) -> Validator<'_> {
        Validator {
            plugin: self,
            inputs: AttemptInputs::new(redactor.clone(), None),
            kept: None,
        }
    }

    /// The instance pool's admission, shared by every plugin of the runtime.
    pub fn admission(&self) -> &Admission {
        &self.source.admission
    }

    /// Runs one attempt in a fresh store set up from the task's `sandbox`, in the pool
    /// place `place` (the executor takes it with the attempt's turn:
    /// [`Admission::admit_attempt`]).
    pub async fn run(
        &self,
        sandbox: &Sandbox,
        request: AttemptRequest,
        place: Place,
    ) -> AttemptReport {
        let AttemptRequest {
            context,
            params,
            inputs,
        } = request;
        let span = tracing::info_span!(
            "attempt",
            plan = %context.plan_id,
            task = %context.task_id,
            index = context.plan_index,
            attempt = context.attempt,
        );
        let site = match self.site().await {
            Ok(site) => site,
            Err(error) => {
                return AttemptReport {
                    result: Err(error),
                    log_tail: None,
                };
            }
        };
        let (result, log) = call(
            site,
            (sandbox, &inputs),
            place,
            async move |bindings, store| bindings.call_run(store, &context, &params).await,
        )
        .instrument(span)
        .await;
        AttemptReport {
            result: result.and_then(|answer| answer.map_err(AttemptError::from)),
            log_tail: log.as_ref().and_then(GuestLog::tail),
        }
    }
}

/// Calls `validate` for the tasks of one plugin, in a sandbox with no grants, on one kept
/// instance: `validate` is pure by contract (the WIT says "without side effects"), so a
/// plan of many tasks instantiates the plugin once rather than once per task.
///
/// What an instance that served earlier calls answers is trusted only when it accepts: a
/// refusal, a trap or a limit there is asked again of a fresh instance, with the full
/// 30 s, whose answer stands — so a task is never refused for what earlier calls left
/// behind. A timeout is not asked again (a task's validation takes at most 30 s on each
/// of at most two instances; a timeout would take both).
pub struct Validator<'p> {
    plugin: &'p LoadedPlugin,
    inputs: AttemptInputs,
    /// What the validator holds between calls: never more than one place in the pool.
    kept: Option<Kept>,
}

/// A validator's place in the instance pool: with the instance of its last clean call,
/// or empty (before the first call, or after a call that did not end cleanly).
enum Kept {
    Session(Session),
    Place(Place),
}

impl Kept {
    fn into_place(self) -> Place {
        match self {
            Kept::Session(session) => session.into_place(),
            Kept::Place(place) => place,
        }
    }
}

/// One try: its answer, and what the validator keeps after it.
type Try = (Result<Result<(), String>, AttemptError>, Kept);

impl Validator<'_> {
    /// Whether the validator holds a place in the instance pool (with an instance or
    /// not): [`Validator::validate`] then never waits for one.
    pub fn holds_place(&self) -> bool {
        self.kept.is_some()
    }

    /// Gives the validator a place in the pool for its next call (one it holds already is
    /// given back).
    pub fn give_place(&mut self, place: Place) {
        self.kept = Some(Kept::Place(place));
    }

    /// The plugin's answer for `params` (`Err(message)`: refused), or why it gave none.
    /// Waits for a place in the pool if the validator holds none.
    pub async fn validate(&mut self, params: &str) -> Result<Result<(), String>, AttemptError> {
        let site = self.plugin.site().await?;
        let kept = match self.kept.take() {
            Some(kept) => kept,
            None => Kept::Place(self.plugin.admission().admit().await),
        };
        let reused = matches!(kept, Kept::Session(_));
        let (first, kept) = try_once(&site, &self.inputs, kept, params).await;
        let confirm = reused
            && match &first {
                Ok(Ok(())) => false,
                Ok(Err(_)) => true,
                Err(error) => error.kind() != ErrorKind::Timeout,
            };
        if !confirm {
            self.kept = Some(kept);
            return first.map(|answer| answer.map_err(cap_message));
        }
        // Neither the refusal nor the error is logged: both may quote the params, secrets
        // resolved; the fresh instance's answer is reported, masked. It takes the kept
        // instance's place, which is dropped first: a validator holds one store at most.
        tracing::debug!(
            plugin = %self.plugin.file().display(),
            "validate did not accept on a kept instance; asking a fresh one"
        );
        let place = Kept::Place(kept.into_place());
        let (second, kept) = try_once(&site, &self.inputs, place, params).await;
        self.kept = Some(kept);
        second.map(|answer| answer.map_err(cap_message))
    }
}

/// Asks the kept session (a fresh one in the kept place) to validate `params`, within
/// `validate`'s limits. Not a method: a validator (its kept store is not `Sync`) must not
/// be borrowed across the call.
async fn try_once(site: &CallSite<'_>, inputs: &AttemptInputs, kept: Kept, params: &str) -> Try {
    let sandbox = Sandbox::default();
    let session = match kept {
        Kept::Session(session) => session,
        Kept::Place(place) => match Session::open(site, (&sandbox, inputs), place) {
            Ok(session) => session,
            Err((error, place)) => return (Err(error), Kept::Place(place)),
        },
    };
    let answer = session
        .call(site, &sandbox, async |bindings, store| {
            bindings.call_validate(store, params).await
        })
        .await;
    match answer {
        Ok((answer, session)) => (Ok(answer), Kept::Session(session)),
        Err((error, place)) => (Err(error), Kept::Place(place)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runtime::Limits;

    #[tokio::test(flavor = "multi_thread")]
    async fn each_call_of_a_session_has_its_own_deadline() {
        let (_runtime, plugin, _dir) =
            crate::runtime::test_support::load_test_plugin("test-hostile", Capabilities::builtin())
                .await;
        let site = plugin.site().await.unwrap();
        let mut sandbox = Sandbox::default();
        sandbox.insert(Limits {
            timeout: Duration::from_millis(1_000),
            ..Limits::METADATA
        });
        let inputs = AttemptInputs::default();
        let sleep = |ms: u64| format!(r#"{{"attack": "slow-validate", "ms": {ms}}}"#);
        let place = plugin.admission().admit().await;
        let mut session = Session::open(&site, (&sandbox, &inputs), place)
            .map_err(|(error, _)| error)
            .unwrap();
        // Three calls of 600 ms: 1.8 s in all, over one call's 1 s, each within its own.
        for call in 0..3 {
            let params = sleep(600);
            let (answer, kept) = session
                .call(&site, &sandbox, async |bindings, store| {
                    bindings.call_validate(store, &params).await
                })
                .await
                .unwrap_or_else(|(e, _)| panic!("call {call}: {e}"));
            assert_eq!(answer, Ok(()));
            session = kept;
        }
        // A call past its own deadline still times out on a kept instance.
        let params = sleep(3_000);
        let error = session
            .call(&site, &sandbox, async |bindings, store| {
                bindings.call_validate(store, &params).await
            })
            .await
            .err()
            .expect("a timeout")
            .0;
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    }
}
