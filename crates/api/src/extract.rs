//! Extractors whose rejections speak the API's error shape instead of axum's plain text.

// The one place that wraps axum's own extractors, which clippy.toml keeps out of the rest.
#![allow(clippy::disallowed_types)]

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode, FieldError};

/// A JSON body. Not JSON: 400; the wrong shape: 422 naming `body`; too large: 413; another
/// content type: 415.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match <axum::Json<T> as FromRequest<S>>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::invalid(vec![FieldError::new("body", format!("must be a JSON object: {}", e.body_text()))]))
            }
            Err(JsonRejection::JsonSyntaxError(_)) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, "the body is not valid JSON"))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "send the body as Content-Type: application/json",
            )),
            Err(other) if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "the body is larger than this endpoint accepts",
            )),
            Err(other) => Err(ApiError::bad_request(format!("the body could not be read: {}", other.body_text()))),
        }
    }
}

/// A JSON body a route may go without: none when the request has neither a `Content-Type`
/// nor a body; a body sent without `Content-Type` is a 415, not ignored.
impl<S: Send + Sync, T: DeserializeOwned> OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let headers = req.headers();
        let sized = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let chunked = headers.contains_key(axum::http::header::TRANSFER_ENCODING);
        if headers.contains_key(axum::http::header::CONTENT_TYPE) || chunked || sized.is_some_and(|n| n > 0) {
            return <Self as FromRequest<S>>::from_request(req, state).await.map(Some);
        }
        Ok(None)
    }
}

/// Path parameters. A value that does not parse (a connection id that is not even a UUID, an
/// iid that is not a number) is answered exactly like one that does not exist (or belongs to
/// another tenant): 404.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state).await.map(|Path(value)| Self(value)).map_err(|_| ApiError::not_found())
    }
}

/// The object id of a route with no other path parameter.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        ApiPath::<Uuid>::from_request_parts(parts, state).await.map(|ApiPath(id)| Self(id))
    }
}

/// Query parameters. Handlers take them as strings and parse them themselves, to name each bad
/// one; unknown and repeated ones were refused before (`strict_query`), so what is left to fail
/// here is a query string that does not decode at all: 422 naming `query`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|e| ApiError::invalid(vec![FieldError::new("query", e.body_text())]))
    }
}
