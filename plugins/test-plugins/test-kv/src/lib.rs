//! Exercises `planrt:task@0.2.0`'s kv store and `cancelled()`. Reads `key`; when it is not
//! set yet, sets it to this attempt's task ID and number, then — with `holdFirst` —
//! holds the attempt until the host cancels it (polling `cancelled()`, so it gets the
//! grace period, and logging that it saw the stop), or until it is killed. An attempt
//! that finds the key returns what it found: after a `kill -9` and `resume`, the value
//! the killed attempt committed. `setBytes` sets a value of that many bytes instead
//! (limits); `delete` removes the key first; `succeedOnCancel` makes a held attempt
//! finish with success when cancelled (work done within the grace).

use planrt_plugin_sdk::{
    Context, Info, Task, TaskError, cancelled, export_task, kv_delete, kv_get, kv_set, log,
    progress,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

/// What to do with the store.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// The key to read, and to set when it is not set.
    key: String,
    /// Hold the first attempt (the one that sets the key) until cancelled or killed.
    #[serde(default)]
    hold_first: bool,
    /// When held and cancelled, finish with success instead of an error.
    #[serde(default)]
    succeed_on_cancel: bool,
    /// Set a value of this many bytes instead.
    set_bytes: Option<usize>,
    /// Delete the key before reading it.
    #[serde(default)]
    delete: bool,
}

struct TestKv;

impl Task for TestKv {
    type Params = Params;
    type Output = Value;

    fn info() -> Info {
        Info {
            default_timeout_ms: Some(120_000),
            ..Info::new("test-kv", "0.1.0", "Sets and reads a key of its kv store")
        }
    }

    fn run(context: Context, params: Params) -> Result<Value, TaskError> {
        if let Some(bytes) = params.set_bytes {
            kv_set(&params.key, &vec![b'x'; bytes])?;
            return Ok(json!({ "set": bytes }));
        }
        if params.delete {
            kv_delete(&params.key)?;
        }
        if let Some(found) = kv_get(&params.key)? {
            return Ok(json!({ "found": String::from_utf8_lossy(&found) }));
        }
        let value = format!("{} attempt {}", context.task_id, context.attempt);
        if params.hold_first {
            // Asked before anything a test waits for, so a stop at any moment after finds
            // a plugin that asks (and gets its grace).
            cancelled();
        }
        kv_set(&params.key, value.as_bytes())?;
        log!(Info, "set {} = {value}", params.key);
        if params.hold_first {
            progress(1, Some(2), "holding");
            while !cancelled() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            log!(Warn, "cancelled() returned true: stopping cleanly");
            if params.succeed_on_cancel {
                return Ok(json!({ "set": value, "finishedOnCancel": true }));
            }
            return Err(TaskError::Transient(
                "stopped: the host cancelled the attempt".into(),
            ));
        }
        Ok(json!({ "set": value }))
    }
}

export_task!(TestKv);
