//! A plugin of the first contract version, `planrt:task@0.1.0`, built from the frozen
//! `wit/v0.1.0` with wit-bindgen alone (not the SDK, which follows the latest version):
//! proof that a host serving 0.2.0 still loads and runs what was built for 0.1.0. It
//! logs a line and returns its context and params.

#[allow(clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../../wit/v0.1.0",
        generate_all,
    });
}

use bindings::planrt::task::host::{Level, log};
use bindings::planrt::task::types::{Context, Info, Needs, TaskError};
use serde_json::json;

struct V010;

impl bindings::Guest for V010 {
    fn describe() -> Info {
        Info {
            task_type: "test-v010".into(),
            version: "0.1.0".into(),
            description: "Built against planrt:task@0.1.0: returns its context and params".into(),
            params_schema: r#"{"type":"object"}"#.into(),
            needs: Needs {
                dirs: Vec::new(),
                network: false,
            },
            default_timeout_ms: Some(10_000),
            default_memory_limit: None,
        }
    }

    fn validate(params: String) -> Result<(), String> {
        serde_json::from_str::<serde_json::Value>(&params)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn run(context: Context, params: String) -> Result<String, TaskError> {
        log(Level::Info, "a planrt:task@0.1.0 plugin runs");
        let params: serde_json::Value =
            serde_json::from_str(&params).map_err(|e| TaskError::InvalidParams(e.to_string()))?;
        Ok(json!({
            "wit": "0.1.0",
            "taskId": context.task_id,
            "attempt": context.attempt,
            "params": params,
        })
        .to_string())
    }
}

bindings::export!(V010 with_types_in bindings);
