//! A project and its repository: branches, commits and commit comments.

use axum::Router;
use axum::extract::Path;
use axum::routing::get;

use super::{ApiResult, Ctx, json, page};
use crate::error::SimError;
use crate::model::{Noteable, Repository};
use crate::pagination;
use crate::render;
use crate::state::read;
use crate::time;

pub fn routes() -> Router<crate::state::Simulator> {
    Router::new()
        .route("/api/v4/projects/{id}", get(project))
        .route("/api/v4/projects/{id}/repository/branches", get(branches))
        .route("/api/v4/projects/{id}/repository/branches/{branch}", get(branch))
        .route("/api/v4/projects/{id}/repository/commits", get(commits))
        .route("/api/v4/projects/{id}/repository/commits/{sha}", get(commit))
        .route("/api/v4/projects/{id}/repository/commits/{sha}/comments", get(commit_comments))
        .route("/api/v4/projects/{id}/repository/commits/{sha}/refs", get(commit_refs))
}

async fn project(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let p = ds.visible_project(ctx.caller.user_id, &id)?;
    Ok(json(render::project(&ds, p, &ctx.base, ctx.caller.user_id, false)))
}

async fn branches(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let p = ds.visible_project(ctx.caller.user_id, &id)?;
    let mut list: Vec<_> = p.repository.branches.iter().collect();
    if let Some(search) = ctx.params.get("search") {
        list.retain(|b| b.name.contains(search));
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let (slice, headers) = pagination::offset(&list, &ctx.params, &ctx.origin, None)?;
    Ok(page(slice.iter().map(|b| render::branch(p, b, &ctx.base)).collect(), headers))
}

async fn branch(ctx: Ctx, Path((id, name)): Path<(String, String)>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let p = ds.visible_project(ctx.caller.user_id, &id)?;
    let b = p.repository.branch(&name).ok_or(SimError::NotFound("Branch"))?;
    Ok(json(render::branch(p, b, &ctx.base)))
}

/// Commits selected by `ref_name` (a branch, tag, sha or `a..b` range) or `all`.
fn select(repo: &Repository, ref_name: Option<&str>, default: &str, all: bool, first_parent: bool) -> Vec<usize> {
    if all {
        return repo.reachable_from_refs(first_parent);
    }
    let reference = ref_name.unwrap_or(default);
    if let Some((from, to)) = reference.split_once("..") {
        let (Some(from), Some(to)) = (repo.resolve(from), repo.resolve(to.trim_start_matches('.'))) else {
            return Vec::new();
        };
        let exclude: std::collections::HashSet<usize> = repo.reachable(&[from], false).into_iter().collect();
        return repo.reachable(&[to], first_parent).into_iter().filter(|i| !exclude.contains(i)).collect();
    }
    repo.resolve(reference).map_or_else(Vec::new, |head| repo.reachable(&[head], first_parent))
}

async fn commits(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let p = ds.visible_project(ctx.caller.user_id, &id)?;
    let repo = &p.repository;
    let all = ctx.params.flag("all") == Some(true);
    let first_parent = ctx.params.flag("first_parent") == Some(true);
    let mut picked = select(repo, ctx.params.get("ref_name"), &p.default_branch, all, first_parent);
    let since =
        ctx.params.get("since").map(|s| time::parse(s).ok_or_else(|| SimError::BadRequest("since is invalid".into()))).transpose()?;
    let until =
        ctx.params.get("until").map(|s| time::parse(s).ok_or_else(|| SimError::BadRequest("until is invalid".into()))).transpose()?;
    if since.is_some() || until.is_some() {
        picked.retain(|i| {
            let at = repo.commits[*i].committed_date;
            since.is_none_or(|s| at >= s) && until.is_none_or(|u| at <= u)
        });
    }
    if let Some(author) = ctx.params.get("author") {
        picked.retain(|i| repo.commits[*i].author_name.contains(author) || repo.commits[*i].author_email.contains(author));
    }
    let (slice, headers) = pagination::offset(&picked, &ctx.params, &ctx.origin, None)?;
    Ok(page(slice.iter().map(|i| render::commit(p, &repo.commits[*i], &ctx.base)).collect(), headers))
}

async fn commit(ctx: Ctx, Path((id, sha)): Path<(String, String)>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let p = ds.visible_project(ctx.caller.user_id, &id)?;
    let c = p.repository.resolve(&sha).and_then(|s| p.repository.commit(&s)).ok_or(SimError::NotFound("Commit"))?;
    Ok(json(render::commit_detail(p, c, &ctx.base)))
}

/// `GET /projects/:id/repository/commits/:sha/refs` (doc/api/commits.md, "Get references a
/// commit is pushed to"): the branches and tags that reach the commit, `type` `branch`, `tag`
/// or `all` (the default), as offset pages.
async fn commit_refs(ctx: Ctx, Path((id, sha)): Path<(String, String)>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let p = ds.visible_project(ctx.caller.user_id, &id)?;
    let repo = &p.repository;
    let c = repo.resolve(&sha).and_then(|s| repo.commit(&s)).ok_or(SimError::NotFound("Commit"))?;
    let kind = ctx.params.get("type").unwrap_or("all");
    if !matches!(kind, "branch" | "tag" | "all") {
        return Err(SimError::BadRequest("type does not have a valid value".into()));
    }
    let reaches = |head: &str| repo.reachable(&[head.to_string()], false).iter().any(|&i| repo.commits[i].id == c.id);
    let mut refs: Vec<serde_json::Value> = Vec::new();
    if kind != "tag" {
        refs.extend(repo.branches.iter().filter(|b| reaches(&b.commit)).map(|b| serde_json::json!({"type": "branch", "name": b.name})));
    }
    if kind != "branch" {
        refs.extend(repo.tags.iter().filter(|t| reaches(&t.commit)).map(|t| serde_json::json!({"type": "tag", "name": t.name})));
    }
    let (slice, headers) = pagination::offset(&refs, &ctx.params, &ctx.origin, None)?;
    Ok(page(slice.to_vec(), headers))
}

async fn commit_comments(ctx: Ctx, Path((id, sha)): Path<(String, String)>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let p = ds.visible_project(ctx.caller.user_id, &id)?;
    let c = p.repository.resolve(&sha).and_then(|s| p.repository.commit(&s)).ok_or(SimError::NotFound("Commit"))?;
    let target = Noteable::Commit { sha: c.id.clone() };
    let notes: Vec<_> = p.notes.iter().filter(|n| n.noteable == target).collect();
    let (slice, headers) = pagination::offset(&notes, &ctx.params, &ctx.origin, None)?;
    Ok(page(slice.iter().map(|n| render::commit_comment(&ds, n, &ctx.base)).collect(), headers))
}
