//! Writing CometBFT-style config keys the way the file already spells them:
//! `persistent_peers` in CometBFT, `persistent-peers` in Sei's fork; underscores when the
//! file gives no hint.

use toml_edit::{DocumentMut, Item, Table, Value};

/// Reads and parses the TOML file at `path`.
pub fn load(path: &str) -> Result<DocumentMut, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    text.parse().map_err(|e| format!("{path}: {e}"))
}

/// How a table spells multi-word keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    /// `persistent_peers`.
    Underscore,
    /// `persistent-peers`.
    Hyphen,
}

impl KeyStyle {
    /// The style of `table`'s keys (else of the whole document); underscore by default.
    pub fn of(doc: &DocumentMut, table: &str) -> Self {
        let count = |t: &Table| {
            t.iter().fold((0, 0), |(u, h), (k, _)| {
                (
                    u + usize::from(k.contains('_')),
                    h + usize::from(k.contains('-')),
                )
            })
        };
        let (mut underscores, mut hyphens) = doc
            .get(table)
            .and_then(Item::as_table)
            .map_or((0, 0), count);
        if underscores == hyphens {
            for (_, item) in doc.iter() {
                if let Some(t) = item.as_table() {
                    let (u, h) = count(t);
                    underscores += u;
                    hyphens += h;
                }
            }
        }
        if hyphens > underscores {
            KeyStyle::Hyphen
        } else {
            KeyStyle::Underscore
        }
    }

    /// `key` (written with underscores) in this style.
    pub fn spell(self, key: &str) -> String {
        match self {
            KeyStyle::Underscore => key.to_owned(),
            KeyStyle::Hyphen => key.replace('_', "-"),
        }
    }
}

/// Sets `[table] key = value` (key given with underscores), using an existing spelling of
/// the key if the table has one, else the file's style. Keeps comments around the value.
/// Returns whether the value changed.
pub fn set(doc: &mut DocumentMut, table: &str, key: &str, value: impl Into<Value>) -> bool {
    let style = KeyStyle::of(doc, table);
    if !doc.contains_table(table) {
        let mut new = Table::new();
        new.set_implicit(false);
        doc.insert(table, Item::Table(new));
    }
    let table = doc[table].as_table_mut().expect("a table");
    let existing = [key.to_owned(), key.replace('_', "-")]
        .into_iter()
        .find(|k| table.contains_key(k));
    let name = existing.unwrap_or_else(|| style.spell(key));
    let mut value = value.into();
    match table.get_mut(&name).and_then(Item::as_value_mut) {
        Some(old) => {
            let bare = |v: &Value| {
                let mut v = v.clone();
                v.decor_mut().clear();
                v.to_string()
            };
            let same = bare(old) == bare(&value);
            if !same {
                *value.decor_mut() = old.decor().clone();
                *old = value;
            }
            !same
        }
        None => {
            table.insert(&name, Item::Value(value));
            true
        }
    }
}

/// The string value of `[table] key` in either spelling.
pub fn get_str<'a>(doc: &'a DocumentMut, table: &str, key: &str) -> Option<&'a str> {
    let table = doc.get(table)?.as_table()?;
    [key.to_owned(), key.replace('_', "-")]
        .iter()
        .find_map(|k| table.get(k)?.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_file() {
        let mut cometbft: DocumentMut =
            "[p2p]\n# peers\npersistent_peers = \"\" # keep\nmax_num_inbound_peers = 40\n"
                .parse()
                .unwrap();
        assert!(set(&mut cometbft, "p2p", "persistent_peers", "a@b:26656"));
        assert_eq!(
            cometbft.to_string(),
            "[p2p]\n# peers\npersistent_peers = \"a@b:26656\" # keep\nmax_num_inbound_peers = 40\n"
        );
        assert!(
            !set(&mut cometbft, "p2p", "persistent_peers", "a@b:26656"),
            "same value: no change"
        );

        let mut sei: DocumentMut = "[p2p]\nmax-num-inbound-peers = 40\n".parse().unwrap();
        assert_eq!(KeyStyle::of(&sei, "p2p"), KeyStyle::Hyphen);
        set(&mut sei, "p2p", "persistent_peers", "x");
        assert!(
            sei.to_string().contains("persistent-peers = \"x\""),
            "{sei}"
        );

        let mut empty: DocumentMut = "".parse().unwrap();
        set(&mut empty, "statesync", "trust_height", 5);
        assert_eq!(empty.to_string(), "[statesync]\ntrust_height = 5\n");

        let mut other_tables: DocumentMut = "[rpc]\ncors-allowed-origins = []\n".parse().unwrap();
        set(&mut other_tables, "statesync", "trust_hash", "ab");
        assert!(
            other_tables.to_string().contains("trust-hash = \"ab\""),
            "{other_tables}"
        );
        assert_eq!(
            get_str(&other_tables, "statesync", "trust_hash"),
            Some("ab")
        );
    }
}
