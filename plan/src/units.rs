//! Human-readable durations ("150ms", "1h30m") and byte sizes ("256MiB", "1GB").

use std::time::Duration;

/// A duration or size that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a humantime duration.
    #[error("`{text}` is not a duration ({reason}); write e.g. \"150ms\", \"30s\", \"1h30m\"")]
    Duration {
        /// The text as written.
        text: String,
        /// humantime's reason.
        reason: String,
    },
    /// Not a byte size.
    #[error("`{0}` is not a size; write e.g. \"512MiB\", \"1GiB\" (binary) or \"500MB\" (decimal)")]
    Size(String),
    /// A size that does not fit in 64 bits.
    #[error("`{0}` is too large")]
    SizeOverflow(String),
}

/// Reads a humantime duration such as `"150ms"` or `"1h30m"`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    humantime::parse_duration(text.trim()).map_err(|e| UnitError::Duration {
        text: text.to_owned(),
        reason: e.to_string(),
    })
}

/// Writes a duration the way [`parse_duration`] reads it back.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration)
        .to_string()
        .replace(' ', "")
}

/// Reads a byte size: a number followed by `B`, `KiB`/`MiB`/`GiB`/`TiB` (binary) or
/// `KB`/`MB`/`GB`/`TB` (decimal); a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(UnitError::Size(text.to_owned()));
    }
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(UnitError::Size(text.to_owned())),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| UnitError::SizeOverflow(text.to_owned()))?;
    value
        .checked_mul(multiplier)
        .ok_or_else(|| UnitError::SizeOverflow(text.to_owned()))
}

/// Writes a byte size with the largest binary unit that divides it exactly.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{name}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// Serde helpers for durations written as humantime text.
pub mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as humantime text.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(*value))
    }

    /// Deserializes from humantime text.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde helpers for optional durations written as humantime text.
pub mod serde_opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as humantime text.
    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => serializer.serialize_str(&super::format_duration(*d)),
            None => serializer.serialize_none(),
        }
    }

    /// Deserializes from humantime text.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| super::parse_duration(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Serde helpers for optional byte sizes written as text ("512MiB").
pub mod serde_opt_size {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as a size with a binary unit.
    pub fn serialize<S: Serializer>(value: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_str(&super::format_size(*bytes)),
            None => serializer.serialize_none(),
        }
    }

    /// Deserializes from size text.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| super::parse_size(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        assert_eq!(parse_duration("150ms").unwrap(), Duration::from_millis(150));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration(" 10m ").unwrap(), Duration::from_secs(600));
        for d in [
            Duration::from_millis(150),
            Duration::from_secs(5400),
            Duration::from_secs(1),
        ] {
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert!(matches!(
            parse_duration("ten minutes"),
            Err(UnitError::Duration { .. })
        ));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1 KiB").unwrap(), 1024);
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-1MiB").is_err());
        assert!(matches!(
            parse_size("99999999999TiB"),
            Err(UnitError::SizeOverflow(_))
        ));
        assert_eq!(format_size(512 << 20), "512MiB");
        assert_eq!(format_size(1500), "1500B");
    }
}
