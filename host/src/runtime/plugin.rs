//! A loaded plugin and the calls into it: `describe`, `validate` and one attempt of `run`.
//!
//! Every call gets a fresh store from the plugin's `InstancePre`, its own limits (an
//! epoch deadline that yields to tokio while time is left, a tokio timeout for time spent
//! waiting on host I/O, and a memory limit), and is classified into an [`AttemptError`]
//! without matching on message strings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;
use wasmtime::component::HasSelf;
use wasmtime::{Engine, Store, Trap, UpdateDeadline, WasmBacktrace};

use super::bindings::planrt::task::types::{self as wit, DirMode, TaskError};
use super::bindings::{Plugin as PluginBindings, PluginPre};
use super::engine::EPOCH_TICK;
use super::guest_log::GuestLog;
use super::sandbox::{AttemptState, Preopen, ProgressSink, Sandbox};
use crate::plan::Redactor;

/// Per-call limits.
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

/// A directory a plugin needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirNeed {
    /// Guest path, e.g. `/home`.
    pub guest_path: String,
    /// Whether it must be writable.
    pub writable: bool,
}

/// What `describe` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Task type name (validated by the registry).
    pub task_type: String,
    /// The plugin's version.
    pub version: String,
    /// One line of description.
    pub description: String,
    /// JSON Schema of params, as text.
    pub params_schema: String,
    /// Directories needed.
    pub dirs: Vec<DirNeed>,
    /// Whether it makes outgoing HTTP requests.
    pub network: bool,
    /// Suggested timeout.
    pub default_timeout: Option<Duration>,
    /// Suggested memory limit.
    pub default_memory_limit: Option<u64>,
}

impl From<wit::Info> for PluginInfo {
    fn from(info: wit::Info) -> Self {
        Self {
            task_type: info.task_type,
            version: info.version,
            description: info.description,
            params_schema: info.params_schema,
            dirs: info
                .needs
                .dirs
                .into_iter()
                .map(|d| DirNeed {
                    guest_path: d.guest_path,
                    writable: d.mode == DirMode::Rw,
                })
                .collect(),
            network: info.needs.network,
            default_timeout: info.default_timeout_ms.map(Duration::from_millis),
            default_memory_limit: info.default_memory_limit,
        }
    }
}

/// How the plugin itself classified a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginErrorKind {
    /// Worth retrying.
    Transient,
    /// Not worth retrying.
    Permanent,
    /// Params do not fit.
    InvalidParams,
}

/// Why a call into a plugin did not return normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    /// The plugin returned an error.
    #[error("{message}")]
    Plugin {
        /// Its classification.
        kind: PluginErrorKind,
        /// Its message.
        message: String,
    },
    /// The guest trapped.
    #[error("{message}")]
    Trap {
        /// The trap, e.g. "wasm `unreachable` instruction executed".
        message: String,
        /// Guest frames, innermost first.
        backtrace: Option<String>,
    },
    /// The call ran past its timeout.
    #[error("timed out after the {} timeout", crate::plan::units::format_duration(*limit))]
    Timeout {
        /// The limit.
        limit: Duration,
    },
    /// The guest tried to grow memory past the limit.
    #[error("exceeded the memory limit of {}", crate::plan::units::format_size(*limit))]
    MemoryLimit {
        /// The limit.
        limit: u64,
    },
    /// `run` returned more output than the limit allows.
    #[error(
        "the plugin returned {size} bytes of output, over the maxOutput limit of {}",
        crate::plan::units::format_size(*limit)
    )]
    OutputTooLarge {
        /// Bytes returned.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The guest sent HTTP requests to hosts the plan does not allow.
    #[error("HTTP request to {} denied: not in the plan's [grants] http allowlist", authorities.join(", "))]
    HttpDenied {
        /// Host (and port) of each denied request.
        authorities: Vec<String>,
    },
    /// The sandbox could not be set up (e.g. a granted directory cannot be opened).
    #[error("could not set up the sandbox: {0}")]
    Sandbox(String),
}

impl AttemptError {
    /// The error with every message masked by `redactor`.
    pub fn redacted(self, redactor: &Redactor) -> Self {
        match self {
            Self::Plugin { kind, message } => Self::Plugin {
                kind,
                message: redactor.redact_string(message),
            },
            Self::Trap { message, backtrace } => Self::Trap {
                message: redactor.redact_string(message),
                backtrace: backtrace.map(|b| redactor.redact_string(b)),
            },
            Self::HttpDenied { authorities } => Self::HttpDenied {
                authorities: authorities
                    .into_iter()
                    .map(|a| redactor.redact_string(a))
                    .collect(),
            },
            Self::Sandbox(message) => Self::Sandbox(redactor.redact_string(message)),
            other @ (Self::Timeout { .. }
            | Self::MemoryLimit { .. }
            | Self::OutputTooLarge { .. }) => other,
        }
    }
}

/// Everything one attempt needs.
pub struct AttemptRequest {
    /// Identity passed to the plugin.
    pub context: wit::Context,
    /// Params as JSON text.
    pub params: String,
    /// Granted directories.
    pub preopens: Vec<Preopen>,
    /// Limits of this attempt.
    pub limits: Limits,
    /// Where progress reports go.
    pub progress: Option<Arc<dyn ProgressSink>>,
    /// Hosts it may reach over HTTP (empty: none).
    pub http: Arc<[crate::plan::HttpAllow]>,
    /// The plan's secret values, masked in everything the plugin logs.
    pub redactor: Redactor,
}

/// How one attempt ended, with what the plugin printed.
#[derive(Debug)]
pub struct AttemptReport {
    /// Output JSON text, or why there is none.
    pub result: Result<String, AttemptError>,
    /// The end of stdout, stderr and log lines.
    pub log_tail: Option<String>,
}

/// Context fields, re-exported for callers that build a request.
pub use wit::Context as AttemptContext;

/// A plugin component ready to instantiate.
pub struct LoadedPlugin {
    info: PluginInfo,
    file: PathBuf,
    sha256: String,
    engine: Engine,
    pre: PluginPre<AttemptState>,
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
    /// Instantiates once to read `describe()`.
    pub(super) async fn describe(
        engine: &Engine,
        pre: PluginPre<AttemptState>,
        file: PathBuf,
        sha256: String,
    ) -> Result<Self, AttemptError> {
        let info = call(
            engine,
            &pre,
            Sandbox::default(),
            Limits::METADATA,
            async |bindings, store| bindings.call_describe(store).await,
        )
        .await?;
        Ok(Self {
            info: info.into(),
            file,
            sha256,
            engine: engine.clone(),
            pre,
        })
    }

    /// What the plugin said about itself.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }
    /// The component file.
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }
    /// sha256 of the component file, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Calls `validate(params)` in a fresh sandbox with no grants; what it logs is masked
    /// with `redactor` (params may hold resolved secrets).
    pub async fn validate(
        &self,
        params: &str,
        redactor: &Redactor,
    ) -> Result<Result<(), String>, AttemptError> {
        let params = params.to_owned();
        let log = GuestLog::new(redactor.clone());
        let sandbox = Sandbox {
            log: log.clone(),
            ..Sandbox::default()
        };
        let result = call(
            &self.engine,
            &self.pre,
            sandbox,
            Limits::METADATA,
            async move |bindings, store| bindings.call_validate(store, &params).await,
        )
        .await;
        log.finish();
        result.map(|answer| answer.map_err(cap_message))
    }

    /// Runs one attempt in a fresh sandbox.
    pub async fn run(&self, request: AttemptRequest) -> AttemptReport {
        let span = tracing::info_span!(
            "attempt",
            plan = %request.context.plan_id,
            task = %request.context.task_id,
            index = request.context.plan_index,
            attempt = request.context.attempt,
        );
        let AttemptRequest {
            context,
            params,
            preopens,
            limits,
            progress,
            http,
            redactor,
        } = request;
        let log = GuestLog::new(redactor);
        let sandbox = Sandbox {
            preopens,
            http,
            log: log.clone(),
            progress,
        };
        let outcome = call(
            &self.engine,
            &self.pre,
            sandbox,
            limits,
            async move |bindings, store| bindings.call_run(store, &context, &params).await,
        )
        .instrument(span.clone())
        .await;
        span.in_scope(|| log.finish());
        let result = match outcome {
            Ok(Ok(output)) if output.len() as u64 > limits.max_output => {
                Err(AttemptError::OutputTooLarge {
                    size: output.len() as u64,
                    limit: limits.max_output,
                })
            }
            Ok(Ok(output)) => Ok(output),
            Ok(Err(error)) => Err(match error {
                TaskError::Transient(message) => AttemptError::Plugin {
                    kind: PluginErrorKind::Transient,
                    message: cap_message(message),
                },
                TaskError::Permanent(message) => AttemptError::Plugin {
                    kind: PluginErrorKind::Permanent,
                    message: cap_message(message),
                },
                TaskError::InvalidParams(message) => AttemptError::Plugin {
                    kind: PluginErrorKind::InvalidParams,
                    message: cap_message(message),
                },
            }),
            // A Rust panic's message only reaches us on stderr: name it in the error.
            Err(AttemptError::Trap { message, backtrace }) => {
                let message = match log.tail().as_deref().and_then(panic_message) {
                    Some(panic) => format!("{message}: {panic}"),
                    None => message,
                };
                Err(AttemptError::Trap { message, backtrace })
            }
            Err(error) => Err(error),
        };
        AttemptReport {
            result,
            log_tail: log.tail(),
        }
    }
}

/// The message of a Rust panic in a guest's output: the line after "panicked at".
/// The last one: lines the plugin printed before the panic may contain the words too.
fn panic_message(output: &str) -> Option<&str> {
    let lines: Vec<&str> = output.lines().collect();
    let at = lines.iter().rposition(|l| l.contains("panicked at"))?;
    lines
        .get(at + 1)
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
}

/// Longest error message a plugin may hand the host (it is stored and printed).
pub const MAX_MESSAGE: usize = 64 << 10;

/// `message` cut to [`MAX_MESSAGE`] bytes (at a character boundary), saying so.
fn cap_message(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut at = MAX_MESSAGE;
        while !message.is_char_boundary(at) {
            at -= 1;
        }
        message.truncate(at);
        message.push_str(&format!("… [message cut at {} KiB]", MAX_MESSAGE >> 10));
    }
    message
}

/// Instantiates `pre` in a fresh store with `limits` and runs `f` on it.
async fn call<R>(
    engine: &Engine,
    pre: &PluginPre<AttemptState>,
    sandbox: Sandbox,
    limits: Limits,
    f: impl AsyncFnOnce(&PluginBindings, &mut Store<AttemptState>) -> wasmtime::Result<R>,
) -> Result<R, AttemptError> {
    let state = AttemptState::new(sandbox, limits.memory)
        .map_err(|e| AttemptError::Sandbox(e.to_string()))?;
    let mut store = Store::new(engine, state);
    store.limiter(|state| state.limiter());
    let deadline = Instant::now() + limits.timeout;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        // Yield to tokio at each tick so CPU-bound guests share the workers; stop at the
        // deadline.
        Ok(if Instant::now() >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });

    let work = async {
        let bindings = pre.instantiate_async(&mut store).await?;
        f(&bindings, &mut store).await
    };
    // Epochs do not count time spent waiting on host I/O: a tokio timeout covers that.
    let timed = tokio::time::timeout(limits.timeout + 2 * EPOCH_TICK, work).await;
    let denied = store.data().denied_requests();
    if !denied.is_empty() {
        return Err(AttemptError::HttpDenied {
            authorities: denied,
        });
    }
    match timed {
        Err(_elapsed) => Err(AttemptError::Timeout {
            limit: limits.timeout,
        }),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(classify(error, store.data(), limits)),
    }
}

/// Turns a wasmtime error into an [`AttemptError`] from the store's records and the
/// error's typed parts.
fn classify(error: wasmtime::Error, state: &AttemptState, limits: Limits) -> AttemptError {
    if state.memory_limit_hit() {
        return AttemptError::MemoryLimit {
            limit: limits.memory,
        };
    }
    let trap = error.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return AttemptError::Timeout {
            limit: limits.timeout,
        };
    }
    let backtrace = error.downcast_ref::<WasmBacktrace>().map(|b| b.to_string());
    let message = match trap {
        Some(trap) => format!("plugin trapped: {trap}"),
        None => format!("plugin failed: {}", error.root_cause()),
    };
    AttemptError::Trap { message, backtrace }
}

/// Adds the host's imports to `linker`: WASI 0.2, wasi:http (gated) and `planrt:task/host`.
pub(super) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<AttemptState>,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    super::bindings::planrt::task::host::add_to_linker::<_, HasSelf<AttemptState>>(
        linker,
        |state| state,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panic_message_is_the_line_after_the_last_panicked_at() {
        let stderr = "note: panicked at nothing, just chatting\nnot it\n\
                      thread 'main' panicked at src/lib.rs:3:5:\nreal reason\n";
        assert_eq!(panic_message(stderr), Some("real reason"));
        assert_eq!(panic_message("no panic here\n"), None);
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary_saying_so() {
        assert_eq!(cap_message("short".into()), "short");
        let long = "é".repeat(MAX_MESSAGE);
        let cut = cap_message(long);
        assert!(cut.len() <= MAX_MESSAGE + 40, "{}", cut.len());
        assert!(cut.ends_with("… [message cut at 64 KiB]"));
    }
}
