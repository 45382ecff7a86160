//! `mark-ready`: the controller's signal that the node is set up. It touches nothing and
//! records nothing but its own completion, which `planrt serve` keeps in its store: from
//! then on `/v0/healthz` and `/v0/startupz` answer 200 and `/v0/status` says `Ready`,
//! across restarts. It takes no params.

use planrt_plugin_sdk::{Context, Guest, Info, TaskError, export_plugin};
use serde_json::Value;

/// Accepts `{}` (or no keys at all): any param is a mistake worth reporting.
pub fn check_params(params: &str) -> Result<(), String> {
    match serde_json::from_str::<Value>(params) {
        Ok(Value::Object(map)) if map.is_empty() => Ok(()),
        Ok(Value::Object(map)) => Err(format!(
            "mark-ready takes no params (got {})",
            map.keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Ok(_) => Err("params must be a JSON object".into()),
        Err(e) => Err(format!("params are not JSON: {e}")),
    }
}

struct MarkReady;

impl Guest for MarkReady {
    fn describe() -> Info {
        Info {
            default_timeout_ms: Some(10_000),
            ..Info::new(
                "mark-ready",
                env!("CARGO_PKG_VERSION"),
                "Marks the node ready (planrt serve's readiness probe turns 200)",
            )
        }
    }

    fn validate(params: String) -> Result<(), String> {
        check_params(&params)
    }

    fn run(_context: Context, params: String) -> Result<String, TaskError> {
        check_params(&params).map_err(TaskError::InvalidParams)?;
        Ok("{}".into())
    }
}

export_plugin!(MarkReady);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_empty_params_are_accepted() {
        assert_eq!(check_params("{}"), Ok(()));
        assert!(check_params(r#"{"x":1}"#).unwrap_err().contains("`x`"));
        assert!(check_params("[]").is_err());
        assert!(check_params("nope").is_err());
    }
}
