//! The OpenAPI document, generated from the handlers' annotations. `openapi.yaml` at the top of
//! the repository is this document; a test fails when they differ.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::strict_query::Documented as StrictQuery;
use crate::{connections, data, error, health, metrics};

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
        data::projects,
        data::commits,
        data::merge_requests,
        data::issues,
        data::notes,
        data::pipelines,
        data::changes,
        metrics::scrape,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, error::FieldError)),
    modifiers(&BearerAuth, &StrictQuery),
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

/// The document as committed in `openapi.yaml`.
pub fn yaml() -> String {
    ApiDoc::openapi().to_yaml().expect("the OpenAPI document serializes")
}
