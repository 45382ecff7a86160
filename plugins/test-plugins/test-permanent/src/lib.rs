//! Every attempt fails `permanent`: a failure the host must not retry.

use planrt_plugin_sdk::{Context, Guest, Info, TaskError, export_plugin};

struct Permanent;

impl Guest for Permanent {
    fn describe() -> Info {
        Info::new("test-permanent", "0.1.0", "Always fails permanently")
    }

    fn validate(_params: String) -> Result<(), String> {
        Ok(())
    }

    fn run(context: Context, _params: String) -> Result<String, TaskError> {
        Err(TaskError::Permanent(format!(
            "attempt {} failed for good",
            context.attempt
        )))
    }
}

export_plugin!(Permanent);
