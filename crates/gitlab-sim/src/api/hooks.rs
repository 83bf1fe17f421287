//! Project and group webhooks: CRUD, the delivery log and resend.

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::{ApiResult, Ctx, json, page};
use crate::dataset::{Dataset, Ids};
use crate::error::SimError;
use crate::model::*;
use crate::pagination;
use crate::render;
use crate::state::{lock, read, write};
use crate::time;
use crate::webhook::payloads::{self, MrChange, PushInfo};
use crate::webhook::{self, Trigger, signing};

pub fn project_routes() -> Router<crate::state::Simulator> {
    Router::new()
        .route("/api/v4/projects/{id}/hooks", get(list_project).post(create_project))
        .route("/api/v4/projects/{id}/hooks/{hook_id}", get(get_project).put(update_project).delete(delete_project))
        .route("/api/v4/projects/{id}/hooks/{hook_id}/events", get(events_project))
        .route("/api/v4/projects/{id}/hooks/{hook_id}/events/{event_id}/resend", post(resend_project))
        .route("/api/v4/projects/{id}/hooks/{hook_id}/test/{trigger}", post(test_project))
}

pub fn group_routes() -> Router<crate::state::Simulator> {
    Router::new()
        .route("/api/v4/groups/{id}/hooks", get(list_group).post(create_group))
        .route("/api/v4/groups/{id}/hooks/{hook_id}", get(get_group).put(update_group).delete(delete_group))
        .route("/api/v4/groups/{id}/hooks/{hook_id}/events", get(events_group))
        .route("/api/v4/groups/{id}/hooks/{hook_id}/events/{event_id}/resend", post(resend_group))
}

/// Resolves `:id` to a hook owner the caller may administer: Maintainer on a project,
/// Owner on a group (`admin_web_hook`).
fn owner(ds: &Dataset, ctx: &Ctx, id: &str, group: bool) -> Result<HookOwner, SimError> {
    let user = ctx.caller.user_id;
    if group {
        let g = ds.visible_group(user, id)?;
        // A self-managed EE instance whose license lacks group webhooks refuses them to Owners
        // too (`authorize! :admin_web_hook` in GitLab's group hooks API answers 403), while its
        // namespaces' plan reads `default` and so cannot warn a client beforehand.
        if ds.instance.self_managed && !ds.group_hooks_licensed(g.id) {
            return Err(SimError::Forbidden);
        }
        if ds.group_access(user, g.id).is_some_and(|l| l >= OWNER) {
            return Ok(HookOwner::Group(g.id));
        }
    } else {
        let p = ds.visible_project(user, id)?;
        if ds.project_access(user, p).is_some_and(|l| l >= MAINTAINER) {
            return Ok(HookOwner::Project(p.id));
        }
    }
    Err(SimError::Forbidden)
}

fn find(ds: &Dataset, owner: HookOwner, hook_id: u64) -> Result<&Hook, SimError> {
    ds.hooks.iter().find(|h| h.id == hook_id && h.owner == owner).ok_or(SimError::NotFound("Hook"))
}

/// Hook attributes arrive as JSON or as a form, like any Grape endpoint accepts.
fn body_fields(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, SimError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    let form =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        return Ok(url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(SimError::BadRequest("body is not a JSON object".into())),
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(matches!(s.as_str(), "true" | "1")),
        Value::Number(n) => Some(n.as_u64() == Some(1)),
        _ => None,
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn apply_events(events: &mut HookEvents, f: &Map<String, Value>, group: bool) {
    let set = |key: &str, slot: &mut bool| {
        if let Some(b) = f.get(key).and_then(as_bool) {
            *slot = b;
        }
    };
    set("push_events", &mut events.push_events);
    set("tag_push_events", &mut events.tag_push_events);
    set("issues_events", &mut events.issues_events);
    set("confidential_issues_events", &mut events.confidential_issues_events);
    set("merge_requests_events", &mut events.merge_requests_events);
    set("note_events", &mut events.note_events);
    set("confidential_note_events", &mut events.confidential_note_events);
    set("job_events", &mut events.job_events);
    set("pipeline_events", &mut events.pipeline_events);
    set("wiki_page_events", &mut events.wiki_page_events);
    set("deployment_events", &mut events.deployment_events);
    set("releases_events", &mut events.releases_events);
    set("feature_flag_events", &mut events.feature_flag_events);
    set("emoji_events", &mut events.emoji_events);
    set("resource_access_token_events", &mut events.resource_access_token_events);
    if group {
        set("subgroup_events", &mut events.subgroup_events);
        set("member_events", &mut events.member_events);
        set("project_events", &mut events.project_events);
    }
}

fn check_url(url: &str) -> Result<(), SimError> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(SimError::InvalidParam("url")),
    }
}

fn signing_token(f: &Map<String, Value>) -> Result<Option<Option<String>>, SimError> {
    match f.get("signing_token") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => {
            let t = as_text(v).unwrap_or_default();
            if t.is_empty() {
                return Ok(Some(None));
            }
            if !signing::valid_token(&t) {
                // GitLab requires `whsec_` + base64 of 32 bytes.
                return Err(SimError::InvalidParam("signing_token"));
            }
            Ok(Some(Some(t)))
        }
    }
}

fn apply_common(hook: &mut Hook, f: &Map<String, Value>, group: bool) -> Result<(), SimError> {
    if let Some(v) = f.get("name").and_then(as_text) {
        hook.name = v;
    }
    if let Some(v) = f.get("description").and_then(as_text) {
        hook.description = v;
    }
    if let Some(v) = f.get("enable_ssl_verification").and_then(as_bool) {
        hook.enable_ssl_verification = v;
    }
    if let Some(v) = f.get("push_events_branch_filter") {
        hook.push_events_branch_filter = as_text(v);
    }
    if let Some(v) = f.get("branch_filter_strategy").and_then(as_text) {
        hook.branch_filter_strategy = v;
    }
    if let Some(Value::Array(items)) = f.get("custom_headers") {
        hook.custom_headers = items
            .iter()
            .filter_map(|h| Some((h.get("key")?.as_str()?.to_string(), h.get("value")?.as_str()?.to_string())))
            .take(20)
            .collect();
    }
    if let Some(t) = signing_token(f)? {
        hook.signing_token = t;
    }
    apply_events(&mut hook.events, f, group);
    Ok(())
}

async fn list(ctx: Ctx, id: String, group: bool) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let owner = owner(&ds, &ctx, &id, group)?;
    let now = time::now();
    let hooks: Vec<&Hook> = ds.hooks.iter().filter(|h| h.owner == owner).collect();
    let (slice, headers) = pagination::offset(&hooks, &ctx.params, &ctx.origin, None)?;
    Ok(page(slice.iter().map(|h| render::hook(h, now)).collect(), headers))
}

async fn get_one(ctx: Ctx, id: String, hook_id: u64, group: bool) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let owner = owner(&ds, &ctx, &id, group)?;
    Ok(json(render::hook(find(&ds, owner, hook_id)?, time::now())))
}

async fn create(ctx: Ctx, id: String, headers: HeaderMap, body: Bytes, group: bool) -> ApiResult {
    let fields = body_fields(&headers, &body)?;
    let mut ds = write(&ctx.sim.shared.data);
    let owner = owner(&ds, &ctx, &id, group)?;
    let url = fields.get("url").and_then(as_text).ok_or(SimError::MissingParam("url"))?;
    check_url(&url)?;
    let mut hook = Hook {
        id: Ids::next(&mut ds.ids.hook),
        owner,
        url,
        name: String::new(),
        description: String::new(),
        token: fields.get("token").and_then(as_text).filter(|t| !t.is_empty()),
        signing_token: None,
        events: HookEvents::default(),
        push_events_branch_filter: None,
        branch_filter_strategy: "wildcard".into(),
        enable_ssl_verification: true,
        custom_headers: Vec::new(),
        created_at: time::now(),
        recent_failures: 0,
        backoff_count: 0,
        disabled_until: None,
        permanently_disabled: false,
    };
    apply_common(&mut hook, &fields, group)?;
    let out = render::hook(&hook, time::now());
    ds.hooks.push(hook);
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

async fn update(ctx: Ctx, id: String, hook_id: u64, headers: HeaderMap, body: Bytes, group: bool) -> ApiResult {
    let fields = body_fields(&headers, &body)?;
    let mut ds = write(&ctx.sim.shared.data);
    let owner = owner(&ds, &ctx, &id, group)?;
    find(&ds, owner, hook_id)?;
    let hook = ds.hooks.iter_mut().find(|h| h.id == hook_id).ok_or(SimError::NotFound("Hook"))?;
    if let Some(url) = fields.get("url").and_then(as_text) {
        check_url(&url)?;
        // WebHook#reset_token: a new URL drops the secret token unless one is sent with it.
        if url != hook.url && !fields.contains_key("token") {
            hook.token = None;
        }
        hook.url = url;
    }
    if let Some(v) = fields.get("token") {
        hook.token = as_text(v).filter(|t| !t.is_empty());
    }
    apply_common(hook, &fields, group)?;
    Ok(json(render::hook(hook, time::now())))
}

async fn delete(ctx: Ctx, id: String, hook_id: u64, group: bool) -> ApiResult {
    let mut ds = write(&ctx.sim.shared.data);
    let owner = owner(&ds, &ctx, &id, group)?;
    find(&ds, owner, hook_id)?;
    ds.hooks.retain(|h| h.id != hook_id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn delivery_json(d: &webhook::Delivery) -> Value {
    json!({
        "id": d.id, "url": d.url, "trigger": d.trigger, "request_headers": d.request_headers,
        "request_data": serde_json::from_str::<Value>(&d.request_body).unwrap_or(Value::Null),
        "response_headers": {}, "response_body": d.response_body,
        "execution_duration": d.execution_duration,
        "response_status": d.response_status.map_or_else(|| Value::from("internal error"), Value::from),
    })
}

fn status_matches(d: &webhook::Delivery, filter: &str) -> bool {
    let s = d.response_status;
    match filter {
        "successful" => d.ok(),
        "client_failure" => s.is_some_and(|s| (400..500).contains(&s)),
        "server_failure" => s.is_none_or(|s| s >= 500),
        code => code.parse::<u16>().ok() == s,
    }
}

async fn events(ctx: Ctx, id: String, hook_id: u64, group: bool) -> ApiResult {
    {
        let ds = read(&ctx.sim.shared.data);
        let owner = owner(&ds, &ctx, &id, group)?;
        find(&ds, owner, hook_id)?;
    }
    let log = lock(&ctx.sim.shared.deliveries);
    let filter = ctx.params.get("status");
    let mut list: Vec<&webhook::Delivery> = log.for_hook(hook_id).filter(|d| filter.is_none_or(|f| status_matches(d, f))).collect();
    list.reverse();
    let (slice, headers) = pagination::offset(&list, &ctx.params, &ctx.origin, None)?;
    Ok(page(slice.iter().map(|d| delivery_json(d)).collect(), headers))
}

/// Re-sends a logged delivery with the same Idempotency-Key, as GitLab's "Resend Request".
async fn resend(ctx: Ctx, id: String, hook_id: u64, event_id: u64, group: bool) -> ApiResult {
    let hook = {
        let ds = read(&ctx.sim.shared.data);
        let owner = owner(&ds, &ctx, &id, group)?;
        find(&ds, owner, hook_id)?.clone()
    };
    let original = lock(&ctx.sim.shared.deliveries).for_hook(hook_id).find(|d| d.id == event_id).cloned().ok_or(SimError::NotFound(""))?;
    let new_id =
        webhook::deliver(&ctx.sim, &hook, original.kind, &original.request_body, &original.idempotency_key, &original.event_uuid).await;
    let status = lock(&ctx.sim.shared.deliveries).deliveries.iter().find(|d| d.id == new_id).and_then(|d| d.response_status);
    Ok((StatusCode::CREATED, axum::Json(json!({"response_status": status}))).into_response())
}

/// A sample event built from the project's latest matching record, as GitLab's "Test" does.
fn sample(ds: &Dataset, p: &Project, user: &User, trigger: &str, base: &str) -> Result<(Trigger, Value), SimError> {
    let missing = |what: &str| SimError::BadRequest(format!("Ensure the project has {what}."));
    match trigger {
        "push_events" => {
            let head = p.repository.branch(&p.default_branch).ok_or_else(|| missing("commits"))?.commit.clone();
            let recent = p.repository.reachable(std::slice::from_ref(&head), true);
            let mut commits: Vec<&Commit> = recent.iter().take(3).map(|i| &p.repository.commits[*i]).collect();
            commits.reverse();
            let before = commits.first().and_then(|c| c.parent_ids.first().cloned()).unwrap_or_else(|| "0".repeat(40));
            let info = PushInfo { before, after: head, reference: format!("refs/heads/{}", p.default_branch), commits };
            Ok((Trigger::Push, payloads::push(ds, p, user, &info, base)))
        }
        "merge_requests_events" => {
            let m = p.merge_requests.last().ok_or_else(|| missing("merge requests"))?;
            let change = MrChange { action: "open", changes: &Vec::new(), oldrev: None };
            Ok((Trigger::MergeRequest, payloads::merge_request(ds, p, m, user, &change, base)))
        }
        "issues_events" | "confidential_issues_events" => {
            let i = p.issues.last().ok_or_else(|| missing("issues"))?;
            Ok((Trigger::Issue, payloads::issue(ds, p, i, user, "open", &Vec::new(), base)))
        }
        "note_events" | "confidential_note_events" => {
            let n = p.notes.last().ok_or_else(|| missing("notes"))?;
            Ok((Trigger::Note, payloads::note(ds, p, n, user, "create", base)))
        }
        "pipeline_events" => {
            let pl = p.pipelines.last().ok_or_else(|| missing("pipelines"))?;
            Ok((Trigger::Pipeline, payloads::pipeline(ds, p, pl, base)))
        }
        "job_events" => {
            let pl = p.pipelines.iter().rev().find(|pl| !pl.jobs.is_empty()).ok_or_else(|| missing("jobs"))?;
            Ok((Trigger::Job, payloads::job(ds, p, pl, &pl.jobs[0], base)))
        }
        _ => Err(SimError::BadRequest(format!("trigger {trigger} is not supported by the simulator"))),
    }
}

/// `POST .../hooks/:hook_id/test/:trigger`: delivers a sample now, even to a disabled hook;
/// a 2xx answer re-enables it.
async fn test_project(ctx: Ctx, Path((id, hook_id, trigger)): Path<(String, u64, String)>) -> ApiResult {
    let (hook, event, body) = {
        let ds = read(&ctx.sim.shared.data);
        let owner = owner(&ds, &ctx, &id, false)?;
        let hook = find(&ds, owner, hook_id)?.clone();
        let HookOwner::Project(pid) = owner else {
            return Err(SimError::NoRoute);
        };
        let p = ds.project(pid).ok_or(SimError::NotFound("Project"))?;
        let user = ds.user(ctx.caller.user_id).ok_or(SimError::Unauthorized)?;
        let (event, payload) = sample(&ds, p, user, &trigger, &ctx.base)?;
        (hook, event, serde_json::to_string(&payload)?)
    };
    let key = uuid::Uuid::new_v4().to_string();
    webhook::deliver(&ctx.sim, &hook, event, &body, &key, &uuid::Uuid::new_v4().to_string()).await;
    Ok((StatusCode::CREATED, axum::Json(json!({"message": "201 Created"}))).into_response())
}

async fn list_project(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    list(ctx, id, false).await
}
async fn list_group(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    list(ctx, id, true).await
}
async fn get_project(ctx: Ctx, Path((id, hook)): Path<(String, u64)>) -> ApiResult {
    get_one(ctx, id, hook, false).await
}
async fn get_group(ctx: Ctx, Path((id, hook)): Path<(String, u64)>) -> ApiResult {
    get_one(ctx, id, hook, true).await
}
async fn create_project(ctx: Ctx, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> ApiResult {
    create(ctx, id, headers, body, false).await
}
async fn create_group(ctx: Ctx, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> ApiResult {
    create(ctx, id, headers, body, true).await
}
async fn update_project(ctx: Ctx, Path((id, hook)): Path<(String, u64)>, headers: HeaderMap, body: Bytes) -> ApiResult {
    update(ctx, id, hook, headers, body, false).await
}
async fn update_group(ctx: Ctx, Path((id, hook)): Path<(String, u64)>, headers: HeaderMap, body: Bytes) -> ApiResult {
    update(ctx, id, hook, headers, body, true).await
}
async fn delete_project(ctx: Ctx, Path((id, hook)): Path<(String, u64)>) -> ApiResult {
    delete(ctx, id, hook, false).await
}
async fn delete_group(ctx: Ctx, Path((id, hook)): Path<(String, u64)>) -> ApiResult {
    delete(ctx, id, hook, true).await
}
async fn events_project(ctx: Ctx, Path((id, hook)): Path<(String, u64)>) -> ApiResult {
    events(ctx, id, hook, false).await
}
async fn events_group(ctx: Ctx, Path((id, hook)): Path<(String, u64)>) -> ApiResult {
    events(ctx, id, hook, true).await
}
async fn resend_project(ctx: Ctx, Path((id, hook, event)): Path<(String, u64, u64)>) -> ApiResult {
    resend(ctx, id, hook, event, false).await
}
async fn resend_group(ctx: Ctx, Path((id, hook, event)): Path<(String, u64, u64)>) -> ApiResult {
    resend(ctx, id, hook, event, true).await
}
