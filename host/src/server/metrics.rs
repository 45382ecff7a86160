//! `/v0/metrics`: Prometheus (OpenMetrics text) figures of what the server runs — attempts
//! by task type and outcome, how long they took, and what runs or waits now.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::executor::{Observer, Supervisor};
use crate::plan::{AttemptOutcome, PlanId, Task, TaskStatus, Transition};

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of an ended attempt.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    task_type: String,
    /// `complete`, or the error kind (`transient`, `cancelled`, …).
    outcome: String,
}

/// Labels of a duration.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    task_type: String,
}

fn duration_histogram() -> Histogram {
    // 10 ms … ~45 min, ×4 per bucket: from `mark-ready` to a snapshot restore.
    Histogram::new(exponential_buckets(0.01, 4.0, 12))
}

/// The server's metrics; also the observer that counts attempts as they end.
pub struct Metrics {
    registry: Registry,
    attempts: Family<AttemptLabels, Counter>,
    durations: Family<TypeLabels, Histogram, fn() -> Histogram>,
    attempts_running: Gauge<i64, std::sync::atomic::AtomicI64>,
    attempts_waiting: Gauge<i64, std::sync::atomic::AtomicI64>,
    plans_running: Gauge<i64, std::sync::atomic::AtomicI64>,
    plugins_loaded: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("planrt");
        let attempts = Family::<AttemptLabels, Counter<u64, AtomicU64>>::default();
        registry.register(
            "attempts",
            "Attempts ended, by task type and outcome (complete or the error kind)",
            attempts.clone(),
        );
        let durations = Family::<TypeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register_with_unit(
            "attempt_duration",
            "How long ended attempts ran, by task type",
            prometheus_client::registry::Unit::Seconds,
            durations.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let attempts_running = gauge(&mut registry, "attempts_running", "Attempts running now");
        let attempts_waiting = gauge(
            &mut registry,
            "attempts_waiting",
            "Attempts ready to start, waiting for a --max-concurrent slot or a place in the instance pool",
        );
        let plans_running = gauge(
            &mut registry,
            "plans_running",
            "Plans (a task submitted on its own is a plan of one) running now",
        );
        let plugins_loaded = gauge(&mut registry, "plugins_loaded", "Plugins loaded now");
        Self {
            registry,
            attempts,
            durations,
            attempts_running,
            attempts_waiting,
            plans_running,
            plugins_loaded,
        }
    }

    /// The exposition, with the gauges read from `supervisor` now.
    pub fn encode(&self, supervisor: &Supervisor) -> String {
        let service = supervisor.service();
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.attempts_running.set(count(service.slots().running()));
        self.attempts_waiting.set(count(service.slots().waiting()));
        self.plans_running.set(count(supervisor.running()));
        self.plugins_loaded.set(count(service.registry().len()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

impl Observer for Metrics {
    fn transition(&self, _plan: PlanId, task: &Task, transition: Transition) {
        if transition.from != TaskStatus::Running {
            return;
        }
        let Some(attempt) = task.last_attempt() else {
            return;
        };
        let outcome = match (attempt.outcome, attempt.error_kind) {
            (AttemptOutcome::Complete, _) => "complete".to_owned(),
            (_, Some(kind)) => kind.to_string(),
            (outcome, None) => outcome.to_string(),
        };
        let task_type = task.task_type().to_string();
        self.attempts
            .get_or_create(&AttemptLabels {
                task_type: task_type.clone(),
                outcome,
            })
            .inc();
        if let Some(ended) = attempt.ended_at {
            let seconds = ended.duration_since(attempt.started_at).as_secs_f64();
            self.durations
                .get_or_create(&TypeLabels { task_type })
                .observe(seconds.max(0.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::plan::{ErrorKind, PlanDefaults, TaskEvent, TaskId, TaskType};

    fn task() -> Task {
        Task::submitted(
            TaskId::from(uuid::Uuid::new_v4()),
            TaskType::new("echo").unwrap(),
            serde_json::json!({}),
            PlanDefaults::default().retry(),
            Default::default(),
        )
    }

    fn text(metrics: &Metrics) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        text
    }

    #[test]
    fn ended_attempts_are_counted_by_type_and_outcome_with_their_duration() {
        let metrics = Metrics::new();
        let start = Timestamp::from_second(1_700_000_000).unwrap();
        let end = Timestamp::from_second(1_700_000_002).unwrap();
        let mut ok = task();
        let plan = PlanId::new_random();
        let started = ok.apply(TaskEvent::Start { at: start }).unwrap();
        metrics.transition(plan, &ok, started);
        let done = ok
            .apply(TaskEvent::Succeed {
                at: end,
                output: serde_json::json!({}),
                log_tail: None,
                progress: None,
            })
            .unwrap();
        metrics.transition(plan, &ok, done);
        let mut cancelled = task();
        cancelled.apply(TaskEvent::Start { at: start }).unwrap();
        let ended = cancelled
            .apply(TaskEvent::Cancel {
                at: end,
                reason: "test".into(),
                progress: None,
            })
            .unwrap();
        metrics.transition(plan, &cancelled, ended);

        let text = text(&metrics);
        assert!(
            text.contains(r#"planrt_attempts_total{task_type="echo",outcome="complete"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                r#"planrt_attempts_total{{task_type="echo",outcome="{}"}} 1"#,
                ErrorKind::Cancelled
            )),
            "{text}"
        );
        assert!(
            text.contains(r#"planrt_attempt_duration_seconds_sum{task_type="echo"} 4.0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"planrt_attempt_duration_seconds_count{task_type="echo"} 2"#),
            "{text}"
        );
    }
}
