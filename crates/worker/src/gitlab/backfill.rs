//! Backfill a connection's history since its start date, page by page. Each page is stored
//! together with its checkpoint in one transaction, so a worker killed at any moment resumes
//! at the page it was on, and re-storing a page changes nothing.
//!
//! A job works for one time slice and then queues its own continuation behind the other
//! connections' jobs: a tenant with thousands of projects takes turns with everyone else
//! instead of holding the workers until it is done.

use std::future::Future;
use std::time::Instant;

use chrono::{DateTime, Utc};
use connector_store::connections::{self, Connection, Status};
use connector_store::jobs::{self, Job};
use connector_store::sync::{self, NoteParent};
use connector_store::{TenantId, TenantTx};
use futures_util::{StreamExt, TryStreamExt, stream};
use gitlab_client::api::issues::IssuePagination;
use gitlab_client::{Error as GitLab, GitLabClient, PageRequest};
use serde_json::Value;
use uuid::Uuid;

use super::{GitLabJobs, retry};
use crate::runner::JobError;

/// The resources backfilled per project, in this order.
pub const RESOURCES: [&str; 4] = ["commits", "merge_requests", "issues", "pipelines"];

enum Slice {
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
                match client {
                    Ok(client) => self.backfill_slice(tenant, &connection, &client).await,
                    Err(error) => Err(error),
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
                let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
                connections::mark_live(&mut tx, id, self.settings.catch_up_interval).await.map_err(retry)?;
                tx.commit().await.map_err(retry)?;
                tracing::info!(connection = %id, "backfill complete; live");
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
            for resource in RESOURCES {
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
                    let request = match checkpoint.and_then(|c| c.cursor) {
                        Some(cursor) => match serde_json::from_value::<PageRequest>(cursor) {
                            Ok(request) => request,
                            Err(e) => return Ok(Err(JobError::Permanent(format!("unreadable checkpoint: {e}")))),
                        },
                        None => first_request(project, resource, &connection.start_date),
                    };
                    let fetched = fetch_page(client, project, resource, &request).await?;
                    let mut tx = match self.store.tenant_tx(tenant).await {
                        Ok(tx) => tx,
                        Err(e) => return Ok(Err(retry(e))),
                    };
                    let more = match store_page(&mut tx, connection.id, project, resource, fetched, Mode::Backfill).await {
                        Ok(more) => more,
                        Err(e) => return Ok(Err(retry(e))),
                    };
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
                    if !more {
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

/// The first page of a resource, changed since `since`.
pub(super) fn first_request(project: i64, resource: &str, since: &DateTime<Utc>) -> PageRequest {
    let project = project as u64;
    match resource {
        "commits" => PageRequest::commits(project, Some(since)),
        "merge_requests" => PageRequest::merge_requests(project, Some(since)),
        "issues" => PageRequest::issues(project, Some(since), IssuePagination::Keyset),
        _ => PageRequest::pipelines(project, Some(since)),
    }
}

/// A page of one resource, with what hangs off each item (notes, merge request commits).
pub(super) enum Fetched {
    Page { items: Vec<Value>, children: Vec<Children>, next: Option<PageRequest> },
    Skipped(String),
}

pub(super) struct Children {
    iid: i64,
    notes: Vec<Value>,
    commits: Vec<Value>,
}

/// Fetches a page and its children. A 403 or 404 means the resource is switched off or gone:
/// recorded as skipped, never a failure.
pub(super) async fn fetch_page(client: &GitLabClient, project: i64, resource: &str, request: &PageRequest) -> Result<Fetched, GitLab> {
    match fetch_items(client, project, resource, request).await {
        Err(GitLab::Forbidden { message }) => Ok(Fetched::Skipped(format!(
            "GitLab answered 403 ({message}): {resource} is probably switched off in this project"
        ))),
        Err(GitLab::NotFound { message }) => {
            Ok(Fetched::Skipped(format!("GitLab answered 404 ({message}): the project or its {resource} are no longer visible")))
        }
        other => other,
    }
}

async fn fetch_items(client: &GitLabClient, project: i64, resource: &str, request: &PageRequest) -> Result<Fetched, GitLab> {
    let page = client.page::<Value>(request).await?;
    let iids: Vec<u64> = match resource {
        "merge_requests" | "issues" => page.items.iter().filter_map(|item| item.get("iid").and_then(Value::as_u64)).collect(),
        _ => Vec::new(),
    };
    // A page holds up to 100 merge requests or issues, each with lists of its own: fetched one
    // after another, the round trips and not GitLab's rate limit would set the pace. The rate
    // budget still spaces the requests out; `buffered` keeps the page's order.
    let children = stream::iter(iids)
        .map(|iid| fetch_children(client, project as u64, resource, iid))
        .buffered(CHILD_FETCHES)
        .try_collect()
        .await?;
    Ok(Fetched::Page { items: page.items, children, next: page.next })
}

/// Merge requests or issues whose notes and commits are fetched at once.
const CHILD_FETCHES: usize = 8;

async fn fetch_children(client: &GitLabClient, project: u64, resource: &str, iid: u64) -> Result<Children, GitLab> {
    let (notes, commits) = if resource == "merge_requests" {
        tokio::try_join!(
            client.collect_all(PageRequest::merge_request_notes(project, iid)),
            client.collect_all(PageRequest::merge_request_commits(project, iid)),
        )?
    } else {
        (client.collect_all(PageRequest::issue_notes(project, iid)).await?, Vec::new())
    };
    Ok(Children { iid: iid as i64, notes, commits })
}

/// Whether a page belongs to the backfill (its checkpoint keeps the cursor to resume from) or
/// to a catch-up (which always starts again from the high-water mark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Backfill,
    CatchUp,
}

/// Stores a page and advances its checkpoint, in the caller's transaction. Returns whether more
/// pages follow.
pub(super) async fn store_page(
    tx: &mut TenantTx,
    connection: Uuid,
    project: i64,
    resource: &str,
    fetched: Fetched,
    mode: Mode,
) -> connector_store::Result<bool> {
    let (items, children, next) = match fetched {
        Fetched::Skipped(reason) => {
            tracing::info!(project, resource, %reason, "resource skipped");
            sync::record_skipped(tx, connection, project, resource, &reason).await?;
            sync::advance(tx, connection, project, resource, None, None, 0, true).await?;
            return Ok(false);
        }
        Fetched::Page { items, children, next } => (items, children, next),
    };
    let newest = items
        .iter()
        .filter_map(|i| i.get("updated_at").or_else(|| i.get("committed_date")).and_then(Value::as_str))
        .filter_map(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
        .max();
    let count = items.len() as i64;
    let items = Value::Array(items);
    match resource {
        "commits" => sync::upsert_commits(tx, connection, project, &items).await?,
        "merge_requests" => sync::upsert_merge_requests(tx, connection, project, &items).await?,
        "issues" => sync::upsert_issues(tx, connection, project, &items).await?,
        _ => sync::upsert_pipelines(tx, connection, project, &items).await?,
    };
    let noteable = if resource == "merge_requests" { "MergeRequest" } else { "Issue" };
    for child in children {
        sync::upsert_notes(tx, connection, project, noteable, NoteParent::Iid(child.iid), &Value::Array(child.notes)).await?;
        if !child.commits.is_empty() {
            let shas: Vec<String> =
                child.commits.iter().filter_map(|c| c.get("id").and_then(Value::as_str).map(str::to_owned)).collect();
            sync::upsert_commits(tx, connection, project, &Value::Array(child.commits)).await?;
            sync::set_merge_request_commits(tx, connection, project, child.iid, &shas).await?;
        }
    }
    let cursor = match mode {
        Mode::Backfill => next.as_ref().map(|n| serde_json::to_value(n).expect("a page request serializes")),
        Mode::CatchUp => None,
    };
    let done = mode == Mode::CatchUp || next.is_none();
    sync::advance(tx, connection, project, resource, cursor.as_ref(), newest, count, done).await?;
    Ok(next.is_some())
}
