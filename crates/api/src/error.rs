//! The one error shape of the API: `{"error":{"code","message","field"?,"details"?}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One problem with one input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The request field, e.g. `groups_list`.
    pub field: String,
    /// What is wrong with it and what would be right.
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_owned(), message: message.into() }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `validation_failed`, `not_found`, `unauthorized`, ...
    pub code: String,
    /// For people.
    pub message: String,
    /// The first offending request field, when the error is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every offending field, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Vec::new() }
    }

    /// The same answer for an id that does not exist and one that belongs to another tenant.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "not found")
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; it has been logged")
    }

    /// 422 naming every bad field.
    pub fn invalid(details: Vec<FieldError>) -> Self {
        let message = details.iter().map(|d| format!("{}: {}", d.field, d.message)).collect::<Vec<_>>().join("; ");
        Self { status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", message, details }
    }

    /// An error about one named input (a field, a header, a query parameter), with its own code.
    pub fn about(status: StatusCode, code: &'static str, field: &str, message: impl Into<String>) -> Self {
        let detail = FieldError::new(field, message);
        Self { status, code, message: format!("{}: {}", detail.field, detail.message), details: vec![detail] }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.details.first().map(|d| d.field.clone()),
                details: self.details,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<connector_store::Error> for ApiError {
    fn from(error: connector_store::Error) -> Self {
        match error {
            connector_store::Error::NotFound => Self::not_found(),
            connector_store::Error::InvalidTenant(_) => Self::unauthorized("invalid tenant claim"),
            connector_store::Error::LimitReached(message) => Self::new(StatusCode::CONFLICT, "limit_reached", message),
            other => {
                // Store errors carry no secrets (tokens are sealed before they reach SQL), but
                // their detail is for operators, not callers.
                tracing::error!(error = %other, "store error");
                Self::internal()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
