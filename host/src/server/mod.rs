//! `planrt serve`: the HTTP API (docs/DESIGN.md §8, `docs/openapi.yaml`), wire-compatible
//! with the reference sidecar's 0.8.0 API. Handlers only parse, call the executor's
//! [`TaskApi`] and render: every rule lives in the executor, as for the CLI.

pub mod auth;
pub mod error;
pub mod metrics;
pub mod observer;
pub mod plans;
pub mod probes;
pub mod tasks;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::executor::{PlanApi, Supervisor, TaskApi};
use crate::plan::TaskSettings;
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
    /// How long one request may take (longer: 503).
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
    /// Plans.
    pub plans: Arc<PlanApi>,
    /// Plans running in the background.
    pub supervisor: Arc<Supervisor>,
    /// Readiness, remembered once reached.
    pub ready: Arc<ReadyFlag>,
    /// What `/v0/metrics` shows.
    pub metrics: Arc<metrics::Metrics>,
}

impl App {
    /// The state of a server whose tasks and plans run on `supervisor` within `settings`
    /// (`--grants`), reporting to `metrics`.
    pub fn new(
        supervisor: Arc<Supervisor>,
        settings: TaskSettings,
        metrics: Arc<metrics::Metrics>,
    ) -> Self {
        let settings = Arc::new(settings);
        Self {
            tasks: Arc::new(TaskApi::new(supervisor.clone(), settings.clone())),
            plans: Arc::new(PlanApi::new(supervisor.clone(), settings)),
            supervisor,
            ready: Arc::new(ReadyFlag::default()),
            metrics,
        }
    }
}

/// Every route, with auth, body limit and timeout.
pub fn router(app: App, config: &ServerConfig) -> Router {
    let api = Router::new()
        .route("/v0/tasks", get(tasks::list).post(tasks::submit))
        .route("/v0/tasks/{id}", get(tasks::get).delete(tasks::delete))
        .route("/v0/plans", get(plans::list).post(plans::create))
        .route("/v0/plans/{id}", get(plans::get).delete(plans::cancel))
        .route("/v0/plans/{id}/resume", post(plans::resume))
        .route("/v0/healthz", get(probes::healthz))
        .route("/v0/startupz", get(probes::healthz))
        .route("/v0/livez", get(probes::livez))
        .route("/v0/status", get(probes::status))
        .route("/v0/metrics", get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app);
    api.layer(axum::middleware::from_fn_with_state(
        config.auth.clone(),
        auth::require,
    ))
    .layer(DefaultBodyLimit::max(config.body_limit))
    .layer(axum::middleware::from_fn_with_state(
        config.request_timeout,
        time_limit,
    ))
}

async fn metrics_text(
    axum::extract::State(app): axum::extract::State<App>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        app.metrics.encode(&app.supervisor),
    )
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(StatusCode::NOT_FOUND, format!("no route {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
}

/// 503 for a request that takes longer than the limit (reading it or serving it). What
/// it started goes on — handlers that change state run their work in a task of its own —
/// so a retry finds it done or deduplicated.
async fn time_limit(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request took longer than {}; what it started goes on",
                humantime::format_duration(limit)
            ),
        )
        .into_response(),
    }
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
