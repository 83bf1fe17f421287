use gitlab_sim::*;
use serde_json::json;

use crate::common::{Receiver, all_events, start};
use reqwest::Method;

#[tokio::test]
async fn hook_crud_roles_and_token_reset_on_url_change() {
    let sim = start(SimConfig::default()).await;
    let r = sim
        .send(
            Method::POST,
            TOKEN_MAINTAINER,
            "/api/v4/projects/1/hooks",
            json!({"url": "http://127.0.0.1:9/a", "token": "s3cret", "merge_requests_events": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let hook = r.body;
    assert_eq!(hook["token_present"], true);
    assert_eq!(hook["signing_token_present"], false);
    assert_eq!(hook["push_events"], true);
    assert_eq!(hook["merge_requests_events"], true);
    assert_eq!(hook["alert_status"], "executable");
    assert!(hook.get("token").is_none());
    for key in [
        "id",
        "url",
        "name",
        "description",
        "project_id",
        "push_events_branch_filter",
        "issues_events",
        "confidential_issues_events",
        "tag_push_events",
        "note_events",
        "confidential_note_events",
        "job_events",
        "pipeline_events",
        "wiki_page_events",
        "deployment_events",
        "releases_events",
        "feature_flag_events",
        "enable_ssl_verification",
        "repository_update_events",
        "disabled_until",
        "url_variables",
        "created_at",
        "resource_access_token_events",
        "custom_webhook_template",
        "custom_headers",
    ] {
        assert!(hook.get(key).is_some(), "hook lacks {key}");
    }
    let id = hook["id"].as_u64().unwrap();
    let path = format!("/api/v4/projects/1/hooks/{id}");

    let r = sim.send(Method::PUT, TOKEN_MAINTAINER, &path, json!({"url": "http://127.0.0.1:9/b"})).await;
    assert_eq!(r.body["token_present"], false, "a new URL drops the token");
    let r = sim.send(Method::PUT, TOKEN_MAINTAINER, &path, json!({"url": "http://127.0.0.1:9/c", "token": "again"})).await;
    assert_eq!(r.body["token_present"], true);
    let r = sim.send(Method::PUT, TOKEN_MAINTAINER, &path, json!({"name": "renamed"})).await;
    assert_eq!((r.body["token_present"].clone(), r.body["name"].clone()), (json!(true), json!("renamed")));

    let r = sim.send(Method::PUT, TOKEN_MAINTAINER, &path, json!({"signing_token": "whsec_notbase64"})).await;
    assert_eq!(r.status, 400);

    let list = sim.get(TOKEN_MAINTAINER, "/api/v4/projects/1/hooks").await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(sim.get(TOKEN_DEVELOPER, "/api/v4/projects/1/hooks").await.status, 403);
    let r = sim.send(Method::POST, TOKEN_MAINTAINER, "/api/v4/projects/1/hooks", json!({})).await;
    assert_eq!((r.status, r.body.clone()), (400, json!({"error": "url is missing"})));

    // Group hooks need Owner.
    let r = sim.send(Method::POST, TOKEN_MAINTAINER, "/api/v4/groups/1/hooks", json!({"url": "http://127.0.0.1:9/g"})).await;
    assert_eq!((r.status, r.body.clone()), (403, json!({"message": "403 Forbidden"})));

    let r = sim.send(Method::DELETE, TOKEN_MAINTAINER, &path, json!(null)).await;
    assert_eq!(r.status, 204);
    assert_eq!(sim.get(TOKEN_MAINTAINER, &path).await.status, 404);
}

#[tokio::test]
async fn group_hooks_follow_plan_and_edition() {
    let sim = start(SimConfig::default()).await;
    let premium = Receiver::start().await;
    let free = Receiver::start().await;
    let (free_group, free_project) = sim.handle.sim.with_dataset(|ds| {
        let g = ds.groups.iter().find(|g| g.parent_id.is_none() && g.plan == Plan::Free).unwrap().id;
        (g, ds.projects.iter().find(|p| ds.root_of(p.namespace_id).unwrap().id == g).unwrap().id)
    });
    let r = sim.send(Method::POST, TOKEN_OWNER, "/api/v4/groups/1/hooks", json!({"url": premium.url, "push_events": true})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["group_id"], 1);
    let r = sim
        .send(Method::POST, TOKEN_OWNER, &format!("/api/v4/groups/{free_group}/hooks"), json!({"url": free.url, "push_events": true}))
        .await;
    assert_eq!(r.status, 201, "EE accepts group hooks on a Free group");

    sim.control(Method::POST, "/projects/1/push", json!({"branch": "main-sim", "commits": 1})).await;
    sim.control(Method::POST, &format!("/projects/{free_project}/push"), json!({"branch": "main-sim", "commits": 1})).await;
    assert_eq!(premium.events().len(), 1);
    assert_eq!(premium.events()[0].0, "Push Hook");
    assert!(free.events().is_empty(), "Free group hooks never fire");

    // Upgrading the plan makes them fire.
    sim.control(Method::PUT, &format!("/groups/{free_group}/plan"), json!({"plan": "ultimate"})).await;
    sim.control(Method::POST, &format!("/projects/{free_project}/push"), json!({"branch": "main-sim", "commits": 1})).await;
    assert_eq!(free.events().len(), 1);

    sim.control(Method::PUT, "/instance", json!({"edition": "ce", "version": "19.1.0"})).await;
    let r = sim.send(Method::POST, TOKEN_OWNER, "/api/v4/groups/1/hooks", json!({"url": premium.url})).await;
    assert_eq!((r.status, r.body.clone()), (404, json!({"error": "404 Not Found"})));
    let r = sim.get(TOKEN_OWNER, "/api/v4/groups/1/hooks").await;
    assert_eq!(r.status, 404);
    assert_eq!(sim.get(TOKEN_OWNER, "/api/v4/metadata").await.body["enterprise"], false);
    premium.clear();
    sim.control(Method::POST, "/projects/1/push", json!({"branch": "main-sim", "commits": 1})).await;
    assert!(premium.events().is_empty(), "CE never runs group hooks");
}

/// Self-managed: every namespace's plan reads `default`, whatever the license, so a client
/// cannot tell beforehand; an EE instance without a license for group webhooks refuses them to an
/// Owner, and with a Premium license they are accepted and fire.
#[tokio::test]
async fn self_managed_plans_read_default_and_the_license_decides_group_hooks() {
    let sim = start(SimConfig::default()).await;
    let receiver = Receiver::start().await;
    let r = sim.control(Method::PUT, "/instance", json!({"self_managed": true, "license": null})).await;
    assert_eq!(r.body["self_managed"], true, "{:?}", r.body);
    assert_eq!(sim.get(TOKEN_OWNER, "/api/v4/namespaces/1").await.body["plan"], "default");
    let hook = json!({"url": receiver.url, "push_events": true});
    let r = sim.send(Method::POST, TOKEN_OWNER, "/api/v4/groups/1/hooks", hook.clone()).await;
    assert_eq!((r.status, r.body.clone()), (403, json!({"message": "403 Forbidden"})));
    // Project hooks are on every tier.
    let r = sim.send(Method::POST, TOKEN_OWNER, "/api/v4/projects/1/hooks", hook.clone()).await;
    assert_eq!(r.status, 201);

    sim.control(Method::PUT, "/instance", json!({"license": "premium"})).await;
    assert_eq!(sim.get(TOKEN_OWNER, "/api/v4/namespaces/1").await.body["plan"], "default");
    let r = sim.send(Method::POST, TOKEN_OWNER, "/api/v4/groups/1/hooks", hook).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    sim.control(Method::POST, "/projects/1/push", json!({"branch": "main-sim", "commits": 1})).await;
    let kinds: Vec<String> = receiver.events().into_iter().map(|e| e.0).collect();
    assert_eq!(kinds, ["Push Hook", "Push Hook"], "the project hook and the licensed group hook");
}

#[tokio::test]
async fn deliveries_are_listed_and_resent_with_the_same_idempotency_key() {
    let sim = start(SimConfig::default()).await;
    let rx = Receiver::start().await;
    let hook = sim.send(Method::POST, TOKEN_OWNER, "/api/v4/projects/1/hooks", all_events(&rx.url)).await.body;
    let id = hook["id"].as_u64().unwrap();
    sim.control(Method::POST, "/projects/1/issues", json!({"title": "Résumé parsing fails"})).await;
    let events = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/hooks/{id}/events")).await.body;
    let first = &events[0];
    assert_eq!(first["trigger"], "issue_hooks");
    assert_eq!(first["response_status"], 200);
    assert_eq!(first["request_data"]["object_kind"], "issue");
    let event_id = first["id"].as_u64().unwrap();
    let r = sim.send(Method::POST, TOKEN_OWNER, &format!("/api/v4/projects/1/hooks/{id}/events/{event_id}/resend"), json!(null)).await;
    assert_eq!(r.status, 201);
    let got = rx.received.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0["idempotency-key"], got[1].0["idempotency-key"]);
    assert_ne!(got[0].0["x-gitlab-webhook-uuid"], got[1].0["x-gitlab-webhook-uuid"]);
}
