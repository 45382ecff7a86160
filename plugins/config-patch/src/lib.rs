//! `config-patch`: merges values into TOML files under `/home/config/` (docs/DESIGN.md §9).
//!
//! Params: `{"files": {"config.toml": {...}, "app.toml": {...}}}`. Each file is merged
//! recursively, keeping comments and order; it is rewritten (atomically) only when a
//! value changes, so a repeated attempt is a no-op.

pub mod merge;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path};

use planrt_plugin_sdk::{
    Context, DirMode, DirNeed, Info, Needs, Task, TaskError, export_task, log,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value, json};

/// Where the node's config files are, inside the sandbox.
pub const CONFIG_DIR: &str = "/home/config";

/// Values to merge into one file: a table, merged recursively.
pub type Patch = Map<String, Value>;

/// The files to patch.
#[derive(Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// File name relative to /home/config/ -> values to merge into it
    #[serde(deserialize_with = "in_order")]
    #[schemars(with = "BTreeMap<String, Patch>")]
    pub files: Vec<(String, Patch)>,
}

/// An object of file name → patch, in the order written (the files are patched, and
/// reported, in that order).
fn in_order<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(String, Patch)>, D::Error> {
    struct InOrder;

    impl<'de> Visitor<'de> for InOrder {
        type Value = Vec<(String, Patch)>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of file name -> values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut files = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(entry) = map.next_entry()? {
                files.push(entry);
            }
            Ok(files)
        }
    }

    deserializer.deserialize_map(InOrder)
}

impl Params {
    /// What the schema cannot say: at least one file, each a relative path under
    /// [`CONFIG_DIR`].
    pub fn check(&self) -> Result<(), String> {
        if self.files.is_empty() {
            return Err("`files` names no file".into());
        }
        for (name, _) in &self.files {
            let clean = !name.is_empty()
                && Path::new(name)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)));
            if !clean {
                return Err(format!(
                    "file `{name}` must be a relative path under {CONFIG_DIR}/ without `..`"
                ));
            }
        }
        Ok(())
    }
}

/// Reads and checks params.
pub fn parse_params(params: &str) -> Result<Params, String> {
    let params: Params = planrt_plugin_sdk::parse_params(params)?;
    params.check()?;
    Ok(params)
}

/// The task type.
pub struct ConfigPatch;

impl Task for ConfigPatch {
    type Params = Params;
    type Output = Value;

    fn info() -> Info {
        Info {
            needs: Needs {
                dirs: vec![DirNeed {
                    guest_path: CONFIG_DIR.into(),
                    mode: DirMode::Rw,
                }],
                network: false,
            },
            default_timeout_ms: Some(60_000),
            default_memory_limit: Some(128 << 20),
            ..Info::new(
                "config-patch",
                env!("CARGO_PKG_VERSION"),
                "Merge values into TOML files under /home/config, keeping comments and order",
            )
        }
    }

    fn validate(params: &Params) -> Result<(), String> {
        params.check()
    }

    fn run(_context: Context, params: Params) -> Result<Value, TaskError> {
        let mut report = Map::new();
        for (name, patch) in &params.files {
            let path = Path::new(CONFIG_DIR).join(name);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                TaskError::Permanent(format!("cannot read {}: {e}", path.display()))
            })?;
            let merged = merge::merge(&text, patch).map_err(|e| match e {
                merge::MergeError::Parse(_) => {
                    TaskError::Permanent(format!("{}: {e}", path.display()))
                }
                _ => TaskError::InvalidParams(format!("{}: {e}", path.display())),
            })?;
            if merged.changed > 0 {
                planrt_node_common::durable::write_atomically(&path, merged.text.as_bytes())
                    .map_err(|e| {
                        TaskError::Transient(format!("cannot write {}: {e}", path.display()))
                    })?;
            }
            log!(
                Info,
                "{}: {} value(s) changed",
                path.display(),
                merged.changed
            );
            report.insert(name.clone(), json!({ "changed": merged.changed }));
        }
        Ok(json!({ "files": report }))
    }
}

export_task!(ConfigPatch);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked() {
        let ok = parse_params(r#"{"files": {"config.toml": {"p2p": {"x": 1}}}}"#).unwrap();
        assert_eq!(ok.files[0].0, "config.toml");
        for bad in [
            "[]",
            "{}",
            r#"{"files": {}}"#,
            r#"{"files": {"../etc/passwd": {}}}"#,
            r#"{"files": {"/abs.toml": {}}}"#,
            r#"{"files": {"config.toml": 3}}"#,
            r#"{"files": {"a": {}}, "extra": 1}"#,
            r#"{"files": []}"#,
            "not json",
        ] {
            assert!(parse_params(bad).is_err(), "{bad}");
        }
        assert!(
            parse_params(r#"{"files": {"a": {}}, "extra": 1}"#)
                .unwrap_err()
                .starts_with("unknown field `extra`")
        );
        assert!(
            parse_params(r#"{"files": {"../etc/passwd": {}}}"#)
                .unwrap_err()
                .contains("without `..`")
        );
    }

    #[test]
    fn files_are_patched_in_the_order_written() {
        let params =
            parse_params(r#"{"files": {"z.toml": {}, "a.toml": {}, "m/n.toml": {}}}"#).unwrap();
        let names: Vec<&str> = params.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["z.toml", "a.toml", "m/n.toml"]);
    }

    #[test]
    fn the_schema_says_what_the_old_one_said() {
        let schema: Value =
            serde_json::from_str(&planrt_plugin_sdk::params_schema::<Params>()).unwrap();
        assert_eq!(schema["required"], json!(["files"]));
        assert_eq!(schema["additionalProperties"], false);
        let files = &schema["properties"]["files"];
        assert_eq!(files["type"], "object");
        assert_eq!(files["additionalProperties"]["type"], "object");
        assert!(
            files["description"]
                .as_str()
                .unwrap()
                .contains("/home/config/")
        );
    }
}
