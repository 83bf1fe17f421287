//! The durable inbox of webhook deliveries: stored before GitLab gets its 2xx, applied after.

use serde_json::Value;
use uuid::Uuid;

use crate::{Result, Store, TenantId, TenantTx};

#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub connection_id: Uuid,
    pub hook_id: Uuid,
    /// `Idempotency-Key`, else `webhook-id`, else the event UUID: stable across GitLab's
    /// retries and resends, so a delivery is stored once.
    pub dedup_key: &'a str,
    pub event: Option<&'a str>,
    pub headers: Value,
    pub body: &'a [u8],
    /// A delivery that cannot be applied (not JSON, unknown kind) is kept aside at once.
    pub kept_aside: Option<&'a str>,
    /// The receiving request's W3C trace context, for the trace of its processing to link to.
    pub traceparent: Option<&'a str>,
}

/// Stores the delivery and marks the hook's last delivery time (to the second). `false` when this delivery was
/// already stored (a retry or a resend).
pub async fn insert(tx: &mut TenantTx, d: &NewDelivery<'_>) -> Result<bool> {
    let (tenant, conn) = tx.parts();
    let inserted = sqlx::query(
        "INSERT INTO webhook_deliveries (tenant_id, connection_id, hook_id, dedup_key, event, headers, body, status, reason, traceparent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (tenant_id, hook_id, dedup_key) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(d.connection_id)
    .bind(d.hook_id)
    .bind(d.dedup_key)
    .bind(d.event)
    .bind(&d.headers)
    .bind(d.body)
    .bind(if d.kept_aside.is_some() { "kept_aside" } else { "received" })
    .bind(d.kept_aside)
    .bind(d.traceparent)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // At most once a second per hook: a busy hook's deliveries would otherwise queue on this one
    // row's lock until each commits (the ingest benchmark measured a single hook at two thirds of
    // the rate of many); a status field needs no finer time.
    sqlx::query(
        "UPDATE webhook_hooks SET last_delivery_at = now(), refused_since = NULL
         WHERE tenant_id = $1 AND id = $2
           AND (last_delivery_at IS NULL OR last_delivery_at < now() - interval '1 second' OR refused_since IS NOT NULL)",
    )
    .bind(tenant.as_str())
    .bind(d.hook_id)
    .execute(conn)
    .await?;
    Ok(inserted == 1)
}

/// Received deliveries due for processing, across tenants, oldest first.
pub async fn due(store: &Store, limit: i64) -> Result<Vec<(TenantId, i64)>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT tenant_id, id FROM system_due_deliveries($1)").bind(limit).fetch_all(store.pool()).await?;
    rows.into_iter().map(|(t, id)| Ok((TenantId::parse(&t)?, id))).collect()
}

#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub connection_id: Uuid,
    pub event: Option<String>,
    pub body: Vec<u8>,
    pub attempts: i32,
    pub traceparent: Option<String>,
}

/// Locks one received delivery for processing; `None` when another processor has it or it is
/// done.
pub async fn claim(tx: &mut TenantTx, id: i64) -> Result<Option<Pending>> {
    let (tenant, conn) = tx.parts();
    type Row = (i64, Uuid, Option<String>, Vec<u8>, i32, Option<String>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, connection_id, event, body, attempts, traceparent FROM webhook_deliveries
         WHERE tenant_id = $1 AND id = $2 AND status = 'received' FOR UPDATE SKIP LOCKED",
    )
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(id, connection_id, event, body, attempts, traceparent)| Pending { id, connection_id, event, body, attempts, traceparent }))
}

/// Records the outcome: `applied`, `out_of_scope`, `kept_aside` or `failed`, with a reason.
pub async fn finish(tx: &mut TenantTx, id: i64, status: &str, reason: Option<&str>) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $3, reason = $4, processed_at = now(), attempts = attempts + 1
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(status)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Puts a delivery whose apply failed back for a later attempt.
pub async fn retry_later(tx: &mut TenantTx, id: i64, delay: std::time::Duration, reason: &str) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, reason = $4, next_attempt_at = now() + $3
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(delay)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySummary {
    pub id: i64,
    pub connection_id: Uuid,
    pub event: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub attempts: i32,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// The tenant's deliveries in `status` (e.g. `kept_aside`, `failed`), newest first.
pub async fn list(tx: &mut TenantTx, status: &str, limit: i64) -> Result<Vec<DeliverySummary>> {
    let (tenant, conn) = tx.parts();
    type Row = (i64, Uuid, Option<String>, String, Option<String>, i32, chrono::DateTime<chrono::Utc>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, connection_id, event, status, reason, attempts, received_at FROM webhook_deliveries
         WHERE tenant_id = $1 AND status = $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(tenant.as_str())
    .bind(status)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, connection_id, event, status, reason, attempts, received_at)| DeliverySummary {
            id,
            connection_id,
            event,
            status,
            reason,
            attempts,
            received_at,
        })
        .collect())
}

/// Puts a delivery that was kept aside or failed back in the inbox, to be applied again (after a
/// fix, say). `NotFound` unless it was in one of those states.
pub async fn replay(tx: &mut TenantTx, id: i64) -> Result<()> {
    let (tenant, conn) = tx.parts();
    let updated = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'received', reason = NULL, attempts = 0, next_attempt_at = now(),
                processed_at = NULL
         WHERE tenant_id = $1 AND id = $2 AND status IN ('kept_aside', 'failed')",
    )
    .bind(tenant.as_str())
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected();
    if updated == 0 { Err(crate::Error::NotFound) } else { Ok(()) }
}
