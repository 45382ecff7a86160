//! A plugin's `params-schema` (JSON Schema), compiled once at load and checked by the host
//! against every task's params before the plugin's own `validate`: every language gets
//! the same validation, with errors that name the JSON path and the rule.

use serde_json::Value;

/// One way params break the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// Where in the params (a JSON pointer; empty for the params themselves).
    pub path: String,
    /// The schema keyword that refused it (`required`, `type`, `enum`, …).
    pub rule: String,
    /// What is wrong, for people.
    pub message: String,
}

impl std::fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "at `{path}`: {} (rule `{}`)", self.message, self.rule)
    }
}

/// At most this many violations are reported for one task.
const MAX_VIOLATIONS: usize = 5;

/// A compiled params schema.
pub struct ParamsSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ParamsSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParamsSchema")
    }
}

impl ParamsSchema {
    /// Compiles a schema given as JSON text. Nothing is fetched: a `$ref` to another
    /// document is an error, as is a schema its meta-schema refuses.
    pub fn compile(text: &str) -> Result<Self, String> {
        let schema: Value =
            serde_json::from_str(text).map_err(|e| format!("params-schema is not JSON: {e}"))?;
        let validator = jsonschema::validator_for(&schema)
            .map_err(|e| format!("params-schema is not a valid JSON Schema: {e}"))?;
        Ok(Self { validator })
    }

    /// Checks params; the first violations (in document order) when they break it.
    pub fn check(&self, params: &Value) -> Result<(), Vec<SchemaViolation>> {
        let violations: Vec<SchemaViolation> = self
            .validator
            .iter_errors(params)
            .take(MAX_VIOLATIONS)
            .map(|error| SchemaViolation {
                path: error.instance_path().to_string(),
                rule: error.kind().keyword().to_owned(),
                message: error.to_string(),
            })
            .collect();
        match violations.is_empty() {
            true => Ok(()),
            false => Err(violations),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SOURCES: &str = r#"{"type":"object","required":["sources"],"additionalProperties":false,
        "properties":{"sources":{"type":"array","items":{"type":"object","required":["type"],
        "properties":{"type":{"enum":["static","endpoints"]}}}}}}"#;

    #[test]
    fn violations_name_the_path_and_the_rule() {
        let schema = ParamsSchema::compile(SOURCES).unwrap();
        assert_eq!(
            schema.check(&json!({"sources": [{"type": "static"}]})),
            Ok(())
        );
        let missing = schema.check(&json!({})).unwrap_err();
        assert_eq!(
            (missing[0].path.as_str(), missing[0].rule.as_str()),
            ("", "required")
        );
        assert!(missing[0].message.contains("sources"), "{:?}", missing[0]);
        let wrong = schema
            .check(&json!({"sources": [{"type": "dns"}], "extra": 1}))
            .unwrap_err();
        let found: Vec<(&str, &str)> = wrong
            .iter()
            .map(|v| (v.path.as_str(), v.rule.as_str()))
            .collect();
        assert!(found.contains(&("/sources/0/type", "enum")), "{wrong:?}");
        assert!(found.contains(&("", "additionalProperties")), "{wrong:?}");
        assert!(wrong[0].to_string().starts_with("at `/"), "{}", wrong[0]);
    }

    #[test]
    fn a_schema_that_is_not_json_or_not_a_schema_is_refused() {
        assert!(ParamsSchema::compile("{").unwrap_err().contains("not JSON"));
        let bad = ParamsSchema::compile(r#"{"type": 12}"#).unwrap_err();
        assert!(bad.contains("not a valid JSON Schema"), "{bad}");
        let remote = ParamsSchema::compile(r#"{"$ref": "https://example.com/s.json"}"#);
        assert!(remote.is_err(), "nothing is fetched");
    }
}
