//! Tenants and their data keys.

use connector_crypto::{DataKey, MasterKeyRing, WrappedKey};

use crate::{Result, Store, TenantTx};

/// The tenant's data key, creating the tenant (and a fresh data key) on first use.
pub async fn data_key(tx: &mut TenantTx, keys: &MasterKeyRing) -> Result<DataKey> {
    let tenant = tx.tenant().clone();
    if let Some(wrapped) = wrapped_key(tx).await? {
        return Ok(keys.unwrap(tenant.as_str(), &wrapped)?);
    }
    let fresh = DataKey::generate();
    // Under the version every pod holds, not necessarily this pod's newest (see `keys`); a
    // database no pod has served from yet (tools, tests) has no choice made, and takes the newest.
    let version: Option<i32> = sqlx::query_scalar("SELECT wrap_version FROM master_key_state").fetch_optional(&mut **tx).await?;
    let version = version.map_or(keys.newest_version(), |v| v as u32);
    let wrapped = keys.wrap_with(version, tenant.as_str(), &fresh)?;
    // A concurrent first request may win the insert; then its key is the one to use.
    let inserted = sqlx::query(
        "INSERT INTO tenants (id, data_key_wrapped, data_key_version) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(&wrapped.bytes)
    .bind(wrapped.version as i32)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        tracing::info!(tenant = %tenant, "created tenant with a new data key");
        return Ok(fresh);
    }
    let wrapped = wrapped_key(tx).await?.ok_or(crate::Error::NotFound)?;
    Ok(keys.unwrap(tenant.as_str(), &wrapped)?)
}

async fn wrapped_key(tx: &mut TenantTx) -> Result<Option<WrappedKey>> {
    let (tenant, conn) = tx.parts();
    let row: Option<(Vec<u8>, i32)> = sqlx::query_as("SELECT data_key_wrapped, data_key_version FROM tenants WHERE id = $1")
        .bind(tenant.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|(bytes, version)| WrappedKey { version: version as u32, bytes }))
}

/// Deletes the tenant: its data key (so nothing sealed for it can be opened again), every
/// connection and what is stored of them (by cascade), its change feed and its jobs that are
/// not running. Our hooks in GitLab are the caller's to remove first
/// (`GitLabJobs::disconnect_now`), while the data key still opens the tokens. `false` when
/// nothing of the tenant was stored.
pub async fn delete(tx: &mut TenantTx) -> Result<bool> {
    let (tenant, conn) = tx.parts();
    sqlx::query("SELECT set_config('app.suppress_changes', 'on', true)").execute(&mut *conn).await?;
    let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1").bind(tenant.as_str()).execute(&mut *conn).await?.rows_affected();
    sqlx::query("SELECT set_config('app.suppress_changes', 'off', true)").execute(&mut *conn).await?;
    let feed = sqlx::query("DELETE FROM changes WHERE tenant_id = $1").bind(tenant.as_str()).execute(&mut *conn).await?.rows_affected();
    let answers =
        sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1").bind(tenant.as_str()).execute(&mut *conn).await?.rows_affected();
    let jobs = crate::jobs::delete_waiting(tx, None).await?;
    Ok(deleted + feed + answers + jobs > 0)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RotationReport {
    pub rewrapped: u64,
    pub already_current: u64,
}

/// Re-wraps every tenant's data key under the newest master key, a batch per transaction, so
/// the service keeps running meanwhile (each row is locked only while its batch is re-wrapped).
/// Refuses while a live pod lacks that key ([`crate::keys::adopt_newest`]); afterwards old keys
/// can be removed.
pub async fn rotate_keys(store: &Store) -> Result<RotationReport> {
    const BATCH: i64 = 200;
    let keys = store.keys();
    let newest = crate::keys::adopt_newest(store).await? as i32;
    let mut report = RotationReport::default();
    loop {
        // The function locks the batch's rows until this transaction commits.
        let mut tx = store.pool().begin().await?;
        let rows: Vec<(String, Vec<u8>, i32)> = sqlx::query_as("SELECT tenant_id, wrapped, version FROM system_keys_to_rewrap($1, $2)")
            .bind(newest)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            break;
        }
        for (tenant, bytes, version) in rows {
            let key = keys.unwrap(&tenant, &WrappedKey { version: version as u32, bytes })?;
            let wrapped = keys.wrap(&tenant, &key);
            sqlx::query("SELECT system_rewrap_key($1, $2, $3)")
                .bind(&tenant)
                .bind(&wrapped.bytes)
                .bind(wrapped.version as i32)
                .execute(&mut *tx)
                .await?;
            report.rewrapped += 1;
        }
        tx.commit().await?;
    }
    let current: i64 = sqlx::query_scalar("SELECT system_tenants_under($1)").bind(newest).fetch_one(store.pool()).await?;
    report.already_current = current as u64 - report.rewrapped;
    Ok(report)
}
