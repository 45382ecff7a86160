//! Text renderings for people (JSON output uses the documents directly).

use std::fmt::Write;

use crate::plan::{PlanDocument, TaskStatus};
use crate::runtime::LoadedPlugin;

/// A plan and its tasks, one line per task, then the failure if any.
pub fn plan(doc: &PlanDocument) -> String {
    let mut out = String::new();
    let name = doc
        .name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let _ = writeln!(out, "plan {}{name}: {:?}", doc.id, doc.phase);
    for (index, task) in doc.tasks.iter().enumerate() {
        let attempts = match task.attempts.len() {
            0 => String::new(),
            1 => ", 1 attempt".to_owned(),
            n => format!(", {n} attempts"),
        };
        let _ = writeln!(
            out,
            "  {index:>2}  {:<24} {}  {:<8} retries {}/{}{attempts}",
            task.task_type.as_str(),
            task.id,
            format!("{:?}", task.status),
            task.retry_count,
            task.max_retries,
        );
        if task.status == TaskStatus::Failed {
            if let Some(error) = &task.error {
                let _ = writeln!(out, "      error: {error}");
            }
            if let Some(backtrace) = task.attempts.last().and_then(|a| a.backtrace.as_deref()) {
                for line in backtrace.lines() {
                    let _ = writeln!(out, "      | {line}");
                }
            }
        }
    }
    if let (Some(index), Some(detail)) = (doc.failed_task_index, &doc.failed_task_detail) {
        let _ = writeln!(
            out,
            "failed at task {index} ({}, {}): {}",
            detail.task_type.as_str(),
            detail.id,
            detail.error
        );
    }
    out
}

/// One line per plugin.
pub fn plugins<'a>(plugins: impl Iterator<Item = &'a LoadedPlugin>) -> String {
    let mut out = String::new();
    for plugin in plugins {
        let info = plugin.info();
        let mut needs: Vec<String> = info
            .dirs
            .iter()
            .map(|d| format!("{}:{}", d.guest_path, if d.writable { "rw" } else { "ro" }))
            .collect();
        if info.network {
            needs.push("network".into());
        }
        let needs = if needs.is_empty() {
            "-".to_owned()
        } else {
            needs.join(",")
        };
        let _ = writeln!(
            out,
            "{:<24} {:<8} needs {:<20} {}  ({})",
            info.task_type,
            info.version,
            needs,
            info.description,
            plugin.file().display()
        );
    }
    out
}

/// `status` without an ID: one line per plan.
pub fn plan_list(plans: &[crate::store::PlanSummary]) -> String {
    let mut out = String::new();
    if plans.is_empty() {
        out.push_str("no plans yet\n");
    }
    for plan in plans {
        let failed = plan
            .failed_task_index
            .map(|i| format!("  failed at task {i}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}  {:<8}  {}/{} complete  {}  {}{failed}",
            plan.id,
            format!("{:?}", plan.phase),
            plan.complete,
            plan.tasks,
            plan.created_at,
            plan.name.as_deref().unwrap_or("-"),
        );
    }
    out
}

/// One attempt in `history`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Task index.
    pub task_index: usize,
    /// Task type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// Task ID.
    pub task_id: crate::plan::TaskId,
    /// The attempt.
    #[serde(flatten)]
    pub attempt: crate::plan::Attempt,
}

/// Every attempt of `plan`, in the order they started.
pub fn history_entries(plan: &crate::plan::PlanRun) -> Vec<HistoryEntry> {
    let mut entries: Vec<HistoryEntry> = plan
        .tasks()
        .iter()
        .flat_map(|task| {
            task.attempts().iter().map(|attempt| HistoryEntry {
                task_index: task.index(),
                task_type: task.task_type().to_string(),
                task_id: task.id(),
                attempt: attempt.clone(),
            })
        })
        .collect();
    entries.sort_by_key(|e| (e.attempt.started_at, e.task_index, e.attempt.attempt));
    entries
}

/// `history` as text: one line per attempt.
pub fn history(entries: &[HistoryEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let a = &e.attempt;
        let kind = a.error_kind.map(|k| format!(" {k}")).unwrap_or_default();
        let message = a
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}  task {:>2} {:<20} attempt {:>2}  {:<8}{kind}{message}",
            a.started_at,
            e.task_index,
            e.task_type,
            a.attempt,
            format!("{:?}", a.outcome).to_lowercase(),
        );
    }
    out
}
