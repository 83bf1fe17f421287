//! GitLab's REST API v4 routes.

mod events;
mod groups;
mod hooks;
mod meta;
mod projects;
mod records;
mod tokens;

use axum::Router;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::auth::Caller;
use crate::error::SimError;
use crate::pagination::{Origin, Params};
use crate::state::{Simulator, read};

/// What every API handler needs: the simulator, who is calling, and the request's query.
pub(crate) struct Ctx {
    pub sim: Simulator,
    pub caller: Caller,
    pub params: Params,
    pub origin: Origin,
    pub base: String,
}

impl FromRequestParts<Simulator> for Ctx {
    type Rejection = SimError;

    async fn from_request_parts(parts: &mut Parts, sim: &Simulator) -> Result<Self, Self::Rejection> {
        let caller = *parts.extensions.get::<Caller>().ok_or(SimError::Unauthorized)?;
        let Query(pairs) =
            Query::<Vec<(String, String)>>::from_request_parts(parts, sim).await.map_err(|e| SimError::BadRequest(e.body_text()))?;
        let base = read(&sim.shared.base_url).clone();
        let scheme = base.split("://").next().unwrap_or("http");
        let root = match parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            Some(host) => format!("{scheme}://{host}"),
            None => base.clone(),
        };
        Ok(Ctx { sim: sim.clone(), caller, params: Params(pairs), origin: Origin { root, path: parts.uri.path().to_string() }, base })
    }
}

pub(crate) fn json(value: Value) -> Response {
    axum::Json(value).into_response()
}

pub(crate) fn page(values: Vec<Value>, headers: HeaderMap) -> Response {
    (headers, axum::Json(Value::Array(values))).into_response()
}

pub(crate) type ApiResult = Result<Response, SimError>;

/// All API routes, authenticated. Group hooks sit behind an edition check that runs before
/// authentication, so that on CE they answer like the unknown routes they are there.
pub(crate) fn routes(sim: &Simulator) -> Router<Simulator> {
    let auth = || axum::middleware::from_fn_with_state(sim.clone(), crate::auth::authenticate);
    let core = Router::new()
        .route("/api/v4/version", get(meta::version))
        .route("/api/v4/metadata", get(meta::metadata))
        .route("/api/v4/user", get(meta::user))
        .route("/api/v4/personal_access_tokens/self", get(meta::token_self))
        .route("/api/v4/namespaces/{id}", get(meta::namespace))
        .merge(groups::routes())
        .merge(projects::routes())
        .merge(records::routes())
        .merge(events::routes())
        .merge(hooks::project_routes())
        .route_layer(auth());
    let group_hooks = hooks::group_routes().route_layer(auth()).route_layer(axum::middleware::from_fn_with_state(sim.clone(), ee_only));
    // Authenticates itself: a revoked token must reach it (see the module).
    let rotation = Router::new().route("/api/v4/personal_access_tokens/self/rotate", post(tokens::rotate_self));
    core.merge(group_hooks).merge(rotation)
}

async fn ee_only(
    axum::extract::State(sim): axum::extract::State<Simulator>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if read(&sim.shared.data).instance.edition == crate::model::Edition::Ce {
        return SimError::NoRoute.into_response();
    }
    next.run(req).await
}

pub(crate) async fn no_route() -> SimError {
    SimError::NoRoute
}
