//! The REST API the Coworker frontend calls. Handlers are thin: they authenticate the tenant,
//! validate input with plain functions, and call the store inside a tenant transaction.

pub mod auth;
pub mod checks;
pub mod connections;
pub mod data;
pub mod error;
mod etag;
mod examples;
mod extract;
mod health;
mod idempotency;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod rate_limit;
mod strict_query;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use connector_store::Store;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::error::{ApiError, ErrorCode};

#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Largest request body accepted on `/v1` routes.
    pub body_limit_bytes: usize,
    /// A request still running after this is answered 503.
    pub request_timeout: Duration,
    /// Connections one tenant may have; a company connects a few GitLab accounts, and each
    /// connection costs a worker's time and GitLab requests.
    pub max_connections_per_tenant: usize,
    /// Requests per second one tenant may make to this process, sustained...
    pub requests_per_second: u32,
    /// ...and at once after a pause.
    pub request_burst: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            max_connections_per_tenant: 50,
            requests_per_second: 20,
            request_burst: 100,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub auth: Arc<Authenticator>,
    pub limits: ApiLimits,
    /// Each tenant's request budget in this process (`limits.requests_per_second`, `request_burst`).
    pub budgets: Arc<rate_limit::Budgets>,
    /// The browser origins that may call the API (`CORS_ALLOWED_ORIGINS`); none when empty.
    pub cors_origins: Vec<HeaderValue>,
    /// Which `gitlab_url`s a tenant may name (`GITLAB_URL_ALLOWLIST`): the one the worker's
    /// GitLab client connects under, so the API refuses up front what the client would refuse.
    pub gitlab_urls: gitlab_client::UrlPolicy,
    /// The preflight checks' GitLab client options and each tenant's running checks.
    pub checks: Arc<checks::Checks>,
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    // No listed origin, no CORS layer: an OPTIONS request is then a 405 like any other method a
    // route does not have, rather than a preflight answer for no one.
    let cors = (!state.cors_origins.is_empty()).then(|| cors(&state.cors_origins));
    let v1 = Router::new()
        .route("/connections", get(connections::list).post(connections::create))
        .route("/connections/{id}", get(connections::get).patch(connections::update).delete(connections::delete))
        .route("/connections/{id}/resync", post(connections::resync))
        .route("/connections/{id}/pause", post(connections::pause))
        .route("/connections/{id}/resume", post(connections::resume))
        .route("/connection-checks", post(checks::check))
        .route("/connections/{id}/projects", get(data::projects))
        .route("/connections/{id}/commits", get(data::commits))
        .route("/connections/{id}/merge_requests", get(data::merge_requests))
        .route("/connections/{id}/issues", get(data::issues))
        .route("/connections/{id}/notes", get(data::notes))
        .route("/connections/{id}/pipelines", get(data::pipelines))
        .route("/connections/{id}/projects/{project_id}", get(objects::project))
        .route("/connections/{id}/projects/{project_id}/commits/{sha}", get(objects::commit))
        .route("/connections/{id}/projects/{project_id}/merge_requests/{iid}", get(objects::merge_request))
        .route("/connections/{id}/projects/{project_id}/issues/{iid}", get(objects::issue))
        .route("/connections/{id}/projects/{project_id}/notes/{note_id}", get(objects::note))
        .route("/connections/{id}/projects/{project_id}/pipelines/{pipeline_id}", get(objects::pipeline))
        .route("/changes", get(data::changes))
        .route_layer(middleware::from_fn(strict_query::strict_query))
        // Outermost: authenticated and within its tenant's budget before anything else of the
        // request is judged, so an anonymous caller learns nothing but 401.
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes));
    let router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .nest("/v1", v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed, "method not allowed on this route")
        })
        .layer(middleware::from_fn_with_state(limits, timeout))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let request_id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str());
                    // The path only: query strings and headers stay out of the logs. The trace's
                    // span is named by the route template, which groups requests by endpoint.
                    let span = tracing::info_span!(
                        "http",
                        otel.name = %format_args!("{} {route}", req.method()),
                        otel.kind = "server",
                        method = %req.method(),
                        path = %req.uri().path(),
                        route,
                        request_id = %request_id,
                        tenant = tracing::field::Empty,
                    );
                    // A request that carries the frontend's trace context continues that trace.
                    connector_telemetry::parent_from_headers(&span, req.headers());
                    span
                }))
                // Inside the trace span, outside the panic catcher: a panic counts as its 500.
                .layer(middleware::from_fn(connector_telemetry::http::track))
                .layer(CatchPanicLayer::custom(panic_response)),
        );
    // Outermost: a browser's preflight is answered before anything else looks at it.
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Cross-origin calls from a browser: only from `origins`, with the headers the frontend sends
/// and reads.
fn cors(origins: &[HeaderValue]) -> CorsLayer {
    let name = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            name("idempotency-key"),
            name("traceparent"),
            name("tracestate"),
        ])
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::RETRY_AFTER,
            name("ratelimit-limit"),
            name("ratelimit-remaining"),
            name("ratelimit-reset"),
            name("idempotent-replayed"),
            REQUEST_ID.clone(),
        ])
        .max_age(Duration::from_secs(600))
}

/// Liveness alone, for a process that serves neither the API nor webhooks (a worker), so that it
/// can be probed and scraped like the others.
pub fn liveness_router() -> Router {
    Router::new().route("/healthz", get(health::healthz))
}

/// Answers a request that outlives its time in the API's error shape (tower-http's timeout
/// layer answers with an empty body).
/// How the server's own failures are documented on every `/v1` operation.
pub const INTERNAL: &str =
    "`internal`: the service failed (the database unreachable, a bug); nothing is said of why, and a retry may succeed";
pub const UNAVAILABLE: &str = "`timeout`: the request ran longer than the service allows (`REQUEST_TIMEOUT`) and may or may not have taken effect: retry a POST with its `Idempotency-Key`, a PATCH or DELETE with `If-Match`";

async fn timeout(State(limits): State<ApiLimits>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Timeout, "the request took too long").into_response(),
    }
}

/// A panic becomes a plain 500; its message, which could hold anything, is not echoed.
fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::internal().into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// A handler slower than the limit gets the API's error shape, not tower's empty 408. (Tested
    /// on a handler that sleeps, so that the outcome does not depend on how fast the database is.)
    #[tokio::test]
    async fn a_request_past_its_time_gets_the_error_shape() {
        let limits = ApiLimits { request_timeout: Duration::from_millis(20), ..Default::default() };
        let app = Router::new()
            .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }))
            .route("/fast", get(|| async { "ok" }))
            .layer(middleware::from_fn_with_state(limits, timeout));
        let slow = app.clone().oneshot(Request::get("/slow").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_slice(&slow.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["error"]["code"], "timeout");
        let fast = app.oneshot(Request::get("/fast").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(fast.status(), StatusCode::OK);
    }
}
