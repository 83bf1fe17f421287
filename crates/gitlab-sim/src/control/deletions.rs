//! Deletions GitLab tells no webhook about, and a project moving to another namespace.
//!
//! - Deleting a merge request or an issue (doc/api/merge_requests.md "Delete a merge
//!   request", doc/api/issues.md "Delete an issue") runs `Issuable::DestroyService`, which
//!   executes no hooks: there is no `delete` action in the Merge Request or Issue Hook
//!   (doc/user/project/integrations/webhook_events.md lists `open`, `close`, `reopen`,
//!   `update`, `approved`, `unapproved`, `approval`, `unapproval`, `merge`), and the request for
//!   one is open (gitlab-org/gitlab#347354). Their notes go with them (`has_many :notes,
//!   dependent: :delete_all` in app/models/concerns/noteable.rb), and so do the notes' events.
//! - Deleting a note (doc/api/notes.md) runs `Notes::DestroyService`: no Comment Hook.
//! - Deleting a pipeline (doc/api/pipelines.md "Delete a pipeline") fires no Pipeline Hook.
//! - Transferring a project (doc/api/projects.md "Transfer a project to a new namespace")
//!   fires no project or group hook; the old group simply no longer lists it.

use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::json;

use super::changes::*;
use super::{Wait, respond};
use crate::error::SimError;
use crate::model::*;
use crate::state::{Simulator, write};

/// Removes the items of `list` that `gone` picks; `NotFound(what)` when there were none.
fn remove<T>(list: &mut Vec<T>, what: &'static str, gone: impl Fn(&T) -> bool) -> Result<(), SimError> {
    let before = list.len();
    list.retain(|x| !gone(x));
    if list.len() == before {
        return Err(SimError::NotFound(what));
    }
    Ok(())
}

/// Applies `delete` to project `id` and answers `{"deleted": key}`, with no hook.
async fn delete_in_project(sim: Simulator, id: u64, key: u64, w: Wait, delete: impl FnOnce(&mut Project) -> Result<(), SimError>) -> Res {
    delete(project_mut(&mut write(&sim.shared.data), id)?)?;
    respond(&sim, w, Vec::new(), json!({"deleted": key})).await
}

/// `DELETE /-/sim/projects/{id}/merge_requests/{iid}`: the merge request and its notes.
pub async fn delete_merge_request(State(sim): State<Simulator>, Path((id, iid)): Path<(u64, u64)>, Query(w): Query<Wait>) -> Res {
    delete_in_project(sim, id, iid, w, |p| {
        remove(&mut p.merge_requests, "Merge Request", |m| m.iid == iid)?;
        p.notes.retain(|n| n.noteable != Noteable::MergeRequest { iid });
        Ok(())
    })
    .await
}

/// `DELETE /-/sim/projects/{id}/issues/{iid}`: the issue and its notes.
pub async fn delete_issue(State(sim): State<Simulator>, Path((id, iid)): Path<(u64, u64)>, Query(w): Query<Wait>) -> Res {
    delete_in_project(sim, id, iid, w, |p| {
        remove(&mut p.issues, "Issue", |i| i.iid == iid)?;
        p.notes.retain(|n| n.noteable != Noteable::Issue { iid });
        Ok(())
    })
    .await
}

/// `DELETE /-/sim/projects/{id}/notes/{note_id}`.
pub async fn delete_note(State(sim): State<Simulator>, Path((id, note_id)): Path<(u64, u64)>, Query(w): Query<Wait>) -> Res {
    delete_in_project(sim, id, note_id, w, |p| remove(&mut p.notes, "Note", |n| n.id == note_id)).await
}

/// `DELETE /-/sim/projects/{id}/pipelines/{pipeline_id}`: the pipeline and its jobs.
pub async fn delete_pipeline(State(sim): State<Simulator>, Path((id, pipeline_id)): Path<(u64, u64)>, Query(w): Query<Wait>) -> Res {
    delete_in_project(sim, id, pipeline_id, w, |p| remove(&mut p.pipelines, "Pipeline", |pl| pl.id == pipeline_id)).await
}

#[derive(Debug, Deserialize)]
pub struct TransferBody {
    namespace_id: u64,
}

/// `POST /-/sim/projects/{id}/transfer` with `{"namespace_id": 2}`: the project moves to
/// another group, its paths with it.
pub async fn transfer_project(
    State(sim): State<Simulator>,
    Path(id): Path<u64>,
    Query(w): Query<Wait>,
    axum::Json(b): axum::Json<TransferBody>,
) -> Res {
    let moved = {
        let mut ds = write(&sim.shared.data);
        let group = ds.group(b.namespace_id).cloned().ok_or(SimError::NotFound("Namespace"))?;
        let p = project_mut(&mut ds, id)?;
        p.namespace_id = group.id;
        p.path_with_namespace = format!("{}/{}", group.full_path, p.path);
        p.name_with_namespace = format!("{} / {}", group.full_name, p.name);
        p.path_with_namespace.clone()
    };
    respond(&sim, w, Vec::new(), json!({"path_with_namespace": moved})).await
}
