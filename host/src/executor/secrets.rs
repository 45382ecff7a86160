//! Secrets in params: `{ "$env": "NAME" }` anywhere in a task's params is replaced by the
//! value of environment variable NAME when an attempt starts (and for `validate`). The
//! value is never stored or printed: the plan keeps the reference.

use serde_json::{Map, Value};

/// The key of a secret reference.
pub const ENV_REF_KEY: &str = "$env";

/// A referenced environment variable that is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable `{0}` (a `$env` secret in the params) is not set")]
pub struct MissingSecret(pub String);

fn env_ref(object: &Map<String, Value>) -> Option<&str> {
    match (object.len(), object.get(ENV_REF_KEY)) {
        (1, Some(Value::String(name))) => Some(name),
        _ => None,
    }
}

/// The names of every environment variable `params` refers to.
pub fn referenced(params: &Value) -> Vec<String> {
    let mut names = Vec::new();
    collect(params, &mut names);
    names
}

fn collect(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(object) => match env_ref(object) {
            Some(name) => names.push(name.to_owned()),
            None => object.values().for_each(|v| collect(v, names)),
        },
        Value::Array(items) => items.iter().for_each(|v| collect(v, names)),
        _ => {}
    }
}

/// `params` with every reference replaced by `lookup(name)`.
pub fn resolve(
    params: &Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, MissingSecret> {
    Ok(match params {
        Value::Object(object) => match env_ref(object) {
            Some(name) => {
                Value::String(lookup(name).ok_or_else(|| MissingSecret(name.to_owned()))?)
            }
            None => Value::Object(
                object
                    .iter()
                    .map(|(k, v)| resolve(v, lookup).map(|v| (k.clone(), v)))
                    .collect::<Result<_, _>>()?,
            ),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| resolve(v, lookup))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// Params with their secrets resolved, and the secret values (for masking).
#[derive(Clone, PartialEq)]
pub struct Resolved {
    /// The params as the plugin gets them.
    pub params: Value,
    /// The value of every reference.
    pub secrets: Vec<String>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.debug_struct("Resolved")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// [`resolve`] from the process environment.
pub fn resolve_from_env(params: &Value) -> Result<Resolved, MissingSecret> {
    let lookup = |name: &str| std::env::var(name).ok();
    Ok(Resolved {
        params: resolve(params, &lookup)?,
        secrets: referenced(params)
            .iter()
            .filter_map(|name| lookup(name))
            .collect(),
    })
}

/// The referenced variables whose values are so short that masking them masks unrelated
/// text too (a `1` masks every digit one): worth a warning, never a reason to leak.
pub fn short_secrets(params: &Value) -> Vec<String> {
    referenced(params)
        .into_iter()
        .filter(|name| {
            std::env::var(name).is_ok_and(|v| {
                !v.is_empty() && v.chars().count() < crate::plan::redact::MIN_FRAGMENT_LEN
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_are_found_and_resolved_anywhere() {
        let params = json!({
            "token": {"$env": "TOKEN"},
            "nested": [{"x": {"$env": "OTHER"}}, 3],
            "notARef": {"$env": "A", "extra": 1},
            "plain": "text",
        });
        assert_eq!(referenced(&params), vec!["TOKEN", "OTHER"]);
        let lookup = |name: &str| Some(format!("<{name}>"));
        let resolved = resolve(&params, &lookup).unwrap();
        assert_eq!(
            resolved,
            json!({
                "token": "<TOKEN>",
                "nested": [{"x": "<OTHER>"}, 3],
                "notARef": {"$env": "A", "extra": 1},
                "plain": "text",
            })
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        let none = |_: &str| None;
        assert_eq!(
            resolve(&json!({"k": {"$env": "NOPE"}}), &none),
            Err(MissingSecret("NOPE".into()))
        );
        assert_eq!(resolve(&json!({"k": 1}), &none), Ok(json!({"k": 1})));
    }
}
