//! Control routes for comments on merge requests, issues and commits.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::json;

use super::changes::*;
use super::issues::issues_enabled;
use super::{Wait, control_error, respond};
use crate::dataset::{Dataset, Ids};
use crate::error::SimError;
use crate::model::*;
use crate::state::{Simulator, write};
use crate::time::{self};
use crate::webhook::payloads::{self};
use crate::webhook::{Event, Trigger};

#[derive(Debug, Default, Deserialize)]
pub struct NoteBody {
    /// `MergeRequest`, `Issue` or `Commit`.
    noteable_type: Option<String>,
    iid: Option<u64>,
    sha: Option<String>,
    body: Option<String>,
    system: Option<bool>,
    user_id: Option<u64>,
}

fn note_event(ds: &Dataset, id: u64, note_id: u64, user: &User, action: &str, base: &str) -> Event {
    let p = ds.project(id).expect("exists");
    let n = p.notes.iter().find(|n| n.id == note_id).expect("exists");
    let confidential = matches!(&n.noteable, Noteable::Issue { iid } if p.issue(*iid).is_some_and(|i| i.confidential));
    let trigger = if confidential { Trigger::ConfidentialNote } else { Trigger::Note };
    project_event(trigger, id, payloads::note(ds, p, n, user, action, base))
}

/// Adds a comment; like GitLab, this touches the commented issue or MR's `updated_at`.
pub async fn add_note(State(sim): State<Simulator>, Path(id): Path<u64>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: NoteBody = body(&bytes)?;
    let base = sim.base_url();
    let now = time::now();
    let (event, note_id) = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        let note_id = Ids::next(&mut ds.ids.note);
        let p = project_mut(&mut ds, id)?;
        let noteable = match (b.noteable_type.as_deref().unwrap_or(""), b.iid, &b.sha) {
            ("MergeRequest", Some(iid), _) => {
                let mr = p.merge_requests.iter_mut().find(|m| m.iid == iid).ok_or(SimError::NotFound("Merge Request"))?;
                mr.updated_at = now;
                Noteable::MergeRequest { iid }
            }
            ("Issue", Some(iid), _) => {
                issues_enabled(p)?;
                let issue = p.issues.iter_mut().find(|i| i.iid == iid).ok_or(SimError::NotFound("Issue"))?;
                issue.updated_at = now;
                Noteable::Issue { iid }
            }
            ("Commit", _, Some(sha)) => {
                let c = p.repository.find_commit(sha).ok_or(SimError::NotFound("Commit"))?;
                Noteable::Commit { sha: c.id.clone() }
            }
            _ => {
                return Err(control_error("give noteable_type MergeRequest/Issue with iid, or Commit with sha"));
            }
        };
        p.notes.push(Note {
            id: note_id,
            body: b.body.clone().unwrap_or_else(|| "Looks good to me.".into()),
            author_id: user.id,
            system: b.system.unwrap_or(false),
            noteable,
            created_at: now,
            updated_at: now,
        });
        p.last_activity_at = now;
        (note_event(&ds, id, note_id, &user, "create", &base), note_id)
    };
    respond(&sim, w, vec![event], json!({"id": note_id})).await
}

pub async fn edit_note(State(sim): State<Simulator>, Path((id, note_id)): Path<(u64, u64)>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: NoteBody = body(&bytes)?;
    let base = sim.base_url();
    let event = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        let p = project_mut(&mut ds, id)?;
        let n = p.notes.iter_mut().find(|n| n.id == note_id).ok_or(SimError::NotFound("Note"))?;
        n.body = b.body.clone().ok_or_else(|| control_error("body is required"))?;
        let now = time::now();
        n.updated_at = now;
        // A note touches its noteable when saved (app/models/note.rb `belongs_to :noteable,
        // touch: true`), so an edit moves the merge request's or issue's `updated_at` too, and an
        // `updated_after` list shows it.
        let noteable = n.noteable.clone();
        match noteable {
            Noteable::MergeRequest { iid } => {
                if let Some(m) = p.merge_requests.iter_mut().find(|m| m.iid == iid) {
                    m.updated_at = now;
                }
            }
            Noteable::Issue { iid } => {
                if let Some(i) = p.issues.iter_mut().find(|i| i.iid == iid) {
                    i.updated_at = now;
                }
            }
            Noteable::Commit { .. } => {}
        }
        note_event(&ds, id, note_id, &user, "update", &base)
    };
    respond(&sim, w, vec![event], json!({"id": note_id})).await
}
