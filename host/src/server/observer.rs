//! What the server does with each recorded transition: a log line naming the plan and the
//! task, and the metrics.

use std::sync::Arc;

use super::metrics::Metrics;
use crate::executor::Observer;
use crate::plan::{PlanId, Task, TaskStatus, Transition};

/// Logs every transition with the plan and task IDs.
#[derive(Debug, Default)]
pub struct LogTransitions;

impl Observer for LogTransitions {
    fn transition(&self, plan_id: PlanId, task: &Task, transition: Transition) {
        let (task_id, task_type) = (task.id(), task.task_type());
        let attempt = task.last_attempt().map_or(0, |a| a.attempt);
        match transition.to {
            TaskStatus::Running => tracing::info!(
                plan = %plan_id, task = %task_id,
                "{task_type} {task_id}: attempt {attempt} started"
            ),
            TaskStatus::Complete => tracing::info!(
                plan = %plan_id, task = %task_id,
                "{task_type} {task_id}: complete"
            ),
            TaskStatus::Pending if transition.from == TaskStatus::Running => tracing::warn!(
                plan = %plan_id, task = %task_id,
                "{task_type} {task_id}: attempt {attempt} failed: {}; it runs again",
                task.error().unwrap_or_default()
            ),
            TaskStatus::Pending => tracing::info!(
                plan = %plan_id, task = %task_id,
                "{task_type} {task_id}: pending"
            ),
            TaskStatus::Failed => tracing::error!(
                plan = %plan_id, task = %task_id,
                "{task_type} {task_id}: failed: {}",
                task.error().unwrap_or_default()
            ),
        }
    }
}

/// Logs and counts every transition.
#[derive(Debug)]
pub struct ServerObserver {
    log: LogTransitions,
    metrics: Arc<Metrics>,
}

impl ServerObserver {
    /// Logs, and counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            log: LogTransitions,
            metrics,
        }
    }
}

impl Observer for ServerObserver {
    fn transition(&self, plan: PlanId, task: &Task, transition: Transition) {
        self.log.transition(plan, task, transition);
        self.metrics.transition(plan, task, transition);
    }
}
