//! Plan and task identity (docs/DESIGN.md §1), bit-exact with the reference controller's
//! `DeterministicTaskID`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace of task IDs: UUID v5 over `"{planId}/{taskType}/{planIndex}"`.
pub const TASK_ID_NAMESPACE: Uuid = uuid::uuid!("b7e89c3a-4f12-4d8b-9a6e-1c2d3e4f5a6b");

/// Longest task type name accepted (a DNS label's length).
pub const MAX_TASK_TYPE_LEN: usize = 63;

/// A plan's identity: a random UUID v4 made once, when the plan is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanId(Uuid);

impl PlanId {
    /// A fresh random plan ID.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for PlanId {
    fn from(value: Uuid) -> Self {
        Self(value)
    }
}

impl FromStr for PlanId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A task's identity: deterministic from its plan ID, task type and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(Uuid);

impl TaskId {
    /// The reference controller's `DeterministicTaskID`: UUID v5 in
    /// [`TASK_ID_NAMESPACE`] of `"{plan_id}/{task_type}/{plan_index}"`.
    pub fn derive(plan_id: PlanId, task_type: &TaskType, plan_index: usize) -> Self {
        let name = format!("{plan_id}/{task_type}/{plan_index}");
        Self(Uuid::new_v5(&TASK_ID_NAMESPACE, name.as_bytes()))
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for TaskId {
    /// A caller-chosen ID: a task submitted on its own through the task API.
    fn from(value: Uuid) -> Self {
        Self(value)
    }
}

impl FromStr for TaskId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A task type name: `[a-z][a-z0-9-]*`, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskType(String);

/// Why a string is not a task type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskTypeError {
    /// The name is empty.
    #[error("a task type name must not be empty")]
    Empty,
    /// The name is longer than [`MAX_TASK_TYPE_LEN`].
    #[error("task type `{0}` is longer than {MAX_TASK_TYPE_LEN} characters")]
    TooLong(String),
    /// The name has a character outside `[a-z0-9-]` or does not start with a letter.
    #[error("task type `{0}` must match [a-z][a-z0-9-]*")]
    BadCharacters(String),
}

impl TaskType {
    /// Checks `name` against the task type rules.
    pub fn new(name: impl Into<String>) -> Result<Self, TaskTypeError> {
        let name = name.into();
        let mut chars = name.chars();
        match chars.next() {
            None => return Err(TaskTypeError::Empty),
            Some(first) if !first.is_ascii_lowercase() => {
                return Err(TaskTypeError::BadCharacters(name));
            }
            Some(_) => {}
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(TaskTypeError::BadCharacters(name));
        }
        if name.len() > MAX_TASK_TYPE_LEN {
            return Err(TaskTypeError::TooLong(name));
        }
        Ok(Self(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaskType {
    type Error = TaskTypeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<TaskType> for String {
    fn from(value: TaskType) -> Self {
        value.0
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_match_fixed_vectors_made_without_this_code() {
        // Computed with Python: uuid.uuid5(UUID("b7e89c3a-…"), f"{plan}/{type}/{index}").
        let vectors = [
            (
                "5f0c2f8e-3c4b-4d8a-9f1e-2a3b4c5d6e7f",
                "config-patch",
                1,
                "53a4b984-a88d-5bda-b8f4-42f4afa25618",
            ),
            (
                "00000000-0000-4000-8000-000000000000",
                "snapshot-restore",
                0,
                "43ebdbf0-32d0-564a-ab22-0979bb7b3bf5",
            ),
            (
                "d7a4c1e2-9b3f-4e6a-8c5d-1f2e3a4b5c6d",
                "test-echo",
                1,
                "3e4594a0-25eb-5bd0-b2fa-032c85eb189c",
            ),
            (
                "d7a4c1e2-9b3f-4e6a-8c5d-1f2e3a4b5c6d",
                "configure-state-sync",
                12,
                "cf4de2ea-de80-5bb6-8725-68455f8cb403",
            ),
        ];
        for (plan, task_type, index, expected) in vectors {
            let plan: PlanId = plan.parse().unwrap();
            let id = TaskId::derive(plan, &TaskType::new(task_type).unwrap(), index);
            assert_eq!(id.to_string(), expected, "{plan}/{task_type}/{index}");
        }
    }

    #[test]
    fn task_id_is_stable_and_depends_on_every_part() {
        let plan = PlanId::new_random();
        let patch = TaskType::new("config-patch").unwrap();
        let peers = TaskType::new("discover-peers").unwrap();
        let id = TaskId::derive(plan, &patch, 0);
        assert_eq!(id, TaskId::derive(plan, &patch, 0));
        assert_ne!(id, TaskId::derive(plan, &patch, 1));
        assert_ne!(id, TaskId::derive(plan, &peers, 0));
        assert_ne!(id, TaskId::derive(PlanId::new_random(), &patch, 0));
        assert_eq!(id.as_uuid().get_version_num(), 5);
        assert_eq!(plan.as_uuid().get_version_num(), 4);
    }

    #[test]
    fn task_type_rules() {
        assert!(TaskType::new("config-patch").is_ok());
        assert!(TaskType::new("a").is_ok());
        assert!(TaskType::new("a1-b2").is_ok());
        assert_eq!(TaskType::new(""), Err(TaskTypeError::Empty));
        assert!(matches!(
            TaskType::new("1abc"),
            Err(TaskTypeError::BadCharacters(_))
        ));
        assert!(matches!(
            TaskType::new("-abc"),
            Err(TaskTypeError::BadCharacters(_))
        ));
        assert!(matches!(
            TaskType::new("Config"),
            Err(TaskTypeError::BadCharacters(_))
        ));
        assert!(matches!(
            TaskType::new("a_b"),
            Err(TaskTypeError::BadCharacters(_))
        ));
        assert!(TaskType::new("a".repeat(63)).is_ok());
        assert!(matches!(
            TaskType::new("a".repeat(64)),
            Err(TaskTypeError::TooLong(_))
        ));
    }
}
