//! Hook payloads with the field sets GitLab sends, built from the dataset.

use serde_json::{Map, Value, json};

use crate::dataset::Dataset;
use crate::model::*;
use crate::render::avatar;
use crate::time::{self, Ts};

/// Which `project` block a hook kind carries; GitLab's differ slightly by kind.
#[derive(Clone, Copy, PartialEq)]
enum ProjectShape {
    Full,
    WithCiConfig,
    Short,
}

fn project_attrs(ds: &Dataset, p: &Project, base: &str, shape: ProjectShape) -> Value {
    let web_url = format!("{base}/{}", p.path_with_namespace);
    let host = base.split("://").nth(1).unwrap_or(base);
    let ssh = format!("git@{host}:{}.git", p.path_with_namespace);
    let http = format!("{web_url}.git");
    let namespace = ds.group(p.namespace_id).map_or(String::new(), |g| g.name.clone());
    let mut m = Map::new();
    m.insert("id".into(), p.id.into());
    m.insert("name".into(), p.name.clone().into());
    m.insert("description".into(), p.description.clone().into());
    m.insert("web_url".into(), web_url.clone().into());
    m.insert("avatar_url".into(), Value::Null);
    m.insert("git_ssh_url".into(), ssh.clone().into());
    m.insert("git_http_url".into(), http.clone().into());
    m.insert("namespace".into(), namespace.into());
    m.insert("visibility_level".into(), p.visibility.level().into());
    m.insert("path_with_namespace".into(), p.path_with_namespace.clone().into());
    m.insert("default_branch".into(), p.default_branch.clone().into());
    if shape == ProjectShape::WithCiConfig {
        m.insert("ci_config_path".into(), Value::Null);
    }
    if shape != ProjectShape::Short {
        m.insert("homepage".into(), web_url.into());
        m.insert("url".into(), ssh.clone().into());
        m.insert("ssh_url".into(), ssh.into());
        m.insert("http_url".into(), http.into());
    }
    Value::Object(m)
}

fn repository_short(p: &Project, base: &str) -> Value {
    let web_url = format!("{base}/{}", p.path_with_namespace);
    json!({"name": p.name, "url": format!("{web_url}.git"), "description": p.description, "homepage": web_url})
}

fn repository_full(p: &Project, base: &str) -> Value {
    let web_url = format!("{base}/{}", p.path_with_namespace);
    let host = base.split("://").nth(1).unwrap_or(base);
    json!({
        "name": p.name, "url": format!("git@{host}:{}.git", p.path_with_namespace), "description": p.description,
        "homepage": web_url, "git_http_url": format!("{web_url}.git"),
        "git_ssh_url": format!("git@{host}:{}.git", p.path_with_namespace), "visibility_level": p.visibility.level(),
    })
}

fn user_attrs(u: &User) -> Value {
    json!({"id": u.id, "name": u.name, "username": u.username, "avatar_url": avatar(&u.email), "email": u.email})
}

fn user_brief(u: &User) -> Value {
    json!({"id": u.id, "name": u.name, "username": u.username, "avatar_url": avatar(&u.email)})
}

fn label_attrs(p: &Project, names: &[String]) -> Value {
    names
        .iter()
        .filter_map(|n| p.labels.iter().find(|l| &l.title == n))
        .map(|l| {
            json!({
                "id": l.id, "title": l.title, "color": l.color, "project_id": p.id,
                "created_at": time::hook(&l.created_at), "updated_at": time::hook(&l.created_at),
                "template": false, "description": l.description, "type": "ProjectLabel", "group_id": null,
            })
        })
        .collect::<Vec<_>>()
        .into()
}

fn commit_url(p: &Project, base: &str, sha: &str) -> String {
    format!("{base}/{}/-/commit/{sha}", p.path_with_namespace)
}

fn push_commit(p: &Project, c: &Commit, base: &str) -> Value {
    json!({
        "id": c.id, "message": c.message, "title": c.title, "timestamp": time::commit(&c.committed_date),
        "url": commit_url(p, base, &c.id), "author": {"name": c.author_name, "email": c.author_email},
        "added": c.added, "modified": c.modified, "removed": [],
    })
}

/// At most this many commits ride in a push payload; `total_commits_count` has the rest.
pub const PUSH_COMMIT_LIMIT: usize = 20;

pub struct PushInfo<'a> {
    pub before: String,
    pub after: String,
    /// Full ref, `refs/heads/x` or `refs/tags/x`.
    pub reference: String,
    /// The pushed commits, oldest first.
    pub commits: Vec<&'a Commit>,
}

pub fn push(ds: &Dataset, p: &Project, user: &User, info: &PushInfo, base: &str) -> Value {
    let tag = info.reference.starts_with("refs/tags/");
    let total = info.commits.len();
    let newest = &info.commits[total.saturating_sub(PUSH_COMMIT_LIMIT)..];
    let deleted = info.after.bytes().all(|b| b == b'0');
    let mut m = Map::new();
    let kind = if tag { "tag_push" } else { "push" };
    m.insert("object_kind".into(), kind.into());
    m.insert("event_name".into(), kind.into());
    m.insert("before".into(), info.before.clone().into());
    m.insert("after".into(), info.after.clone().into());
    m.insert("ref".into(), info.reference.clone().into());
    m.insert("checkout_sha".into(), if deleted { Value::Null } else { info.after.clone().into() });
    m.insert("user_id".into(), user.id.into());
    m.insert("user_name".into(), user.name.clone().into());
    m.insert("user_username".into(), user.username.clone().into());
    if !tag {
        m.insert("user_email".into(), user.email.clone().into());
    }
    m.insert("user_avatar".into(), avatar(&user.email).into());
    m.insert("project_id".into(), p.id.into());
    m.insert("project".into(), project_attrs(ds, p, base, ProjectShape::Full));
    m.insert("repository".into(), repository_full(p, base));
    m.insert("commits".into(), newest.iter().map(|c| push_commit(p, c, base)).collect::<Vec<_>>().into());
    m.insert("total_commits_count".into(), total.into());
    Value::Object(m)
}

fn mr_project_ref(ds: &Dataset, p: &Project, base: &str) -> Value {
    let mut v = project_attrs(ds, p, base, ProjectShape::Full);
    if let Value::Object(m) = &mut v {
        m.remove("id");
    }
    v
}

fn last_commit(p: &Project, m: &MergeRequest, base: &str) -> Value {
    p.repository.commit(&m.sha).map_or(Value::Null, |c| {
        json!({
            "id": c.id, "message": c.message, "title": c.title, "timestamp": time::commit(&c.committed_date),
            "url": commit_url(p, base, &c.id), "author": {"name": c.author_name, "email": c.author_email},
        })
    })
}

fn merge_status(m: &MergeRequest) -> (&'static str, &'static str) {
    if m.state == MrState::Opened { ("can_be_merged", "mergeable") } else { ("unchecked", "not_open") }
}

/// `changes` entries: field -> (previous, current).
pub type Changes = Vec<(&'static str, Value, Value)>;

fn changes_json(changes: &Changes) -> Value {
    changes.iter().map(|(k, prev, cur)| (k.to_string(), json!({"previous": prev, "current": cur}))).collect::<Map<_, _>>().into()
}

/// What happened to a merge request, for its hook.
pub struct MrChange<'a> {
    pub action: &'a str,
    pub changes: &'a Changes,
    /// The source branch's previous head, when a push brought new commits.
    pub oldrev: Option<&'a str>,
}

pub fn merge_request(ds: &Dataset, p: &Project, m: &MergeRequest, user: &User, change: &MrChange, base: &str) -> Value {
    let MrChange { action, changes, oldrev } = *change;
    let url = format!("{base}/{}/-/merge_requests/{}", p.path_with_namespace, m.iid);
    let (status, detailed) = merge_status(m);
    let mut attrs = json!({
        "id": m.id, "iid": m.iid, "target_branch": m.target_branch, "source_branch": m.source_branch,
        "source_project_id": p.id, "author_id": m.author_id, "assignee_ids": m.assignee_ids,
        "assignee_id": m.assignee_ids.first(), "reviewer_ids": m.reviewer_ids, "title": m.title,
        "created_at": time::hook(&m.created_at), "updated_at": time::hook(&m.updated_at), "milestone_id": null,
        "state": m.state.as_str(), "blocking_discussions_resolved": true, "work_in_progress": m.draft,
        "first_contribution": false, "merge_status": status, "target_project_id": p.id,
        "description": m.description, "url": url, "source": mr_project_ref(ds, p, base),
        "target": mr_project_ref(ds, p, base), "last_edited_at": null, "last_edited_by_id": null,
        "state_id": m.state.id(), "last_commit": last_commit(p, m, base), "total_time_spent": 0, "time_change": 0,
        "human_total_time_spent": null, "human_time_change": null, "human_time_estimate": null,
        "labels": label_attrs(p, &m.labels), "action": action, "detailed_merge_status": detailed,
    });
    if let Some(rev) = oldrev {
        attrs["oldrev"] = rev.into();
    }
    let users = |ids: &[u64]| ids.iter().filter_map(|id| ds.user(*id)).map(user_brief).collect::<Vec<_>>();
    json!({
        "object_kind": "merge_request", "event_type": "merge_request", "user": user_attrs(user),
        "project": project_attrs(ds, p, base, ProjectShape::Full), "repository": repository_short(p, base),
        "object_attributes": attrs, "labels": label_attrs(p, &m.labels), "changes": changes_json(changes),
        "assignees": users(&m.assignee_ids), "reviewers": users(&m.reviewer_ids),
    })
}

/// The Issue Hook as lib/gitlab/hook_data/issue_builder.rb builds it (its `closed_at` included,
/// which the merge request hook lacks).
pub fn issue(ds: &Dataset, p: &Project, i: &Issue, user: &User, action: &str, changes: &Changes, base: &str) -> Value {
    let kind = "issue";
    let assignee = |u: &User| json!({"name": u.name, "username": u.username, "avatar_url": avatar(&u.email)});
    let assignees: Vec<Value> = i.assignee_ids.iter().filter_map(|id| ds.user(*id)).map(assignee).collect();
    json!({
        "object_kind": kind, "event_type": if i.confidential { "confidential_issue" } else { kind },
        "user": user_attrs(user), "project": project_attrs(ds, p, base, ProjectShape::WithCiConfig),
        "object_attributes": {
            "id": i.id, "title": i.title, "assignee_ids": i.assignee_ids, "assignee_id": i.assignee_ids.first(),
            "author_id": i.author_id, "project_id": p.id, "created_at": time::hook(&i.created_at),
            "updated_at": time::hook(&i.updated_at), "closed_at": time::hook_opt(&i.closed_at),
            "updated_by_id": i.updated_by_id, "last_edited_at": null,
            "last_edited_by_id": null, "relative_position": i.iid * 513, "description": i.description,
            "milestone_id": null, "state_id": i.state.id(), "confidential": i.confidential,
            "discussion_locked": null, "due_date": null, "moved_to_id": null, "duplicated_to_id": null,
            "time_estimate": 0, "total_time_spent": 0, "time_change": 0, "human_total_time_spent": null,
            "human_time_estimate": null, "human_time_change": null, "weight": null, "iid": i.iid,
            "url": format!("{base}/{}/-/issues/{}", p.path_with_namespace, i.iid), "state": i.state.as_str(),
            "action": action, "severity": "unknown", "escalation_status": null, "escalation_policy": null,
            "labels": label_attrs(p, &i.labels),
        },
        "repository": repository_short(p, base), "assignees": assignees,
        "assignee": i.assignee_ids.first().and_then(|id| ds.user(*id)).map(assignee),
        "labels": label_attrs(p, &i.labels), "changes": changes_json(changes),
    })
}

pub fn note(ds: &Dataset, p: &Project, n: &Note, user: &User, action: &str, base: &str) -> Value {
    let (noteable_id, commit_id, url) = match &n.noteable {
        Noteable::MergeRequest { iid } => (
            p.merge_request(*iid).map(|m| m.id),
            String::new(),
            format!("{base}/{}/-/merge_requests/{iid}#note_{}", p.path_with_namespace, n.id),
        ),
        Noteable::Issue { iid } => {
            (p.issue(*iid).map(|i| i.id), String::new(), format!("{base}/{}/-/issues/{iid}#note_{}", p.path_with_namespace, n.id))
        }
        Noteable::Commit { sha } => (None, sha.clone(), format!("{}#note_{}", commit_url(p, base, sha), n.id)),
    };
    let mut attrs = json!({
        "id": n.id, "note": n.body, "noteable_type": n.noteable.type_name(), "author_id": n.author_id,
        "created_at": time::hook(&n.created_at), "updated_at": time::hook(&n.updated_at), "project_id": p.id,
        "attachment": null, "line_code": null, "commit_id": commit_id, "noteable_id": noteable_id,
        "system": n.system, "st_diff": null, "action": action, "url": url,
    });
    // Merge request notes carry no `description`; issue and commit notes repeat the body there.
    if !matches!(n.noteable, Noteable::MergeRequest { .. }) {
        attrs["description"] = n.body.clone().into();
    }
    let mut v = json!({
        "object_kind": "note", "event_type": "note", "user": user_attrs(user), "project_id": p.id,
        "project": project_attrs(ds, p, base, ProjectShape::Full), "repository": repository_short(p, base),
        "object_attributes": attrs,
    });
    match &n.noteable {
        Noteable::MergeRequest { iid } => {
            if let Some(m) = p.merge_request(*iid) {
                let (status, detailed) = merge_status(m);
                v["merge_request"] = json!({
                    "id": m.id, "target_branch": m.target_branch, "source_branch": m.source_branch,
                    "source_project_id": p.id, "author_id": m.author_id, "assignee_id": m.assignee_ids.first(),
                    "title": m.title, "created_at": time::hook(&m.created_at), "updated_at": time::hook(&m.updated_at),
                    "milestone_id": null, "state": m.state.as_str(), "merge_status": status, "target_project_id": p.id,
                    "iid": m.iid, "description": m.description, "position": 0, "labels": label_attrs(p, &m.labels),
                    "source": mr_project_ref(ds, p, base), "target": mr_project_ref(ds, p, base),
                    "last_commit": last_commit(p, m, base), "work_in_progress": m.draft,
                    "assignee": m.assignee_ids.first().and_then(|id| ds.user(*id)).map(|u| json!({"name": u.name, "username": u.username, "avatar_url": avatar(&u.email)})),
                    "detailed_merge_status": detailed,
                });
            }
        }
        Noteable::Issue { iid } => {
            if let Some(i) = p.issue(*iid) {
                v["issue"] = json!({
                    "id": i.id, "title": i.title, "assignee_ids": i.assignee_ids, "assignee_id": i.assignee_ids.first(),
                    "author_id": i.author_id, "project_id": p.id, "created_at": time::api(&i.created_at),
                    "updated_at": time::api(&i.updated_at), "position": 0, "branch_name": null,
                    "description": i.description, "milestone_id": null, "state": i.state.as_str(), "iid": i.iid,
                    "time_estimate": 0, "total_time_spent": 0, "human_time_estimate": null,
                    "human_total_time_spent": null, "labels": label_attrs(p, &i.labels),
                });
            }
        }
        Noteable::Commit { sha } => {
            if let Some(c) = p.repository.commit(sha) {
                v["commit"] = json!({
                    "id": c.id, "title": c.title, "message": c.message, "timestamp": time::commit(&c.committed_date),
                    "url": commit_url(p, base, &c.id), "author": {"name": c.author_name, "email": c.author_email},
                });
            }
        }
    }
    v
}

fn runner() -> Value {
    json!({"id": 1, "description": "sim-shared-runner", "runner_type": "instance_type", "active": true, "is_shared": true, "tags": ["linux"]})
}

fn seconds(from: Option<Ts>, to: Option<Ts>) -> Value {
    from.zip(to).map_or(Value::Null, |(f, t)| ((t - f).num_milliseconds() as f64 / 1000.0).into())
}

pub fn pipeline(ds: &Dataset, p: &Project, pl: &Pipeline, base: &str) -> Value {
    let user = ds.user(pl.user_id);
    let mr = p.merge_requests.iter().find(|m| m.state == MrState::Opened && m.source_branch == pl.ref_name);
    let commit = p.repository.commit(&pl.sha);
    let mut stages: Vec<&str> = Vec::new();
    for j in &pl.jobs {
        if !stages.contains(&j.stage.as_str()) {
            stages.push(&j.stage);
        }
    }
    let builds: Vec<Value> = pl
        .jobs
        .iter()
        .map(|j| json!({
            "id": j.id, "stage": j.stage, "name": j.name, "status": j.status, "created_at": time::hook(&j.created_at),
            "started_at": time::hook_opt(&j.started_at), "finished_at": time::hook_opt(&j.finished_at),
            "duration": seconds(j.started_at, j.finished_at), "queued_duration": 1.5, "when": "on_success",
            "manual": false, "allow_failure": false, "failure_reason": if j.status == "failed" { Value::from("script_failure") } else { Value::Null },
            "user": user.map(user_attrs), "runner": runner(),
            "artifacts_file": {"filename": null, "size": null}, "environment": null,
        }))
        .collect();
    json!({
        "object_kind": "pipeline",
        "object_attributes": {
            "id": pl.id, "iid": pl.iid, "ref": pl.ref_name, "tag": pl.tag, "sha": pl.sha, "before_sha": pl.before_sha,
            "source": pl.source, "status": pl.status, "detailed_status": pl.status, "stages": stages,
            "created_at": time::hook(&pl.created_at), "finished_at": time::hook_opt(&pl.finished_at),
            "duration": pl.started_at.zip(pl.finished_at).map(|(s, f)| (f - s).num_seconds()),
            "queued_duration": 2, "variables": [],
        },
        "merge_request": mr.map(|m| {
            let (status, detailed) = merge_status(m);
            json!({
                "id": m.id, "iid": m.iid, "title": m.title, "source_branch": m.source_branch, "source_project_id": p.id,
                "target_branch": m.target_branch, "target_project_id": p.id, "state": m.state.as_str(),
                "merge_status": status, "detailed_merge_status": detailed,
                "url": format!("{base}/{}/-/merge_requests/{}", p.path_with_namespace, m.iid),
            })
        }),
        "user": user.map(user_attrs), "project": project_attrs(ds, p, base, ProjectShape::Short),
        "commit": commit.map(|c| json!({
            "id": c.id, "message": c.message, "timestamp": time::commit(&c.committed_date),
            "url": commit_url(p, base, &c.id), "author": {"name": c.author_name, "email": c.author_email},
        })),
        "source_pipeline": null, "builds": builds,
    })
}

pub fn job(ds: &Dataset, p: &Project, pl: &Pipeline, j: &Job, base: &str) -> Value {
    let user = ds.user(pl.user_id);
    let commit = p.repository.commit(&pl.sha);
    let namespace = ds.group(p.namespace_id).map_or(String::new(), |g| g.full_name.clone());
    json!({
        "object_kind": "build", "ref": pl.ref_name, "tag": pl.tag, "before_sha": pl.before_sha, "sha": pl.sha,
        "build_id": j.id, "build_name": j.name, "build_stage": j.stage, "build_status": j.status,
        "build_created_at": time::hook(&j.created_at), "build_started_at": time::hook_opt(&j.started_at),
        "build_finished_at": time::hook_opt(&j.finished_at), "build_duration": seconds(j.started_at, j.finished_at),
        "build_queued_duration": 1.5, "build_allow_failure": false,
        "build_failure_reason": if j.status == "failed" { "script_failure" } else { "unknown_failure" },
        "retries_count": 0, "pipeline_id": pl.id, "project_id": p.id,
        "project_name": format!("{namespace} / {}", p.name), "runner": runner(), "user": user.map(user_attrs),
        // As GitLab does, `commit.id` is the pipeline's id, not the commit sha.
        "commit": {
            "id": pl.id, "name": null, "sha": pl.sha, "message": commit.map(|c| c.message.clone()),
            "author_name": commit.map(|c| c.author_name.clone()), "author_email": commit.map(|c| c.author_email.clone()),
            "author_url": user.map(|u| format!("{base}/{}", u.username)), "status": pl.status,
            "duration": pl.started_at.zip(pl.finished_at).map(|(s, f)| (f - s).num_seconds()),
            "started_at": time::hook_opt(&pl.started_at), "finished_at": time::hook_opt(&pl.finished_at),
        },
        "repository": repository_full(p, base), "environment": null,
    })
}

pub fn member(ds: &Dataset, g: &Group, u: &User, m: &Member, event_name: &str, at: Ts) -> Value {
    let plan = ds.root_of(g.id).map(|r| r.plan.as_str());
    json!({
        "created_at": time::zulu(&m.created_at), "updated_at": time::zulu(&at), "group_name": g.name,
        "group_path": g.path, "group_id": g.id, "user_username": u.username, "user_name": u.name,
        "user_email": u.email, "user_id": u.id, "group_access": access_name(m.access_level), "group_plan": plan,
        "expires_at": m.expires_at.map(|d| format!("{d}T00:00:00Z")), "event_name": event_name,
    })
}

pub fn subgroup(g: &Group, parent: &Group, event_name: &str) -> Value {
    json!({
        "created_at": time::zulu(&g.created_at), "updated_at": time::zulu(&g.created_at), "event_name": event_name,
        "name": g.name, "path": g.path, "full_path": g.full_path, "group_id": g.id, "parent_group_id": parent.id,
        "parent_name": parent.name, "parent_path": parent.path, "parent_full_path": parent.full_path,
    })
}

pub fn project_event(ds: &Dataset, p: &Project, event_name: &str, at: Ts) -> Value {
    let owners: Vec<Value> = ds.owners_of_group(p.namespace_id).iter().map(|u| json!({"name": u.name, "email": u.email})).collect();
    json!({
        "event_name": event_name, "created_at": time::zulu(&p.created_at), "updated_at": time::zulu(&at),
        "name": p.name, "path": p.path, "path_with_namespace": p.path_with_namespace, "project_id": p.id,
        "project_namespace_id": p.namespace_id, "owners": owners, "project_visibility": p.visibility.as_str(),
    })
}

pub fn release(ds: &Dataset, p: &Project, r: &Release, action: &str, base: &str) -> Value {
    let web_url = format!("{base}/{}", p.path_with_namespace);
    let commit = p.repository.tags.iter().find(|t| t.name == r.tag).and_then(|t| p.repository.commit(&t.commit));
    let archive = |format: &str| json!({"format": format, "url": format!("{web_url}/-/archive/{tag}/{name}-{tag}.{format}", tag = r.tag, name = p.path)});
    json!({
        "id": r.id, "created_at": time::hook(&r.created_at), "description": r.description, "name": r.name,
        "released_at": time::hook(&r.released_at), "tag": r.tag, "object_kind": "release",
        "project": project_attrs(ds, p, base, ProjectShape::WithCiConfig),
        "url": format!("{web_url}/-/releases/{}", r.tag), "action": action,
        "assets": {"count": 4, "links": [], "sources": (["zip", "tar.gz", "tar.bz2", "tar"].map(archive))},
        "commit": commit.map(|c| json!({
            "id": c.id, "message": c.message, "title": c.title, "timestamp": time::commit(&c.committed_date),
            "url": commit_url(p, base, &c.id), "author": {"name": c.author_name, "email": c.author_email},
        })),
    })
}

pub fn deployment(ds: &Dataset, p: &Project, d: &Deployment, base: &str) -> Value {
    let user = ds.user(d.user_id);
    let slug: String = d.environment.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    json!({
        "object_kind": "deployment", "status": d.status,
        "status_changed_at": d.updated_at.format("%Y-%m-%d %H:%M:%S %z").to_string(),
        "deployment_id": d.id, "deployable_id": d.deployable_id,
        "deployable_url": format!("{base}/{}/-/jobs/{}", p.path_with_namespace, d.deployable_id),
        "environment": d.environment,
        "environment_tier": if d.environment.starts_with("prod") { "production" } else { "staging" },
        "environment_slug": slug, "environment_external_url": null,
        "project": project_attrs(ds, p, base, ProjectShape::WithCiConfig),
        "short_sha": &d.sha[..8], "user": user.map(user_attrs),
        "user_url": user.map(|u| format!("{base}/{}", u.username)),
        "commit_url": commit_url(p, base, &d.sha),
        "commit_title": p.repository.commit(&d.sha).map(|c| c.title.clone()), "ref": d.ref_name,
    })
}
