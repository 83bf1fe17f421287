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
