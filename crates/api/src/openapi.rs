//! The OpenAPI document, generated from the handlers' annotations. `openapi.yaml` at the top of
//! the repository is this document; a test fails when they differ.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{checks, connections, data, error, health, metrics, objects};
use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Schema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "GitLab connector for Coworker",
        description = "Connects a tenant's GitLab to Coworker: connections, their status, and the synced data.",
        version = env!("CARGO_PKG_VERSION"),
        contact(name = "Coworker"),
    ),
    servers((
        url = "{public_url}",
        description = "A deployment: its PUBLIC_URL",
        variables(("public_url" = (default = "http://localhost:8080", description = "The deployment's PUBLIC_URL")))
    )),
    paths(
        health::healthz,
        health::readyz,
        connections::create,
        connections::list,
        connections::get,
        connections::update,
        connections::delete,
        connections::resync,
        connections::pause,
        connections::resume,
        checks::check,
        data::projects,
        data::commits,
        data::merge_requests,
        data::issues,
        data::notes,
        data::pipelines,
        objects::project,
        objects::commit,
        objects::merge_request,
        objects::issue,
        objects::note,
        objects::pipeline,
        data::changes,
        metrics::scrape,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, error::FieldError, data::Include)),
    modifiers(&BearerAuth, &V1Refusals, &EveryFieldSent),
    tags(
        (name = "connections", description = "A tenant's GitLab connections"),
        (name = "data", description = "The synced GitLab data, and the feed of its changes"),
        (name = "health"),
        (name = "operations", description = "For the platform's monitoring, not routed by the Ingress"),
    ),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`METRICS_TOKEN`, for the Prometheus scraper; not a tenant's JWT"))
                    .build(),
            ),
        );
    }
}

/// What every `/v1` operation has besides its own answers, documented once here for all of them:
/// the tenant's bearer token and its 401, the strict query check's 400, the tenant's request
/// budget's 429, and the server's own 500 and 503.
struct V1Refusals;

impl Modify for V1Refusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (_, item) in openapi.paths.paths.iter_mut().filter(|(path, _)| path.starts_with("/v1/")) {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                operation.security = Some(vec![SecurityRequirement::new::<_, _, &str>("bearer", [])]);
                add_response(operation, "401", crate::auth::REFUSAL);
                add_response(operation, "400", crate::strict_query::REFUSAL);
                add_response(operation, "429", crate::rate_limit::REFUSAL);
                add_response(operation, "500", crate::INTERNAL);
                add_response(operation, "503", crate::UNAVAILABLE);
            }
        }
    }
}

/// Documents `description` under `status`, after what the operation already says there.
fn add_response(operation: &mut Operation, status: &str, description: &str) {
    match operation.responses.responses.get_mut(status) {
        Some(RefOr::T(response)) => response.description = format!("{}; or {description}", response.description),
        Some(RefOr::Ref(_)) => {}
        None => {
            let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            let response = ResponseBuilder::new().description(description).content("application/json", body).build();
            operation.responses.responses.insert(status.to_owned(), RefOr::T(response));
        }
    }
}

/// The answers' objects (the `*View`, `*List` and `*Counts` schemas and those of [`WHOLE`])
/// always carry every field, an unknown value as `null`: each property is required, nullable
/// where it may be `null`, so a client's type says "`string | null`", not "maybe missing".
/// (utoipa makes an `Option` field optional, right for request bodies, not for what these
/// serialize.) The error body is not one of them: it leaves out `field` and `details` when
/// there are none.
struct EveryFieldSent;

/// The answers' objects not named `*View`, `*List` or `*Counts`.
const WHOLE: &[&str] = &["ConnectionDetail", "ConnectionCheck", "ProjectRef"];

impl Modify for EveryFieldSent {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else { return };
        let answers = components
            .schemas
            .iter_mut()
            .filter(|(name, _)| WHOLE.contains(&name.as_str()) || ["View", "List", "Counts"].iter().any(|s| name.ends_with(s)));
        for (_, schema) in answers {
            require_all(schema);
        }
    }
}

fn require_all(schema: &mut RefOr<Schema>) {
    match schema {
        RefOr::T(Schema::Object(object)) => object.required = object.properties.keys().cloned().collect(),
        RefOr::T(Schema::AllOf(all)) => all.items.iter_mut().for_each(require_all),
        _ => {}
    }
}

/// The document as committed in `openapi.yaml`.
pub fn yaml() -> String {
    ApiDoc::openapi().to_yaml().expect("the OpenAPI document serializes")
}
