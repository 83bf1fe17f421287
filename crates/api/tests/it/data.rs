//! Reading synced data back and the change feed: data seeded the way the worker writes it (the
//! store's upserts of GitLab-shaped JSON), read over HTTP.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use connector_store::TenantId;
use connector_store::sync::{self, NoteParent};
use connector_test_support::{insert_connection, new_connection};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{TestApp, assert_error};

const LISTS: [&str; 6] = ["projects", "commits", "merge_requests", "issues", "notes", "pipelines"];

/// A connection of `tenant` to group 5, the namespace of the projects the tests seed.
pub(crate) async fn connect(app: &TestApp, tenant: &str) -> Uuid {
    insert_connection(&app.store, &TenantId::parse(tenant).unwrap(), new_connection(vec![5])).await
}

pub(crate) fn project(id: i64, path: &str, last_activity: &str) -> Value {
    json!({
        "id": id, "path_with_namespace": path, "name": path.rsplit('/').next().unwrap(), "namespace": {"id": 5},
        "default_branch": "main", "visibility": "private", "web_url": format!("https://gitlab.example.com/{path}"),
        "archived": false, "created_at": "2023-06-01T00:00:00Z", "last_activity_at": last_activity,
    })
}

pub(crate) fn commit(sha: &str, title: &str, committed: &str) -> Value {
    json!({
        "id": sha, "title": title, "message": format!("{title}\n\nbody"), "author_name": "Ada", "author_email": "ada@example.com",
        "authored_date": committed, "committer_name": "Ada", "committer_email": "ada@example.com",
        "committed_date": committed, "parent_ids": ["0000"], "web_url": format!("https://gitlab.example.com/c/{sha}"),
    })
}

pub(crate) fn merge_request(iid: i64, title: &str, state: &str, updated: &str) -> Value {
    json!({
        "id": 1000 + iid, "iid": iid, "title": title, "description": "why", "state": state,
        "author": {"id": 7, "username": "ada"}, "source_branch": format!("feature-{iid}"), "target_branch": "main",
        "sha": "abc", "merge_commit_sha": null, "web_url": format!("https://gitlab.example.com/mr/{iid}"),
        "created_at": "2024-01-02T00:00:00Z", "updated_at": updated,
        "merged_at": if state == "merged" { json!(updated) } else { Value::Null }, "closed_at": null,
    })
}

pub(crate) fn issue(iid: i64, title: &str, state: &str, updated: &str) -> Value {
    json!({
        "id": 2000 + iid, "iid": iid, "title": title, "description": "what", "state": state, "issue_type": "issue",
        "author": {"id": 8, "username": "grace"}, "labels": ["bug"], "confidential": false,
        "web_url": format!("https://gitlab.example.com/issues/{iid}"), "created_at": "2024-01-02T00:00:00Z",
        "updated_at": updated, "closed_at": null,
    })
}

pub(crate) fn note(id: i64, body: &str, updated: &str) -> Value {
    json!({
        "id": id, "body": body, "author": {"id": 7, "username": "ada"}, "system": false,
        "created_at": "2024-01-03T00:00:00Z", "updated_at": updated,
    })
}

pub(crate) fn pipeline(id: i64, status: &str, updated: &str) -> Value {
    json!({
        "id": id, "iid": id - 100, "status": status, "source": "push", "ref": "main", "sha": "abc",
        "web_url": format!("https://gitlab.example.com/pipelines/{id}"), "created_at": "2024-01-03T00:00:00Z",
        "updated_at": updated, "finished_at": null, "duration": 42.5,
    })
}

/// Two projects with a bit of everything. Titles carry the tenant, so a row of the wrong tenant
/// would show. Both tenants get the same GitLab ids, as two companies' GitLabs could.
pub(crate) async fn seed(app: &TestApp, tenant: &str, c: Uuid) {
    let mut tx = app.store.tenant_tx(&TenantId::parse(tenant).unwrap()).await.unwrap();
    sync::upsert_projects(
        &mut tx,
        c,
        &json!([
            project(12, &format!("{tenant}/web"), "2024-05-01T00:00:00Z"),
            project(11, &format!("{tenant}/api"), "2024-02-01T00:00:00Z")
        ]),
    )
    .await
    .unwrap();
    let t = |s: &str| format!("{tenant} {s}");
    sync::upsert_commits(
        &mut tx,
        c,
        11,
        &json!([
            commit("b2", &t("second"), "2024-02-01T00:00:00Z"),
            commit("a1", &t("first"), "2024-01-10T00:00:00Z"),
            commit("c3", &t("third"), "2024-03-01T00:00:00Z"),
        ]),
    )
    .await
    .unwrap();
    sync::upsert_commits(&mut tx, c, 12, &json!([commit("a1", &t("web first"), "2024-04-01T00:00:00Z")])).await.unwrap();
    sync::upsert_merge_requests(
        &mut tx,
        c,
        11,
        &json!([
            merge_request(1, &t("mr one"), "opened", "2024-02-01T00:00:00Z"),
            merge_request(2, &t("mr two"), "merged", "2024-03-01T00:00:00Z"),
            merge_request(3, &t("mr three"), "closed", "2024-01-15T00:00:00Z"),
        ]),
    )
    .await
    .unwrap();
    sync::upsert_merge_requests(&mut tx, c, 12, &json!([merge_request(1, &t("web mr"), "opened", "2024-04-01T00:00:00Z")])).await.unwrap();
    sync::set_merge_request_commits(&mut tx, c, 11, 2, &["b2".into(), "a1".into()]).await.unwrap();
    sync::upsert_issues(
        &mut tx,
        c,
        11,
        &json!([issue(1, &t("issue one"), "opened", "2024-02-01T00:00:00Z"), issue(2, &t("issue two"), "closed", "2024-03-01T00:00:00Z")]),
    )
    .await
    .unwrap();
    sync::upsert_issues(&mut tx, c, 12, &json!([issue(1, &t("web issue"), "opened", "2024-04-01T00:00:00Z")])).await.unwrap();
    sync::upsert_notes(
        &mut tx,
        c,
        11,
        "MergeRequest",
        NoteParent::Iid(1),
        &json!([note(502, &t("lgtm"), "2024-02-02T00:00:00Z"), note(501, &t("nit"), "2024-02-01T00:00:00Z")]),
    )
    .await
    .unwrap();
    sync::upsert_notes(&mut tx, c, 11, "Issue", NoteParent::Iid(1), &json!([note(503, &t("repro"), "2024-03-05T00:00:00Z")]))
        .await
        .unwrap();
    sync::upsert_notes(&mut tx, c, 11, "MergeRequest", NoteParent::Iid(2), &json!([note(504, &t("merged"), "2024-03-01T00:00:00Z")]))
        .await
        .unwrap();
    sync::upsert_notes(&mut tx, c, 12, "Commit", NoteParent::Commit("a1"), &json!([note(505, &t("on commit"), "2024-04-02T00:00:00Z")]))
        .await
        .unwrap();
    sync::upsert_pipelines(
        &mut tx,
        c,
        11,
        &json!([pipeline(102, "failed", "2024-03-01T00:00:00Z"), pipeline(101, "success", "2024-02-01T00:00:00Z")]),
    )
    .await
    .unwrap();
    sync::upsert_pipelines(&mut tx, c, 12, &json!([pipeline(201, "running", "2024-04-01T00:00:00Z")])).await.unwrap();
    tx.commit().await.unwrap();
}

async fn get(app: &TestApp, tenant: &str, path: &str) -> Value {
    let (status, body) = app.call(Method::GET, path, Some(tenant), None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

pub(crate) fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().unwrap_or_else(|| panic!("no items in {page}"))
}

/// `field` of every item, as strings (numbers too), e.g. `["11/1", "11/2"]` for `project_id/iid`.
fn keys(page: &Value, fields: &[&str]) -> Vec<String> {
    items(page)
        .iter()
        .map(|i| fields.iter().map(|f| i[*f].to_string().trim_matches('"').to_owned()).collect::<Vec<_>>().join("/"))
        .collect()
}

/// The key fields of each list, in its order.
fn key_fields(list: &str) -> &'static [&'static str] {
    match list {
        "projects" => &["id"],
        "commits" => &["project_id", "sha"],
        "merge_requests" | "issues" => &["project_id", "iid"],
        _ => &["project_id", "id"],
    }
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn each_list_returns_the_connections_rows_in_key_order(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let a = connect(&app, "acme").await;
    let a2 = connect(&app, "acme").await;
    let b = connect(&app, "globex").await;
    seed(&app, "acme", a).await;
    seed(&app, "globex", b).await;
    // The tenant's other connection holds the same GitLab ids; it must not leak into `a`'s lists.
    seed(&app, "acme", a2).await;
    sqlx::query("UPDATE issues SET title = 'other connection' WHERE connection_id = $1").bind(a2).execute(&app.owner).await.unwrap();

    let base = format!("/v1/connections/{a}");
    let projects = get(&app, "acme", &format!("{base}/projects")).await;
    assert_eq!(keys(&projects, &["id"]), ["11", "12"]);
    assert_eq!(projects["next_cursor"], Value::Null);
    let p = &items(&projects)[0];
    assert_eq!(p["path_with_namespace"], "acme/api");
    assert_eq!(p["name"], "api");
    assert_eq!(p["namespace_id"], 5);
    assert_eq!(p["default_branch"], "main");
    assert_eq!(p["visibility"], "private");
    assert_eq!(p["web_url"], "https://gitlab.example.com/acme/api");
    assert_eq!(p["archived"], false);
    assert_eq!(p["last_activity_at"], "2024-02-01T00:00:00Z");
    assert_eq!(p["deleted_at"], Value::Null);
    assert!(p.get("raw").is_none(), "{p}");

    let commits = get(&app, "acme", &format!("{base}/commits")).await;
    assert_eq!(keys(&commits, &["project_id", "sha"]), ["11/a1", "11/b2", "11/c3", "12/a1"]);
    let c = &items(&commits)[0];
    assert_eq!(c["title"], "acme first");
    assert_eq!(c["message"], "acme first\n\nbody");
    assert_eq!(c["author_name"], "Ada");
    assert_eq!(c["author_email"], "ada@example.com");
    assert_eq!(c["committed_at"], "2024-01-10T00:00:00Z");
    assert_eq!(c["parent_ids"], json!(["0000"]));
    assert!(c.get("raw").is_none());

    let mrs = get(&app, "acme", &format!("{base}/merge_requests")).await;
    assert_eq!(keys(&mrs, &["project_id", "iid"]), ["11/1", "11/2", "11/3", "12/1"]);
    let m = &items(&mrs)[1];
    assert_eq!(m["id"], 1002);
    assert_eq!(m["title"], "acme mr two");
    assert_eq!(m["state"], "merged");
    assert_eq!(m["author_username"], "ada");
    assert_eq!(m["author_id"], 7);
    assert_eq!(m["source_branch"], "feature-2");
    assert_eq!(m["target_branch"], "main");
    assert_eq!(m["commit_shas"], json!(["a1", "b2"]));
    assert_eq!(m["updated_at"], "2024-03-01T00:00:00Z");
    assert_eq!(m["merged_at"], "2024-03-01T00:00:00Z");
    assert_eq!(m["web_url"], "https://gitlab.example.com/mr/2");
    assert!(m.get("raw").is_none());

    let issues = get(&app, "acme", &format!("{base}/issues")).await;
    assert_eq!(keys(&issues, &["project_id", "iid"]), ["11/1", "11/2", "12/1"]);
    let i = &items(&issues)[0];
    assert_eq!(i["title"], "acme issue one");
    assert_eq!(i["id"], 2001);
    assert_eq!(i["labels"], json!(["bug"]));
    assert_eq!(i["author_username"], "grace");
    assert_eq!(i["issue_type"], "issue");
    assert!(items(&issues).iter().all(|i| i["title"].as_str().unwrap().starts_with("acme ")), "{issues}");

    let notes = get(&app, "acme", &format!("{base}/notes")).await;
    assert_eq!(keys(&notes, &["project_id", "id"]), ["11/501", "11/502", "11/503", "11/504", "12/505"]);
    let n = &items(&notes)[0];
    assert_eq!(n["body"], "acme nit");
    assert_eq!(n["noteable_type"], "MergeRequest");
    assert_eq!(n["noteable_iid"], 1);
    assert_eq!(items(&notes)[4]["noteable_type"], "Commit");
    assert_eq!(items(&notes)[4]["commit_sha"], "a1");

    let pipelines = get(&app, "acme", &format!("{base}/pipelines")).await;
    assert_eq!(keys(&pipelines, &["project_id", "id"]), ["11/101", "11/102", "12/201"]);
    let pl = &items(&pipelines)[0];
    assert_eq!(pl["status"], "success");
    assert_eq!(pl["ref"], "main");
    assert_eq!(pl["iid"], 1);
    assert_eq!(pl["duration_seconds"], 42.5);

    // The other tenant reads its own rows through its own connection.
    let theirs = get(&app, "globex", &format!("/v1/connections/{b}/merge_requests")).await;
    assert_eq!(items(&theirs)[0]["title"], "globex mr one");
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn filters(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let a = connect(&app, "acme").await;
    seed(&app, "acme", a).await;
    let base = format!("/v1/connections/{a}");
    let q = |list: &str, query: &str| format!("{base}/{list}?{query}");

    assert_eq!(keys(&get(&app, "acme", &q("projects", "project=12")).await, &["id"]), ["12"]);
    assert_eq!(keys(&get(&app, "acme", &q("projects", "updated_since=2024-03-01T00:00:00Z")).await, &["id"]), ["12"]);

    let commits = |query: &str| q("commits", query);
    assert_eq!(keys(&get(&app, "acme", &commits("project=12")).await, &["project_id", "sha"]), ["12/a1"]);
    // For commits `updated_since` is the commit time, inclusive.
    assert_eq!(
        keys(&get(&app, "acme", &commits("updated_since=2024-02-01T00:00:00Z")).await, &["project_id", "sha"]),
        ["11/b2", "11/c3", "12/a1"]
    );
    // An offset other than Z, its `+` encoded.
    assert_eq!(
        keys(&get(&app, "acme", &commits("project=11&updated_since=2024-02-01T01:00:00%2B01:00")).await, &["project_id", "sha"]),
        ["11/b2", "11/c3"]
    );

    let mrs = |query: &str| q("merge_requests", query);
    assert_eq!(keys(&get(&app, "acme", &mrs("state=opened")).await, &["project_id", "iid"]), ["11/1", "12/1"]);
    assert_eq!(keys(&get(&app, "acme", &mrs("state=merged")).await, &["project_id", "iid"]), ["11/2"]);
    assert_eq!(keys(&get(&app, "acme", &mrs("state=locked")).await, &["project_id", "iid"]), Vec::<String>::new());
    assert_eq!(
        keys(&get(&app, "acme", &mrs("project=11&updated_since=2024-02-01T00:00:00Z")).await, &["project_id", "iid"]),
        ["11/1", "11/2"]
    );
    assert_eq!(keys(&get(&app, "acme", &mrs("project=11&state=opened")).await, &["project_id", "iid"]), ["11/1"]);

    let issues = |query: &str| q("issues", query);
    assert_eq!(keys(&get(&app, "acme", &issues("state=closed")).await, &["project_id", "iid"]), ["11/2"]);
    assert_eq!(keys(&get(&app, "acme", &issues("state=opened&project=12")).await, &["project_id", "iid"]), ["12/1"]);
    assert_eq!(keys(&get(&app, "acme", &issues("updated_since=2024-02-15T00:00:00Z")).await, &["project_id", "iid"]), ["11/2", "12/1"]);

    let notes = |query: &str| q("notes", query);
    assert_eq!(keys(&get(&app, "acme", &notes("noteable_type=MergeRequest")).await, &["id"]), ["501", "502", "504"]);
    assert_eq!(keys(&get(&app, "acme", &notes("noteable_type=MergeRequest&noteable_iid=1&project=11")).await, &["id"]), ["501", "502"]);
    assert_eq!(keys(&get(&app, "acme", &notes("noteable_type=Issue&noteable_iid=1&project=11")).await, &["id"]), ["503"]);
    assert_eq!(keys(&get(&app, "acme", &notes("noteable_type=Commit")).await, &["id"]), ["505"]);
    assert_eq!(keys(&get(&app, "acme", &notes("updated_since=2024-03-01T00:00:00Z&project=11")).await, &["id"]), ["503", "504"]);

    let pipelines = |query: &str| q("pipelines", query);
    assert_eq!(keys(&get(&app, "acme", &pipelines("state=failed")).await, &["id"]), ["102"]);
    assert_eq!(keys(&get(&app, "acme", &pipelines("state=running&project=12")).await, &["id"]), ["201"]);
    assert_eq!(keys(&get(&app, "acme", &pipelines("updated_since=2024-02-15T00:00:00Z")).await, &["id"]), ["102", "201"]);
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn bad_parameters_are_422_naming_the_field(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let a = connect(&app, "acme").await;
    seed(&app, "acme", a).await;
    let base = format!("/v1/connections/{a}");
    // A cursor of another list is not accepted as this one's.
    let commits_page = get(&app, "acme", &format!("{base}/commits?limit=1")).await;
    let commit_cursor = commits_page["next_cursor"].as_str().unwrap().to_owned();
    let cases = [
        (format!("{base}/projects?limit=0"), "limit"),
        (format!("{base}/projects?limit=101"), "limit"),
        (format!("{base}/commits?limit=ten"), "limit"),
        (format!("{base}/commits?cursor=nonsense"), "cursor"),
        (format!("{base}/issues?cursor={commit_cursor}"), "cursor"),
        (format!("{base}/merge_requests?updated_since=yesterday"), "updated_since"),
        // An unencoded `+` arrives as a space.
        (format!("{base}/merge_requests?updated_since=2024-01-01T00:00:00+01:00"), "updated_since"),
        (format!("{base}/merge_requests?state=open"), "state"),
        (format!("{base}/issues?state=merged"), "state"),
        (format!("{base}/pipelines?state=green"), "state"),
        (format!("{base}/pipelines?project=abc"), "project"),
        (format!("{base}/notes?noteable_type=PullRequest"), "noteable_type"),
        (format!("{base}/notes?noteable_iid=1&project=11"), "noteable_iid"),
        (format!("{base}/notes?noteable_iid=1&noteable_type=Issue"), "noteable_iid"),
        (format!("{base}/notes?noteable_iid=1&noteable_type=Commit&project=12"), "noteable_iid"),
        ("/v1/changes?after=nonsense".to_owned(), "after"),
        (format!("/v1/changes?after={commit_cursor}"), "after"),
        ("/v1/changes?limit=1000".to_owned(), "limit"),
    ];
    for (path, field) in cases {
        let (status, body) = app.call(Method::GET, &path, Some("acme"), None).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_error(&body, "validation_failed");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
    }
    // A parameter given twice is refused before its value is read, naming it.
    let (status, body) = app.call(Method::GET, &format!("{base}/notes?limit=1&limit=2"), Some("acme"), None).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "unknown_parameter");
    assert_eq!(body["error"]["field"], "limit", "{body}");
    // Every bad field at once.
    let (status, body) = app.call(Method::GET, &format!("{base}/issues?state=x&limit=0&project=-1"), Some("acme"), None).await;
    assert_eq!(status, 422);
    let fields: HashSet<&str> = body["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, HashSet::from(["state", "limit", "project"]));
    let (status, _) = app.call(Method::GET, &format!("{base}/issues"), None, None).await;
    assert_eq!(status, 401);
}

/// Follows `next_cursor` from the first page to the last, calling `between` after each page.
async fn page_through(app: &TestApp, tenant: &str, path: &str, limit: usize, mut between: impl AsyncFnMut(usize)) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for page_no in 0.. {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let page = get(app, tenant, &url).await;
        assert!(items(&page).len() <= limit);
        all.extend(items(&page).iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        between(page_no).await;
    }
    all
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn paging_returns_every_row_once(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let a = connect(&app, "acme").await;
    seed(&app, "acme", a).await;
    for list in LISTS {
        let path = format!("/v1/connections/{a}/{list}");
        let everything = get(&app, "acme", &path).await;
        let expected = keys(&everything, key_fields(list));
        for limit in [1, 2, 3] {
            let paged = page_through(&app, "acme", &path, limit, async |_| {}).await;
            assert_eq!(keys(&json!({"items": paged}), key_fields(list)), expected, "{list} by {limit}");
        }
    }
    // Filters hold across pages.
    let paged = page_through(&app, "acme", &format!("/v1/connections/{a}/merge_requests?state=opened"), 1, async |_| {}).await;
    assert_eq!(keys(&json!({"items": paged}), &["project_id", "iid"]), ["11/1", "12/1"]);
    // A page of exactly `limit` rows that ends the list has no next page.
    let page = get(&app, "acme", &format!("/v1/connections/{a}/issues?limit=3")).await;
    assert_eq!(items(&page).len(), 3);
    assert_eq!(page["next_cursor"], Value::Null);
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn paging_neither_repeats_nor_skips_rows_updated_between_pages(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let a = connect(&app, "acme").await;
    let tenant = TenantId::parse("acme").unwrap();
    let mut tx = app.store.tenant_tx(&tenant).await.unwrap();
    for project in [11, 12, 13] {
        let mrs: Vec<Value> =
            (1..=7).map(|iid| merge_request(iid, &format!("mr {project}/{iid}"), "opened", "2024-02-01T00:00:00Z")).collect();
        sync::upsert_merge_requests(&mut tx, a, project, &json!(mrs)).await.unwrap();
        let commits: Vec<Value> = (0..5).map(|n| commit(&format!("{n:x}{project}"), "c", "2024-02-01T00:00:00Z")).collect();
        sync::upsert_commits(&mut tx, a, project, &json!(commits)).await.unwrap();
    }
    tx.commit().await.unwrap();

    // After every page, every merge request is updated (newer `updated_at`, new state): those
    // already read and those still ahead. Ordered by `updated_at` they would all move.
    let store = app.store.clone();
    let path = format!("/v1/connections/{a}/merge_requests?updated_since=2024-01-01T00:00:00Z");
    let paged = page_through(&app, "acme", &path, 4, async |page| {
        let mut tx = store.tenant_tx(&tenant).await.unwrap();
        let updated = format!("2024-03-{:02}T00:00:00Z", page + 1);
        for project in [11, 12, 13] {
            let mrs: Vec<Value> =
                (1..=7).map(|iid| merge_request(iid, &format!("mr {project}/{iid} v{page}"), "closed", &updated)).collect();
            sync::upsert_merge_requests(&mut tx, a, project, &json!(mrs)).await.unwrap();
        }
        tx.commit().await.unwrap();
    })
    .await;
    let got = keys(&json!({"items": paged}), &["project_id", "iid"]);
    let want: Vec<String> = [11, 12, 13].iter().flat_map(|p| (1..=7).map(move |i| format!("{p}/{i}"))).collect();
    assert_eq!(got, want);
    // The later pages show the rows as updated meanwhile.
    assert_eq!(paged.last().unwrap()["state"], "closed");

    // Commits (a text key) with new commits arriving ahead of the cursor: they are read too.
    let store = app.store.clone();
    let paged = page_through(&app, "acme", &format!("/v1/connections/{a}/commits"), 4, async |page| {
        let mut tx = store.tenant_tx(&tenant).await.unwrap();
        sync::upsert_commits(&mut tx, a, 14, &json!([commit(&format!("f{page}"), "late", "2024-03-01T00:00:00Z")])).await.unwrap();
        tx.commit().await.unwrap();
    })
    .await;
    let got = keys(&json!({"items": paged}), &["project_id", "sha"]);
    assert_eq!(got.len(), got.iter().collect::<HashSet<_>>().len(), "a commit repeated: {got:?}");
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM commits WHERE connection_id = $1").bind(a).fetch_one(&app.owner).await.unwrap();
    assert_eq!(got.len() as i64, total, "{got:?}");
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn another_tenants_connection_is_404_like_a_missing_one(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let a = connect(&app, "acme").await;
    let b = connect(&app, "globex").await;
    seed(&app, "acme", a).await;
    seed(&app, "globex", b).await;
    for list in LISTS {
        let (status, theirs) = app.call(Method::GET, &format!("/v1/connections/{a}/{list}"), Some("globex"), None).await;
        assert_eq!(status, 404, "{list}: {theirs}");
        assert_error(&theirs, "not_found");
        let (status, missing) = app.call(Method::GET, &format!("/v1/connections/{}/{list}", Uuid::new_v4()), Some("globex"), None).await;
        assert_eq!(status, 404);
        assert_eq!(theirs, missing, "{list}");
        let (status, not_an_id) = app.call(Method::GET, &format!("/v1/connections/xyz/{list}"), Some("globex"), None).await;
        assert_eq!(status, 404);
        assert_eq!(not_an_id, missing, "{list}");
        // The owner still reads it.
        assert!(!items(&get(&app, "acme", &format!("/v1/connections/{a}/{list}")).await).is_empty(), "{list}");
    }

    // Each tenant's feed holds its own changes only.
    let acme = feed_until(&app, "acme", None, |items| items.len() >= 21).await;
    let globex = feed_until(&app, "globex", None, |items| items.len() >= 21).await;
    assert!(acme.iter().all(|c| c["connection_id"] == a.to_string()), "{acme:?}");
    assert!(globex.iter().all(|c| c["connection_id"] == b.to_string()), "{globex:?}");
    let cursors: HashSet<&Value> = acme.iter().map(|c| &c["cursor"]).collect();
    assert!(globex.iter().all(|c| !cursors.contains(&c["cursor"])));
}

/// Reads the tenant's feed from `after` to its end, again and again, until `done` holds for
/// everything read. Any transaction running anywhere on the server (other tests too) holds the
/// feed back while it runs, so what was just committed can take a moment to show.
pub(crate) async fn feed_until(app: &TestApp, tenant: &str, after: Option<&str>, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let (read, _) = read_feed(app, tenant, after).await;
        if done(&read) {
            return read;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the feed never got there: {read:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything in the feed after `after`, paging by 7, and the final `next_cursor`.
async fn read_feed(app: &TestApp, tenant: &str, after: Option<&str>) -> (Vec<Value>, String) {
    let mut all = Vec::new();
    let mut after = after.map(str::to_owned);
    loop {
        let path = match &after {
            Some(a) => format!("/v1/changes?limit=7&after={a}"),
            None => "/v1/changes?limit=7".to_owned(),
        };
        let page = get(app, tenant, &path).await;
        let next = page["next_cursor"].as_str().expect("next_cursor is always there").to_owned();
        let page_items = items(&page).clone();
        if let Some(last) = page_items.last() {
            assert_eq!(last["cursor"].as_str(), Some(next.as_str()));
        } else if let Some(a) = &after {
            assert_eq!(&next, a, "an empty page hands the cursor back");
        }
        let empty = page_items.is_empty();
        all.extend(page_items);
        after = Some(next.clone());
        if empty {
            return (all, next);
        }
    }
}

fn summary(changes: &[Value]) -> Vec<(String, String, Value)> {
    changes.iter().map(|c| (c["entity"].as_str().unwrap().to_owned(), c["op"].as_str().unwrap().to_owned(), c["key"].clone())).collect()
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn the_feed_shows_inserts_updates_and_deletes_in_order(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let a = connect(&app, "acme").await;
    let tenant = TenantId::parse("acme").unwrap();
    let (empty, start) = read_feed(&app, "acme", None).await;
    assert!(empty.is_empty());

    let upsert = async |items: Value| {
        let mut tx = app.store.tenant_tx(&tenant).await.unwrap();
        sync::upsert_merge_requests(&mut tx, a, 11, &items).await.unwrap();
        tx.commit().await.unwrap();
    };
    upsert(json!([merge_request(1, "one", "opened", "2024-02-01T00:00:00Z"), merge_request(2, "two", "opened", "2024-02-01T00:00:00Z")]))
        .await;
    // The same page again (a retried job, a webhook for what the backfill stored) is no change.
    upsert(json!([merge_request(1, "one", "opened", "2024-02-01T00:00:00Z"), merge_request(2, "two", "opened", "2024-02-01T00:00:00Z")]))
        .await;
    // Nor is an older version arriving late.
    upsert(json!([merge_request(1, "stale", "opened", "2024-01-01T00:00:00Z")])).await;
    upsert(json!([merge_request(1, "one", "merged", "2024-02-02T00:00:00Z")])).await;
    sqlx::query("DELETE FROM merge_requests WHERE connection_id = $1 AND iid = 2").bind(a).execute(&app.owner).await.unwrap();

    let key = |iid: i64| json!({"project_id": 11, "iid": iid});
    let want = vec![
        ("merge_request".to_owned(), "insert".to_owned(), key(1)),
        ("merge_request".to_owned(), "insert".to_owned(), key(2)),
        ("merge_request".to_owned(), "update".to_owned(), key(1)),
        ("merge_request".to_owned(), "delete".to_owned(), key(2)),
    ];
    let changes = feed_until(&app, "acme", Some(&start), |c| c.len() >= want.len()).await;
    assert_eq!(summary(&changes), want);
    assert!(changes.iter().all(|c| c["connection_id"] == a.to_string() && c["changed_at"].is_string()));
    // Reading on from any item's cursor gives exactly what follows it.
    let (rest, _) = read_feed(&app, "acme", changes[1]["cursor"].as_str()).await;
    assert_eq!(summary(&rest), want[2..]);
    // Polling at the end returns nothing and the same cursor.
    let end = changes.last().unwrap()["cursor"].as_str().unwrap();
    let (nothing, next) = read_feed(&app, "acme", Some(end)).await;
    assert!(nothing.is_empty());
    assert_eq!(next, end);
}

/// Starts a transaction on the owner pool that writes an issue of `connection` (its change row
/// with it) and stays open.
async fn open_writer(app: &TestApp, connection: Uuid, iid: i64) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = app.owner.begin().await.unwrap();
    insert_issue(&mut tx, connection, iid).await;
    tx
}

async fn insert_issue(conn: &mut sqlx::PgConnection, connection: Uuid, iid: i64) {
    sqlx::query(
        "INSERT INTO issues (tenant_id, connection_id, project_id, iid, gitlab_id, title, state, gitlab_updated_at)
         VALUES ('acme', $1, 11, $2, $2, 'raw', 'opened', now())",
    )
    .bind(connection)
    .bind(iid)
    .execute(conn)
    .await
    .unwrap();
}

async fn commit_issue(app: &TestApp, connection: Uuid, iid: i64) {
    let mut tx = app.store.tenant_tx(&TenantId::parse("acme").unwrap()).await.unwrap();
    sync::upsert_issues(&mut tx, connection, 11, &json!([issue(iid, "committed", "opened", "2024-02-01T00:00:00Z")])).await.unwrap();
    tx.commit().await.unwrap();
}

fn issue_iids(changes: &[Value]) -> Vec<i64> {
    changes.iter().map(|c| c["key"]["iid"].as_i64().unwrap()).collect()
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn an_open_transaction_holds_back_the_changes_committed_after_it(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let a = connect(&app, "acme").await;
    let (_, start) = read_feed(&app, "acme", None).await;

    // Takes the lower seq and stays open.
    let first = open_writer(&app, a, 1).await;
    commit_issue(&app, a, 2).await;
    let (held, cursor) = read_feed(&app, "acme", Some(&start)).await;
    assert!(held.is_empty(), "a change committed behind a running transaction showed: {held:?}");
    assert_eq!(cursor, start);

    first.commit().await.unwrap();
    let changes = feed_until(&app, "acme", Some(&start), |c| c.len() >= 2).await;
    assert_eq!(issue_iids(&changes), [1, 2]);
}

/// Why the feed is not ordered by `seq` alone: a transaction that took its id before another
/// but drew its `seq` after it, and committed first, would be read first, and the other's lower
/// `seq` passed by the client's cursor and never read.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_change_committed_later_with_a_lower_seq_is_not_skipped(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let a = connect(&app, "acme").await;
    let (_, start) = read_feed(&app, "acme", None).await;

    let mut early = app.owner.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *early).await.unwrap();
    let late = open_writer(&app, a, 1).await;
    insert_issue(&mut early, a, 2).await;
    early.commit().await.unwrap();

    // The transaction that took its id first is complete and older than every running one.
    let seen = feed_until(&app, "acme", Some(&start), |c| !c.is_empty()).await;
    assert_eq!(issue_iids(&seen), [2]);
    let cursor = seen[0]["cursor"].as_str().unwrap().to_owned();

    late.commit().await.unwrap();
    let rest = feed_until(&app, "acme", Some(&cursor), |c| !c.is_empty()).await;
    assert_eq!(issue_iids(&rest), [1], "the lower seq, committed last, is still read");
    let stored: Vec<(i64, i64)> =
        sqlx::query_as("SELECT seq, (key->>'iid')::bigint FROM changes ORDER BY seq").fetch_all(&app.owner).await.unwrap();
    assert_eq!(stored.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 2], "iid 1 has the lower seq");
}

/// The single-object path of what `key` names (a change's key, or a list item's key fields).
fn object_path(connection: Uuid, entity: &str, key: &Value) -> String {
    let base = format!("/v1/connections/{connection}/projects");
    let project = &key["project_id"];
    match entity {
        "project" => format!("{base}/{}", key["gitlab_id"]),
        "commit" => format!("{base}/{project}/commits/{}", key["sha"].as_str().unwrap()),
        "merge_request" => format!("{base}/{project}/merge_requests/{}", key["iid"]),
        "issue" => format!("{base}/{project}/issues/{}", key["iid"]),
        "note" => format!("{base}/{project}/notes/{}", key["gitlab_id"]),
        "pipeline" => format!("{base}/{project}/pipelines/{}", key["gitlab_id"]),
        other => panic!("{other} is no stored object"),
    }
}

/// Every object of every list reads back alone by its key, exactly as the list shows it; a key
/// that names nothing (or is not even a number) is the missing-id 404.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn every_object_reads_alone_by_its_key(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let a = connect(&app, "acme").await;
    seed(&app, "acme", a).await;
    let entities = ["project", "commit", "merge_request", "issue", "note", "pipeline"];
    let mut read = 0;
    for (list, entity) in LISTS.iter().zip(entities) {
        let page = get(&app, "acme", &format!("/v1/connections/{a}/{list}?limit=100")).await;
        assert!(!items(&page).is_empty(), "{list}");
        for item in items(&page) {
            let key = match entity {
                "project" => json!({"gitlab_id": item["id"]}),
                "note" | "pipeline" => json!({"project_id": item["project_id"], "gitlab_id": item["id"]}),
                _ => item.clone(),
            };
            assert_eq!(&get(&app, "acme", &object_path(a, entity, &key)).await, item, "{entity} {key}");
            read += 1;
        }
    }
    assert!(read >= 12, "{read}");

    let (_, missing) = app.call(Method::GET, &format!("/v1/connections/{}/projects/11", Uuid::new_v4()), Some("acme"), None).await;
    for path in [
        format!("/v1/connections/{a}/projects/999"),
        format!("/v1/connections/{a}/projects/11/merge_requests/999"),
        format!("/v1/connections/{a}/projects/999/merge_requests/1"),
        format!("/v1/connections/{a}/projects/11/merge_requests/abc"),
        format!("/v1/connections/{a}/projects/11/commits/0000000"),
        format!("/v1/connections/{a}/projects/11/issues/-1"),
        format!("/v1/connections/{a}/projects/11/notes/999999"),
        format!("/v1/connections/{a}/projects/11/pipelines/999999"),
        "/v1/connections/not-a-uuid/projects/11".to_owned(),
    ] {
        let (status, body) = app.call(Method::GET, &path, Some("acme"), None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body, missing, "{path}");
        assert_error(&body, "not_found");
    }
}

/// With `include=object`, each insert and update in the feed carries its object as its own read
/// answers it now, `null` once deleted; without it, and on deletes, `object` is `null`.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn the_feed_embeds_the_current_object_when_asked(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let a = connect(&app, "acme").await;
    seed(&app, "acme", a).await;
    sqlx::query("DELETE FROM merge_requests WHERE connection_id = $1 AND project_id = 11 AND iid = 2")
        .bind(a)
        .execute(&app.owner)
        .await
        .unwrap();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM changes WHERE tenant_id = 'acme'").fetch_one(&app.owner).await.unwrap();
    let plain = feed_until(&app, "acme", None, |c| c.len() as i64 >= total).await;
    assert!(plain.iter().all(|c| c["object"].is_null()), "no object unless asked");

    let mut embedded = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(cursor) => format!("/v1/changes?include=object&limit=9&after={cursor}"),
            None => "/v1/changes?include=object&limit=9".to_owned(),
        };
        let page = get(&app, "acme", &path).await;
        if items(&page).is_empty() {
            break;
        }
        embedded.extend(items(&page).clone());
        after = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(summary(&embedded), summary(&plain), "the same changes");
    let (mut shown, mut gone) = (0, 0);
    for change in &embedded {
        let (entity, op) = (change["entity"].as_str().unwrap(), change["op"].as_str().unwrap());
        if op == "delete" {
            assert!(change["object"].is_null(), "{change}");
            continue;
        }
        let (status, now) = app.call(Method::GET, &object_path(a, entity, &change["key"]), Some("acme"), None).await;
        if status == 404 {
            assert!(change["object"].is_null(), "a deleted object embeds as null: {change}");
            gone += 1;
        } else {
            assert_eq!(change["object"], now, "{change}");
            shown += 1;
        }
    }
    assert!(shown >= 12 && gone >= 1, "{shown} shown, {gone} gone");

    let (status, body) = app.call(Method::GET, "/v1/changes?include=everything", Some("acme"), None).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "include", "{body}");
}
