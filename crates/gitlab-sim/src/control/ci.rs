//! Control routes for pipelines, jobs and deployments.

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
use crate::webhook::payloads::{self};
use crate::webhook::{Event, Trigger};

#[derive(Debug, Default, Deserialize)]
pub struct PipelineBody {
    #[serde(rename = "ref")]
    reference: Option<String>,
    sha: Option<String>,
    status: Option<String>,
    source: Option<String>,
    user_id: Option<u64>,
}

const FINISHED: &[&str] = &["success", "failed", "canceled", "skipped"];

fn pipeline_events(ds: &Dataset, id: u64, pipeline_id: u64, jobs: &[u64], base: &str) -> Vec<Event> {
    let p = ds.project(id).expect("exists");
    let pl = p.pipelines.iter().find(|x| x.id == pipeline_id).expect("exists");
    let mut events: Vec<Event> = pl
        .jobs
        .iter()
        .filter(|j| jobs.contains(&j.id))
        .map(|j| project_event(Trigger::Job, id, payloads::job(ds, p, pl, j, base)))
        .collect();
    events.push(project_event(Trigger::Pipeline, id, payloads::pipeline(ds, p, pl, base)));
    events
}

fn ci_enabled(p: &Project) -> Result<(), SimError> {
    if p.jobs_enabled { Ok(()) } else { Err(control_error("CI/CD is disabled in this project")) }
}

pub async fn run_pipeline(State(sim): State<Simulator>, Path(id): Path<u64>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: PipelineBody = body(&bytes)?;
    let base = sim.base_url();
    let now = time::now();
    let (events, pipeline_id) = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        let pipeline_id = Ids::next(&mut ds.ids.pipeline);
        let job_ids: Vec<u64> = (0..3).map(|_| Ids::next(&mut ds.ids.job)).collect();
        let p = project_mut(&mut ds, id)?;
        ci_enabled(p)?;
        let reference = b.reference.clone().unwrap_or_else(|| p.default_branch.clone());
        let sha = match &b.sha {
            Some(s) => p.repository.find_commit(s).map(|c| c.id.clone()),
            None => p.repository.resolve(&reference),
        }
        .ok_or_else(|| control_error("unknown ref or sha"))?;
        let before_sha = p.repository.commit(&sha).and_then(|c| c.parent_ids.first().cloned()).unwrap_or_else(|| ZERO_SHA.into());
        let status = b.status.clone().unwrap_or_else(|| "pending".into());
        let jobs = job_ids
            .iter()
            .zip([("build", "compile"), ("test", "unit-tests"), ("deploy", "deploy-staging")])
            .map(|(jid, (stage, name))| Job {
                id: *jid,
                name: name.into(),
                stage: stage.into(),
                status: if stage == "build" { status.clone() } else { "created".into() },
                created_at: now,
                started_at: None,
                finished_at: None,
            })
            .collect();
        let iid = p.pipelines.iter().map(|x| x.iid).max().unwrap_or(0) + 1;
        let tag = p.repository.tags.iter().any(|t| t.name == reference);
        p.pipelines.push(Pipeline {
            id: pipeline_id,
            iid,
            ref_name: reference,
            sha,
            before_sha,
            tag,
            status,
            source: b.source.clone().unwrap_or_else(|| "push".into()),
            user_id: user.id,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            jobs,
        });
        (pipeline_events(&ds, id, pipeline_id, &job_ids, &base), pipeline_id)
    };
    respond(&sim, w, events, json!({"id": pipeline_id})).await
}

fn set_job_status(j: &mut Job, status: &str, now: Ts) {
    j.status = status.to_string();
    if status == "running" && j.started_at.is_none() {
        j.started_at = Some(now);
    }
    if FINISHED.contains(&status) {
        j.started_at.get_or_insert(now);
        j.finished_at = Some(now);
    }
}

fn set_pipeline_status(pl: &mut Pipeline, status: &str, now: Ts) {
    pl.status = status.to_string();
    pl.updated_at = now;
    if status == "running" && pl.started_at.is_none() {
        pl.started_at = Some(now);
    }
    if FINISHED.contains(&status) {
        pl.started_at.get_or_insert(now);
        pl.finished_at = Some(now);
    }
}

/// Moves the pipeline and all its unfinished jobs to `status`.
pub async fn update_pipeline(
    State(sim): State<Simulator>,
    Path((id, pipeline_id)): Path<(u64, u64)>,
    Query(w): Query<Wait>,
    bytes: Bytes,
) -> Res {
    let b: PipelineBody = body(&bytes)?;
    let status = b.status.clone().ok_or_else(|| control_error("status is required"))?;
    let base = sim.base_url();
    let now = time::now();
    let events = {
        let mut ds = write(&sim.shared.data);
        let p = project_mut(&mut ds, id)?;
        let pl = p.pipelines.iter_mut().find(|x| x.id == pipeline_id).ok_or(SimError::NotFound("Pipeline"))?;
        let mut changed = Vec::new();
        for j in pl.jobs.iter_mut().filter(|j| !FINISHED.contains(&j.status.as_str()) && j.status != status) {
            set_job_status(j, &status, now);
            changed.push(j.id);
        }
        set_pipeline_status(pl, &status, now);
        pipeline_events(&ds, id, pipeline_id, &changed, &base)
    };
    respond(&sim, w, events, json!({"id": pipeline_id, "status": status})).await
}

/// One step a pipeline of a busy project takes on its own, for the churn setting: a running
/// pipeline succeeds (its unfinished jobs with it), a pipeline that has not started begins
/// running, and a finished one runs again because someone retried its failed or canceled jobs
/// (or, when none failed, its last job: GitLab lets any finished job be retried, and a pipeline
/// with a pending job among successful ones is `running` in Gitlab::Ci::Status::Composite).
/// Returns the Job Hooks of the jobs that moved and the Pipeline Hook, as `update_pipeline`.
pub(super) fn step_pipeline(ds: &mut Dataset, id: u64, pipeline_id: u64, now: Ts, base: &str) -> Result<Vec<Event>, SimError> {
    let p = project_mut(ds, id)?;
    let pl = p.pipelines.iter_mut().find(|x| x.id == pipeline_id).ok_or(SimError::NotFound("Pipeline"))?;
    let mut changed = Vec::new();
    if pl.status == "running" {
        for j in pl.jobs.iter_mut().filter(|j| !FINISHED.contains(&j.status.as_str())) {
            set_job_status(j, "success", now);
            changed.push(j.id);
        }
        set_pipeline_status(pl, "success", now);
    } else if FINISHED.contains(&pl.status.as_str()) {
        let mut retried: Vec<usize> = (0..pl.jobs.len()).filter(|&i| matches!(pl.jobs[i].status.as_str(), "failed" | "canceled")).collect();
        if retried.is_empty() && !pl.jobs.is_empty() {
            retried.push(pl.jobs.len() - 1);
        }
        for i in retried {
            let j = &mut pl.jobs[i];
            j.status = "pending".into();
            j.started_at = None;
            j.finished_at = None;
            changed.push(j.id);
        }
        pl.status = "running".into();
        pl.finished_at = None;
        pl.started_at.get_or_insert(now);
        pl.updated_at = now;
    } else {
        if let Some(j) = pl.jobs.iter_mut().find(|j| !FINISHED.contains(&j.status.as_str())) {
            set_job_status(j, "running", now);
            changed.push(j.id);
        }
        set_pipeline_status(pl, "running", now);
    }
    Ok(pipeline_events(ds, id, pipeline_id, &changed, base))
}

/// Moves one job; the pipeline follows (running while any job runs, failed on a failure,
/// success when all succeeded) and fires its own hook when its status changes.
pub async fn update_job(State(sim): State<Simulator>, Path((id, job_id)): Path<(u64, u64)>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: PipelineBody = body(&bytes)?;
    let status = b.status.clone().ok_or_else(|| control_error("status is required"))?;
    let base = sim.base_url();
    let now = time::now();
    let events = {
        let mut ds = write(&sim.shared.data);
        let p = project_mut(&mut ds, id)?;
        let pl = p.pipelines.iter_mut().find(|x| x.jobs.iter().any(|j| j.id == job_id)).ok_or(SimError::NotFound("Job"))?;
        let j = pl.jobs.iter_mut().find(|j| j.id == job_id).expect("found above");
        set_job_status(j, &status, now);
        let statuses: Vec<&str> = pl.jobs.iter().map(|j| j.status.as_str()).collect();
        let derived = if statuses.contains(&"failed") {
            "failed"
        } else if statuses.iter().all(|s| *s == "success" || *s == "skipped") {
            "success"
        } else if statuses.contains(&"running") || statuses.contains(&"success") {
            "running"
        } else {
            "pending"
        };
        let pipeline_changed = pl.status != derived;
        pl.updated_at = now;
        if pipeline_changed {
            set_pipeline_status(pl, derived, now);
        }
        let pipeline_id = pl.id;
        let mut events = pipeline_events(&ds, id, pipeline_id, &[job_id], &base);
        if !pipeline_changed {
            events.retain(|e| e.trigger == Trigger::Job);
        }
        events
    };
    respond(&sim, w, events, json!({"id": job_id, "status": status})).await
}

#[derive(Debug, Default, Deserialize)]
pub struct DeployBody {
    environment: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    status: Option<String>,
    user_id: Option<u64>,
}

/// Records a deployment of a ref to an environment and fires its Deployment Hook.
pub async fn deploy(State(sim): State<Simulator>, Path(id): Path<u64>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: DeployBody = body(&bytes)?;
    let base = sim.base_url();
    let now = time::now();
    let (event, deployment_id) = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        let deployment_id = Ids::next(&mut ds.ids.deployment);
        let job_id = Ids::next(&mut ds.ids.job);
        let p = project_mut(&mut ds, id)?;
        ci_enabled(p)?;
        let reference = b.reference.clone().unwrap_or_else(|| p.default_branch.clone());
        let sha = p.repository.resolve(&reference).ok_or_else(|| control_error(format!("unknown ref {reference}")))?;
        p.deployments.push(Deployment {
            id: deployment_id,
            environment: b.environment.clone().unwrap_or_else(|| "staging".into()),
            ref_name: reference,
            sha,
            status: b.status.clone().unwrap_or_else(|| "success".into()),
            deployable_id: job_id,
            user_id: user.id,
            created_at: now,
            updated_at: now,
        });
        let p = ds.project(id).expect("exists");
        let d = p.deployments.last().expect("just added");
        (project_event(Trigger::Deployment, id, payloads::deployment(&ds, p, d, &base)), deployment_id)
    };
    respond(&sim, w, vec![event], json!({"id": deployment_id})).await
}
