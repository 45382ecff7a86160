//! A plugin of the second contract version, `planrt:task@0.2.0`, built from the frozen
//! `wit/v0.2.0` with wit-bindgen alone (not the SDK, which follows the latest version):
//! proof that the host still serves every 0.2.0 import as it was — `log`, `progress`
//! without a unit, `kv` and `cancelled`. Reads `key` from its kv store, sets it when unset
//! (to its task ID), reports progress, and returns what it found with its context.

#[allow(clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../../wit/v0.2.0",
        generate_all,
    });
}

use bindings::planrt::task::cancellation::cancelled;
use bindings::planrt::task::host::{Level, log, progress};
use bindings::planrt::task::kv::{KvError, kv_get, kv_set};
use bindings::planrt::task::types::{Context, Info, Needs, TaskError};
use serde_json::json;

struct V020;

fn kv_failure(error: KvError) -> TaskError {
    TaskError::Transient(format!("kv: {error:?}"))
}

impl bindings::Guest for V020 {
    fn describe() -> Info {
        Info {
            task_type: "test-v020".into(),
            version: "0.2.0".into(),
            description: "Built against planrt:task@0.2.0: kv, cancelled, progress without a unit"
                .into(),
            params_schema:
                r#"{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}"#
                    .into(),
            needs: Needs {
                dirs: Vec::new(),
                network: false,
            },
            default_timeout_ms: Some(10_000),
            default_memory_limit: None,
        }
    }

    fn validate(params: String) -> Result<(), String> {
        let params: serde_json::Value = serde_json::from_str(&params).map_err(|e| e.to_string())?;
        match params.get("key") {
            Some(serde_json::Value::String(_)) => Ok(()),
            _ => Err("`key` must be a string".into()),
        }
    }

    fn run(context: Context, params: String) -> Result<String, TaskError> {
        log(Level::Info, "a planrt:task@0.2.0 plugin runs");
        let params: serde_json::Value =
            serde_json::from_str(&params).map_err(|e| TaskError::InvalidParams(e.to_string()))?;
        let key = params["key"].as_str().unwrap_or_default();
        progress(0, Some(2), "reading the key");
        let found = kv_get(key).map_err(kv_failure)?;
        if found.is_none() {
            kv_set(key, context.task_id.as_bytes()).map_err(kv_failure)?;
        }
        progress(2, Some(2), "done");
        Ok(json!({
            "wit": "0.2.0",
            "taskId": context.task_id,
            "found": found.map(|v| String::from_utf8_lossy(&v).into_owned()),
            "cancelled": cancelled(),
        })
        .to_string())
    }
}

bindings::export!(V020 with_types_in bindings);
