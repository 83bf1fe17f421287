//! Injected latency and failures, and per-route request counting.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Notify;

use crate::state::{Simulator, lock, read};

/// Lets a handler close its HTTP connection without answering; set by the server per connection.
#[derive(Clone)]
pub(crate) struct ConnKill(pub Arc<Notify>);

enum Fault {
    None,
    Error(u16),
    Slow(u64),
    Drop,
}

fn hits(every: Option<u64>, n: u64) -> bool {
    every.is_some_and(|e| e > 0 && n.is_multiple_of(e))
}

fn decide(sim: &Simulator) -> (u64, Fault) {
    let n = sim.shared.request_count.fetch_add(1, Ordering::Relaxed) + 1;
    let config = read(&sim.shared.config);
    let (latency, f) = (&config.latency, &config.faults);
    let mut rng = lock(&sim.shared.rng);
    let delay = rng.range(latency.min_ms, latency.max_ms.max(latency.min_ms));
    let fault = if hits(f.drop_every, n) || rng.chance(f.drop_rate) {
        Fault::Drop
    } else if hits(f.error_every, n) || rng.chance(f.error_rate) {
        let statuses = if f.error_statuses.is_empty() { &[500][..] } else { &f.error_statuses[..] };
        Fault::Error(*rng.pick(statuses))
    } else if hits(f.slow_every, n) || rng.chance(f.slow_rate) {
        Fault::Slow(f.slow_ms)
    } else {
        Fault::None
    };
    (delay, fault)
}

pub(crate) async fn inject(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let (delay, fault) = decide(&sim);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    match fault {
        Fault::None => next.run(req).await,
        Fault::Slow(ms) => {
            lock(&sim.shared.stats).injected_slow += 1;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(req).await
        }
        Fault::Error(code) => {
            lock(&sim.shared.stats).injected_errors += 1;
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = format!("{} {}", code, status.canonical_reason().unwrap_or("Error"));
            (status, axum::Json(json!({"message": message}))).into_response()
        }
        Fault::Drop => {
            lock(&sim.shared.stats).dropped_connections += 1;
            match req.extensions().get::<ConnKill>() {
                Some(kill) => {
                    kill.0.notify_one();
                    std::future::pending().await
                }
                // Without a connection to close (router used in-process) the closest is a 502.
                None => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    }
}

pub(crate) async fn track(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("(unmatched)".to_string(), |m| m.as_str().to_string());
    let response = next.run(req).await;
    lock(&sim.shared.stats).record(&route, response.status().as_u16());
    response
}
