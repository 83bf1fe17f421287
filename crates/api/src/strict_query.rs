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
use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

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

/// Documents the refusal as a 400 of every `/v1` operation.
pub struct Documented;

const REFUSAL: &str = "`unknown_parameter`: a query parameter this operation does not take, or one given twice (`field` names it)";

impl utoipa::Modify for Documented {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (_, item) in openapi.paths.paths.iter_mut().filter(|(path, _)| path.starts_with("/v1/")) {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                document(operation);
            }
        }
    }
}

fn document(operation: &mut Operation) {
    match operation.responses.responses.get_mut("400") {
        Some(RefOr::T(response)) => response.description = format!("{}; or {REFUSAL}", response.description),
        Some(RefOr::Ref(_)) => {}
        None => {
            let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            let response = ResponseBuilder::new().description(REFUSAL).content("application/json", body).build();
            operation.responses.responses.insert("400".to_owned(), RefOr::T(response));
        }
    }
}
