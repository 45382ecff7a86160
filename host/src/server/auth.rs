//! Who may call the API. `Open` (loopback only), a bearer token (required to listen
//! beyond loopback; compared in constant time), or the reference's `trusted-header` mode:
//! a proxy in front (kube-rbac-proxy) authenticates and sets `X-Remote-User`, which is
//! then required. The probes (`healthz`, `startupz`, `livez`) answer without credentials
//! in every mode — kubelet sends none — and in `trusted-header` mode so does `metrics`,
//! as the reference's proxy lets scrapes through.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The header a trusted proxy sets to the authenticated user.
pub const REMOTE_USER_HEADER: &str = "x-remote-user";

/// Paths every mode answers without credentials.
const PROBE_PATHS: [&str; 3] = ["/v0/healthz", "/v0/startupz", "/v0/livez"];
/// Also without credentials in `trusted-header` mode (the reference's four).
const METRICS_PATH: &str = "/v0/metrics";

/// How requests are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// No credentials: only on a loopback address.
    Open,
    /// `Authorization: Bearer <token>` on every request.
    Bearer(Arc<[u8]>),
    /// `X-Remote-User` set by a proxy in front (loopback only).
    TrustedHeader,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::Open => "Open",
            Auth::Bearer(_) => "Bearer(<redacted>)",
            Auth::TrustedHeader => "TrustedHeader",
        })
    }
}

/// A listen address and auth mode that do not go together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Beyond loopback without a token.
    #[error("listening on {0} (beyond loopback) needs a token: pass --token or set PLANRT_TOKEN")]
    TokenRequired(SocketAddr),
    /// Trusted headers are only safe behind a proxy on the same host.
    #[error(
        "--trusted-header needs a loopback --listen address (the proxy in front is the only client), not {0}"
    )]
    TrustedHeaderBeyondLoopback(SocketAddr),
    /// An empty token.
    #[error("the token is empty")]
    EmptyToken,
    /// Two modes at once.
    #[error("--token and --trusted-header are two ways to authenticate: choose one")]
    BothModes,
}

impl Auth {
    /// The mode for these flags, checked against the listen address.
    pub fn choose(
        listen: SocketAddr,
        token: Option<&str>,
        trusted_header: bool,
    ) -> Result<Self, AuthError> {
        let loopback = listen.ip().is_loopback();
        match (token, trusted_header) {
            (Some(_), true) => Err(AuthError::BothModes),
            (Some(""), false) => Err(AuthError::EmptyToken),
            (Some(token), false) => Ok(Auth::Bearer(token.as_bytes().into())),
            (None, true) if !loopback => Err(AuthError::TrustedHeaderBeyondLoopback(listen)),
            (None, true) => Ok(Auth::TrustedHeader),
            (None, false) if !loopback => Err(AuthError::TokenRequired(listen)),
            (None, false) => Ok(Auth::Open),
        }
    }

    /// Whether a request to `path` with `headers` may go on.
    pub fn allows(&self, path: &str, headers: &axum::http::HeaderMap) -> bool {
        if PROBE_PATHS.contains(&path) {
            return true;
        }
        match self {
            Auth::Open => true,
            Auth::Bearer(token) => {
                let mut given = headers.get_all(header::AUTHORIZATION).iter();
                match (given.next(), given.next()) {
                    (Some(value), None) => bearer(value.as_bytes())
                        // Digests of both sides: equal lengths, so the time taken says
                        // nothing about the token's length either.
                        .is_some_and(|given| bool::from(digest(given).ct_eq(&digest(token)))),
                    _ => false,
                }
            }
            Auth::TrustedHeader => {
                // Exactly one non-blank value: a proxy that appends instead of replacing
                // would otherwise let a client's own value through.
                let mut users = headers.get_all(REMOTE_USER_HEADER).iter();
                path == METRICS_PATH
                    || matches!(
                        (users.next(), users.next()),
                        (Some(user), None) if !user.as_bytes().trim_ascii().is_empty()
                    )
            }
        }
    }
}

/// The credentials of `Authorization: Bearer <credentials>` (the scheme is
/// case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// The middleware: 401 with `{error}` for a request the mode does not allow.
pub async fn require(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    if auth.allows(request.uri().path(), request.headers()) {
        return next.run(request).await;
    }
    let message = match auth {
        Auth::TrustedHeader => "missing X-Remote-User (set by the authenticating proxy)",
        _ => "missing or wrong `Authorization: Bearer <token>`",
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    if matches!(auth, Auth::Bearer(_)) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn beyond_loopback_a_token_is_required_and_trusted_headers_refused() {
        assert_eq!(
            Auth::choose(addr("0.0.0.0:7777"), None, false).unwrap_err(),
            AuthError::TokenRequired(addr("0.0.0.0:7777"))
        );
        assert!(matches!(
            Auth::choose(addr("0.0.0.0:7777"), Some("s3cret"), false),
            Ok(Auth::Bearer(_))
        ));
        assert_eq!(
            Auth::choose(addr("10.0.0.1:7777"), None, true).unwrap_err(),
            AuthError::TrustedHeaderBeyondLoopback(addr("10.0.0.1:7777"))
        );
        assert!(matches!(
            Auth::choose(addr("[::1]:7777"), None, false),
            Ok(Auth::Open)
        ));
        assert_eq!(
            Auth::choose(addr("127.0.0.1:7777"), Some(""), false).unwrap_err(),
            AuthError::EmptyToken
        );
        assert_eq!(
            Auth::choose(addr("127.0.0.1:7777"), Some("t"), true).unwrap_err(),
            AuthError::BothModes
        );
    }

    #[test]
    fn a_bearer_token_must_match_exactly_except_on_probes() {
        let auth = Auth::Bearer(b"s3cret".as_slice().into());
        let tasks = "/v0/tasks";
        assert!(!auth.allows(tasks, &headers(&[])));
        assert!(!auth.allows(tasks, &headers(&[("authorization", "Bearer s3cre")])));
        assert!(!auth.allows(tasks, &headers(&[("authorization", "Bearer s3cret2")])));
        assert!(!auth.allows(tasks, &headers(&[("authorization", "Basic s3cret")])));
        assert!(!auth.allows(tasks, &headers(&[("authorization", "Bearer")])));
        assert!(auth.allows(tasks, &headers(&[("authorization", "Bearer s3cret")])));
        assert!(auth.allows(tasks, &headers(&[("authorization", "bearer s3cret")])));
        let mut twice = headers(&[("authorization", "Bearer s3cret")]);
        twice.append("authorization", HeaderValue::from_static("Bearer other"));
        assert!(!auth.allows(tasks, &twice), "two values are refused");
        assert!(auth.allows("/v0/healthz", &headers(&[])));
        assert!(
            !auth.allows("/v0/metrics", &headers(&[])),
            "metrics need the token"
        );
    }

    #[test]
    fn trusted_header_mode_needs_the_user_except_on_the_four_paths() {
        let auth = Auth::TrustedHeader;
        assert!(!auth.allows("/v0/tasks", &headers(&[])));
        assert!(!auth.allows("/v0/tasks", &headers(&[("x-remote-user", "")])));
        assert!(!auth.allows("/v0/tasks", &headers(&[("x-remote-user", "  ")])));
        assert!(auth.allows("/v0/tasks", &headers(&[("x-remote-user", "ops")])));
        let mut twice = headers(&[("x-remote-user", "attacker")]);
        twice.append("x-remote-user", HeaderValue::from_static("ops"));
        assert!(!auth.allows("/v0/tasks", &twice), "two values are refused");
        for path in ["/v0/healthz", "/v0/startupz", "/v0/livez", "/v0/metrics"] {
            assert!(auth.allows(path, &headers(&[])), "{path}");
        }
    }
}
