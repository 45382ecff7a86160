//! Why a call into a plugin did not return normally, and the one mapping from each cause
//! to the domain's [`ErrorKind`]: the plugin's own `task-error` maps straight to it, the
//! host's findings (trap, limits, denied requests) are classified from typed parts of the
//! failure, never from message text.

use std::time::Duration;

use wasmtime::{Trap, WasmBacktrace};

use super::wit::latest::types::TaskError;
use crate::plan::{ErrorKind, Redactor};

/// Longest error message a plugin may hand the host (it is stored and printed).
pub const MAX_MESSAGE: usize = 64 << 10;

/// Why a call into a plugin did not return normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    /// The plugin returned an error of its own kind: `transient`, `permanent` or
    /// `invalid-params`.
    #[error("{message}")]
    Plugin {
        /// Its kind.
        kind: ErrorKind,
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
    /// The plugin's component could not be loaded when its first call needed it (its
    /// file unreadable, or changed since planrt read the plugin dir).
    #[error("plugin {} cannot be loaded: {reason}", file.display())]
    PluginLoad {
        /// The component file.
        file: std::path::PathBuf,
        /// Why.
        reason: String,
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
    /// The guest tried to grow its tables past the most elements a store may hold in all
    /// (tables live in host memory, outside the memory limit; the kind is `memory-limit`).
    #[error("exceeded the table limit of {limit} elements")]
    TableLimit {
        /// The limit.
        limit: usize,
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
    /// A capability ended the call for a reason of its own (a cancel, a store failure
    /// of a host import…), with the kind it records.
    #[error("{message}")]
    Capability {
        /// The kind recorded.
        kind: ErrorKind,
        /// What happened.
        message: String,
    },
}

impl From<TaskError> for AttemptError {
    fn from(error: TaskError) -> Self {
        let (kind, message) = match error {
            TaskError::Transient(message) => (ErrorKind::Transient, message),
            TaskError::Permanent(message) => (ErrorKind::Permanent, message),
            TaskError::InvalidParams(message) => (ErrorKind::InvalidParams, message),
        };
        AttemptError::Plugin {
            kind,
            message: cap_message(message),
        }
    }
}

impl AttemptError {
    /// The error kind recorded for the attempt (docs/DESIGN.md §3).
    pub fn kind(&self) -> ErrorKind {
        match self {
            AttemptError::Plugin { kind, .. } | AttemptError::Capability { kind, .. } => *kind,
            AttemptError::Trap { .. } => ErrorKind::Trap,
            AttemptError::Timeout { .. } => ErrorKind::Timeout,
            AttemptError::MemoryLimit { .. } | AttemptError::TableLimit { .. } => {
                ErrorKind::MemoryLimit
            }
            AttemptError::HttpDenied { .. } => ErrorKind::HttpDenied,
            // Retrying returns the same output.
            AttemptError::OutputTooLarge { .. } => ErrorKind::Permanent,
            // The host could not build the sandbox (a granted dir vanished, a secret's
            // variable unset): retrying will not help until an operator fixes the host.
            AttemptError::Sandbox(_) => ErrorKind::Permanent,
            // The operator must put the plugin back (or run again after replacing it).
            AttemptError::PluginLoad { .. } => ErrorKind::Permanent,
        }
    }

    /// The guest call stack of a trap.
    pub fn backtrace(&self) -> Option<&str> {
        match self {
            AttemptError::Trap { backtrace, .. } => backtrace.as_deref(),
            _ => None,
        }
    }

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
            Self::Capability { kind, message } => Self::Capability {
                kind,
                message: redactor.redact_string(message),
            },
            other @ (Self::Timeout { .. }
            | Self::MemoryLimit { .. }
            | Self::TableLimit { .. }
            | Self::OutputTooLarge { .. }
            | Self::PluginLoad { .. }) => other,
        }
    }

    /// A wasmtime failure no capability claimed: a trap (with the guest's backtrace and,
    /// for a Rust panic, the message the guest printed on stderr), or another failure of
    /// the call.
    pub fn from_wasmtime(error: &wasmtime::Error, guest_stderr: Option<&str>) -> Self {
        let backtrace = error.downcast_ref::<WasmBacktrace>().map(|b| b.to_string());
        let message = match error.downcast_ref::<Trap>() {
            Some(trap) => format!("plugin trapped: {trap}"),
            None => format!("plugin failed: {}", error.root_cause()),
        };
        let message = match guest_stderr.and_then(panic_message) {
            Some(panic) => format!("{message}: {panic}"),
            None => message,
        };
        AttemptError::Trap { message, backtrace }
    }
}

/// The message of a Rust panic in a guest's output: the line after the last "panicked
/// at" (lines the plugin printed before the panic may contain the words too).
fn panic_message(output: &str) -> Option<&str> {
    let lines: Vec<&str> = output.lines().collect();
    let at = lines.iter().rposition(|l| l.contains("panicked at"))?;
    lines
        .get(at + 1)
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
}

/// `message` cut to [`MAX_MESSAGE`] bytes (at a character boundary), saying so.
pub fn cap_message(mut message: String) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugins_own_kinds_map_straight_to_error_kinds() {
        for (error, kind) in [
            (TaskError::Transient("t".into()), ErrorKind::Transient),
            (TaskError::Permanent("p".into()), ErrorKind::Permanent),
            (
                TaskError::InvalidParams("i".into()),
                ErrorKind::InvalidParams,
            ),
        ] {
            assert_eq!(AttemptError::from(error).kind(), kind);
        }
    }

    #[test]
    fn host_findings_have_their_kinds() {
        let cases = [
            (
                AttemptError::Trap {
                    message: "m".into(),
                    backtrace: None,
                },
                ErrorKind::Trap,
            ),
            (
                AttemptError::Timeout {
                    limit: Duration::from_secs(1),
                },
                ErrorKind::Timeout,
            ),
            (
                AttemptError::MemoryLimit { limit: 1 },
                ErrorKind::MemoryLimit,
            ),
            (
                AttemptError::OutputTooLarge { size: 2, limit: 1 },
                ErrorKind::Permanent,
            ),
            (
                AttemptError::HttpDenied {
                    authorities: vec!["x".into()],
                },
                ErrorKind::HttpDenied,
            ),
            (AttemptError::Sandbox("s".into()), ErrorKind::Permanent),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
        }
    }

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
        let cut = cap_message("é".repeat(MAX_MESSAGE));
        assert!(cut.len() <= MAX_MESSAGE + 40, "{}", cut.len());
        assert!(cut.ends_with("… [message cut at 64 KiB]"));
    }
}
