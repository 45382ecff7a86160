//! Every attempt fails `permanent`: a failure the host must not retry.

use planrt_plugin_sdk::{Context, Guest, Info, Needs, TaskError, export_plugin};

struct Permanent;

impl Guest for Permanent {
    fn describe() -> Info {
        Info {
            task_type: "test-permanent".into(),
            version: "0.1.0".into(),
            description: "Always fails permanently".into(),
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
        Err(TaskError::Permanent(format!(
            "attempt {} failed for good",
            context.attempt
        )))
    }
}

export_plugin!(Permanent);
