//! The store's rows and the plan domain: one place for the SQL that writes and reads a
//! task and its attempts, the JSON columns, and the names of statuses, outcomes and error
//! kinds as stored (each enum's one spelling).

use std::collections::HashMap;

use jiff::Timestamp;
use rusqlite::{Connection, Row, params};

use super::{Origin, StoreError};
use crate::plan::{
    Attempt, AttemptOutcome, ErrorKind, PlanId, Resolution, RetryPolicy, Task, TaskName,
    TaskRecord, TaskStatus, TaskType,
};

pub(super) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A value as the text of a JSON column.
pub(super) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("documents serialize")
}

/// A JSON column read back.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| backend(format!("stored {what} is unreadable: {e}")))
}

/// An RFC 3339 text column read back.
pub(super) fn timestamp(text: &str) -> Result<Timestamp, StoreError> {
    text.parse()
        .map_err(|e| backend(format!("stored time `{text}` is unreadable: {e}")))
}

/// A name stored in a text column, read back through the enum's one spelling.
fn parse_name<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| backend(format!("stored {what} `{text}` is unknown")))
}

/// Inserts a new plan: its row (`created_at` now) and its tasks.
pub(super) fn insert_plan(
    tx: &Connection,
    plan: PlanId,
    name: Option<&str>,
    resolution: &Resolution,
    origin: Origin,
    tasks: &[Task],
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO plans (id, name, created_at, resolved, origin) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        plan.to_string(),
        name,
        Timestamp::now().to_string(),
        json(resolution),
        <&str>::from(origin),
    ])?;
    for task in tasks {
        insert_task(tx, plan, task)?;
    }
    Ok(())
}

/// Inserts a new plan's task, as it stands before its first attempt.
fn insert_task(tx: &Connection, plan: PlanId, task: &Task) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO tasks (plan_id, idx, id, type, status, params, max_retries, backoff, retry_count,
                            next_attempt_at, output, error, limits, name, depends_on)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        plan.to_string(),
        task.index() as i64,
        task.id().to_string(),
        task.task_type().as_str(),
        <&str>::from(task.status()),
        json(task.params()),
        task.policy().max_retries,
        json(&task.policy().backoff),
        task.retry_count(),
        task.next_attempt_at().map(|t| t.to_string()),
        task.output().map(json),
        task.error(),
        json(task.limits()),
        task.name().map(|n| n.as_str()),
        task.depends_on().map(|names| json(&names)),
    ])?;
    Ok(())
}

/// Writes a task's state after a transition: its fields, and its newest attempt (inserted
/// when it starts, completed once when it ends: the trigger refuses any later rewrite,
/// and the `WHERE` makes a repeat a no-op).
pub(super) fn update_task(tx: &Connection, plan: PlanId, task: &Task) -> Result<(), StoreError> {
    let updated = tx
        .prepare_cached(
            "UPDATE tasks SET status = ?3, retry_count = ?4, next_attempt_at = ?5, output = ?6, error = ?7,
                              params = ?8
             WHERE plan_id = ?1 AND idx = ?2",
        )?
        .execute(params![
            plan.to_string(),
            task.index() as i64,
            <&str>::from(task.status()),
            task.retry_count(),
            task.next_attempt_at().map(|t| t.to_string()),
            task.output().map(json),
            task.error(),
            json(task.params()),
        ])?;
    if updated != 1 {
        return Err(StoreError::UnknownTask {
            plan,
            index: task.index(),
        });
    }
    let Some(a) = task.last_attempt() else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT INTO attempts (plan_id, task_idx, attempt, started_at, ended_at, outcome, error_kind,
                               message, backtrace, log_tail, progress)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (plan_id, task_idx, attempt) DO UPDATE SET
            ended_at = excluded.ended_at, outcome = excluded.outcome, error_kind = excluded.error_kind,
            message = excluded.message, backtrace = excluded.backtrace, log_tail = excluded.log_tail,
            progress = excluded.progress
         WHERE attempts.outcome = ?12 AND excluded.outcome <> ?12",
    )?
    .execute(params![
        plan.to_string(),
        task.index() as i64,
        a.attempt,
        a.started_at.to_string(),
        a.ended_at.map(|t| t.to_string()),
        <&str>::from(a.outcome),
        a.error_kind.map(<&str>::from),
        a.message,
        a.backtrace,
        a.log_tail,
        a.progress.as_ref().map(json),
        <&str>::from(AttemptOutcome::Running),
    ])?;
    Ok(())
}

/// Every task of `plan`, in plan order, with its attempts (two queries).
pub(super) fn load_tasks(conn: &Connection, plan: PlanId) -> Result<Vec<Task>, StoreError> {
    let mut attempts = load_attempts(conn, plan)?;
    let mut stmt = conn.prepare_cached(
        "SELECT idx, id, type, status, params, max_retries, backoff, retry_count,
                next_attempt_at, output, error, limits, name, depends_on
         FROM tasks WHERE plan_id = ?1 ORDER BY idx",
    )?;
    let mut rows = stmt.query([plan.to_string()])?;
    let mut tasks = Vec::new();
    while let Some(row) = rows.next()? {
        let index = row.get::<_, i64>("idx")? as usize;
        let record = task_record(row, index, attempts.remove(&index).unwrap_or_default())?;
        tasks.push(Task::restore(record).map_err(backend)?);
    }
    Ok(tasks)
}

fn task_record(
    row: &Row<'_>,
    index: usize,
    attempts: Vec<Attempt>,
) -> Result<TaskRecord, StoreError> {
    let text = |column: &str| row.get::<_, String>(column);
    let maybe = |column: &str| row.get::<_, Option<String>>(column);
    Ok(TaskRecord {
        index,
        task_type: TaskType::new(text("type")?).map_err(backend)?,
        id: text("id")?.parse().map_err(backend)?,
        name: maybe("name")?
            .map(TaskName::new)
            .transpose()
            .map_err(backend)?,
        depends_on: maybe("depends_on")?
            .map(|d| from_json(&d, "dependsOn"))
            .transpose()?,
        params: from_json(&text("params")?, "params")?,
        policy: RetryPolicy {
            max_retries: row.get("max_retries")?,
            backoff: from_json(&text("backoff")?, "backoff")?,
        },
        limits: from_json(&text("limits")?, "limits")?,
        status: parse_name(&text("status")?, "task status")?,
        retry_count: row.get("retry_count")?,
        next_attempt_at: maybe("next_attempt_at")?
            .map(|t| timestamp(&t))
            .transpose()?,
        output: maybe("output")?
            .map(|o| from_json(&o, "output"))
            .transpose()?,
        error: maybe("error")?,
        attempts,
    })
}

/// How a stored status is spelled (for queries that count by status).
pub(super) fn status_name(status: TaskStatus) -> &'static str {
    status.into()
}

/// Every attempt of `plan`, by task index, in order (one query).
fn load_attempts(
    conn: &Connection,
    plan: PlanId,
) -> Result<HashMap<usize, Vec<Attempt>>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT task_idx, attempt, started_at, ended_at, outcome, error_kind, message, backtrace,
                log_tail, progress
         FROM attempts WHERE plan_id = ?1 ORDER BY task_idx, attempt",
    )?;
    let mut rows = stmt.query([plan.to_string()])?;
    let mut attempts: HashMap<usize, Vec<Attempt>> = HashMap::new();
    while let Some(row) = rows.next()? {
        let index = row.get::<_, i64>("task_idx")? as usize;
        let attempt = Attempt {
            attempt: row.get("attempt")?,
            started_at: timestamp(&row.get::<_, String>("started_at")?)?,
            ended_at: row
                .get::<_, Option<String>>("ended_at")?
                .map(|t| timestamp(&t))
                .transpose()?,
            outcome: parse_name(&row.get::<_, String>("outcome")?, "attempt outcome")?,
            error_kind: row
                .get::<_, Option<String>>("error_kind")?
                .map(|k| parse_name::<ErrorKind>(&k, "error kind"))
                .transpose()?,
            message: row.get("message")?,
            backtrace: row.get("backtrace")?,
            log_tail: row.get("log_tail")?,
            progress: row
                .get::<_, Option<String>>("progress")?
                .map(|text| from_json(&text, "attempt progress"))
                .transpose()?,
        };
        attempts.entry(index).or_default().push(attempt);
    }
    Ok(attempts)
}
