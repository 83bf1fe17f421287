//! Applying a delivery to the tenant's data. Each GitLab event is turned into the same shape the
//! REST API returns, so it lands through the store's upserts on the rows the backfill wrote:
//! applying it twice changes nothing, and an older event never overwrites newer state.

use connector_store::connections::Connection;
use connector_store::jobs::ObjectRef;
use connector_store::sync::{self, NoteParent, VersionOrder, Versioned};
use connector_store::{TenantTx, connections};
use serde_json::{Value, json};

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Applied, and what the payload lacks must be fetched through the API; the reason says.
    AppliedNeedsFetch(Fetch),
    /// Not applied: the stored version is from the same second as the payload's (webhooks give
    /// whole seconds), so which is the later cannot be told; the object is read back instead.
    ReadBack(ObjectRef),
    /// About a project outside the connection's `projects_list` (a group hook sees them all).
    OutOfScope(String),
    /// Valid but not something we store, or not applicable; kept with the reason.
    KeptAside(String),
}

/// What to fetch for a delivery whose payload lacks what Coworker needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub reason: &'static str,
    /// The one object to read back (a merge request's merge time, its commits after a push);
    /// `None` for a catch-up (a push of more commits than the payload carries).
    pub object: Option<ObjectRef>,
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

/// A delivery's kind and body as JSON; the reason when it lacks either, which no retry changes.
/// PostgreSQL cannot store U+0000 in text, which git commit messages (and so push payloads) can
/// hold: each becomes U+FFFD in what is applied, while the delivery's own row keeps the body as
/// it came, byte for byte.
pub fn parse_event(body: &[u8], header: Option<&str>) -> Result<(String, Value), String> {
    let mut payload: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    connector_store::reconcile::replace_nul(&mut payload);
    let kind = event_kind(&payload, header).ok_or_else(|| "no object_kind, event_name or X-Gitlab-Event".to_owned())?;
    Ok((kind, payload))
}

fn project_of(payload: &Value) -> Option<i64> {
    payload
        .get("project_id")
        .and_then(Value::as_i64)
        .or_else(|| payload.pointer("/project/id").and_then(Value::as_i64))
        .or_else(|| payload.pointer("/object_attributes/project_id").and_then(Value::as_i64))
}

/// Copies the `keys` that `from` has into `row`; absent ones stay absent, so the store keeps
/// what it holds for them.
fn carry(row: &mut Value, from: &Value, keys: &[&str]) {
    for key in keys {
        if let Some(v) = from.get(*key) {
            row[*key] = v.clone();
        }
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// Which projects a connection syncs: every project of its groups, or only those its
/// `projects_list` resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Groups,
    Projects(&'a [i64]),
}

impl<'a> Scope<'a> {
    pub fn of(connection: &'a Connection) -> Self {
        if connection.projects_list.is_empty() {
            Scope::Groups
        } else {
            Scope::Projects(connection.resolved_project_ids.as_deref().unwrap_or_default())
        }
    }
}

/// Where an event goes: the write it becomes in the tenant's data, or why it becomes none.
/// Deciding this needs no database, so the decision can be fuzzed on its own.
#[derive(Debug, Clone)]
pub enum Route<'a> {
    Commits {
        project: i64,
        commits: Value,
        deleted_branch: Option<String>,
        needs_fetch: bool,
    },
    /// `fetch`: why the merge request must be read back from GitLab, when it must.
    MergeRequest {
        project: i64,
        row: Value,
        fetch: Option<&'static str>,
    },
    Issue {
        project: i64,
        row: Value,
    },
    /// `noteable_row`: the merge request or issue as the hook shows it, when it does.
    Note {
        project: i64,
        noteable: &'a str,
        parent: NoteParent<'a>,
        row: Value,
        noteable_row: Option<Value>,
    },
    Pipeline {
        project: i64,
        row: Value,
    },
    /// Kept as the latest payload per object: tags, jobs, releases, deployments, members, subgroups.
    Event {
        kind: &'static str,
        key: String,
        project: Option<i64>,
        action: Option<&'a str>,
    },
    ProjectCreated {
        project: i64,
        row: Value,
    },
    ProjectDestroyed {
        project: i64,
    },
    OutOfScope(String),
    KeptAside(String),
}

static NULL: Value = Value::Null;

/// With an explicit projects_list, a group hook still delivers every project of the group.
fn out_of_scope(scope: Scope<'_>, project: i64) -> Option<Route<'static>> {
    match scope {
        Scope::Projects(ids) if !ids.contains(&project) => {
            Some(Route::OutOfScope(format!("project {project} is not in this connection's projects_list")))
        }
        _ => None,
    }
}

/// Decides where `payload` of `kind` goes for a connection of `scope`.
pub fn route<'a>(scope: Scope<'_>, kind: &str, payload: &'a Value) -> Route<'a> {
    let project = project_of(payload);
    if let Some(out) = project.and_then(|p| out_of_scope(scope, p)) {
        return out;
    }
    let attrs = payload.get("object_attributes").unwrap_or(&NULL);
    // Objects are keyed by GitLab's ids: an event that lacks them cannot be applied.
    let required: &[&str] = match kind {
        "merge_request" | "issue" | "work_item" => &["id", "iid", "updated_at"],
        "note" => &["id", "created_at"],
        "pipeline" => &["id", "created_at", "status"],
        _ => &[],
    };
    if let Some(missing) = required.iter().find(|k| attrs.get(**k).is_none_or(Value::is_null)) {
        return Route::KeptAside(format!("{kind} event without object_attributes.{missing}"));
    }
    match kind {
        "push" => {
            let Some(p) = project else { return Route::KeptAside("push without a project id".into()) };
            let commits = payload.get("commits").cloned().unwrap_or(json!([]));
            let deleted_branch =
                (str_at(payload, "/after") == Some(ZERO_SHA)).then(|| format!("{p}:{}", str_at(payload, "/ref").unwrap_or_default()));
            let total = payload.get("total_commits_count").and_then(Value::as_u64).unwrap_or(0);
            let carried = commits.as_array().map_or(0, Vec::len) as u64;
            Route::Commits { project: p, commits, deleted_branch, needs_fetch: total > carried }
        }
        "tag_push" => {
            let action = if str_at(payload, "/after") == Some(ZERO_SHA) { "delete" } else { "create" };
            let reference = str_at(payload, "/ref").unwrap_or_default();
            Route::Event { kind: "tag", key: format!("{}:{reference}", project.unwrap_or_default()), project, action: Some(action) }
        }
        "merge_request" => {
            let Some(p) = project.or_else(|| attrs.get("target_project_id").and_then(Value::as_i64)) else {
                return Route::KeptAside("merge request event without a project id".into());
            };
            // The target project stands in for a missing project id, and is in scope or not as well.
            if let Some(out) = out_of_scope(scope, p) {
                return out;
            }
            let row = merge_request_row(attrs);
            // A merge or close without its time: the merge request is read back from GitLab.
            let fetch = match str_at(attrs, "/action") {
                Some("merge") if row.get("merged_at").is_none() => Some("the hook has no merged_at; reading the merge request back"),
                Some("close") if row.get("closed_at").is_none() => Some("the hook has no closed_at; reading the merge request back"),
                // GitLab clears the close time on reopening; the hook does not say so.
                Some("reopen") if row.get("closed_at").is_none() => Some("the hook has no closed_at; reading the merge request back"),
                // `oldrev` is there when the update pushed commits (webhook_events.md, "Merge
                // request events"); the hook does not list them.
                Some("update") if attrs.get("oldrev").is_some_and(|v| !v.is_null()) => {
                    Some("new commits were pushed; reading the merge request's commits back")
                }
                _ => None,
            };
            Route::MergeRequest { project: p, row, fetch }
        }
        "issue" | "work_item" => {
            let Some(p) = project else { return Route::KeptAside("issue event without a project id".into()) };
            let labels = payload.get("labels").or_else(|| attrs.get("labels"));
            Route::Issue { project: p, row: issue_row(attrs, labels, kind) }
        }
        "note" => {
            let Some(p) = project else { return Route::KeptAside("note event without a project id".into()) };
            let noteable = str_at(attrs, "/noteable_type").unwrap_or_default();
            let commit_sha = str_at(payload, "/commit/id").or_else(|| str_at(attrs, "/commit_id"));
            let parent = match noteable {
                "MergeRequest" => payload.pointer("/merge_request/iid").and_then(Value::as_i64).map(NoteParent::Iid),
                "Issue" => payload.pointer("/issue/iid").and_then(Value::as_i64).map(NoteParent::Iid),
                // Snippets have no iid; their id names them within the project.
                "Snippet" => payload.pointer("/snippet/id").and_then(Value::as_i64).map(NoteParent::Iid),
                "Commit" => commit_sha.map(NoteParent::Commit),
                _ => None,
            };
            let Some(parent) = parent else {
                return Route::KeptAside(format!("note on {noteable:?} without its parent"));
            };
            let author_username = (payload.pointer("/user/id") == attrs.get("author_id"))
                .then(|| payload.pointer("/user/username").cloned())
                .flatten()
                .unwrap_or(Value::Null);
            let row = json!({
                "id": attrs["id"], "body": attrs["note"], "system": attrs.get("system").cloned().unwrap_or(Value::Bool(false)),
                "author": {"id": attrs["author_id"], "username": author_username},
                "created_at": attrs["created_at"], "updated_at": attrs.get("updated_at").cloned().unwrap_or(attrs["created_at"].clone()),
            });
            // A note touches its noteable (its updated_at moves), and the hook carries the
            // noteable as it is then: a version of it like any other.
            let noteable_row = match noteable {
                "MergeRequest" => payload.get("merge_request").filter(|m| has_version(m)).map(merge_request_row),
                "Issue" => payload.get("issue").filter(|i| has_version(i)).map(|i| issue_row(i, i.get("labels"), "issue")),
                _ => None,
            };
            Route::Note { project: p, noteable, parent, row, noteable_row }
        }
        "pipeline" => {
            let Some(p) = project else { return Route::KeptAside("pipeline event without a project id".into()) };
            // Pipeline events carry no updated_at; the latest moment they describe orders them.
            let moment = attrs.get("finished_at").filter(|v| !v.is_null()).unwrap_or(&attrs["created_at"]).clone();
            let row = json!({
                "id": attrs["id"], "iid": attrs.get("iid").cloned().unwrap_or(Value::Null), "status": attrs["status"],
                "source": attrs.get("source").cloned().unwrap_or(Value::Null), "ref": attrs["ref"], "sha": attrs["sha"],
                "web_url": attrs.get("url").cloned().unwrap_or(Value::Null),
                "created_at": attrs["created_at"], "updated_at": moment, "finished_at": attrs.get("finished_at").cloned().unwrap_or(Value::Null),
                "duration": attrs.get("duration").cloned().unwrap_or(Value::Null),
            });
            Route::Pipeline { project: p, row }
        }
        "build" => {
            let job = payload.get("build_id").and_then(Value::as_i64).unwrap_or_default();
            Route::Event { kind: "job", key: job.to_string(), project, action: str_at(payload, "/build_status") }
        }
        "release" => {
            let key = str_at(payload, "/tag").map(str::to_owned).unwrap_or_else(|| payload["id"].to_string());
            Route::Event {
                kind: "release",
                key: format!("{}:{key}", project.unwrap_or_default()),
                project,
                action: str_at(payload, "/action"),
            }
        }
        "deployment" => {
            let key = payload.get("deployment_id").map(Value::to_string).unwrap_or_default();
            Route::Event { kind: "deployment", key, project, action: str_at(payload, "/status") }
        }
        "member" => {
            let key = format!("{}@{}", payload["user_id"], payload["group_id"]);
            Route::Event { kind: "member", key, project: None, action: str_at(payload, "/event_name") }
        }
        "subgroup" => {
            let key = payload.get("group_id").map(Value::to_string).unwrap_or_default();
            Route::Event { kind: "subgroup", key, project: None, action: str_at(payload, "/event_name") }
        }
        "project" => route_project_event(scope, payload),
        other => Route::KeptAside(format!("{other} events are not part of what Coworker reads")),
    }
}

/// A project created in or removed from a hooked group: it joins or leaves the sync.
fn route_project_event<'a>(scope: Scope<'_>, payload: &'a Value) -> Route<'a> {
    let Some(project) = project_of(payload) else { return Route::KeptAside("project event without a project id".into()) };
    match str_at(payload, "/event_name") {
        Some("project_create") => {
            if scope != Scope::Groups {
                return Route::OutOfScope(format!("project {project} was created, but this connection syncs only its projects_list"));
            }
            let row = json!({
                "id": project, "name": payload["name"], "path_with_namespace": payload["path_with_namespace"],
                "visibility": payload.get("project_visibility").cloned().unwrap_or(Value::Null),
                "created_at": payload.get("created_at").cloned().unwrap_or(Value::Null),
            });
            Route::ProjectCreated { project, row }
        }
        Some("project_destroy") => Route::ProjectDestroyed { project },
        other => Route::KeptAside(format!("project event {other:?} is not one GitLab documents")),
    }
}

/// Applies `payload` of `kind` for `connection`, in the caller's transaction.
pub async fn apply(tx: &mut TenantTx, connection: &Connection, kind: &str, payload: &Value) -> connector_store::Result<Outcome> {
    let id = connection.id;
    match route(Scope::of(connection), kind, payload) {
        Route::Commits { project, commits, deleted_branch, needs_fetch } => {
            sync::upsert_commits(tx, id, project, &commits).await?;
            if let Some(key) = deleted_branch {
                sync::upsert_event(tx, id, "branch", &key, Some(project), Some("delete"), payload).await?;
            }
            if needs_fetch {
                let reason = "more commits than the payload carries; fetching the rest";
                return Ok(Outcome::AppliedNeedsFetch(Fetch { reason, object: None }));
            }
        }
        Route::MergeRequest { project, row, fetch } => {
            let iid = key(&row, "iid");
            let object = ObjectRef::MergeRequest { project, iid };
            if order(tx, Versioned::MergeRequests, id, project, iid, &row).await? == VersionOrder::SameSecond {
                return Ok(Outcome::ReadBack(object));
            }
            sync::upsert_merge_requests(tx, id, project, &json!([row])).await?;
            if let Some(reason) = fetch {
                return Ok(Outcome::AppliedNeedsFetch(Fetch { reason, object: Some(object) }));
            }
        }
        Route::Issue { project, row } => {
            let iid = key(&row, "iid");
            if order(tx, Versioned::Issues, id, project, iid, &row).await? == VersionOrder::SameSecond {
                return Ok(Outcome::ReadBack(ObjectRef::Issue { project, iid }));
            }
            sync::upsert_issues(tx, id, project, &json!([row])).await?;
        }
        Route::Note { project, noteable, parent, row, noteable_row } => {
            // A note is read back with its parent's whole list; a comment on a commit has no
            // list of its own to read, and is applied as it comes.
            let parent_ref = match (noteable, parent) {
                ("MergeRequest", NoteParent::Iid(iid)) => Some(ObjectRef::MergeRequest { project, iid }),
                ("Issue", NoteParent::Iid(iid)) => Some(ObjectRef::Issue { project, iid }),
                _ => None,
            };
            if let Some(parent_ref) = parent_ref
                && order(tx, Versioned::Notes, id, project, key(&row, "id"), &row).await? == VersionOrder::SameSecond
            {
                return Ok(Outcome::ReadBack(parent_ref));
            }
            sync::upsert_notes(tx, id, project, noteable, parent, &json!([row])).await?;
            if let (Some(parent_ref), Some(parent_row)) = (parent_ref, noteable_row) {
                let (table, iid) = match parent_ref {
                    ObjectRef::MergeRequest { iid, .. } => (Versioned::MergeRequests, iid),
                    ObjectRef::Issue { iid, .. } => (Versioned::Issues, iid),
                    ObjectRef::Pipeline { .. } => return Ok(Outcome::Applied),
                };
                match order(tx, table, id, project, iid, &parent_row).await? {
                    VersionOrder::SameSecond => return Ok(Outcome::ReadBack(parent_ref)),
                    VersionOrder::Older => {}
                    VersionOrder::New | VersionOrder::Newer if table == Versioned::MergeRequests => {
                        sync::upsert_merge_requests(tx, id, project, &json!([parent_row])).await?;
                    }
                    VersionOrder::New | VersionOrder::Newer => {
                        sync::upsert_issues(tx, id, project, &json!([parent_row])).await?;
                    }
                }
            }
        }
        Route::Pipeline { project, row } => {
            let pipeline = key(&row, "id");
            // A pipeline hook has no updated_at, only the moments it describes (created, and
            // finished once it is): a status change while it runs shows no later moment, so only a
            // later moment orders it, and anything else is read back.
            if !matches!(order(tx, Versioned::Pipelines, id, project, pipeline, &row).await?, VersionOrder::New | VersionOrder::Newer) {
                return Ok(Outcome::ReadBack(ObjectRef::Pipeline { project, id: pipeline }));
            }
            sync::upsert_pipelines(tx, id, project, &json!([row])).await?;
        }
        Route::Event { kind, key, project, action } => sync::upsert_event(tx, id, kind, &key, project, action, payload).await?,
        Route::ProjectCreated { project, row } => {
            sync::upsert_projects(tx, id, &json!([row])).await?;
            let mut ids = connection.resolved_project_ids.clone().unwrap_or_default();
            if !ids.contains(&project) {
                ids.push(project);
                connections::add_projects(tx, id, &ids, &[]).await?;
            }
        }
        Route::ProjectDestroyed { project } => sync::delete_project(tx, id, project).await?,
        Route::OutOfScope(reason) => return Ok(Outcome::OutOfScope(reason)),
        Route::KeptAside(reason) => return Ok(Outcome::KeptAside(reason)),
    }
    Ok(Outcome::Applied)
}

/// A merge request as a hook shows it, in the shape REST gives, without what the hook lacks.
fn merge_request_row(attrs: &Value) -> Value {
    let mut row = json!({
        "id": attrs["id"], "iid": attrs["iid"], "title": attrs["title"], "description": attrs["description"],
        "state": attrs["state"], "author": {"id": attrs["author_id"]},
        "source_branch": attrs["source_branch"], "target_branch": attrs["target_branch"],
        "sha": attrs.pointer("/last_commit/id").cloned().unwrap_or(Value::Null),
        "merge_commit_sha": attrs.get("merge_commit_sha").cloned().unwrap_or(Value::Null),
        "web_url": attrs["url"], "created_at": attrs["created_at"], "updated_at": attrs["updated_at"],
    });
    // GitLab's hook carries neither time (doc/user/project/integrations/webhook_events.md,
    // "Merge request events"); a key left out keeps the stored value.
    carry(&mut row, attrs, &["merged_at", "closed_at"]);
    row
}

/// An issue as a hook shows it; `labels` are GitLab's label objects.
fn issue_row(attrs: &Value, labels: Option<&Value>, kind: &str) -> Value {
    let labels: Vec<Value> =
        labels.and_then(Value::as_array).map(|ls| ls.iter().filter_map(|l| l.get("title").cloned()).collect()).unwrap_or_default();
    let mut row = json!({
        "id": attrs["id"], "iid": attrs["iid"], "title": attrs["title"], "description": attrs["description"],
        "state": attrs["state"], "author": {"id": attrs["author_id"]}, "labels": labels,
        "confidential": attrs.get("confidential").cloned().unwrap_or(Value::Bool(false)),
        "web_url": attrs["url"], "created_at": attrs["created_at"], "updated_at": attrs["updated_at"],
        "issue_type": attrs.get("type").and_then(Value::as_str).unwrap_or(if kind == "work_item" { "task" } else { "issue" }),
    });
    carry(&mut row, attrs, &["closed_at"]);
    row
}

/// Whether an embedded object names itself and its version, as a row needs.
fn has_version(object: &Value) -> bool {
    ["id", "iid", "updated_at"].iter().all(|k| object.get(k).is_some_and(|v| !v.is_null()))
}

/// A row's id or iid; the route made sure it is there.
fn key(row: &Value, name: &str) -> i64 {
    row.get(name).and_then(Value::as_i64).unwrap_or_default()
}

/// How the row's version stands against the stored one, at the second precision hooks give.
async fn order(
    tx: &mut TenantTx,
    table: Versioned,
    connection: uuid::Uuid,
    project: i64,
    key: i64,
    row: &Value,
) -> connector_store::Result<VersionOrder> {
    let updated_at = row.get("updated_at").and_then(Value::as_str).unwrap_or_default();
    sync::version_order(tx, table, connection, project, key, updated_at).await
}
