//! The HTTP metrics middleware, for every router the binary serves.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// Counts and times each request by route template. Add it with `Router::layer` (or
/// `route_layer`), where the matched route is known; requests no route matched are counted under
/// `unmatched`, and unusual methods under `other`, so that no client can mint label values.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    crate::metrics::http_request(route.as_deref().unwrap_or("unmatched"), method, response.status().as_u16(), started.elapsed());
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
