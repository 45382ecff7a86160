//! Operator actions on a stored plan before it runs again (`planrt resume`).

use super::batch::apply_and_commit;
use super::execute::{ExecuteError, Observer, interrupt_running};
use crate::plan::{PlanRun, TaskEvent, TaskStatus};
use crate::store::StateStore;
use serde_json::Value;

/// Where `resume` continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeFrom {
    /// Where the plan stopped: a failed task gets its next attempt.
    WhereItStopped,
    /// Restart at this task: it and every task after it (in a graph: every task that
    /// depends on it, directly or not) go back to pending with a fresh retry budget, even
    /// if complete.
    Task(usize),
}

/// A resume that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// `--from` past the end.
    #[error("plan {plan} has {tasks} task(s): there is no task {from} to resume from")]
    NoSuchTask {
        /// The plan.
        plan: crate::plan::PlanId,
        /// Its task count.
        tasks: usize,
        /// The index asked for.
        from: usize,
    },
    /// New params for a task that does not run again (only the failed task, or the first
    /// task reset, takes new params).
    #[error(
        "task {index} of plan {plan} is {status}: only a failed task, or the first task reset, takes new params"
    )]
    NotFailed {
        /// The plan.
        plan: crate::plan::PlanId,
        /// The task.
        index: usize,
        /// Its status.
        status: TaskStatus,
    },
    /// `--from N` would leave a failed task as it is (it is not N and does not depend on
    /// it): the plan would stay failed and nothing would run.
    #[error(
        "task(s) {} of plan {plan} failed and do not depend on task {from}: `--from {from}` would leave the plan failed; resume without --from, or from one of them",
        failed.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    FailedElsewhere {
        /// The plan.
        plan: crate::plan::PlanId,
        /// The index asked for.
        from: usize,
        /// The failed tasks outside what `--from` resets.
        failed: Vec<usize>,
    },
    /// Recording failed.
    #[error(transparent)]
    Execute(#[from] ExecuteError),
}

/// Makes a stored plan runnable again: attempts found running (the host died during them)
/// are recorded `interrupted`, then `from` is applied; a failed task given `new_params`
/// (index, params) runs with them. Every change is stored first.
pub fn reopen(
    plan: &mut PlanRun,
    from: ResumeFrom,
    new_params: Option<(usize, Value)>,
    store: &dyn StateStore,
    observer: &dyn Observer,
) -> Result<(), ResumeError> {
    // Bad input is refused before anything is recorded.
    let tasks = plan.tasks().len();
    if let ResumeFrom::Task(first) = from
        && first >= tasks
    {
        return Err(ResumeError::NoSuchTask {
            plan: plan.id(),
            tasks,
            from: first,
        });
    }
    let reset = match from {
        ResumeFrom::Task(first) => plan.graph().downstream(first),
        ResumeFrom::WhereItStopped => Vec::new(),
    };
    if let ResumeFrom::Task(first) = from {
        let failed: Vec<usize> = plan
            .failed_tasks()
            .filter(|index| reset.binary_search(index).is_err())
            .collect();
        if !failed.is_empty() {
            return Err(ResumeError::FailedElsewhere {
                plan: plan.id(),
                from: first,
                failed,
            });
        }
    }
    if let Some((index, _)) = &new_params {
        let status = plan.task(*index).map(|t| t.status());
        let applies = match from {
            ResumeFrom::WhereItStopped => status == Some(TaskStatus::Failed),
            ResumeFrom::Task(first) => *index == first,
        };
        if !applies {
            return Err(ResumeError::NotFailed {
                plan: plan.id(),
                index: *index,
                status: status.unwrap_or(TaskStatus::Pending),
            });
        }
    }
    interrupt_running(
        plan,
        store,
        observer,
        "the host stopped or crashed during this attempt",
        &|_| None,
    )?;
    let events: Vec<(usize, TaskEvent)> = match from {
        ResumeFrom::Task(_) => reset
            .into_iter()
            .map(|i| {
                let params = new_params
                    .as_ref()
                    .filter(|(index, _)| *index == i)
                    .map(|(_, params)| params.clone());
                (i, TaskEvent::Reset { params })
            })
            .collect(),
        ResumeFrom::WhereItStopped => plan
            .tasks()
            .iter()
            .filter(|t| t.status() == TaskStatus::Failed)
            .map(|t| {
                let params = match &new_params {
                    Some((index, params)) if *index == t.index() => Some(params.clone()),
                    _ => None,
                };
                (t.index(), TaskEvent::Resubmit { params })
            })
            .collect(),
    };
    apply_and_commit(plan, events, store, observer)?;
    Ok(())
}
