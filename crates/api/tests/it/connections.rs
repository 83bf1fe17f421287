use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{TestApp, assert_error, valid_connection};

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn create_read_update_list_delete(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let (status, created) = app.call(Method::POST, "/v1/connections", Some("acme"), Some(valid_connection())).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["groups_list"], json!([123, 456]));
    assert_eq!(created["projects_list"], json!(["12", "acme/backend"]));
    assert_eq!(created["start_date"], "2024-01-01T00:00:00Z");
    assert_eq!(created["gitlab_url"], "https://gitlab.com");
    assert_eq!(created["token_hint"], "qrst");
    assert!(created.get("access_token").is_none());
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, got) = app.call(Method::GET, &format!("/v1/connections/{id}"), Some("acme"), None).await;
    assert_eq!(status, 200);
    assert_eq!(view(&got), created);
    assert_eq!(got["progress"]["projects_total"], 0);
    assert_eq!(got["hooks"], json!([]));
    assert_eq!(got["failed_jobs"], json!([]));
    // Creating queued the validation, in the same transaction.
    assert_eq!(queued_jobs(&app, "validate").await, 1);

    let (status, patched) = app
        .call(
            Method::PATCH,
            &format!("/v1/connections/{id}"),
            Some("acme"),
            Some(json!({"access_token": "glpat-zyxwvutsrqponmlkjihg", "projects_list": "", "groups_list": [789]})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["token_hint"], "jihg");
    assert_eq!(patched["projects_list"], json!([]));
    assert_eq!(patched["groups_list"], json!([789]));
    assert_eq!(patched["start_date"], created["start_date"], "untouched fields stay");
    assert_eq!(patched["status"], "pending");

    let (status, list) = app.call(Method::GET, "/v1/connections", Some("acme"), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0], patched);
    assert_eq!(list["next_cursor"], Value::Null);

    assert_eq!(queued_jobs(&app, "validate").await, 2, "a change is validated again");

    // Deleting first removes our hooks from GitLab (a worker job), then the connection.
    let (status, body) = app.call(Method::DELETE, &format!("/v1/connections/{id}"), Some("acme"), None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "deleting");
    assert_eq!(queued_jobs(&app, "disconnect").await, 1);
    let (status, body) = app.call(Method::PATCH, &format!("/v1/connections/{id}"), Some("acme"), Some(json!({"groups_list": "1"}))).await;
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "conflict");
}

/// The connection fields of a detail answer.
fn view(detail: &Value) -> Value {
    let mut v = detail.clone();
    for key in ["progress", "hooks", "skipped", "failed_jobs"] {
        v.as_object_mut().unwrap().remove(key);
    }
    v
}

/// Jobs of `kind` waiting in the queue.
async fn queued_jobs(app: &TestApp, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'kind' = $1")
        .bind(kind)
        .fetch_one(&app.owner)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn pages_follow_creation_order(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_, c) = app.call(Method::POST, "/v1/connections", Some("acme"), Some(valid_connection())).await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut path = "/v1/connections?limit=2".to_owned();
    loop {
        let (status, page) = app.call(Method::GET, &path, Some("acme"), None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/connections?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    for bad in ["limit=0", "limit=101", "limit=abc", "cursor=nope"] {
        let (status, body) = app.call(Method::GET, &format!("/v1/connections?{bad}"), Some("acme"), None).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_error(&body, "validation_failed");
        assert!(body["error"]["field"].is_string());
    }
    // A parameter given twice is refused before its value is read, naming it.
    let (status, body) = app.call(Method::GET, "/v1/connections?limit=1&limit=2", Some("acme"), None).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "unknown_parameter");
    assert_eq!(body["error"]["field"], "limit");
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn bad_input_is_named_and_loses_nothing(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let cases = [
        (json!({"groups_list": "1", "start_date": "2024-01-01T00:00:00Z"}), "access_token", "is required"),
        (json!({"access_token": "", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z"}), "access_token", "empty"),
        (json!({"access_token": "glpat-x y", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z"}), "access_token", "spaces"),
        (json!({"access_token": "t", "groups_list": "1, 2", "start_date": "2024-01-01T00:00:00Z"}), "groups_list", "without spaces"),
        (json!({"access_token": "t", "groups_list": "abc", "start_date": "2024-01-01T00:00:00Z"}), "groups_list", "not a group id"),
        (json!({"access_token": "t", "groups_list": "1", "start_date": "2024-01-01"}), "start_date", "time zone"),
        (json!({"access_token": "t", "groups_list": "1", "start_date": "2024-01-01T00:00:00"}), "start_date", "time zone"),
        (
            json!({"access_token": "t", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "projects_list": "a b"}),
            "projects_list",
            "without spaces",
        ),
        (
            json!({"access_token": "t", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": "gitlab"}),
            "gitlab_url",
            "not a URL",
        ),
        (json!({"access_token": "t", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "group": 1}), "group", "unknown field"),
        // What a paste can carry along, and an HTTP header cannot hold: refused, not sent empty.
        (
            json!({"access_token": "glpat-abc\u{200b}def", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z"}),
            "access_token",
            "printable ASCII",
        ),
        (
            json!({"access_token": "glpat-äbcdef", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z"}),
            "access_token",
            "printable ASCII",
        ),
        // Dates no GitLab data has, which would be echoed back as year -1.
        (json!({"access_token": "t", "groups_list": "1", "start_date": "0000-01-01T00:00:00+23:59"}), "start_date", "1970"),
        (json!({"access_token": "t", "groups_list": "1", "start_date": "1900-01-01T00:00:00Z"}), "start_date", "1970"),
        (
            json!({"access_token": "t", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": format!("https://gitlab.example.com/{}", "a".repeat(60_000))}),
            "gitlab_url",
            "longer than",
        ),
    ];
    for (body, field, needle) in cases {
        let (status, resp) = app.call(Method::POST, "/v1/connections", Some("acme"), Some(body.clone())).await;
        assert_eq!(status, 422, "{body}: {resp}");
        assert_error(&resp, "validation_failed");
        assert_eq!(resp["error"]["field"], field, "{body}: {resp}");
        assert!(resp["error"]["details"][0]["message"].as_str().unwrap().contains(needle), "{body}: {resp}");
    }

    // Not JSON, not an object, no content type, too large: each its own clear answer.
    let raw = |body: &'static str, content_type: Option<&'static str>| {
        let mut req = app.http.post(app.url("/v1/connections")).bearer_auth(app.token("acme")).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req
    };
    let resp = raw("{not json", Some("application/json")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_error(&resp.json().await.unwrap(), "invalid_json");
    let resp = raw("[1,2]", Some("application/json")).send().await.unwrap();
    assert_eq!(resp.status(), 422);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["field"], "body");
    let resp = raw("{}", None).send().await.unwrap();
    assert_eq!(resp.status(), 415);
    assert_error(&resp.json().await.unwrap(), "unsupported_media_type");
    let huge = json!({"access_token": "x".repeat(100 * 1024), "groups_list": "1", "start_date": "2024-01-01T00:00:00Z"});
    let (status, resp) = app.call(Method::POST, "/v1/connections", Some("acme"), Some(huge)).await;
    assert_eq!(status, 413, "{resp}");
    assert_error(&resp, "payload_too_large");

    // Nothing of the above was stored.
    let (_, list) = app.call(Method::GET, "/v1/connections", Some("acme"), None).await;
    assert_eq!(list["items"], json!([]));

    // A bad PATCH changes nothing either.
    let (_, created) = app.call(Method::POST, "/v1/connections", Some("acme"), Some(valid_connection())).await;
    let path = format!("/v1/connections/{}", created["id"].as_str().unwrap());
    for (body, field) in [
        (json!({}), "body"),
        (json!({"gitlab_url": "https://other.example"}), "gitlab_url"),
        (json!({"groups_list": "1,,2", "start_date": "2024-02-01T00:00:00Z"}), "groups_list"),
    ] {
        let (status, resp) = app.call(Method::PATCH, &path, Some("acme"), Some(body.clone())).await;
        assert_eq!(status, 422, "{body}: {resp}");
        assert_eq!(resp["error"]["field"], field, "{resp}");
    }
    let (_, after) = app.call(Method::GET, &path, Some("acme"), None).await;
    assert_eq!(view(&after), created);
}

/// Tenant B can neither read, change, delete nor learn of tenant A's connection: every answer is
/// the one a missing id gets.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn another_tenant_gets_exactly_what_a_missing_id_gets(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let (_, a) = app.call(Method::POST, "/v1/connections", Some("tenant-a"), Some(valid_connection())).await;
    let a_path = format!("/v1/connections/{}", a["id"].as_str().unwrap());
    let missing_path = format!("/v1/connections/{}", uuid::Uuid::now_v7());

    for (method, body) in [(Method::GET, None), (Method::PATCH, Some(json!({"groups_list": "1"}))), (Method::DELETE, None)] {
        let foreign = app.call(method.clone(), &a_path, Some("tenant-b"), body.clone()).await;
        let missing = app.call(method.clone(), &missing_path, Some("tenant-b"), body).await;
        assert_eq!(foreign.0, 404, "{method} {foreign:?}");
        assert_eq!(foreign, missing, "{method}: a foreign id must look exactly like a missing one");
    }
    let (_, list) = app.call(Method::GET, "/v1/connections", Some("tenant-b"), None).await;
    assert_eq!(list["items"], json!([]));
    // A's cursor walks B's own (empty) list, not A's.
    let (_, list) = app.call(Method::GET, &format!("/v1/connections?cursor={}", uuid::Uuid::nil()), Some("tenant-b"), None).await;
    assert_eq!(list["items"], json!([]));

    let (status, still) = app.call(Method::GET, &a_path, Some("tenant-a"), None).await;
    assert_eq!(status, 200);
    assert_eq!(view(&still), a, "tenant B's attempts changed tenant A's connection");
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn routes_ids_and_request_ids(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let (status, body) = app.call(Method::GET, "/v1/connections/not-a-uuid", Some("acme"), None).await;
    assert_eq!(status, 404);
    assert_error(&body, "not_found");
    let (status, body) = app.call(Method::GET, "/v1/nothing-here", Some("acme"), None).await;
    assert_eq!(status, 404);
    assert_error(&body, "not_found");
    let (status, body) = app.call(Method::PUT, "/v1/connections", Some("acme"), None).await;
    assert_eq!(status, 405);
    assert_error(&body, "method_not_allowed");

    let resp = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID request id: {generated}");
    let resp = app.http.get(app.url("/readyz")).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn readyz_fails_when_the_database_is_not_migrated(owner: PgPool) {
    let app = TestApp::spawn(owner.clone()).await;
    sqlx::query("DELETE FROM _sqlx_migrations").execute(&owner).await.unwrap();
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 503);
    assert_error(&body, "not_ready");
    let (status, _) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200, "liveness does not depend on the database");
}

/// A live connection that is not keeping up says so, with each reason and since when: a hook
/// GitLab disabled, catch-ups failing, a catch-up long past due. A token about to expire is a
/// warning, shown ahead of time. A failed connection is resynced by one call, which a double
/// click does not repeat.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn health_shows_why_a_live_connection_is_not_keeping_up_and_resync_starts_over(owner: PgPool) {
    use connector_store::connections::{self, HookTarget, Status, Validated};
    use connector_store::jobs::{Envelope, Job};
    use connector_store::{TenantId, dead_letters, hooks};

    let app = TestApp::spawn(owner).await;
    let (_, created) = app.call(Method::POST, "/v1/connections", Some("acme"), Some(valid_connection())).await;
    assert_eq!(created["health"], json!({"state": "healthy", "reasons": []}));
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let path = format!("/v1/connections/{id}");
    let expires = (chrono::Utc::now() + chrono::Duration::days(3)).date_naive();

    let mut tx = app.store.tenant_tx(&TenantId::parse("acme").unwrap()).await.unwrap();
    let validated = Validated {
        gitlab_user_id: 7,
        gitlab_username: "bot".into(),
        token_expires_at: Some(expires),
        hook_mode: connector_store::connections::HookMode::Group,
        hook_targets: vec![HookTarget { scope: connector_store::hooks::HookScope::Group, id: 123 }],
        resolved_project_ids: vec![1],
        notice: None,
    };
    connections::record_validation(&mut tx, id, &validated).await.unwrap();
    let (hook, _) = hooks::ensure(&mut tx, app.store.keys(), id, connector_store::hooks::HookScope::Group, 123).await.unwrap();
    hooks::set_installed(&mut tx, hook.id, 900, true).await.unwrap();
    connections::mark_live(&mut tx, id, chrono::Duration::minutes(15)).await.unwrap();
    tx.commit().await.unwrap();
    let (_, live) = app.call(Method::GET, &path, Some("acme"), None).await;
    assert_eq!(live["status"], "live");
    assert_eq!(live["health"]["state"], "warning", "{live}");
    assert_eq!(live["health"]["reasons"][0]["code"], "token_expiring");
    assert!(live["health"]["reasons"][0]["message"].as_str().unwrap().contains(&expires.to_string()));

    let mut tx = app.store.tenant_tx(&TenantId::parse("acme").unwrap()).await.unwrap();
    hooks::set_status(&mut tx, hook.id, connector_store::hooks::HookStatus::Disabled, Some("GitLab disabled this hook")).await.unwrap();
    connections::record_sync_failure(&mut tx, id, "GitLab answered 503").await.unwrap();
    dead_letters::insert(&mut tx, &Envelope::new("acme".into(), Job::CatchUp { connection: id }), "GitLab answered 503").await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = app.store.tenant_tx(&TenantId::parse("acme").unwrap()).await.unwrap();
    let delivery = connector_store::deliveries::NewDelivery {
        connection_id: id,
        hook_id: hook.id,
        dedup_key: "waiting",
        event: Some("Issue Hook"),
        headers: json!({}),
        body: b"{}",
        kept_aside: None,
        traceparent: None,
    };
    connector_store::deliveries::insert(&mut tx, &delivery).await.unwrap();
    tx.commit().await.unwrap();
    sqlx::query("UPDATE gitlab_connections SET next_catch_up_at = now() - interval '1 hour' WHERE id = $1")
        .bind(id)
        .execute(&app.owner)
        .await
        .unwrap();
    sqlx::query("UPDATE webhook_deliveries SET received_at = now() - interval '30 minutes' WHERE connection_id = $1")
        .bind(id)
        .execute(&app.owner)
        .await
        .unwrap();
    // Checked again later: the hook's "since" is when it became disabled, not when last checked.
    let mut tx = app.store.tenant_tx(&TenantId::parse("acme").unwrap()).await.unwrap();
    let disabled_since: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT status_since FROM webhook_hooks WHERE id = $1").bind(hook.id).fetch_one(&app.owner).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    hooks::set_status(&mut tx, hook.id, connector_store::hooks::HookStatus::Disabled, Some("GitLab disabled this hook")).await.unwrap();
    tx.commit().await.unwrap();

    let (_, behind) = app.call(Method::GET, &path, Some("acme"), None).await;
    assert_eq!(behind["status"], "live");
    assert_eq!(behind["health"]["state"], "degraded", "{behind}");
    let reasons = behind["health"]["reasons"].as_array().unwrap();
    let codes: Vec<&str> = reasons.iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["token_expiring", "sync_behind", "deliveries_backlog", "hook_disabled", "sync_failing"], "oldest first: {behind}");
    assert!(reasons[2]["message"].as_str().unwrap().starts_with("1 received webhook delivery waits"), "{}", reasons[2]);
    let hook_reason = &reasons[3];
    assert_eq!(hook_reason["since"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap(), disabled_since);
    assert!(hook_reason["message"].as_str().unwrap().contains("group 123"), "{hook_reason}");
    assert!(reasons[4]["message"].as_str().unwrap().contains("GitLab answered 503"));
    let (_, list) = app.call(Method::GET, "/v1/connections", Some("acme"), None).await;
    assert_eq!(list["items"][0]["health"], behind["health"], "the list shows the same health");

    // A step gave up: the connection is failed and says to resync; one resync starts over.
    let mut tx = app.store.tenant_tx(&TenantId::parse("acme").unwrap()).await.unwrap();
    connections::set_status(&mut tx, id, Status::Failed, Some("the backfill stopped after 8 attempts")).await.unwrap();
    tx.commit().await.unwrap();
    // The validation queued at creation has run.
    sqlx::query("DELETE FROM apalis.jobs").execute(&app.owner).await.unwrap();
    for _ in 0..2 {
        let (status, resynced) = app.call(Method::POST, &format!("{path}/resync"), Some("acme"), None).await;
        assert_eq!(status, 202, "{resynced}");
        assert_eq!(resynced["status"], "pending");
        assert_eq!(resynced["status_message"], Value::Null);
    }
    assert_eq!(queued_jobs(&app, "validate").await, 1, "a double click queues one validation");
    let (_, detail) = app.call(Method::GET, &path, Some("acme"), None).await;
    assert_eq!(detail["failed_jobs"], json!([]), "what the resync runs again is no longer shown as failed");

    let (status, _) = app.call(Method::DELETE, &path, Some("acme"), None).await;
    assert_eq!(status, 202);
    let (status, body) = app.call(Method::POST, &format!("{path}/resync"), Some("acme"), None).await;
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "conflict");
}

/// A double click or a client retry after a timeout sends the same POST again. With one
/// `Idempotency-Key`, 20 concurrent creations make one connection and queue one validation, and
/// every answer is the first one's 201 with its `Location`; the key with another body, or on
/// another route, is a 422 naming the header. Keys are per tenant.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn one_idempotency_key_creates_one_connection(owner: PgPool) {
    let app = std::sync::Arc::new(TestApp::spawn(owner).await);
    let key = "7f1c9b2e-create-connection-form";
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let app = app.clone();
        posts.spawn(async move {
            app.call_with(Method::POST, "/v1/connections", Some("acme"), Some(valid_connection()), &[("idempotency-key", key)]).await
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = posts.join_next().await {
        answers.push(answer.unwrap());
    }
    let ids: std::collections::BTreeSet<String> =
        answers.iter().map(|(_, body, _)| body["id"].as_str().unwrap_or("none").to_owned()).collect();
    let statuses: std::collections::BTreeSet<u16> = answers.iter().map(|(status, _, _)| *status).collect();
    let connections: i64 =
        sqlx::query_scalar("SELECT count(*) FROM gitlab_connections WHERE tenant_id = 'acme'").fetch_one(&app.owner).await.unwrap();
    println!(
        "idempotency: 20 concurrent POSTs with one key: statuses {statuses:?}, {} distinct ids, {connections} connections stored",
        ids.len()
    );
    assert_eq!(statuses, [201].into());
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(connections, 1);
    assert_eq!(queued_jobs(&app, "validate").await, 1);
    let id = ids.into_iter().next().unwrap();
    let first = &answers[0].1;
    for (_, body, headers) in &answers {
        assert_eq!(body, first, "a replay answers what the first did");
        assert_eq!(headers.get("location").and_then(|v| v.to_str().ok()), Some(format!("/v1/connections/{id}").as_str()));
    }

    // The same key with another body, or on another route: refused, nothing made.
    let mut other = valid_connection();
    other["groups_list"] = json!("999");
    let (status, body, _) = app.call_with(Method::POST, "/v1/connections", Some("acme"), Some(other), &[("idempotency-key", key)]).await;
    assert_eq!(status, 422, "{body}");
    assert_error(&body, "idempotency_key_reused");
    assert_eq!(body["error"]["details"][0]["field"], "Idempotency-Key", "{body}");
    let (status, body, _) =
        app.call_with(Method::POST, &format!("/v1/connections/{id}/resync"), Some("acme"), None, &[("idempotency-key", key)]).await;
    assert_eq!(status, 422, "{body}");
    assert_error(&body, "idempotency_key_reused");

    // A resync with its own key is answered once and replayed after.
    let resync = format!("/v1/connections/{id}/resync");
    let (first_status, first_body, _) = app.call_with(Method::POST, &resync, Some("acme"), None, &[("idempotency-key", "resync-1")]).await;
    let (again_status, again_body, _) = app.call_with(Method::POST, &resync, Some("acme"), None, &[("idempotency-key", "resync-1")]).await;
    assert_eq!(first_status, 202, "{first_body}");
    assert_eq!((again_status, &again_body), (first_status, &first_body));

    // Another tenant's identical request with the same key is its own.
    let (status, body, _) =
        app.call_with(Method::POST, "/v1/connections", Some("globex"), Some(valid_connection()), &[("idempotency-key", key)]).await;
    assert_eq!(status, 201, "{body}");
    assert_ne!(body["id"].as_str(), Some(id.as_str()));

    // A key that cannot be one: 400 naming the header.
    for bad in ["", &"k".repeat(256), "two\twords"] {
        let (status, body, _) =
            app.call_with(Method::POST, "/v1/connections", Some("acme"), Some(valid_connection()), &[("idempotency-key", bad)]).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(body["error"]["details"][0]["field"], "Idempotency-Key", "{body}");
    }
}

/// A query parameter the operation does not document is a 400 naming it, on every route
/// (`?iid=3` used to be ignored and answer every merge request), and so is one given twice.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn unknown_or_repeated_query_parameters_are_refused_by_name(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let (_, created) = app.call(Method::POST, "/v1/connections", Some("acme"), Some(valid_connection())).await;
    let id = created["id"].as_str().unwrap();
    let cases = [
        (Method::GET, format!("/v1/connections/{id}/merge_requests?iid=3"), "iid"),
        (Method::GET, format!("/v1/connections/{id}/commits?limit=5&sha=abc"), "sha"),
        (Method::GET, format!("/v1/connections/{id}?expand=hooks"), "expand"),
        (Method::GET, "/v1/connections?limit=5&limit=6".to_owned(), "limit"),
        (Method::GET, "/v1/changes?after=&tenant=globex".to_owned(), "tenant"),
        (Method::POST, format!("/v1/connections/{id}/resync?stream=commits"), "stream"),
        (Method::DELETE, format!("/v1/connections/{id}?force=true"), "force"),
    ];
    for (method, path, parameter) in cases {
        let (status, body) = app.call(method.clone(), &path, Some("acme"), None).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert_eq!(body["error"]["field"], parameter, "{method} {path}: {body}");
    }
    // Without a valid token the answer is 401 whatever the query holds: nothing is judged first.
    let (status, body) = app.call(Method::GET, &format!("/v1/connections/{id}/merge_requests?iid=3"), None, None).await;
    assert_eq!(status, 401, "{body}");
    // Documented ones still work, and nothing was deleted or resynced above.
    let (status, body) =
        app.call(Method::GET, &format!("/v1/connections/{id}/merge_requests?limit=5&state=opened"), Some("acme"), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.call(Method::GET, &format!("/v1/connections/{id}"), Some("acme"), None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("pending")), "{body}");
    assert_eq!(queued_jobs(&app, "disconnect").await, 0);
}

/// Two admins editing one connection do not overwrite each other: reads carry an `ETag` of what
/// the user set, a PATCH or DELETE with `If-Match` of an older one is a 412 that changes nothing,
/// and the worker moving the connection along does not change the tag.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn if_match_refuses_a_stale_edit(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let (_, created, headers) = app.call_with(Method::POST, "/v1/connections", Some("acme"), Some(valid_connection()), &[]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/connections/{id}");
    let etag = |h: &reqwest::header::HeaderMap| h.get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let created_tag = etag(&headers).expect("201 carries an ETag");
    let (status, _, headers) = app.call_with(Method::GET, &path, Some("acme"), None, &[]).await;
    assert_eq!(status, 200);
    let first = etag(&headers).expect("GET carries an ETag");
    assert_eq!(first, created_tag);

    // The worker changes the status; the user's edit it saw is still current.
    let mut tx = app.store.tenant_tx(&connector_store::TenantId::parse("acme").unwrap()).await.unwrap();
    connector_store::connections::set_status(&mut tx, id.parse().unwrap(), connector_store::connections::Status::Validating, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (_, _, headers) = app.call_with(Method::GET, &path, Some("acme"), None, &[]).await;
    assert_eq!(etag(&headers).as_deref(), Some(first.as_str()));

    // Admin one saves with the tag it read.
    let (status, body, headers) =
        app.call_with(Method::PATCH, &path, Some("acme"), Some(json!({"groups_list": "7"})), &[("if-match", &first)]).await;
    assert_eq!(status, 200, "{body}");
    let second = etag(&headers).expect("PATCH answers the new ETag");
    assert_ne!(second, first);

    // Admin two, still holding the first tag, is refused and changes nothing.
    let (status, body, _) =
        app.call_with(Method::PATCH, &path, Some("acme"), Some(json!({"groups_list": "9"})), &[("if-match", &first)]).await;
    assert_eq!(status, 412, "{body}");
    assert_error(&body, "precondition_failed");
    let (status, body, _) = app.call_with(Method::DELETE, &path, Some("acme"), None, &[("if-match", &first)]).await;
    assert_eq!(status, 412, "{body}");
    // A weak tag never matches (If-Match compares strongly), a list may hold the current one.
    let weak = format!("W/{second}");
    let (status, _, _) = app.call_with(Method::PATCH, &path, Some("acme"), Some(json!({"groups_list": "9"})), &[("if-match", &weak)]).await;
    assert_eq!(status, 412);
    let (_, now, _) = app.call_with(Method::GET, &path, Some("acme"), None, &[]).await;
    assert_eq!(now["groups_list"], json!([7]), "a refused edit changed the connection");
    assert_eq!(queued_jobs(&app, "disconnect").await, 0);

    let list = format!("\"r0\", {second}");
    let (status, body, _) = app.call_with(Method::DELETE, &path, Some("acme"), None, &[("if-match", &list)]).await;
    assert_eq!(status, 202, "{body}");
    // `*` matches any current connection; none at all answers 404 as before.
    let (status, _, _) = app
        .call_with(Method::DELETE, "/v1/connections/01a2507f-b7a7-75f1-853b-fd362fd3836a", Some("acme"), None, &[("if-match", "*")])
        .await;
    assert_eq!(status, 404);
}

/// Each tenant has its own request budget: every answer says what is left (`RateLimit-*`), past
/// it a 429 `rate_limited` says when to come back (`Retry-After`), and another tenant is not
/// affected.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn each_tenant_has_its_own_request_budget(owner: PgPool) {
    let limits = connector_api::ApiLimits { requests_per_second: 1, request_burst: 3, ..Default::default() };
    let app = TestApp::spawn_with(owner, limits).await;
    let header = |h: &reqwest::header::HeaderMap, name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let (status, body, headers) = app.call_with(Method::GET, "/v1/connections", Some("acme"), None, &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "ratelimit-limit").as_deref(), Some("3"));
        remaining.push(header(&headers, "ratelimit-remaining").unwrap_or_default());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let (status, body, headers) = app.call_with(Method::GET, "/v1/connections", Some("acme"), None, &[]).await;
    let retry_after: u64 = header(&headers, "retry-after").and_then(|v| v.parse().ok()).expect("a 429 says when to retry");
    println!("rate limit: 3 requests answered, the 4th {status} with Retry-After {retry_after}s: {body}");
    assert_eq!(status, 429, "{body}");
    assert_error(&body, "rate_limited");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // Another tenant's budget is its own.
    let (status, _, _) = app.call_with(Method::GET, "/v1/connections", Some("globex"), None, &[]).await;
    assert_eq!(status, 200);
    // Waiting as told is enough.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    let (status, body, _) = app.call_with(Method::GET, "/v1/connections", Some("acme"), None, &[]).await;
    assert_eq!(status, 200, "{body}");
}

/// The browser may call the API only from the origins the operator lists: their preflight is
/// answered with the headers the frontend sends (`Idempotency-Key`, `If-Match`), their answers
/// expose the headers it reads (`ETag`, `Location`, the budget's), and another origin gets no
/// CORS header at all.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn cross_origin_calls_only_from_the_listed_origins(owner: PgPool) {
    const FRONTEND: &str = "https://app.coworker.example";
    let app = TestApp::spawn_with_cors(owner, vec![FRONTEND.to_owned()]).await;
    let header = |h: &reqwest::header::HeaderMap, name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, app.url("/v1/connections"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type, idempotency-key")
            .send()
    };
    let allowed = preflight(FRONTEND).await.unwrap();
    println!("cors: preflight from the frontend {} {:?}", allowed.status(), allowed.headers());
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(header(allowed.headers(), "access-control-allow-origin"), FRONTEND);
    assert!(header(allowed.headers(), "access-control-allow-methods").contains("post"));
    assert!(header(allowed.headers(), "access-control-allow-headers").contains("idempotency-key"));
    assert!(header(allowed.headers(), "access-control-allow-headers").contains("if-match"));

    let (status, _, headers) = app.call_with(Method::GET, "/v1/connections", Some("acme"), None, &[("origin", FRONTEND)]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "access-control-allow-origin"), FRONTEND);
    for exposed in ["etag", "location", "ratelimit-remaining", "retry-after"] {
        assert!(header(&headers, "access-control-expose-headers").contains(exposed), "{exposed}: {headers:?}");
    }

    let other = preflight("https://evil.example").await.unwrap();
    assert_eq!(header(other.headers(), "access-control-allow-origin"), "", "{:?}", other.headers());
    let (_, _, headers) = app.call_with(Method::GET, "/v1/connections", Some("acme"), None, &[("origin", "https://evil.example")]).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), "");

    // With no origin listed there is no CORS at all: OPTIONS is a method no route has.
    let closed = TestApp::spawn(app.owner.clone()).await;
    let (status, body, headers) = closed.call_with(Method::OPTIONS, "/v1/connections", None, None, &[("origin", FRONTEND)]).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(header(&headers, "access-control-allow-origin"), "");
}

/// Pause and resume over HTTP: a paused connection refuses a resync, keeps being paused through
/// a PATCH (which queues no validation) and a second pause; resuming queues one validation and
/// answers `pending`; resuming again is a 409 that changes nothing; a paused connection can be
/// deleted.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn pause_and_resume(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let (status, created) = app.call(Method::POST, "/v1/connections", Some("acme"), Some(valid_connection())).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let path = |action: &str| format!("/v1/connections/{id}/{action}");
    sqlx::query("DELETE FROM apalis.jobs").execute(&app.owner).await.unwrap();

    let (status, paused) = app.call(Method::POST, &path("pause"), Some("acme"), None).await;
    assert_eq!((status, paused["status"].as_str()), (200, Some("paused")), "{paused}");
    assert!(paused["status_message"].as_str().unwrap().contains("resume it"), "{paused}");
    let (status, again) = app.call(Method::POST, &path("pause"), Some("acme"), None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, paused, "pausing a paused connection changes nothing");

    let (status, refused) = app.call(Method::POST, &path("resync"), Some("acme"), None).await;
    assert_eq!(status, 409, "{refused}");
    assert_error(&refused, "conflict");
    let (status, edited) =
        app.call(Method::PATCH, &format!("/v1/connections/{id}"), Some("acme"), Some(json!({"groups_list": "77"}))).await;
    assert_eq!((status, edited["status"].as_str()), (200, Some("paused")), "{edited}");
    assert_eq!(edited["groups_list"], json!([77]));
    assert_eq!(queued_jobs(&app, "validate").await, 0, "a paused connection's edit queues nothing");

    let (status, resumed) = app.call(Method::POST, &path("resume"), Some("acme"), None).await;
    assert_eq!((status, resumed["status"].as_str()), (202, Some("pending")), "{resumed}");
    assert_eq!(queued_jobs(&app, "validate").await, 1);
    let (status, refused) = app.call(Method::POST, &path("resume"), Some("acme"), None).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(queued_jobs(&app, "validate").await, 1, "a second resume queues nothing");
    let (_, now) = app.call(Method::GET, &format!("/v1/connections/{id}"), Some("acme"), None).await;
    assert_eq!(now["status"], "pending");

    // Paused, then deleted.
    assert_eq!(app.call(Method::POST, &path("pause"), Some("acme"), None).await.0, 200);
    let (status, deleting) = app.call(Method::DELETE, &format!("/v1/connections/{id}"), Some("acme"), None).await;
    assert_eq!((status, deleting["status"].as_str()), (202, Some("deleting")), "{deleting}");
    let (status, refused) = app.call(Method::POST, &path("pause"), Some("acme"), None).await;
    assert_eq!(status, 409, "a connection being deleted is not paused: {refused}");
}

/// A resync's `refetch` resets the streams it names and nothing else; a project the connection
/// does not sync, an unknown field or resource, or a body that is not JSON is refused by name
/// and resets nothing.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_resync_refetches_what_it_names(owner: PgPool) {
    use connector_store::sync::{self, PageProgress, Resource};
    let app = TestApp::spawn(owner).await;
    let (_, created) = app.call(Method::POST, "/v1/connections", Some("acme"), Some(valid_connection())).await;
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let tenant = connector_store::TenantId::parse("acme").unwrap();
    let mut tx = app.store.tenant_tx(&tenant).await.unwrap();
    let validated = connector_store::connections::Validated {
        gitlab_user_id: 1,
        gitlab_username: "ada".into(),
        token_expires_at: None,
        hook_mode: connector_store::connections::HookMode::Project,
        hook_targets: Vec::new(),
        resolved_project_ids: vec![11, 12],
        notice: None,
    };
    connector_store::connections::record_validation(&mut tx, id, &validated).await.unwrap();
    for project_id in [11, 12] {
        for resource in [Resource::Commits, Resource::Issues] {
            let step = PageProgress { project_id, resource, cursor: None, seen_up_to: None, records: 3, done: true };
            sync::advance(&mut tx, id, step).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    let streams = async || -> Vec<(i64, String)> {
        sqlx::query_as("SELECT project_id, resource FROM sync_checkpoints WHERE connection_id = $1 ORDER BY 1, 2")
            .bind(id)
            .fetch_all(&app.owner)
            .await
            .unwrap()
    };
    let all = streams().await;
    assert_eq!(all.len(), 4);
    let path = format!("/v1/connections/{id}/resync");

    for (body, field) in [
        (json!({"refetch": {"project_id": 99}}), "refetch.project_id"),
        (json!({"refetch": {"project": 11}}), "refetch.project"),
        (json!({"refetch": {"resource": "wikis"}}), "body"),
        (json!({"everything": true}), "everything"),
    ] {
        let (status, refused) = app.call(Method::POST, &path, Some("acme"), Some(body.clone())).await;
        assert_eq!(status, 422, "{body}: {refused}");
        assert_eq!(refused["error"]["details"][0]["field"], field, "{body}: {refused}");
        assert_eq!(streams().await, all, "{body} reset something");
    }
    let not_json = app.http.post(app.url(&path)).bearer_auth(app.token("acme")).header("content-type", "text/plain").body("all");
    assert_eq!(not_json.send().await.unwrap().status(), 415);
    let unlabelled = app.http.post(app.url(&path)).bearer_auth(app.token("acme")).body(r#"{"refetch": {}}"#);
    assert_eq!(unlabelled.send().await.unwrap().status(), 415, "a body without its content type is refused, not ignored");
    assert_eq!(streams().await, all);

    let (status, body) =
        app.call(Method::POST, &path, Some("acme"), Some(json!({"refetch": {"project_id": 11, "resource": "commits"}}))).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("pending")), "{body}");
    assert_eq!(streams().await, [(11, "issues".to_owned()), (12, "commits".to_owned()), (12, "issues".to_owned())]);
    let (status, _) = app.call(Method::POST, &path, Some("acme"), Some(json!({"refetch": {"resource": "issues"}}))).await;
    assert_eq!(status, 202);
    assert_eq!(streams().await, [(12, "commits".to_owned())]);
    let (status, _) = app.call(Method::POST, &path, Some("acme"), Some(json!({"refetch": {}}))).await;
    assert_eq!(status, 202);
    assert!(streams().await.is_empty());
}

/// The token rotation opt-in: set at creation, shown, switched by a PATCH of its own that
/// validates nothing again (no job queued) but is a new revision; a value that is not a boolean
/// is refused by name with the rest of the body's problems.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn the_token_rotation_opt_in(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let mut body = valid_connection();
    body["rotate_token"] = json!(true);
    let (status, created, headers) = app.call_with(Method::POST, "/v1/connections", Some("acme"), Some(body), &[]).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["rotate_token"], true);
    let id = created["id"].as_str().unwrap().to_owned();
    let tag = headers["etag"].to_str().unwrap().to_owned();
    sqlx::query("DELETE FROM apalis.jobs").execute(&app.owner).await.unwrap();

    let (status, off, headers) = app
        .call_with(
            Method::PATCH,
            &format!("/v1/connections/{id}"),
            Some("acme"),
            Some(json!({"rotate_token": false})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["rotate_token"], false);
    assert_eq!(off["status"], created["status"], "the status is untouched");
    assert_ne!(headers["etag"].to_str().unwrap(), tag, "a new revision");
    assert_eq!(queued_jobs(&app, "validate").await, 0, "nothing validated again");

    let mut bad = valid_connection();
    bad["rotate_token"] = json!("yes");
    bad["groups_list"] = json!("x");
    let (status, refused) = app.call(Method::POST, "/v1/connections", Some("acme"), Some(bad)).await;
    assert_eq!(status, 422, "{refused}");
    let fields: Vec<&str> = refused["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["groups_list", "rotate_token"], "{refused}");
    let (status, refused) = app.call(Method::PATCH, &format!("/v1/connections/{id}"), Some("acme"), Some(json!({"rotate_token": 1}))).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["details"][0]["field"], "rotate_token");
}
