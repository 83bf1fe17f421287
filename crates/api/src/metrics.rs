//! `GET /metrics`: the process's Prometheus metrics, served on the same listener as the API and
//! the webhook endpoint (the Ingress does not route it: it is for the in-cluster scraper), to a
//! bearer token (`METRICS_TOKEN`) when one is configured, which production requires. The metrics
//! name no tenant or connection.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use connector_store::{Store, connections, jobs};
use connector_telemetry::metrics;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use crate::error::ApiError;

/// The database gauges are read at most this often, however often (or by whom) `/metrics` is
/// fetched: each read is two queries across tenants.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct MetricsState {
    store: Store,
    token: Option<Arc<SecretString>>,
}

/// `/metrics`, open when `token` is `None` (development), else only to `Bearer <token>`.
pub fn router(store: Store, token: Option<SecretString>) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(MetricsState { store, token: token.map(Arc::new) })
}

/// Prometheus metrics.
///
/// Every metric of this process in Prometheus' text format; the queue and connection gauges are
/// read from the database first (or kept from the last read when the database fails). Answers only
/// `METRICS_TOKEN` as a bearer token.
#[utoipa::path(
    get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String),
        (status = 401, body = crate::error::ErrorBody, description = "`METRICS_TOKEN` is configured and the request does not carry it as `Bearer`"),
    ),
    security(("metrics_token" = []))
)]
pub async fn scrape(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.token {
        let presented = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(token.expose_secret().as_bytes()))) {
            return ApiError::unauthorized("/metrics needs the metrics token as a bearer token").into_response();
        }
    }
    refresh(&state.store).await;
    ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render()).into_response()
}

async fn refresh(store: &Store) {
    static LAST: LazyLock<Mutex<Option<Instant>>> = LazyLock::new(|| Mutex::new(None));
    // Held across the queries: concurrent scrapes wait for one read instead of each making one.
    let mut last = LAST.lock().await;
    if last.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
        return;
    }
    match jobs::queue_states(store).await {
        Ok(queues) => metrics::set_queues(&queues),
        Err(error) => tracing::warn!(%error, "metrics: could not read the job queues"),
    }
    match connections::liveness(store).await {
        Ok((live, overdue)) => metrics::set_connections(live, overdue),
        Err(error) => tracing::warn!(%error, "metrics: could not read the connections"),
    }
    match connections::sync_lags(store).await {
        Ok(lags) => metrics::set_sync_lags(&lags),
        Err(error) => tracing::warn!(%error, "metrics: could not read the sync lags"),
    }
    *last = Some(Instant::now());
}
