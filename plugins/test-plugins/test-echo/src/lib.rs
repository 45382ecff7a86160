//! Returns its `context` and params as output: proves which IDs reached the plugin.

use planrt_plugin_sdk::{Context, Guest, Info, Level, TaskError, export_plugin, log, progress};
use serde_json::{Value, json};

struct Echo;

impl Guest for Echo {
    fn describe() -> Info {
        Info::new("test-echo", "0.1.0", "Echoes its context and params")
    }

    fn validate(params: String) -> Result<(), String> {
        serde_json::from_str::<Value>(&params)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn run(context: Context, params: String) -> Result<String, TaskError> {
        let params: Value =
            serde_json::from_str(&params).map_err(|e| TaskError::InvalidParams(e.to_string()))?;
        log(Level::Info, &format!("echoing task {}", context.task_id));
        progress(1, Some(1), "echoed");
        println!("stdout line from test-echo");
        Ok(json!({
            "context": {
                "planId": context.plan_id,
                "taskId": context.task_id,
                "taskType": context.task_type,
                "planIndex": context.plan_index,
                "attempt": context.attempt,
                "maxRetries": context.max_retries,
                "deadlineUnixMs": context.deadline_unix_ms,
            },
            "params": params,
        })
        .to_string())
    }
}

export_plugin!(Echo);
