//! Token authentication, scopes and the per-token rate limit, as one route layer.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::SimError;
use crate::state::{Simulator, lock, read};

/// The authenticated user behind a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: u64,
    pub token_id: u64,
}

/// The token from the `PRIVATE-TOKEN` header, the `private_token` query parameter, or an
/// `Authorization: Bearer` header: the three ways doc/api/rest/authentication.md gives for a
/// personal access token.
pub(crate) fn presented_token(req: &Request) -> Option<String> {
    let headers = req.headers();
    if let Some(v) = headers.get("private-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    let from_query = req
        .uri()
        .query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "private_token").map(|(_, v)| v.trim().to_string()));
    if from_query.is_some() {
        return from_query;
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, value) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| value.trim().to_string())
}

fn resolve(sim: &Simulator, req: &Request) -> Result<Caller, SimError> {
    let value = presented_token(req).ok_or(SimError::Unauthorized)?;
    let ds = read(&sim.shared.data);
    let token = ds.token_by_value(&value).ok_or(SimError::Unauthorized)?;
    if token.revoked {
        return Err(SimError::TokenRevoked);
    }
    // A token expires at the start of its `expires_at` day (UTC).
    if token.expires_at.is_some_and(|d| d <= chrono::Utc::now().date_naive()) {
        return Err(SimError::TokenExpired);
    }
    // lib/api/api.rb: `api` allows everything; `read_api` only GET and HEAD.
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    let allowed = token.scopes.iter().any(|s| s == "api" || (s == "read_api" && read_only));
    if !allowed {
        return Err(SimError::InsufficientScope);
    }
    Ok(Caller { user_id: token.user_id, token_id: token.id })
}

pub(crate) async fn authenticate(State(sim): State<Simulator>, mut req: Request, next: Next) -> Response {
    let caller = match resolve(&sim, &req) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let config = read(&sim.shared.config).rate_limit.clone();
    let now = chrono::Utc::now().timestamp() as u64;
    let verdict = lock(&sim.shared.limiter).check(caller.token_id, &config, now);
    if let Some(v) = &verdict
        && !v.allowed
    {
        lock(&sim.shared.stats).rate_limited += 1;
        let mut response = (StatusCode::TOO_MANY_REQUESTS, [(header::CONTENT_TYPE, "text/plain")], "Retry later\n").into_response();
        v.apply(response.headers_mut());
        return response;
    }
    req.extensions_mut().insert(caller);
    let mut response = next.run(req).await;
    if let Some(v) = verdict {
        v.apply(response.headers_mut());
    }
    response
}
