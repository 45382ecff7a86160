//! Does nothing (after sleeping `sleepMs`, default 0) and returns `{}`: the per-task cost
//! of planrt itself, for benchmarks and scheduler tests.

use planrt_plugin_sdk::{Context, Guest, Info, TaskError, export_plugin};
use serde_json::Value;

fn sleep_ms(params: &str) -> Result<u64, String> {
    let value: Value = serde_json::from_str(params).map_err(|e| e.to_string())?;
    match value.get("sleepMs") {
        None => Ok(0),
        Some(ms) => ms
            .as_u64()
            .ok_or_else(|| "`sleepMs` must be a non-negative integer".to_owned()),
    }
}

struct Noop;

impl Guest for Noop {
    fn describe() -> Info {
        Info {
            params_schema: r#"{"type":"object","properties":{"sleepMs":{"type":"integer","minimum":0}},"additionalProperties":false}"#.into(),
            ..Info::new("test-noop", "0.1.0", "Does nothing (after sleepMs) and returns {}")
        }
    }

    fn validate(params: String) -> Result<(), String> {
        sleep_ms(&params).map(drop)
    }

    fn run(_context: Context, params: String) -> Result<String, TaskError> {
        let ms = sleep_ms(&params).map_err(TaskError::InvalidParams)?;
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        Ok("{}".into())
    }
}

export_plugin!(Noop);
