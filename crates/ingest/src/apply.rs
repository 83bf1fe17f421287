//! Applying a delivery to the tenant's data. Each GitLab event is turned into the same shape the
//! REST API returns, so it lands through the store's upserts on the rows the backfill wrote:
//! applying it twice changes nothing, and an older event never overwrites newer state.

use connector_store::connections::Connection;
use connector_store::sync::{self, NoteParent};
use connector_store::{TenantTx, connections};
use serde_json::{Value, json};

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Applied, and some of what it announces must be fetched through the API (a push of more
    /// commits than the payload carries).
    AppliedNeedsFetch,
    /// About a project outside the connection's `projects_list` (a group hook sees them all).
    OutOfScope(String),
    /// Valid but not something we store, or not applicable; kept with the reason.
    KeptAside(String),
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// The event's kind: the payload's `object_kind`, else its `event_name` (group events have none),
/// else GitLab's `X-Gitlab-Event` header.
pub fn event_kind(payload: &Value, header: Option<&str>) -> Option<String> {
    if let Some(kind) = payload.get("object_kind").and_then(Value::as_str) {
        return Some(kind.to_owned());
    }
    if let Some(name) = payload.get("event_name").and_then(Value::as_str) {
        return Some(match name {
            "project_create" | "project_destroy" => "project".to_owned(),
            "subgroup_create" | "subgroup_destroy" => "subgroup".to_owned(),
            n if n.starts_with("user_") && n.contains("group") => "member".to_owned(),
            other => other.to_owned(),
        });
    }
    header.map(|h| h.trim_end_matches(" Hook").to_lowercase().replace(' ', "_"))
}

fn project_of(payload: &Value) -> Option<i64> {
    payload
        .get("project_id")
        .and_then(Value::as_i64)
        .or_else(|| payload.pointer("/project/id").and_then(Value::as_i64))
        .or_else(|| payload.pointer("/object_attributes/project_id").and_then(Value::as_i64))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// Applies `payload` of `kind` for `connection`, in the caller's transaction.
pub async fn apply(tx: &mut TenantTx, connection: &Connection, kind: &str, payload: &Value) -> connector_store::Result<Outcome> {
    let id = connection.id;
    let project = project_of(payload);
    // With an explicit projects_list, a group hook still delivers every project of the group.
    if !connection.projects_list.is_empty()
        && let Some(p) = project
        && !connection.resolved_project_ids.as_ref().is_some_and(|ids| ids.contains(&p))
    {
        return Ok(Outcome::OutOfScope(format!("project {p} is not in this connection's projects_list")));
    }
    let attrs = payload.get("object_attributes").cloned().unwrap_or(Value::Null);
    // Objects are keyed by GitLab's ids: an event that lacks them cannot be applied.
    let required: &[&str] = match kind {
        "merge_request" | "issue" | "work_item" => &["id", "iid", "updated_at"],
        "note" => &["id", "created_at"],
        "pipeline" => &["id", "created_at", "status"],
        _ => &[],
    };
    if let Some(missing) = required.iter().find(|k| attrs.get(**k).is_none_or(Value::is_null)) {
        return Ok(Outcome::KeptAside(format!("{kind} event without object_attributes.{missing}")));
    }
    match kind {
        "push" => {
            let Some(p) = project else { return Ok(Outcome::KeptAside("push without a project id".into())) };
            let commits = payload.get("commits").cloned().unwrap_or(json!([]));
            sync::upsert_commits(tx, id, p, &commits).await?;
            if str_at(payload, "/after") == Some(ZERO_SHA) {
                let reference = str_at(payload, "/ref").unwrap_or_default();
                sync::upsert_event(tx, id, "branch", &format!("{p}:{reference}"), Some(p), Some("delete"), payload).await?;
            }
            let total = payload.get("total_commits_count").and_then(Value::as_u64).unwrap_or(0);
            let carried = commits.as_array().map_or(0, Vec::len) as u64;
            Ok(if total > carried { Outcome::AppliedNeedsFetch } else { Outcome::Applied })
        }
        "tag_push" => {
            let action = if str_at(payload, "/after") == Some(ZERO_SHA) { "delete" } else { "create" };
            let reference = str_at(payload, "/ref").unwrap_or_default();
            sync::upsert_event(tx, id, "tag", &format!("{}:{reference}", project.unwrap_or_default()), project, Some(action), payload).await?;
            Ok(Outcome::Applied)
        }
        "merge_request" => {
            let Some(p) = project.or_else(|| attrs.get("target_project_id").and_then(Value::as_i64)) else {
                return Ok(Outcome::KeptAside("merge request event without a project id".into()));
            };
            let mr = json!({
                "id": attrs["id"], "iid": attrs["iid"], "title": attrs["title"], "description": attrs["description"],
                "state": attrs["state"], "author": {"id": attrs["author_id"]},
                "source_branch": attrs["source_branch"], "target_branch": attrs["target_branch"],
                "sha": attrs.pointer("/last_commit/id").cloned().unwrap_or(Value::Null),
                "merge_commit_sha": attrs.get("merge_commit_sha").cloned().unwrap_or(Value::Null),
                "web_url": attrs["url"], "created_at": attrs["created_at"], "updated_at": attrs["updated_at"],
                "merged_at": attrs.get("merged_at").cloned().unwrap_or(Value::Null),
                "closed_at": attrs.get("closed_at").cloned().unwrap_or(Value::Null),
            });
            sync::upsert_merge_requests(tx, id, p, &json!([mr])).await?;
            Ok(Outcome::Applied)
        }
        "issue" | "work_item" => {
            let Some(p) = project else { return Ok(Outcome::KeptAside("issue event without a project id".into())) };
            let labels: Vec<Value> = payload
                .get("labels")
                .or_else(|| attrs.get("labels"))
                .and_then(Value::as_array)
                .map(|ls| ls.iter().filter_map(|l| l.get("title").cloned()).collect())
                .unwrap_or_default();
            let issue = json!({
                "id": attrs["id"], "iid": attrs["iid"], "title": attrs["title"], "description": attrs["description"],
                "state": attrs["state"], "author": {"id": attrs["author_id"]}, "labels": labels,
                "confidential": attrs.get("confidential").cloned().unwrap_or(Value::Bool(false)),
                "web_url": attrs["url"], "created_at": attrs["created_at"], "updated_at": attrs["updated_at"],
                "closed_at": attrs.get("closed_at").cloned().unwrap_or(Value::Null),
                "issue_type": attrs.get("type").and_then(Value::as_str).unwrap_or(if kind == "work_item" { "task" } else { "issue" }),
            });
            sync::upsert_issues(tx, id, p, &json!([issue])).await?;
            Ok(Outcome::Applied)
        }
        "note" => {
            let Some(p) = project else { return Ok(Outcome::KeptAside("note event without a project id".into())) };
            let noteable = str_at(&attrs, "/noteable_type").unwrap_or_default().to_owned();
            let commit_sha = str_at(payload, "/commit/id").or_else(|| str_at(&attrs, "/commit_id")).map(str::to_owned);
            let parent = match noteable.as_str() {
                "MergeRequest" => payload.pointer("/merge_request/iid").and_then(Value::as_i64).map(NoteParent::Iid),
                "Issue" => payload.pointer("/issue/iid").and_then(Value::as_i64).map(NoteParent::Iid),
                // Snippets have no iid; their id names them within the project.
                "Snippet" => payload.pointer("/snippet/id").and_then(Value::as_i64).map(NoteParent::Iid),
                "Commit" => commit_sha.as_deref().map(NoteParent::Commit),
                _ => None,
            };
            let Some(parent) = parent else {
                return Ok(Outcome::KeptAside(format!("note on {noteable:?} without its parent")));
            };
            let author_username = (payload.pointer("/user/id") == attrs.get("author_id"))
                .then(|| payload.pointer("/user/username").cloned())
                .flatten()
                .unwrap_or(Value::Null);
            let note = json!({
                "id": attrs["id"], "body": attrs["note"], "system": attrs.get("system").cloned().unwrap_or(Value::Bool(false)),
                "author": {"id": attrs["author_id"], "username": author_username},
                "created_at": attrs["created_at"], "updated_at": attrs.get("updated_at").cloned().unwrap_or(attrs["created_at"].clone()),
            });
            sync::upsert_notes(tx, id, p, &noteable, parent, &json!([note])).await?;
            Ok(Outcome::Applied)
        }
        "pipeline" => {
            let Some(p) = project else { return Ok(Outcome::KeptAside("pipeline event without a project id".into())) };
            // Pipeline events carry no updated_at; the latest moment they describe orders them.
            let moment = attrs.get("finished_at").filter(|v| !v.is_null()).unwrap_or(&attrs["created_at"]).clone();
            let pipeline = json!({
                "id": attrs["id"], "iid": attrs.get("iid").cloned().unwrap_or(Value::Null), "status": attrs["status"],
                "source": attrs.get("source").cloned().unwrap_or(Value::Null), "ref": attrs["ref"], "sha": attrs["sha"],
                "web_url": attrs.get("url").cloned().unwrap_or(Value::Null),
                "created_at": attrs["created_at"], "updated_at": moment, "finished_at": attrs.get("finished_at").cloned().unwrap_or(Value::Null),
                "duration": attrs.get("duration").cloned().unwrap_or(Value::Null),
            });
            sync::upsert_pipelines(tx, id, p, &json!([pipeline])).await?;
            Ok(Outcome::Applied)
        }
        "build" => {
            let job = payload.get("build_id").and_then(Value::as_i64).unwrap_or_default();
            let status = str_at(payload, "/build_status");
            sync::upsert_event(tx, id, "job", &job.to_string(), project, status, payload).await?;
            Ok(Outcome::Applied)
        }
        "release" => {
            let key = str_at(payload, "/tag").map(str::to_owned).unwrap_or_else(|| payload["id"].to_string());
            sync::upsert_event(tx, id, "release", &format!("{}:{key}", project.unwrap_or_default()), project, str_at(payload, "/action"), payload).await?;
            Ok(Outcome::Applied)
        }
        "deployment" => {
            let key = payload.get("deployment_id").map(Value::to_string).unwrap_or_default();
            sync::upsert_event(tx, id, "deployment", &key, project, str_at(payload, "/status"), payload).await?;
            Ok(Outcome::Applied)
        }
        "member" => {
            let key = format!("{}@{}", payload["user_id"], payload["group_id"]);
            sync::upsert_event(tx, id, "member", &key, None, str_at(payload, "/event_name"), payload).await?;
            Ok(Outcome::Applied)
        }
        "subgroup" => {
            let key = payload.get("group_id").map(Value::to_string).unwrap_or_default();
            sync::upsert_event(tx, id, "subgroup", &key, None, str_at(payload, "/event_name"), payload).await?;
            Ok(Outcome::Applied)
        }
        "project" => apply_project_event(tx, connection, payload).await,
        other => Ok(Outcome::KeptAside(format!("{other} events are not part of what Coworker reads"))),
    }
}

/// A project created in or removed from a hooked group: it joins or leaves the sync.
async fn apply_project_event(tx: &mut TenantTx, connection: &Connection, payload: &Value) -> connector_store::Result<Outcome> {
    let Some(project) = project_of(payload) else { return Ok(Outcome::KeptAside("project event without a project id".into())) };
    match str_at(payload, "/event_name") {
        Some("project_create") => {
            if !connection.projects_list.is_empty() {
                return Ok(Outcome::OutOfScope(format!("project {project} was created, but this connection syncs only its projects_list")));
            }
            let row = json!([{
                "id": project, "name": payload["name"], "path_with_namespace": payload["path_with_namespace"],
                "visibility": payload.get("project_visibility").cloned().unwrap_or(Value::Null),
                "created_at": payload.get("created_at").cloned().unwrap_or(Value::Null),
            }]);
            sync::upsert_projects(tx, connection.id, &row).await?;
            let mut ids = connection.resolved_project_ids.clone().unwrap_or_default();
            if !ids.contains(&project) {
                ids.push(project);
                connections::add_projects(tx, connection.id, &ids, &[]).await?;
            }
            Ok(Outcome::Applied)
        }
        Some("project_destroy") => {
            sync::delete_project(tx, connection.id, project).await?;
            Ok(Outcome::Applied)
        }
        other => Ok(Outcome::KeptAside(format!("project event {other:?} is not one GitLab documents"))),
    }
}
