//! Typed task types: implement [`Task`] for a type with typed params and output, and
//! export it with [`export_task!`](crate::export_task). The SDK makes the rest of the
//! contract from the types:
//!
//! - `describe` returns your [`Task::info`] with the params JSON Schema generated from
//!   [`Task::Params`] (schemars) — never written by hand, never out of date;
//! - `validate` parses the params (unknown fields refused, whatever the type says), then
//!   calls [`Task::validate`] for checks a schema cannot express;
//! - `run` parses them the same way (a refusal is `invalid-params`), calls [`Task::run`]
//!   and serializes its output.
//!
//! ```ignore
//! use planrt_plugin_sdk::{Context, Info, Task, TaskError, export_task};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! #[serde(rename_all = "camelCase", deny_unknown_fields)]
//! struct Params {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! struct Greet;
//!
//! impl Task for Greet {
//!     type Params = Params;
//!     type Output = serde_json::Value;
//!
//!     fn info() -> Info {
//!         Info::new("greet", env!("CARGO_PKG_VERSION"), "Says hello")
//!     }
//!
//!     fn run(_context: Context, params: Params) -> Result<Self::Output, TaskError> {
//!         Ok(serde_json::json!({ "greeting": format!("hello, {}", params.name) }))
//!     }
//! }
//!
//! export_task!(Greet);
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Context, Info, TaskError};

/// A task type with typed params and output.
pub trait Task {
    /// The params: deserialized from the task's params (unknown fields are refused), and
    /// the source of the params JSON Schema. Doc comments become schema descriptions.
    type Params: DeserializeOwned + schemars::JsonSchema;
    /// What a successful attempt returns (serialized to JSON).
    type Output: Serialize;

    /// Task type, version, description, needs and suggested limits; its
    /// `params_schema` is replaced by the one generated from [`Task::Params`].
    fn info() -> Info;

    /// Checks beyond what the schema says (a URL that parses, a consistent pair of
    /// fields); the message is shown to the operator. Runs at plan time and before each
    /// attempt.
    fn validate(_params: &Self::Params) -> Result<(), String> {
        Ok(())
    }

    /// One attempt. It must be idempotent per task ID: a retry, a crash or a resume can
    /// run it again after its effect happened (`context` has the task ID and attempt).
    fn run(context: Context, params: Self::Params) -> Result<Self::Output, TaskError>;
}

/// The JSON Schema of `P`, as JSON text.
pub fn params_schema<P: schemars::JsonSchema>() -> String {
    serde_json::to_string(&schemars::schema_for!(P)).expect("a schema serializes")
}

/// Parses params — a JSON object — into `P`, refusing fields `P` does not have (named by
/// path).
pub fn parse_params<P: DeserializeOwned>(text: &str) -> Result<P, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("params are not JSON: {e}"))?;
    if !value.is_object() {
        return Err("params must be a JSON object".into());
    }
    let mut unknown = Vec::new();
    let params: P = serde_ignored::deserialize(value, |path| unknown.push(path.to_string()))
        .map_err(|e| e.to_string())?;
    match unknown.first() {
        Some(path) => Err(format!("unknown field `{path}`")),
        None => Ok(params),
    }
}

#[doc(hidden)]
pub fn describe<T: Task>() -> Info {
    Info {
        params_schema: params_schema::<T::Params>(),
        ..T::info()
    }
}

#[doc(hidden)]
pub fn validate<T: Task>(params: &str) -> Result<(), String> {
    T::validate(&parse_params::<T::Params>(params)?)
}

#[doc(hidden)]
pub fn run<T: Task>(context: Context, params: &str) -> Result<String, TaskError> {
    let params = parse_params::<T::Params>(params).map_err(TaskError::InvalidParams)?;
    T::validate(&params).map_err(TaskError::InvalidParams)?;
    let output = T::run(context, params)?;
    serde_json::to_string(&output)
        .map_err(|e| TaskError::Permanent(format!("the output cannot be written as JSON: {e}")))
}

/// Exports a [`Task`] as the plugin's component exports.
#[macro_export]
macro_rules! export_task {
    ($task:ident) => {
        impl $crate::Guest for $task {
            fn describe() -> $crate::Info {
                $crate::typed::describe::<$task>()
            }

            fn validate(
                params: ::std::string::String,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::typed::validate::<$task>(&params)
            }

            fn run(
                context: $crate::Context,
                params: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::TaskError> {
                $crate::typed::run::<$task>(context, &params)
            }
        }

        $crate::export_plugin!($task);
    };
}

/// Logs a formatted line to the host (and the attempt's log tail):
/// `log!(Info, "restored {} files", n)`.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        $crate::log($crate::Level::$level, &::std::format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize, schemars::JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Params {
        /// Where.
        base_url: String,
        #[serde(default)]
        #[schemars(range(min = 1))]
        target_height: Option<u64>,
    }

    #[derive(Debug, PartialEq, serde::Deserialize, schemars::JsonSchema)]
    struct Lenient {
        name: String,
    }

    #[test]
    fn params_parse_and_unknown_fields_are_refused_even_if_the_type_allows_them() {
        let ok: Params = parse_params(r#"{"baseUrl": "http://x", "targetHeight": 3}"#).unwrap();
        assert_eq!(ok.target_height, Some(3));
        let unknown = parse_params::<Params>(r#"{"baseUrl": "x", "extra": 1}"#).unwrap_err();
        assert!(unknown.contains("extra"), "{unknown}");
        let lenient = parse_params::<Lenient>(r#"{"name": "a", "nested": {"x": 1}}"#);
        assert_eq!(lenient.unwrap_err(), "unknown field `nested`");
        assert!(
            parse_params::<Params>(r#"{"targetHeight": 3}"#)
                .unwrap_err()
                .contains("baseUrl")
        );
        assert!(parse_params::<Params>(r#"{"baseUrl": "x"} trailing"#).is_err());
        assert_eq!(
            parse_params::<Lenient>(r#"["a"]"#).unwrap_err(),
            "params must be a JSON object"
        );
    }

    #[test]
    fn the_schema_comes_from_the_type() {
        let schema: serde_json::Value = serde_json::from_str(&params_schema::<Params>()).unwrap();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], serde_json::json!(["baseUrl"]));
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["baseUrl"]["description"], "Where.");
        assert_eq!(schema["properties"]["targetHeight"]["minimum"], 1);
    }
}
