use gitlab_sim::*;
use serde_json::json;

use crate::common::start;

#[tokio::test]
async fn instance_metadata_and_namespaces() {
    let sim = start(SimConfig::default()).await;
    let r = sim.get(TOKEN_OWNER, "/api/v4/version").await;
    assert_eq!(r.body["version"], "19.1.0-ee");
    let r = sim.get(TOKEN_OWNER, "/api/v4/metadata").await;
    assert_eq!(r.body["enterprise"], true);
    assert!(r.body["kas"].is_object() && r.body["revision"].is_string());

    let r = sim.get(TOKEN_OWNER, "/api/v4/namespaces/1").await;
    assert_eq!(r.body["plan"], "premium");
    assert_eq!(r.body["kind"], "group");
    let r = sim.get(TOKEN_DEVELOPER, "/api/v4/namespaces/1").await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("plan").is_none(), "plan is shown to owners only");
}

#[tokio::test]
async fn groups_by_id_or_path_and_their_projects() {
    let sim = start(SimConfig::default()).await;
    let g = sim.get(TOKEN_OWNER, "/api/v4/groups/1").await.body;
    let path = g["full_path"].as_str().unwrap().to_string();
    let by_path = sim.get(TOKEN_OWNER, &format!("/api/v4/groups/{}", path.replace('/', "%2F"))).await;
    assert_eq!(by_path.body["id"], 1);

    let subs = sim.get(TOKEN_OWNER, "/api/v4/groups/1/subgroups").await.body;
    assert_eq!(subs.as_array().unwrap().len(), 2);
    assert!(subs.as_array().unwrap().iter().all(|s| s["parent_id"] == 1));
    let desc = sim.get(TOKEN_OWNER, "/api/v4/groups/1/descendant_groups").await.body;
    assert!(desc.as_array().unwrap().len() >= 2);

    let (direct, all) = sim.handle.sim.with_dataset(|ds| {
        let below = ds.descendants(1);
        (ds.projects.iter().filter(|p| p.namespace_id == 1).count(), ds.projects.iter().filter(|p| below.contains(&p.namespace_id)).count())
    });
    let r = sim.get(TOKEN_OWNER, "/api/v4/groups/1/projects?per_page=100").await;
    assert_eq!(r.body.as_array().unwrap().len(), direct);
    let r = sim.get(TOKEN_OWNER, "/api/v4/groups/1/projects?include_subgroups=true&simple=true&order_by=id&sort=asc&per_page=100").await;
    let ids: Vec<u64> = r.body.as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), all);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(r.body[0].get("permissions").is_none(), "simple=true drops the long fields");

    let m = sim.get(TOKEN_OWNER, &format!("/api/v4/groups/1/members/all/{DEVELOPER_USER}")).await;
    assert_eq!(m.body["access_level"], 30);
    let sub = subs[0]["id"].as_u64().unwrap();
    let m = sim.get(TOKEN_OWNER, &format!("/api/v4/groups/{sub}/members/all/{OWNER_USER}")).await;
    assert_eq!(m.body["access_level"], 50, "membership is inherited into subgroups");
}

#[tokio::test]
async fn projects_commits_and_branches() {
    let sim = start(SimConfig::default()).await;
    let p = sim.get(TOKEN_OWNER, "/api/v4/projects/1").await.body;
    let path = p["path_with_namespace"].as_str().unwrap().replace('/', "%2F");
    assert_eq!(sim.get(TOKEN_OWNER, &format!("/api/v4/projects/{path}")).await.body["id"], 1);
    assert_eq!(p["permissions"]["group_access"]["access_level"], 50);
    let default = p["default_branch"].as_str().unwrap().to_string();

    let branches = sim.get(TOKEN_OWNER, "/api/v4/projects/1/repository/branches?per_page=100").await.body;
    assert!(branches.as_array().unwrap().iter().any(|b| b["name"] == default.as_str() && b["default"] == true));

    let r = sim.get(TOKEN_OWNER, "/api/v4/projects/1/repository/commits?per_page=100").await;
    let total_default: usize = r.headers["x-total"].to_str().unwrap().parse().unwrap();
    let r_all = sim.get(TOKEN_OWNER, "/api/v4/projects/1/repository/commits?all=true&per_page=100").await;
    let total_all: usize = r_all.headers["x-total"].to_str().unwrap().parse().unwrap();
    assert!(total_all > total_default, "open MR branches hold commits not on {default}");
    let first = &r.body[0];
    for key in [
        "id",
        "short_id",
        "title",
        "message",
        "author_name",
        "author_email",
        "authored_date",
        "committer_name",
        "committer_email",
        "committed_date",
        "created_at",
        "parent_ids",
        "web_url",
    ] {
        assert!(first.get(key).is_some(), "commit lacks {key}");
    }
    let dates: Vec<&str> = r.body.as_array().unwrap().iter().map(|c| c["committed_date"].as_str().unwrap()).collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let sha = first["id"].as_str().unwrap();
    let one = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/repository/commits/{sha}")).await;
    assert_eq!(one.body["id"], sha);
    assert!(one.body["stats"]["total"].is_number());
    let since = dates[5].replace('+', "%2B");
    let r = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/repository/commits?since={since}&per_page=100")).await;
    assert_eq!(r.body.as_array().unwrap().len(), 6);
    let r = sim.get(TOKEN_OWNER, "/api/v4/projects/1/repository/commits/0000000").await;
    assert_eq!((r.status, r.body.clone()), (404, json!({"message": "404 Commit Not Found"})));
}

#[tokio::test]
async fn merge_requests_issues_notes_pipelines() {
    let sim = start(SimConfig::default()).await;
    let all = sim.get(TOKEN_OWNER, "/api/v4/projects/1/merge_requests?state=all&per_page=100").await;
    let merged = sim.get(TOKEN_OWNER, "/api/v4/projects/1/merge_requests?state=merged&per_page=100").await;
    assert!(merged.body.as_array().unwrap().iter().all(|m| m["state"] == "merged" && m["merged_at"].is_string()));
    assert!(all.body.as_array().unwrap().len() > merged.body.as_array().unwrap().len());
    let mr = &all.body[0];
    assert!(mr["author"]["username"].is_string());
    let iid = mr["iid"].as_u64().unwrap();
    let mid = mr["updated_at"].as_str().unwrap();
    let after = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/merge_requests?updated_after={mid}&order_by=updated_at&sort=asc")).await;
    assert!(after.body.as_array().unwrap().iter().all(|m| m["updated_at"].as_str().unwrap() >= mid));
    let simple = sim.get(TOKEN_OWNER, "/api/v4/projects/1/merge_requests?view=simple").await;
    assert!(simple.body[0].get("author").is_none());
    let commits = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/merge_requests/{iid}/commits")).await;
    assert!(!commits.body.as_array().unwrap().is_empty());
    assert_eq!(sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/merge_requests/{iid}/notes")).await.status, 200);

    let issues = sim.get(TOKEN_OWNER, "/api/v4/projects/1/issues?scope=all&state=all&per_page=100").await;
    assert!(!issues.body.as_array().unwrap().is_empty());
    let iid = issues.body[0]["iid"].as_u64().unwrap();
    assert_eq!(sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/issues/{iid}/notes")).await.status, 200);

    let (no_issues, no_ci) = sim.handle.sim.with_dataset(|ds| {
        (ds.projects.iter().find(|p| !p.issues_enabled).unwrap().id, ds.projects.iter().find(|p| !p.jobs_enabled).unwrap().id)
    });
    let r = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/{no_issues}/issues")).await;
    assert_eq!((r.status, r.body.clone()), (200, json!([])), "IssuesFinder skips the project");
    let r = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/{no_issues}/issues/1")).await;
    assert_eq!((r.status, r.body.clone()), (404, json!({"message": "404 Not found"})));
    let r = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/{no_issues}/issues/1/notes")).await;
    assert_eq!((r.status, r.body.clone()), (404, json!({"message": "404 Issue Not Found"})));
    let r = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/{no_ci}/pipelines")).await;
    assert_eq!((r.status, r.body.clone()), (403, json!({"message": "403 Forbidden"})));

    let pipes = sim.get(TOKEN_OWNER, "/api/v4/projects/1/pipelines?per_page=100").await;
    let ids: Vec<u64> = pipes.body.as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest id first by default");
    let success = sim.get(TOKEN_OWNER, "/api/v4/projects/1/pipelines?status=success").await;
    assert!(success.body.as_array().unwrap().iter().all(|p| p["status"] == "success"));

    let sha = pipes.body[0]["sha"].as_str().unwrap();
    let comments = sim.get(TOKEN_OWNER, &format!("/api/v4/projects/1/repository/commits/{sha}/comments")).await;
    assert_eq!(comments.status, 200);
}

#[tokio::test]
async fn listing_groups_shows_the_callers_memberships() {
    let sim = start(SimConfig::default()).await;
    let ds = sim.handle.sim.dataset();
    let ids = |r: &crate::common::Reply| -> Vec<u64> {
        let mut v: Vec<u64> = r.body.as_array().unwrap().iter().map(|g| g["id"].as_u64().unwrap()).collect();
        v.sort_unstable();
        v
    };
    let mut every: Vec<u64> = ds.groups.iter().map(|g| g.id).collect();
    every.sort_unstable();
    let owner = sim.get(TOKEN_OWNER, "/api/v4/groups?per_page=100").await;
    assert_eq!(ids(&owner), every, "the owner of every top-level group is a member of all");
    let top = sim.get(TOKEN_OWNER, "/api/v4/groups?top_level_only=true&per_page=100").await;
    let roots: Vec<u64> = ds.groups.iter().filter(|g| g.parent_id.is_none()).map(|g| g.id).collect();
    assert_eq!(ids(&top), roots);

    let first = roots[0];
    let mut under_first: Vec<u64> = std::iter::once(first).chain(ds.descendants(first)).collect();
    under_first.sort_unstable();
    under_first.dedup();
    let developer = sim.get(TOKEN_DEVELOPER, "/api/v4/groups?per_page=100").await;
    assert_eq!(ids(&developer), under_first, "a member of the first group only");
    let owned = sim.get(TOKEN_DEVELOPER, "/api/v4/groups?owned=true").await;
    assert_eq!(owned.body, json!([]));
    let name = &ds.group(first).unwrap().name;
    let found = sim.get(TOKEN_OWNER, &format!("/api/v4/groups?search={}", &name.to_uppercase())).await;
    assert!(ids(&found).contains(&first));
}
