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

use std::future::Future;
use std::time::Instant;

use chrono::Utc;
use connector_store::connections::{Connection, Status};
use connector_store::jobs::{self, Job};
use connector_store::sync::Resource;
use connector_store::{TenantId, reconcile, sync};
use gitlab_client::{Error as GitLab, GitLabClient, PageRequest};
use uuid::Uuid;

use super::history::branch_heads;
use super::streams::{Advance, Fetched, fetch_page, first_request, store_page};
use super::{GitLabJobs, retry};
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
                    Ok(Slice::Finished) => self.catch_up_locked(tenant, &connection, &client).await.map(|r| r.map(|()| Slice::Finished)),
                    other => Ok(other),
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
            Ok(Ok(Slice::Finished)) => {
                tracing::info!(connection = %id, "backfill complete, and what changed meanwhile caught up; live");
                Ok(())
            }
            Ok(Ok(Slice::Continued)) => Ok(()),
            Ok(Err(job_error)) => Err(job_error),
            Err(gitlab) => self.gitlab_failure(tenant, id, gitlab).await,
        }
    }

    /// Works until the slice is used up. The outer error is GitLab's, for the caller to map to a
    /// status or a retry; the inner one is the database's.
    async fn backfill_slice(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        client: &GitLabClient,
    ) -> Result<Result<Slice, JobError>, GitLab> {
        let deadline = Instant::now() + self.settings.backfill_slice;
        let mut projects = connection.resolved_project_ids.clone().unwrap_or_default();
        projects.sort_unstable();
        for project in projects {
            for &resource in Resource::ALL {
                loop {
                    let checkpoint = {
                        let mut tx = match self.store.tenant_tx(tenant).await {
                            Ok(tx) => tx,
                            Err(e) => return Ok(Err(retry(e))),
                        };
                        match sync::checkpoint(&mut tx, connection.id, project, resource).await {
                            Ok(cp) => cp,
                            Err(e) => return Ok(Err(retry(e))),
                        }
                    };
                    if checkpoint.as_ref().is_some_and(|c| c.done) {
                        break;
                    }
                    let (resume, mark) = checkpoint.map_or((None, None), |c| (c.cursor, c.high_water_mark));
                    let started = resume.is_none().then(Utc::now);
                    let mut request = match resume {
                        Some(cursor) => match serde_json::from_value::<PageRequest>(cursor) {
                            Ok(request) => request,
                            Err(e) => return Ok(Err(JobError::Permanent(format!("unreadable checkpoint: {e}")))),
                        },
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
                    let mut tx = match self.store.tenant_tx(tenant).await {
                        Ok(tx) => tx,
                        Err(e) => return Ok(Err(retry(e))),
                    };
                    let advance = Advance {
                        cursor: next.as_ref().map(|n| serde_json::to_value(n).expect("a page request serializes")),
                        mark: started,
                        counts: true,
                        done: next.is_none(),
                    };
                    let stored = async {
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
                        Ok::<_, connector_store::Error>(())
                    };
                    if let Err(e) = stored.await {
                        return Ok(Err(retry(e)));
                    }
                    let out_of_time = Instant::now() >= deadline;
                    if out_of_time
                        && let Err(e) = jobs::enqueue(&mut tx, Job::Backfill { connection: connection.id }, std::time::Duration::ZERO).await
                    {
                        return Ok(Err(retry(e)));
                    }
                    if let Err(e) = tx.commit().await {
                        return Ok(Err(retry(e)));
                    }
                    if out_of_time {
                        return Ok(Ok(Slice::Continued));
                    }
                    if next.is_none() {
                        break;
                    }
                }
            }
        }
        Ok(Ok(Slice::Finished))
    }
}

/// What became of work that needs the sync locks.
pub(super) enum Locked<T> {
    Ran(T),
    /// Another job holds this connection's sync lock.
    ConnectionBusy,
    /// The tenant already runs as many syncs as it may.
    TenantBusy,
}

/// The advisory lock keys of a tenant's sync slots: FNV-1a of the tenant id, then the slot.
fn tenant_slot_key(tenant: &TenantId, slot: usize) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tenant.as_str().bytes().chain(std::iter::once(0)).chain((slot as u64).to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

impl GitLabJobs {
    /// Runs `work` holding the connection's sync lock and one of the tenant's sync slots, as
    /// session-level advisory locks on one pooled connection (released when the work ends, or
    /// by PostgreSQL when a killed worker's session goes). One backfill or catch-up per
    /// connection at a time; at most `tenant_concurrency` per tenant.
    pub(super) async fn with_sync_lock<T>(
        &self,
        tenant: &TenantId,
        id: Uuid,
        work: impl Future<Output = T>,
    ) -> Result<Locked<T>, JobError> {
        let db = |e: sqlx::Error| retry(e.into());
        let mut lock = self.store.pool().acquire().await.map_err(db)?;
        let connection_key = i64::from_be_bytes(id.as_bytes()[..8].try_into().expect("8 bytes"));
        let try_lock = "SELECT pg_try_advisory_lock($1)";
        if !sqlx::query_scalar::<_, bool>(try_lock).bind(connection_key).fetch_one(&mut *lock).await.map_err(db)? {
            return Ok(Locked::ConnectionBusy);
        }
        let mut slot = None;
        for i in 0..self.settings.tenant_concurrency.max(1) {
            let key = tenant_slot_key(tenant, i);
            if sqlx::query_scalar::<_, bool>(try_lock).bind(key).fetch_one(&mut *lock).await.map_err(db)? {
                slot = Some(key);
                break;
            }
        }
        let output = match slot {
            Some(_) => Locked::Ran(work.await),
            None => Locked::TenantBusy,
        };
        for key in std::iter::once(connection_key).chain(slot) {
            sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut *lock).await.map_err(db)?;
        }
        Ok(output)
    }

    /// Queues `job` again a little later, behind other tenants' work.
    pub(super) async fn wait_turn(&self, tenant: &TenantId, job: Job) -> Result<(), JobError> {
        let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
        jobs::enqueue(&mut tx, job, std::time::Duration::from_secs(2)).await.map_err(retry)?;
        tx.commit().await.map_err(retry)
    }
}
