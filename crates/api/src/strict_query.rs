//! Strict query strings: a parameter the operation does not document, or one given twice, is a
//! 400 naming it, not ignored (a typo such as `?iid=3` for a filter would otherwise answer
//! everything, as if it had filtered). What each operation takes is read from the generated
//! OpenAPI document, so the check and the contract cannot disagree.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use crate::error::{ApiError, ErrorCode};

/// The query parameters each (method, route) documents.
static DOCUMENTED: LazyLock<HashMap<(String, String), BTreeSet<String>>> = LazyLock::new(|| {
    let doc = serde_json::to_value(crate::openapi::ApiDoc::openapi()).expect("the OpenAPI document serializes");
    let mut documented = HashMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let names = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            documented.insert((method.to_uppercase(), path.clone()), names);
        }
    }
    documented
});

/// Refuses a request whose query string holds a parameter its operation does not take, or one
/// twice. Runs on matched routes only (as a route layer), which know their template.
pub async fn strict_query(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    if let (Some(route), Some(query)) = (route, request.uri().query()) {
        let known = DOCUMENTED.get(&(request.method().as_str().to_owned(), route));
        let mut seen = BTreeSet::new();
        for (name, _) in url::form_urlencoded::parse(query.as_bytes()) {
            let refusal = if !known.is_some_and(|k| k.contains(name.as_ref())) {
                let takes = known.filter(|k| !k.is_empty()).map_or("none".to_owned(), |k| k.iter().cloned().collect::<Vec<_>>().join(", "));
                Some(format!("is not a parameter of this operation (it takes: {takes})"))
            } else if !seen.insert(name.to_string()) {
                Some("is given more than once; give it once".to_owned())
            } else {
                None
            };
            if let Some(message) = refusal {
                return ApiError::about(StatusCode::BAD_REQUEST, ErrorCode::UnknownParameter, &name, message).into_response();
            }
        }
    }
    next.run(request).await
}

/// How the refusal is documented on every `/v1` operation's 400.
pub const REFUSAL: &str = "`unknown_parameter`: a query parameter this operation does not take, or one given twice (`field` names it)";
