//! A loaded plugin and its three calls: `describe` (once, at load), `validate` and one
//! attempt of `run`. Each call runs in a fresh store (see [`super::call`]).

use std::path::{Path, PathBuf};

use tracing::Instrument;
use wasmtime::Engine;

use super::call::{CallSite, call};
use super::capability::{AttemptInputs, Capabilities, Refusal, Sandbox, TaskRequest};
use super::error::{AttemptError, cap_message};
use super::info::PluginInfo;
use super::params_schema::ParamsSchema;
use super::wit::PluginPre;
use super::wit::latest::types as wit;
use crate::plan::{Grants, LimitOverrides, Redactor};

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

/// How one attempt ended, with what the plugin printed.
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
    pre: PluginPre,
    capabilities: Capabilities,
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
        pre: PluginPre,
        capabilities: Capabilities,
        file: PathBuf,
        sha256: String,
    ) -> Result<Self, DescribeError> {
        let site = CallSite {
            engine,
            pre: &pre,
            capabilities: &capabilities,
        };
        let (info, _) = call(
            site,
            &Sandbox::default(),
            &AttemptInputs::default(),
            async |bindings, store| bindings.call_describe(store).await,
        )
        .await;
        let info = PluginInfo::new(info.map_err(DescribeError::Call)?, pre.version());
        let schema = ParamsSchema::compile(&info.params_schema).map_err(DescribeError::Schema)?;
        Ok(Self {
            info,
            schema,
            file,
            sha256,
            engine: engine.clone(),
            pre,
            capabilities,
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

    fn site(&self) -> CallSite<'_> {
        CallSite {
            engine: &self.engine,
            pre: &self.pre,
            capabilities: &self.capabilities,
        }
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

    /// Calls `validate(params)` in a fresh sandbox with no grants; what it logs is masked
    /// with `redactor` (params may hold resolved secrets).
    pub async fn validate(
        &self,
        params: &str,
        redactor: &Redactor,
    ) -> Result<Result<(), String>, AttemptError> {
        let params = params.to_owned();
        let inputs = AttemptInputs::new(redactor.clone(), None);
        let (result, _) = call(
            self.site(),
            &Sandbox::default(),
            &inputs,
            async move |bindings, store| bindings.call_validate(store, &params).await,
        )
        .await;
        result.map(|answer| answer.map_err(cap_message))
    }

    /// Runs one attempt in a fresh store set up from the task's `sandbox`.
    pub async fn run(&self, sandbox: &Sandbox, request: AttemptRequest) -> AttemptReport {
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
        let (result, log) = call(
            self.site(),
            sandbox,
            &inputs,
            async move |bindings, store| bindings.call_run(store, &context, &params).await,
        )
        .instrument(span)
        .await;
        AttemptReport {
            result: result.and_then(|answer| answer.map_err(AttemptError::from)),
            log_tail: log.and_then(|log| log.tail()),
        }
    }
}
