use gitlab_sim::*;
use serde_json::json;

use crate::common::start;

#[tokio::test]
async fn token_errors_have_gitlabs_status_and_body() {
    let sim = start(SimConfig::default()).await;
    let r = sim.get("glpat-nope", "/api/v4/user").await;
    assert_eq!((r.status, r.body.clone()), (401, json!({"message": "401 Unauthorized"})));
    assert!(r.headers.get("ratelimit-limit").is_none());

    let r = sim.get(TOKEN_EXPIRED, "/api/v4/user").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body,
        json!({"error": "invalid_token", "error_description": "Token is expired. You can either do re-authorization or token refresh."})
    );
    assert!(r.headers["www-authenticate"].to_str().unwrap().starts_with("Bearer "));

    let r = sim.get(TOKEN_REVOKED, "/api/v4/user").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error_description"], "Token was revoked. You have to re-authorize from the user.");

    let r = sim.http.get(sim.url("/api/v4/user")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Bearer works like PRIVATE-TOKEN.
    let r = sim.http.get(sim.url("/api/v4/user")).bearer_auth(TOKEN_OWNER).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["id"], OWNER_USER);
}

#[tokio::test]
async fn read_api_token_reads_but_cannot_write() {
    let sim = start(SimConfig::default()).await;
    assert_eq!(sim.get(TOKEN_OWNER_READ, "/api/v4/projects/1").await.status, 200);
    let r = sim.send(reqwest::Method::POST, TOKEN_OWNER_READ, "/api/v4/projects/1/hooks", json!({"url": "http://127.0.0.1:9/x"})).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["error"], "insufficient_scope");
    assert_eq!(r.body["scope"], "api read_api");
    assert_eq!(r.body["error_description"], "The request requires higher privileges than provided by the access token.");
}

#[tokio::test]
async fn visibility_permissions_and_unknown_routes() {
    let sim = start(SimConfig::default()).await;
    // The developer only belongs to the first group: private projects elsewhere are 404.
    let hidden = sim.handle.sim.with_dataset(|ds| {
        ds.projects
            .iter()
            .find(|p| p.visibility == Visibility::Private && ds.project_access(DEVELOPER_USER, p).is_none())
            .map(|p| p.id)
            .unwrap()
    });
    let r = sim.get(TOKEN_DEVELOPER, &format!("/api/v4/projects/{hidden}")).await;
    assert_eq!((r.status, r.body.clone()), (404, json!({"message": "404 Project Not Found"})));
    let r = sim.get(TOKEN_DEVELOPER, "/api/v4/groups/999999").await;
    assert_eq!((r.status, r.body.clone()), (404, json!({"message": "404 Group Not Found"})));
    let r = sim.get(TOKEN_OWNER, "/api/v4/no/such/route").await;
    assert_eq!((r.status, r.body.clone()), (404, json!({"error": "404 Not Found"})));
    // Developer in group 1 may read project 1 but not administer its hooks.
    let r = sim.get(TOKEN_DEVELOPER, "/api/v4/projects/1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["permissions"]["group_access"]["access_level"], 30);
    let r = sim.send(reqwest::Method::POST, TOKEN_DEVELOPER, "/api/v4/projects/1/hooks", json!({"url": "http://127.0.0.1:9/x"})).await;
    assert_eq!((r.status, r.body.clone()), (403, json!({"message": "403 Forbidden"})));

    let r = sim.get(TOKEN_OWNER, "/api/v4/personal_access_tokens/self").await;
    assert_eq!(r.body["scopes"], json!(["api"]));
    assert_eq!(r.body["active"], true);
}

#[tokio::test]
async fn a_token_in_the_private_token_parameter_authenticates() {
    let sim = start(SimConfig::default()).await;
    let r = sim.http.get(sim.url(&format!("/api/v4/user?private_token={TOKEN_DEVELOPER}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["id"], DEVELOPER_USER);
    let r = sim.http.get(sim.url("/api/v4/user?private_token=glpat-nope")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// No token at all, as a client asks before it trusts a URL with one: GitLab's 401 body on every
/// route, `/version` included (doc/api/rest/authentication.md).
#[tokio::test]
async fn no_token_is_gitlabs_401_on_version_too() {
    let sim = start(SimConfig::default()).await;
    for path in ["/api/v4/version", "/api/v4/user", "/api/v4/projects/1"] {
        let response = sim.http.get(sim.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(response.json::<serde_json::Value>().await.unwrap(), json!({"message": "401 Unauthorized"}), "{path}");
    }
}

/// `POST /personal_access_tokens/self/rotate` as doc/api/personal_access_tokens.md has it: the
/// old token revoked, a new one returned once (a week by default, or `expires_at`), refusals
/// that rotate nothing, and a rotated token presented again revoking its whole family.
#[tokio::test]
async fn a_token_rotates_itself_and_reuse_revokes_its_family() {
    let sim = start(SimConfig::default()).await;
    let rotate = "/api/v4/personal_access_tokens/self/rotate";
    let today = chrono::Utc::now().date_naive();

    let r = sim.send(reqwest::Method::POST, TOKEN_OWNER_READ, rotate, json!({})).await;
    assert_eq!(r.status, 403, "read_api may not rotate itself: {:?}", r.body);
    for bad in ["tomorrow", "2000-01-01", &(today + chrono::Duration::days(400)).to_string()] {
        let r = sim.send(reqwest::Method::POST, TOKEN_OWNER, rotate, json!({"expires_at": bad})).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
    assert_eq!(sim.get(TOKEN_OWNER, "/api/v4/user").await.status, 200, "refusals rotate nothing");

    let wanted = today + chrono::Duration::days(90);
    let r = sim.send(reqwest::Method::POST, TOKEN_OWNER, rotate, json!({"expires_at": wanted.to_string()})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["expires_at"], wanted.to_string());
    assert_eq!((r.body["scopes"].clone(), r.body["user_id"].clone()), (json!(["api"]), json!(OWNER_USER)));
    let first = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(sim.get(TOKEN_OWNER, "/api/v4/user").await.status, 401, "the old token is revoked");
    assert_eq!(sim.get(&first, "/api/v4/user").await.status, 200);

    // Without a date: one week.
    let r = sim.send(reqwest::Method::POST, &first, rotate, json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["expires_at"], (today + chrono::Duration::days(7)).to_string());
    let second = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(sim.handle.sim.stats().token_rotations, 2);

    // The first token presented again: refused, and its family, the live second one included, revoked.
    let r = sim.send(reqwest::Method::POST, &first, rotate, json!({})).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(sim.get(&second, "/api/v4/user").await.status, 401, "the family is revoked");
    assert_eq!(sim.handle.sim.stats().token_rotations, 2);
    // Another family is untouched.
    assert_eq!(sim.get(TOKEN_DEVELOPER, "/api/v4/user").await.status, 200);
    assert_eq!(sim.send(reqwest::Method::POST, TOKEN_EXPIRED, rotate, json!({})).await.status, 401);
}

/// The two points a rotation's client can be cut off at: while its request is held before
/// GitLab looks at it, nothing is rotated (the held request ends with its connection, even once
/// the hold is over); while its answer is held, GitLab has rotated and the new token is lost.
#[tokio::test]
async fn a_rotation_given_up_before_gitlab_looked_rotates_nothing_and_after_loses_the_new_token() {
    let sim = start(SimConfig::default()).await;
    let rotate = "/api/v4/personal_access_tokens/self/rotate";
    let hold = std::time::Duration::from_millis(600);
    let given_up = |token: &str| {
        let request = sim.http.post(sim.url(rotate)).bearer_auth(token).json(&json!({}));
        async move { request.timeout(hold / 3).send().await.unwrap_err().is_timeout() }
    };
    let rotations = || sim.handle.sim.stats().token_rotations;

    sim.handle.sim.update_config(|c| c.faults.rotation_request_delay_ms = hold.as_millis() as u64);
    assert!(given_up(TOKEN_OWNER).await);
    tokio::time::sleep(hold).await;
    assert_eq!((sim.handle.sim.stats().rotation_requests_held, rotations()), (1, 0));
    assert_eq!(sim.get(TOKEN_OWNER, "/api/v4/user").await.status, 200, "the token was never rotated");
    // A client that waits out the hold gets its rotation.
    let r = sim.send(reqwest::Method::POST, TOKEN_OWNER, rotate, json!({})).await;
    assert_eq!((r.status, rotations()), (200, 1), "{:?}", r.body);
    let first = r.body["token"].as_str().unwrap().to_owned();

    sim.handle.sim.update_config(|c| {
        c.faults.rotation_request_delay_ms = 0;
        c.faults.rotation_answer_delay_ms = hold.as_millis() as u64;
    });
    assert!(given_up(&first).await);
    assert_eq!(rotations(), 2, "rotated before the answer was held");
    assert_eq!(sim.get(&first, "/api/v4/user").await.status, 401, "revoked, its successor never received");
}
