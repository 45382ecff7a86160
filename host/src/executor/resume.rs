//! Operator actions on a stored plan before it runs again (`planrt resume`).

use super::execute::{ExecuteError, Observer, commit, interrupt_running};
use crate::plan::{PlanRun, TaskEvent, TaskStatus};
use crate::store::StateStore;

/// Where `resume` continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeFrom {
    /// Where the plan stopped: a failed task gets its next attempt.
    WhereItStopped,
    /// Restart at this task: it and every later task go back to pending with a fresh
    /// retry budget, even if complete.
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
    /// Recording failed.
    #[error(transparent)]
    Execute(#[from] ExecuteError),
}

/// Makes a stored plan runnable again: attempts found running (the host died during them)
/// are recorded `interrupted`, then `from` is applied. Every change is stored first.
pub fn reopen(
    plan: &mut PlanRun,
    from: ResumeFrom,
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
    interrupt_running(
        plan,
        store,
        observer,
        "the host stopped or crashed during this attempt",
    )?;
    let (indices, event): (Vec<usize>, TaskEvent) = match from {
        ResumeFrom::Task(first) => ((first..tasks).collect(), TaskEvent::Reset),
        ResumeFrom::WhereItStopped => {
            let failed = plan
                .tasks()
                .iter()
                .filter(|t| t.status() == TaskStatus::Failed);
            (failed.map(|t| t.index()).collect(), TaskEvent::Resubmit)
        }
    };
    for index in indices {
        let transition = plan
            .apply(index, event.clone())
            .map_err(ExecuteError::from)?;
        commit(plan, index, transition, store, observer)?;
    }
    Ok(())
}
