//! The first answer to a POST sent with an `Idempotency-Key`, replayed to the same request sent
//! again (see the idempotency_keys migration).

use uuid::Uuid;

use crate::{Result, TenantTx};

/// How long a key's answer is kept; after that the key may name a new request.
pub const KEPT_FOR_HOURS: i64 = 24;

/// A kept answer: status, JSON body and `Location`.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
    pub location: Option<String>,
}

/// What a key is to the request that brings it.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// No one answered it yet: this transaction does the work and [`record`]s its answer.
    First,
    /// The same request was answered: this is the answer.
    Replay(Answer),
    /// The key was used for another request.
    Reused,
}

/// The answer kept for `key`, if the same request got one: a read that takes nothing, for
/// answering a repeat before doing any of the work again. `Reused` for another request's key.
pub async fn answered(tx: &mut TenantTx, key: &str, request_hash: &[u8]) -> Result<Option<Claim>> {
    let (tenant, conn) = tx.parts();
    let row: Option<Kept> = sqlx::query_as(
        "SELECT request_hash, status, body, location FROM idempotency_keys
         WHERE tenant_id = $1 AND key = $2 AND created_at > now() - make_interval(hours => $3)",
    )
    .bind(tenant.as_str())
    .bind(key)
    .bind(KEPT_FOR_HOURS as i32)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|kept| kept.judge(request_hash)))
}

/// Takes `key` for this transaction's request. A concurrent transaction holding the same key
/// makes this wait until it ends: then its answer is replayed (or, if it rolled back, this is
/// first). Expired keys of the tenant are dropped on the way.
pub async fn claim(tx: &mut TenantTx, key: &str, request_hash: &[u8]) -> Result<Claim> {
    let (tenant, conn) = tx.parts();
    sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND created_at <= now() - make_interval(hours => $2)")
        .bind(tenant.as_str())
        .bind(KEPT_FOR_HOURS as i32)
        .execute(&mut *conn)
        .await?;
    let taken = sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT (tenant_id, key) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(key)
    .bind(request_hash)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if taken == 1 {
        return Ok(Claim::First);
    }
    // The row is committed (the insert waited for its transaction), so this statement sees it.
    Ok(answered(tx, key, request_hash).await?.unwrap_or(Claim::Reused))
}

/// Keeps the answer of the request that [`claim`]ed `key` first, in its transaction.
pub async fn record(tx: &mut TenantTx, key: &str, connection: Uuid, answer: &Answer) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query("UPDATE idempotency_keys SET connection_id = $3, status = $4, body = $5, location = $6 WHERE tenant_id = $1 AND key = $2")
        .bind(tenant.as_str())
        .bind(key)
        .bind(connection)
        .bind(answer.status as i16)
        .bind(&answer.body)
        .bind(&answer.location)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Kept {
    request_hash: Vec<u8>,
    status: Option<i16>,
    body: Option<serde_json::Value>,
    location: Option<String>,
}

impl Kept {
    fn judge(self, request_hash: &[u8]) -> Claim {
        match (self.request_hash == request_hash, self.status, self.body) {
            (true, Some(status), Some(body)) => Claim::Replay(Answer { status: status as u16, body, location: self.location }),
            // Another request's key, or (never committed) a key without its answer.
            _ => Claim::Reused,
        }
    }
}
