//! The simulator's own control API under `/-/sim/` (JSON, no GitLab token): change the
//! instance, fire the webhooks GitLab would fire, tune faults, and read stats and ground truth.
//! Every mutating route accepts `?wait=true` to answer only after its webhooks were delivered.

mod admin;
mod changes;
pub(crate) mod churn;
mod ci;
mod deletions;
mod issues;
mod merge_requests;
mod notes;
mod repository;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::Value;

use crate::error::SimError;
use crate::state::Simulator;
use crate::webhook::{self, Event};

pub(crate) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/-/sim/health", get(admin::health))
        .route("/-/sim/stats", get(admin::stats))
        .route("/-/sim/stats/reset", post(admin::reset_stats))
        .route("/-/sim/config", get(admin::config))
        .route("/-/sim/faults", put(admin::set_faults))
        .route("/-/sim/latency", put(admin::set_latency))
        .route("/-/sim/rate_limit", put(admin::set_rate_limit))
        .route("/-/sim/delivery", put(admin::set_delivery))
        .route("/-/sim/instance", put(admin::set_instance))
        .route("/-/sim/churn", put(churn::set_churn))
        .route("/-/sim/truth", get(admin::truth))
        .route("/-/sim/truth/projects/{id}", get(admin::truth_project))
        .route("/-/sim/tokens", get(admin::tokens).post(admin::create_token))
        .route("/-/sim/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/-/sim/tokens/{id}/expire", post(admin::expire_token))
        .route("/-/sim/groups", post(admin::create_group))
        .route("/-/sim/groups/{id}/plan", put(admin::set_plan))
        .route("/-/sim/members", post(admin::add_member).delete(admin::remove_member))
        .route("/-/sim/projects", post(admin::create_project))
        .route("/-/sim/projects/{id}", delete(admin::delete_project))
        .route("/-/sim/projects/{id}/transfer", post(deletions::transfer_project))
        .route("/-/sim/hooks/{id}/failing", put(admin::set_hook_failing))
        .route("/-/sim/deliveries", get(admin::deliveries))
        .route("/-/sim/projects/{id}/push", post(repository::push))
        .route("/-/sim/projects/{id}/branches", post(repository::create_branch))
        .route("/-/sim/projects/{id}/branches/{*name}", delete(repository::delete_branch))
        .route("/-/sim/projects/{id}/tags", post(repository::create_tag))
        .route("/-/sim/projects/{id}/tags/{*name}", delete(repository::delete_tag))
        .route("/-/sim/projects/{id}/merge_requests", post(merge_requests::open_mr))
        .route("/-/sim/projects/{id}/merge_requests/{iid}", put(merge_requests::update_mr).delete(deletions::delete_merge_request))
        .route("/-/sim/projects/{id}/merge_requests/{iid}/{action}", post(merge_requests::mr_action))
        .route("/-/sim/projects/{id}/issues", post(issues::open_issue))
        .route("/-/sim/projects/{id}/issues/{iid}", put(issues::update_issue).delete(deletions::delete_issue))
        .route("/-/sim/projects/{id}/issues/{iid}/{action}", post(issues::issue_action))
        .route("/-/sim/projects/{id}/notes", post(notes::add_note))
        .route("/-/sim/projects/{id}/notes/{note_id}", put(notes::edit_note).delete(deletions::delete_note))
        .route("/-/sim/projects/{id}/pipelines", post(ci::run_pipeline))
        .route("/-/sim/projects/{id}/pipelines/{pipeline_id}", put(ci::update_pipeline).delete(deletions::delete_pipeline))
        .route("/-/sim/projects/{id}/jobs/{job_id}", put(ci::update_job))
        .route("/-/sim/projects/{id}/releases", post(repository::create_release))
        .route("/-/sim/projects/{id}/deployments", post(ci::deploy))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Wait {
    #[serde(default)]
    wait: bool,
}

/// Fires the events of a change and answers with `body`, after delivery when asked to wait.
pub(crate) async fn respond(sim: &Simulator, wait: Wait, events: Vec<Event>, body: Value) -> Result<Response, SimError> {
    let handle = webhook::dispatch(sim, events);
    if wait.wait {
        let _ = handle.await;
    }
    Ok(axum::Json(body).into_response())
}

/// Labels named on an issue or merge request that the project lacks are created, as GitLab's
/// issues and merge requests APIs do ("labels: ... If a label does not already exist, this
/// creates a new project label", doc/api/issues.md); hooks and REST then both show them.
pub(crate) fn ensure_labels(ds: &mut crate::dataset::Dataset, project: u64, names: Option<&Vec<String>>, now: crate::time::Ts) {
    let Some(names) = names else { return };
    for name in names {
        let exists = ds.project(project).is_none_or(|p| p.labels.iter().any(|l| &l.title == name));
        if exists {
            continue;
        }
        let id = crate::dataset::Ids::next(&mut ds.ids.label);
        if let Some(p) = ds.projects.iter_mut().find(|p| p.id == project) {
            p.labels.push(crate::model::Label {
                id,
                title: name.clone(),
                color: "#6699cc".into(),
                description: String::new(),
                created_at: now,
            });
        }
    }
}

fn control_error(msg: impl Into<String>) -> SimError {
    SimError::Control(msg.into())
}
