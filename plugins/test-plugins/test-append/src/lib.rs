//! Sleeps `sleepMs` (or, with `waitFor`, until `/work/{waitFor}` exists), fails
//! `transient` on attempts 1..=`failures`, else appends "{taskId} {attempt}" to
//! `/work/effects.log` and succeeds: a visible side effect per completed attempt, for
//! crash and resume tests (`waitFor` holds an attempt running until the test says).

use std::io::Write;

use planrt_plugin_sdk::{
    Context, DirMode, DirNeed, Guest, Info, Needs, TaskError, export_plugin, progress,
};
use serde_json::{Value, json};

struct Params {
    sleep_ms: u64,
    failures: u32,
    wait_for: Option<String>,
}

fn parse(params: &str) -> Result<Params, String> {
    let value: Value = serde_json::from_str(params).map_err(|e| e.to_string())?;
    let number = |key: &str| {
        value
            .get(key)
            .map_or(Some(0), Value::as_u64)
            .ok_or(format!("`{key}` must be a non-negative integer"))
    };
    let wait_for = match value.get("waitFor") {
        None => None,
        Some(Value::String(name)) if !name.is_empty() && !name.contains('/') => Some(name.clone()),
        Some(_) => return Err("`waitFor` must be a file name".into()),
    };
    Ok(Params {
        sleep_ms: number("sleepMs")?,
        failures: number("failures")? as u32,
        wait_for,
    })
}

struct Append;

impl Guest for Append {
    fn describe() -> Info {
        Info {
            params_schema: r#"{"type":"object","properties":{"sleepMs":{"type":"integer"},"failures":{"type":"integer"},"waitFor":{"type":"string"}}}"#.into(),
            needs: Needs { dirs: vec![DirNeed { guest_path: "/work".into(), mode: DirMode::Rw }], network: false },
            ..Info::new("test-append", "0.1.0", "Sleeps, then appends its task ID and attempt to /work/effects.log")
        }
    }

    fn validate(params: String) -> Result<(), String> {
        parse(&params).map(drop)
    }

    fn run(context: Context, params: String) -> Result<String, TaskError> {
        let params = parse(&params).map_err(TaskError::InvalidParams)?;
        let steps = 10;
        for step in 0..steps {
            std::thread::sleep(std::time::Duration::from_millis(params.sleep_ms / steps));
            progress(step + 1, Some(steps), "sleeping");
        }
        if let Some(name) = &params.wait_for {
            let gate = std::path::Path::new("/work").join(name);
            while !gate.exists() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        if context.attempt <= params.failures {
            return Err(TaskError::Transient(format!(
                "planned failure on attempt {}",
                context.attempt
            )));
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open("/work/effects.log")
            .map_err(|e| TaskError::Transient(format!("cannot open /work/effects.log: {e}")))?;
        // One write call per line: `writeln!` issues several, and a kill between them
        // leaves a torn line that the next attempt's line would be glued to.
        let line = format!("{} {}\n", context.task_id, context.attempt);
        log.write_all(line.as_bytes())
            .map_err(|e| TaskError::Transient(format!("cannot append: {e}")))?;
        Ok(json!({ "attempt": context.attempt }).to_string())
    }
}

export_plugin!(Append);
