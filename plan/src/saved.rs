//! The saved-plan file (`planrt plan --out FILE`, run by `planrt run FILE`): the Plan
//! document plus what it was resolved with — defaults, grants with absolute host paths,
//! and the plugin pinned for each task type — like a saved Terraform plan.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::document::PlanDocument;
use super::graph::GraphError;
use super::ids::{PlanId, TaskId, TaskType};
use super::policy::{PlanDefaults, RetryPolicy};
use super::run::PlanRun;
use super::spec::Grants;
use super::task::{Task, TaskStatus};

/// The `formatVersion` this planrt writes: 2 added task `name` and `dependsOn` and
/// `defaults.maxParallel` (a planrt that reads only 1 would run a graph as a chain, so it
/// must refuse the file).
pub const SAVED_PLAN_FORMAT_VERSION: u32 = 2;

/// The oldest `formatVersion` this planrt reads (1: plans without graphs).
pub const OLDEST_SAVED_PLAN_FORMAT_VERSION: u32 = 1;

/// The plugin a saved plan was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginPin {
    /// The component file it was loaded from.
    pub file: PathBuf,
    /// sha256 of the file, hex.
    pub sha256: String,
    /// The WIT package version it implements.
    pub wit_version: String,
}

/// A resolved plan written by `plan --out` and run by `run FILE`, like a saved
/// Terraform plan: the same IDs, grants and plugins every time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedPlan {
    /// [`SAVED_PLAN_FORMAT_VERSION`].
    pub format_version: u32,
    /// The plan itself.
    #[serde(flatten)]
    pub plan: PlanDocument,
    /// The defaults the tasks were resolved with.
    pub defaults: PlanDefaults,
    /// Grants with absolute host paths.
    pub grants: Grants,
    /// The plugin of each task type.
    pub plugins: BTreeMap<TaskType, PluginPin>,
}

/// A document that does not describe a plan this planrt can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedPlanError {
    /// Written by another planrt.
    #[error(
        "saved plan format {found} is not supported (this planrt reads formats {OLDEST_SAVED_PLAN_FORMAT_VERSION} to {SAVED_PLAN_FORMAT_VERSION})"
    )]
    FormatVersion {
        /// The version in the file.
        found: u32,
    },
    /// A task ID that is not the one its plan ID, type and index give.
    #[error(
        "task {index} has ID {found}, but plan {plan} gives a `{task_type}` task at index {index} the ID {expected}"
    )]
    TaskIdMismatch {
        /// The plan ID.
        plan: PlanId,
        /// Task index.
        index: usize,
        /// Task type.
        task_type: TaskType,
        /// ID in the file.
        found: TaskId,
        /// ID it must be.
        expected: TaskId,
    },
    /// A saved plan that has already run.
    #[error(
        "task {index} is {status} or carries state: a saved plan holds only pending tasks that never ran"
    )]
    NotFresh {
        /// Task index.
        index: usize,
        /// Its status.
        status: TaskStatus,
    },
    /// `defaults.maxParallel` out of range.
    #[error("`defaults.maxParallel` is {0}: it must be from 1 to {max}", max = super::spec::MAX_PARALLEL)]
    MaxParallel(u32),
    /// Names or `dependsOn` that do not make a graph.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A task type without a pinned plugin.
    #[error("task {index} has type `{task_type}` but the saved plan pins no plugin for it")]
    UnpinnedType {
        /// Task index.
        index: usize,
        /// Task type.
        task_type: TaskType,
    },
}

/// What a plan was resolved with, besides its tasks: what the store keeps once per plan
/// (the tasks it keeps as they change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolution {
    /// [`SAVED_PLAN_FORMAT_VERSION`].
    pub format_version: u32,
    /// The defaults the tasks were resolved with.
    pub defaults: PlanDefaults,
    /// Grants with absolute host paths.
    pub grants: Grants,
    /// The plugin of each task type.
    pub plugins: BTreeMap<TaskType, PluginPin>,
}

impl SavedPlan {
    /// What the plan was resolved with.
    pub fn resolution(&self) -> Resolution {
        Resolution {
            format_version: self.format_version,
            defaults: self.defaults,
            grants: self.grants.clone(),
            plugins: self.plugins.clone(),
        }
    }

    /// The saved plan of `plan`, resolved with `resolution`.
    pub fn of(resolution: Resolution, plan: PlanDocument) -> Self {
        Self {
            format_version: resolution.format_version,
            plan,
            defaults: resolution.defaults,
            grants: resolution.grants,
            plugins: resolution.plugins,
        }
    }

    /// Checks that the document is a fresh plan this planrt can run, and builds it.
    pub fn to_plan_run(&self) -> Result<PlanRun, SavedPlanError> {
        if !(OLDEST_SAVED_PLAN_FORMAT_VERSION..=SAVED_PLAN_FORMAT_VERSION)
            .contains(&self.format_version)
        {
            return Err(SavedPlanError::FormatVersion {
                found: self.format_version,
            });
        }
        if let Some(max) = self.defaults.max_parallel
            && !(1..=super::spec::MAX_PARALLEL).contains(&i64::from(max))
        {
            return Err(SavedPlanError::MaxParallel(max));
        }
        let plan_id = self.plan.id;
        let mut tasks = Vec::with_capacity(self.plan.tasks.len());
        for (index, doc) in self.plan.tasks.iter().enumerate() {
            let expected = TaskId::derive(plan_id, &doc.task_type, index);
            if doc.id != expected {
                return Err(SavedPlanError::TaskIdMismatch {
                    plan: plan_id,
                    index,
                    task_type: doc.task_type.clone(),
                    found: doc.id,
                    expected,
                });
            }
            let never_ran = doc.status == TaskStatus::Pending
                && doc.attempts.is_empty()
                && doc.retry_count == 0
                && doc.next_attempt_at.is_none()
                && doc.output.is_none()
                && doc.error.is_none();
            if !never_ran {
                return Err(SavedPlanError::NotFresh {
                    index,
                    status: doc.status,
                });
            }
            if !self.plugins.contains_key(&doc.task_type) {
                return Err(SavedPlanError::UnpinnedType {
                    index,
                    task_type: doc.task_type.clone(),
                });
            }
            tasks.push(
                Task::new(
                    plan_id,
                    index,
                    doc.task_type.clone(),
                    doc.params.clone(),
                    RetryPolicy {
                        max_retries: doc.max_retries,
                        backoff: doc.backoff,
                    },
                    doc.limits,
                )
                .with_links(doc.name.clone(), doc.depends_on.clone()),
            );
        }
        Ok(PlanRun::from_tasks(plan_id, self.plan.name.clone(), tasks)?)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::ids::PlanId;
    use crate::spec::PlanSpec;

    fn saved() -> SavedPlan {
        let spec = PlanSpec::parse(
            "name = \"n\"\n[[tasks]]\ntype = \"echo\"\nmaxRetries = 2\n[tasks.params]\nx = 1\n[[tasks]]\ntype = \"echo\"\n",
            Path::new("/p.toml"),
        )
        .unwrap();
        let run = PlanRun::new(PlanId::new_random(), spec.name.clone(), &spec.tasks).unwrap();
        let pin = PluginPin {
            file: "/plugins/echo.wasm".into(),
            sha256: "ab".into(),
            wit_version: "0.1.0".into(),
        };
        SavedPlan {
            format_version: SAVED_PLAN_FORMAT_VERSION,
            plan: run.document(),
            defaults: spec.defaults,
            grants: spec.grants,
            plugins: [(TaskType::new("echo").unwrap(), pin)].into(),
        }
    }

    #[test]
    fn saved_plan_round_trips_through_json_with_the_same_ids() {
        let saved = saved();
        let json = serde_json::to_value(&saved).unwrap();
        assert_eq!(json["formatVersion"], 2);
        assert_eq!(json["phase"], "Active");
        assert_eq!(json["tasks"][0]["type"], "echo");
        assert_eq!(json["tasks"][0]["status"], "Pending");
        assert_eq!(json["tasks"][0]["maxRetries"], 2);
        assert_eq!(json["tasks"][0]["retryCount"], 0);
        assert_eq!(json["tasks"][0]["backoff"]["initial"], "1s");
        assert_eq!(json["plugins"]["echo"]["witVersion"], "0.1.0");
        assert!(json.get("failedTaskIndex").is_none());
        let back: SavedPlan = serde_json::from_value(json).unwrap();
        assert_eq!(back, saved);
        let run = back.to_plan_run().unwrap();
        assert_eq!(run.document(), saved.plan);
    }

    #[test]
    fn a_graph_survives_the_round_trip_and_an_edited_cycle_is_refused() {
        let mut saved = saved();
        let names = ["first", "second"].map(|n| crate::TaskName::new(n).unwrap());
        saved.plan.tasks[0].name = Some(names[0].clone());
        saved.plan.tasks[1].name = Some(names[1].clone());
        saved.plan.tasks[1].depends_on = Some(vec![names[0].clone()]);
        let json = serde_json::to_value(&saved).unwrap();
        assert_eq!(json["tasks"][1]["dependsOn"], serde_json::json!(["first"]));
        assert!(json["tasks"][0].get("dependsOn").is_none());
        let run = serde_json::from_value::<SavedPlan>(json)
            .unwrap()
            .to_plan_run()
            .unwrap();
        assert!(run.graph().is_explicit());
        assert_eq!(run.document(), saved.plan);

        saved.plan.tasks[0].depends_on = Some(vec![names[1].clone()]);
        assert!(matches!(
            saved.to_plan_run(),
            Err(SavedPlanError::Graph(GraphError::Cycle { .. }))
        ));
    }

    #[test]
    fn edited_ids_and_used_plans_are_refused() {
        let mut saved = saved();
        saved.plan.tasks[0].id = saved.plan.tasks[1].id;
        assert!(matches!(
            saved.to_plan_run(),
            Err(SavedPlanError::TaskIdMismatch { index: 0, .. })
        ));

        let mut saved = self::saved();
        saved.plan.tasks[1].status = TaskStatus::Complete;
        assert!(matches!(
            saved.to_plan_run(),
            Err(SavedPlanError::NotFresh { index: 1, .. })
        ));

        let mut saved = self::saved();
        saved.defaults.max_parallel = Some(0);
        assert_eq!(saved.to_plan_run(), Err(SavedPlanError::MaxParallel(0)));

        let mut saved = self::saved();
        saved.format_version = 1;
        assert!(
            saved.to_plan_run().is_ok(),
            "format 1 (no graphs) is still read"
        );

        let mut saved = self::saved();
        saved.format_version = 9;
        assert_eq!(
            saved.to_plan_run(),
            Err(SavedPlanError::FormatVersion { found: 9 })
        );

        let mut saved = self::saved();
        saved.plugins.clear();
        assert!(matches!(
            saved.to_plan_run(),
            Err(SavedPlanError::UnpinnedType { index: 0, .. })
        ));
    }
}
