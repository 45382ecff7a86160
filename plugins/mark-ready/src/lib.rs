//! `mark-ready`: the controller's signal that the node is set up. It touches nothing and
//! records nothing but its own completion, which `planrt serve` keeps in its store: from
//! then on `/v0/healthz` and `/v0/startupz` answer 200 and `/v0/status` says `Ready`,
//! across restarts. It takes no params.

use planrt_plugin_sdk::{Context, Info, Task, TaskError, export_task};
use schemars::JsonSchema;
use serde::Deserialize;

/// No params: any key is a mistake worth reporting.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The task type.
pub struct MarkReady;

impl Task for MarkReady {
    type Params = Params;
    type Output = serde_json::Value;

    fn info() -> Info {
        Info {
            default_timeout_ms: Some(10_000),
            ..Info::new(
                "mark-ready",
                env!("CARGO_PKG_VERSION"),
                "Marks the node ready (planrt serve's readiness probe turns 200)",
            )
        }
    }

    fn run(_context: Context, _params: Params) -> Result<Self::Output, TaskError> {
        Ok(serde_json::json!({}))
    }
}

export_task!(MarkReady);

#[cfg(test)]
mod tests {
    use planrt_plugin_sdk::parse_params;

    use super::*;

    #[test]
    fn only_empty_params_are_accepted() {
        assert!(parse_params::<Params>("{}").is_ok());
        assert!(
            parse_params::<Params>(r#"{"x":1}"#)
                .unwrap_err()
                .contains("`x`")
        );
        assert!(parse_params::<Params>("[]").is_err());
        assert!(parse_params::<Params>("nope").is_err());
    }
}
