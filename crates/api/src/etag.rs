//! A connection's `ETag` is the revision of what the user set on it; `If-Match` on a PATCH or
//! DELETE must name the current one (RFC 9110 §13.1.1: strong comparison, `*` or a list), or
//! the request is refused with 412 and changes nothing.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};

use crate::error::{ApiError, ErrorCode};

/// The entity tag of a connection at `revision`.
pub fn etag(revision: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"r{revision}\"")).expect("a revision is a valid header value")
}

/// The request's `If-Match`, if it sent one.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatch {
    /// The `ETag` of the connection as the caller last read it (or `*`). When it is not the
    /// current one, another change came first: the request is refused with 412
    /// `precondition_failed` and changes nothing; read the connection again. Without it, the
    /// request applies to whatever the connection is now.
    #[param(rename = "If-Match", value_type = String, required = false)]
    tags: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let tags = match parts.headers.get(header::IF_MATCH) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| ApiError::about(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, "If-Match", "must be ASCII"))?
                    .to_owned(),
            ),
        };
        Ok(Self { tags })
    }
}

impl IfMatch {
    /// Refuses the request unless it sent no `If-Match`, `*`, or a strong tag equal to the
    /// connection's current one.
    pub fn check(&self, revision: i64) -> Result<(), ApiError> {
        let Some(tags) = &self.tags else { return Ok(()) };
        let current = etag(revision);
        let matches = tags.split(',').map(str::trim).any(|tag| tag == "*" || tag.as_bytes() == current.as_bytes());
        if matches {
            return Ok(());
        }
        Err(ApiError::about(
            StatusCode::PRECONDITION_FAILED,
            ErrorCode::PreconditionFailed,
            "If-Match",
            "the connection changed since that ETag was read; read it again and reapply the change",
        ))
    }
}
