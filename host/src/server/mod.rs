//! `planrt serve`: the HTTP API (docs/DESIGN.md §8, `docs/openapi.yaml`), wire-compatible
//! with the reference sidecar's 0.8.0 API. Handlers only parse, call the executor's
//! [`TaskApi`] and render: every rule lives in the executor, as for the CLI.

pub mod auth;
pub mod error;
pub mod observer;
pub mod probes;
pub mod tasks;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

use crate::executor::{Supervisor, TaskApi};
use auth::Auth;
use probes::ReadyFlag;

/// How the server listens and what it accepts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Who may call.
    pub auth: Auth,
    /// The largest request body, in bytes (larger: 413).
    pub body_limit: usize,
    /// How long one request may take (longer: 408).
    pub request_timeout: Duration,
}

/// Default largest request body: plans and params are small documents.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// Default request timeout: a submission validates params in plugin code, which is
/// bounded well below this.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What every handler reaches.
#[derive(Clone)]
pub struct App {
    /// Tasks by ID.
    pub tasks: Arc<TaskApi>,
    /// Plans running in the background.
    pub supervisor: Arc<Supervisor>,
    /// Readiness, remembered once reached.
    pub ready: Arc<ReadyFlag>,
}

impl App {
    /// The state of a server whose tasks run on `supervisor`.
    pub fn new(tasks: Arc<TaskApi>, supervisor: Arc<Supervisor>) -> Self {
        Self {
            tasks,
            supervisor,
            ready: Arc::new(ReadyFlag::default()),
        }
    }
}

/// Every route, with auth, body limit and timeout.
pub fn router(app: App, config: &ServerConfig) -> Router {
    let api = Router::new()
        .route("/v0/tasks", get(tasks::list).post(tasks::submit))
        .route("/v0/tasks/{id}", get(tasks::get).delete(tasks::delete))
        .route("/v0/healthz", get(probes::healthz))
        .route("/v0/startupz", get(probes::healthz))
        .route("/v0/livez", get(probes::livez))
        .route("/v0/status", get(probes::status))
        .fallback(not_found)
        .with_state(app);
    api.layer(axum::middleware::from_fn_with_state(
        config.auth.clone(),
        auth::require,
    ))
    .layer(DefaultBodyLimit::max(config.body_limit))
    .layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        config.request_timeout,
    ))
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(StatusCode::NOT_FOUND, format!("no route {}", uri.path()))
}

/// Binds the listen address.
pub async fn bind(config: &ServerConfig) -> std::io::Result<TcpListener> {
    TcpListener::bind(config.listen).await
}

/// Serves until `shutdown` resolves, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: App,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app, config))
        .with_graceful_shutdown(shutdown)
        .await
}
