//! Merge requests, issues, notes and pipelines of a project.

use axum::Router;
use axum::extract::Path;
use axum::routing::get;

use super::{ApiResult, Ctx, json, page};
use crate::control::churn;
use crate::dataset::Dataset;
use crate::error::SimError;
use crate::model::*;
use crate::pagination::{self, Cursor, Params};
use crate::render;
use crate::state::read;
use crate::time::{self, Ts, api};

pub fn routes() -> Router<crate::state::Simulator> {
    Router::new()
        .route("/api/v4/projects/{id}/merge_requests", get(merge_requests))
        .route("/api/v4/projects/{id}/merge_requests/{iid}", get(merge_request))
        .route("/api/v4/projects/{id}/merge_requests/{iid}/commits", get(merge_request_commits))
        .route("/api/v4/projects/{id}/merge_requests/{iid}/notes", get(merge_request_notes))
        .route("/api/v4/projects/{id}/issues", get(issues))
        .route("/api/v4/projects/{id}/issues/{iid}", get(issue))
        .route("/api/v4/projects/{id}/issues/{iid}/notes", get(issue_notes))
        .route("/api/v4/projects/{id}/pipelines", get(pipelines))
        .route("/api/v4/projects/{id}/pipelines/{pipeline_id}", get(pipeline))
}

fn time_param(params: &Params, key: &str) -> Result<Option<Ts>, SimError> {
    params.get(key).map(|v| time::parse(v).ok_or_else(|| SimError::BadRequest(format!("{key} is invalid")))).transpose()
}

/// `created_after`/`created_before`/`updated_after`/`updated_before`, all inclusive.
struct Window {
    created_after: Option<Ts>,
    created_before: Option<Ts>,
    updated_after: Option<Ts>,
    updated_before: Option<Ts>,
}

impl Window {
    fn from(params: &Params) -> Result<Window, SimError> {
        Ok(Window {
            created_after: time_param(params, "created_after")?,
            created_before: time_param(params, "created_before")?,
            updated_after: time_param(params, "updated_after")?,
            updated_before: time_param(params, "updated_before")?,
        })
    }

    fn admits(&self, created: Ts, updated: Ts) -> bool {
        self.created_after.is_none_or(|t| created >= t)
            && self.created_before.is_none_or(|t| created <= t)
            && self.updated_after.is_none_or(|t| updated >= t)
            && self.updated_before.is_none_or(|t| updated <= t)
    }
}

fn sort_desc(params: &Params) -> bool {
    params.get("sort").unwrap_or("desc") != "asc"
}

/// The project's merge requests matching the request's filters, in its order.
fn mr_list<'a>(ctx: &Ctx, p: &'a Project) -> Result<Vec<&'a MergeRequest>, SimError> {
    let window = Window::from(&ctx.params)?;
    let me = ctx.caller.user_id;
    let state = ctx.params.get("state").unwrap_or("all");
    let scope = ctx.params.get("scope").unwrap_or("all");
    let mut list: Vec<&MergeRequest> = p
        .merge_requests
        .iter()
        .filter(|m| state == "all" || m.state.as_str() == state)
        .filter(|m| match scope {
            "created_by_me" | "created-by-me" => m.author_id == me,
            "assigned_to_me" | "assigned-to-me" => m.assignee_ids.contains(&me),
            "reviews_for_me" => m.reviewer_ids.contains(&me),
            _ => true,
        })
        .filter(|m| window.admits(m.created_at, m.updated_at))
        .collect();
    let key = ctx.params.get("order_by").unwrap_or("created_at");
    list.sort_by(|a, b| {
        let ord = match key {
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "merged_at" => a.merged_at.cmp(&b.merged_at),
            "title" => a.title.cmp(&b.title),
            _ => a.created_at.cmp(&b.created_at),
        };
        ord.then(a.id.cmp(&b.id))
    });
    if sort_desc(&ctx.params) {
        list.reverse();
    }
    Ok(list)
}

/// With the churn setting on, a later page is preceded by one edit of an item of an earlier
/// page (see `control::churn`); the page is then computed from the edited data.
fn churn_before_page<T>(
    ctx: &Ctx,
    received: impl FnOnce(&Dataset) -> Result<Option<(u64, T)>, SimError>,
    target: impl FnOnce(T) -> churn::Target,
) -> Result<(), SimError> {
    if !churn::wanted(&ctx.sim, &ctx.params) {
        return Ok(());
    }
    let picked = received(&read(&ctx.sim.shared.data))?;
    if let Some((project_id, item)) = picked {
        churn::edit(&ctx.sim, project_id, target(item));
    }
    Ok(())
}

async fn merge_requests(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    churn_before_page(
        &ctx,
        |ds| {
            let p = ds.visible_project(ctx.caller.user_id, &id)?;
            let list = mr_list(&ctx, p)?;
            let start = pagination::offset_start(&ctx.params).min(list.len());
            Ok(churn::pick(&ctx.sim, &list[..start]).map(|m| (p.id, m.iid)))
        },
        |iid| churn::Target::MergeRequest { iid },
    )?;
    let ds = read(&ctx.sim.shared.data);
    let p = ds.visible_project(ctx.caller.user_id, &id)?;
    let list = mr_list(&ctx, p)?;
    let simple = ctx.params.get("view") == Some("simple");
    let (slice, headers) = pagination::offset(&list, &ctx.params, &ctx.origin, None)?;
    Ok(page(slice.iter().map(|m| render::merge_request(&ds, p, m, &ctx.base, simple)).collect(), headers))
}

fn find_mr<'a>(ds: &'a Dataset, ctx: &Ctx, id: &str, iid: u64) -> Result<(&'a Project, &'a MergeRequest), SimError> {
    let p = ds.visible_project(ctx.caller.user_id, id)?;
    let m = p.merge_request(iid).ok_or(SimError::NotFound(""))?;
    Ok((p, m))
}

async fn merge_request(ctx: Ctx, Path((id, iid)): Path<(String, u64)>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let (p, m) = find_mr(&ds, &ctx, &id, iid)?;
    let mut v = render::merge_request(&ds, p, m, &ctx.base, false);
    v["diff_refs"] = serde_json::json!({
        "base_sha": m.commit_shas.first().and_then(|s| p.repository.commit(s)).and_then(|c| c.parent_ids.first().cloned()),
        "head_sha": m.sha, "start_sha": m.commit_shas.first().and_then(|s| p.repository.commit(s)).and_then(|c| c.parent_ids.first().cloned()),
    });
    v["changes_count"] = m.commit_shas.len().to_string().into();
    Ok(json(v))
}

async fn merge_request_commits(ctx: Ctx, Path((id, iid)): Path<(String, u64)>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let (p, m) = find_mr(&ds, &ctx, &id, iid)?;
    let commits: Vec<&Commit> = m.commit_shas.iter().rev().filter_map(|s| p.repository.commit(s)).collect();
    let (slice, headers) = pagination::offset(&commits, &ctx.params, &ctx.origin, None)?;
    Ok(page(slice.iter().map(|c| render::commit(p, c, &ctx.base)).collect(), headers))
}

fn list_notes(ctx: &Ctx, ds: &Dataset, p: &Project, target: Noteable) -> ApiResult {
    let mut notes: Vec<&Note> = p.notes.iter().filter(|n| n.noteable == target).collect();
    let by_updated = ctx.params.get("order_by") == Some("updated_at");
    notes.sort_by(|a, b| {
        let ord = if by_updated { a.updated_at.cmp(&b.updated_at) } else { a.created_at.cmp(&b.created_at) };
        ord.then(a.id.cmp(&b.id))
    });
    if sort_desc(&ctx.params) {
        notes.reverse();
    }
    let (slice, headers) = pagination::offset(&notes, &ctx.params, &ctx.origin, None)?;
    Ok(page(slice.iter().map(|n| render::note(ds, p, n, &ctx.base)).collect(), headers))
}

async fn merge_request_notes(ctx: Ctx, Path((id, iid)): Path<(String, u64)>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let (p, _) = find_mr(&ds, &ctx, &id, iid)?;
    list_notes(&ctx, &ds, p, Noteable::MergeRequest { iid })
}

/// A project with the issues feature disabled does not refuse the issue routes: in GitLab's
/// lib/api/issues.rb they run IssuesFinder, whose project scope keeps only projects where
/// issues are available to the user, so the list is empty and single issues are not found.
/// (Pipelines, by contrast, answer 403: see `ci_project`.)
fn issues_visible(p: &Project) -> &[Issue] {
    if p.issues_enabled { &p.issues } else { &[] }
}

/// Confidential issues are visible to Reporter and above, their author and assignees.
fn can_read_issue(ds: &Dataset, p: &Project, user: u64, i: &Issue) -> bool {
    !i.confidential || i.author_id == user || i.assignee_ids.contains(&user) || ds.project_access(user, p).is_some_and(|l| l >= REPORTER)
}

/// The orders project issues can be keyset-paginated by: `Issue.supported_keyset_orderings`
/// as gitlab-org/gitlab!199887 (GitLab 18.3) lists them. lib/api/issues.rb drops the
/// `pagination` parameter for any other `order_by`, so those requests get offset pages.
const ISSUE_KEYSET_ORDERS: &[&str] = &["id", "title", "created_at", "updated_at", "due_date", "relative_position", "weight"];

/// Project issues gained keyset pagination in GitLab 18.3 (gitlab-org/gitlab!199887). Before,
/// lib/api/issues.rb paged them with `paginate`, which in lib/api/helpers/pagination.rb is
/// offset pagination alone: `pagination=keyset` is an undeclared parameter nobody reads, so the
/// answer is an ordinary offset page (no 405, which only `paginate_with_strategies` in
/// lib/api/helpers/pagination_strategies.rb gives), and no offset limit applies either.
fn issue_keyset_available(ds: &Dataset) -> bool {
    ds.instance.at_least(18, 3)
}

/// The sort key of an issue as a string whose order is the list's order (cursors carry it).
/// Due dates and weights are never set here, and the relative position follows the iid
/// (`relative_position` in hooks is `iid * 513`).
fn issue_key(i: &Issue, key: &str) -> String {
    match key {
        "updated_at" => api(&i.updated_at),
        "created_at" => api(&i.created_at),
        "title" => i.title.clone(),
        "relative_position" => format!("{:020}", i.iid),
        "due_date" | "weight" => String::new(),
        _ => format!("{:020}", i.id),
    }
}

/// The project's issues the caller may read that match the request's filters, in its order,
/// with the order key and direction.
fn issue_list<'a>(ctx: &Ctx, ds: &Dataset, p: &'a Project) -> Result<(Vec<&'a Issue>, &'static str, bool), SimError> {
    let me = ctx.caller.user_id;
    let window = Window::from(&ctx.params)?;
    let state = ctx.params.get("state").unwrap_or("all");
    let scope = ctx.params.get("scope").unwrap_or("all");
    let labels: Vec<&str> = ctx.params.get("labels").map(|l| l.split(',').collect()).unwrap_or_default();
    let mut list: Vec<&Issue> = issues_visible(p)
        .iter()
        .filter(|i| can_read_issue(ds, p, me, i))
        .filter(|i| state == "all" || i.state.as_str() == state)
        .filter(|i| match scope {
            "created_by_me" | "created-by-me" => i.author_id == me,
            "assigned_to_me" | "assigned-to-me" => i.assignee_ids.contains(&me),
            _ => true,
        })
        .filter(|i| labels.iter().all(|l| i.labels.iter().any(|x| x == l)))
        .filter(|i| ctx.params.get("confidential").is_none_or(|c| (c == "true") == i.confidential))
        .filter(|i| window.admits(i.created_at, i.updated_at))
        .collect();
    let key = match ctx.params.get("order_by").unwrap_or("created_at") {
        "updated_at" => "updated_at",
        "id" => "id",
        "title" => "title",
        "due_date" => "due_date",
        "relative_position" => "relative_position",
        "weight" => "weight",
        _ => "created_at",
    };
    list.sort_by(|a, b| {
        let ord = match key {
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "created_at" => a.created_at.cmp(&b.created_at),
            "id" => std::cmp::Ordering::Equal,
            _ => issue_key(a, key).cmp(&issue_key(b, key)),
        };
        ord.then(a.id.cmp(&b.id))
    });
    let desc = sort_desc(&ctx.params);
    if desc {
        list.reverse();
    }
    Ok((list, key, desc))
}

/// Whether this issues request is answered with keyset pagination.
fn issue_keyset(ctx: &Ctx, ds: &Dataset) -> bool {
    let key = ctx.params.get("order_by").unwrap_or("created_at");
    pagination::wants_keyset(&ctx.params) && issue_keyset_available(ds) && ISSUE_KEYSET_ORDERS.contains(&key)
}

/// Where the keyset page after `cursor` starts in `list`.
fn issue_cursor_start(list: &[&Issue], key: &str, desc: bool, cursor: Option<&Cursor>) -> usize {
    list.iter().position(|i| issue_after(i, key, desc, cursor)).unwrap_or(list.len())
}

fn issue_after(i: &Issue, key: &str, desc: bool, cursor: Option<&Cursor>) -> bool {
    match cursor {
        None => true,
        Some(c) => {
            let here = (issue_key(i, key), i.id);
            let there = (c.key.clone(), c.id);
            if desc { here < there } else { here > there }
        }
    }
}

async fn issues(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    churn_before_page(
        &ctx,
        |ds| {
            let p = ds.visible_project(ctx.caller.user_id, &id)?;
            let (list, key, desc) = issue_list(&ctx, ds, p)?;
            let start = if issue_keyset(&ctx, ds) {
                let cursor = ctx.params.get("cursor").map(Cursor::decode).transpose()?;
                issue_cursor_start(&list, key, desc, cursor.as_ref())
            } else {
                pagination::offset_start(&ctx.params).min(list.len())
            };
            Ok(churn::pick(&ctx.sim, &list[..start]).map(|i| (p.id, i.iid)))
        },
        |iid| churn::Target::Issue { iid },
    )?;
    let ds = read(&ctx.sim.shared.data);
    let p = ds.visible_project(ctx.caller.user_id, &id)?;
    let (list, key, desc) = issue_list(&ctx, &ds, p)?;
    let render = |i: &&Issue| render::issue(&ds, p, i, &ctx.base);
    if issue_keyset(&ctx, &ds) {
        let cursor = ctx.params.get("cursor").map(Cursor::decode).transpose()?;
        let (slice, headers) = pagination::keyset(
            &list,
            &ctx.params,
            &ctx.origin,
            |i| issue_after(i, key, desc, cursor.as_ref()),
            |i| ("cursor", Cursor { key: issue_key(i, key), id: i.id }.encode()),
        );
        return Ok(page(slice.iter().map(render).collect(), headers));
    }
    // From 18.3 issues are paged by `paginate_with_strategies`, whose offset paginator caps
    // the offset for types that support keyset (lib/api/helpers/pagination_strategies.rb).
    let cap = issue_keyset_available(&ds).then_some("Issue");
    let (slice, headers) = pagination::offset(&list, &ctx.params, &ctx.origin, cap)?;
    Ok(page(slice.iter().map(render).collect(), headers))
}

fn find_issue<'a>(ds: &'a Dataset, ctx: &Ctx, id: &str, iid: u64) -> Result<(&'a Project, &'a Issue), SimError> {
    let p = ds.visible_project(ctx.caller.user_id, id)?;
    let i = issues_visible(p)
        .iter()
        .find(|i| i.iid == iid)
        .filter(|i| can_read_issue(ds, p, ctx.caller.user_id, i))
        .ok_or(SimError::NotFound(""))?;
    Ok((p, i))
}

async fn issue(ctx: Ctx, Path((id, iid)): Path<(String, u64)>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let (p, i) = find_issue(&ds, &ctx, &id, iid)?;
    Ok(json(render::issue(&ds, p, i, &ctx.base)))
}

async fn issue_notes(ctx: Ctx, Path((id, iid)): Path<(String, u64)>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    // The notes API resolves its noteable through a finder too, and names the type on a miss.
    let (p, _) = find_issue(&ds, &ctx, &id, iid).map_err(|_| SimError::NotFound("Issue"))?;
    list_notes(&ctx, &ds, p, Noteable::Issue { iid })
}

/// lib/api/ci/pipelines.rb runs `authorize! :read_pipeline` and `authorize! :read_build`,
/// which a project with CI/CD disabled does not grant: `403 {"message":"403 Forbidden"}`.
fn ci_project<'a>(ds: &'a Dataset, ctx: &Ctx, id: &str) -> Result<&'a Project, SimError> {
    let p = ds.visible_project(ctx.caller.user_id, id)?;
    if !p.jobs_enabled {
        return Err(SimError::Forbidden);
    }
    Ok(p)
}

/// The project's pipelines matching the request's filters, in its order.
fn pipeline_list<'a>(ctx: &Ctx, p: &'a Project) -> Result<Vec<&'a Pipeline>, SimError> {
    let window = Window::from(&ctx.params)?;
    let mut list: Vec<&Pipeline> = p
        .pipelines
        .iter()
        .filter(|pl| ctx.params.get("status").is_none_or(|s| pl.status == s))
        .filter(|pl| ctx.params.get("ref").is_none_or(|r| pl.ref_name == r))
        .filter(|pl| ctx.params.get("sha").is_none_or(|s| pl.sha == s))
        .filter(|pl| ctx.params.get("source").is_none_or(|s| pl.source == s))
        .filter(|pl| window.admits(pl.created_at, pl.updated_at))
        .collect();
    let key = ctx.params.get("order_by").unwrap_or("id");
    list.sort_by(|a, b| {
        let ord = match key {
            "status" => a.status.cmp(&b.status),
            "ref" => a.ref_name.cmp(&b.ref_name),
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "user_id" => a.user_id.cmp(&b.user_id),
            _ => std::cmp::Ordering::Equal,
        };
        ord.then(a.id.cmp(&b.id))
    });
    if sort_desc(&ctx.params) {
        list.reverse();
    }
    Ok(list)
}

/// Items are `Ci::PipelineBasic` (lib/api/entities/ci/pipeline_basic.rb): no `started_at`,
/// `finished_at` or `duration`, which only the single pipeline (`Ci::Pipeline`) has.
async fn pipelines(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    churn_before_page(
        &ctx,
        |ds| {
            let p = ci_project(ds, &ctx, &id)?;
            let list = pipeline_list(&ctx, p)?;
            let start = pagination::offset_start(&ctx.params).min(list.len());
            Ok(churn::pick(&ctx.sim, &list[..start]).map(|pl| (p.id, pl.id)))
        },
        |id| churn::Target::Pipeline { id },
    )?;
    let ds = read(&ctx.sim.shared.data);
    let p = ci_project(&ds, &ctx, &id)?;
    let list = pipeline_list(&ctx, p)?;
    let (slice, headers) = pagination::offset(&list, &ctx.params, &ctx.origin, None)?;
    Ok(page(slice.iter().map(|pl| render::pipeline(p, pl, &ctx.base)).collect(), headers))
}

async fn pipeline(ctx: Ctx, Path((id, pipeline_id)): Path<(String, u64)>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let p = ci_project(&ds, &ctx, &id)?;
    let pl = p.pipelines.iter().find(|pl| pl.id == pipeline_id).ok_or(SimError::NotFound(""))?;
    let mut v = render::pipeline(p, pl, &ctx.base);
    v["before_sha"] = pl.before_sha.clone().into();
    v["tag"] = pl.tag.into();
    v["user"] = render::user_ref(&ds, Some(pl.user_id), &ctx.base);
    v["started_at"] = time::api_opt(&pl.started_at);
    v["finished_at"] = time::api_opt(&pl.finished_at);
    v["duration"] = pl.finished_at.zip(pl.started_at).map(|(f, s)| (f - s).num_seconds()).into();
    v["coverage"] = serde_json::Value::Null;
    v["detailed_status"] = serde_json::json!({"text": pl.status, "label": pl.status, "group": pl.status});
    Ok(json(v))
}
