//! One error shape for every route: a status and `{"error": "..."}` (the reference's
//! `ErrorResponse`), mapped from the executor's error classes as the CLI maps them to
//! exit codes.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::wire::ErrorResponse;
use crate::executor::{ErrorClass, RequestError, ServiceError, SuperviseError};
use crate::store::ClaimError;

/// Seconds a client is told to wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "1";

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let status = match (&error, error.class()) {
            // The state dir failing is the server's trouble, not the request's.
            (
                ServiceError::Store { .. }
                | ServiceError::StateDir(_)
                | ServiceError::Claim(ClaimError::Dir { .. } | ClaimError::Io { .. }),
                _,
            ) => StatusCode::SERVICE_UNAVAILABLE,
            (_, ErrorClass::BadInput) => StatusCode::BAD_REQUEST,
            (_, ErrorClass::NotFound) => StatusCode::NOT_FOUND,
            (_, ErrorClass::Conflict) => StatusCode::CONFLICT,
            (_, ErrorClass::Environment) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, format!("{:#}", anyhow::Error::from(error)))
    }
}

impl From<SuperviseError> for ApiError {
    fn from(error: SuperviseError) -> Self {
        let status = match error {
            SuperviseError::ShuttingDown(_) => StatusCode::SERVICE_UNAVAILABLE,
            SuperviseError::AlreadyRunning(_) => StatusCode::CONFLICT,
        };
        Self::new(status, error.to_string())
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Service(error) => error.into(),
            RequestError::Supervise(error) => error.into(),
            RequestError::BadRequest(message) => Self::bad_request(message),
            RequestError::UnknownTask(_) => Self::new(StatusCode::NOT_FOUND, error.to_string()),
            RequestError::TypeMismatch { .. }
            | RequestError::BlockedByFailure { .. }
            | RequestError::PlanRunning(_)
            | RequestError::PartOfPlan { .. }
            | RequestError::NothingToCancel { .. } => {
                Self::new(StatusCode::CONFLICT, error.to_string())
            }
            RequestError::Unrecorded { .. } | RequestError::ShuttingDown(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
            }
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    /// A body that cannot be read: too large (413), or cut off.
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {error}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.message);
        }
        let mut response = (
            self.status,
            Json(ErrorResponse {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

/// Parses a JSON body, naming the field that is wrong (`params.x: invalid type …`).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match path.as_str() {
            "." | "" => ApiError::bad_request(format!("malformed JSON body: {inner}")),
            path => ApiError::bad_request(format!("malformed JSON body: `{path}`: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::wire::TaskRequest;

    #[test]
    fn a_malformed_body_names_the_field() {
        let error = parse_json::<TaskRequest>(br#"{"type": 5}"#).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert!(error.message.contains("`type`"), "{}", error.message);
        let missing = parse_json::<TaskRequest>(br#"{"params": {}}"#).unwrap_err();
        assert!(
            missing.message.contains("missing field `type`"),
            "{}",
            missing.message
        );
        let id = parse_json::<TaskRequest>(br#"{"type": "x", "id": "not-a-uuid"}"#).unwrap_err();
        assert!(id.message.contains("`id`"), "{}", id.message);
        let syntax = parse_json::<TaskRequest>(br#"{"type": "#).unwrap_err();
        assert!(
            syntax.message.contains("malformed JSON"),
            "{}",
            syntax.message
        );
        let trailing = parse_json::<TaskRequest>(br#"{"type": "x"} {}"#).unwrap_err();
        assert!(
            trailing.message.contains("trailing"),
            "{}",
            trailing.message
        );
    }
}
