//! `Idempotency-Key` on every POST: the same key and request replay the first answer, the same
//! key on another request is a 422 (see `connector_store::idempotency`).

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use connector_store::TenantTx;
use connector_store::idempotency::{self, Answer, Claim};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode};

pub const HEADER: &str = "Idempotency-Key";
/// Set on an answer that is a replay of the first.
static REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
const MAX_LEN: usize = 255;

/// The request's `Idempotency-Key`, if it sent one; documented as every POST's header.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// Any string of 1 to 255 printable ASCII characters, new for each request the user means
    /// (e.g. a UUID made when the form opens). The same request sent again with it within 24
    /// hours (a double click, a retry after a timeout) gets the first answer and changes nothing;
    /// another request with it is refused with 422 `idempotency_key_reused`. Without it, every
    /// POST is a new request.
    #[param(rename = "Idempotency-Key", value_type = String, required = false)]
    key: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(HEADER) else { return Ok(Self { key: None }) };
        let refuse = || {
            ApiError::about(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                HEADER,
                format!("must be 1 to {MAX_LEN} printable ASCII characters, e.g. a UUID made when the form is opened"),
            )
        };
        let key = value.to_str().map_err(|_| refuse())?;
        if key.is_empty() || key.len() > MAX_LEN || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(refuse());
        }
        Ok(Self { key: Some(key.to_owned()) })
    }
}

/// One POST under its key: `route` (method and path) and `body` say what the request is.
pub struct Idempotent {
    key: Option<String>,
    request_hash: Vec<u8>,
}

impl Idempotent {
    pub fn new(key: IdempotencyKey, route: &str, body: &impl Serialize) -> Self {
        let mut hash = Sha256::new();
        hash.update(route.as_bytes());
        hash.update(b"\n");
        hash.update(serde_json::to_vec(body).expect("a request body serializes"));
        Self { key: key.key, request_hash: hash.finalize().to_vec() }
    }

    /// The first answer if this request was answered already (before doing any of its work
    /// again), or the 422 if the key named another request.
    pub async fn answered(&self, tx: &mut TenantTx) -> Result<Option<Response>, ApiError> {
        let Some(key) = &self.key else { return Ok(None) };
        idempotency::answered(tx, key, &self.request_hash).await?.map_or(Ok(None), replay)
    }

    /// Takes the key in the transaction that does the work: `Some` answer when a concurrent
    /// request with it got there first.
    pub async fn claim(&self, tx: &mut TenantTx) -> Result<Option<Response>, ApiError> {
        let Some(key) = &self.key else { return Ok(None) };
        replay(idempotency::claim(tx, key, &self.request_hash).await?)
    }

    /// Keeps the answer about `connection` for the key (in the work's transaction) and makes it
    /// the response.
    pub async fn answer(
        &self,
        tx: &mut TenantTx,
        connection: Uuid,
        status: StatusCode,
        body: &impl Serialize,
        location: Option<String>,
    ) -> Result<Response, ApiError> {
        let answer = Answer { status: status.as_u16(), body: serde_json::to_value(body).expect("a view serializes"), location };
        if let Some(key) = &self.key {
            idempotency::record(tx, key, connection, &answer).await?;
        }
        Ok(respond(answer))
    }
}

/// What the request is answered instead of doing its work: nothing when it is the first.
fn replay(claim: Claim) -> Result<Option<Response>, ApiError> {
    match claim {
        Claim::First => Ok(None),
        Claim::Replay(answer) => {
            let mut response = respond(answer);
            response.headers_mut().insert(REPLAYED.clone(), HeaderValue::from_static("true"));
            Ok(Some(response))
        }
        Claim::Reused => Err(ApiError::about(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::IdempotencyKeyReused,
            HEADER,
            format!("was sent with another request in the last {} hours; send a new key for a new request", idempotency::KEPT_FOR_HOURS),
        )),
    }
}

fn respond(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, Json(answer.body)).into_response();
    if let Some(location) = answer.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
