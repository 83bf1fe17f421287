//! Records rendered as GitLab's REST API returns them.

use chrono::SecondsFormat;
use serde_json::{Value, json};

use crate::dataset::Dataset;
use crate::model::*;
use crate::time::{api, api_opt};

/// Commit dates in the commits API keep an explicit offset: `2021-09-20T11:50:22.001+00:00`.
fn commit_date(ts: &crate::time::Ts) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, false)
}

pub fn avatar(email: &str) -> String {
    let hash: u64 = email.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("https://www.gravatar.com/avatar/{hash:016x}{hash:016x}?s=80&d=identicon")
}

pub fn user_basic(u: &User, base: &str) -> Value {
    json!({
        "id": u.id, "username": u.username, "name": u.name, "state": "active", "locked": false,
        "avatar_url": avatar(&u.email), "web_url": format!("{base}/{}", u.username),
    })
}

pub fn user_ref(ds: &Dataset, id: Option<u64>, base: &str) -> Value {
    id.and_then(|id| ds.user(id)).map_or(Value::Null, |u| user_basic(u, base))
}

pub fn current_user(u: &User, base: &str) -> Value {
    let mut v = user_basic(u, base);
    let extra = json!({
        "created_at": api(&u.created_at), "bio": "", "location": "", "public_email": null, "skype": "",
        "linkedin": "", "twitter": "", "discord": "", "website_url": "", "organization": "", "job_title": "",
        "pronouns": null, "bot": false, "work_information": null, "followers": 0, "following": 0,
        "local_time": null, "last_sign_in_at": api(&u.created_at), "confirmed_at": api(&u.created_at),
        "last_activity_on": null, "email": u.email, "theme_id": 1, "color_scheme_id": 1, "projects_limit": 100000,
        "current_sign_in_at": null, "identities": [], "can_create_group": true, "can_create_project": true,
        "two_factor_enabled": false, "external": false, "private_profile": false, "commit_email": u.email,
    });
    merge(&mut v, extra);
    v
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

pub fn token(t: &Token, active: bool) -> Value {
    json!({
        "id": t.id, "name": t.name, "revoked": t.revoked, "created_at": api(&t.created_at),
        "description": t.description, "scopes": t.scopes, "user_id": t.user_id, "last_used_at": null,
        "active": active, "expires_at": t.expires_at.map(|d| d.to_string()),
    })
}

pub fn group(ds: &Dataset, g: &Group, base: &str) -> Value {
    json!({
        "id": g.id, "web_url": format!("{base}/groups/{}", g.full_path), "name": g.name, "path": g.path,
        "description": g.description, "visibility": g.visibility.as_str(), "share_with_group_lock": false,
        "require_two_factor_authentication": false, "two_factor_grace_period": 48,
        "project_creation_level": "developer", "auto_devops_enabled": null, "subgroup_creation_level": "maintainer",
        "emails_disabled": false, "emails_enabled": true, "mentions_disabled": null, "lfs_enabled": true,
        "default_branch": null, "default_branch_protection": 2, "avatar_url": null, "request_access_enabled": true,
        "full_name": g.full_name, "full_path": g.full_path, "created_at": api(&g.created_at),
        "parent_id": g.parent_id, "organization_id": 1, "shared_runners_setting": "enabled",
        "ldap_cn": null, "ldap_access": null, "wiki_access_level": "enabled", "archived": false,
        "marked_for_deletion_on": null,
        "root_namespace_id": ds.root_of(g.id).map(|r| r.id),
    })
}

fn namespace_brief(g: &Group, base: &str) -> Value {
    json!({
        "id": g.id, "name": g.name, "path": g.path, "kind": "group", "full_path": g.full_path,
        "parent_id": g.parent_id, "avatar_url": null, "web_url": format!("{base}/groups/{}", g.full_path),
    })
}

/// `GET /namespaces/:id`; `plan` and member counts only for owners, as GitLab documents.
pub fn namespace(ds: &Dataset, g: &Group, base: &str, owner: bool) -> Value {
    let mut v = namespace_brief(g, base);
    if owner {
        let below = ds.descendants(g.id);
        let members = ds
            .members
            .iter()
            .filter(|m| matches!(m.source, MemberSource::Group(id) if below.contains(&id)))
            .map(|m| m.user_id)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let plan = ds.root_of(g.id).map_or(g.plan, |r| r.plan);
        merge(
            &mut v,
            json!({
                "members_count_with_descendants": members, "billable_members_count": members,
                "plan": if ds.instance.self_managed { "default" } else { plan.as_str() }, "trial_ends_on": null, "trial": false,
                "root_repository_size": 0, "projects_count": ds.projects.iter().filter(|p| p.namespace_id == g.id).count(),
            }),
        );
    }
    v
}

pub fn project(ds: &Dataset, p: &Project, base: &str, user_id: u64, simple: bool) -> Value {
    let web_url = format!("{base}/{}", p.path_with_namespace);
    let host = base.split("://").nth(1).unwrap_or(base);
    let ns = ds.group(p.namespace_id).map_or(Value::Null, |g| namespace_brief(g, base));
    let mut v = json!({
        "id": p.id, "description": p.description, "name": p.name, "name_with_namespace": p.name_with_namespace,
        "path": p.path, "path_with_namespace": p.path_with_namespace, "created_at": api(&p.created_at),
        "default_branch": p.default_branch, "tag_list": [], "topics": [],
        "ssh_url_to_repo": format!("git@{host}:{}.git", p.path_with_namespace),
        "http_url_to_repo": format!("{web_url}.git"), "web_url": web_url,
        "readme_url": format!("{web_url}/-/blob/{}/README.md", p.default_branch),
        "forks_count": 0, "avatar_url": null, "star_count": 0,
        "last_activity_at": api(&p.last_activity_at), "visibility": p.visibility.as_str(), "namespace": ns,
    });
    if simple {
        return v;
    }
    let level = |enabled: bool| if enabled { "enabled" } else { "disabled" };
    let direct = ds
        .members
        .iter()
        .find(|m| m.user_id == user_id && m.source == MemberSource::Project(p.id))
        .map(|m| json!({"access_level": m.access_level, "notification_level": 3}));
    let inherited = ds.group_access(user_id, p.namespace_id).map(|l| json!({"access_level": l, "notification_level": 3}));
    let mut extra = json!({
        "updated_at": api(&p.last_activity_at), "archived": p.archived, "empty_repo": p.repository.commits.is_empty(),
        "container_registry_image_prefix": format!("registry.{host}/{}", p.path_with_namespace),
        "_links": {
            "self": format!("{base}/api/v4/projects/{}", p.id),
            "issues": format!("{base}/api/v4/projects/{}/issues", p.id),
            "merge_requests": format!("{base}/api/v4/projects/{}/merge_requests", p.id),
            "repo_branches": format!("{base}/api/v4/projects/{}/repository/branches", p.id),
            "labels": format!("{base}/api/v4/projects/{}/labels", p.id),
            "events": format!("{base}/api/v4/projects/{}/events", p.id),
            "members": format!("{base}/api/v4/projects/{}/members", p.id),
            "cluster_agents": format!("{base}/api/v4/projects/{}/cluster_agents", p.id),
        },
        "packages_enabled": true, "resolve_outdated_diff_discussions": false,
        "issues_enabled": p.issues_enabled, "merge_requests_enabled": true, "wiki_enabled": true,
        "jobs_enabled": p.jobs_enabled, "snippets_enabled": true, "container_registry_enabled": true,
        "service_desk_enabled": false, "can_create_merge_request_in": true,
        "issues_access_level": level(p.issues_enabled), "repository_access_level": "enabled",
        "merge_requests_access_level": "enabled", "forking_access_level": "enabled", "wiki_access_level": "enabled",
        "builds_access_level": level(p.jobs_enabled), "snippets_access_level": "enabled", "pages_access_level": "private",
        "analytics_access_level": "enabled", "container_registry_access_level": "enabled",
        "security_and_compliance_access_level": "private", "releases_access_level": "enabled",
        "environments_access_level": "enabled", "feature_flags_access_level": "enabled",
        "infrastructure_access_level": "enabled", "monitor_access_level": "enabled",
        "model_experiments_access_level": "enabled", "model_registry_access_level": "enabled",
        "emails_disabled": false, "emails_enabled": true, "shared_runners_enabled": true, "lfs_enabled": true,
        "creator_id": p.creator_id, "import_status": "none", "import_url": null, "import_type": null, "import_error": null,
        "ci_default_git_depth": 20, "ci_forward_deployment_enabled": true, "ci_config_path": null,
        "public_jobs": true, "shared_with_groups": [], "only_allow_merge_if_pipeline_succeeds": false,
        "allow_merge_on_skipped_pipeline": null, "request_access_enabled": true,
        "only_allow_merge_if_all_discussions_are_resolved": false, "remove_source_branch_after_merge": true,
        "printing_merge_request_link_enabled": true, "merge_method": "merge", "squash_option": "default_off",
        "enforce_auth_checks_on_uploads": true, "suggestion_commit_message": null,
        "merge_commit_template": null, "squash_commit_template": null, "issue_branch_template": null,
        "autoclose_referenced_issues": true, "approvals_before_merge": 0, "mirror": false,
        "permissions": {"project_access": direct, "group_access": inherited},
    });
    if p.issues_enabled
        && let Value::Object(m) = &mut extra
    {
        let open = p.issues.iter().filter(|i| i.state == IssueState::Opened).count();
        m.insert("open_issues_count".into(), open.into());
    }
    merge(&mut v, extra);
    v
}

pub fn commit(p: &Project, c: &Commit, base: &str) -> Value {
    json!({
        "id": c.id, "short_id": &c.id[..11], "created_at": commit_date(&c.committed_date),
        "parent_ids": c.parent_ids, "title": c.title, "message": c.message,
        "author_name": c.author_name, "author_email": c.author_email, "authored_date": commit_date(&c.authored_date),
        "committer_name": c.committer_name, "committer_email": c.committer_email,
        "committed_date": commit_date(&c.committed_date), "trailers": {}, "extended_trailers": {},
        "web_url": format!("{base}/{}/-/commit/{}", p.path_with_namespace, c.id),
    })
}

pub fn commit_detail(p: &Project, c: &Commit, base: &str) -> Value {
    let mut v = commit(p, c, base);
    let last = p.pipelines.iter().rev().find(|pl| pl.sha == c.id);
    let additions = 3 * (c.modified.len() + c.added.len()) as u64 + c.message.len() as u64 % 40;
    let deletions = c.message.len() as u64 % 17;
    merge(
        &mut v,
        json!({
            "stats": {"additions": additions, "deletions": deletions, "total": additions + deletions},
            "status": last.map(|pl| pl.status.clone()),
            "project_id": p.id,
            "last_pipeline": last.map(|pl| pipeline(p, pl, base)),
        }),
    );
    v
}

pub fn branch(p: &Project, b: &Branch, base: &str) -> Value {
    let commit_json = p.repository.commit(&b.commit).map_or(Value::Null, |c| commit(p, c, base));
    json!({
        "name": b.name, "merged": false, "protected": b.protected, "default": b.name == p.default_branch,
        "developers_can_push": false, "developers_can_merge": false, "can_push": true,
        "web_url": format!("{base}/{}/-/tree/{}", p.path_with_namespace, b.name), "commit": commit_json,
    })
}

pub fn merge_request(ds: &Dataset, p: &Project, m: &MergeRequest, base: &str, simple: bool) -> Value {
    let web_url = format!("{base}/{}/-/merge_requests/{}", p.path_with_namespace, m.iid);
    let mut v = json!({
        "id": m.id, "iid": m.iid, "project_id": p.id, "title": m.title, "description": m.description,
        "state": m.state.as_str(), "created_at": api(&m.created_at), "updated_at": api(&m.updated_at),
        "web_url": web_url,
    });
    if simple {
        return v;
    }
    let notes = p.notes.iter().filter(|n| !n.system && n.noteable == Noteable::MergeRequest { iid: m.iid }).count();
    let users = |ids: &[u64]| ids.iter().filter_map(|id| ds.user(*id)).map(|u| user_basic(u, base)).collect::<Vec<_>>();
    merge(
        &mut v,
        json!({
            "merged_by": user_ref(ds, m.merged_by_id, base), "merge_user": user_ref(ds, m.merged_by_id, base),
            "merged_at": api_opt(&m.merged_at), "closed_by": user_ref(ds, m.closed_by_id, base),
            "closed_at": api_opt(&m.closed_at), "target_branch": m.target_branch, "source_branch": m.source_branch,
            "user_notes_count": notes, "upvotes": 0, "downvotes": 0,
            "author": user_ref(ds, Some(m.author_id), base), "assignees": users(&m.assignee_ids),
            "assignee": user_ref(ds, m.assignee_ids.first().copied(), base), "reviewers": users(&m.reviewer_ids),
            "source_project_id": p.id, "target_project_id": p.id, "labels": m.labels, "draft": m.draft,
            "work_in_progress": m.draft, "milestone": null, "merge_when_pipeline_succeeds": false,
            "merge_status": if m.state == MrState::Opened { "can_be_merged" } else { "unchecked" },
            "detailed_merge_status": if m.state == MrState::Opened { "mergeable" } else { "not_open" },
            "merge_after": null, "sha": m.sha, "merge_commit_sha": m.merge_commit_sha, "squash_commit_sha": null,
            "discussion_locked": null, "should_remove_source_branch": null, "force_remove_source_branch": true,
            "prepared_at": api(&m.created_at), "reference": format!("!{}", m.iid),
            "references": {"short": format!("!{}", m.iid), "relative": format!("!{}", m.iid), "full": format!("{}!{}", p.path_with_namespace, m.iid)},
            "time_stats": {"time_estimate": 0, "total_time_spent": 0, "human_time_estimate": null, "human_total_time_spent": null},
            "squash": false, "squash_on_merge": false, "task_completion_status": {"count": 0, "completed_count": 0},
            "has_conflicts": false, "blocking_discussions_resolved": true, "approvals_before_merge": null,
        }),
    );
    v
}

pub fn issue(ds: &Dataset, p: &Project, i: &Issue, base: &str) -> Value {
    let notes = p.notes.iter().filter(|n| !n.system && n.noteable == Noteable::Issue { iid: i.iid }).count();
    let assignees: Vec<Value> = i.assignee_ids.iter().filter_map(|id| ds.user(*id)).map(|u| user_basic(u, base)).collect();
    json!({
        "id": i.id, "iid": i.iid, "project_id": p.id, "title": i.title, "description": i.description,
        "state": i.state.as_str(), "created_at": api(&i.created_at), "updated_at": api(&i.updated_at),
        "closed_at": api_opt(&i.closed_at), "closed_by": user_ref(ds, i.closed_by_id, base), "labels": i.labels,
        "milestone": null, "assignees": assignees, "author": user_ref(ds, Some(i.author_id), base),
        "type": "ISSUE", "assignee": user_ref(ds, i.assignee_ids.first().copied(), base),
        "user_notes_count": notes, "merge_requests_count": 0, "upvotes": 0, "downvotes": 0, "due_date": null,
        "confidential": i.confidential, "discussion_locked": null, "issue_type": "issue",
        "web_url": format!("{base}/{}/-/issues/{}", p.path_with_namespace, i.iid),
        "time_stats": {"time_estimate": 0, "total_time_spent": 0, "human_time_estimate": null, "human_total_time_spent": null},
        "task_completion_status": {"count": 0, "completed_count": 0}, "weight": null, "blocking_issues_count": 0,
        "has_tasks": false, "references": {"short": format!("#{}", i.iid), "relative": format!("#{}", i.iid), "full": format!("{}#{}", p.path_with_namespace, i.iid)},
        "severity": "UNKNOWN", "moved_to_id": null, "service_desk_reply_to": null,
    })
}

pub fn note(ds: &Dataset, p: &Project, n: &Note, base: &str) -> Value {
    let (noteable_id, noteable_iid, commit_id) = match &n.noteable {
        Noteable::MergeRequest { iid } => (p.merge_request(*iid).map(|m| m.id), Some(*iid), None),
        Noteable::Issue { iid } => (p.issue(*iid).map(|i| i.id), Some(*iid), None),
        Noteable::Commit { sha } => (None, None, Some(sha.clone())),
    };
    json!({
        "id": n.id, "type": null, "body": n.body, "attachment": null, "author": user_ref(ds, Some(n.author_id), base),
        "created_at": api(&n.created_at), "updated_at": api(&n.updated_at), "system": n.system,
        "noteable_id": noteable_id, "noteable_type": n.noteable.type_name(), "noteable_iid": noteable_iid,
        "commit_id": commit_id, "project_id": p.id, "resolvable": false, "confidential": false, "internal": false,
        "imported": false, "imported_from": "none",
    })
}

/// `GET /projects/:id/repository/commits/:sha/comments` has its own small shape.
pub fn commit_comment(ds: &Dataset, n: &Note, base: &str) -> Value {
    json!({
        "note": n.body, "path": null, "line": null, "line_type": null,
        "author": user_ref(ds, Some(n.author_id), base), "created_at": api(&n.created_at),
    })
}

pub fn pipeline(p: &Project, pl: &Pipeline, base: &str) -> Value {
    json!({
        "id": pl.id, "iid": pl.iid, "project_id": p.id, "sha": pl.sha, "ref": pl.ref_name, "status": pl.status,
        "source": pl.source, "created_at": api(&pl.created_at), "updated_at": api(&pl.updated_at),
        "web_url": format!("{base}/{}/-/pipelines/{}", p.path_with_namespace, pl.id),
    })
}

pub fn hook(h: &Hook, now: crate::time::Ts) -> Value {
    let e = &h.events;
    let mut v = json!({
        "id": h.id, "url": h.url, "name": h.name, "description": h.description, "created_at": api(&h.created_at),
        "push_events": e.push_events, "tag_push_events": e.tag_push_events,
        "merge_requests_events": e.merge_requests_events, "repository_update_events": false,
        "enable_ssl_verification": h.enable_ssl_verification, "alert_status": h.alert_status(now),
        "disabled_until": api_opt(&h.disabled_until.filter(|t| *t > now && !h.permanently_disabled)),
        "url_variables": [], "push_events_branch_filter": h.push_events_branch_filter,
        "branch_filter_strategy": h.branch_filter_strategy, "issues_events": e.issues_events,
        "confidential_issues_events": e.confidential_issues_events, "note_events": e.note_events,
        "confidential_note_events": e.confidential_note_events, "pipeline_events": e.pipeline_events,
        "wiki_page_events": e.wiki_page_events, "job_events": e.job_events, "deployment_events": e.deployment_events,
        "feature_flag_events": e.feature_flag_events, "releases_events": e.releases_events,
        "emoji_events": e.emoji_events, "resource_access_token_events": e.resource_access_token_events,
        "custom_webhook_template": "", "custom_headers": h.custom_headers.iter().map(|(k, _)| json!({"key": k})).collect::<Vec<_>>(),
        "token_present": h.token.is_some(), "signing_token_present": h.signing_token.is_some(),
    });
    let owner = match h.owner {
        HookOwner::Project(id) => json!({"project_id": id}),
        HookOwner::Group(id) => json!({
            "group_id": id, "subgroup_events": e.subgroup_events, "member_events": e.member_events,
            "project_events": e.project_events, "vulnerability_events": false,
        }),
    };
    merge(&mut v, owner);
    v
}
