//! The one error shape of the API: `{"error":{"code","message","field"?,"details"?}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One problem with one input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = crate::examples::field_error)]
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

/// Every error code the service answers with: stable, for code to switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = json!(ErrorCode::ValidationFailed))]
pub enum ErrorCode {
    /// A request the service cannot read: malformed HTTP, a bad header or query parameter value.
    BadRequest,
    /// The body is not valid JSON.
    InvalidJson,
    /// A field is missing or wrong; `details` names each.
    ValidationFailed,
    /// A query parameter the operation does not take, or one given twice.
    UnknownParameter,
    /// The `Idempotency-Key` was sent with another request.
    IdempotencyKeyReused,
    /// No bearer token, or one that does not verify.
    Unauthorized,
    /// No such object for this tenant (or no such route).
    NotFound,
    MethodNotAllowed,
    /// The object's state does not allow this (e.g. it is being deleted).
    Conflict,
    /// A per-tenant limit is reached.
    LimitReached,
    /// The tenant made more requests than its budget allows; `Retry-After` says when to retry.
    RateLimited,
    /// `If-Match` names an older version than the current one.
    PreconditionFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    UriTooLong,
    HeadersTooLarge,
    /// The request took longer than the service allows.
    Timeout,
    /// The service cannot answer now (its database is unreachable or not migrated).
    NotReady,
    /// A fault of ours, logged.
    Internal,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::examples::error_body)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::examples::error_detail)]
pub struct ErrorDetail {
    pub code: ErrorCode,
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
    code: ErrorCode,
    message: String,
    details: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Vec::new() }
    }

    /// The same answer for an id that does not exist and one that belongs to another tenant.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "not found")
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "internal error; it has been logged")
    }

    /// 422 naming every bad field.
    pub fn invalid(details: Vec<FieldError>) -> Self {
        let message = details.iter().map(|d| format!("{}: {}", d.field, d.message)).collect::<Vec<_>>().join("; ");
        Self { status: StatusCode::UNPROCESSABLE_ENTITY, code: ErrorCode::ValidationFailed, message, details }
    }

    /// An error about one named input (a field, a header, a query parameter), with its own code.
    pub fn about(status: StatusCode, code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
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
                code: self.code,
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
            connector_store::Error::LimitReached(message) => Self::new(StatusCode::CONFLICT, ErrorCode::LimitReached, message),
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
