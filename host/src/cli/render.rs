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
