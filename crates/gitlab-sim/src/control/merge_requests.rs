//! Control routes for merge requests. Every change moves `updated_at`, except a push to the
//! source branch, which GitLab does not count as an update of the MR.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::json;

use super::changes::*;
use super::{Wait, control_error, respond};
use crate::dataset::{Dataset, Ids};
use crate::error::SimError;
use crate::model::*;
use crate::state::{Simulator, lock, read, write};
use crate::time::{self, Ts};
use crate::webhook::payloads::{self, Changes, MrChange};
use crate::webhook::{Event, Trigger};

#[derive(Debug, Default, Deserialize)]
pub struct MrBody {
    source_branch: Option<String>,
    target_branch: Option<String>,
    pub(super) title: Option<String>,
    description: Option<String>,
    labels: Option<Vec<String>>,
    assignee_ids: Option<Vec<u64>>,
    /// Commits to create when the source branch does not exist yet (default 1).
    commits: Option<usize>,
    /// For `.../commits`: how many to push to the source branch.
    count: Option<usize>,
    user_id: Option<u64>,
}

fn mr_event(ds: &Dataset, id: u64, iid: u64, user: &User, action: &str, changes: &Changes, base: &str) -> Event {
    let p = ds.project(id).expect("exists");
    let mr = p.merge_request(iid).expect("exists");
    let change = MrChange { action, changes, oldrev: None };
    project_event(Trigger::MergeRequest, id, payloads::merge_request(ds, p, mr, user, &change, base))
}

pub async fn open_mr(State(sim): State<Simulator>, Path(id): Path<u64>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: MrBody = body(&bytes)?;
    let base = sim.base_url();
    let now = time::now();
    let (events, iid, mr_id) = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        let mr_id = Ids::next(&mut ds.ids.merge_request);
        let p = project_mut(&mut ds, id)?;
        let target = b.target_branch.clone().unwrap_or_else(|| p.default_branch.clone());
        let target_head = p.repository.branch(&target).map(|x| x.commit.clone()).ok_or_else(|| control_error("unknown target branch"))?;
        let iid = p.merge_requests.iter().map(|m| m.iid).max().unwrap_or(0) + 1;
        let source = b.source_branch.clone().unwrap_or_else(|| format!("sim/change-{iid}"));
        let mut events = Vec::new();
        if p.repository.branch(&source).is_none() {
            let commits = new_commits(&mut lock(&sim.shared.rng), &user, &target_head, b.commits.unwrap_or(1), now);
            let head = commits.last().map_or(target_head.clone(), |c| c.id.clone());
            let shas: Vec<String> = commits.iter().map(|c| c.id.clone()).collect();
            for c in commits {
                p.repository.push(c);
            }
            p.repository.branches.push(Branch { name: source.clone(), commit: head.clone(), protected: false });
            let p = ds.project(id).expect("exists");
            events.push(push_event(
                &ds,
                p,
                &user,
                RefMove { before: ZERO_SHA, after: &head, reference: format!("refs/heads/{source}"), shas: &shas },
                &base,
            ));
        }
        super::ensure_labels(&mut ds, id, b.labels.as_ref(), now);
        let p = project_mut(&mut ds, id)?;
        let head = p.repository.branch(&source).map(|x| x.commit.clone()).expect("exists");
        let commit_shas = new_since(&p.repository, Some(&target_head), &head);
        let title = b.title.clone().unwrap_or_else(|| format!("Change {iid}"));
        p.merge_requests.push(MergeRequest {
            id: mr_id,
            iid,
            draft: title.starts_with("Draft:"),
            title,
            description: b.description.clone().unwrap_or_default(),
            state: MrState::Opened,
            author_id: user.id,
            assignee_ids: b.assignee_ids.clone().unwrap_or_default(),
            reviewer_ids: vec![],
            source_branch: source,
            target_branch: target,
            sha: head,
            merge_commit_sha: None,
            commit_shas,
            labels: b.labels.clone().unwrap_or_default(),
            created_at: now,
            updated_at: now,
            merged_at: None,
            closed_at: None,
            merged_by_id: None,
            closed_by_id: None,
        });
        p.last_activity_at = now;
        events.push(mr_event(&ds, id, iid, &user, "open", &Vec::new(), &base));
        (events, iid, mr_id)
    };
    respond(&sim, w, events, json!({"iid": iid, "id": mr_id})).await
}

pub async fn update_mr(State(sim): State<Simulator>, Path((id, iid)): Path<(u64, u64)>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: MrBody = body(&bytes)?;
    let base = sim.base_url();
    let now = time::now();
    let event = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        apply_update(&mut ds, id, iid, &user, &b, now, &base)?
    };
    respond(&sim, w, vec![event], json!({"iid": iid})).await
}

/// Applies the title, description, labels and assignees of `b` to a merge request, moves its
/// `updated_at` to `now`, and returns the Merge Request Hook (`action: update`) it fires.
pub(super) fn apply_update(ds: &mut Dataset, id: u64, iid: u64, user: &User, b: &MrBody, now: Ts, base: &str) -> Result<Event, SimError> {
    super::ensure_labels(ds, id, b.labels.as_ref(), now);
    let p = project_mut(ds, id)?;
    let mr = p.merge_requests.iter_mut().find(|m| m.iid == iid).ok_or(SimError::NotFound("Merge Request"))?;
    let mut changes: Changes = Vec::new();
    if let Some(t) = &b.title {
        changes.push(("title", mr.title.clone().into(), t.clone().into()));
        mr.draft = t.starts_with("Draft:");
        mr.title = t.clone();
    }
    if let Some(d) = &b.description {
        changes.push(("description", mr.description.clone().into(), d.clone().into()));
        mr.description = d.clone();
    }
    if let Some(l) = &b.labels {
        changes.push(("labels", json!(mr.labels), json!(l)));
        mr.labels = l.clone();
    }
    if let Some(a) = &b.assignee_ids {
        changes.push(("assignees", json!(mr.assignee_ids), json!(a)));
        mr.assignee_ids = a.clone();
    }
    changes.push(("updated_at", time::hook(&mr.updated_at).into(), time::hook(&now).into()));
    mr.updated_at = now;
    Ok(mr_event(ds, id, iid, user, "update", &changes, base))
}

/// `close`, `reopen`, `merge`, or `commits` (push `count` commits to the source branch).
pub async fn mr_action(
    State(sim): State<Simulator>,
    Path((id, iid, action)): Path<(u64, u64, String)>,
    Query(w): Query<Wait>,
    bytes: Bytes,
) -> Res {
    let b: MrBody = body(&bytes)?;
    if action == "commits" {
        let branch = {
            let ds = read(&sim.shared.data);
            let p = ds.project(id).ok_or(SimError::NotFound("Project"))?;
            p.merge_request(iid).ok_or(SimError::NotFound("Merge Request"))?.source_branch.clone()
        };
        let push_body = json!({"branch": branch, "commits": b.count.unwrap_or(1), "user_id": b.user_id});
        return super::repository::push(State(sim), Path(id), Query(w), Bytes::from(push_body.to_string())).await;
    }
    let base = sim.base_url();
    let now = time::now();
    let (events, hook_action) = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        let p = project_mut(&mut ds, id)?;
        let idx = p.merge_requests.iter().position(|m| m.iid == iid).ok_or(SimError::NotFound("Merge Request"))?;
        let before = p.merge_requests[idx].clone();
        let mut events = Vec::new();
        let hook_action = match (action.as_str(), before.state) {
            ("close", MrState::Opened) => {
                let mr = &mut p.merge_requests[idx];
                mr.state = MrState::Closed;
                mr.closed_at = Some(now);
                mr.closed_by_id = Some(user.id);
                "close"
            }
            ("reopen", MrState::Closed) => {
                let mr = &mut p.merge_requests[idx];
                mr.state = MrState::Opened;
                mr.closed_at = None;
                mr.closed_by_id = None;
                "reopen"
            }
            ("merge", MrState::Opened) => {
                let target_head = p
                    .repository
                    .branch(&before.target_branch)
                    .map(|x| x.commit.clone())
                    .ok_or_else(|| control_error("target branch is gone"))?;
                let title = format!("Merge branch '{}' into '{}'", before.source_branch, before.target_branch);
                let message = format!("{title}\n\n{}\n\nSee merge request {}!{iid}", before.title, p.path_with_namespace);
                let sha = lock(&sim.shared.rng).sha();
                p.repository.push(Commit {
                    id: sha.clone(),
                    parent_ids: vec![target_head.clone(), before.sha.clone()],
                    title,
                    message,
                    author_name: user.name.clone(),
                    author_email: user.email.clone(),
                    committer_name: user.name.clone(),
                    committer_email: user.email.clone(),
                    authored_date: now,
                    committed_date: now,
                    added: vec![],
                    modified: vec![],
                });
                if let Some(t) = p.repository.branches.iter_mut().find(|x| x.name == before.target_branch) {
                    t.commit = sha.clone();
                }
                let shas = new_since(&p.repository, Some(&target_head), &sha);
                let mr = &mut p.merge_requests[idx];
                mr.state = MrState::Merged;
                mr.merged_at = Some(now);
                mr.merged_by_id = Some(user.id);
                mr.merge_commit_sha = Some(sha.clone());
                let p = ds.project(id).expect("exists");
                events.push(push_event(
                    &ds,
                    p,
                    &user,
                    RefMove { before: &target_head, after: &sha, reference: format!("refs/heads/{}", before.target_branch), shas: &shas },
                    &base,
                ));
                "merge"
            }
            (other, state) => {
                return Err(control_error(format!("cannot {other} a merge request that is {}", state.as_str())));
            }
        };
        let p = project_mut(&mut ds, id)?;
        p.last_activity_at = now;
        let mr = &mut p.merge_requests[idx];
        mr.updated_at = now;
        let changes: Changes = vec![
            ("state_id", before.state.id().into(), mr.state.id().into()),
            ("updated_at", time::hook(&before.updated_at).into(), time::hook(&now).into()),
        ];
        events.push(mr_event(&ds, id, iid, &user, hook_action, &changes, &base));
        (events, hook_action)
    };
    respond(&sim, w, events, json!({"iid": iid, "action": hook_action})).await
}
