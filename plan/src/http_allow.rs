//! The plan's HTTP allowlist (`[grants] http`, docs/DESIGN.md §6): which hosts a plugin that
//! declares `network` may reach.
//!
//! Entries: `host` (any port), `host:port`, `*.domain` (subdomains of `domain` only, not
//! `domain` itself), IP literals (`10.0.0.1`, `[::1]:8080`) matched exactly. Matching is
//! case-insensitive and ignores userinfo in the request's authority.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpAllow {
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// This exact name (lower case).
    Name(String),
    /// Any name ending in `.{suffix}` (lower case).
    Subdomains(String),
    /// This address.
    Ip(IpAddr),
}

/// An allowlist entry that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{entry}` is not an HTTP grant ({reason}); write `host`, `host:port`, `*.domain` or an IP"
)]
pub struct HttpAllowError {
    entry: String,
    reason: &'static str,
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Splits `host[:port]` / `[v6][:port]`; `None` port when absent.
fn split_host_port(text: &str) -> Result<(&str, Option<u16>), &'static str> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed `[`")?;
        return match after {
            "" => Ok((host, None)),
            _ => {
                let port = after.strip_prefix(':').ok_or("junk after `]`")?;
                Ok((host, Some(port.parse().map_err(|_| "bad port")?)))
            }
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            Ok((host, Some(port.parse().map_err(|_| "bad port")?)))
        }
        Some(_) => Ok((text, None)), // a bare IPv6 address
        None => Ok((text, None)),
    }
}

impl HttpAllow {
    /// Reads one entry.
    pub fn parse(entry: &str) -> Result<Self, HttpAllowError> {
        let error = |reason| HttpAllowError {
            entry: entry.to_owned(),
            reason,
        };
        if entry.contains("://") || entry.contains('/') || entry.contains('@') {
            return Err(error("a host, not a URL"));
        }
        let (host, port) = split_host_port(entry.trim()).map_err(error)?;
        if port == Some(0) {
            return Err(error("port 0"));
        }
        let host = host.to_ascii_lowercase();
        let pattern = if let Ok(ip) = host.parse::<IpAddr>() {
            HostPattern::Ip(ip)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if !is_dns_name(suffix) {
                return Err(error("bad domain after `*.`"));
            }
            HostPattern::Subdomains(suffix.to_owned())
        } else if is_dns_name(&host) {
            HostPattern::Name(host)
        } else {
            return Err(error("not a host name"));
        };
        Ok(Self {
            host: pattern,
            port,
        })
    }

    /// Whether a request to `host` on `port` is allowed by this entry.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        match &self.host {
            HostPattern::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
            HostPattern::Name(name) => host == name,
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host[..host.len() - suffix.len()].ends_with('.')
            }
        }
    }
}

impl HttpAllow {
    /// Whether every request this entry allows is also allowed by `wider` (a plan sent
    /// over HTTP may allow only what the server's `--grants` allow).
    pub fn covered_by(&self, wider: &HttpAllow) -> bool {
        let port = wider.port.is_none() || wider.port == self.port;
        let host = match (&self.host, &wider.host) {
            (HostPattern::Name(name), HostPattern::Name(other)) => name == other,
            (HostPattern::Ip(ip), HostPattern::Ip(other)) => ip == other,
            (HostPattern::Name(name), HostPattern::Subdomains(suffix)) => {
                name.ends_with(&format!(".{suffix}"))
            }
            (HostPattern::Subdomains(inner), HostPattern::Subdomains(suffix)) => {
                inner == suffix || inner.ends_with(&format!(".{suffix}"))
            }
            _ => false,
        };
        port && host
    }
}

impl fmt::Display for HttpAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (HostPattern::Ip(IpAddr::V6(ip)), Some(port)) => write!(f, "[{ip}]:{port}"),
            (HostPattern::Ip(ip), Some(port)) => write!(f, "{ip}:{port}"),
            (HostPattern::Ip(ip), None) => write!(f, "{ip}"),
            (HostPattern::Name(name), Some(port)) => write!(f, "{name}:{port}"),
            (HostPattern::Name(name), None) => write!(f, "{name}"),
            (HostPattern::Subdomains(suffix), Some(port)) => write!(f, "*.{suffix}:{port}"),
            (HostPattern::Subdomains(suffix), None) => write!(f, "*.{suffix}"),
        }
    }
}

impl TryFrom<String> for HttpAllow {
    type Error = HttpAllowError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<HttpAllow> for String {
    fn from(value: HttpAllow) -> Self {
        value.to_string()
    }
}

/// The host and port a request's authority names (`user@host:port`), with the scheme's
/// default port when none is written.
pub fn authority_host_port(authority: &str, https: bool) -> Option<(String, u16)> {
    let without_userinfo = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    let (host, port) = split_host_port(without_userinfo).ok()?;
    if host.is_empty() {
        return None;
    }
    Some((
        host.to_owned(),
        port.unwrap_or(if https { 443 } else { 80 }),
    ))
}

/// Whether any entry of `allowlist` allows `authority`.
pub fn allowed(allowlist: &[HttpAllow], authority: &str, https: bool) -> bool {
    authority_host_port(authority, https)
        .is_some_and(|(host, port)| allowlist.iter().any(|a| a.allows(&host, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<HttpAllow> {
        entries
            .iter()
            .map(|e| HttpAllow::parse(e).unwrap())
            .collect()
    }

    #[test]
    fn bare_host_allows_any_port_and_only_that_host() {
        let l = list(&["example.com"]);
        assert!(allowed(&l, "example.com", true));
        assert!(allowed(&l, "example.com:8443", true));
        assert!(allowed(&l, "EXAMPLE.com", false));
        assert!(!allowed(&l, "evil-example.com", true));
        assert!(!allowed(&l, "example.com.evil.net", true));
        assert!(!allowed(&l, "sub.example.com", true));
        assert!(!allowed(&l, "example.org", true));
    }

    #[test]
    fn host_port_allows_only_that_port_with_scheme_defaults() {
        let l = list(&["127.0.0.1:8080", "api.example.com:443"]);
        assert!(allowed(&l, "127.0.0.1:8080", false));
        assert!(!allowed(&l, "127.0.0.1:8081", false));
        assert!(!allowed(&l, "127.0.0.1", false), "port 80 by default");
        assert!(
            allowed(&l, "api.example.com", true),
            "https defaults to 443"
        );
        assert!(
            !allowed(&l, "api.example.com", false),
            "http defaults to 80"
        );
    }

    #[test]
    fn wildcard_allows_subdomains_only() {
        let l = list(&["*.Example.com"]);
        assert!(allowed(&l, "a.example.com", true));
        assert!(allowed(&l, "a.b.example.com:9000", true));
        assert!(!allowed(&l, "example.com", true), "not the bare domain");
        assert!(!allowed(&l, "evil-example.com", true));
        assert!(!allowed(&l, "aexample.com", true));
        assert!(!allowed(&l, "example.com.evil.net", true));
    }

    #[test]
    fn userinfo_is_ignored_and_cannot_smuggle_a_host() {
        let l = list(&["example.com"]);
        assert!(allowed(&l, "user:pw@example.com", true));
        assert!(!allowed(&l, "example.com@evil.net", true));
        assert!(!allowed(&l, "example.com:pw@evil.net:443", true));
    }

    #[test]
    fn ip_literals_match_exactly() {
        let l = list(&["10.0.0.1", "[::1]:8080"]);
        assert!(allowed(&l, "10.0.0.1:26657", false));
        assert!(!allowed(&l, "10.0.0.10", false));
        assert!(!allowed(&l, "10.0.0.1.nip.io", false));
        assert!(allowed(&l, "[::1]:8080", false));
        assert!(!allowed(&l, "[::1]:8081", false));
        assert!(!allowed(&l, "[::2]:8080", false));
    }

    #[test]
    fn bad_entries_are_refused_and_good_ones_round_trip() {
        for bad in [
            "http://example.com",
            "example.com/path",
            "user@example.com",
            "exa mple.com",
            "*.",
            "host:0",
            "host:99999",
            "[::1",
            "",
        ] {
            assert!(HttpAllow::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "example.com",
            "example.com:8080",
            "*.example.com",
            "10.0.0.1",
            "[::1]:8080",
            "localhost",
        ] {
            assert_eq!(HttpAllow::parse(good).unwrap().to_string(), good);
        }
    }

    #[test]
    fn an_entry_is_covered_only_by_one_allowing_at_least_as_much() {
        let entry = |text: &str| HttpAllow::parse(text).unwrap();
        let covered = |inner: &str, wider: &str| entry(inner).covered_by(&entry(wider));
        assert!(covered("a.example.com", "a.example.com"));
        assert!(covered("a.example.com:443", "a.example.com"));
        assert!(
            !covered("a.example.com", "a.example.com:443"),
            "any port is wider"
        );
        assert!(covered("a.example.com:443", "*.example.com"));
        assert!(covered("*.a.example.com", "*.example.com"));
        assert!(covered("*.example.com", "*.example.com"));
        assert!(
            !covered("example.com", "*.example.com"),
            "not the domain itself"
        );
        assert!(!covered("*.example.com", "a.example.com"));
        assert!(!covered("evilexample.com", "*.example.com"));
        assert!(covered("10.0.0.1:26657", "10.0.0.1"));
        assert!(!covered("10.0.0.2", "10.0.0.1"));
        assert!(!covered("[::1]:80", "localhost"));
    }
}
