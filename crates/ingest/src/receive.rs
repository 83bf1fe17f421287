//! `POST /webhooks/gitlab/{endpoint}`: verify, store durably, answer. Applying happens after the
//! answer (GitLab gives up after 10 s and disables hooks that keep failing).

use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use connector_store::deliveries::{self, NewDelivery};
use connector_store::{Store, hooks};
use connector_telemetry::metrics::{self, Delivery};
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument;
use uuid::Uuid;

use crate::apply::parse_event;
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

/// How long a delivery's body may take to arrive. GitLab gives up on an answer after 10 s (and
/// counts it as a failure), so a body still arriving after that is no delivery GitLab waits for.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The most body bytes held at once across all deliveries being read, once their headers proved
/// their hook: a burst of large deliveries waits its turn (up to `BODY_READ_TIMEOUT`) instead of
/// growing the process by their sum.
pub const MAX_BODY_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct IngestState {
    pub store: Store,
    /// Wakes this process's delivery processor as soon as a delivery is stored.
    pub wake: Arc<Notify>,
    /// Body bytes of deliveries being read, in KiB permits (`MAX_BODY_BYTES_IN_FLIGHT`).
    body_budget: Arc<Semaphore>,
}

impl IngestState {
    pub fn new(store: Store, wake: Arc<Notify>) -> Self {
        Self { store, wake, body_budget: Arc::new(Semaphore::new(MAX_BODY_BYTES_IN_FLIGHT / 1024)) }
    }
}

pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/webhooks/gitlab/{endpoint}", post(receive))
        .layer(middleware::from_fn(connector_telemetry::http::track))
        .with_state(state)
}

fn answer(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// Each delivery starts a trace of its own (GitLab sends no trace context); the span names the
/// endpoint, then the tenant and connection once the endpoint is known.
async fn receive(State(state): State<IngestState>, Path(endpoint): Path<String>, headers: HeaderMap, body: Body) -> Response {
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

/// The endpoint and the hook's secret are checked from the headers alone: a delivery that
/// cannot be ours is answered before a byte of its body is read, so a stranger's large or slow
/// bodies cost nothing. Only then is the body read, bounded in size, time and (across all
/// deliveries) bytes held, and the whole delivery (signature included) verified.
async fn respond(state: &IngestState, endpoint: &str, headers: &HeaderMap, body: Body) -> (Delivery, Response) {
    let unknown = || (Delivery::UnknownEndpoint, answer(StatusCode::NOT_FOUND, "not_found", "no such webhook endpoint"));
    let unverified = |endpoint: &Uuid, reason: verify::Rejection| {
        tracing::warn!(%endpoint, %reason, "webhook delivery refused");
        (Delivery::Unauthorized, answer(StatusCode::UNAUTHORIZED, "unauthorized", "the delivery could not be verified"))
    };
    let unavailable = |endpoint: &Uuid, error: connector_store::Error| {
        // Not stored: a 5xx makes GitLab count a failure, which is right; the catch-up fills
        // the gap if GitLab does not resend.
        tracing::error!(%endpoint, %error, "webhook delivery could not be stored");
        (Delivery::Unavailable, answer(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the delivery could not be stored; try again"))
    };
    let Ok(endpoint) = Uuid::parse_str(endpoint) else { return unknown() };
    let hook = match lookup(&state.store, endpoint, headers).await {
        Ok(hook) => hook,
        Err(Refused::UnknownEndpoint) => return unknown(),
        Err(Refused::Unverified(reason)) => return unverified(&endpoint, reason),
        Err(Refused::Store(error)) => return unavailable(&endpoint, error),
    };
    let body = match read_body(&state.body_budget, headers, body).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let response = answer(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "deliveries are limited to 25 MB, as GitLab's");
            return (Delivery::TooLarge, response);
        }
        Err(BodyError::Unreadable) => {
            let response = answer(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the body did not arrive whole in time");
            return (Delivery::BadRequest, response);
        }
    };
    match store(&state.store, &hook, headers, &body).await {
        Ok(Stored::New { kept_aside }) => {
            state.wake.notify_one();
            let result = if kept_aside { Delivery::KeptAsideOnReceipt } else { Delivery::Accepted };
            (result, (StatusCode::OK, axum::Json(json!({"status": "accepted"}))).into_response())
        }
        Ok(Stored::Duplicate) => (Delivery::Duplicate, (StatusCode::OK, axum::Json(json!({"status": "duplicate"}))).into_response()),
        Err(Refused::UnknownEndpoint) => unknown(),
        Err(Refused::Unverified(reason)) => unverified(&endpoint, reason),
        Err(Refused::Store(error)) => unavailable(&endpoint, error),
    }
}

enum BodyError {
    TooLarge,
    /// Broken off, or slower than `BODY_READ_TIMEOUT`, or waiting that long for its turn.
    Unreadable,
}

/// Reads the body within `BODY_READ_TIMEOUT`, holding budget for every byte it keeps.
async fn read_body(budget: &Semaphore, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, BodyError> {
    let declared = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(BodyError::TooLarge);
    }
    let read = async {
        let mut held = Vec::new();
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(1 << 20));
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge);
            }
            let kib = (bytes.len() + chunk.len()).div_ceil(1024) - bytes.len().div_ceil(1024);
            if kib > 0 {
                held.push(budget.acquire_many(kib as u32).await.map_err(|_| BodyError::Unreadable)?);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    // The permits go with the read: the body is in the inbox or refused before the next one's.
    tokio::time::timeout(BODY_READ_TIMEOUT, read).await.map_err(|_| BodyError::Unreadable)?
}

enum Stored {
    /// Stored; `kept_aside` when it can never be applied.
    New {
        kept_aside: bool,
    },
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

/// A hook whose secret the delivery's headers presented.
struct KnownHook {
    endpoint: Uuid,
    tenant: connector_store::TenantId,
    connection: Uuid,
    secrets: hooks::HookSecrets,
}

/// The endpoint's hook, if the delivery's `X-Gitlab-Token` is its secret. The transaction ends
/// here: none is held while a body arrives.
async fn lookup(store: &Store, endpoint: Uuid, headers: &HeaderMap) -> Result<KnownHook, Refused> {
    let Some((tenant, connection)) = hooks::route(store, endpoint).await? else { return Err(Refused::UnknownEndpoint) };
    let span = tracing::Span::current();
    span.record("tenant", tracing::field::display(&tenant));
    span.record("connection", tracing::field::display(connection));
    let mut tx = store.tenant_tx(&tenant).await?;
    let (_, secrets) = hooks::secrets(&mut tx, store.keys(), endpoint).await?;
    let token = headers.get("x-gitlab-token").map(|v| v.as_bytes());
    if let Err(rejection) = verify::verify_token(token, secrets.token.expose_secret()) {
        // The connection's health shows refused deliveries: GitLab does not resend them.
        hooks::record_refusal(&mut tx, endpoint, &rejection.to_string()).await?;
        tx.commit().await?;
        return Err(Refused::Unverified(rejection));
    }
    tx.commit().await?;
    Ok(KnownHook { endpoint, tenant, connection, secrets })
}

async fn store(store: &Store, hook: &KnownHook, headers: &HeaderMap, body: &[u8]) -> Result<Stored, Refused> {
    let endpoint = hook.endpoint;
    let expected = Expected { token: hook.secrets.token.expose_secret(), signing_token: hook.secrets.signing_token.expose_secret() };
    let mut tx = store.tenant_tx(&hook.tenant).await?;
    if let Err(rejection) = verify::verify(&presented(headers, body), &expected, chrono::Utc::now().timestamp()) {
        hooks::record_refusal(&mut tx, endpoint, &rejection.to_string()).await?;
        tx.commit().await?;
        return Err(Refused::Unverified(rejection));
    }

    let parsed = parse_delivery(headers, body);
    let new = deliveries::insert(
        &mut tx,
        &NewDelivery {
            connection_id: hook.connection,
            hook_id: endpoint,
            dedup_key: &parsed.dedup_key,
            event: parsed.event,
            headers: parsed.headers,
            body,
            kept_aside: parsed.kept_aside.as_deref(),
            traceparent: connector_telemetry::current_traceparent().as_deref(),
        },
    )
    .await?;
    tx.commit().await?;
    if let Some(reason) = &parsed.kept_aside {
        tracing::warn!(%endpoint, %reason, "webhook delivery kept aside");
    }
    Ok(if new { Stored::New { kept_aside: parsed.kept_aside.is_some() } } else { Stored::Duplicate })
}

/// What a verified delivery's headers and body say, before anything is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDelivery<'a> {
    /// Names the delivery in the inbox: one row however often GitLab sends it.
    pub dedup_key: String,
    /// `X-Gitlab-Event`.
    pub event: Option<&'a str>,
    /// The delivery headers worth keeping (never the secret token or the signature), as a JSON object.
    pub headers: Value,
    /// Why it can never be applied, when it cannot: kept aside at once.
    pub kept_aside: Option<String>,
}

/// Longest dedup key stored as sent; a longer one is stored as its hash, since the inbox's unique
/// index cannot hold keys of a few kilobytes (a header may carry that much).
pub const MAX_DEDUP_KEY_LEN: usize = 256;

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// What a delivery presents as proof of where it came from.
pub fn presented<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Presented<'a> {
    Presented {
        token: headers.get("x-gitlab-token").map(|v| v.as_bytes()),
        signature: header(headers, "webhook-signature"),
        webhook_id: header(headers, "webhook-id"),
        timestamp: header(headers, "webhook-timestamp"),
        body,
    }
}

/// Reads a delivery's headers and body; needs no database, so it can be fuzzed on its own.
pub fn parse_delivery<'a>(headers: &'a HeaderMap, body: &[u8]) -> ParsedDelivery<'a> {
    // Stable across GitLab's retries and resends; a body hash for GitLab versions that send none.
    // A blank key counts as none: kept, it would make every later blank-keyed delivery a duplicate.
    let key = |name| header(headers, name).filter(|k| !k.trim().is_empty());
    // A signed delivery's `webhook-id` is covered by its signature; the other ids are not, so
    // a captured signed delivery replayed under new ones would be stored again.
    let signed_id = key("webhook-signature").and_then(|_| key("webhook-id"));
    let dedup_key = match signed_id.or_else(|| key("idempotency-key")).or_else(|| key("webhook-id")).or_else(|| key("x-gitlab-event-uuid"))
    {
        Some(key) if key.len() <= MAX_DEDUP_KEY_LEN => key.to_owned(),
        Some(key) => sha256_hex(key.as_bytes()),
        None => sha256_hex(body),
    };
    let kept: serde_json::Map<String, Value> =
        KEPT_HEADERS.iter().filter_map(|name| header(headers, name).map(|v| ((*name).to_owned(), Value::String(v.to_owned())))).collect();
    let event = header(headers, "x-gitlab-event");
    // Kept aside now if it can never be applied; still answered 2xx so GitLab keeps the hook.
    let kept_aside = parse_event(body, event).err();
    ParsedDelivery { dedup_key, event, headers: Value::Object(kept), kept_aside }
}
