//! The probes kubelet and operators ask: readiness (`healthz`, `startupz`: a `mark-ready`
//! task has completed — persisted, so a restart keeps it), liveness (`livez`: the store
//! can record a transition now) and `status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::App;
use super::wire::{ErrorResponse, Readiness, StatusResponse};
use crate::executor::Service;

/// How long `livez` waits for the store's write lock: under kubelet's default probe
/// timeout (1 s).
pub const LIVEZ_WAIT: std::time::Duration = std::time::Duration::from_millis(800);

/// The task type whose completion marks the node ready.
pub const MARK_READY: &str = "mark-ready";

/// Whether a `mark-ready` task has completed; asked of the store until it has.
#[derive(Debug, Default)]
pub struct ReadyFlag(AtomicBool);

impl ReadyFlag {
    /// Whether the node is ready; `Err` when the store cannot say.
    pub fn check(&self, service: &Service) -> Result<bool, String> {
        if self.0.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let store = service.store().map_err(|e| e.to_string())?;
        let ready = store
            .completed_once(MARK_READY)
            .map_err(|e| e.to_string())?;
        if ready {
            // Readiness is never taken back: the completed task stays in the store.
            self.0.store(true, Ordering::Relaxed);
        }
        Ok(ready)
    }
}

async fn readiness(app: &App) -> Readiness {
    let service = app.supervisor.service().clone();
    let ready = app.ready.clone();
    let check = tokio::task::spawn_blocking(move || ready.check(&service)).await;
    match check {
        Ok(Ok(true)) => Readiness::Ready,
        Ok(Ok(false)) => Readiness::Initializing,
        Ok(Err(error)) => {
            tracing::warn!("readiness unknown: {error}");
            Readiness::Initializing
        }
        Err(error) => {
            tracing::error!("readiness check failed: {error}");
            Readiness::Initializing
        }
    }
}

/// `GET /v0/healthz` and `/v0/startupz`: 200 once ready, else 503 (bare, as kubelet
/// probes expect).
pub async fn healthz(State(app): State<App>) -> StatusCode {
    match readiness(&app).await {
        Readiness::Ready => StatusCode::OK,
        Readiness::Initializing => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Query of `GET /v0/livez`.
#[derive(Debug, Deserialize)]
pub struct LivezQuery {
    verbose: Option<String>,
}

/// `GET /v0/livez`: 200 while the store answers, else 503 (with the error under
/// `?verbose=1`).
pub async fn livez(
    State(app): State<App>,
    query: Result<Query<LivezQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let service: Arc<Service> = app.supervisor.service().clone();
    let ping = tokio::task::spawn_blocking(move || {
        service
            .store()
            .map_err(|e| e.to_string())
            .and_then(|store| store.ping(LIVEZ_WAIT).map_err(|e| e.to_string()))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match ping {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => {
            let verbose = query.is_ok_and(|Query(q)| q.verbose.as_deref() == Some("1"));
            if verbose {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(ErrorResponse { error }),
                )
                    .into_response()
            } else {
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            }
        }
    }
}

/// `GET /v0/status`: `{"status": "Initializing" | "Ready"}`.
pub async fn status(State(app): State<App>) -> Json<StatusResponse> {
    Json(StatusResponse {
        status: readiness(&app).await,
    })
}
