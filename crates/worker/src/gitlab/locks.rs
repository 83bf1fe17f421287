//! The sync locks: one backfill or catch-up per connection at a time, and at most
//! `tenant_concurrency` of a tenant's at once, across every worker.

use std::future::Future;

use connector_store::TenantId;
use connector_store::jobs::{self, Job};
use uuid::Uuid;

use super::{GitLabJobs, retry};
use crate::runner::JobError;

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
