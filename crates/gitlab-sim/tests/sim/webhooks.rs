use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gitlab_sim::*;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{Receiver, all_events, start};

/// Same keys at every level (arrays compared by their first element), same JSON types; `null`
/// on either side matches anything since GitLab nulls absent values, and `changes` only holds
/// what changed.
fn shape_diff(path: &str, fixture: &Value, actual: &Value, out: &mut Vec<String>) {
    match (fixture, actual) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(f), Value::Object(a)) => {
            if path.ends_with(".changes") {
                return;
            }
            for k in f.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{k} missing"));
            }
            for k in a.keys().filter(|k| !f.contains_key(*k)) {
                out.push(format!("{path}.{k} not in fixture"));
            }
            for (k, fv) in f {
                if let Some(av) = a.get(k) {
                    shape_diff(&format!("{path}.{k}"), fv, av, out);
                }
            }
        }
        (Value::Array(f), Value::Array(a)) => {
            if let (Some(fv), Some(av)) = (f.first(), a.first()) {
                shape_diff(&format!("{path}[0]"), fv, av, out);
            }
        }
        (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_)) | (Value::Bool(_), Value::Bool(_)) => {}
        (f, a) => out.push(format!("{path}: fixture {f} vs {a}")),
    }
}

fn assert_shape(name: &str, fixture: &str, actual: &Value) {
    let fixture: Value = serde_json::from_str(fixture).unwrap();
    let mut diffs = Vec::new();
    shape_diff("", &fixture, actual, &mut diffs);
    assert!(diffs.is_empty(), "{name}: {diffs:#?}");
}

fn signing_token() -> (String, Vec<u8>) {
    let key: Vec<u8> = (0..32u8).map(|b| b.wrapping_mul(7)).collect();
    (format!("whsec_{}", STANDARD.encode(&key)), key)
}

fn verify(headers: &axum::http::HeaderMap, body: &str, key: &[u8]) {
    let id = headers["webhook-id"].to_str().unwrap();
    let ts = headers["webhook-timestamp"].to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let sent = headers["webhook-signature"].to_str().unwrap();
    assert!(sent.split(' ').any(|s| s == expected), "signature {sent} != {expected}");
}

#[tokio::test]
async fn every_event_kind_matches_its_fixture_with_gitlab_headers() {
    let sim = start(SimConfig::default()).await;
    let rx = Receiver::start().await;
    let (token, key) = signing_token();
    let mut body = all_events(&rx.url);
    body["token"] = json!("plain-secret");
    body["signing_token"] = json!(token);
    let r = sim.send(Method::POST, TOKEN_OWNER, "/api/v4/projects/1/hooks", body).await;
    assert_eq!(r.body["signing_token_present"], true);
    let group_hook = sim.send(Method::POST, TOKEN_OWNER, "/api/v4/groups/1/hooks", all_events(&rx.url)).await;
    assert_eq!(group_hook.status, 201);

    let push = sim.control(Method::POST, "/projects/1/push", json!({"branch": "feature/ünïcode", "commits": 2})).await.body;
    sim.control(Method::POST, "/projects/1/tags", json!({"name": "v9.9.9", "ref": "feature/ünïcode"})).await;
    let mr = sim
        .control(Method::POST, "/projects/1/merge_requests", json!({"source_branch": "feature/ünïcode", "title": "Add ünïcode"}))
        .await
        .body;
    let iid = mr["iid"].as_u64().unwrap();
    let issue = sim.control(Method::POST, "/projects/1/issues", json!({"title": "Crash", "labels": ["bug"]})).await.body;
    let issue_iid = issue["iid"].as_u64().unwrap();
    sim.control(Method::POST, "/projects/1/issues", json!({"title": "Secret", "confidential": true})).await;
    sim.control(Method::POST, "/projects/1/notes", json!({"noteable_type": "MergeRequest", "iid": iid, "body": "LGTM"})).await;
    sim.control(Method::POST, "/projects/1/notes", json!({"noteable_type": "Issue", "iid": issue_iid, "body": "Seen it"})).await;
    let sha = push["refs"][0]["after"].as_str().unwrap().to_string();
    sim.control(Method::POST, "/projects/1/notes", json!({"noteable_type": "Commit", "sha": sha, "body": "Nice"})).await;
    let pipeline = sim.control(Method::POST, "/projects/1/pipelines", json!({"ref": "feature/ünïcode"})).await.body;
    let pid = pipeline["id"].as_u64().unwrap();
    sim.control(Method::PUT, &format!("/projects/1/pipelines/{pid}"), json!({"status": "success"})).await;
    sim.control(Method::POST, "/members", json!({"group_id": 1, "user_id": 5, "access_level": 20})).await;
    sim.control(Method::POST, "/groups", json!({"parent_id": 1, "name": "Skunkworks"})).await;
    sim.control(Method::POST, "/projects/1/releases", json!({"tag_name": "v10.0.0", "name": "Ten", "description": "Big"})).await;
    sim.control(Method::POST, "/projects/1/deployments", json!({"environment": "production", "ref": "feature/ünïcode"})).await;
    let created = sim.control(Method::POST, "/projects", json!({"namespace_id": 1, "name": "fresh-project"})).await.body;
    sim.control(Method::DELETE, &format!("/projects/{}", created["id"]), json!(null)).await;

    let received = rx.received.lock().unwrap().clone();
    let find = |event: &str, pred: &dyn Fn(&Value) -> bool| -> (axum::http::HeaderMap, String, Value) {
        received
            .iter()
            .map(|(h, b)| (h.clone(), b.clone(), serde_json::from_str::<Value>(b).unwrap()))
            .find(|(h, _, v)| h["x-gitlab-event"] == event && pred(v))
            .unwrap_or_else(|| panic!("no {event} delivered"))
    };
    type Case = (&'static str, &'static str, Box<dyn Fn(&Value) -> bool>, &'static str);
    let cases: Vec<Case> = vec![
        ("push", "Push Hook", Box::new(|v| v["ref"] == "refs/heads/feature/ünïcode"), include_str!("../fixtures/webhook-push.json")),
        ("tag_push", "Tag Push Hook", Box::new(|_| true), include_str!("../fixtures/webhook-tag_push.json")),
        ("release", "Release Hook", Box::new(|_| true), include_str!("../fixtures/webhook-release.json")),
        ("deployment", "Deployment Hook", Box::new(|_| true), include_str!("../fixtures/webhook-deployment.json")),
        ("merge_request", "Merge Request Hook", Box::new(|_| true), include_str!("../fixtures/webhook-merge_request.json")),
        ("issue", "Issue Hook", Box::new(|_| true), include_str!("../fixtures/webhook-issue.json")),
        ("confidential issue", "Confidential Issue Hook", Box::new(|_| true), include_str!("../fixtures/webhook-issue.json")),
        (
            "MR note",
            "Note Hook",
            Box::new(|v| v["object_attributes"]["noteable_type"] == "MergeRequest"),
            include_str!("../fixtures/webhook-note-merge_request.json"),
        ),
        (
            "issue note",
            "Note Hook",
            Box::new(|v| v["object_attributes"]["noteable_type"] == "Issue"),
            include_str!("../fixtures/webhook-note-issue.json"),
        ),
        (
            "commit note",
            "Note Hook",
            Box::new(|v| v["object_attributes"]["noteable_type"] == "Commit"),
            include_str!("../fixtures/webhook-note-commit.json"),
        ),
        (
            "pipeline",
            "Pipeline Hook",
            Box::new(|v| v["object_attributes"]["status"] == "success"),
            include_str!("../fixtures/webhook-pipeline.json"),
        ),
        ("job", "Job Hook", Box::new(|_| true), include_str!("../fixtures/webhook-job.json")),
        ("member", "Member Hook", Box::new(|_| true), include_str!("../fixtures/webhook-member.json")),
        ("subgroup", "Subgroup Hook", Box::new(|_| true), include_str!("../fixtures/webhook-subgroup.json")),
        (
            "project_create",
            "Project Hook",
            Box::new(|v| v["event_name"] == "project_create"),
            include_str!("../fixtures/webhook-project_create-group.json"),
        ),
        (
            "project_destroy",
            "Project Hook",
            Box::new(|v| v["event_name"] == "project_destroy"),
            include_str!("../fixtures/webhook-project_destroy-group.json"),
        ),
    ];
    for (name, event, pred, fixture) in &cases {
        let (headers, raw, payload) = find(event, pred.as_ref());
        assert_shape(name, fixture, &payload);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["user-agent"], "GitLab/19.1.0-ee");
        assert_eq!(headers["x-gitlab-instance"].to_str().unwrap(), sim.handle.base_url);
        for h in ["x-gitlab-event-uuid", "x-gitlab-webhook-uuid", "idempotency-key", "webhook-id", "webhook-timestamp"] {
            assert!(headers.contains_key(h), "{name}: no {h}");
        }
        assert_eq!(headers["webhook-id"], headers["idempotency-key"]);
        if headers.contains_key("x-gitlab-token") {
            assert_eq!(headers["x-gitlab-token"], "plain-secret");
            verify(&headers, &raw, &key);
        } else {
            assert!(!headers.contains_key("webhook-signature"), "{name}: unsigned hook got a signature");
        }
    }

    // Payloads agree with the API.
    let (_, _, p) = find("Push Hook", &|v| v["ref"] == "refs/heads/feature/ünïcode");
    assert_eq!(p["after"], sha.as_str());
    assert_eq!(p["total_commits_count"], 2);
    let api_commit = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/repository/commits/{sha}")).await.body;
    assert_eq!(p["commits"][1]["id"], api_commit["id"]);
    assert_eq!(p["commits"][1]["message"], api_commit["message"]);
    let (_, _, m) = find("Merge Request Hook", &|_| true);
    let api_mr = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/merge_requests/{iid}")).await.body;
    assert_eq!(m["object_attributes"]["id"], api_mr["id"]);
    assert_eq!(m["object_attributes"]["last_commit"]["id"], api_mr["sha"]);
    let (_, _, c) = find("Confidential Issue Hook", &|_| true);
    assert_eq!(c["object_attributes"]["confidential"], true);
}

#[tokio::test]
async fn push_limits_and_mr_updated_at_quirk() {
    let sim = start(SimConfig::default()).await;
    let rx = Receiver::start().await;
    sim.send(Method::POST, TOKEN_OWNER, "/api/v4/projects/1/hooks", all_events(&rx.url)).await;
    let mr = sim.control(Method::POST, "/projects/1/merge_requests", json!({"source_branch": "big", "title": "Big one"})).await.body;
    let iid = mr["iid"].as_u64().unwrap();
    let before = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/merge_requests/{iid}")).await.body;
    rx.clear();

    sim.control(Method::POST, "/projects/1/push", json!({"branch": "big", "commits": 25})).await;
    let events = rx.events();
    let push = &events.iter().find(|(e, _)| e == "Push Hook").unwrap().1;
    assert_eq!(push["commits"].as_array().unwrap().len(), 20);
    assert_eq!(push["total_commits_count"], 25);
    assert_eq!(push["commits"][19]["id"], push["after"], "the newest 20 are kept");
    let update = &events.iter().find(|(e, _)| e == "Merge Request Hook").unwrap().1;
    assert_eq!(update["object_attributes"]["action"], "update");
    assert!(update["object_attributes"]["oldrev"].is_string());
    let after = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/merge_requests/{iid}")).await.body;
    assert_eq!(after["updated_at"], before["updated_at"], "pushing to the source branch leaves updated_at");
    assert_eq!(after["sha"], push["after"]);

    rx.clear();
    let refs: Vec<Value> = (0..4).map(|i| json!({"branch": format!("multi-{i}"), "commits": 1})).collect();
    let r = sim.control(Method::POST, "/projects/1/push", json!({ "refs": refs })).await;
    assert_eq!(r.body["webhooks"], false);
    assert!(rx.events().is_empty(), "a push of more than 3 refs fires nothing");
    let refs: Vec<Value> = (0..3).map(|i| json!({"branch": format!("trio-{i}"), "commits": 1})).collect();
    sim.control(Method::POST, "/projects/1/push", json!({ "refs": refs })).await;
    assert_eq!(rx.events().len(), 3);

    // Issue updates move updated_at; a comment does too.
    let issue = sim.control(Method::POST, "/projects/1/issues", json!({"title": "t"})).await.body;
    let path = format!("/api/v4/projects/1/issues/{}", issue["iid"]);
    let t0 = sim.get(TOKEN_OWNER, &path).await.body["updated_at"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    sim.control(Method::POST, "/projects/1/notes", json!({"noteable_type": "Issue", "iid": issue["iid"], "body": "hm"})).await;
    assert_ne!(sim.get(TOKEN_OWNER, &path).await.body["updated_at"], t0);
}

#[tokio::test]
async fn failing_receivers_disable_the_hook_after_four_failures() {
    let sim = start(SimConfig::default()).await;
    let rx = Receiver::start().await;
    rx.status.store(500, std::sync::atomic::Ordering::SeqCst);
    let hook = sim.send(Method::POST, TOKEN_OWNER, "/api/v4/projects/1/hooks", json!({"url": rx.url, "push_events": true})).await.body;
    let path = format!("/api/v4/projects/1/hooks/{}", hook["id"]);
    for i in 0..4 {
        sim.control(Method::POST, "/projects/1/push", json!({"branch": format!("f{i}"), "commits": 1})).await;
        let status = sim.get(TOKEN_OWNER, &path).await.body["alert_status"].clone();
        assert_eq!(status, if i < 3 { "executable" } else { "temporarily_disabled" }, "after {} failures", i + 1);
    }
    let h = sim.get(TOKEN_OWNER, &path).await.body;
    let until = chrono::DateTime::parse_from_rfc3339(h["disabled_until"].as_str().unwrap()).unwrap();
    let pause = until.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(pause > chrono::Duration::seconds(50) && pause <= chrono::Duration::seconds(60), "{pause}");
    sim.control(Method::POST, "/projects/1/push", json!({"branch": "f9", "commits": 1})).await;
    assert_eq!(rx.received.lock().unwrap().len(), 4, "a disabled hook is not called");
    assert_eq!(sim.handle.sim.stats().webhooks_failed, 4);

    // A successful test request re-enables it, as in GitLab.
    rx.status.store(200, std::sync::atomic::Ordering::SeqCst);
    let r = sim.send(Method::POST, TOKEN_OWNER, &format!("{path}/test/push_events"), json!(null)).await;
    assert_eq!((r.status, r.body.clone()), (201, json!({"message": "201 Created"})));
    assert_eq!(sim.get(TOKEN_OWNER, &path).await.body["alert_status"], "executable");

    // The control API can make deliveries fail without a failing receiver.
    let hook_id = hook["id"].as_u64().unwrap();
    sim.control(Method::PUT, &format!("/hooks/{hook_id}/failing"), json!({"failing": true})).await;
    sim.control(Method::POST, "/projects/1/push", json!({"branch": "f10", "commits": 1})).await;
    let events = sim.get(TOKEN_OWNER, &format!("{path}/events?status=server_failure")).await.body;
    assert_eq!(events.as_array().unwrap().len(), 5);
    assert_eq!(events[0]["response_status"], "internal error");
    assert_eq!(rx.received.lock().unwrap().len(), 5, "the forced failure never reached the receiver");
}

#[tokio::test]
async fn duplicate_delivery_knob_repeats_the_idempotency_key() {
    let sim = start(SimConfig::default()).await;
    let rx = Receiver::start().await;
    sim.send(Method::POST, TOKEN_OWNER, "/api/v4/projects/1/hooks", json!({"url": rx.url, "push_events": true})).await;
    sim.control(Method::PUT, "/delivery", json!({"duplicate": true})).await;
    sim.control(Method::POST, "/projects/1/push", json!({"branch": "dup", "commits": 1})).await;
    let got = rx.received.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0["idempotency-key"], got[1].0["idempotency-key"]);
    assert_eq!(got[0].1, got[1].1);
}

/// The simulator's fixtures and the ingest crate's (each written from GitLab's documented
/// payloads) have the same shape, file by file: what the simulator sends is what ingest is
/// tested with, so a field one of them lacks shows here.
#[test]
fn the_simulators_fixtures_and_the_ingest_fixtures_agree_key_by_key() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ingest = root.join("../ingest/tests/fixtures");
    let mut compared = 0;
    for entry in std::fs::read_dir(root.join("tests/fixtures")).unwrap() {
        let path = entry.unwrap().path();
        let theirs = ingest.join(path.file_name().unwrap());
        let (Ok(ours), Ok(theirs)) = (std::fs::read_to_string(&path), std::fs::read_to_string(&theirs)) else {
            continue;
        };
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_shape(&name, &ours, &serde_json::from_str(&theirs).unwrap());
        compared += 1;
    }
    assert!(compared >= 15, "only {compared} fixtures in both sets");
}

/// Labels the project lacks are created when an issue or merge request is given them, as
/// GitLab's APIs do: the hook and REST then show the same labels.
#[tokio::test]
async fn new_label_names_are_created_and_shown_by_hook_and_rest() {
    let sim = start(SimConfig::default()).await;
    let rx = Receiver::start().await;
    sim.send(Method::POST, TOKEN_OWNER, "/api/v4/projects/1/hooks", all_events(&rx.url)).await;
    let issue = sim.control(Method::POST, "/projects/1/issues", json!({"title": "Labelled", "labels": ["brand-new"]})).await.body;
    let iid = issue["iid"].as_u64().unwrap();
    sim.control(Method::PUT, &format!("/projects/1/issues/{iid}"), json!({"labels": ["brand-new", "another-new"]})).await;
    let rest = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/issues/{iid}")).await.body;
    assert_eq!(rest["labels"], json!(["brand-new", "another-new"]));
    let hooks: Vec<Value> = rx.events().into_iter().filter(|e| e.0 == "Issue Hook").map(|e| e.1).collect();
    let titles =
        |h: &Value| -> Vec<String> { h["labels"].as_array().unwrap().iter().map(|l| l["title"].as_str().unwrap().to_owned()).collect() };
    assert_eq!(hooks.len(), 2);
    assert_eq!(titles(&hooks[0]), ["brand-new"]);
    assert_eq!(titles(&hooks[1]), ["brand-new", "another-new"]);
}
