//! `openapi.yaml` is generated from the code; this fails when the committed file is stale.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test -p connector-api openapi` (or
//! `gitlab-connector openapi > openapi.yaml`).

#[test]
fn committed_openapi_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.yaml");
    let generated = connector_api::openapi::yaml();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "openapi.yaml differs from the code: run UPDATE_OPENAPI=1 cargo test -p connector-api openapi");
}

#[test]
fn every_route_is_documented_with_its_errors() {
    let doc: serde_json::Value = serde_json::to_value(<connector_api::openapi::ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let data = ["projects", "commits", "merge_requests", "issues", "notes", "pipelines"].map(|l| format!("/v1/connections/{{id}}/{l}"));
    for path in ["/healthz", "/readyz", "/v1/connections", "/v1/connections/{id}", "/v1/changes"]
        .iter()
        .copied()
        .chain(data.iter().map(String::as_str))
    {
        assert!(paths.contains_key(path), "{path} missing from the OpenAPI document");
    }
    for path in data.iter().map(String::as_str).chain(["/v1/changes"]) {
        let responses = &paths[path]["get"]["responses"];
        let mut expected = vec!["200", "401", "422"];
        if path != "/v1/changes" {
            expected.push("404");
        }
        for code in expected {
            assert!(responses.get(code).is_some(), "GET {path} does not document {code}");
        }
    }
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            for (code, response) in op["responses"].as_object().unwrap() {
                let described = response["description"].as_str().is_some_and(|d| !d.is_empty());
                assert!(described, "{method} {path} {code} has no description (OpenAPI requires one)");
            }
        }
    }
    // What the error body leaves out when empty is optional; the answers' objects send all.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["ErrorDetail"]["required"], serde_json::json!(["code", "message"]));
    assert!(schemas["ConnectionView"]["required"].as_array().unwrap().contains(&serde_json::json!("gitlab_username")));
    for (path, ops) in paths.iter().filter(|(p, _)| p.starts_with("/v1/")) {
        for (method, op) in ops.as_object().unwrap() {
            assert!(op["responses"].get("401").is_some(), "{method} {path} does not document 401");
            let bad_request = op["responses"]["400"]["description"].as_str().unwrap_or_default();
            assert!(bad_request.contains("unknown_parameter"), "{method} {path} does not document the unknown-parameter 400");
            for code in ["429", "500", "503"] {
                assert!(op["responses"].get(code).is_some(), "{method} {path} does not document {code}");
            }
            assert_eq!(op["security"][0]["bearer"], serde_json::json!([]), "{method} {path} lacks bearer security");
        }
    }
}

/// Every `$ref` names a schema the document holds (utoipa writes a reference to a type it was
/// not told to register, which the frontend's generator then refuses).
#[test]
fn every_reference_resolves() {
    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(o) => o.iter().for_each(|(k, v)| match (k.as_str(), v.as_str()) {
                ("$ref", Some(target)) => out.push(target),
                _ => refs(v, out),
            }),
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let doc: serde_json::Value = serde_json::to_value(<connector_api::openapi::ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 20, "{found:?}");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let dangling: Vec<_> =
        found.iter().filter(|r| r.strip_prefix("#/components/schemas/").is_none_or(|name| !schemas.contains_key(name))).collect();
    assert!(dangling.is_empty(), "references to nothing: {dangling:?}");
}

/// Every schema shows the frontend an example, made from the Rust value the service would send
/// (so it is what serde writes), and each validates against its schema with every reference
/// resolved (Spectral checks only the plain ones, not an `allOf` or `oneOf`); an object's example
/// names no property its schema does not (the schemas allow extra properties, the frontend's types
/// do not).
#[test]
fn every_schema_has_an_example_that_fits_it() {
    let doc: serde_json::Value = serde_json::to_value(<connector_api::openapi::ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let missing: Vec<_> = schemas.iter().filter(|(_, s)| s.get("example").is_none()).map(|(name, _)| name).collect();
    assert!(missing.is_empty(), "schemas without an example: {missing:?}");
    for (name, schema) in schemas {
        let example = &schema["example"];
        let root = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": doc["components"],
            "$ref": format!("#/components/schemas/{name}"),
        });
        let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("{name}: {e}"));
        let errors: Vec<String> = validator.iter_errors(example).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{name}'s example does not fit its schema: {errors:?}");
        if let (Some(properties), Some(example)) = (schema["properties"].as_object(), example.as_object()) {
            for key in example.keys() {
                assert!(properties.contains_key(key), "{name}'s example has {key}, which its schema does not name");
            }
        }
    }
}
