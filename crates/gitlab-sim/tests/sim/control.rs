use gitlab_sim::*;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Receiver, all_events, start};

#[tokio::test]
async fn tokens_can_be_created_revoked_and_expired() {
    let sim = start(SimConfig::default()).await;
    let t = sim.control(Method::POST, "/tokens", json!({"user_id": 4, "scopes": ["read_api"], "value": "glpat-made-in-test"})).await.body;
    assert_eq!(t["token"], "glpat-made-in-test");
    let me = sim.get("glpat-made-in-test", "/api/v4/user").await;
    assert_eq!(me.body["id"], 4);
    let id = t["id"].as_u64().unwrap();
    sim.control(Method::POST, &format!("/tokens/{id}/expire"), json!(null)).await;
    assert_eq!(
        sim.get("glpat-made-in-test", "/api/v4/user").await.body["error_description"],
        "Token is expired. You can either do re-authorization or token refresh."
    );
    sim.control(Method::POST, &format!("/tokens/{id}/revoke"), json!(null)).await;
    let r = sim.get("glpat-made-in-test", "/api/v4/user").await;
    assert_eq!(r.status, 401);
    let listed = sim.control(Method::GET, "/tokens", json!(null)).await.body;
    let made = listed.as_array().unwrap().iter().find(|t| t["value"] == "glpat-made-in-test").unwrap();
    assert_eq!((made["revoked"].clone(), made["usable"].clone()), (json!(true), json!(false)));
}

#[tokio::test]
async fn merging_moves_the_target_branch_and_fires_push_and_mr_hooks() {
    let sim = start(SimConfig::default()).await;
    let rx = Receiver::start().await;
    sim.send(Method::POST, TOKEN_OWNER, "/api/v4/projects/1/hooks", all_events(&rx.url)).await;
    let mr = sim
        .control(Method::POST, "/projects/1/merge_requests", json!({"source_branch": "to-merge", "commits": 3, "title": "Ship it"}))
        .await
        .body;
    let iid = mr["iid"].as_u64().unwrap();
    let commits = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/merge_requests/{iid}/commits")).await.body;
    assert_eq!(commits.as_array().unwrap().len(), 3);
    rx.clear();
    sim.control(Method::POST, &format!("/projects/1/merge_requests/{iid}/merge"), json!({"user_id": 3})).await;

    let m = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/merge_requests/{iid}")).await.body;
    assert_eq!(m["state"], "merged");
    assert_eq!(m["merged_by"]["id"], 3);
    let merge_sha = m["merge_commit_sha"].as_str().unwrap();
    let default = sim.get(TOKEN_OWNER, "/api/v4/projects/1").await.body["default_branch"].as_str().unwrap().to_string();
    let head = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/repository/branches/{default}")).await.body;
    assert_eq!(head["commit"]["id"], merge_sha);
    assert_eq!(head["commit"]["parent_ids"].as_array().unwrap().len(), 2);

    let events = rx.events();
    let push = &events.iter().find(|(e, _)| e == "Push Hook").unwrap().1;
    assert_eq!(push["after"], merge_sha);
    assert_eq!(push["total_commits_count"], 4, "the merge commit and the three MR commits");
    let hook = &events.iter().find(|(e, _)| e == "Merge Request Hook").unwrap().1;
    assert_eq!(hook["object_attributes"]["action"], "merge");
    assert_eq!(hook["object_attributes"]["state"], "merged");

    let r = sim.http.post(sim.url(&format!("/-/sim/projects/1/merge_requests/{iid}/close"))).send().await.unwrap();
    assert_eq!(r.status(), 422, "a merged MR cannot be closed");
}

#[tokio::test]
async fn jobs_drive_the_pipeline_status() {
    let sim = start(SimConfig::default()).await;
    let rx = Receiver::start().await;
    sim.send(Method::POST, TOKEN_OWNER, "/api/v4/projects/1/hooks", all_events(&rx.url)).await;
    let pid = sim.control(Method::POST, "/projects/1/pipelines", json!({})).await.body["id"].as_u64().unwrap();
    let jobs: Vec<u64> = sim
        .handle
        .sim
        .with_dataset(|ds| ds.project(1).unwrap().pipelines.iter().find(|p| p.id == pid).unwrap().jobs.iter().map(|j| j.id).collect());
    let status = |sim: &crate::common::Sim| {
        sim.handle.sim.with_dataset(|ds| ds.project(1).unwrap().pipelines.iter().find(|p| p.id == pid).unwrap().status.clone())
    };
    sim.control(Method::PUT, &format!("/projects/1/jobs/{}", jobs[0]), json!({"status": "running"})).await;
    assert_eq!(status(&sim), "running");
    for j in &jobs {
        sim.control(Method::PUT, &format!("/projects/1/jobs/{j}"), json!({"status": "success"})).await;
    }
    assert_eq!(status(&sim), "success");
    let api = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/pipelines/{pid}")).await.body;
    assert_eq!(api["status"], "success");
    assert!(api["finished_at"].is_string());
    let kinds: Vec<String> = rx.events().into_iter().map(|(e, _)| e).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "Job Hook").count(), 3 + 1 + 3);
    let last_pipeline: Vec<Value> = rx.events().into_iter().filter(|(e, _)| e == "Pipeline Hook").map(|(_, v)| v).collect();
    assert_eq!(last_pipeline.last().unwrap()["object_attributes"]["status"], "success");
}

#[tokio::test]
async fn groups_members_projects_and_ground_truth() {
    let sim = start(SimConfig::default()).await;
    let rx = Receiver::start().await;
    sim.send(Method::POST, TOKEN_OWNER, "/api/v4/groups/1/hooks", all_events(&rx.url)).await;
    let g = sim.control(Method::POST, "/groups", json!({"parent_id": 1, "name": "Labs"})).await.body;
    let gid = g["id"].as_u64().unwrap();
    let subs = sim.get(TOKEN_OWNER, "/api/v4/groups/1/subgroups?per_page=100").await.body;
    assert!(subs.as_array().unwrap().iter().any(|s| s["id"] == gid));
    let p = sim.control(Method::POST, "/projects", json!({"namespace_id": gid, "name": "lab-notes"})).await.body;
    let pid = p["id"].as_u64().unwrap();
    assert_eq!(sim.get(TOKEN_OWNER, &format!("/api/v4/projects/{pid}")).await.body["path_with_namespace"], p["path_with_namespace"]);
    sim.control(Method::POST, "/members", json!({"group_id": gid, "user_id": 6, "access_level": 40})).await;
    sim.control(Method::DELETE, "/members", json!({"group_id": gid, "user_id": 6})).await;
    let names: Vec<Value> = rx.events().into_iter().map(|(_, v)| v["event_name"].clone()).collect();
    assert_eq!(names, vec![json!("subgroup_create"), json!("project_create"), json!("user_add_to_group"), json!("user_remove_from_group")]);

    let truth = sim.control(Method::GET, "/truth", json!(null)).await.body;
    assert!(truth["projects"].as_array().unwrap().iter().any(|p| p["id"] == pid));
    let one = sim.control(Method::GET, &format!("/truth/projects/{pid}"), json!(null)).await.body;
    assert_eq!(one["repository"]["commits"].as_array().unwrap().len(), 1);
    let back: Dataset = serde_json::from_value(truth).unwrap();
    assert_eq!(back.projects.len(), sim.handle.sim.with_dataset(|ds| ds.projects.len()));
}
