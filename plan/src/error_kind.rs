//! Error kinds recorded per attempt and what each means for the task (docs/DESIGN.md §3).

use serde::{Deserialize, Serialize};

/// Why an attempt failed. Its name (`invalid-params`, …) is the same in JSON, text and
/// the store: serde and strum spell it from the one `kebab-case` rule.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
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
    /// The attempt was cancelled by an operator: the task stops (failed) until an operator
    /// resumes or resubmits it; no retry budget is used.
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
    /// Whether the kind is retried, terminal or re-run for free.
    pub fn disposition(self) -> Disposition {
        match self {
            ErrorKind::Transient | ErrorKind::Timeout => Disposition::Retry,
            ErrorKind::Permanent
            | ErrorKind::InvalidParams
            | ErrorKind::Trap
            | ErrorKind::MemoryLimit
            | ErrorKind::HttpDenied
            // Terminal without using budget: an operator asked for the task to stop.
            | ErrorKind::Cancelled => Disposition::Terminal,
            ErrorKind::Interrupted => Disposition::RerunFree,
        }
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

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
            (ErrorKind::Cancelled, Terminal),
        ];
        assert_eq!(expected.len(), ErrorKind::VARIANTS.len());
        for (kind, disposition) in expected {
            assert_eq!(kind.disposition(), disposition, "{kind}");
        }
    }

    #[test]
    fn json_names_are_kebab_case_and_match_display_and_parsing() {
        for &kind in ErrorKind::VARIANTS {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<ErrorKind>(&json).unwrap(), kind);
            assert_eq!(<&str>::from(kind).parse::<ErrorKind>().unwrap(), kind);
        }
        assert_eq!(<&str>::from(ErrorKind::InvalidParams), "invalid-params");
    }
}
