//! Control routes about the instance itself: settings, stats, tokens, groups, members, projects.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Wait, control_error, respond};
use crate::config::{DeliveryConfig, Faults, Latency, RateLimitConfig};
use crate::dataset::{Dataset, Ids};
use crate::error::SimError;
use crate::model::*;
use crate::render;
use crate::state::{Simulator, lock, read, write};
use crate::time;
use crate::webhook::{Event, Trigger, payloads};

type Res = Result<Response, SimError>;

fn ok(v: Value) -> Res {
    Ok(axum::Json(v).into_response())
}

pub async fn health() -> Res {
    ok(json!({"ok": true}))
}

pub async fn stats(State(sim): State<Simulator>) -> Res {
    ok(serde_json::to_value(sim.stats())?)
}

pub async fn reset_stats(State(sim): State<Simulator>) -> Res {
    sim.reset_stats();
    ok(json!({"ok": true}))
}

pub async fn config(State(sim): State<Simulator>) -> Res {
    ok(serde_json::to_value(sim.config())?)
}

pub async fn set_faults(State(sim): State<Simulator>, axum::Json(f): axum::Json<Faults>) -> Res {
    sim.update_config(|c| c.faults = f);
    config(State(sim)).await
}

pub async fn set_latency(State(sim): State<Simulator>, axum::Json(l): axum::Json<Latency>) -> Res {
    sim.update_config(|c| c.latency = l);
    config(State(sim)).await
}

pub async fn set_rate_limit(State(sim): State<Simulator>, axum::Json(r): axum::Json<RateLimitConfig>) -> Res {
    sim.update_config(|c| c.rate_limit = r);
    config(State(sim)).await
}

pub async fn set_delivery(State(sim): State<Simulator>, axum::Json(d): axum::Json<DeliveryConfig>) -> Res {
    sim.update_config(|c| c.delivery = d);
    config(State(sim)).await
}

#[derive(Deserialize)]
pub struct InstanceBody {
    edition: Option<Edition>,
    version: Option<String>,
    self_managed: Option<bool>,
    /// `null` for no license; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    license: Option<Option<Plan>>,
}

/// Tells an explicit `null` (Some(None)) from an absent field (None).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Plan>>, D::Error> {
    Option::<Plan>::deserialize(d).map(Some)
}

pub async fn set_instance(State(sim): State<Simulator>, axum::Json(b): axum::Json<InstanceBody>) -> Res {
    let mut ds = write(&sim.shared.data);
    if let Some(e) = b.edition {
        ds.instance.edition = e;
    }
    if let Some(v) = b.version {
        ds.instance.version = v;
    }
    if let Some(m) = b.self_managed {
        ds.instance.self_managed = m;
    }
    if let Some(l) = b.license {
        ds.instance.license = l;
    }
    ok(serde_json::to_value(&ds.instance)?)
}

pub async fn truth(State(sim): State<Simulator>) -> Res {
    let body = sim.with_dataset(|ds| ds.to_json())?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

pub async fn truth_project(State(sim): State<Simulator>, Path(id): Path<u64>) -> Res {
    let ds = read(&sim.shared.data);
    let p = ds.project(id).ok_or(SimError::NotFound("Project"))?;
    ok(serde_json::to_value(p)?)
}

pub async fn tokens(State(sim): State<Simulator>) -> Res {
    ok(serde_json::to_value(sim.token_summary())?)
}

#[derive(Deserialize)]
pub struct TokenBody {
    user_id: u64,
    name: Option<String>,
    scopes: Option<Vec<String>>,
    expires_at: Option<chrono::NaiveDate>,
    value: Option<String>,
}

pub async fn create_token(State(sim): State<Simulator>, axum::Json(b): axum::Json<TokenBody>) -> Res {
    let mut ds = write(&sim.shared.data);
    ds.user(b.user_id).ok_or_else(|| control_error("no such user"))?;
    let value = match b.value {
        Some(v) if ds.token_by_value(&v).is_some() => {
            return Err(control_error("token value already in use"));
        }
        Some(v) => v,
        None => format!("glpat-{}", &lock(&sim.shared.rng).sha()[..20]),
    };
    let token = Token {
        id: Ids::next(&mut ds.ids.token),
        name: b.name.unwrap_or_else(|| "sim-token".into()),
        value,
        user_id: b.user_id,
        scopes: b.scopes.unwrap_or_else(|| vec!["api".into()]),
        created_at: time::now(),
        expires_at: b.expires_at,
        revoked: false,
        description: String::new(),
        rotated_from: None,
    };
    let mut v = render::token(&token, true);
    v["token"] = token.value.clone().into();
    ds.tokens.push(token);
    ok(v)
}

fn token_mut(ds: &mut Dataset, id: u64) -> Result<&mut Token, SimError> {
    ds.tokens.iter_mut().find(|t| t.id == id).ok_or_else(|| control_error("no such token"))
}

pub async fn revoke_token(State(sim): State<Simulator>, Path(id): Path<u64>) -> Res {
    let mut ds = write(&sim.shared.data);
    let t = token_mut(&mut ds, id)?;
    t.revoked = true;
    ok(render::token(t, false))
}

pub async fn expire_token(State(sim): State<Simulator>, Path(id): Path<u64>) -> Res {
    let mut ds = write(&sim.shared.data);
    let t = token_mut(&mut ds, id)?;
    t.expires_at = Some(chrono::Utc::now().date_naive() - Duration::days(1));
    ok(render::token(t, false))
}

#[derive(Deserialize)]
pub struct PlanBody {
    plan: Plan,
}

pub async fn set_plan(State(sim): State<Simulator>, Path(id): Path<u64>, axum::Json(b): axum::Json<PlanBody>) -> Res {
    let mut ds = write(&sim.shared.data);
    let root = ds.root_of(id).map(|g| g.id).ok_or(SimError::NotFound("Group"))?;
    // The plan belongs to the top-level namespace; subgroups mirror it.
    let below = ds.descendants(root);
    for g in ds.groups.iter_mut().filter(|g| below.contains(&g.id)) {
        g.plan = b.plan;
    }
    ok(json!({"group_id": root, "plan": b.plan.as_str()}))
}

#[derive(Deserialize)]
pub struct GroupBody {
    parent_id: Option<u64>,
    name: String,
    path: Option<String>,
    plan: Option<Plan>,
}

pub async fn create_group(State(sim): State<Simulator>, Query(w): Query<Wait>, axum::Json(b): axum::Json<GroupBody>) -> Res {
    let (events, body) = {
        let mut ds = write(&sim.shared.data);
        let parent = match b.parent_id {
            Some(id) => Some(ds.group(id).cloned().ok_or(SimError::NotFound("Group"))?),
            None => None,
        };
        let path = b.path.unwrap_or_else(|| b.name.to_lowercase().replace(' ', "-"));
        let full_path = parent.as_ref().map_or(path.clone(), |p| format!("{}/{path}", p.full_path));
        if ds.groups.iter().any(|g| g.full_path == full_path) {
            return Err(control_error("a group with that path exists"));
        }
        let g = Group {
            id: Ids::next(&mut ds.ids.group),
            name: b.name.clone(),
            path,
            full_name: parent.as_ref().map_or(b.name.clone(), |p| format!("{} / {}", p.full_name, b.name)),
            full_path,
            parent_id: parent.as_ref().map(|p| p.id),
            description: String::new(),
            visibility: Visibility::Private,
            plan: parent.as_ref().map_or(b.plan.unwrap_or(Plan::Free), |p| p.plan),
            created_at: time::now(),
        };
        let events = parent
            .iter()
            .map(|p| Event {
                trigger: Trigger::Subgroup,
                payload: payloads::subgroup(&g, p, "subgroup_create"),
                project_id: None,
                group_id: Some(p.id),
                branch: None,
            })
            .collect();
        let body = serde_json::to_value(&g)?;
        ds.groups.push(g);
        (events, body)
    };
    respond(&sim, w, events, body).await
}

#[derive(Deserialize)]
pub struct MemberBody {
    group_id: Option<u64>,
    project_id: Option<u64>,
    user_id: u64,
    #[serde(default = "developer")]
    access_level: u8,
}

fn developer() -> u8 {
    DEVELOPER
}

fn member_source(b: &MemberBody) -> Result<MemberSource, SimError> {
    match (b.group_id, b.project_id) {
        (Some(g), None) => Ok(MemberSource::Group(g)),
        (None, Some(p)) => Ok(MemberSource::Project(p)),
        _ => Err(control_error("give exactly one of group_id and project_id")),
    }
}

fn member_event(ds: &Dataset, m: &Member, event_name: &str) -> Option<Event> {
    let MemberSource::Group(gid) = m.source else {
        return None;
    };
    let (g, u) = (ds.group(gid)?, ds.user(m.user_id)?);
    Some(Event {
        trigger: Trigger::Member,
        payload: payloads::member(ds, g, u, m, event_name, time::now()),
        project_id: None,
        group_id: Some(gid),
        branch: None,
    })
}

pub async fn add_member(State(sim): State<Simulator>, Query(w): Query<Wait>, axum::Json(b): axum::Json<MemberBody>) -> Res {
    let source = member_source(&b)?;
    let (events, body) = {
        let mut ds = write(&sim.shared.data);
        ds.user(b.user_id).ok_or_else(|| control_error("no such user"))?;
        let exists = match source {
            MemberSource::Group(id) => ds.group(id).is_some(),
            MemberSource::Project(id) => ds.project(id).is_some(),
        };
        if !exists {
            return Err(control_error("no such group or project"));
        }
        let existing = ds.members.iter().position(|m| m.source == source && m.user_id == b.user_id);
        let event_name = match existing {
            Some(i) => {
                ds.members[i].access_level = b.access_level;
                "user_update_for_group"
            }
            None => {
                ds.members.push(Member {
                    source,
                    user_id: b.user_id,
                    access_level: b.access_level,
                    created_at: time::now(),
                    expires_at: None,
                });
                "user_add_to_group"
            }
        };
        let m = ds.members.iter().find(|m| m.source == source && m.user_id == b.user_id).cloned().expect("just stored");
        (member_event(&ds, &m, event_name).into_iter().collect(), serde_json::to_value(&m)?)
    };
    respond(&sim, w, events, body).await
}

pub async fn remove_member(State(sim): State<Simulator>, Query(w): Query<Wait>, axum::Json(b): axum::Json<MemberBody>) -> Res {
    let source = member_source(&b)?;
    let events = {
        let mut ds = write(&sim.shared.data);
        let i = ds
            .members
            .iter()
            .position(|m| m.source == source && m.user_id == b.user_id)
            .ok_or_else(|| control_error("no such membership"))?;
        let m = ds.members.remove(i);
        member_event(&ds, &m, "user_remove_from_group").into_iter().collect()
    };
    respond(&sim, w, events, json!({"removed": true})).await
}

#[derive(Deserialize)]
pub struct ProjectBody {
    namespace_id: u64,
    name: String,
    path: Option<String>,
    visibility: Option<Visibility>,
    default_branch: Option<String>,
    creator_id: Option<u64>,
}

pub async fn create_project(State(sim): State<Simulator>, Query(w): Query<Wait>, axum::Json(b): axum::Json<ProjectBody>) -> Res {
    let (events, body) = {
        let mut ds = write(&sim.shared.data);
        let ns = ds.group(b.namespace_id).cloned().ok_or(SimError::NotFound("Group"))?;
        let path = b.path.unwrap_or_else(|| b.name.to_lowercase().replace(' ', "-"));
        let path_with_namespace = format!("{}/{path}", ns.full_path);
        if ds.projects.iter().any(|p| p.path_with_namespace == path_with_namespace) {
            return Err(control_error("a project with that path exists"));
        }
        let now = time::now();
        let creator = b.creator_id.unwrap_or(crate::generate::OWNER_USER);
        let author = ds.user(creator).cloned().ok_or_else(|| control_error("no such user"))?;
        let default_branch = b.default_branch.unwrap_or_else(|| "main".into());
        let sha = lock(&sim.shared.rng).sha();
        let mut repository = Repository::default();
        repository.push(Commit {
            id: sha.clone(),
            parent_ids: vec![],
            title: "Initial commit".into(),
            message: "Initial commit\n".into(),
            author_name: author.name.clone(),
            author_email: author.email.clone(),
            committer_name: author.name.clone(),
            committer_email: author.email.clone(),
            authored_date: now,
            committed_date: now,
            added: vec!["README.md".into()],
            modified: vec![],
        });
        repository.branches.push(Branch { name: default_branch.clone(), commit: sha, protected: true });
        let p = Project {
            id: Ids::next(&mut ds.ids.project),
            name: b.name.clone(),
            path,
            namespace_id: ns.id,
            path_with_namespace,
            name_with_namespace: format!("{} / {}", ns.full_name, b.name),
            description: String::new(),
            visibility: b.visibility.unwrap_or(Visibility::Private),
            default_branch,
            archived: false,
            issues_enabled: true,
            jobs_enabled: true,
            created_at: now,
            last_activity_at: now,
            creator_id: creator,
            repository,
            labels: vec![],
            merge_requests: vec![],
            issues: vec![],
            notes: vec![],
            pipelines: vec![],
            releases: vec![],
            deployments: vec![],
        };
        let event = Event {
            trigger: Trigger::Project,
            payload: payloads::project_event(&ds, &p, "project_create", now),
            project_id: None,
            group_id: Some(ns.id),
            branch: None,
        };
        let body = json!({"id": p.id, "path_with_namespace": p.path_with_namespace});
        ds.projects.push(p);
        (vec![event], body)
    };
    respond(&sim, w, events, body).await
}

pub async fn delete_project(State(sim): State<Simulator>, Path(id): Path<u64>, Query(w): Query<Wait>) -> Res {
    let events = {
        let mut ds = write(&sim.shared.data);
        let p = ds.project(id).ok_or(SimError::NotFound("Project"))?;
        let event = Event {
            trigger: Trigger::Project,
            payload: payloads::project_event(&ds, p, "project_destroy", time::now()),
            project_id: None,
            group_id: Some(p.namespace_id),
            branch: None,
        };
        ds.projects.retain(|p| p.id != id);
        ds.hooks.retain(|h| h.owner != HookOwner::Project(id));
        ds.members.retain(|m| m.source != MemberSource::Project(id));
        vec![event]
    };
    respond(&sim, w, events, json!({"deleted": id})).await
}

/// `{"failing": true}` fails every delivery, `{"fail_rate": 0.3}` about 30% of them.
#[derive(Deserialize)]
pub struct FailingBody {
    #[serde(default)]
    failing: bool,
    fail_rate: Option<f64>,
}

pub async fn set_hook_failing(State(sim): State<Simulator>, Path(id): Path<u64>, axum::Json(b): axum::Json<FailingBody>) -> Res {
    if !read(&sim.shared.data).hooks.iter().any(|h| h.id == id) {
        return Err(SimError::NotFound("Hook"));
    }
    let rate = b.fail_rate.unwrap_or(if b.failing { 1.0 } else { 0.0 }).clamp(0.0, 1.0);
    let mut log = lock(&sim.shared.deliveries);
    if rate > 0.0 {
        log.failing_hooks.insert(id, rate);
    } else {
        log.failing_hooks.remove(&id);
    }
    ok(json!({"hook_id": id, "fail_rate": rate}))
}

#[derive(Deserialize)]
pub struct DeliveryQuery {
    hook_id: Option<u64>,
}

pub async fn deliveries(State(sim): State<Simulator>, Query(q): Query<DeliveryQuery>) -> Res {
    let log = lock(&sim.shared.deliveries);
    let list: Vec<_> = log.deliveries.iter().filter(|d| q.hook_id.is_none_or(|h| d.hook_id == h)).collect();
    ok(serde_json::to_value(list)?)
}
