//! Groups and the project listings hanging off them.

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use serde_json::json;

use super::{ApiResult, Ctx, json, page};
use crate::dataset::Dataset;
use crate::error::SimError;
use crate::model::{Group, Project};
use crate::pagination::{self, Params};
use crate::render;
use crate::state::read;
use crate::time::api;

pub fn routes() -> Router<crate::state::Simulator> {
    Router::new()
        .route("/api/v4/groups", get(all_groups))
        .route("/api/v4/groups/{id}", get(group))
        .route("/api/v4/groups/{id}/subgroups", get(subgroups))
        .route("/api/v4/groups/{id}/descendant_groups", get(descendants))
        .route("/api/v4/groups/{id}/projects", get(group_projects))
        .route("/api/v4/groups/{id}/members/all/{user_id}", get(member))
        .route("/api/v4/projects", get(all_projects))
}

async fn group(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let g = ds.visible_group(ctx.caller.user_id, &id)?;
    let mut v = render::group(&ds, g, &ctx.base);
    if ctx.params.flag("with_projects") != Some(false) {
        let projects: Vec<_> = ds
            .projects
            .iter()
            .filter(|p| p.namespace_id == g.id && ds.can_see_project(ctx.caller.user_id, p))
            .map(|p| render::project(&ds, p, &ctx.base, ctx.caller.user_id, false))
            .collect();
        v["projects"] = projects.into();
        v["shared_projects"] = json!([]);
    }
    Ok(json(v))
}

fn list_groups(ctx: &Ctx, ds: &Dataset, mut groups: Vec<&Group>) -> ApiResult {
    groups.retain(|g| ds.can_see_group(ctx.caller.user_id, g));
    let key = ctx.params.get("order_by").unwrap_or("name");
    groups.sort_by(|a, b| match key {
        "id" => a.id.cmp(&b.id),
        "path" => a.path.cmp(&b.path),
        _ => a.name.cmp(&b.name).then(a.id.cmp(&b.id)),
    });
    if ctx.params.get("sort") == Some("desc") {
        groups.reverse();
    }
    let (slice, headers) = pagination::offset(&groups, &ctx.params, &ctx.origin, None)?;
    Ok(page(slice.iter().map(|g| render::group(ds, g, &ctx.base)).collect(), headers))
}

/// `GET /groups` (doc/api/groups.md, "List groups"): for a user, the groups they are a member
/// of (directly or through an ancestor), or with `all_available=true` every group they can see;
/// `owned` and `min_access_level` narrow to their access, `top_level_only` to root groups, and
/// `search` matches name or path.
async fn all_groups(ctx: Ctx) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let me = ctx.caller.user_id;
    let min_level = if ctx.params.flag("owned") == Some(true) { Some(50) } else { ctx.params.number("min_access_level").map(|l| l as u8) };
    let all_available = ctx.params.flag("all_available") == Some(true) && min_level.is_none();
    let search = ctx.params.get("search").map(str::to_lowercase);
    let groups = ds
        .groups
        .iter()
        .filter(|g| {
            let access = ds.group_access(me, g.id);
            match min_level {
                Some(level) => access.is_some_and(|a| a >= level),
                None => all_available || access.is_some(),
            }
        })
        .filter(|g| ctx.params.flag("top_level_only") != Some(true) || g.parent_id.is_none())
        .filter(|g| search.as_ref().is_none_or(|s| g.name.to_lowercase().contains(s) || g.path.to_lowercase().contains(s)))
        .collect();
    list_groups(&ctx, &ds, groups)
}

async fn subgroups(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let parent = ds.visible_group(ctx.caller.user_id, &id)?.id;
    let children = ds.groups.iter().filter(|g| g.parent_id == Some(parent)).collect();
    list_groups(&ctx, &ds, children)
}

async fn descendants(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let root = ds.visible_group(ctx.caller.user_id, &id)?.id;
    let below = ds.descendants(root);
    let groups = ds.groups.iter().filter(|g| g.id != root && below.contains(&g.id)).collect();
    list_groups(&ctx, &ds, groups)
}

async fn group_projects(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let g = ds.visible_group(ctx.caller.user_id, &id)?;
    let namespaces = if ctx.params.flag("include_subgroups") == Some(true) { ds.descendants(g.id) } else { vec![g.id] };
    // No project sharing is simulated, so `with_shared` changes nothing.
    let projects = ds.projects.iter().filter(|p| namespaces.contains(&p.namespace_id)).collect();
    list_projects(&ctx, &ds, projects)
}

async fn all_projects(ctx: Ctx) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let mut projects: Vec<&Project> = ds.projects.iter().collect();
    if ctx.params.flag("membership") == Some(true) {
        projects.retain(|p| ds.project_access(ctx.caller.user_id, p).is_some());
    }
    list_projects(&ctx, &ds, projects)
}

fn project_order(params: &Params) -> Result<(&str, bool), SimError> {
    let key = params.get("order_by").unwrap_or("created_at");
    if !matches!(key, "id" | "name" | "path" | "created_at" | "updated_at" | "last_activity_at") {
        return Err(SimError::BadRequest("order_by does not have a valid value".into()));
    }
    Ok((key, params.get("sort").unwrap_or("desc") == "asc"))
}

/// Filters, sorts and pages projects; keyset with `order_by=id` as GitLab supports.
fn list_projects(ctx: &Ctx, ds: &Dataset, mut projects: Vec<&Project>) -> ApiResult {
    let user = ctx.caller.user_id;
    projects.retain(|p| ds.can_see_project(user, p));
    if let Some(archived) = ctx.params.flag("archived") {
        projects.retain(|p| p.archived == archived);
    }
    let (key, asc) = project_order(&ctx.params)?;
    projects.sort_by(|a, b| {
        let ord = match key {
            "name" => a.name.cmp(&b.name),
            "path" => a.path.cmp(&b.path),
            "created_at" => a.created_at.cmp(&b.created_at),
            "updated_at" | "last_activity_at" => a.last_activity_at.cmp(&b.last_activity_at),
            _ => std::cmp::Ordering::Equal,
        };
        ord.then(a.id.cmp(&b.id))
    });
    if !asc {
        projects.reverse();
    }
    let simple = ctx.params.flag("simple") == Some(true);
    let render = |p: &&Project| render::project(ds, p, &ctx.base, user, simple);
    if pagination::wants_keyset(&ctx.params) {
        if key != "id" {
            return Err(SimError::KeysetUnsupported);
        }
        let after: Option<u64> = ctx.params.get("id_after").and_then(|v| v.parse().ok());
        let before: Option<u64> = ctx.params.get("id_before").and_then(|v| v.parse().ok());
        let (slice, headers) = pagination::keyset(
            &projects,
            &ctx.params,
            &ctx.origin,
            |p| match (asc, after, before) {
                (true, Some(a), _) => p.id > a,
                (false, _, Some(b)) => p.id < b,
                _ => true,
            },
            |p| {
                if asc { ("id_after", p.id.to_string()) } else { ("id_before", p.id.to_string()) }
            },
        );
        return Ok(page(slice.iter().map(render).collect(), headers));
    }
    let (slice, headers) = pagination::offset(&projects, &ctx.params, &ctx.origin, Some("Project"))?;
    Ok(page(slice.iter().map(render).collect(), headers))
}

async fn member(ctx: Ctx, Path((id, user_id)): Path<(String, u64)>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let g = ds.visible_group(ctx.caller.user_id, &id)?;
    let level = ds.group_access(user_id, g.id).ok_or(SimError::NotFound("Member"))?;
    let u = ds.user(user_id).ok_or(SimError::NotFound("Member"))?;
    let chain: Vec<u64> = ds.ancestry(g.id).iter().map(|g| g.id).collect();
    let m = ds
        .members
        .iter()
        .filter(|m| m.user_id == user_id && m.access_level == level)
        .find(|m| matches!(m.source, crate::model::MemberSource::Group(id) if chain.contains(&id)));
    let mut v = render::user_basic(u, &ctx.base);
    v["access_level"] = level.into();
    v["created_at"] = m.map(|m| api(&m.created_at)).into();
    v["expires_at"] = m.and_then(|m| m.expires_at).map(|d| d.to_string()).into();
    v["membership_state"] = "active".into();
    v["created_by"] = render::user_ref(&ds, Some(crate::generate::OWNER_USER), &ctx.base);
    Ok(json(v))
}
