//! The GitLab token goes in and never comes out: not in a response, not in a log line.

use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;

use crate::common::{TestApp, logs};

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn the_token_appears_in_no_response_and_no_log(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let token = "glpat-LogCanary-Q9v8w7x6y5";
    let second = "glpat-SecondCanary-Z1a2b3c4";
    let mut responses = Vec::new();
    let (status, created) = app
        .call(
            Method::POST,
            "/v1/connections",
            Some("acme"),
            Some(json!({"access_token": token, "groups_list": "1", "start_date": "2024-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 201);
    let path = format!("/v1/connections/{}", created["id"].as_str().unwrap());
    responses.push(created.to_string());
    responses.push(app.call(Method::GET, &path, Some("acme"), None).await.1.to_string());
    responses.push(app.call(Method::GET, "/v1/connections", Some("acme"), None).await.1.to_string());
    responses.push(app.call(Method::PATCH, &path, Some("acme"), Some(json!({"access_token": second}))).await.1.to_string());
    // A rejected token is not echoed either.
    responses
        .push(app.call(Method::PATCH, &path, Some("acme"), Some(json!({"access_token": format!("{second} tail")}))).await.1.to_string());
    for body in &responses {
        assert!(!body.contains("Canary"), "a response holds the token: {body}");
    }
    let logs = logs().contents();
    assert!(logs.contains(&path[16..]), "the logs captured this test's requests");
    assert!(!logs.contains("Canary"), "a log line holds the token");
}
