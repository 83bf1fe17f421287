//! `POST /webhooks/gitlab/{endpoint}`: verify, store durably, answer. Applying happens after the
//! answer (GitLab gives up after 10 s and disables hooks that keep failing).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::middleware;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use connector_store::deliveries::{self, NewDelivery};
use connector_store::{Store, hooks};
use connector_telemetry::metrics::{self, Delivery};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::Instrument;
use uuid::Uuid;

use crate::apply::event_kind;
use crate::verify::{self, Expected, Presented};

/// GitLab's own limit on a webhook payload.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Delivery headers worth keeping with the body (never the secret token or the signature).
const KEPT_HEADERS: &[&str] = &[
    "x-gitlab-event",
    "x-gitlab-instance",
    "x-gitlab-event-uuid",
    "x-gitlab-webhook-uuid",
    "idempotency-key",
    "webhook-id",
    "webhook-timestamp",
    "user-agent",
];

#[derive(Clone)]
pub struct IngestState {
    pub store: Store,
    /// Wakes this process's delivery processor as soon as a delivery is stored.
    pub wake: Arc<Notify>,
}

pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/webhooks/gitlab/{endpoint}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(connector_telemetry::http::track))
        .with_state(state)
}

fn answer(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// Each delivery starts a trace of its own (GitLab sends no trace context); the span names the
/// endpoint, then the tenant and connection once the endpoint is known.
async fn receive(
    State(state): State<IngestState>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let span = tracing::info_span!(
        parent: None,
        "webhook",
        otel.name = "POST /webhooks/gitlab/{endpoint}",
        otel.kind = "server",
        endpoint = %endpoint,
        tenant = tracing::field::Empty,
        connection = tracing::field::Empty,
        result = tracing::field::Empty,
    );
    let (result, response) = respond(&state, &endpoint, &headers, body).instrument(span.clone()).await;
    span.record("result", result.label());
    metrics::webhook_delivery(result);
    response
}

async fn respond(state: &IngestState, endpoint: &str, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> (Delivery, Response) {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let response = answer(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "deliveries are limited to 25 MB, as GitLab's");
            return (Delivery::TooLarge, response);
        }
        Err(_) => return (Delivery::BadRequest, answer(StatusCode::BAD_REQUEST, "bad_request", "the body could not be read")),
    };
    let unknown = || (Delivery::UnknownEndpoint, answer(StatusCode::NOT_FOUND, "not_found", "no such webhook endpoint"));
    let Ok(endpoint) = Uuid::parse_str(endpoint) else { return unknown() };
    match store(&state.store, endpoint, headers, &body).await {
        Ok(Stored::New { kept_aside }) => {
            state.wake.notify_one();
            let result = if kept_aside { Delivery::KeptAsideOnReceipt } else { Delivery::Accepted };
            (result, (StatusCode::OK, axum::Json(json!({"status": "accepted"}))).into_response())
        }
        Ok(Stored::Duplicate) => (Delivery::Duplicate, (StatusCode::OK, axum::Json(json!({"status": "duplicate"}))).into_response()),
        Err(Refused::UnknownEndpoint) => unknown(),
        Err(Refused::Unverified(reason)) => {
            tracing::warn!(%endpoint, %reason, "webhook delivery refused");
            (Delivery::Unauthorized, answer(StatusCode::UNAUTHORIZED, "unauthorized", "the delivery could not be verified"))
        }
        Err(Refused::Store(error)) => {
            // Not stored: a 5xx makes GitLab count a failure, which is right; the catch-up fills
            // the gap if GitLab does not resend.
            tracing::error!(%endpoint, %error, "webhook delivery could not be stored");
            (Delivery::Unavailable, answer(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the delivery could not be stored; try again"))
        }
    }
}

enum Stored {
    /// Stored; `kept_aside` when it can never be applied.
    New { kept_aside: bool },
    Duplicate,
}

enum Refused {
    UnknownEndpoint,
    Unverified(verify::Rejection),
    Store(connector_store::Error),
}

impl From<connector_store::Error> for Refused {
    fn from(error: connector_store::Error) -> Self {
        match error {
            connector_store::Error::NotFound => Refused::UnknownEndpoint,
            other => Refused::Store(other),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn store(store: &Store, endpoint: Uuid, headers: &HeaderMap, body: &[u8]) -> Result<Stored, Refused> {
    let Some((tenant, connection)) = hooks::route(store, endpoint).await? else { return Err(Refused::UnknownEndpoint) };
    let span = tracing::Span::current();
    span.record("tenant", tracing::field::display(&tenant));
    span.record("connection", tracing::field::display(connection));
    let mut tx = store.tenant_tx(&tenant).await?;
    let (hook, secrets) = hooks::secrets(&mut tx, store.keys(), endpoint).await?;
    let presented = Presented {
        token: headers.get("x-gitlab-token").map(|v| v.as_bytes()),
        signature: header(headers, "webhook-signature"),
        webhook_id: header(headers, "webhook-id"),
        timestamp: header(headers, "webhook-timestamp"),
        body,
    };
    let expected = Expected {
        token: secrets.token.expose_secret(),
        signing_token: secrets.signing_token.expose_secret(),
        signing_enabled: hook.signing_enabled,
    };
    verify::verify(&presented, &expected, chrono::Utc::now().timestamp()).map_err(Refused::Unverified)?;

    // Stable across GitLab's retries and resends; a body hash for GitLab versions that send none.
    let dedup_key = header(headers, "idempotency-key")
        .or_else(|| header(headers, "webhook-id"))
        .or_else(|| header(headers, "x-gitlab-event-uuid"))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("sha256:{}", Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect::<String>()));
    let kept: serde_json::Map<String, Value> = KEPT_HEADERS
        .iter()
        .filter_map(|name| header(headers, name).map(|v| ((*name).to_owned(), Value::String(v.to_owned()))))
        .collect();
    let event = header(headers, "x-gitlab-event");
    // Kept aside now if it can never be applied; still answered 2xx so GitLab keeps the hook.
    let kept_aside = match serde_json::from_slice::<Value>(body) {
        Err(e) => Some(format!("the body is not JSON: {e}")),
        Ok(payload) if event_kind(&payload, event).is_none() => Some("no object_kind, event_name or X-Gitlab-Event".to_owned()),
        Ok(_) => None,
    };
    let new = deliveries::insert(
        &mut tx,
        &NewDelivery {
            connection_id: connection,
            hook_id: endpoint,
            dedup_key: &dedup_key,
            event,
            headers: Value::Object(kept),
            body,
            kept_aside: kept_aside.as_deref(),
            traceparent: connector_telemetry::current_traceparent().as_deref(),
        },
    )
    .await?;
    tx.commit().await?;
    if let Some(reason) = &kept_aside {
        tracing::warn!(%endpoint, %reason, "webhook delivery kept aside");
    }
    Ok(if new { Stored::New { kept_aside: kept_aside.is_some() } } else { Stored::Duplicate })
}
