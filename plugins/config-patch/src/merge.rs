//! Merging a JSON patch into a TOML document without losing its comments or key order.

use serde_json::{Map, Value};
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, TableLike};

/// Why a patch cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeError {
    /// The file is not valid TOML.
    Parse(String),
    /// The patch and the file disagree on what a key holds.
    TypeConflict {
        /// Dotted key path.
        key: String,
        /// What the file has.
        existing: &'static str,
        /// What the patch has.
        patch: &'static str,
    },
    /// A value TOML cannot hold.
    Unrepresentable {
        /// Dotted key path.
        key: String,
        /// Why.
        reason: &'static str,
    },
}

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MergeError::Parse(e) => write!(f, "not valid TOML: {e}"),
            MergeError::TypeConflict {
                key,
                existing,
                patch,
            } => {
                write!(
                    f,
                    "`{key}` is {existing} in the file but {patch} in the patch"
                )
            }
            MergeError::Unrepresentable { key, reason } => write!(f, "`{key}`: {reason}"),
        }
    }
}

/// The result of a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The new document text.
    pub text: String,
    /// How many leaf values were set to something different.
    pub changed: usize,
}

/// Merges `patch` into the TOML `text`: objects merge recursively, everything else
/// (arrays included) replaces; new tables become `[table]` headers; comments, key order
/// and unrelated keys are kept.
pub fn merge(text: &str, patch: &Map<String, Value>) -> Result<Merged, MergeError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| MergeError::Parse(e.to_string()))?;
    let mut changed = 0;
    merge_table(doc.as_table_mut(), patch, "", false, &mut changed)?;
    Ok(Merged {
        text: doc.to_string(),
        changed,
    })
}

fn kind_of_item(item: &Item) -> &'static str {
    match item {
        Item::None => "absent",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(value) => kind_of_value(value),
    }
}

fn kind_of_value(value: &toml_edit::Value) -> &'static str {
    match value {
        toml_edit::Value::String(_) => "a string",
        toml_edit::Value::Integer(_) | toml_edit::Value::Float(_) => "a number",
        toml_edit::Value::Boolean(_) => "a boolean",
        toml_edit::Value::Datetime(_) => "a datetime",
        toml_edit::Value::Array(_) => "an array",
        toml_edit::Value::InlineTable(_) => "a table",
    }
}

fn kind_of_json(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn merge_table(
    table: &mut dyn TableLike,
    patch: &Map<String, Value>,
    prefix: &str,
    inline: bool,
    changed: &mut usize,
) -> Result<(), MergeError> {
    for (key, patch_value) in patch {
        let path = join(prefix, key);
        let existing = table.get_mut(key);
        match (existing, patch_value) {
            (Some(Item::Table(sub)), Value::Object(fields)) => {
                merge_table(sub, fields, &path, false, changed)?
            }
            (Some(Item::Value(toml_edit::Value::InlineTable(sub))), Value::Object(fields)) => {
                let before = *changed;
                merge_table(sub, fields, &path, true, changed)?;
                if *changed != before {
                    // Appended keys inherit odd spacing; inline tables hold no comments.
                    sub.fmt();
                }
            }
            (Some(item), patch_value) if !item.is_none() => {
                let (existing, patch) = (kind_of_item(item), kind_of_json(patch_value));
                if existing != patch {
                    return Err(MergeError::TypeConflict {
                        key: path,
                        existing,
                        patch,
                    });
                }
                let mut new_value = to_value(patch_value, &path)?;
                let old_value = item.as_value().expect("non-table kinds are values");
                if values_equal(old_value, &new_value) {
                    continue;
                }
                // Keep the comments and spacing around the value.
                *new_value.decor_mut() = old_value.decor().clone();
                *item = Item::Value(new_value);
                *changed += 1;
            }
            (_, Value::Object(fields)) => {
                // A new table: a `[header]` table under a header table, inline inside an
                // inline table (TOML cannot open a header inside an inline table).
                if inline {
                    let mut sub = InlineTable::new();
                    merge_table(&mut sub, fields, &path, true, changed)?;
                    table.insert(key, Item::Value(toml_edit::Value::InlineTable(sub)));
                } else {
                    let mut sub = Table::new();
                    // No empty `[a]` header when `a` only holds tables.
                    sub.set_implicit(true);
                    merge_table(&mut sub, fields, &path, false, changed)?;
                    table.insert(key, Item::Table(sub));
                }
            }
            (_, patch_value) => {
                table.insert(key, Item::Value(to_value(patch_value, &path)?));
                *changed += 1;
            }
        }
    }
    Ok(())
}

fn values_equal(a: &toml_edit::Value, b: &toml_edit::Value) -> bool {
    // Compare by content, ignoring formatting.
    let strip = |v: &toml_edit::Value| {
        let mut v = v.clone();
        v.decor_mut().clear();
        v.to_string()
    };
    strip(a) == strip(b)
}

fn to_value(value: &Value, path: &str) -> Result<toml_edit::Value, MergeError> {
    Ok(match value {
        Value::Null => {
            return Err(MergeError::Unrepresentable {
                key: path.to_owned(),
                reason: "null has no TOML form",
            });
        }
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) if n.is_f64() => f.into(),
            _ => {
                return Err(MergeError::Unrepresentable {
                    key: path.to_owned(),
                    reason: "integer out of TOML's 64-bit range",
                });
            }
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => {
            let mut array = Array::new();
            for (i, item) in items.iter().enumerate() {
                array.push(to_value(item, &format!("{path}[{i}]"))?);
            }
            toml_edit::Value::Array(array)
        }
        Value::Object(fields) => {
            let mut inline = InlineTable::new();
            for (k, v) in fields {
                inline.insert(k, to_value(v, &join(path, k))?);
            }
            toml_edit::Value::InlineTable(inline)
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const CONFIG: &str = r#"# CometBFT config
proxy_app = "tcp://127.0.0.1:26658"  # the app

#######################################################
###           P2P Configuration Options             ###
#######################################################
[p2p]
# Address to listen for incoming connections
laddr = "tcp://0.0.0.0:26656"
max_num_inbound_peers = 40 # inbound
persistent_peers = ""

[rpc]
laddr = "tcp://127.0.0.1:26657"
cors_allowed_origins = ["*"]
limits = { max_body = 1000, max_header = 10 }
"#;

    fn patch(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn keeps_comments_order_and_unrelated_keys() {
        let merged = merge(
            CONFIG,
            &patch(json!({"p2p": {"max_num_inbound_peers": 80}})),
        )
        .unwrap();
        assert_eq!(merged.changed, 1);
        assert_eq!(
            merged.text,
            CONFIG.replace("max_num_inbound_peers = 40", "max_num_inbound_peers = 80")
        );
    }

    #[test]
    fn nested_values_merge_and_arrays_replace() {
        let merged = merge(
            CONFIG,
            &patch(json!({
                "rpc": {"cors_allowed_origins": ["a", "b"], "limits": {"max_body": 5}},
                "proxy_app": "tcp://127.0.0.1:9",
            })),
        )
        .unwrap();
        assert_eq!(merged.changed, 3);
        assert!(
            merged.text.contains(r#"cors_allowed_origins = ["a", "b"]"#),
            "{}",
            merged.text
        );
        assert!(
            merged
                .text
                .contains("limits = { max_body = 5, max_header = 10 }"),
            "{}",
            merged.text
        );
        assert!(
            merged
                .text
                .contains(r#"proxy_app = "tcp://127.0.0.1:9"  # the app"#),
            "{}",
            merged.text
        );
        assert!(
            merged
                .text
                .contains("# Address to listen for incoming connections")
        );
    }

    #[test]
    fn new_tables_are_written_as_headers() {
        let merged = merge(
            CONFIG,
            &patch(
                json!({"statesync": {"enable": true, "trust_height": 100}, "a": {"b": {"c": 1}}}),
            ),
        )
        .unwrap();
        assert!(
            merged
                .text
                .ends_with("[statesync]\nenable = true\ntrust_height = 100\n\n[a.b]\nc = 1\n"),
            "{}",
            merged.text
        );
        assert!(
            !merged.text.contains("[a]\n"),
            "no empty header: {}",
            merged.text
        );
        assert_eq!(merged.changed, 3);
        let reparsed: DocumentMut = merged.text.parse().unwrap();
        assert_eq!(
            reparsed["statesync"]["trust_height"].as_integer(),
            Some(100)
        );
    }

    #[test]
    fn new_keys_inside_inline_tables_stay_inline() {
        let merged = merge(
            CONFIG,
            &patch(json!({"rpc": {"limits": {"extra": {"x": 1}}}})),
        )
        .unwrap();
        assert!(
            merged
                .text
                .contains("limits = { max_body = 1000, max_header = 10, extra = { x = 1 } }"),
            "{}",
            merged.text
        );
    }

    #[test]
    fn same_values_change_nothing() {
        let merged = merge(
            CONFIG,
            &patch(json!({"p2p": {"max_num_inbound_peers": 40, "persistent_peers": ""}})),
        )
        .unwrap();
        assert_eq!(merged.changed, 0);
        assert_eq!(merged.text, CONFIG);
    }

    #[test]
    fn type_conflicts_are_refused() {
        let conflict = |p: Value| merge(CONFIG, &patch(p)).unwrap_err();
        assert_eq!(
            conflict(json!({"p2p": 3})),
            MergeError::TypeConflict {
                key: "p2p".into(),
                existing: "a table",
                patch: "a number"
            }
        );
        assert_eq!(
            conflict(json!({"p2p": {"laddr": {"x": 1}}})),
            MergeError::TypeConflict {
                key: "p2p.laddr".into(),
                existing: "a string",
                patch: "a table"
            }
        );
        assert_eq!(
            conflict(json!({"p2p": {"max_num_inbound_peers": "many"}})),
            MergeError::TypeConflict {
                key: "p2p.max_num_inbound_peers".into(),
                existing: "a number",
                patch: "a string"
            }
        );
        assert!(matches!(
            conflict(json!({"x": null})),
            MergeError::Unrepresentable { .. }
        ));
        // An array of tables (`[[x]]`) is neither a table nor a plain array to merge into.
        let tables = "[[servers]]\nname = \"a\"\n";
        for patch_value in [json!({"name": "b"}), json!([{"name": "b"}])] {
            assert!(
                matches!(
                    merge(tables, &patch(json!({"servers": patch_value}))),
                    Err(MergeError::TypeConflict {
                        existing: "an array of tables",
                        ..
                    })
                ),
                "{patch_value}"
            );
        }
        assert!(matches!(
            merge("a = [", &Map::new()),
            Err(MergeError::Parse(_))
        ));
    }
}
