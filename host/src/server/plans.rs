//! `/v0/plans`: plans over HTTP — create and run (the plan file's schema as JSON), list,
//! read (the Plan JSON), resume and cancel, with the CLI's rules as HTTP statuses.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::App;
use super::error::{ApiError, parse_json};
use super::wire::{PlanCreated, ResumeRequest, TaskSubmitResponse};
use crate::plan::{PlanDocument, PlanId};
use crate::store::PlanSummary;

/// Plans listed when `limit` is not given.
const DEFAULT_PLANS: usize = 20;
/// The longest list.
const MAX_PLANS: usize = 1000;

/// `POST /v0/plans`: 201 `{id, tasks: [{id}]}` once the plan is recorded; it runs in the
/// background.
pub async fn create(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let document: Value = parse_json(&body.map_err(ApiError::from)?)?;
    let plans = app.plans.clone();
    // Run to the end even if the client goes away: a plan is recorded whole.
    let plan = tokio::spawn(async move { plans.create(&document).await }).await??;
    let created = PlanCreated {
        id: plan.id(),
        tasks: plan
            .tasks()
            .iter()
            .map(|task| TaskSubmitResponse { id: task.id() })
            .collect(),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Query of `GET /v0/plans`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
}

/// `GET /v0/plans`: the most recent plans, newest first (as `planrt status`).
pub async fn list(
    State(app): State<App>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<PlanSummary>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PLANS);
    if !(1..=MAX_PLANS).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {MAX_PLANS}"
        )));
    }
    let plans = app.plans.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || plans.list(limit)).await??,
    ))
}

/// `GET /v0/plans/{id}`: the Plan JSON (as `planrt status ID --output json`).
pub async fn get(
    State(app): State<App>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<PlanDocument>, ApiError> {
    let id = plan_id(id)?;
    let plans = app.plans.clone();
    let plan = tokio::task::spawn_blocking(move || plans.get(id)).await??;
    Ok(Json(plan.into_document()))
}

/// `POST /v0/plans/{id}/resume` (`{from?, allowPluginChange?}`, or no body): 202 with
/// the Plan JSON once reopened; it runs in the background.
pub async fn resume(
    State(app): State<App>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = plan_id(id)?;
    let body = body.map_err(ApiError::from)?;
    let request: ResumeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ResumeRequest::default()
    } else {
        parse_json(&body)?
    };
    let plans = app.plans.clone();
    let plan = tokio::spawn(async move {
        plans
            .resume(
                id,
                request.from,
                request.allow_plugin_change.unwrap_or(false),
            )
            .await
    })
    .await??;
    Ok((StatusCode::ACCEPTED, Json(plan.document())).into_response())
}

/// `DELETE /v0/plans/{id}`: cancels the running attempt (the plan stays, failed and
/// resumable); 204 once recorded.
pub async fn cancel(
    State(app): State<App>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = plan_id(id)?;
    let plans: Arc<crate::executor::PlanApi> = app.plans.clone();
    tokio::spawn(async move { plans.cancel(id).await }).await??;
    tracing::info!(plan = %id, "plan {id} cancelled");
    Ok(StatusCode::NO_CONTENT)
}

fn plan_id(id: Result<Path<String>, PathRejection>) -> Result<PlanId, ApiError> {
    let Path(text) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    text.parse::<PlanId>()
        .map_err(|_| ApiError::bad_request(format!("plan ID `{text}` is not a UUID")))
}
