//! Declares a params schema that is not a JSON Schema: the host refuses to load it.

use planrt_plugin_sdk::{Context, Guest, Info, TaskError, export_plugin};

struct BadSchema;

impl Guest for BadSchema {
    fn describe() -> Info {
        Info {
            params_schema: r#"{"type": 12}"#.into(),
            ..Info::new(
                "test-bad-schema",
                "0.1.0",
                "Declares a broken params schema",
            )
        }
    }

    fn validate(_params: String) -> Result<(), String> {
        Ok(())
    }

    fn run(_context: Context, _params: String) -> Result<String, TaskError> {
        Ok("{}".into())
    }
}

export_plugin!(BadSchema);
