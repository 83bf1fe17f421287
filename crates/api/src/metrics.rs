//! `GET /metrics`: the process's Prometheus metrics, served on the same listener as the API and
//! the webhook endpoint (the Ingress does not route it: it is for the in-cluster scraper).

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use connector_store::{Store, connections, jobs};
use connector_telemetry::metrics;
use tokio::sync::Mutex;

/// The database gauges are read at most this often, however often (or by whom) `/metrics` is
/// fetched: each read is two queries across tenants.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

pub fn router(store: Store) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(store)
}

/// Every metric of this process in Prometheus' text format; the queue and connection gauges
/// are read from the database first (or kept from the last read when the database fails).
#[utoipa::path(
    get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String))
)]
pub async fn scrape(State(store): State<Store>) -> impl IntoResponse {
    refresh(&store).await;
    ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render())
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
        Ok(lags) => metrics::set_sync_lags(&lags.into_iter().map(|(id, lag)| (id.to_string(), lag)).collect::<Vec<_>>()),
        Err(error) => tracing::warn!(%error, "metrics: could not read the sync lags"),
    }
    *last = Some(Instant::now());
}
