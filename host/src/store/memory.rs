//! A [`StateStore`] in memory: state lives as long as the process.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{StateStore, StoreError};
use crate::plan::{PlanId, PlanRun, SavedPlan, Task};

/// Plans kept in memory, as documents (exactly what a durable store would write).
#[derive(Debug, Default)]
pub struct MemoryStore {
    plans: Mutex<HashMap<PlanId, SavedPlan>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl StateStore for MemoryStore {
    fn create_plan(&self, plan: &SavedPlan) -> Result<(), StoreError> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if plans.contains_key(&plan.plan.id) {
            return Err(StoreError::PlanExists(plan.plan.id));
        }
        plans.insert(plan.plan.id, plan.clone());
        Ok(())
    }

    fn record_task(&self, plan: PlanId, task: &Task) -> Result<(), StoreError> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        let saved = plans.get_mut(&plan).ok_or(StoreError::UnknownPlan(plan))?;
        let slot = saved
            .plan
            .tasks
            .get_mut(task.index())
            .ok_or(StoreError::UnknownTask {
                plan,
                index: task.index(),
            })?;
        *slot = task.document();
        Ok(())
    }

    fn load_plan(&self, plan: PlanId) -> Result<Option<(SavedPlan, PlanRun)>, StoreError> {
        let plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        Ok(plans.get(&plan).map(|saved| {
            let tasks = saved
                .plan
                .tasks
                .iter()
                .enumerate()
                .map(|(i, doc)| Task::from_document(i, doc))
                .collect();
            (
                saved.clone(),
                PlanRun::from_tasks(plan, saved.plan.name.clone(), tasks),
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use jiff::Timestamp;

    use super::*;
    use crate::plan::{PlanSpec, SAVED_PLAN_FORMAT_VERSION, TaskEvent};

    #[test]
    fn records_round_trip_and_refuse_unknown_plans() {
        let spec = PlanSpec::parse("[[tasks]]\ntype = \"echo\"\n", Path::new("/p.toml")).unwrap();
        let mut run = PlanRun::new(PlanId::new_random(), None, &spec.tasks);
        let saved = SavedPlan {
            format_version: SAVED_PLAN_FORMAT_VERSION,
            plan: run.document(),
            defaults: spec.defaults,
            grants: spec.grants,
            plugins: Default::default(),
        };
        let store = MemoryStore::new();
        store.create_plan(&saved).unwrap();
        assert!(matches!(
            store.create_plan(&saved),
            Err(StoreError::PlanExists(_))
        ));

        run.apply(
            0,
            TaskEvent::Start {
                at: Timestamp::UNIX_EPOCH,
            },
        )
        .unwrap();
        store.record_task(run.id(), &run.tasks()[0]).unwrap();
        let (_, loaded) = store.load_plan(run.id()).unwrap().unwrap();
        assert_eq!(loaded, run);

        let other = PlanId::new_random();
        assert!(matches!(
            store.record_task(other, &run.tasks()[0]),
            Err(StoreError::UnknownPlan(_))
        ));
        assert!(store.load_plan(other).unwrap().is_none());
    }
}
