//! Scrubbing secret values out of text the host stores, prints or logs.
//!
//! The host resolves every `{"$env": NAME}` in a plan's params, so it knows each secret
//! value a plugin was given. Whatever comes back from the plugin — its output, error
//! messages, log lines, stderr, progress notes — has every verbatim occurrence of those
//! values replaced by [`MASK`] before it is stored, printed or logged. (A plugin that
//! encodes a secret, say in base64, is not caught: that is the plugin's doing.)

use std::borrow::Cow;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

/// What a secret value is replaced with.
pub const MASK: &str = "***";

/// Shortest line of a multi-line secret masked on its own: shorter fragments (`=`, a
/// blank-ish line) would mask unrelated text everywhere.
pub const MIN_FRAGMENT_LEN: usize = 4;

/// The secret values of a plan, and the scrubbing of text that might hold them.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Every form a secret may take in text, longest first.
    patterns: Arc<[String]>,
    /// Finds the leftmost-longest of them in one pass.
    matcher: Option<Arc<AhoCorasick>>,
}

impl PartialEq for Redactor {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        write!(f, "Redactor({} patterns)", self.patterns.len())
    }
}

impl Redactor {
    /// A redactor of `values`. Each is masked as it is, as it appears inside a JSON string
    /// and inside a Rust `{:?}` rendering (quotes and backslashes escaped); a value
    /// spanning several lines is also masked line by line (lines of at least
    /// [`MIN_FRAGMENT_LEN`] characters), since line-oriented outputs (stderr, logs) may
    /// show it one line at a time.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        for value in values {
            if value.is_empty() {
                continue;
            }
            if value.contains('\n') {
                patterns.extend(
                    value
                        .lines()
                        .map(str::trim)
                        .filter(|l| l.chars().count() >= MIN_FRAGMENT_LEN)
                        .map(str::to_owned),
                );
            }
            let json = serde_json::to_string(&value).expect("strings serialize");
            patterns.push(json[1..json.len() - 1].to_owned());
            let debug = format!("{value:?}");
            patterns.push(debug[1..debug.len() - 1].to_owned());
            patterns.push(value);
        }
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        let matcher = (!patterns.is_empty()).then(|| {
            Arc::new(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&patterns)
                    .expect("a few short literal patterns always build"),
            )
        });
        Self {
            patterns: patterns.into(),
            matcher,
        }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The longest form of a secret, in bytes (0 with none).
    pub fn longest(&self) -> usize {
        self.patterns.first().map_or(0, String::len)
    }

    /// `text` with every occurrence of a secret masked.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match &self.matcher {
            Some(matcher) if matcher.is_match(text) => {
                let mut masked = String::with_capacity(text.len());
                matcher.replace_all_with(text, &mut masked, |_, _, out| {
                    out.push_str(MASK);
                    true
                });
                Cow::Owned(masked)
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// [`Self::redact`] for an owned string.
    pub fn redact_string(&self, text: String) -> String {
        match self.redact(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(masked) => masked,
        }
    }

    /// Whether `text` is part of a secret: for pieces cut out of a secret (the host of a
    /// URL that is the secret), which masking the text they sit in would not catch.
    pub fn is_part_of_secret(&self, text: &str) -> bool {
        !text.is_empty() && self.patterns.iter().any(|p| p.contains(text))
    }

    /// [`Self::redact`] for text whose beginning was cut off (a bounded tail): the start
    /// may be the end of a secret, which is masked too (even a single character: this
    /// may mask a character too many, never one too few).
    pub fn redact_cut(&self, text: &str) -> String {
        let mut text = self.redact(text).into_owned();
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

    /// [`Self::redact`] for text whose end was cut off (a line cut short): the end may be
    /// the start of a secret, which is masked too.
    pub fn redact_cut_end(&self, text: &str) -> String {
        let mut text = self.redact(text).into_owned();
        let cut = self
            .patterns
            .iter()
            .flat_map(|p| p.char_indices().skip(1).map(move |(i, _)| &p[..i]))
            .filter(|start| text.ends_with(start))
            .map(str::len)
            .max();
        if let Some(len) = cut {
            let at = text.len() - len;
            text.replace_range(at.., MASK);
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
        let key = "-----BEGIN KEY-----\nAAAAsecretline1\n=\nBBBBsecretline2\n-----END KEY-----";
        let r = redactor(&[key]);
        assert_eq!(r.redact(&format!("key: {key}!")), "key: ***!");
        assert_eq!(r.redact("stderr: BBBBsecretline2"), "stderr: ***");
        assert_eq!(
            r.redact("a = b"),
            "a = b",
            "short fragments are not masked alone"
        );
    }

    #[test]
    fn escaped_renderings_of_a_secret_are_masked() {
        let secret = r#"pa"ss\word"#;
        let r = redactor(&[secret]);
        let json = serde_json::to_string(&json!({ "token": secret })).unwrap();
        assert_eq!(r.redact(&json), r#"{"token":"***"}"#);
        assert_eq!(r.redact(&format!("{:?}", secret)), "\"***\"");
        assert_eq!(r.redact(secret), "***");
    }

    #[test]
    fn pieces_of_a_secret_are_known() {
        let r = redactor(&["http://user:hunter2@db.internal/x"]);
        assert!(r.is_part_of_secret("db.internal"));
        assert!(!r.is_part_of_secret("example.com"));
        assert!(!r.is_part_of_secret(""));
        assert_eq!(r.longest(), "http://user:hunter2@db.internal/x".len());
    }

    #[test]
    fn the_cut_off_end_or_start_of_a_secret_is_masked() {
        let r = redactor(&["topsecret"]);
        assert_eq!(r.redact_cut("secret and more"), "*** and more");
        assert_eq!(r.redact_cut("t and topsecret"), "*** and ***");
        assert_eq!(r.redact_cut("plain text"), "plain text");
        assert_eq!(r.redact_cut_end("more and topsec"), "more and ***");
        assert_eq!(r.redact_cut_end("topsecret and t"), "*** and ***");
        assert_eq!(r.redact_cut_end("plain words"), "plain words");
        // Even one character that may begin a secret is masked: one too many, never too few.
        assert_eq!(r.redact_cut_end("a cut at"), "a cut a***");
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
