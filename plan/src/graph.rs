//! The order tasks run in (docs/DESIGN.md §2): a plan without `dependsOn` is a chain,
//! each task after the one before it; a plan with `dependsOn` is a graph whose edges are
//! those names. Built once per plan, checked for unknown and duplicate names and cycles,
//! and read in O(edges) by the scheduler.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A task's name in its plan: `[a-z][a-z0-9-]*`, at most 63 characters, unique in the
/// plan; what `dependsOn` refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskName(String);

/// Longest task name accepted.
pub const MAX_TASK_NAME_LEN: usize = 63;

/// A name that breaks the naming rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task name `{0}` must match [a-z][a-z0-9-]* and be at most {MAX_TASK_NAME_LEN} characters")]
pub struct TaskNameError(pub String);

impl TaskName {
    /// Checks `name` against the naming rule.
    pub fn new(name: impl Into<String>) -> Result<Self, TaskNameError> {
        let name = name.into();
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && name.len() <= MAX_TASK_NAME_LEN;
        match valid {
            true => Ok(Self(name)),
            false => Err(TaskNameError(name)),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaskName {
    type Error = TaskNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<TaskName> for String {
    fn from(value: TaskName) -> Self {
        value.0
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a task says about its place in the graph.
#[derive(Debug, Clone, Copy)]
pub struct Links<'a> {
    /// Its name, if it has one.
    pub name: Option<&'a TaskName>,
    /// The names of the tasks it waits for, if it says (`dependsOn = []` says: none).
    pub depends_on: Option<&'a [TaskName]>,
}

/// A graph that cannot run. Each names the tasks involved by index (and name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// Two tasks share a name.
    #[error("tasks {first} and {second} are both named `{name}`: task names are unique in a plan")]
    DuplicateName {
        /// The name.
        name: TaskName,
        /// The first task with it.
        first: usize,
        /// The second.
        second: usize,
    },
    /// `dependsOn` names no task of the plan.
    #[error("task {index} depends on `{name}`, but no task of the plan is named `{name}`")]
    UnknownName {
        /// The task whose `dependsOn` it is.
        index: usize,
        /// The name.
        name: TaskName,
    },
    /// `dependsOn` names the same task twice.
    #[error("task {index} lists `{name}` twice in `dependsOn`")]
    RepeatedDependency {
        /// The task.
        index: usize,
        /// The name.
        name: TaskName,
    },
    /// Tasks that are not numbered by their position (a damaged store or document).
    #[error("the task at position {position} says it is task {index}")]
    OutOfOrder {
        /// Where it is.
        position: usize,
        /// What it says.
        index: usize,
    },
    /// Tasks wait for each other: none of them could ever start.
    #[error("tasks depend on each other in a cycle: {}", cycle_text(.cycle))]
    Cycle {
        /// The cycle, each task depending on the next, the last on the first: (index,
        /// name).
        cycle: Vec<(usize, TaskName)>,
    },
}

impl GraphError {
    /// The task the error is best reported at (for a location in the plan file).
    pub fn task_index(&self) -> usize {
        match self {
            GraphError::OutOfOrder { position, .. } => *position,
            GraphError::DuplicateName { second, .. } => *second,
            GraphError::UnknownName { index, .. }
            | GraphError::RepeatedDependency { index, .. } => *index,
            GraphError::Cycle { cycle } => cycle.first().map_or(0, |(index, _)| *index),
        }
    }
}

fn cycle_text(cycle: &[(usize, TaskName)]) -> String {
    let mut parts: Vec<String> = cycle
        .iter()
        .map(|(index, name)| format!("`{name}` (task {index})"))
        .collect();
    if let Some(first) = parts.first().cloned() {
        parts.push(first);
    }
    parts.join(" → ")
}

/// Neighbour lists of every task, packed in one allocation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Adjacency {
    /// Where task `i`'s list starts in `targets`; one more entry than tasks.
    starts: Vec<u32>,
    targets: Vec<u32>,
}

impl Adjacency {
    fn from_lists(lists: impl ExactSizeIterator<Item = impl IntoIterator<Item = usize>>) -> Self {
        let mut starts = Vec::with_capacity(lists.len() + 1);
        let mut targets = Vec::new();
        starts.push(0);
        for list in lists {
            targets.extend(list.into_iter().map(|t| t as u32));
            starts.push(targets.len() as u32);
        }
        Self { starts, targets }
    }

    /// The lists reversed: `j` in `reversed.of(i)` for each `i` in `self.of(j)`, in order.
    fn reversed(&self) -> Self {
        let tasks = self.starts.len() - 1;
        let mut counts = vec![0u32; tasks + 1];
        for &t in &self.targets {
            counts[t as usize + 1] += 1;
        }
        for i in 0..tasks {
            counts[i + 1] += counts[i];
        }
        let starts = counts.clone();
        let mut next = counts;
        let mut targets = vec![0u32; self.targets.len()];
        for from in 0..tasks {
            for &to in self.of_raw(from) {
                targets[next[to as usize] as usize] = from as u32;
                next[to as usize] += 1;
            }
        }
        Self { starts, targets }
    }

    fn of_raw(&self, i: usize) -> &[u32] {
        &self.targets[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    fn of(&self, i: usize) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.of_raw(i).iter().map(|&t| t as usize)
    }
}

/// The order constraints of a plan's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// Whether some task has `dependsOn` (else the plan is a chain in file order).
    explicit: bool,
    dependencies: Adjacency,
    dependents: Adjacency,
}

impl Graph {
    /// The graph of a plan's tasks, in plan order: a chain when no task has `dependsOn`.
    pub fn build<'a>(
        tasks: impl ExactSizeIterator<Item = Links<'a>> + Clone,
    ) -> Result<Self, GraphError> {
        let count = tasks.len();
        let mut by_name: HashMap<&TaskName, usize> = HashMap::new();
        let mut explicit = false;
        for (index, links) in tasks.clone().enumerate() {
            explicit |= links.depends_on.is_some();
            if let Some(name) = links.name
                && let Some(first) = by_name.insert(name, index)
            {
                return Err(GraphError::DuplicateName {
                    name: name.clone(),
                    first,
                    second: index,
                });
            }
        }
        if !explicit {
            // A chain has no cycle to look for.
            return Ok(Self::chain(count));
        }
        let dependencies = {
            let mut lists = Vec::with_capacity(count);
            // Which task last listed each task: a repeat is found in O(1).
            let mut listed_by = vec![usize::MAX; count];
            for (index, links) in tasks.clone().enumerate() {
                let names = links.depends_on.unwrap_or_default();
                let mut list: Vec<usize> = Vec::with_capacity(names.len());
                for name in names {
                    let Some(&target) = by_name.get(name) else {
                        return Err(GraphError::UnknownName {
                            index,
                            name: name.clone(),
                        });
                    };
                    if std::mem::replace(&mut listed_by[target], index) == index {
                        return Err(GraphError::RepeatedDependency {
                            index,
                            name: name.clone(),
                        });
                    }
                    list.push(target);
                }
                lists.push(list);
            }
            Adjacency::from_lists(lists.into_iter())
        };
        let dependents = dependencies.reversed();
        let graph = Self {
            explicit: true,
            dependencies,
            dependents,
        };
        if let Some(cycle) = graph.find_cycle() {
            let names: Vec<Option<&TaskName>> = tasks.map(|l| l.name).collect();
            let cycle = cycle
                .into_iter()
                .map(|i| {
                    (
                        i,
                        names[i]
                            .cloned()
                            .expect("a task others depend on has a name"),
                    )
                })
                .collect();
            return Err(GraphError::Cycle { cycle });
        }
        Ok(graph)
    }

    /// The chain of `count` tasks: each after the one before it.
    pub fn chain(count: usize) -> Self {
        let dependencies = Adjacency::from_lists((0..count).map(|i| i.checked_sub(1)));
        Self {
            explicit: false,
            dependents: dependencies.reversed(),
            dependencies,
        }
    }

    /// Whether some task has `dependsOn`, even empty (else the tasks run one after
    /// another in plan order).
    pub fn is_explicit(&self) -> bool {
        self.explicit
    }

    /// How many tasks.
    pub fn len(&self) -> usize {
        self.dependencies.starts.len() - 1
    }

    /// Whether the graph has no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tasks `index` waits for.
    pub fn dependencies(&self, index: usize) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.dependencies.of(index)
    }

    /// The tasks that wait for `index`.
    pub fn dependents(&self, index: usize) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.dependents.of(index)
    }

    /// `index` and every task that depends on it, directly or not, in plan order.
    pub fn downstream(&self, index: usize) -> Vec<usize> {
        let mut seen = vec![false; self.len()];
        let mut stack = vec![index];
        seen[index] = true;
        while let Some(i) = stack.pop() {
            for d in self.dependents(i) {
                if !std::mem::replace(&mut seen[d], true) {
                    stack.push(d);
                }
            }
        }
        (0..self.len()).filter(|&i| seen[i]).collect()
    }

    /// Each task's level: 0 for a task that waits for nothing, else one more than the
    /// highest level among its dependencies. Tasks of one level may run together.
    pub fn levels(&self) -> Vec<usize> {
        let mut levels = vec![0usize; self.len()];
        for i in self.topological_order() {
            levels[i] = self
                .dependencies(i)
                .map(|d| levels[d] + 1)
                .max()
                .unwrap_or(0);
        }
        levels
    }

    /// Kahn's order; tasks on a cycle are left out.
    fn topological_order(&self) -> Vec<usize> {
        let mut waiting: Vec<usize> = (0..self.len())
            .map(|i| self.dependencies(i).len())
            .collect();
        let mut order: Vec<usize> = (0..self.len()).filter(|&i| waiting[i] == 0).collect();
        let mut next = 0;
        while next < order.len() {
            let i = order[next];
            next += 1;
            for d in self.dependents(i) {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    order.push(d);
                }
            }
        }
        order
    }

    /// A cycle, each task depending on the next, if there is one.
    fn find_cycle(&self) -> Option<Vec<usize>> {
        let order = self.topological_order();
        if order.len() == self.len() {
            return None;
        }
        // Every task outside the order waits for another task outside it: walking
        // dependencies from one of them must come back to a task already walked.
        let mut ordered = vec![false; self.len()];
        for &i in &order {
            ordered[i] = true;
        }
        let start = (0..self.len()).find(|&i| !ordered[i])?;
        let mut position: HashMap<usize, usize> = HashMap::new();
        let mut path = Vec::new();
        let mut current = start;
        loop {
            if let Some(&at) = position.get(&current) {
                return Some(path.split_off(at));
            }
            position.insert(current, path.len());
            path.push(current);
            current = self.dependencies(current).find(|&d| !ordered[d])?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> TaskName {
        TaskName::new(text).unwrap()
    }

    /// Tasks as (name, dependsOn).
    fn graph(tasks: &[(&str, &[&str])]) -> Result<Graph, GraphError> {
        let owned: Vec<(Option<TaskName>, Vec<TaskName>)> = tasks
            .iter()
            .map(|(n, deps)| {
                let n = (!n.is_empty()).then(|| name(n));
                (n, deps.iter().map(|d| name(d)).collect())
            })
            .collect();
        Graph::build(owned.iter().map(|(n, deps)| Links {
            name: n.as_ref(),
            depends_on: (!deps.is_empty()).then_some(deps.as_slice()),
        }))
    }

    #[test]
    fn an_empty_depends_on_makes_a_graph_of_free_tasks() {
        let none: Vec<TaskName> = Vec::new();
        let links = [None, Some(none.as_slice())].map(|depends_on| Links {
            name: None,
            depends_on,
        });
        let g = Graph::build(links.iter().copied()).unwrap();
        assert!(g.is_explicit());
        assert_eq!(g.levels(), vec![0, 0]);
    }

    #[test]
    fn names_follow_the_rule() {
        assert!(TaskName::new("restore-2").is_ok());
        for bad in ["", "2a", "A", "a_b", "a b", &"a".repeat(64)] {
            assert!(TaskName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_plan_without_depends_on_is_a_chain() {
        let g = graph(&[("a", &[]), ("", &[]), ("c", &[])]).unwrap();
        assert!(!g.is_explicit());
        assert_eq!(g, Graph::chain(3));
        assert_eq!(g.dependencies(0).collect::<Vec<_>>(), Vec::<usize>::new());
        assert_eq!(g.dependencies(2).collect::<Vec<_>>(), vec![1]);
        assert_eq!(g.dependents(0).collect::<Vec<_>>(), vec![1]);
        assert_eq!(g.levels(), vec![0, 1, 2]);
        assert_eq!(g.downstream(1), vec![1, 2]);
    }

    #[test]
    fn depends_on_makes_a_graph_with_levels() {
        // a ─┬─ b ─┐
        //    └─ c ─┴─ d      e (free)
        let g = graph(&[
            ("d", &["b", "c"]),
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("e", &[]),
        ])
        .unwrap();
        assert!(g.is_explicit());
        assert_eq!(g.dependencies(0).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(g.dependents(1).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(g.levels(), vec![2, 0, 1, 1, 0]);
        assert_eq!(g.downstream(1), vec![0, 1, 2, 3]);
        assert_eq!(g.downstream(3), vec![0, 3]);
        assert_eq!(g.downstream(4), vec![4]);
    }

    #[test]
    fn bad_graphs_are_refused_naming_the_tasks() {
        let dup = graph(&[("a", &[]), ("a", &[])]).unwrap_err();
        assert_eq!(dup.task_index(), 1);
        assert!(dup.to_string().contains("tasks 0 and 1 are both named `a`"));

        let unknown = graph(&[("a", &[]), ("b", &["z"])]).unwrap_err();
        assert_eq!(
            unknown,
            GraphError::UnknownName {
                index: 1,
                name: name("z")
            }
        );

        let twice = graph(&[("a", &[]), ("b", &["a", "a"])]).unwrap_err();
        assert!(matches!(
            twice,
            GraphError::RepeatedDependency { index: 1, .. }
        ));

        let own = graph(&[("a", &["a"])]).unwrap_err();
        assert_eq!(
            own.to_string(),
            "tasks depend on each other in a cycle: `a` (task 0) → `a` (task 0)"
        );

        let cycle = graph(&[
            ("free", &[]),
            ("x", &["z", "free"]),
            ("y", &["x"]),
            ("z", &["y"]),
            ("after", &["x"]),
        ])
        .unwrap_err();
        let GraphError::Cycle { cycle } = &cycle else {
            panic!("{cycle:?}")
        };
        let mut indices: Vec<usize> = cycle.iter().map(|(i, _)| *i).collect();
        indices.sort();
        assert_eq!(indices, vec![1, 2, 3], "the cycle, not the tasks after it");
    }

    #[test]
    fn a_wide_graph_builds_and_levels() {
        // 100 000 tasks each depending on one of 10 roots.
        let roots: Vec<(Option<TaskName>, Vec<TaskName>)> = (0..10)
            .map(|i| (Some(name(&format!("r{i}"))), vec![]))
            .collect();
        let leaves: Vec<(Option<TaskName>, Vec<TaskName>)> = (0..100_000)
            .map(|i| (None, vec![name(&format!("r{}", i % 10))]))
            .collect();
        let all: Vec<_> = roots.iter().chain(&leaves).collect();
        let g = Graph::build(all.iter().map(|(n, deps)| Links {
            name: n.as_ref(),
            depends_on: Some(deps),
        }))
        .unwrap();
        assert_eq!(g.len(), 100_010);
        assert_eq!(g.dependents(3).len(), 10_000);
        assert_eq!(g.levels().iter().max(), Some(&1));
    }
}
