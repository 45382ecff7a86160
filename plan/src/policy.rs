//! Retry policy: how many retries a task gets and how long to wait between attempts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::serde_duration;

/// Jitter adds at most this fraction of the delay (never shortens it).
pub const MAX_JITTER_FRACTION: f64 = 0.25;

/// Exponential backoff between attempts of one task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backoff {
    /// Delay before the first retry.
    #[serde(with = "serde_duration")]
    pub initial: Duration,
    /// Each further retry waits `factor` times longer.
    pub factor: f64,
    /// Delays never exceed this (before jitter).
    #[serde(with = "serde_duration")]
    pub max: Duration,
    /// Whether a random 0–25 % is added to each delay.
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(30),
            jitter: true,
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (1 = the first retry), given a uniform
    /// sample in `[0, 1)` for the jitter (the caller owns randomness; this stays pure).
    pub fn delay(&self, retry: u32, jitter_sample: f64) -> Duration {
        let exponent = retry.saturating_sub(1).min(i32::MAX as u32) as i32;
        let base = self.initial.as_secs_f64() * self.factor.powi(exponent);
        let capped = if base.is_finite() {
            base.min(self.max.as_secs_f64())
        } else {
            self.max.as_secs_f64()
        };
        let jitter = if self.jitter {
            capped * MAX_JITTER_FRACTION * jitter_sample.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Duration::from_secs_f64(capped + jitter)
    }

    /// The shortest delay [`Backoff::delay`] can return for `retry` (no jitter).
    pub fn min_delay(&self, retry: u32) -> Duration {
        Self {
            jitter: false,
            ..*self
        }
        .delay(retry, 0.0)
    }
}

/// Per-attempt limits a plan sets (per task or in `[defaults]`); unset ones fall back to
/// the plugin's suggestion, then to the built-in defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitOverrides {
    /// Wall-clock time per attempt.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::units::serde_opt_duration"
    )]
    pub timeout: Option<Duration>,
    /// Bytes of linear memory per attempt.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::units::serde_opt_size"
    )]
    pub memory_limit: Option<u64>,
    /// Bytes of output per attempt.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::units::serde_opt_size"
    )]
    pub max_output: Option<u64>,
}

impl LimitOverrides {
    /// The longest `timeout` a plan may set (and a plugin may suggest): longer is a
    /// mistake, and deadlines are computed by adding it to the clock.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 60 * 60);
}

impl LimitOverrides {
    /// `self`, with unset limits taken from `fallback`.
    pub fn or(self, fallback: LimitOverrides) -> Self {
        Self {
            timeout: self.timeout.or(fallback.timeout),
            memory_limit: self.memory_limit.or(fallback.memory_limit),
            max_output: self.max_output.or(fallback.max_output),
        }
    }
}

/// The plan's `[defaults]`: what every task inherits.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDefaults {
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// Waits between attempts.
    pub backoff: Backoff,
    /// Per-attempt limits.
    #[serde(flatten)]
    pub limits: LimitOverrides,
    /// A graph's runnable tasks at once (unset: the CPU count, or the CLI's
    /// `--max-parallel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
}

impl PlanDefaults {
    /// The retry part.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            backoff: self.backoff,
        }
    }
}

/// Per-task retry policy, defaulted from the plan's `[defaults]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries allowed after the first attempt (0 = a failure is terminal).
    pub max_retries: u32,
    /// Waits between attempts.
    pub backoff: Backoff,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_grow_by_factor_and_cap_at_max() {
        let b = Backoff {
            initial: ms(100),
            factor: 2.0,
            max: ms(500),
            jitter: false,
        };
        assert_eq!(b.delay(1, 0.9), ms(100));
        assert_eq!(b.delay(2, 0.9), ms(200));
        assert_eq!(b.delay(3, 0.9), ms(400));
        assert_eq!(b.delay(4, 0.9), ms(500));
        assert_eq!(b.delay(1000, 0.9), ms(500));
    }

    #[test]
    fn jitter_adds_up_to_a_quarter_never_less() {
        let b = Backoff {
            initial: ms(1000),
            factor: 2.0,
            max: ms(30_000),
            jitter: true,
        };
        assert_eq!(b.delay(1, 0.0), ms(1000));
        assert_eq!(b.delay(1, 0.5), ms(1125));
        assert!(b.delay(1, 0.999_999) <= ms(1250));
        assert_eq!(b.delay(1, 7.0), ms(1250), "samples are clamped");
        assert_eq!(b.min_delay(2), ms(2000));
    }

    #[test]
    fn defaults_match_the_design() {
        let b = Backoff::default();
        assert_eq!(
            (b.initial, b.factor, b.max, b.jitter),
            (ms(1000), 2.0, ms(30_000), true)
        );
        assert_eq!(RetryPolicy::default().max_retries, 0);
    }
}
