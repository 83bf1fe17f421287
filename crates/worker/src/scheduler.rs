//! Periodic work that must run once per period across all replicas, not once per replica.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use connector_store::jobs::{self, Envelope, Job};
use connector_store::{Store, connections};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Periodic {
    /// Catch up on what webhooks missed, and check each hook.
    CatchUp,
    /// Check every token: revoked, expired, expiring soon.
    TokenHealth,
    /// Queue again the step of every connection left in a moving state with no job.
    Stalled,
}

impl Periodic {
    pub fn name(self) -> &'static str {
        match self {
            Periodic::CatchUp => "catch_up",
            Periodic::TokenHealth => "token_health",
            Periodic::Stalled => "stalled",
        }
    }
}

/// How long a connection in a moving state may go without a job before its step is queued
/// again. A step always queues the next in the transaction that records its own result, and a
/// job cut off with its worker is handed on after the worker's heartbeats stop, so this only
/// catches what escaped both (a job lost between the queue and its dead letter, or removed by
/// hand). With the check's period, no connection waits without a job for longer than
/// `STALLED_AFTER + STALL_CHECK_EVERY`.
pub const STALLED_AFTER: Duration = Duration::from_secs(5 * 60);
pub const STALL_CHECK_EVERY: Duration = Duration::from_secs(60);

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
        let periods = [
            (Periodic::CatchUp, config.catch_up_every),
            (Periodic::TokenHealth, config.token_check_every),
            (Periodic::Stalled, STALL_CHECK_EVERY),
        ];
        for (which, every) in periods {
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
/// period does with it. The list is read by the system role's function (across tenants,
/// scheduler columns only); the jobs carry their tenant.
pub async fn enqueue_due(store: &Store, which: Periodic) -> connector_store::Result<usize> {
    let (kind, job): (&str, fn(Uuid) -> Job) = match which {
        Periodic::CatchUp => ("catch_up", |connection| Job::CatchUp { connection }),
        Periodic::TokenHealth => ("token_health", |connection| Job::TokenHealth { connection }),
        Periodic::Stalled => return requeue_stalled(store, STALLED_AFTER).await,
    };
    let due: Vec<(String, Uuid)> =
        sqlx::query_as("SELECT tenant_id, id FROM system_connections_due($1)").bind(kind).fetch_all(store.pool()).await?;
    let mut conn = store.pool().acquire().await?;
    for (tenant, connection) in &due {
        jobs::push(&mut conn, &Envelope::new(tenant.clone(), job(*connection)), Duration::ZERO).await?;
    }
    Ok(due.len())
}

/// Queues again the step of every connection that has waited in a moving state, with no job,
/// for longer than `quiet`.
pub async fn requeue_stalled(store: &Store, quiet: Duration) -> connector_store::Result<usize> {
    let stalled = connections::stalled(store, quiet).await?;
    let mut conn = store.pool().acquire().await?;
    for (tenant, id, status) in &stalled {
        let Some(job) = status.next_job(*id) else { continue };
        tracing::warn!(%tenant, connection = %id, status = status.as_str(), "connection had no job moving it along; queueing its step again");
        jobs::push(&mut conn, &Envelope::new(tenant.as_str().to_owned(), job), Duration::ZERO).await?;
    }
    Ok(stalled.len())
}
