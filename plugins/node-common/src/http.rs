//! Blocking HTTP GET over wasi:http: the body is a `std::io::Read`, so it can stream
//! through hashers, decoders and archive readers without being held in memory.

use std::io::Read;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::streams::InputStream;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The URL cannot be used.
    BadUrl(String),
    /// The request did not get a response (connection refused, DNS, denied, …).
    Unreachable(String),
    /// A response other than 2xx.
    Status(u16),
    /// The body could not be read or parsed.
    Body(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::BadUrl(e) => write!(f, "bad URL: {e}"),
            FetchError::Unreachable(e) => write!(f, "no response: {e}"),
            FetchError::Status(code) => write!(f, "HTTP status {code}"),
            FetchError::Body(e) => write!(f, "bad response body: {e}"),
        }
    }
}

/// A URL split into what wasi:http needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `true` for https.
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
    /// `/path?query`.
    pub path_and_query: String,
}

impl Url {
    /// Parses `http://host[:port][/path][?query]` or `https://…`.
    pub fn parse(url: &str) -> Result<Self, FetchError> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(FetchError::BadUrl(format!(
                "`{url}` is not an http:// or https:// URL"
            )));
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
            return Err(FetchError::BadUrl(format!("`{url}` has no plain host")));
        }
        let path_and_query = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Self {
            https,
            authority: authority.to_owned(),
            path_and_query,
        })
    }

    /// The host without the port.
    pub fn host(&self) -> &str {
        if let Some(rest) = self.authority.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        self.authority
            .rsplit_once(':')
            .map_or(&self.authority, |(host, _)| host)
    }
}

/// `base` and `path` joined with exactly one `/`.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// A response whose body is read as a stream.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// `content-length`, when the server sent one.
    pub content_length: Option<u64>,
    // Field order matters: the stream must be dropped before its body.
    stream: InputStream,
    _body: IncomingBody,
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Read::read(&mut self.stream, buf)
    }
}

fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => "denied by the host (not in the plan's HTTP grants)".into(),
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTimeout => "connection timed out".into(),
        ErrorCode::DnsError(_) => "DNS lookup failed".into(),
        other => format!("{other:?}"),
    }
}

/// Sends `GET url` and waits for the response head; non-2xx is [`FetchError::Status`].
pub fn get(url: &str) -> Result<Response, FetchError> {
    let response = request(url)?;
    if !(200..300).contains(&response.status) {
        return Err(FetchError::Status(response.status));
    }
    Ok(response)
}

/// Sends `GET url` and waits for the response head, whatever its status.
pub fn request(url: &str) -> Result<Response, FetchError> {
    let parsed = Url::parse(url)?;
    let request = OutgoingRequest::new(Fields::new());
    let bad = |what: &str| FetchError::BadUrl(format!("{url}: bad {what}"));
    request
        .set_method(&Method::Get)
        .map_err(|()| bad("method"))?;
    request
        .set_scheme(Some(if parsed.https {
            &Scheme::Https
        } else {
            &Scheme::Http
        }))
        .map_err(|()| bad("scheme"))?;
    request
        .set_authority(Some(&parsed.authority))
        .map_err(|()| bad("authority"))?;
    request
        .set_path_with_query(Some(&parsed.path_and_query))
        .map_err(|()| bad("path"))?;
    let outgoing_body = request.body().map_err(|()| bad("body"))?;
    let pending = outgoing_handler::handle(request, None)
        .map_err(|e| FetchError::Unreachable(describe(&e)))?;
    OutgoingBody::finish(outgoing_body, None).map_err(|e| FetchError::Unreachable(describe(&e)))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(FetchError::Unreachable(describe(&code))),
        Some(Err(())) | None => return Err(FetchError::Unreachable("no response".into())),
    };
    let status = response.status();
    let content_length = response
        .headers()
        .get("content-length")
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok());
    let body = response
        .consume()
        .map_err(|()| FetchError::Body("body already taken".into()))?;
    let stream = body
        .stream()
        .map_err(|()| FetchError::Body("body stream already taken".into()))?;
    Ok(Response {
        status,
        content_length,
        stream,
        _body: body,
    })
}

/// `GET url`, the body read whole (at most `limit` bytes) as text.
pub fn get_text(url: &str, limit: u64) -> Result<String, FetchError> {
    let mut text = String::new();
    get(url)?
        .take(limit)
        .read_to_string(&mut text)
        .map_err(|e| FetchError::Body(e.to_string()))?;
    Ok(text)
}

/// `GET url`, the body parsed as JSON (at most 4 MiB).
pub fn get_json(url: &str) -> Result<serde_json::Value, FetchError> {
    serde_json::from_str(&get_text(url, 4 << 20)?)
        .map_err(|e| FetchError::Body(format!("{url}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let u = Url::parse("http://127.0.0.1:8080/chain/1.tar.gz").unwrap();
        assert_eq!(
            (u.https, u.authority.as_str(), u.path_and_query.as_str()),
            (false, "127.0.0.1:8080", "/chain/1.tar.gz")
        );
        assert_eq!(u.host(), "127.0.0.1");
        let u = Url::parse("https://rpc.example.com?x=1").unwrap();
        assert_eq!(
            (u.https, u.path_and_query.as_str(), u.host()),
            (true, "/?x=1", "rpc.example.com")
        );
        assert_eq!(
            Url::parse("http://[::1]:26657/status").unwrap().host(),
            "::1"
        );
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("http://user@x/").is_err());
        assert!(Url::parse("http:///path").is_err());
        assert_eq!(join("http://a/b/", "/c"), "http://a/b/c");
    }
}
