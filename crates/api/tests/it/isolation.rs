//! Tenant isolation over HTTP (OWASP API1), walked from the committed `openapi.yaml`: every
//! operation of the spec must be classified below, so a new endpoint cannot ship untested. Tenant A
//! has data of every kind; tenant B, a real tenant with data of its own, tries every id of A's
//! that fits a parameter of every operation. B must get exactly what a missing id gets, and no
//! answer of B's may hold anything of A's.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use connector_store::connections::{self, HookTarget, Validated};
use connector_store::deliveries::{self, NewDelivery};
use connector_store::jobs::{Envelope, Job};
use connector_store::sync::{self, NoteParent};
use connector_store::{TenantId, dead_letters, hooks};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{TestApp, valid_connection};
use crate::data::{commit, connect, feed_until, issue, items, merge_request, note, pipeline, project, seed};

const A: &str = "iso-tenant-a";
const B: &str = "iso-tenant-b";

/// Every GitLab id of A's lies here and none of B's does (B holds `data::seed`, ids below 3000),
/// so a number from this range anywhere in B's answer is a leak, whatever field carries it.
const A_IDS: Range<i64> = 100_000..200_000;
const A_PROJECTS: [i64; 2] = [100_011, 100_012];
const A_SHAS: [&str; 3] = ["a-sha-1000a1", "a-sha-1000b2", "a-sha-1000c3"];

/// How to call each operation of the spec. An operation missing here, or an entry the spec
/// lacks, fails the walk.
#[derive(Clone, Copy, Debug)]
enum Call {
    /// No token needed, no tenant data.
    Public,
    /// For the platform's scraper, not routed by the Ingress; served on the API's listener.
    Operator,
    /// Names a connection in its path. `body` is what reaches the lookup (a body failing
    /// validation would be answered 422 before any id is looked at); `mutates` marks calls that
    /// would change A's data if they reached it.
    ById { body: Option<fn() -> Value>, mutates: bool },
    /// The calling tenant's own collection.
    List,
    /// Creates an object of the calling tenant.
    Create,
    /// Asks GitLab about the settings in its body; reads and writes no stored object.
    Probe,
}

const OPERATIONS: &[(&str, &str, &str, Call)] = &[
    ("healthz", "get", "/healthz", Call::Public),
    ("readyz", "get", "/readyz", Call::Public),
    ("metrics", "get", "/metrics", Call::Operator),
    ("list_connections", "get", "/v1/connections", Call::List),
    ("create_connection", "post", "/v1/connections", Call::Create),
    ("get_connection", "get", "/v1/connections/{id}", Call::ById { body: None, mutates: false }),
    ("update_connection", "patch", "/v1/connections/{id}", Call::ById { body: Some(patch_body), mutates: true }),
    ("delete_connection", "delete", "/v1/connections/{id}", Call::ById { body: None, mutates: true }),
    ("resync_connection", "post", "/v1/connections/{id}/resync", Call::ById { body: None, mutates: true }),
    ("check_connection", "post", "/v1/connection-checks", Call::Probe),
    ("pause_connection", "post", "/v1/connections/{id}/pause", Call::ById { body: None, mutates: true }),
    ("resume_connection", "post", "/v1/connections/{id}/resume", Call::ById { body: None, mutates: true }),
    ("list_projects", "get", "/v1/connections/{id}/projects", Call::ById { body: None, mutates: false }),
    ("list_commits", "get", "/v1/connections/{id}/commits", Call::ById { body: None, mutates: false }),
    ("list_merge_requests", "get", "/v1/connections/{id}/merge_requests", Call::ById { body: None, mutates: false }),
    ("list_issues", "get", "/v1/connections/{id}/issues", Call::ById { body: None, mutates: false }),
    ("list_notes", "get", "/v1/connections/{id}/notes", Call::ById { body: None, mutates: false }),
    ("list_pipelines", "get", "/v1/connections/{id}/pipelines", Call::ById { body: None, mutates: false }),
    ("get_project", "get", "/v1/connections/{id}/projects/{project_id}", Call::ById { body: None, mutates: false }),
    ("get_commit", "get", "/v1/connections/{id}/projects/{project_id}/commits/{sha}", Call::ById { body: None, mutates: false }),
    (
        "get_merge_request",
        "get",
        "/v1/connections/{id}/projects/{project_id}/merge_requests/{iid}",
        Call::ById { body: None, mutates: false },
    ),
    ("get_issue", "get", "/v1/connections/{id}/projects/{project_id}/issues/{iid}", Call::ById { body: None, mutates: false }),
    ("get_note", "get", "/v1/connections/{id}/projects/{project_id}/notes/{note_id}", Call::ById { body: None, mutates: false }),
    (
        "get_pipeline",
        "get",
        "/v1/connections/{id}/projects/{project_id}/pipelines/{pipeline_id}",
        Call::ById { body: None, mutates: false },
    ),
    ("list_changes", "get", "/v1/changes", Call::List),
];

fn patch_body() -> Value {
    json!({"groups_list": "1", "access_token": "glpat-isolation-probe-00000"})
}

/// What each parameter of the spec takes. A parameter missing here fails the walk.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Param {
    /// A uuid: every object id of A's that is a uuid (connections, hooks).
    ObjectId,
    ProjectId,
    /// Only meaningful with `noteable_type` and `project`, which the probe adds.
    NoteableIid,
    /// A page position this very operation handed to A.
    Cursor,
    NotAnId,
    /// A header naming a kept answer: A's key, which B sends with A's very request.
    IdempotencyKey,
    /// One of A's objects by its GitLab key, below a connection in the path (see [`A_OBJECT`]).
    ObjectKey,
    /// `include=object`: the feed embeds each change's object.
    Include,
}

/// The GitLab key each object path parameter is filled with: objects of A's first project.
const A_OBJECT: &[(&str, &str)] =
    &[("project_id", "100011"), ("sha", A_SHAS[0]), ("iid", "100001"), ("note_id", "100501"), ("pipeline_id", "100201")];

/// The `Idempotency-Key` A created its second connection with.
const A_KEY: &str = "tenant-a-create-form-1";

const PARAMETERS: &[(&str, Param)] = &[
    ("id", Param::ObjectId),
    ("project", Param::ProjectId),
    ("noteable_iid", Param::NoteableIid),
    ("cursor", Param::Cursor),
    ("after", Param::Cursor),
    ("limit", Param::NotAnId),
    ("updated_since", Param::NotAnId),
    ("state", Param::NotAnId),
    ("noteable_type", Param::NotAnId),
    ("Idempotency-Key", Param::IdempotencyKey),
    ("project_id", Param::ObjectKey),
    ("sha", Param::ObjectKey),
    ("iid", Param::ObjectKey),
    ("note_id", Param::ObjectKey),
    ("pipeline_id", Param::ObjectKey),
    ("include", Param::Include),
    // A revision number: B's tag for A's connection gets the missing-id 404 before it is compared.
    ("If-Match", Param::NotAnId),
];

struct Operation {
    id: String,
    method: Method,
    path: String,
    /// (name, in)
    params: Vec<(String, String)>,
    call: Call,
}

impl Operation {
    /// The path with `id` as the connection and A's object keys for the rest.
    fn path_with(&self, id: impl std::fmt::Display) -> String {
        A_OBJECT.iter().fold(self.path.replace("{id}", &id.to_string()), |path, (name, value)| path.replace(&format!("{{{name}}}"), value))
    }

    /// Whether the path names one object below the connection.
    fn names_an_object(&self) -> bool {
        self.params.iter().any(|(name, location)| location == "path" && param(name) == Param::ObjectKey)
    }

    fn query_params(&self) -> impl Iterator<Item = (&str, Param)> {
        self.params.iter().filter(|(_, location)| location == "query").map(|(name, _)| (name.as_str(), param(name)))
    }
}

fn param(name: &str) -> Param {
    PARAMETERS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p).unwrap_or_else(|| panic!("parameter {name} is not classified"))
}

fn spec() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.yaml");
    yaml_serde::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every operation of the committed `openapi.yaml`, checked against the tables above.
fn operations() -> Vec<Operation> {
    classify(&spec()).unwrap_or_else(|problems| panic!("openapi.yaml and the isolation suite disagree: {problems:#?}"))
}

/// The spec's operations, or everything in it the tables above do not cover (and every table
/// entry it no longer has).
fn classify(spec: &Value) -> Result<Vec<Operation>, Vec<String>> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let no_params = Vec::new();
    for (path, item) in spec["paths"].as_object().into_iter().flatten() {
        let shared = item.get("parameters").and_then(Value::as_array).unwrap_or(&no_params);
        for (method, op) in item.as_object().into_iter().flatten() {
            if !["get", "put", "post", "patch", "delete", "head", "options", "trace"].contains(&method.as_str()) {
                continue;
            }
            let Some(id) = op["operationId"].as_str().map(str::to_owned) else {
                problems.push(format!("{method} {path} has no operationId"));
                continue;
            };
            let Some((_, m, p, call)) = OPERATIONS.iter().find(|(o, ..)| *o == id) else {
                problems.push(format!("operation {id} ({method} {path}) is not classified"));
                continue;
            };
            if (*m, *p) != (method.as_str(), path.as_str()) {
                problems.push(format!("{id} is {method} {path} now, not {m} {p}"));
            }
            let mut params = Vec::new();
            for p in shared.iter().chain(op.get("parameters").and_then(Value::as_array).unwrap_or(&no_params)) {
                let (Some(name), Some(location)) = (p["name"].as_str(), p["in"].as_str()) else {
                    problems.push(format!("{id}: a parameter without a name or place: {p}"));
                    continue;
                };
                if !PARAMETERS.iter().any(|(n, _)| *n == name) {
                    problems.push(format!("parameter {name} of {id} is not classified"));
                }
                let probed_header = location == "header" && matches!(param(name), Param::IdempotencyKey | Param::NotAnId);
                if !["path", "query"].contains(&location) && !probed_header {
                    problems.push(format!("{id}: parameter {name} in {location} is not probed"));
                }
                params.push((name.to_owned(), location.to_owned()));
            }
            let scheme = |name: &str| op.get("security").and_then(Value::as_array).is_some_and(|a| a.iter().any(|s| s.get(name).is_some()));
            let secured = scheme("bearer");
            // A tenant endpoint filed as public would skip every check of the walk.
            let tenant_facing = matches!(call, Call::ById { .. } | Call::List | Call::Create | Call::Probe);
            if secured != tenant_facing {
                problems.push(format!("{id}: bearer security {secured} in the spec, but classified {call:?}"));
            }
            if scheme("metrics_token") != matches!(call, Call::Operator) {
                problems.push(format!("{id}: metrics_token security disagrees with {call:?}"));
            }
            if params.iter().any(|(_, location)| location == "path") != matches!(call, Call::ById { .. }) {
                problems.push(format!("{id}: its path parameters disagree with {call:?}"));
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            found.push(Operation { id, method, path: path.clone(), params, call: *call });
        }
    }
    for (id, ..) in OPERATIONS {
        if !found.iter().any(|o| o.id == *id) {
            problems.push(format!("{id} is in the table but not in openapi.yaml"));
        }
    }
    for (name, _) in PARAMETERS {
        if !found.iter().any(|o| o.params.iter().any(|(n, _)| n == name)) {
            problems.push(format!("parameter {name} is in the table but not in openapi.yaml"));
        }
    }
    if problems.is_empty() { Ok(found) } else { Err(problems) }
}

/// An answer as the client sees it, minus what differs on every call anyway.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::String(self.body.clone()))
    }
}

async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    tenant: Option<&str>,
    body: Option<Value>,
) -> (Answer, Duration) {
    let mut url = url::Url::parse(&app.url(path)).unwrap();
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    let mut req = app.http.request(method.clone(), url);
    if let Some(t) = tenant {
        req = req.bearer_auth(app.token(t));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let started = Instant::now();
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        // The caller's own request budget is not about the object asked for.
        .filter(|(name, _)| !["date", "x-request-id", "ratelimit-remaining", "ratelimit-reset"].contains(&name.as_str()))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("<binary>").to_owned()))
        .collect();
    let body = resp.text().await.unwrap();
    (Answer { status, headers, body }, started.elapsed())
}

/// B names A's connection or tenant in a body (mass assignment): each is refused 422 naming the
/// field. Returns how many of the four were.
async fn refuse_smuggled(app: &TestApp, op: &Operation, a: &TenantA) -> usize {
    let mut refused = 0;
    for (field, value) in [("id", json!(a.main)), ("tenant_id", json!(A)), ("tenant", json!(A)), ("connection_id", json!(a.main))] {
        let mut body = valid_connection();
        body[field] = value;
        let (answer, _) = send(app, &op.method, &op.path, &[], Some(B), Some(body)).await;
        assert_eq!(answer.status, 422, "{} with {field}: {}", op.id, answer.body);
        assert_eq!(answer.json()["error"]["field"], field, "{}", answer.body);
        refused += 1;
    }
    refused
}

/// Everything of A's: what B must never see.
#[derive(Default)]
struct TenantA {
    main: Uuid,
    /// Connections and hooks: every uuid-named object of A's.
    object_ids: Vec<Uuid>,
    /// Per operation id, every cursor it handed to A (each followed by a non-empty page).
    cursors: BTreeMap<String, Vec<String>>,
}

impl TenantA {
    /// What of A's `answer` shows, as a list of findings (empty: nothing).
    fn found_in(&self, answer: &Answer, skip_object_ids: bool) -> Vec<String> {
        let mut found = Vec::new();
        match serde_json::from_str::<Value>(&answer.body) {
            Ok(json) => self.walk(&json, skip_object_ids, &mut found),
            Err(_) => self.text(&answer.body, skip_object_ids, &mut found),
        }
        found
    }

    fn text(&self, s: &str, skip_object_ids: bool, found: &mut Vec<String>) {
        if s.contains(A) {
            found.push(format!("tenant marker in {s:?}"));
        }
        if !skip_object_ids {
            found.extend(self.object_ids.iter().filter(|id| s.contains(&id.to_string())).map(|id| format!("object id {id}")));
        }
        found.extend(A_SHAS.iter().filter(|sha| s.contains(*sha)).map(|sha| format!("commit {sha}")));
    }

    fn walk(&self, v: &Value, skip_object_ids: bool, found: &mut Vec<String>) {
        match v {
            Value::String(s) => self.text(s, skip_object_ids, found),
            Value::Number(n) if n.as_i64().is_some_and(|n| A_IDS.contains(&n)) => found.push(format!("GitLab id {n}")),
            Value::Array(a) => a.iter().for_each(|v| self.walk(v, skip_object_ids, found)),
            Value::Object(o) => o.iter().for_each(|(k, v)| {
                self.text(k, skip_object_ids, found);
                self.walk(v, skip_object_ids, found);
            }),
            _ => {}
        }
    }

    /// The query parameter sets that carry one of A's ids into `param`.
    fn probes(&self, op: &Operation, name: &str, param: Param) -> Vec<Vec<(String, String)>> {
        let pair = |k: &str, v: String| (k.to_owned(), v);
        match param {
            Param::ProjectId => A_PROJECTS.iter().map(|p| vec![pair(name, p.to_string())]).collect(),
            Param::NoteableIid => [("MergeRequest", 100_011, 100_001), ("MergeRequest", 100_011, 100_002), ("Issue", 100_011, 100_001)]
                .iter()
                .map(|(t, p, iid)| vec![pair("noteable_type", t.to_string()), pair("project", p.to_string()), pair(name, iid.to_string())])
                .collect(),
            Param::Cursor => {
                let cursors = self.cursors.get(&op.id).unwrap_or_else(|| panic!("no cursor of A's collected for {}", op.id));
                assert!(!cursors.is_empty(), "{}: A's data spans a single page; no cursor to try", op.id);
                cursors.iter().map(|c| vec![pair(name, c.clone())]).collect()
            }
            Param::Include => vec![vec![pair(name, "object".into())]],
            Param::ObjectId | Param::NotAnId | Param::IdempotencyKey | Param::ObjectKey => Vec::new(),
        }
    }
}

/// A's data, written the way the worker writes it: a validated, live connection with projects,
/// commits, merge requests (with their commits), issues, notes on each kind, pipelines, a group
/// and a project hook, a delivery, a skipped resource, a checkpoint, a dead letter and an event; every write
/// also lands in A's change feed.
async fn seed_a(app: &TestApp, c: Uuid) -> Vec<Uuid> {
    let tenant = TenantId::parse(A).unwrap();
    let mut tx = app.store.tenant_tx(&tenant).await.unwrap();
    let t = |s: &str| format!("{A} {s}");
    let [p1, p2] = A_PROJECTS;
    sync::upsert_projects(
        &mut tx,
        c,
        &json!([project(p1, &format!("{A}/api"), "2024-02-01T00:00:00Z"), project(p2, &format!("{A}/web"), "2024-05-01T00:00:00Z")]),
    )
    .await
    .unwrap();
    let [s1, s2, s3] = A_SHAS;
    sync::upsert_commits(
        &mut tx,
        c,
        p1,
        &json!([commit(s1, &t("first"), "2024-01-10T00:00:00Z"), commit(s2, &t("second"), "2024-02-01T00:00:00Z")]),
    )
    .await
    .unwrap();
    sync::upsert_commits(&mut tx, c, p2, &json!([commit(s3, &t("web"), "2024-04-01T00:00:00Z")])).await.unwrap();
    sync::upsert_merge_requests(
        &mut tx,
        c,
        p1,
        &json!([
            merge_request(100_001, &t("mr one"), "opened", "2024-02-01T00:00:00Z"),
            merge_request(100_002, &t("mr two"), "merged", "2024-03-01T00:00:00Z")
        ]),
    )
    .await
    .unwrap();
    sync::upsert_merge_requests(&mut tx, c, p2, &json!([merge_request(100_001, &t("web mr"), "opened", "2024-04-01T00:00:00Z")]))
        .await
        .unwrap();
    sync::set_merge_request_commits(&mut tx, c, p1, 100_002, &[s1.into(), s2.into()]).await.unwrap();
    sync::upsert_issues(&mut tx, c, p1, &json!([issue(100_001, &t("issue one"), "opened", "2024-02-01T00:00:00Z")])).await.unwrap();
    sync::upsert_issues(&mut tx, c, p2, &json!([issue(100_001, &t("web issue"), "closed", "2024-04-01T00:00:00Z")])).await.unwrap();
    let notes = [
        (p1, "MergeRequest", NoteParent::Iid(100_001), 100_501),
        (p1, "MergeRequest", NoteParent::Iid(100_002), 100_502),
        (p1, "Issue", NoteParent::Iid(100_001), 100_503),
        (p2, "Commit", NoteParent::Commit(s3), 100_504),
    ];
    for (p, kind, parent, id) in notes {
        sync::upsert_notes(&mut tx, c, p, kind, parent, &json!([note(id, &t("note"), "2024-03-01T00:00:00Z")])).await.unwrap();
    }
    sync::upsert_pipelines(
        &mut tx,
        c,
        p1,
        &json!([pipeline(100_201, "success", "2024-02-01T00:00:00Z"), pipeline(100_202, "failed", "2024-03-01T00:00:00Z")]),
    )
    .await
    .unwrap();
    sync::upsert_pipelines(&mut tx, c, p2, &json!([pipeline(100_301, "running", "2024-04-01T00:00:00Z")])).await.unwrap();

    let (group_hook, _) = hooks::ensure(&mut tx, app.store.keys(), c, connector_store::hooks::HookScope::Group, 100_005).await.unwrap();
    hooks::set_installed(&mut tx, group_hook.id, 100_777, true).await.unwrap();
    let (project_hook, _) = hooks::ensure(&mut tx, app.store.keys(), c, connector_store::hooks::HookScope::Project, p2).await.unwrap();
    connections::record_validation(
        &mut tx,
        c,
        &Validated {
            gitlab_user_id: 100_900,
            gitlab_username: format!("{A}-bot"),
            token_expires_at: None,
            hook_mode: connector_store::connections::HookMode::Mixed,
            hook_targets: vec![
                HookTarget { scope: connector_store::hooks::HookScope::Group, id: 100_005 },
                HookTarget { scope: connector_store::hooks::HookScope::Project, id: p2 },
            ],
            resolved_project_ids: A_PROJECTS.to_vec(),
            notice: None,
        },
    )
    .await
    .unwrap();
    connections::mark_live(&mut tx, c, chrono::Duration::minutes(15)).await.unwrap();
    sync::record_skipped(&mut tx, c, p2, sync::Resource::Issues, &t("issues are switched off")).await.unwrap();
    let heads = std::collections::BTreeMap::from([("main".to_owned(), s2.to_owned())]);
    connector_store::reconcile::set_branch_heads(&mut tx, c, p1, &heads).await.unwrap();
    connector_store::reconcile::keep_aside(&mut tx, c, Some(p1), "commits", s1, &t("held U+0000"), b"{}").await.unwrap();
    let seen_up_to = Some(Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap());
    let step = sync::PageProgress { project_id: p1, resource: sync::Resource::Commits, cursor: None, seen_up_to, records: 2, done: true };
    sync::advance(&mut tx, c, step).await.unwrap();
    dead_letters::insert(&mut tx, &Envelope::new(A.into(), Job::CatchUp { connection: c }), &t("gave up")).await.unwrap();
    let delivery_body = format!(r#"{{"project_id":{p1},"ref":"{A}"}}"#);
    let delivery = NewDelivery {
        connection_id: c,
        hook_id: group_hook.id,
        dedup_key: "a-delivery-1",
        event: Some("Push Hook"),
        headers: json!({"x-gitlab-event": "Push Hook"}),
        body: delivery_body.as_bytes(),
        kept_aside: None,
        traceparent: None,
    };
    deliveries::insert(&mut tx, &delivery).await.unwrap();
    sync::upsert_event(&mut tx, c, "tag_push", &format!("{p1}/v1"), Some(p1), Some("create"), &json!({"ref": t("v1")})).await.unwrap();
    tx.commit().await.unwrap();
    vec![group_hook.id, project_hook.id]
}

/// Every cursor `op` hands A, paging one item at a time. Each is followed by a non-empty page
/// (a list's last page has no cursor; the feed's final `next_cursor` is left out).
async fn collect_cursors(app: &TestApp, op: &Operation, path: &str, name: &str) -> Vec<String> {
    let mut cursors = Vec::new();
    let mut query = vec![("limit".to_owned(), "1".to_owned())];
    loop {
        let (answer, _) = send(app, &op.method, path, &query, Some(A), None).await;
        assert_eq!(answer.status, 200, "{} as A: {}", op.id, answer.body);
        let page = answer.json();
        let next = page["next_cursor"].as_str().map(str::to_owned);
        match next {
            Some(c) if !items(&page).is_empty() && cursors.last() != Some(&c) => {
                cursors.push(c.clone());
                query = vec![("limit".to_owned(), "1".to_owned()), (name.to_owned(), c)];
            }
            _ => break,
        }
    }
    // The feed's cursor after its last item leads to an empty page: not a position with data.
    if name == "after" {
        cursors.pop();
    }
    cursors
}

/// A's rows in every table that has a `tenant_id` (and A's `tenants` row), and A's queued jobs,
/// read as the owner, for proving that B's calls changed nothing.
async fn snapshot(owner: &PgPool) -> BTreeMap<String, String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND column_name = 'tenant_id' ORDER BY 1",
    )
    .fetch_all(owner)
    .await
    .unwrap();
    let mut rows = BTreeMap::new();
    for (table, column) in tables.iter().map(|t| (t.as_str(), "tenant_id")).chain([("tenants", "id")]) {
        let sql = format!(
            "SELECT coalesce(string_agg(to_jsonb(t)::text, E'\\n' ORDER BY to_jsonb(t)::text), '') FROM {table} t WHERE {column} = $1"
        );
        let dump: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(A).fetch_one(owner).await.unwrap();
        rows.insert(table.to_owned(), dump);
    }
    let jobs: String = sqlx::query_scalar(
        "SELECT coalesce(string_agg(convert_from(job, 'UTF8'), E'\\n' ORDER BY id), '') FROM apalis.jobs
         WHERE convert_from(job, 'UTF8')::jsonb ->> 'tenant' = $1",
    )
    .bind(A)
    .fetch_one(owner)
    .await
    .unwrap();
    rows.insert("apalis.jobs".to_owned(), jobs);
    rows
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn tenant_b_learns_nothing_of_tenant_a_through_any_operation(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let ops = operations();

    let mut a = TenantA { main: connect(&app, A).await, ..Default::default() };
    let hook_ids = seed_a(&app, a.main).await;
    // With a key, so A has a kept answer B's calls must neither see nor change.
    let (status, second, _) =
        app.call_with(Method::POST, "/v1/connections", Some(A), Some(valid_connection()), &[("idempotency-key", A_KEY)]).await;
    assert_eq!(status, 201, "{second}");
    let second: Uuid = second["id"].as_str().unwrap().parse().unwrap();
    a.object_ids = [a.main, second].into_iter().chain(hook_ids).collect();
    let b = connect(&app, B).await;
    seed(&app, B, b).await;

    // Both feeds complete (what other tests' open transactions hold back shows a moment later).
    for tenant in [A, B] {
        let total: i64 =
            sqlx::query_scalar("SELECT count(*) FROM changes WHERE tenant_id = $1").bind(tenant).fetch_one(&app.owner).await.unwrap();
        assert!(total > 10, "{tenant}: {total} changes");
        feed_until(&app, tenant, None, |read| read.len() as i64 >= total).await;
    }
    for op in &ops {
        for (name, kind) in op.query_params() {
            if kind == Param::Cursor {
                let path = op.path_with(a.main);
                let cursors = collect_cursors(&app, op, &path, name).await;
                a.cursors.insert(op.id.clone(), cursors);
            }
        }
    }

    // The operator endpoint, mounted beside the API as the binary mounts it.
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_base = format!("http://{}", metrics_listener.local_addr().unwrap());
    const METRICS_TOKEN: &str = "isolation-test-metrics-token-0000000001";
    let metrics_router = connector_api::metrics::router(app.store.clone(), Some(METRICS_TOKEN.to_owned().into()));
    let metrics_server = tokio::spawn(async move { axum::serve(metrics_listener, metrics_router).await });

    let before = snapshot(&app.owner).await;
    let empty: Vec<&String> = before.iter().filter(|(_, rows)| rows.is_empty()).map(|(table, _)| table).collect();
    assert!(empty.is_empty(), "seed_a writes nothing to {empty:?}: give A rows there, or B's writes to them go unseen");

    let (mut by_id_ops, mut tried, mut held, mut leaks) = (0, 0, 0, Vec::new());
    let (mut own_calls, mut own_clean, mut a_flagged, mut mutating) = (0, 0, 0, 0);
    let (mut public_calls, mut smuggled, mut refused) = (0, 0, 0);
    let mut metrics_names = 0;
    for op in &ops {
        match op.call {
            Call::Public => {
                let (answer, _) = send(&app, &op.method, &op.path, &[], Some(B), None).await;
                assert_eq!(answer.status, 200, "{}: {}", op.id, answer.body);
                leaks.extend(a.found_in(&answer, false).into_iter().map(|f| format!("{}: {f}", op.id)));
                public_calls += 1;
            }
            Call::Operator => {
                // A tenant's JWT is not the operator's token.
                let as_tenant = app.http.get(format!("{metrics_base}{}", op.path)).bearer_auth(app.token(B)).send().await.unwrap();
                assert_eq!(as_tenant.status(), 401, "{}: a tenant's JWT read the metrics", op.id);
                let resp = app.http.get(format!("{metrics_base}{}", op.path)).bearer_auth(METRICS_TOKEN).send().await.unwrap();
                let answer = Answer { status: resp.status().as_u16(), headers: BTreeMap::new(), body: resp.text().await.unwrap() };
                assert_eq!(answer.status, 200, "{}", op.id);
                // No tenant name, connection id, GitLab id or title.
                metrics_names = a.object_ids.iter().filter(|id| answer.body.contains(&id.to_string())).count();
                assert_eq!(metrics_names, 0, "{}: names A's ids", op.id);
                leaks.extend(a.found_in(&answer, true).into_iter().map(|f| format!("{}: {f}", op.id)));
                public_calls += 1;
            }
            Call::ById { body, mutates } => {
                by_id_ops += 1;
                let body = body.map(|f| f());
                // B on each uuid of A's, then on A's connection with each id-valued query parameter.
                let mut probes: Vec<(Uuid, Vec<(String, String)>)> = a.object_ids.iter().map(|id| (*id, Vec::new())).collect();
                for (name, kind) in op.query_params() {
                    probes.extend(a.probes(op, name, kind).into_iter().map(|q| (a.main, q)));
                }
                for (id, query) in &probes {
                    let (foreign, _) = send(&app, &op.method, &op.path_with(id), query, Some(B), body.clone()).await;
                    let (missing, _) = send(&app, &op.method, &op.path_with(Uuid::new_v4()), query, Some(B), body.clone()).await;
                    tried += 1;
                    assert_eq!(foreign.status, 404, "{} {id} {query:?}: {}", op.id, foreign.body);
                    assert_eq!(foreign, missing, "{} {id} {query:?}: A's id answered unlike a missing one", op.id);
                    held += 1;
                    leaks.extend(a.found_in(&foreign, false).into_iter().map(|f| format!("{}: {f}", op.id)));
                    if mutates {
                        mutating += 1;
                    } else if *id == a.main && !query.is_empty() {
                        // The probe is real: A gets data with it, and the detector sees it.
                        let (own, _) = send(&app, &op.method, &op.path_with(id), query, Some(A), None).await;
                        assert_eq!(own.status, 200, "{} as A {query:?}: {}", op.id, own.body);
                        assert!(!items(&own.json()).is_empty(), "{} as A {query:?}: no data, the probe proves nothing", op.id);
                        assert!(!a.found_in(&own, false).is_empty(), "{}: the leak detector misses A's own data", op.id);
                        a_flagged += 1;
                    }
                }
                if op.names_an_object() {
                    // A's object keys on B's own connection: the missing-id 404; A reads the object.
                    let (own, _) = send(&app, &op.method, &op.path_with(b), &[], Some(B), None).await;
                    let (missing, _) = send(&app, &op.method, &op.path_with(Uuid::new_v4()), &[], Some(B), None).await;
                    tried += 1;
                    assert_eq!(own, missing, "{} on B's connection with A's keys", op.id);
                    held += 1;
                    let (theirs, _) = send(&app, &op.method, &op.path_with(a.main), &[], Some(A), None).await;
                    assert_eq!(theirs.status, 200, "{} as A: {}", op.id, theirs.body);
                    assert!(!a.found_in(&theirs, false).is_empty(), "{}: the leak detector misses A's own object", op.id);
                    a_flagged += 1;
                }
                if !mutates {
                    // A's ids as filters and cursors on B's own connection: B's data or nothing.
                    for (_, query) in probes.iter().filter(|(_, q)| !q.is_empty()) {
                        let (own, _) = send(&app, &op.method, &op.path_with(b), query, Some(B), None).await;
                        assert_eq!(own.status, 200, "{} on B's connection {query:?}: {}", op.id, own.body);
                        own_calls += 1;
                        let found = a.found_in(&own, false);
                        own_clean += usize::from(found.is_empty());
                        leaks.extend(found.into_iter().map(|f| format!("{} on B's connection: {f}", op.id)));
                    }
                }
            }
            Call::List => {
                let mut queries = vec![Vec::new()];
                for (name, kind) in op.query_params() {
                    queries.extend(a.probes(op, name, kind));
                }
                for query in &queries {
                    let (theirs, _) = send(&app, &op.method, &op.path, query, Some(B), None).await;
                    assert_eq!(theirs.status, 200, "{} {query:?}: {}", op.id, theirs.body);
                    own_calls += 1;
                    let found = a.found_in(&theirs, false);
                    own_clean += usize::from(found.is_empty());
                    leaks.extend(found.into_iter().map(|f| format!("{} {query:?}: {f}", op.id)));
                }
                // The detector would see A's entries in this very list.
                let (own, _) = send(&app, &op.method, &op.path, &[], Some(A), None).await;
                assert!(!a.found_in(&own, false).is_empty(), "{}: A's own list shows nothing the detector knows", op.id);
                a_flagged += 1;
            }
            Call::Probe => {
                (smuggled, refused) = (smuggled + 4, refused + refuse_smuggled(&app, op, &a).await);
                // The settings are B's own: at worst a refusal of their GitLab URL, nothing of A's.
                let mut body = valid_connection();
                body["gitlab_url"] = json!("http://127.0.0.1:9");
                let (answer, _) = send(&app, &op.method, &op.path, &[], Some(B), Some(body)).await;
                assert_eq!(answer.status, 422, "{}: {}", op.id, answer.body);
                leaks.extend(a.found_in(&answer, false).into_iter().map(|f| format!("{}: {f}", op.id)));
            }
            Call::Create => {
                // Naming A's object or tenant in the body (mass assignment) is refused...
                (smuggled, refused) = (smuggled + 4, refused + refuse_smuggled(&app, op, &a).await);
                // ...and a plain create makes B's own object, which shows nothing of A's, also
                // when it carries the idempotency key A created with (and A's very request).
                let (answer, _) = send(&app, &op.method, &op.path, &[], Some(B), Some(valid_connection())).await;
                assert_eq!(answer.status, 201, "{}: {}", op.id, answer.body);
                if op.params.iter().any(|(name, _)| param(name) == Param::IdempotencyKey) {
                    let (status, with_a_key, _) =
                        app.call_with(op.method.clone(), &op.path, Some(B), Some(valid_connection()), &[("idempotency-key", A_KEY)]).await;
                    assert_eq!(status, 201, "{}: {with_a_key}", op.id);
                    assert!(with_a_key.get("id").is_some_and(|id| !a.object_ids.iter().any(|a_id| *id == json!(a_id))), "{with_a_key}");
                }
                leaks.extend(a.found_in(&answer, false).into_iter().map(|f| format!("{}: {f}", op.id)));
                let owner_of: String = sqlx::query_scalar("SELECT tenant_id FROM gitlab_connections WHERE id = $1")
                    .bind(answer.json()["id"].as_str().unwrap().parse::<Uuid>().unwrap())
                    .fetch_one(&app.owner)
                    .await
                    .unwrap();
                assert_eq!(owner_of, B);
            }
        }
    }

    // Timing: B's 404 on A's id against a missing id, interleaved so that load hits both alike.
    let samples: usize = std::env::var("ISOLATION_TIMING_SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let mut timings = Vec::new();
    let mut timed_mutations = 0;
    for op in ops.iter().filter(|o| matches!(o.call, Call::ById { .. })) {
        let Call::ById { body, mutates } = op.call else { unreachable!() };
        let body = body.map(|f| f());
        let (mut foreign, mut missing) = (Vec::new(), Vec::new());
        for i in 0..samples * 2 + 4 {
            let id = if i % 2 == 0 { a.main } else { Uuid::new_v4() };
            let (answer, took) = send(&app, &op.method, &op.path_with(id), &[], Some(B), body.clone()).await;
            assert_eq!(answer.status, 404, "{} {id}: {}", op.id, answer.body);
            timed_mutations += usize::from(mutates && id == a.main);
            // The first two pairs warm up the pool and the caches.
            if i >= 4 {
                if i % 2 == 0 { foreign.push(took) } else { missing.push(took) }
            }
        }
        timings.push((format!("{} {}", op.method, op.path), median(foreign), median(missing)));
    }

    let after = snapshot(&app.owner).await;
    for (table, rows) in &before {
        assert_eq!(&after[table], rows, "B's calls changed A's rows in {table}");
    }
    metrics_server.abort();

    println!(
        "isolation: openapi.yaml has {} operations, each classified ({by_id_ops} by connection id, {} tenant lists, {} create, {public_calls} public or operator)",
        ops.len(),
        ops.iter().filter(|o| matches!(o.call, Call::List)).count(),
        ops.iter().filter(|o| matches!(o.call, Call::Create)).count(),
    );
    println!(
        "isolation: {by_id_ops} endpoints x {} object ids of tenant A, plus A's project ids, note parents and cursors as parameters: {tried} calls with tenant B's token, {held} answered 404 identical to a missing id, {} leaks",
        a.object_ids.len(),
        leaks.len()
    );
    println!(
        "isolation: {own_calls} calls of B's own lists and feed with A's ids, filters and cursors: {own_clean} held none of A's ids; {a_flagged} control calls as A showed A's data to the same detector"
    );
    println!(
        "isolation: {mutating} mutating calls of B on A's ids (PATCH, DELETE) and {timed_mutations} more while timing: A's rows in {} tables and its queued jobs unchanged",
        before.len()
    );
    println!(
        "isolation: create and check with A's id or tenant in the body: {refused}/{smuggled} refused 422; B's own create and check hold nothing of A's"
    );
    println!(
        "isolation: /metrics (to the operator's token only, not routed by the Ingress) names {metrics_names} of A's ids and nothing else of A's"
    );
    let mut slow = Vec::new();
    for (route, foreign, missing) in &timings {
        let gap = foreign.abs_diff(*missing);
        let bound = Duration::from_millis(5).max(foreign.max(missing).mul_f64(0.5));
        println!(
            "isolation timing: {route}: median {:.2} ms on A's id vs {:.2} ms on a missing id over {samples} calls each (gap {:.2} ms, bound {:.2} ms)",
            ms(*foreign),
            ms(*missing),
            ms(gap),
            ms(bound)
        );
        if gap >= bound {
            slow.push(route.clone());
        }
    }
    assert!(leaks.is_empty(), "B's answers showed A's data: {leaks:#?}");
    assert!(slow.is_empty(), "A's ids answer measurably slower or faster than missing ones: {slow:?}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The walk fails on an operation or a parameter nobody classified, on a table entry the spec no
/// longer has, and on a tenant endpoint without bearer security.
#[test]
fn the_walk_refuses_what_it_does_not_cover() {
    let spec = spec();
    assert_eq!(classify(&spec).map(|ops| ops.len()), Ok(OPERATIONS.len()));
    let problems = |spec: Value| classify(&spec).err().unwrap_or_default().join("; ");

    let mut new_endpoint = spec.clone();
    new_endpoint["paths"]["/v1/connections/{id}/hooks"] = json!({"get": {
        "operationId": "list_hooks", "security": [{"bearer": []}],
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
    }});
    assert!(problems(new_endpoint).contains("operation list_hooks"), "a new endpoint slipped past the walk");

    let mut new_parameter = spec.clone();
    new_parameter["paths"]["/v1/changes"]["get"]["parameters"].as_array_mut().unwrap().push(json!({"name": "connection", "in": "query"}));
    assert!(problems(new_parameter).contains("parameter connection"), "a new parameter slipped past the walk");

    let mut gone = spec.clone();
    gone["paths"].as_object_mut().unwrap().remove("/v1/changes");
    assert!(problems(gone).contains("list_changes is in the table"), "a table entry without its operation passed");

    let mut unsecured = spec;
    unsecured["paths"]["/v1/connections/{id}"]["get"].as_object_mut().unwrap().remove("security");
    assert!(problems(unsecured).contains("get_connection: bearer security false"), "a tenant endpoint without bearer security passed");
}
