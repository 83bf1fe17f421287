//! The crate's one error type. API variants render exactly as GitLab answers them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub type Result<T, E = SimError> = std::result::Result<T, E>;

const EXPIRED: &str = "Token is expired. You can either do re-authorization or token refresh.";
const REVOKED: &str = "Token was revoked. You have to re-authorize from the user.";
const INSUFFICIENT: &str = "The request requires higher privileges than provided by the access token.";

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("401 Unauthorized")]
    Unauthorized,
    #[error("token expired")]
    TokenExpired,
    #[error("token revoked")]
    TokenRevoked,
    #[error("insufficient scope")]
    InsufficientScope,
    #[error("403 Forbidden")]
    Forbidden,
    /// `404 {"message":"404 <what> Not Found"}`, e.g. "Project", "Group", "Commit".
    #[error("404 {0} Not Found")]
    NotFound(&'static str),
    /// The catch-all for unknown routes: `{"error":"404 Not Found"}`.
    #[error("404 route not found")]
    NoRoute,
    #[error("{0} is missing")]
    MissingParam(&'static str),
    #[error("{0} is invalid")]
    InvalidParam(&'static str),
    #[error("400 Bad request: {0}")]
    BadRequest(String),
    /// Offset pagination past the limit on an endpoint that supports keyset; names the type.
    #[error("offset pagination limit exceeded")]
    OffsetLimit(&'static str),
    #[error("keyset pagination not available for this request")]
    KeysetUnsupported,
    #[error("control API: {0}")]
    Control(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

fn bearer_challenge(error: &str, description: &str) -> HeaderValue {
    let value = format!("Bearer realm=\"Protected by OAuth 2.0\", error=\"{error}\", error_description=\"{description}\"");
    HeaderValue::from_str(&value).expect("challenge is ASCII")
}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        let (status, body, challenge) = match &self {
            // Missing, unknown or malformed token, on every API route including `/version`:
            // doc/api/rest/authentication.md ("If authentication information is not valid or is
            // missing, GitLab returns ... 401"), `unauthorized!` in lib/api/helpers.rb. Clients
            // rely on this shape to tell a GitLab from anything else before sending a token.
            SimError::Unauthorized => (StatusCode::UNAUTHORIZED, json!({"message": "401 Unauthorized"}), None),
            SimError::TokenExpired => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_token", "error_description": EXPIRED}),
                Some(bearer_challenge("invalid_token", EXPIRED)),
            ),
            SimError::TokenRevoked => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_token", "error_description": REVOKED}),
                Some(bearer_challenge("invalid_token", REVOKED)),
            ),
            // GitLab names every scope registered for the endpoint (api, read_api), whatever
            // the method: `InsufficientScopeError` maps the registered scopes to their names.
            SimError::InsufficientScope => (
                StatusCode::FORBIDDEN,
                json!({"error": "insufficient_scope", "error_description": INSUFFICIENT, "scope": "api read_api"}),
                Some(bearer_challenge("insufficient_scope", INSUFFICIENT)),
            ),
            SimError::Forbidden => (StatusCode::FORBIDDEN, json!({"message": "403 Forbidden"}), None),
            SimError::NotFound("") => (StatusCode::NOT_FOUND, json!({"message": "404 Not found"}), None),
            SimError::NotFound(what) => (StatusCode::NOT_FOUND, json!({"message": format!("404 {what} Not Found")}), None),
            // Grape's answer to a missing required parameter.
            SimError::InvalidParam(name) => (StatusCode::BAD_REQUEST, json!({"error": format!("{name} is invalid")}), None),
            SimError::MissingParam(name) => (StatusCode::BAD_REQUEST, json!({"error": format!("{name} is missing")}), None),
            SimError::NoRoute => (StatusCode::NOT_FOUND, json!({"error": "404 Not Found"}), None),
            SimError::BadRequest(msg) => (StatusCode::BAD_REQUEST, json!({"message": format!("400 (Bad request) {msg}")}), None),
            // lib/api/helpers/pagination_strategies.rb: offset pagination beyond
            // `offset_pagination_limit` on keyset-capable endpoints is refused with Grape's
            // `error!(..., 405)`, whose body key is `error` (GitLab's specs assert on it).
            SimError::OffsetLimit(kind) => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": format!("Offset pagination has a maximum allowed offset of {} for requests that return objects of type {kind}. Remaining records can be retrieved using keyset pagination.", crate::pagination::MAX_OFFSET)}),
                None,
            ),
            SimError::KeysetUnsupported => {
                (StatusCode::METHOD_NOT_ALLOWED, json!({"error": "Keyset pagination is not yet available for this type of request"}), None)
            }
            SimError::Control(msg) => (StatusCode::UNPROCESSABLE_ENTITY, json!({"error": msg}), None),
            SimError::Io(_) | SimError::Json(_) | SimError::Http(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, json!({"message": "500 Internal Server Error"}), None)
            }
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(challenge) = challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}
