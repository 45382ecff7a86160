//! Fails `transient` on attempts 1..=`failures`, then succeeds: drives retry and backoff.

use planrt_plugin_sdk::{Context, Guest, Info, TaskError, export_plugin};
use serde_json::{Value, json};

fn failures(params: &str) -> Result<u32, String> {
    let value: Value = serde_json::from_str(params).map_err(|e| e.to_string())?;
    value
        .get("failures")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| "`failures` must be a non-negative integer".to_owned())
}

struct Flaky;

impl Guest for Flaky {
    fn describe() -> Info {
        Info {
            params_schema: r#"{"type":"object","required":["failures"],"properties":{"failures":{"type":"integer","minimum":0}}}"#.into(),
            ..Info::new("test-flaky", "0.1.0", "Fails transiently `failures` times, then succeeds")
        }
    }

    fn validate(params: String) -> Result<(), String> {
        failures(&params).map(drop)
    }

    fn run(context: Context, params: String) -> Result<String, TaskError> {
        let failures = failures(&params).map_err(TaskError::InvalidParams)?;
        if context.attempt <= failures {
            eprintln!(
                "attempt {} of {} planned failures",
                context.attempt, failures
            );
            return Err(TaskError::Transient(format!(
                "planned failure on attempt {}",
                context.attempt
            )));
        }
        Ok(json!({ "attempt": context.attempt, "taskId": context.task_id }).to_string())
    }
}

export_plugin!(Flaky);
