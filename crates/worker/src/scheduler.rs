//! Periodic work that must run once per period across all replicas, not once per replica.

use chrono::{DateTime, Utc};
use connector_store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Periodic {
    /// Catch up on what webhooks missed, and check each hook.
    CatchUp,
    /// Check every token: revoked, expired, expiring soon.
    TokenHealth,
}

impl Periodic {
    pub fn name(self) -> &'static str {
        match self {
            Periodic::CatchUp => "catch_up",
            Periodic::TokenHealth => "token_health",
        }
    }
}

/// Claims the period of `length_secs` that contains `now` for `claimant`. Exactly one claimant
/// wins each period, whatever the number of replicas asking: the primary key decides.
pub async fn claim_period(
    store: &Store,
    which: Periodic,
    length_secs: i64,
    now: DateTime<Utc>,
    claimant: &str,
) -> connector_store::Result<bool> {
    let start = now.timestamp() - now.timestamp().rem_euclid(length_secs);
    let period_start = DateTime::from_timestamp(start, 0).expect("a period start is a valid time");
    let won = sqlx::query(
        "INSERT INTO periodic_runs (name, period_start, claimed_by) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(which.name())
    .bind(period_start)
    .bind(claimant)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(won == 1)
}
