//! Write planrt task types in Rust against the `planrt:task@0.3.0` world.
//!
//! Implement [`Task`] — typed params (their JSON Schema generated) and typed output — and
//! export it with [`export_task!`]; see [`typed`]. The raw bindings stay available:
//! implement [`Guest`] (params and output as JSON text) and export it with
//! [`export_plugin!`]. Besides `log` and `progress` ([`progress_bytes`] for byte counts),
//! a plugin has a durable key-value store of its task type ([`kv_get`], [`kv_set`],
//! [`kv_delete`]), [`cancelled`], and hashing and decompression at native speed run by
//! the host ([`codec`]).

/// The generated bindings (in a module: at the crate root the exported macro clashes
/// with its own re-export). Generated code: clippy's style lints do not apply.
#[allow(clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../wit/v0.3.0",
        pub_export_macro: true,
        export_macro_name: "export_plugin",
        default_bindings_module: "planrt_plugin_sdk::bindings",
        generate_all,
    });
}

pub use bindings::planrt::task::host::{self, Level, Unit};
pub use bindings::planrt::task::kv::{self, KvError};
pub use bindings::planrt::task::types::{Context, DirMode, DirNeed, Info, Needs, TaskError};
pub use bindings::{Guest, export_plugin};

pub mod codec;
pub mod typed;
pub use typed::{Task, params_schema, parse_params};

/// Re-exported for [`Task::Params`] derives: `#[derive(planrt_plugin_sdk::JsonSchema)]`.
pub use schemars::{self, JsonSchema};

impl Info {
    /// A task type with no needs, any object as params and no suggested limits; set the
    /// rest with struct update syntax: `Info { needs, ..Info::new("my-task", "1.0.0", "…") }`.
    pub fn new(task_type: &str, version: &str, description: &str) -> Self {
        Self {
            task_type: task_type.to_owned(),
            version: version.to_owned(),
            description: description.to_owned(),
            params_schema: r#"{"type":"object"}"#.to_owned(),
            needs: Needs {
                dirs: Vec::new(),
                network: false,
            },
            default_timeout_ms: None,
            default_memory_limit: None,
        }
    }
}

/// Logs a line to the host (and the attempt's log tail).
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}

/// Reports progress of the current attempt: `done` of `total` things (files, blocks…).
pub fn progress(done: u64, total: Option<u64>, note: &str) {
    host::progress(done, total, Unit::Items, note);
}

/// Reports progress of the current attempt in bytes: shown in KiB, MiB… with a rate.
pub fn progress_bytes(done: u64, total: Option<u64>, note: &str) {
    host::progress(done, total, Unit::Bytes, note);
}

/// The value of `key` in this task type's key-value store, if set.
pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    kv::kv_get(key)
}

/// Sets `key` in this task type's key-value store; committed when it returns `Ok`.
pub fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
    kv::kv_set(key, value)
}

/// Removes `key` from this task type's key-value store.
pub fn kv_delete(key: &str) -> Result<(), KvError> {
    kv::kv_delete(key)
}

/// Whether the host is stopping this attempt (an operator's cancel, a shutdown): stop
/// soon and return an error; the host waits a short grace period, then interrupts.
pub fn cancelled() -> bool {
    bindings::planrt::task::cancellation::cancelled()
}

impl From<KvError> for TaskError {
    /// A store the host cannot reach is worth a retry; a key or value the limits refuse
    /// will be refused again.
    fn from(error: KvError) -> Self {
        match error {
            KvError::Unavailable(m) => TaskError::Transient(format!("kv store unavailable: {m}")),
            KvError::InvalidKey(m) => TaskError::Permanent(format!("invalid kv key: {m}")),
            KvError::TooLarge(m) => TaskError::Permanent(format!("kv limit: {m}")),
        }
    }
}
