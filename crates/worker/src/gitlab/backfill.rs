//! Backfill a connection's history since its start date, page by page. Each page is stored
//! together with its checkpoint in one transaction, so a worker killed at any moment resumes
//! at the page it was on, and re-storing a page changes nothing.
//!
//! A job works for one time slice and then queues its own continuation behind the other
//! connections' jobs: a tenant with thousands of projects takes turns with everyone else
//! instead of holding the workers until it is done.
//!
//! Each stream records when its read began as its high-water mark, and a project's commits
//! stream stores the branch heads it read from. When every stream is done, a catch-up reads what
//! changed since those marks (and what the heads moved to) before the connection shows `live`:
//! whatever changed while the backfill read is stored too.

use std::time::Instant;

use chrono::Utc;
use connector_store::connections::{Connection, Status};
use connector_store::jobs::{self, Job};
use connector_store::sync::Resource;
use connector_store::{TenantId, reconcile, sync};
use gitlab_client::{GitLabClient, PageRequest};
use uuid::Uuid;

use super::GitLabJobs;
use super::history::branch_heads;
use super::locks::Locked;
use super::step::StepError;
use super::streams::{Advance, Fetched, fetch_page, first_request, store_page};
use crate::runner::JobError;

pub(super) enum Slice {
    Finished,
    Continued,
}

impl GitLabJobs {
    pub(super) async fn backfill(&self, tenant: &TenantId, id: Uuid) -> Result<(), JobError> {
        let Some((connection, token)) = self.load(tenant, id).await? else { return Ok(()) };
        if connection.status != Status::Backfilling {
            // Edited or deleted since this job was queued: the new validation starts over.
            return Ok(());
        }
        let client = self.client(&connection, token);
        let locked = self
            .with_sync_lock(tenant, id, async {
                let client = client?;
                match self.backfill_slice(tenant, &connection, &client).await? {
                    // What changed while the backfill read is read now, before `live`.
                    Slice::Finished => self.catch_up_locked(tenant, &connection, &client).await.map(|()| Slice::Finished),
                    Slice::Continued => Ok(Slice::Continued),
                }
            })
            .await?;
        let result = match locked {
            Locked::Ran(result) => result,
            // The holder may be the slice that queued this very job and has not yet let go of the
            // lock, or a catch-up that will not carry the backfill on: leaving would end the chain
            // of slices for good, so this job comes back. A duplicate chain costs a retry every
            // two seconds until the backfill is done; a lost one leaves the connection backfilling.
            Locked::ConnectionBusy | Locked::TenantBusy => return self.wait_turn(tenant, Job::Backfill { connection: id }).await,
        };
        match result {
            Ok(Slice::Finished) => {
                tracing::info!(connection = %id, "backfill complete, and what changed meanwhile caught up; live");
                Ok(())
            }
            Ok(Slice::Continued) => Ok(()),
            Err(error) => self.step_failure(tenant, id, error).await,
        }
    }

    /// Works until the slice is used up.
    async fn backfill_slice(&self, tenant: &TenantId, connection: &Connection, client: &GitLabClient) -> Result<Slice, StepError> {
        let deadline = Instant::now() + self.settings.backfill_slice;
        let mut projects = connection.resolved_project_ids.clone().unwrap_or_default();
        projects.sort_unstable();
        for project in projects {
            for &resource in Resource::ALL {
                loop {
                    let checkpoint = {
                        let mut tx = self.store.tenant_tx(tenant).await?;
                        sync::checkpoint(&mut tx, connection.id, project, resource).await?
                    };
                    if checkpoint.as_ref().is_some_and(|c| c.done) {
                        break;
                    }
                    let (resume, mark) = checkpoint.map_or((None, None), |c| (c.cursor, c.high_water_mark));
                    let started = resume.is_none().then(Utc::now);
                    let mut request = match resume {
                        Some(cursor) => serde_json::from_value::<PageRequest>(cursor)
                            .map_err(|e| JobError::Permanent(format!("unreadable checkpoint: {e}")))?,
                        None => first_request(project, resource, &connection.start_date),
                    };
                    // The heads are read before the commits they point at: whatever is pushed
                    // after this is found from them by the catch-up.
                    let heads = match (resource, started) {
                        (Resource::Commits, Some(_)) => Some(branch_heads(client, project).await?),
                        (Resource::Commits, None) | (Resource::MergeRequests | Resource::Issues | Resource::Pipelines, _) => None,
                    };
                    let fetched = fetch_page(client, project, resource, &mut request, true).await?;
                    let next = match &fetched {
                        Fetched::Page { next, .. } => next.clone(),
                        Fetched::Skipped(_) => None,
                    };
                    let mut tx = self.store.tenant_tx(tenant).await?;
                    let advance = Advance {
                        cursor: next.as_ref().map(|n| serde_json::to_value(n).expect("a page request serializes")),
                        mark: started,
                        counts: true,
                        done: next.is_none(),
                    };
                    store_page(&mut tx, connection.id, project, resource, fetched, Some(advance)).await?;
                    if let Some(heads) = &heads {
                        reconcile::set_branch_heads(&mut tx, connection.id, project, heads).await?;
                    }
                    // A whole listing is as good as a comparison of ids as of its start; the
                    // comments on commits, which only the comparison reads, are still due.
                    if next.is_none()
                        && resource != Resource::Commits
                        && let Some(read_began) = started.or(mark)
                    {
                        reconcile::mark_reconciled(&mut tx, connection.id, project, resource, read_began).await?;
                    }
                    let out_of_time = Instant::now() >= deadline;
                    if out_of_time {
                        jobs::enqueue(&mut tx, Job::Backfill { connection: connection.id }, std::time::Duration::ZERO).await?;
                    }
                    tx.commit().await?;
                    if out_of_time {
                        return Ok(Slice::Continued);
                    }
                    if next.is_none() {
                        break;
                    }
                }
            }
        }
        Ok(Slice::Finished)
    }
}
