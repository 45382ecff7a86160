//! Panics while running: with `panic = "abort"` this is a wasm trap whose backtrace names
//! `explode_on_purpose`, and whose message reaches the host through stderr.

use planrt_plugin_sdk::{Context, Guest, Info, TaskError, export_plugin};

struct Trap;

#[inline(never)]
fn explode_on_purpose(attempt: u32) -> ! {
    panic!("test-trap panics on attempt {attempt}");
}

impl Guest for Trap {
    fn describe() -> Info {
        Info::new("test-trap", "0.1.0", "Panics (a trap)")
    }

    fn validate(_params: String) -> Result<(), String> {
        Ok(())
    }

    fn run(context: Context, _params: String) -> Result<String, TaskError> {
        explode_on_purpose(context.attempt)
    }
}

export_plugin!(Trap);
