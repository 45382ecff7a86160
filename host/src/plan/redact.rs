//! Scrubbing secret values out of text the host stores, prints or logs.
//!
//! The host resolves every `{"$env": NAME}` in a plan's params, so it knows each secret
//! value a plugin was given. Whatever comes back from the plugin — its output, error
//! messages, log lines, stderr, progress notes — has every verbatim occurrence of those
//! values replaced by [`MASK`] before it is stored, printed or logged. (A plugin that
//! encodes a secret, say in base64, is not caught: that is the plugin's doing.)

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

/// What a secret value is replaced with.
pub const MASK: &str = "***";

/// The secret values of a plan, and the scrubbing of text that might hold them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Longest first, so a secret containing another is masked whole.
    patterns: Arc<[String]>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        write!(f, "Redactor({} patterns)", self.patterns.len())
    }
}

impl Redactor {
    /// A redactor of `values`. A value spanning several lines is also masked line by line,
    /// since line-oriented outputs (stderr, logs) may show it one line at a time.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        for value in values {
            if value.contains('\n') {
                patterns.extend(
                    value
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            }
            patterns.push(value);
        }
        patterns.retain(|p| !p.is_empty());
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        Self {
            patterns: patterns.into(),
        }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `text` with every occurrence of a secret masked.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut text = Cow::Borrowed(text);
        for pattern in self.patterns.iter() {
            if text.contains(pattern.as_str()) {
                text = Cow::Owned(text.replace(pattern.as_str(), MASK));
            }
        }
        text
    }

    /// [`Self::redact`] for an owned string.
    pub fn redact_string(&self, text: String) -> String {
        match self.redact(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(masked) => masked,
        }
    }

    /// [`Self::redact`] for text whose beginning was cut off (a bounded tail): the start
    /// may be the end of a secret, which is masked too.
    pub fn redact_cut(&self, text: &str) -> String {
        let mut text = self.redact(text).into_owned();
        // Longest partial first: mask the longest end of any secret that starts the text.
        let cut = self
            .patterns
            .iter()
            .flat_map(|p| p.char_indices().skip(1).map(move |(i, _)| &p[i..]))
            .filter(|end| text.starts_with(end))
            .map(str::len)
            .max();
        if let Some(len) = cut {
            text.replace_range(..len, MASK);
        }
        text
    }

    /// `value` with every string (and object key) redacted.
    pub fn redact_json(&self, value: Value) -> Value {
        if self.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.redact_string(s)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(object) => Value::Object(
                object
                    .into_iter()
                    .map(|(k, v)| (self.redact_string(k), self.redact_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn redactor(values: &[&str]) -> Redactor {
        Redactor::new(values.iter().map(|v| v.to_string()))
    }

    #[test]
    fn every_occurrence_is_masked_longest_first() {
        let r = redactor(&["hunter2", "hunter2-long", ""]);
        assert_eq!(
            r.redact("a hunter2 b hunter2-long c hunter2"),
            "a *** b *** c ***"
        );
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
        assert!(Redactor::default().is_empty());
        assert!(redactor(&[""]).is_empty(), "an empty value masks nothing");
    }

    #[test]
    fn a_multi_line_secret_is_masked_whole_and_line_by_line() {
        let key = "-----BEGIN KEY-----\nAAAAsecretline1\nBBBBsecretline2\n-----END KEY-----";
        let r = redactor(&[key]);
        assert_eq!(r.redact(&format!("key: {key}!")), "key: ***!");
        assert_eq!(r.redact("stderr: BBBBsecretline2"), "stderr: ***");
    }

    #[test]
    fn the_cut_off_end_of_a_secret_is_masked() {
        let r = redactor(&["topsecret"]);
        assert_eq!(r.redact_cut("secret and more"), "*** and more");
        assert_eq!(r.redact_cut("t and topsecret"), "*** and ***");
        assert_eq!(r.redact_cut("plain text"), "plain text");
    }

    #[test]
    fn json_strings_and_keys_are_masked_and_other_values_kept() {
        let r = redactor(&["s3cr\"et"]);
        let value = json!({"token": "s3cr\"et", "s3cr\"et": [1, "x s3cr\"et y", true, null]});
        assert_eq!(
            r.redact_json(value),
            json!({"token": "***", "***": [1, "x *** y", true, null]})
        );
    }

    #[test]
    fn debug_never_shows_the_values() {
        assert_eq!(
            format!("{:?}", redactor(&["hunter2"])),
            "Redactor(1 patterns)"
        );
    }
}
