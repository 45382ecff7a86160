//! Rust bindings of the `planrt:task@0.1.0` world for plugin authors.
//!
//! Implement [`Guest`] for a type and export it with [`export_plugin!`]:
//!
//! ```ignore
//! struct MyTask;
//! impl planrt_plugin_sdk::Guest for MyTask { /* describe, validate, run */ }
//! planrt_plugin_sdk::export_plugin!(MyTask);
//! ```

/// The generated bindings (in a module: at the crate root the exported macro clashes
/// with its own re-export). Generated code: clippy's style lints do not apply.
#[allow(clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../wit/v0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_plugin",
        default_bindings_module: "planrt_plugin_sdk::bindings",
        generate_all,
    });
}

pub use bindings::planrt::task::host::{self, Level};
pub use bindings::planrt::task::types::{Context, DirMode, DirNeed, Info, Needs, TaskError};
pub use bindings::{Guest, export_plugin};

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

/// Reports progress of the current attempt.
pub fn progress(done: u64, total: Option<u64>, note: &str) {
    host::progress(done, total, note);
}
