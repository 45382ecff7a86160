//! Panics while running: with `panic = "abort"` this is a wasm trap whose backtrace names
//! `explode_on_purpose`, and whose message reaches the host through stderr.

use planrt_plugin_sdk::{Context, Guest, Info, Needs, TaskError, export_plugin};

struct Trap;

#[inline(never)]
fn explode_on_purpose(attempt: u32) -> ! {
    panic!("test-trap panics on attempt {attempt}");
}

impl Guest for Trap {
    fn describe() -> Info {
        Info {
            task_type: "test-trap".into(),
            version: "0.1.0".into(),
            description: "Panics (a trap)".into(),
            params_schema: r#"{"type":"object"}"#.into(),
            needs: Needs {
                dirs: vec![],
                network: false,
            },
            default_timeout_ms: None,
            default_memory_limit: None,
        }
    }

    fn validate(_params: String) -> Result<(), String> {
        Ok(())
    }

    fn run(context: Context, _params: String) -> Result<String, TaskError> {
        explode_on_purpose(context.attempt)
    }
}

export_plugin!(Trap);
