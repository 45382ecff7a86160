//! Text renderings for people (JSON output uses the documents directly): aligned tables
//! with a header row, times as ages and durations.

use std::fmt::Write as _;
use std::io::Write as _;

use jiff::{SignedDuration, Timestamp};
use tabwriter::TabWriter;

use crate::plan::graph::Links;
use crate::plan::{Attempt, Graph, PlanDocument, PlanRun, TaskId};
use crate::runtime::LoadedPlugin;
use crate::store::PlanSummary;

/// One cell of a table: a tab or a newline of its own would break the columns.
fn cell(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}

/// Rows of tab-separated cells, aligned into columns two spaces apart.
fn table(header: &str, rows: impl IntoIterator<Item = String>) -> String {
    let mut writer = TabWriter::new(Vec::new()).padding(2);
    let _ = writeln!(writer, "{header}");
    for row in rows {
        let _ = writeln!(writer, "{row}");
    }
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// How long ago `then` was, to the largest whole unit: `12s ago`, `3m ago`, `5h ago`,
/// `2d ago`.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let seconds = now.duration_since(then).as_secs().max(0);
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..172_800 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}

/// A duration for people: `850ms`, `4.2s`, `3m 12s`, `2h 5m`.
pub fn duration(span: SignedDuration) -> String {
    let millis = span.as_millis().max(0);
    match millis {
        0..1000 => format!("{millis}ms"),
        1000..60_000 => format!("{:.1}s", millis as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {}s", millis / 60_000, millis / 1000 % 60),
        _ => format!("{}h {}m", millis / 3_600_000, millis / 60_000 % 60),
    }
}

/// A time for people: `2026-11-27 05:01:02 UTC`.
pub fn time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// A plan: its phase, a table of its tasks, then what failed and why.
pub fn plan(doc: &PlanDocument) -> String {
    let mut out = String::new();
    let name = doc
        .name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let _ = writeln!(out, "plan {}{name}: {}", doc.id, doc.phase);
    let levels = graph_levels(doc);
    let rows = doc.tasks.iter().enumerate().map(|(index, task)| {
        let mut row = format!("{index}\t{}", task.task_type);
        if let Some(levels) = &levels {
            let name = task.name.as_ref().map_or("-", |n| n.as_str());
            let after = match task.depends_on.as_deref() {
                Some(names) if !names.is_empty() => names
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                _ => "-".to_owned(),
            };
            let _ = write!(row, "\t{name}\t{}\t{after}", levels[index]);
        }
        let _ = write!(
            row,
            "\t{}\t{}\t{}/{}\t{}",
            task.id,
            task.status,
            task.retry_count,
            task.max_retries,
            task.attempts.len(),
        );
        row
    });
    let header = match &levels {
        Some(_) => "#\tTYPE\tNAME\tLEVEL\tAFTER\tTASK ID\tSTATUS\tRETRIES\tATTEMPTS",
        None => "#\tTYPE\tTASK ID\tSTATUS\tRETRIES\tATTEMPTS",
    };
    out.push_str(&table(header, rows));
    if let Some(levels) = &levels {
        // Tasks per level, in one pass.
        let mut per_level: Vec<usize> = Vec::new();
        for &level in levels {
            if per_level.len() <= level {
                per_level.resize(level + 1, 0);
            }
            per_level[level] += 1;
        }
        let depth = per_level.len();
        let widest = per_level.iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            out,
            "graph: {depth} level(s), up to {widest} task(s) side by side; a task starts once every task in its AFTER is complete"
        );
    }
    if let (Some(index), Some(detail)) = (doc.failed_task_index, &doc.failed_task_detail) {
        let _ = writeln!(
            out,
            "failed at task {index} ({}, {}): {}",
            detail.task_type, detail.id, detail.error
        );
        let backtrace = doc.tasks[index]
            .attempts
            .last()
            .and_then(|a| a.backtrace.as_deref());
        for line in backtrace.into_iter().flat_map(str::lines) {
            let _ = writeln!(out, "  | {line}");
        }
    }
    out
}

/// Each task's level when the plan is a graph (some task has `dependsOn`), else `None`:
/// a plan without `dependsOn` runs in file order.
fn graph_levels(doc: &PlanDocument) -> Option<Vec<usize>> {
    let links = doc.tasks.iter().map(|t| Links {
        name: t.name.as_ref(),
        depends_on: t.depends_on.as_deref(),
    });
    let graph = Graph::build(links).ok()?;
    graph.is_explicit().then(|| graph.levels())
}

/// One line per plugin.
pub fn plugins<'a>(plugins: impl Iterator<Item = &'a LoadedPlugin>) -> String {
    let rows = plugins.map(|plugin| {
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
        format!(
            "{}\t{}\t{}\t{needs}\t{}\t{}",
            info.task_type,
            cell(&info.version),
            info.wit_version,
            cell(&info.description),
            cell(&plugin.file().display().to_string())
        )
    });
    table("TASK TYPE\tVERSION\tWIT\tNEEDS\tDESCRIPTION\tFILE", rows)
}

/// `status` without an ID: one line per plan, newest first.
pub fn plan_list(plans: &[PlanSummary], now: Timestamp) -> String {
    if plans.is_empty() {
        return "no plans yet\n".to_owned();
    }
    let rows = plans.iter().map(|plan| {
        let phase = match plan.failed_task_index {
            Some(index) => format!("{} at task {index}", plan.phase),
            None => plan.phase.to_string(),
        };
        format!(
            "{}\t{phase}\t{}/{}\t{}\t{}",
            plan.id,
            plan.complete,
            plan.tasks,
            age(now, plan.created_at),
            cell(plan.name.as_deref().unwrap_or("-")),
        )
    });
    table("PLAN ID\tPHASE\tCOMPLETE\tCREATED\tNAME", rows)
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
    pub task_id: TaskId,
    /// The attempt.
    #[serde(flatten)]
    pub attempt: Attempt,
}

/// Every attempt of `plan`, in the order they started.
pub fn history_entries(plan: &PlanRun) -> Vec<HistoryEntry> {
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

/// `history` as text: one line per attempt, with how long it took, the last progress it
/// reported and why it failed.
pub fn history(entries: &[HistoryEntry]) -> String {
    if entries.is_empty() {
        return "no attempts yet\n".to_owned();
    }
    let rows = entries.iter().map(|e| {
        let a = &e.attempt;
        let took = a
            .ended_at
            .map(|end| duration(end.duration_since(a.started_at)))
            .unwrap_or_else(|| "-".to_owned());
        let error = match (a.error_kind, a.message.as_deref()) {
            (Some(kind), Some(message)) => format!("{kind}: {}", cell(first_line(message))),
            (Some(kind), None) => kind.to_string(),
            (None, _) => String::new(),
        };
        let progress = a.progress.as_ref().map_or_else(
            || "-".to_owned(),
            |p| super::progress::figures(p.done, p.total, p.unit, None),
        );
        format!(
            "{}\t{}\t{}\t{}\t{}\t{took}\t{progress}\t{error}",
            time(a.started_at),
            e.task_index,
            cell(&e.task_type),
            a.attempt,
            a.outcome,
        )
    });
    table(
        "STARTED\tTASK\tTYPE\tATTEMPT\tOUTCOME\tTOOK\tPROGRESS\tERROR",
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        assert_eq!(age(t(10), t(0)), "10s ago");
        assert_eq!(age(t(3 * 60 + 59), t(0)), "3m ago");
        assert_eq!(age(t(5 * 3600), t(0)), "5h ago");
        assert_eq!(age(t(3 * 86_400), t(0)), "3d ago");
        assert_eq!(
            age(t(0), t(5)),
            "0s ago",
            "a clock step back is not negative"
        );
    }

    #[test]
    fn durations_read_like_people_write_them() {
        let ms = SignedDuration::from_millis;
        assert_eq!(duration(ms(850)), "850ms");
        assert_eq!(duration(ms(4_249)), "4.2s");
        assert_eq!(duration(ms(192_000)), "3m 12s");
        assert_eq!(duration(ms(7_500_000)), "2h 5m");
    }

    #[test]
    fn the_plan_list_has_a_header_and_aligned_columns() {
        let summary = |name: &str, failed: Option<usize>| PlanSummary {
            id: crate::plan::PlanId::new_random(),
            name: Some(name.to_owned()),
            created_at: t(0),
            phase: if failed.is_some() {
                crate::plan::Phase::Failed
            } else {
                crate::plan::Phase::Complete
            },
            tasks: 4,
            complete: if failed.is_some() { 1 } else { 4 },
            failed_task_index: failed,
        };
        let text = plan_list(
            &[summary("a-long-plan-name", None), summary("b", Some(1))],
            t(125),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("PLAN ID"), "{text}");
        assert!(
            lines[1].contains("Complete") && lines[1].contains("4/4"),
            "{text}"
        );
        assert!(
            lines[2].contains("Failed at task 1") && lines[2].contains("2m ago"),
            "{text}"
        );
        let column = |line: &str| line.find("a-long").or_else(|| line.rfind(" b"));
        assert_eq!(
            lines[0].find("NAME"),
            column(lines[1]),
            "names line up under NAME:\n{text}"
        );
        assert!(!text.contains("Some("), "no Debug renderings");
    }
}
