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
    /// How long a read may take (longer: 503), and a request that changes state may take
    /// to send its body (longer: 408).
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
    // Outermost first: auth (nothing of an unauthenticated request is read), then the
    // time limit, which reads the body within the body limit.
    api.layer(DefaultBodyLimit::max(config.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            (config.request_timeout, config.body_limit),
            time_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            config.auth.clone(),
            auth::require,
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

/// The request timeout. A read (`GET`) taking longer than it is 503. A request that
/// changes state must send its body within it (else 408: the client is slow), then runs
/// to its end: its work is bounded by its own limits (`validate`'s timeout, the store's
/// 10 s wait, a cancel's epoch tick), and answering before it ends would make a retry
/// unsafe (a second plan, a removal instead of a cancel).
async fn time_limit(
    axum::extract::State(limits): axum::extract::State<(Duration, usize)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (limit, body_limit) = limits;
    let took_too_long = |status, what: &str| {
        error::ApiError::new(
            status,
            format!(
                "{what} took longer than {}",
                humantime::format_duration(limit)
            ),
        )
        .into_response()
    };
    if matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        return match tokio::time::timeout(limit, next.run(request)).await {
            Ok(response) => response,
            Err(_) => took_too_long(StatusCode::SERVICE_UNAVAILABLE, "the request"),
        };
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(limit, axum::body::to_bytes(body, body_limit)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            return match too_large {
                true => error::ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {body_limit} bytes"),
                ),
                false => error::ApiError::bad_request(format!("the body cannot be read: {error}")),
            }
            .into_response();
        }
        Err(_) => return took_too_long(StatusCode::REQUEST_TIMEOUT, "sending the body"),
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// Binds the listen address.
pub async fn bind(config: &ServerConfig) -> std::io::Result<TcpListener> {
    TcpListener::bind(config.listen).await
}

/// How long a client may take to send a request's headers (a connection that sends them
/// byte by byte cannot hold the server, nor its shutdown).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP/1.1 until `shutdown` resolves, then stops accepting and lets the requests
/// in flight finish (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    app: App,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let router = router(app, config);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            // Out of file descriptors, a connection reset before accept: keep serving.
            Err(error) => {
                tracing::warn!("accepting a connection: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!("connection: {error}");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}
