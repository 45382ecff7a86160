//! `/v0/tasks`: submit, list, read, cancel or remove tasks by ID — the reference sidecar's
//! task API on planrt's executor.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::App;
use super::error::{ApiError, parse_json};
use super::wire::{TaskRequest, TaskResult, TaskSubmitResponse};
use crate::executor::{Deleted, Submitted, TaskApi};
use crate::plan::TaskId;
use crate::store::TaskCursor;

/// Tasks per page when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// The largest page.
pub const MAX_PAGE: usize = 1000;
/// The response header carrying the next page's cursor (also in `Link: rel="next"`).
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

/// `POST /v0/tasks`: 201 when the task starts, 202 when it already runs or completed.
pub async fn submit(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: TaskRequest = parse_json(&body.map_err(ApiError::from)?)?;
    let tasks = app.tasks.clone();
    // Run to the end even if the client goes away: a submission is recorded whole.
    let submitted = tokio::spawn(async move { tasks.submit(request.into()).await }).await??;
    let (status, id) = match submitted {
        Submitted::Started(id) => (StatusCode::CREATED, id),
        Submitted::Deduplicated(id) => (StatusCode::ACCEPTED, id),
    };
    Ok((status, Json(TaskSubmitResponse { id })).into_response())
}

/// Query of `GET /v0/tasks`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /v0/tasks`: newest first, a page at a time; the body is the reference's plain
/// array, and the next page's cursor comes in headers.
pub async fn list(
    State(app): State<App>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {MAX_PAGE}"
        )));
    }
    let cursor = query
        .cursor
        .map(|text| text.parse::<TaskCursor>())
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("`cursor`: {e}")))?;
    let tasks = app.tasks.clone();
    let (views, next) = tokio::task::spawn_blocking(move || tasks.list(limit, cursor)).await??;
    let results: Vec<TaskResult> = views.iter().map(TaskResult::from).collect();
    let mut headers = HeaderMap::new();
    if let Some(next) = next {
        let next = next.to_string();
        let link = format!("</v0/tasks?limit={limit}&cursor={next}>; rel=\"next\"");
        for (name, value) in [(NEXT_CURSOR_HEADER, next), (header::LINK.as_str(), link)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
    Ok((headers, Json(results)).into_response())
}

/// `GET /v0/tasks/{id}`.
pub async fn get(
    State(app): State<App>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<TaskResult>, ApiError> {
    let id = task_id(id)?;
    let tasks: Arc<TaskApi> = app.tasks.clone();
    let view = tokio::task::spawn_blocking(move || tasks.get(id)).await??;
    Ok(Json(TaskResult::from(&view)))
}

/// `DELETE /v0/tasks/{id}`: cancels a running task (its attempt ends `cancelled`; the
/// response comes once that is recorded) or removes a finished one.
pub async fn delete(
    State(app): State<App>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = task_id(id)?;
    let tasks = app.tasks.clone();
    let deleted = tokio::spawn(async move { tasks.delete(id).await }).await??;
    match deleted {
        Deleted::Cancelled => tracing::info!(task = %id, "task {id} cancelled"),
        Deleted::Removed => tracing::info!(task = %id, "task {id} removed from the API"),
    }
    Ok(StatusCode::NO_CONTENT)
}

fn task_id(id: Result<Path<String>, PathRejection>) -> Result<TaskId, ApiError> {
    let Path(text) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    text.parse::<TaskId>()
        .map_err(|_| ApiError::bad_request(format!("task ID `{text}` is not a UUID")))
}
