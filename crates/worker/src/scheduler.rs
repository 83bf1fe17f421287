//! Periodic work that must run once per period across all replicas, not once per replica.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use connector_store::Store;
use connector_store::jobs::{self, Envelope, Job};
use uuid::Uuid;

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

    /// The connections each period's work is for.
    fn due(self) -> &'static str {
        match self {
            Periodic::CatchUp => "status = 'live' AND next_catch_up_at <= now()",
            Periodic::TokenHealth => "status IN ('live', 'backfilling', 'installing_hooks')",
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

/// How often periodic work runs.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleConfig {
    pub catch_up_every: Duration,
    pub token_check_every: Duration,
    /// How often each replica tries to claim the current periods.
    pub tick: Duration,
}

/// Runs on every worker replica; each period's work is queued by the one replica that claims it.
pub async fn run_scheduler(store: Store, config: ScheduleConfig, claimant: String, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        for (which, every) in [(Periodic::CatchUp, config.catch_up_every), (Periodic::TokenHealth, config.token_check_every)] {
            let result = async {
                if claim_period(&store, which, every.as_secs().max(1) as i64, now, &claimant).await? {
                    enqueue_due(&store, which).await
                } else {
                    Ok(0)
                }
            };
            match result.await {
                Ok(0) => {}
                Ok(n) => tracing::info!(kind = which.name(), jobs = n, "periodic jobs queued"),
                Err(error) => tracing::warn!(%error, kind = which.name(), "periodic scheduling failed; next tick retries"),
            }
        }
    }
}

/// Queues the periodic job for every connection it is due for: what the replica that claimed a
/// period does with it. The list is read as the system role (across tenants, scheduler columns
/// only); the jobs carry their tenant.
pub async fn enqueue_due(store: &Store, which: Periodic) -> connector_store::Result<usize> {
    let mut tx = store.system_tx().await?;
    let due: Vec<(String, Uuid)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT tenant_id, id FROM gitlab_connections WHERE {} ORDER BY next_catch_up_at NULLS FIRST",
        which.due()
    )))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut conn = store.pool().acquire().await?;
    for (tenant, connection) in &due {
        let job = match which {
            Periodic::CatchUp => Job::CatchUp { connection: *connection },
            Periodic::TokenHealth => Job::TokenHealth { connection: *connection },
        };
        jobs::push(&mut conn, &Envelope::new(tenant.clone(), job), Duration::ZERO).await?;
    }
    Ok(due.len())
}
