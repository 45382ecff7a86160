//! `validate` needs a `required` key (so plans without it stop before running); `run`
//! always fails `invalid-params` (a failure the host must not retry).

use planrt_plugin_sdk::{Context, Guest, Info, TaskError, export_plugin};
use serde_json::Value;

struct InvalidParams;

impl Guest for InvalidParams {
    fn describe() -> Info {
        Info {
            // No schema rule: what is refused here is refused by `validate` itself.
            params_schema: r#"{"type":"object"}"#.into(),
            ..Info::new("test-invalid-params", "0.1.0", "Rejects its params")
        }
    }

    fn validate(params: String) -> Result<(), String> {
        let value: Value = serde_json::from_str(&params).map_err(|e| e.to_string())?;
        match value.get("required") {
            Some(_) => Ok(()),
            None => Err("missing key `required`".into()),
        }
    }

    fn run(_context: Context, params: String) -> Result<String, TaskError> {
        Err(TaskError::InvalidParams(format!(
            "params {params} are not acceptable at run time"
        )))
    }
}

export_plugin!(InvalidParams);
