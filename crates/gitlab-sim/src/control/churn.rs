//! Lists that reorder while a client pages them ("churn"). On a busy instance other users edit
//! merge requests, issues and pipelines between two page requests of a client, so an offset
//! page of a list ordered by `updated_at` starts past items that moved (the reference's "Offset
//! pages over a moving order skip items"). With churn on, every request for a later page of a
//! project's merge requests, issues or pipelines first makes one such edit, to an item the
//! client already received on an earlier page, fires the webhook GitLab fires for it, and only
//! then computes the page.

use axum::extract::State;
use axum::response::Response;
use chrono::Duration;

use super::changes::actor;
use super::{ci, issues, merge_requests};
use crate::config::Churn;
use crate::error::SimError;
use crate::model::Project;
use crate::pagination::Params;
use crate::state::{Simulator, lock, read, write};
use crate::time::{self, Ts};
use crate::webhook;

/// `PUT /-/sim/churn` with `{"enabled": true, "budget": 40}`; answers the whole config.
pub async fn set_churn(State(sim): State<Simulator>, axum::Json(c): axum::Json<Churn>) -> Result<Response, SimError> {
    sim.update_config(|cfg| cfg.churn = c);
    super::admin::config(State(sim)).await
}

/// What an edit touches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    MergeRequest { iid: u64 },
    Issue { iid: u64 },
    Pipeline { id: u64 },
}

/// A request for a page after the first: offset `page >= 2`, or a keyset request that carries
/// the position where the previous page ended.
fn later_page(params: &Params) -> bool {
    params.page() >= 2 || params.get("cursor").is_some() || params.get("id_after").is_some()
}

/// Whether this list request should be preceded by an edit.
pub(crate) fn wanted(sim: &Simulator, params: &Params) -> bool {
    let c = read(&sim.shared.config).churn.clone();
    c.enabled && c.budget != Some(0) && later_page(params)
}

/// One of the items the client already received, picked with the simulator's seeded rng.
pub(crate) fn pick<'a, T>(sim: &Simulator, received: &'a [T]) -> Option<&'a T> {
    if received.is_empty() {
        return None;
    }
    let i = lock(&sim.shared.rng).below(received.len());
    received.get(i)
}

/// Takes one edit from the budget; false when churn is off or the budget is used up.
fn reserve(sim: &Simulator) -> bool {
    let mut cfg = write(&sim.shared.config);
    let c = &mut cfg.churn;
    if !c.enabled || c.budget == Some(0) {
        return false;
    }
    if let Some(b) = &mut c.budget {
        *b -= 1;
    }
    true
}

fn give_back(sim: &Simulator) {
    if let Some(b) = &mut write(&sim.shared.config).churn.budget {
        *b += 1;
    }
}

/// A moment later than every `updated_at` in the project (millisecond precision), and now if
/// nothing there is newer: an edit always moves its item to the very end of an ascending
/// `updated_at` order.
fn edit_time(p: &Project) -> Ts {
    let latest = p
        .merge_requests
        .iter()
        .map(|m| m.updated_at)
        .chain(p.issues.iter().map(|i| i.updated_at))
        .chain(p.pipelines.iter().map(|pl| pl.updated_at))
        .chain(p.notes.iter().map(|n| n.updated_at))
        .max();
    let now = time::now();
    match latest {
        Some(t) if t >= now => t + Duration::milliseconds(1),
        _ => now,
    }
}

/// Edits `target` in project `project_id` as a concurrent user would (a new title for merge
/// requests and issues, the next status for pipelines), fires its webhook in the background
/// like the control routes do, and counts it in the stats.
pub(crate) fn edit(sim: &Simulator, project_id: u64, target: Target) {
    if !reserve(sim) {
        return;
    }
    let base = sim.base_url();
    let events = {
        let mut ds = write(&sim.shared.data);
        let Some(p) = ds.project(project_id) else {
            drop(ds);
            give_back(sim);
            return;
        };
        let now = edit_time(p);
        let edited = |title: &str| format!("{title} (edited)");
        match target {
            Target::MergeRequest { iid } => {
                let title = p.merge_request(iid).map(|m| edited(&m.title));
                actor(&ds, None).and_then(|user| {
                    let mut b = merge_requests::MrBody::default();
                    b.title = title;
                    merge_requests::apply_update(&mut ds, project_id, iid, &user, &b, now, &base).map(|e| vec![e])
                })
            }
            Target::Issue { iid } => {
                let title = p.issue(iid).map(|i| edited(&i.title));
                actor(&ds, None).and_then(|user| {
                    let mut b = issues::IssueBody::default();
                    b.title = title;
                    issues::apply_update(&mut ds, project_id, iid, &user, &b, now, &base).map(|e| vec![e])
                })
            }
            Target::Pipeline { id } => ci::step_pipeline(&mut ds, project_id, id, now, &base),
        }
    };
    match events {
        Ok(events) => {
            lock(&sim.shared.stats).churned += 1;
            // Delivered in the background; nothing waits for it.
            drop(webhook::dispatch(sim, events));
        }
        Err(e) => {
            tracing::debug!(error = %e, "churn edit failed");
            give_back(sim);
        }
    }
}
