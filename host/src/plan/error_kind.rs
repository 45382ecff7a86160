//! Error kinds recorded per attempt and what each means for the task (DESIGN §3).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The plugin says another attempt may succeed.
    Transient,
    /// The plugin says the task will fail the same way again.
    Permanent,
    /// The plugin rejected the params.
    InvalidParams,
    /// The plugin trapped (panic, unreachable, out-of-bounds access).
    Trap,
    /// The attempt ran past its timeout.
    Timeout,
    /// The plugin tried to grow its memory past the limit.
    MemoryLimit,
    /// The plugin sent an HTTP request to a host the plan does not allow.
    HttpDenied,
    /// The host stopped or crashed while the attempt ran.
    Interrupted,
    /// The attempt was cancelled by an operator.
    Cancelled,
}

/// What an error kind does to the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Retried while the task has retry budget left.
    Retry,
    /// Never retried: the task fails.
    Terminal,
    /// Run again without using retry budget (the attempt did not really fail).
    RerunFree,
}

impl ErrorKind {
    /// Every kind, for exhaustive tests and documentation.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::Transient,
        ErrorKind::Permanent,
        ErrorKind::InvalidParams,
        ErrorKind::Trap,
        ErrorKind::Timeout,
        ErrorKind::MemoryLimit,
        ErrorKind::HttpDenied,
        ErrorKind::Interrupted,
        ErrorKind::Cancelled,
    ];

    /// Whether the kind is retried, terminal or re-run for free.
    pub fn disposition(self) -> Disposition {
        match self {
            ErrorKind::Transient | ErrorKind::Timeout => Disposition::Retry,
            ErrorKind::Permanent
            | ErrorKind::InvalidParams
            | ErrorKind::Trap
            | ErrorKind::MemoryLimit
            | ErrorKind::HttpDenied => Disposition::Terminal,
            ErrorKind::Interrupted | ErrorKind::Cancelled => Disposition::RerunFree,
        }
    }

    /// The kebab-case name used in JSON and text output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::InvalidParams => "invalid-params",
            ErrorKind::Trap => "trap",
            ErrorKind::Timeout => "timeout",
            ErrorKind::MemoryLimit => "memory-limit",
            ErrorKind::HttpDenied => "http-denied",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_follow_the_design() {
        use Disposition::*;
        let expected = [
            (ErrorKind::Transient, Retry),
            (ErrorKind::Permanent, Terminal),
            (ErrorKind::InvalidParams, Terminal),
            (ErrorKind::Trap, Terminal),
            (ErrorKind::Timeout, Retry),
            (ErrorKind::MemoryLimit, Terminal),
            (ErrorKind::HttpDenied, Terminal),
            (ErrorKind::Interrupted, RerunFree),
            (ErrorKind::Cancelled, RerunFree),
        ];
        assert_eq!(expected.len(), ErrorKind::ALL.len());
        for (kind, disposition) in expected {
            assert_eq!(kind.disposition(), disposition, "{kind}");
        }
    }

    #[test]
    fn json_names_are_kebab_case_and_match_display() {
        for kind in ErrorKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<ErrorKind>(&json).unwrap(), kind);
        }
    }
}
