//! The SQLite schema and its versioned migrations (`PRAGMA user_version`).

use rusqlite::Connection;

/// Migrations in order; migration `i` moves the schema from version `i` to `i + 1`.
/// Released migrations never change: add a new one.
const MIGRATIONS: &[Migration] = &[
    // 1: plans, tasks, append-only attempts.
    Migration::Sql(
        r#"
    CREATE TABLE plans (
        id          TEXT PRIMARY KEY,
        name        TEXT,
        created_at  TEXT NOT NULL,
        -- The resolved plan as `plan --out` writes it: grants, plugin pins, defaults.
        resolved    TEXT NOT NULL
    ) STRICT;

    CREATE TABLE tasks (
        plan_id          TEXT NOT NULL REFERENCES plans(id),
        idx              INTEGER NOT NULL,
        id               TEXT NOT NULL UNIQUE,
        type             TEXT NOT NULL,
        status           TEXT NOT NULL CHECK (status IN ('Pending', 'Running', 'Complete', 'Failed')),
        params           TEXT NOT NULL,
        max_retries      INTEGER NOT NULL,
        backoff          TEXT NOT NULL,
        retry_count      INTEGER NOT NULL,
        next_attempt_at  TEXT,
        output           TEXT,
        error            TEXT,
        PRIMARY KEY (plan_id, idx)
    ) STRICT;

    CREATE TABLE attempts (
        plan_id     TEXT NOT NULL,
        task_idx    INTEGER NOT NULL,
        attempt     INTEGER NOT NULL,
        started_at  TEXT NOT NULL,
        ended_at    TEXT,
        outcome     TEXT NOT NULL CHECK (outcome IN ('running', 'complete', 'failed')),
        error_kind  TEXT,
        message     TEXT,
        backtrace   TEXT,
        log_tail    TEXT,
        PRIMARY KEY (plan_id, task_idx, attempt),
        FOREIGN KEY (plan_id, task_idx) REFERENCES tasks(plan_id, idx)
    ) STRICT;

    -- History is append-only: an attempt is written when it starts, completed once when
    -- it ends, and never changed or removed after that.
    CREATE TRIGGER attempts_ended_are_final BEFORE UPDATE ON attempts
    WHEN OLD.outcome <> 'running'
    BEGIN SELECT RAISE(ABORT, 'an ended attempt is never rewritten'); END;

    CREATE TRIGGER attempts_are_never_deleted BEFORE DELETE ON attempts
    BEGIN SELECT RAISE(ABORT, 'attempts are never deleted'); END;

    CREATE INDEX attempts_by_start ON attempts(plan_id, started_at);
    "#,
    ),
    // 2: per-task limits set by the plan (`timeout`, `memoryLimit`, later `maxOutput`),
    // as JSON.
    Migration::Sql(
        r#"
    ALTER TABLE tasks ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
    "#,
    ),
    // 3: `resolved` keeps what the plan was resolved with (format version, defaults,
    // grants, plugin pins), no longer a copy of its tasks as they were at creation.
    Migration::Sql(
        r#"
    UPDATE plans SET resolved = json_remove(resolved, '$.id', '$.name', '$.phase', '$.tasks',
                                            '$.failedTaskIndex', '$.failedTaskDetail');
    "#,
    ),
    // 4: where a plan came from (`cli`, or `api`: `planrt serve` runs and rehydrates
    // those), and when it was removed from the task API's views (`DELETE /v0/tasks/{id}`
    // of a finished task: its history stays, attempts are never deleted).
    Migration::AddColumns(&[
        (
            "plans",
            "origin",
            "TEXT NOT NULL DEFAULT 'cli' CHECK (origin IN ('cli', 'api'))",
        ),
        ("plans", "removed_at", "TEXT"),
    ]),
    // 5: when a plan was last submitted over the task API (a failed or removed task
    // submitted again); its creation time until then. (A development build had it in 4:
    // a column already there is kept.)
    Migration::AddColumns(&[("plans", "submitted_at", "TEXT")]),
    // 6: the key-value store of `planrt:task@0.2.0` plugins, one key space per task type.
    Migration::Sql(
        r#"
    CREATE TABLE IF NOT EXISTS kv (
        task_type  TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      BLOB NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (task_type, key)
    ) WITHOUT ROWID;
    "#,
    ),
    // 7: graphs: a task's name and the names it waits for (`dependsOn`, a JSON array;
    // NULL when the task does not say, as in every plan before).
    Migration::AddColumns(&[("tasks", "name", "TEXT"), ("tasks", "depends_on", "TEXT")]),
    // 8: an attempt's last progress report (`{done, total, unit, note}` as JSON), written
    // with its end.
    Migration::AddColumns(&[("attempts", "progress", "TEXT")]),
    // 9: no query reads attempts by start time, and every attempt's start paid a page
    // write to keep this index.
    Migration::Sql("DROP INDEX IF EXISTS attempts_by_start;"),
    // 10: the same tables, their CHECKs written with `=` and `OR`: SQLite evaluates a
    // constant `IN (…)` list of more than two values through a temporary b-tree, made
    // and dropped on every row written — a fifth of what recording a transition cost.
    // Rebuilt as SQLite documents (new table, copy, drop, rename); the new `attempts`
    // refers to the new `tasks` by the name it is renamed from, so no drop leaves a
    // reference dangling.
    Migration::Sql(
        r#"
    CREATE TABLE tasks_v10 (
        plan_id          TEXT NOT NULL REFERENCES plans(id),
        idx              INTEGER NOT NULL,
        id               TEXT NOT NULL UNIQUE,
        type             TEXT NOT NULL,
        status           TEXT NOT NULL CHECK (status = 'Pending' OR status = 'Running'
                                              OR status = 'Complete' OR status = 'Failed'),
        params           TEXT NOT NULL,
        max_retries      INTEGER NOT NULL,
        backoff          TEXT NOT NULL,
        retry_count      INTEGER NOT NULL,
        next_attempt_at  TEXT,
        output           TEXT,
        error            TEXT,
        limits           TEXT NOT NULL DEFAULT '{}',
        name             TEXT,
        depends_on       TEXT,
        PRIMARY KEY (plan_id, idx)
    ) STRICT;
    INSERT INTO tasks_v10 (plan_id, idx, id, type, status, params, max_retries, backoff,
                           retry_count, next_attempt_at, output, error, limits, name, depends_on)
    SELECT plan_id, idx, id, type, status, params, max_retries, backoff,
           retry_count, next_attempt_at, output, error, limits, name, depends_on FROM tasks;

    CREATE TABLE attempts_v10 (
        plan_id     TEXT NOT NULL,
        task_idx    INTEGER NOT NULL,
        attempt     INTEGER NOT NULL,
        started_at  TEXT NOT NULL,
        ended_at    TEXT,
        outcome     TEXT NOT NULL CHECK (outcome = 'running' OR outcome = 'complete'
                                         OR outcome = 'failed'),
        error_kind  TEXT,
        message     TEXT,
        backtrace   TEXT,
        log_tail    TEXT,
        progress    TEXT,
        PRIMARY KEY (plan_id, task_idx, attempt),
        FOREIGN KEY (plan_id, task_idx) REFERENCES tasks_v10(plan_id, idx)
    ) STRICT;
    INSERT INTO attempts_v10 (plan_id, task_idx, attempt, started_at, ended_at, outcome,
                              error_kind, message, backtrace, log_tail, progress)
    SELECT plan_id, task_idx, attempt, started_at, ended_at, outcome,
           error_kind, message, backtrace, log_tail, progress FROM attempts;

    -- Dropping a table deletes its rows first, without firing triggers.
    DROP TABLE attempts;
    DROP TABLE tasks;
    ALTER TABLE tasks_v10 RENAME TO tasks;
    ALTER TABLE attempts_v10 RENAME TO attempts;

    CREATE TRIGGER attempts_ended_are_final BEFORE UPDATE ON attempts
    WHEN OLD.outcome <> 'running'
    BEGIN SELECT RAISE(ABORT, 'an ended attempt is never rewritten'); END;

    CREATE TRIGGER attempts_are_never_deleted BEFORE DELETE ON attempts
    BEGIN SELECT RAISE(ABORT, 'attempts are never deleted'); END;
    "#,
    ),
];

/// One schema step.
enum Migration {
    /// SQL run as it is.
    Sql(&'static str),
    /// Columns (table, column, definition) added unless the table has them already.
    AddColumns(&'static [(&'static str, &'static str, &'static str)]),
}

impl Migration {
    fn apply(&self, conn: &Connection) -> Result<(), rusqlite::Error> {
        match self {
            Migration::Sql(sql) => conn.execute_batch(sql),
            Migration::AddColumns(columns) => {
                for (table, column, definition) in *columns {
                    let present: bool = conn.query_row(
                        "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
                        [table, column],
                        |row| row.get(0),
                    )?;
                    if !present {
                        conn.execute_batch(&format!(
                            "ALTER TABLE {table} ADD COLUMN {column} {definition};"
                        ))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// The schema version this planrt writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Why the database cannot be brought to [`SCHEMA_VERSION`].
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// Written by a newer planrt.
    #[error(
        "the state database has schema version {found}, newer than this planrt's {SCHEMA_VERSION}"
    )]
    TooNew {
        /// The version found.
        found: usize,
    },
    /// Written by an older planrt and not migrated yet (a reader never migrates).
    #[error(
        "the state database has schema version {found}, older than this planrt's {SCHEMA_VERSION}; a command that writes (`planrt run` or `planrt resume`) migrates it"
    )]
    TooOld {
        /// The version found.
        found: usize,
    },
    /// SQLite refused.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

fn read_version(conn: &Connection) -> Result<usize, rusqlite::Error> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    Ok(usize::try_from(version).unwrap_or(0))
}

/// Checks, without changing anything, that the database has exactly this planrt's
/// schema: what a read-only open needs.
pub fn check_version(conn: &Connection) -> Result<(), MigrationError> {
    match read_version(conn)? {
        SCHEMA_VERSION => Ok(()),
        found if found > SCHEMA_VERSION => Err(MigrationError::TooNew { found }),
        found => Err(MigrationError::TooOld { found }),
    }
}

/// Applies the missing migrations. Safe against other processes opening the same
/// database at once: the version is read again inside an immediate (write-locked)
/// transaction, so exactly one process applies each migration.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrationError> {
    if read_version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current = read_version(&tx)?;
    if current > SCHEMA_VERSION {
        return Err(MigrationError::TooNew { found: current });
    }
    for (version, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        migration.apply(&tx)?;
        tx.pragma_update(None, "user_version", (version + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}
