//! Jobs that used up their retries, kept with the reason so the API can show it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::jobs::Envelope;
use crate::{Result, TenantTx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub connection_id: Uuid,
    pub job_kind: String,
    pub attempts: i32,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(tx: &mut TenantTx, envelope: &Envelope, reason: &str) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "INSERT INTO job_dead_letters (tenant_id, connection_id, job_kind, job, attempts, reason)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant.as_str())
    .bind(envelope.job.connection())
    .bind(envelope.job.kind())
    .bind(serde_json::to_value(&envelope.job).expect("a job serializes"))
    .bind(envelope.attempt as i32 + 1)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// The connection's dead letters, newest first.
pub async fn for_connection(tx: &mut TenantTx, connection: Uuid, limit: i64) -> Result<Vec<DeadLetter>> {
    let (tenant, conn) = tx.parts();
    let rows: Vec<(i64, Uuid, String, i32, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, connection_id, job_kind, attempts, reason, created_at FROM job_dead_letters
         WHERE tenant_id = $1 AND connection_id = $2 AND retried_at IS NULL
         ORDER BY id DESC LIMIT $3",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, connection_id, job_kind, attempts, reason, created_at)| DeadLetter {
            id,
            connection_id,
            job_kind,
            attempts,
            reason,
            created_at,
        })
        .collect())
}

/// The tenant's dead letters not yet retried, newest first, over all its connections.
pub async fn for_tenant(tx: &mut TenantTx, limit: i64) -> Result<Vec<DeadLetter>> {
    let (tenant, conn) = tx.parts();
    let rows: Vec<(i64, Uuid, String, i32, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, connection_id, job_kind, attempts, reason, created_at FROM job_dead_letters
         WHERE tenant_id = $1 AND retried_at IS NULL ORDER BY id DESC LIMIT $2",
    )
    .bind(tenant.as_str())
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, connection_id, job_kind, attempts, reason, created_at)| DeadLetter {
            id,
            connection_id,
            job_kind,
            attempts,
            reason,
            created_at,
        })
        .collect())
}

/// Queues the dead-lettered job again, with fresh attempts, and marks the letter retried; both in
/// the caller's transaction. `NotFound` for an unknown or already retried letter.
pub async fn retry(tx: &mut TenantTx, id: i64) -> Result<crate::jobs::Job> {
    let (tenant, conn) = tx.parts();
    let job: Option<serde_json::Value> = sqlx::query_scalar(
        "UPDATE job_dead_letters SET retried_at = now() WHERE tenant_id = $1 AND id = $2 AND retried_at IS NULL RETURNING job",
    )
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let job: crate::jobs::Job = serde_json::from_value(job.ok_or(crate::Error::NotFound)?)
        .map_err(|e| crate::Error::Queue(format!("unreadable dead letter: {e}")))?;
    crate::jobs::enqueue(tx, job.clone(), std::time::Duration::ZERO).await?;
    Ok(job)
}

/// The connection is starting over: its dead letters are settled (no longer shown as failed
/// jobs), since what they would retry runs again anyway.
pub async fn settle(tx: &mut TenantTx, connection: Uuid) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query("UPDATE job_dead_letters SET retried_at = now() WHERE tenant_id = $1 AND connection_id = $2 AND retried_at IS NULL")
        .bind(tenant.as_str())
        .bind(connection)
        .execute(conn)
        .await?;
    Ok(())
}
