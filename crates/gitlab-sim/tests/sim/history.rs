//! What GitLab does to a client reading history: lists that reorder while paged, dates that
//! lie, force pushes, deletions without webhooks, transfers, and the project's comment events.

use std::collections::BTreeSet;

use gitlab_sim::*;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Receiver, Sim, all_events, start, start_with};

/// The generated datasets' Premium top-level group and its Free one.
const PREMIUM_GROUP: u64 = 1;
const FREE_GROUP: u64 = 4;

fn busy() -> Dataset {
    let mut spec = Size::Small.spec();
    spec.merge_requests_per_project = 30;
    spec.issues_per_project = 30;
    spec.pipelines_per_project = 30;
    Dataset::generate(11, Size::Custom(spec))
}

async fn open_config() -> SimConfig {
    let mut config = SimConfig::default();
    config.rate_limit.enabled = false;
    config
}

fn ids(page: &Value, key: &str) -> Vec<u64> {
    page.as_array().unwrap().iter().map(|v| v[key].as_u64().unwrap()).collect()
}

async fn two_pages(sim: &Sim, path: &str, key: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for page in [1, 2] {
        out.extend(ids(&sim.get(TOKEN_OWNER, &format!("{path}&per_page=5&page={page}")).await.body, key));
    }
    out
}

/// A project with all three lists switched on and more than two pages of each.
fn paged_project(ds: &Dataset) -> u64 {
    ds.projects
        .iter()
        .find(|p| p.issues_enabled && p.jobs_enabled && p.merge_requests.len() > 10 && p.issues.len() > 10 && p.pipelines.len() > 10)
        .expect("a busy project")
        .id
}

#[tokio::test]
async fn with_churn_an_offset_page_over_updated_at_skips_an_item_and_creation_order_does_not() {
    let sim = start_with(busy(), open_config().await).await;
    let project = paged_project(&sim.handle.sim.dataset());
    for (list, key) in [("merge_requests", "iid"), ("issues", "iid"), ("pipelines", "id")] {
        let moving = format!("/api/v4/projects/{project}/{list}?order_by=updated_at&sort=asc");
        let stable = if list == "pipelines" {
            format!("/api/v4/projects/{project}/{list}?order_by=id&sort=asc")
        } else {
            format!("/api/v4/projects/{project}/{list}?order_by=created_at&sort=asc")
        };
        let before = two_pages(&sim, &moving, key).await;
        let stable_before = two_pages(&sim, &stable, key).await;

        sim.control(Method::PUT, "/churn", json!({"enabled": true, "budget": 1})).await;
        let during = two_pages(&sim, &moving, key).await;
        assert_eq!(sim.control(Method::GET, "/stats", json!(null)).await.body["churned"], 1);
        let skipped: Vec<u64> = before.iter().copied().filter(|i| !during.contains(i)).collect();
        assert_eq!(skipped.len(), 1, "{list}: one item skipped ({before:?} then {during:?})");
        assert_eq!(skipped[0], before[5], "{list}: the first of page 2 moved up and was missed");

        sim.control(Method::PUT, "/churn", json!({"enabled": true, "budget": 1})).await;
        let stable_during = two_pages(&sim, &stable, key).await;
        assert_eq!(stable_during, stable_before, "{list}: creation or id order does not move");
        sim.control(Method::PUT, "/churn", json!({"enabled": false})).await;
        sim.control(Method::POST, "/stats/reset", json!(null)).await;
    }
}

#[tokio::test]
async fn churn_edits_fire_their_webhooks_and_stop_at_the_budget() {
    let sim = start_with(busy(), open_config().await).await;
    let project = paged_project(&sim.handle.sim.dataset());
    let rx = Receiver::start().await;
    sim.send(Method::POST, TOKEN_OWNER, &format!("/api/v4/projects/{project}/hooks"), all_events(&rx.url)).await;
    sim.control(Method::PUT, "/churn", json!({"enabled": true, "budget": 2})).await;
    let path = format!("/api/v4/projects/{project}/merge_requests?order_by=created_at&sort=asc&per_page=5");
    for page in 2..=5 {
        sim.get(TOKEN_OWNER, &format!("{path}&page={page}")).await;
    }
    assert_eq!(sim.control(Method::GET, "/stats", json!(null)).await.body["churned"], 2);
    for _ in 0..50 {
        if rx.events().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let hooks: Vec<_> = rx.events().into_iter().filter(|(e, _)| e == "Merge Request Hook").collect();
    assert_eq!(hooks.len(), 2);
    assert!(hooks.iter().all(|(_, h)| h["object_attributes"]["title"].as_str().unwrap().ends_with("(edited)")));
}

#[tokio::test]
async fn issue_keyset_pagination_exists_from_gitlab_18_3() {
    let sim = start_with(busy(), open_config().await).await;
    let project = paged_project(&sim.handle.sim.dataset());
    let path = format!("/api/v4/projects/{project}/issues?pagination=keyset&order_by=created_at&sort=asc&per_page=5");
    sim.control(Method::PUT, "/instance", json!({"version": "17.9.0"})).await;
    let old = sim.get(TOKEN_OWNER, &path).await;
    assert_eq!(old.status, 200);
    assert_eq!(old.headers["x-page"], "1", "an offset page: the parameter is not read");
    let link = old.headers["link"].to_str().unwrap();
    assert!(link.contains("page=2") && !link.contains("cursor="), "{link}");

    sim.control(Method::PUT, "/instance", json!({"version": "18.3.0"})).await;
    let new = sim.get(TOKEN_OWNER, &path).await;
    assert!(new.headers["link"].to_str().unwrap().contains("cursor="));
    assert!(new.headers.get("x-page").is_none());
    assert_eq!(ids(&old.body, "iid"), ids(&new.body, "iid"));
}

#[tokio::test]
async fn pushed_commits_keep_the_dates_they_carry_and_a_force_push_rewrites_history() {
    let sim = start(open_config().await).await;
    let default = sim.get(TOKEN_OWNER, "/api/v4/projects/1").await.body["default_branch"].as_str().unwrap().to_string();
    sim.control(
        Method::POST,
        "/projects/1/push",
        json!({"branch": default, "commits": 2, "committed_date": "2031-06-01T12:00:00Z",
               "authored_date": "2019-03-01T09:00:00Z", "message": "import\n\nold work"}),
    )
    .await;
    let top = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/repository/commits?ref_name={default}&per_page=2")).await.body;
    let dates: BTreeSet<&str> = top.as_array().unwrap().iter().map(|c| c["committed_date"].as_str().unwrap()).collect();
    assert_eq!(dates, BTreeSet::from(["2031-06-01T11:59:59.000+00:00", "2031-06-01T12:00:00.000+00:00"]));
    assert!(top[0]["authored_date"].as_str().unwrap().starts_with("2019-03-01"));
    assert_eq!((top[0]["title"].clone(), top[0]["message"].clone()), (json!("import"), json!("import\n\nold work")));

    let mr = sim.control(Method::POST, "/projects/1/merge_requests", json!({"source_branch": "rewrite-me", "commits": 3})).await.body;
    let iid = mr["iid"].as_u64().unwrap();
    let path = format!("/api/v4/projects/1/merge_requests/{iid}/commits");
    let mr_commits = async |sim: &Sim| -> Vec<String> {
        let body = sim.get(TOKEN_OWNER, &path).await.body;
        body.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect()
    };
    let old = mr_commits(&sim).await;
    assert_eq!(old.len(), 3);
    sim.control(Method::POST, "/projects/1/push", json!({"branch": "rewrite-me", "commits": 1, "force": true, "reset": 2})).await;
    let new = mr_commits(&sim).await;
    assert_eq!(new.len(), 2, "the first commit stays, the two after it are replaced by one");
    let reachable: BTreeSet<String> = {
        let all = sim.get(TOKEN_OWNER, "/api/v4/projects/1/repository/commits?all=true&per_page=100").await;
        let mut set = BTreeSet::new();
        let pages: usize = all.headers["x-total-pages"].to_str().unwrap().parse().unwrap();
        for page in 1..=pages {
            let r = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/repository/commits?all=true&per_page=100&page={page}")).await;
            set.extend(r.body.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()));
        }
        set
    };
    // Newest first: the oldest of the three stays, the two after it were rewritten.
    assert!(new.contains(&old[2]) && new.iter().all(|c| reachable.contains(c)));
    assert!(!new.contains(&old[0]) && !new.contains(&old[1]));
    assert!(!reachable.contains(&old[0]) && !reachable.contains(&old[1]), "rewritten commits are listed by no ref");
    for (sha, refs) in [(&old[0], json!([])), (&old[2], json!([{"type": "branch", "name": "rewrite-me"}]))] {
        let r = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/repository/commits/{sha}/refs?type=branch")).await;
        assert_eq!(r.body, refs, "{sha}");
    }
}

#[tokio::test]
async fn deletions_fire_no_webhook_and_take_their_notes_and_events() {
    let sim = start_with(busy(), open_config().await).await;
    let ds = sim.handle.sim.dataset();
    let project = paged_project(&ds);
    let p = ds.project(project).unwrap();
    let rx = Receiver::start().await;
    sim.send(Method::POST, TOKEN_OWNER, &format!("/api/v4/projects/{project}/hooks"), all_events(&rx.url)).await;
    let noted = |n: &Note| !n.system;
    let mr = p
        .merge_requests
        .iter()
        .find(|m| p.notes.iter().any(|n| noted(n) && n.noteable == Noteable::MergeRequest { iid: m.iid }))
        .expect("a merge request with comments")
        .iid;
    let issue = p.issues[0].iid;
    let pipeline = p.pipelines[0].id;
    let note = p.notes.iter().find(|n| noted(n) && n.noteable != Noteable::MergeRequest { iid: mr }).unwrap().id;
    let events_path = format!("/api/v4/projects/{project}/events?target_type=note&action=commented&per_page=100");
    let event_notes = async |sim: &Sim| -> Vec<(u64, String, Option<u64>)> {
        let r = sim.get(TOKEN_OWNER, &events_path).await;
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["note"]["id"].as_u64().unwrap(),
                    e["note"]["noteable_type"].as_str().unwrap().to_string(),
                    e["note"]["noteable_iid"].as_u64(),
                )
            })
            .collect()
    };
    assert!(event_notes(&sim).await.iter().any(|(_, t, i)| t == "MergeRequest" && *i == Some(mr)));

    for path in [
        format!("/projects/{project}/merge_requests/{mr}"),
        format!("/projects/{project}/issues/{issue}"),
        format!("/projects/{project}/notes/{note}"),
        format!("/projects/{project}/pipelines/{pipeline}"),
    ] {
        sim.control(Method::DELETE, &path, json!(null)).await;
    }
    for (path, what) in [
        (format!("merge_requests/{mr}"), "merge request"),
        (format!("issues/{issue}"), "issue"),
        (format!("pipelines/{pipeline}"), "pipeline"),
        (format!("merge_requests/{mr}/notes"), "merge request notes"),
    ] {
        let r = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/{project}/{path}")).await;
        assert_eq!(r.status, 404, "{what}: {}", r.body);
    }
    let left = event_notes(&sim).await;
    assert!(!left.iter().any(|(id, _, _)| *id == note), "a deleted note's event is gone");
    assert!(!left.iter().any(|(_, t, i)| t == "MergeRequest" && *i == Some(mr)), "so are those of a deleted merge request");
    assert!(!left.iter().any(|(_, t, i)| t == "Issue" && *i == Some(issue)));
    assert!(rx.events().is_empty(), "GitLab fires no hook for these deletions: {:?}", rx.events());
    let r = sim.http.delete(sim.url(&format!("/-/sim/projects/{project}/issues/{issue}"))).send().await.unwrap();
    assert_eq!(r.status(), 404, "deleted once");
}

#[tokio::test]
async fn a_transferred_project_leaves_its_old_group() {
    let sim = start(open_config().await).await;
    let ds = sim.handle.sim.dataset();
    let project = ds.projects.iter().find(|p| p.namespace_id == PREMIUM_GROUP).unwrap().id;
    let listed = async |sim: &Sim, group: u64| -> Vec<u64> {
        let path = format!("/api/v4/groups/{group}/projects?include_subgroups=true&per_page=100");
        ids(&sim.get(TOKEN_OWNER, &path).await.body, "id")
    };
    assert!(listed(&sim, PREMIUM_GROUP).await.contains(&project));
    let moved = sim.control(Method::POST, &format!("/projects/{project}/transfer"), json!({"namespace_id": FREE_GROUP})).await.body;
    assert!(!listed(&sim, PREMIUM_GROUP).await.contains(&project));
    assert!(listed(&sim, FREE_GROUP).await.contains(&project));
    let p = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/{project}")).await.body;
    assert_eq!(p["namespace"]["id"], FREE_GROUP);
    assert_eq!(p["path_with_namespace"], moved["path_with_namespace"]);
}

#[tokio::test]
async fn comment_events_are_user_comments_after_an_exclusive_date_without_the_commit_sha() {
    let sim = start(open_config().await).await;
    let sha = sim.get(TOKEN_OWNER, "/api/v4/projects/1/repository/commits?per_page=1").await.body[0]["id"].as_str().unwrap().to_string();
    let note =
        sim.control(Method::POST, "/projects/1/notes", json!({"noteable_type": "Commit", "sha": sha, "body": "nice"})).await.body["id"]
            .as_u64()
            .unwrap();
    let system = sim
        .control(
            Method::POST,
            "/projects/1/notes",
            json!({"noteable_type": "Commit", "sha": sha, "body": "mentioned in !1", "system": true}),
        )
        .await
        .body["id"]
        .as_u64()
        .unwrap();
    let today = chrono::Utc::now().date_naive();
    let events = |after: chrono::NaiveDate| {
        let sim = &sim;
        async move {
            sim.get(
                TOKEN_OWNER,
                &format!("/api/v4/projects/1/events?action=commented&target_type=note&sort=asc&per_page=100&after={after}"),
            )
            .await
            .body
        }
    };
    let yesterday = events(today.pred_opt().unwrap()).await;
    let mine = yesterday.as_array().unwrap().iter().find(|e| e["note"]["id"] == note).expect("today's comment, after yesterday").clone();
    assert_eq!(mine["note"]["noteable_type"], "Commit");
    assert!(mine["note"]["noteable_id"].is_null());
    assert!(mine["note"].get("commit_id").is_none(), "the event does not say which commit: {mine}");
    assert_eq!(mine["action_name"], "commented on");
    assert!(!yesterday.as_array().unwrap().iter().any(|e| e["note"]["id"] == system), "system notes make no event");
    let created: Vec<&str> = yesterday.as_array().unwrap().iter().map(|e| e["created_at"].as_str().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    let same_day = events(today).await;
    assert!(!same_day.as_array().unwrap().iter().any(|e| e["note"]["id"] == note), "`after` excludes its own date");
}

/// A note touches its noteable: editing one moves its merge request's `updated_at`, so an
/// `updated_after` list shows the edit.
#[tokio::test]
async fn editing_a_note_moves_its_merge_requests_updated_at() {
    let sim = start(open_config().await).await;
    let ds = sim.handle.sim.dataset();
    let p = ds.project(1).unwrap();
    let (note, iid) = p
        .notes
        .iter()
        .find_map(|n| match n.noteable {
            Noteable::MergeRequest { iid } => Some((n.id, iid)),
            _ => None,
        })
        .expect("a merge request note in project 1");
    let before = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/merge_requests/{iid}")).await.body["updated_at"].clone();
    sim.control(Method::PUT, &format!("/projects/1/notes/{note}"), json!({"body": "edited"})).await;
    let after = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/merge_requests/{iid}")).await.body["updated_at"].clone();
    assert!(after.as_str().unwrap() > before.as_str().unwrap(), "{before} then {after}");
}
