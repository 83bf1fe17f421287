//! GitLab's rate limit is per user, across all our pods. This budget keeps what GitLab's
//! `RateLimit-*` headers last said in PostgreSQL, so every pod using the same GitLab user draws on
//! one window and their requests are spaced out together once it runs low, instead of ten pods
//! each pacing as if alone and making ten times the requests.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use gitlab_client::{PacingConfig, RateBudget, RateLimitObservation};
use sqlx::PgPool;

pub struct SharedRateBudget {
    pool: PgPool,
    key: String,
    config: PacingConfig,
}

impl SharedRateBudget {
    /// `key` names the GitLab user on its instance (never the token).
    pub fn new(pool: PgPool, key: String) -> Self {
        // A worker waits at most a few seconds for a slot: when the window is spent, the request
        // goes out, GitLab answers 429, and the job is rescheduled for the reset instead of
        // holding a worker slot through it.
        let config = PacingConfig { max_delay: Duration::from_secs(5), ..PacingConfig::default() };
        Self { pool, key, config }
    }

    /// Reserves the next request slot and returns how long to wait for it. The spacing rule is
    /// the client's own (`pacing_delay`), computed in the database so that reservations from all
    /// pods are serialized by the row lock.
    pub async fn reserve(&self) -> Result<Duration, sqlx::Error> {
        let wait: Option<f64> = sqlx::query_scalar(
            "WITH b AS (
                 SELECT budget_key, remaining, request_limit, reset_at, greatest(coalesce(next_slot, now()), now()) AS slot
                 FROM gitlab_rate_budgets WHERE budget_key = $1 AND reset_at > now() FOR UPDATE
             )
             UPDATE gitlab_rate_budgets t SET
                 remaining = greatest(b.remaining - 1, 0),
                 next_slot = b.slot + least(
                     CASE WHEN b.remaining > greatest(coalesce(b.request_limit, 0)::bigint * $2 / 100, $3) THEN interval '0'
                          WHEN b.remaining = 0 THEN b.reset_at - now()
                          ELSE (b.reset_at - now()) / b.remaining END,
                     make_interval(secs => $4))
             FROM b WHERE t.budget_key = b.budget_key
             RETURNING extract(epoch FROM b.slot - now())::float8",
        )
        .bind(&self.key)
        .bind(self.config.low_water_percent as i64)
        .bind(self.config.low_water_min as i64)
        .bind(self.config.max_delay.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        Ok(wait.map_or(Duration::ZERO, |s| Duration::from_secs_f64(s.max(0.0))))
    }

    /// Records what a response said. A newer window replaces the old one; within one window the
    /// lowest remaining count wins, since responses from several pods arrive out of order.
    pub async fn record(&self, observation: RateLimitObservation) -> Result<(), sqlx::Error> {
        let (Some(remaining), Some(reset)) = (observation.remaining, observation.reset_unix) else { return Ok(()) };
        sqlx::query(
            "INSERT INTO gitlab_rate_budgets AS t (budget_key, request_limit, remaining, reset_at)
             VALUES ($1, $2, $3, to_timestamp($4))
             ON CONFLICT (budget_key) DO UPDATE SET
                 request_limit = coalesce(excluded.request_limit, t.request_limit),
                 remaining = CASE WHEN excluded.reset_at > t.reset_at THEN excluded.remaining
                                  ELSE least(t.remaining, excluded.remaining) END,
                 next_slot = CASE WHEN excluded.reset_at > t.reset_at THEN NULL ELSE t.next_slot END,
                 reset_at = greatest(t.reset_at, excluded.reset_at),
                 updated_at = now()",
        )
        .bind(&self.key)
        .bind(observation.limit.map(|l| l.min(i32::MAX as u64) as i32))
        .bind(remaining.min(i32::MAX as u64) as i32)
        .bind(reset as f64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl RateBudget for SharedRateBudget {
    fn before_request(&self) -> Pin<Box<dyn Future<Output = Duration> + Send + '_>> {
        Box::pin(async move {
            // Without the database the budget cannot be shared; GitLab's 429 remains the backstop.
            let wait = self.reserve().await.unwrap_or_else(|error| {
                tracing::warn!(%error, "shared rate budget unavailable");
                Duration::ZERO
            });
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            wait
        })
    }

    fn observe(&self, observation: RateLimitObservation) {
        let budget = Self { pool: self.pool.clone(), key: self.key.clone(), config: self.config };
        tokio::spawn(async move {
            if let Err(error) = budget.record(observation).await {
                tracing::warn!(%error, "could not record GitLab rate-limit headers");
            }
        });
    }
}
