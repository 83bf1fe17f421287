//! Control routes for issues.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::json;

use super::changes::*;
use super::{Wait, control_error, respond};
use crate::dataset::{Dataset, Ids};
use crate::error::SimError;
use crate::model::*;
use crate::state::{Simulator, write};
use crate::time::{self, Ts};
use crate::webhook::payloads::{self, Changes};
use crate::webhook::{Event, Trigger};

#[derive(Debug, Default, Deserialize)]
pub struct IssueBody {
    pub(super) title: Option<String>,
    description: Option<String>,
    confidential: Option<bool>,
    labels: Option<Vec<String>>,
    assignee_ids: Option<Vec<u64>>,
    user_id: Option<u64>,
}

fn issue_event(ds: &Dataset, id: u64, iid: u64, user: &User, action: &str, changes: &Changes, base: &str) -> Event {
    let p = ds.project(id).expect("exists");
    let issue = p.issue(iid).expect("exists");
    let trigger = if issue.confidential { Trigger::ConfidentialIssue } else { Trigger::Issue };
    project_event(trigger, id, payloads::issue(ds, p, issue, user, action, changes, base))
}

pub(super) fn issues_enabled(p: &Project) -> Result<(), SimError> {
    if p.issues_enabled { Ok(()) } else { Err(control_error("issues are disabled in this project")) }
}

pub async fn open_issue(State(sim): State<Simulator>, Path(id): Path<u64>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: IssueBody = body(&bytes)?;
    let base = sim.base_url();
    let now = time::now();
    let (event, iid) = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        let issue_id = Ids::next(&mut ds.ids.issue);
        super::ensure_labels(&mut ds, id, b.labels.as_ref(), now);
        let p = project_mut(&mut ds, id)?;
        issues_enabled(p)?;
        let iid = p.issues.iter().map(|i| i.iid).max().unwrap_or(0) + 1;
        p.issues.push(Issue {
            id: issue_id,
            iid,
            title: b.title.clone().unwrap_or_else(|| format!("Issue {iid}")),
            description: b.description.clone().unwrap_or_default(),
            state: IssueState::Opened,
            author_id: user.id,
            assignee_ids: b.assignee_ids.clone().unwrap_or_default(),
            labels: b.labels.clone().unwrap_or_default(),
            confidential: b.confidential.unwrap_or(false),
            created_at: now,
            updated_at: now,
            closed_at: None,
            closed_by_id: None,
            updated_by_id: None,
        });
        p.last_activity_at = now;
        (issue_event(&ds, id, iid, &user, "open", &Vec::new(), &base), iid)
    };
    respond(&sim, w, vec![event], json!({"iid": iid})).await
}

pub async fn update_issue(State(sim): State<Simulator>, Path((id, iid)): Path<(u64, u64)>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: IssueBody = body(&bytes)?;
    let base = sim.base_url();
    let now = time::now();
    let event = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        apply_update(&mut ds, id, iid, &user, &b, now, &base)?
    };
    respond(&sim, w, vec![event], json!({"iid": iid})).await
}

/// Applies the fields of `b` to an issue, moves its `updated_at` to `now`, and returns the
/// Issue Hook (`action: update`) it fires.
pub(super) fn apply_update(
    ds: &mut Dataset,
    id: u64,
    iid: u64,
    user: &User,
    b: &IssueBody,
    now: Ts,
    base: &str,
) -> Result<Event, SimError> {
    super::ensure_labels(ds, id, b.labels.as_ref(), now);
    let p = project_mut(ds, id)?;
    issues_enabled(p)?;
    let issue = p.issues.iter_mut().find(|i| i.iid == iid).ok_or(SimError::NotFound("Issue"))?;
    let mut changes: Changes = Vec::new();
    if let Some(t) = &b.title {
        changes.push(("title", issue.title.clone().into(), t.clone().into()));
        issue.title = t.clone();
    }
    if let Some(d) = &b.description {
        changes.push(("description", issue.description.clone().into(), d.clone().into()));
        issue.description = d.clone();
    }
    if let Some(c) = b.confidential {
        changes.push(("confidential", issue.confidential.into(), c.into()));
        issue.confidential = c;
    }
    if let Some(l) = &b.labels {
        changes.push(("labels", json!(issue.labels), json!(l)));
        issue.labels = l.clone();
    }
    if let Some(a) = &b.assignee_ids {
        changes.push(("assignees", json!(issue.assignee_ids), json!(a)));
        issue.assignee_ids = a.clone();
    }
    changes.push(("updated_by_id", json!(issue.updated_by_id), user.id.into()));
    changes.push(("updated_at", time::hook(&issue.updated_at).into(), time::hook(&now).into()));
    issue.updated_at = now;
    issue.updated_by_id = Some(user.id);
    Ok(issue_event(ds, id, iid, user, "update", &changes, base))
}

/// `close` or `reopen`.
pub async fn issue_action(
    State(sim): State<Simulator>,
    Path((id, iid, action)): Path<(u64, u64, String)>,
    Query(w): Query<Wait>,
    bytes: Bytes,
) -> Res {
    let b: IssueBody = body(&bytes)?;
    let base = sim.base_url();
    let now = time::now();
    let event = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        let p = project_mut(&mut ds, id)?;
        issues_enabled(p)?;
        let issue = p.issues.iter_mut().find(|i| i.iid == iid).ok_or(SimError::NotFound("Issue"))?;
        let before = issue.clone();
        let hook_action = match (action.as_str(), issue.state) {
            ("close", IssueState::Opened) => {
                issue.state = IssueState::Closed;
                issue.closed_at = Some(now);
                issue.closed_by_id = Some(user.id);
                "close"
            }
            ("reopen", IssueState::Closed) => {
                issue.state = IssueState::Opened;
                issue.closed_at = None;
                issue.closed_by_id = None;
                "reopen"
            }
            (other, state) => {
                return Err(control_error(format!("cannot {other} an issue that is {}", state.as_str())));
            }
        };
        issue.updated_at = now;
        let changes: Changes = vec![
            ("closed_at", time::hook_opt(&before.closed_at), time::hook_opt(&issue.closed_at)),
            ("state_id", before.state.id().into(), issue.state.id().into()),
            ("updated_at", time::hook(&before.updated_at).into(), time::hook(&now).into()),
        ];
        p.last_activity_at = now;
        issue_event(&ds, id, iid, &user, hook_action, &changes, &base)
    };
    respond(&sim, w, vec![event], json!({"iid": iid})).await
}
