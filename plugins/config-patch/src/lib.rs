//! `config-patch`: merges values into TOML files under `/home/config/` (docs/DESIGN.md §9).
//!
//! Params: `{"files": {"config.toml": {...}, "app.toml": {...}}}`. Each file is merged
//! recursively, keeping comments and order; it is rewritten (atomically) only when a
//! value changes, so a repeated attempt is a no-op.

pub mod merge;

use std::path::{Component, Path, PathBuf};

use planrt_plugin_sdk::{
    Context, DirMode, DirNeed, Guest, Info, Level, Needs, TaskError, export_plugin, log,
};
use serde_json::{Map, Value, json};

/// Where the node's config files are, inside the sandbox.
pub const CONFIG_DIR: &str = "/home/config";

const PARAMS_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["files"],
  "additionalProperties": false,
  "properties": {
    "files": {
      "type": "object",
      "description": "File name relative to /home/config/ -> values to merge into it",
      "additionalProperties": { "type": "object" }
    }
  }
}"#;

/// The files to patch, checked.
#[derive(Debug, PartialEq)]
pub struct Params {
    /// Relative path under [`CONFIG_DIR`] → patch.
    pub files: Vec<(PathBuf, Map<String, Value>)>,
}

/// Reads and checks params.
pub fn parse_params(params: &str) -> Result<Params, String> {
    let value: Value =
        serde_json::from_str(params).map_err(|e| format!("params are not JSON: {e}"))?;
    let object = value.as_object().ok_or("params must be an object")?;
    if let Some(unknown) = object.keys().find(|k| *k != "files") {
        return Err(format!("unknown param `{unknown}` (expected `files`)"));
    }
    let files = object
        .get("files")
        .and_then(Value::as_object)
        .ok_or("`files` must be an object of file name -> values")?;
    if files.is_empty() {
        return Err("`files` names no file".into());
    }
    let mut out = Vec::with_capacity(files.len());
    for (name, patch) in files {
        let path = PathBuf::from(name);
        let clean =
            !name.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
        if !clean {
            return Err(format!(
                "file `{name}` must be a relative path under {CONFIG_DIR}/ without `..`"
            ));
        }
        let patch = patch
            .as_object()
            .ok_or_else(|| format!("`files.{name}` must be a table of values"))?;
        out.push((path, patch.clone()));
    }
    Ok(Params { files: out })
}

struct ConfigPatch;

impl Guest for ConfigPatch {
    fn describe() -> Info {
        Info {
            task_type: "config-patch".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Merge values into TOML files under /home/config, keeping comments and order".into(),
            params_schema: PARAMS_SCHEMA.into(),
            needs: Needs {
                dirs: vec![DirNeed {
                    guest_path: CONFIG_DIR.into(),
                    mode: DirMode::Rw,
                }],
                network: false,
            },
            default_timeout_ms: Some(60_000),
            default_memory_limit: Some(128 << 20),
        }
    }

    fn validate(params: String) -> Result<(), String> {
        parse_params(&params).map(drop)
    }

    fn run(_context: Context, params: String) -> Result<String, TaskError> {
        let params = parse_params(&params).map_err(TaskError::InvalidParams)?;
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
            log(
                Level::Info,
                &format!("{}: {} value(s) changed", path.display(), merged.changed),
            );
            report.insert(
                name.display().to_string(),
                json!({ "changed": merged.changed }),
            );
        }
        Ok(json!({ "files": report }).to_string())
    }
}

export_plugin!(ConfigPatch);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked() {
        let ok = parse_params(r#"{"files": {"config.toml": {"p2p": {"x": 1}}}}"#).unwrap();
        assert_eq!(ok.files[0].0, PathBuf::from("config.toml"));
        for bad in [
            "[]",
            "{}",
            r#"{"files": {}}"#,
            r#"{"files": {"../etc/passwd": {}}}"#,
            r#"{"files": {"/abs.toml": {}}}"#,
            r#"{"files": {"config.toml": 3}}"#,
            r#"{"files": {"a": {}}, "extra": 1}"#,
            "not json",
        ] {
            assert!(parse_params(bad).is_err(), "{bad}");
        }
    }
}
