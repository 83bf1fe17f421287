//! Whether a connection is keeping up, and if not, why and since when. A connection's status
//! says where it stands in its lifecycle; its health says whether what Coworker reads through it
//! is current. It is worked out when asked, from what the worker and the ingest record as they
//! go, so it cannot drift from them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::connections::{self, Connection, Status};
use crate::hooks::HookStatus;
use crate::{Result, TenantTx};

/// How far past its due time a catch-up may be before the connection counts as behind: a due
/// catch-up waits for the tenant's turn and for GitLab's rate limit, which take minutes, not
/// more.
pub const CATCH_UP_GRACE: chrono::Duration = chrono::Duration::minutes(15);

/// How long a received delivery may wait to be applied before the connection counts as behind.
pub const BACKLOG_GRACE: chrono::Duration = chrono::Duration::minutes(5);

/// Ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = json!(HealthState::Warning))]
pub enum HealthState {
    /// Current: nothing to report.
    Healthy,
    /// Current, but something needs doing soon (a token about to expire).
    Warning,
    /// Not keeping up: what Coworker reads may be missing recent changes.
    Degraded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = json!(ReasonCode::TokenExpiring))]
pub enum ReasonCode {
    /// GitLab paused one of our hooks after failed deliveries.
    HookFailing,
    /// GitLab disabled one of our hooks for good.
    HookDisabled,
    /// One of our hooks is gone from GitLab (it is being re-created).
    HookMissing,
    /// Deliveries to one of our hooks fail verification (GitLab does not resend them).
    DeliveriesRefused,
    /// Received deliveries wait longer than `BACKLOG_GRACE` to be applied.
    DeliveriesBacklog,
    /// The backfill's or catch-up's attempts fail.
    SyncFailing,
    /// The catch-up is more than `CATCH_UP_GRACE` past due.
    SyncBehind,
    /// The access token expires within `connections::EXPIRY_WARNING_DAYS`.
    TokenExpiring,
}

impl ReasonCode {
    fn state(self) -> HealthState {
        match self {
            ReasonCode::TokenExpiring => HealthState::Warning,
            ReasonCode::HookFailing
            | ReasonCode::HookDisabled
            | ReasonCode::HookMissing
            | ReasonCode::DeliveriesRefused
            | ReasonCode::DeliveriesBacklog
            | ReasonCode::SyncFailing
            | ReasonCode::SyncBehind => HealthState::Degraded,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    /// For a person: what is wrong and what to do.
    pub message: String,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub state: HealthState,
    /// Oldest first.
    pub reasons: Vec<Reason>,
}

impl Health {
    fn from_reasons(mut reasons: Vec<Reason>) -> Self {
        reasons.sort_by_key(|r| r.since);
        let state = reasons.iter().map(|r| r.code.state()).max().unwrap_or(HealthState::Healthy);
        Self { state, reasons }
    }
}

#[derive(sqlx::FromRow)]
struct HookHealth {
    connection_id: Uuid,
    scope: crate::hooks::HookScope,
    gitlab_target_id: i64,
    status: crate::hooks::HookStatus,
    status_since: DateTime<Utc>,
    refused_since: Option<DateTime<Utc>>,
    last_refusal: Option<String>,
}

/// The health of each of `connections` (of the transaction's tenant) at `now`.
pub async fn of(tx: &mut TenantTx, connections: &[Connection], now: DateTime<Utc>) -> Result<HashMap<Uuid, Health>> {
    let ids: Vec<Uuid> = connections.iter().map(|c| c.id).collect();
    let (tenant, conn) = tx.parts();
    let hooks: Vec<HookHealth> = sqlx::query_as(
        "SELECT connection_id, scope, gitlab_target_id, status, status_since, refused_since, last_refusal
         FROM webhook_hooks WHERE tenant_id = $1 AND connection_id = ANY($2)
           AND (status IN ('failing', 'disabled', 'missing') OR refused_since IS NOT NULL)
         ORDER BY connection_id, scope, gitlab_target_id",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let backlog: Vec<(Uuid, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT connection_id, min(received_at), count(*) FROM webhook_deliveries
         WHERE tenant_id = $1 AND connection_id = ANY($2) AND status = 'received' AND received_at < $3
         GROUP BY connection_id",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .bind(now - BACKLOG_GRACE)
    .fetch_all(conn)
    .await?;
    Ok(connections
        .iter()
        .map(|c| {
            let hooks = hooks.iter().filter(|h| h.connection_id == c.id);
            let backlog = backlog.iter().find(|(id, _, _)| *id == c.id).map(|(_, since, n)| (*since, *n));
            (c.id, health(c, hooks, backlog, now))
        })
        .collect())
}

fn health<'a>(
    c: &Connection,
    hooks: impl Iterator<Item = &'a HookHealth>,
    backlog: Option<(DateTime<Utc>, i64)>,
    now: DateTime<Utc>,
) -> Health {
    let mut reasons = Vec::new();
    // A connection that needs the user, or is going away, has its status say so; health is
    // about one that is syncing.
    let syncing = matches!(c.status, Status::InstallingHooks | Status::Backfilling | Status::Live);
    if syncing {
        for h in hooks {
            let target = format!("our hook on GitLab {} {}", h.scope, h.gitlab_target_id);
            let hook_reason = match h.status {
                HookStatus::Failing => Some((
                    ReasonCode::HookFailing,
                    format!(
                        "GitLab paused {target} after failed deliveries; the catch-up brings in what it misses and asks GitLab to resume it"
                    ),
                )),
                HookStatus::Disabled => Some((
                    ReasonCode::HookDisabled,
                    format!(
                        "GitLab disabled {target} after repeated failed deliveries; the catch-up brings in what it misses and re-installs it"
                    ),
                )),
                HookStatus::Missing => {
                    Some((ReasonCode::HookMissing, format!("{target} was deleted in GitLab; the catch-up re-creates it")))
                }
                HookStatus::Pending | HookStatus::Active => None,
            };
            if let Some((code, message)) = hook_reason {
                reasons.push(Reason { code, message, since: h.status_since });
            }
            if let Some(since) = h.refused_since {
                let why = h.last_refusal.as_deref().unwrap_or("not verified");
                reasons.push(Reason {
                    code: ReasonCode::DeliveriesRefused,
                    message: format!(
                        "deliveries to {target} are refused ({why}); GitLab does not resend them, the catch-up brings them in"
                    ),
                    since,
                });
            }
        }
        if let Some((since, n)) = backlog {
            reasons.push(Reason {
                code: ReasonCode::DeliveriesBacklog,
                message: format!(
                    "{n} received webhook {} to be applied, the oldest since {since}",
                    if n == 1 { "delivery waits" } else { "deliveries wait" }
                ),
                since,
            });
        }
        if let Some(since) = c.sync_failing_since {
            let why = c.sync_failure.as_deref().unwrap_or("no reason recorded");
            reasons.push(Reason {
                code: ReasonCode::SyncFailing,
                message: format!("reading from GitLab fails and is being retried: {why}"),
                since,
            });
        }
    }
    if c.status == Status::Live
        && let Some(due) = c.next_catch_up_at.filter(|due| now - *due > CATCH_UP_GRACE)
    {
        let minutes = (now - due).num_minutes();
        reasons.push(Reason {
            code: ReasonCode::SyncBehind,
            message: format!("the catch-up due at {due} has not finished, {minutes} minutes later"),
            since: due,
        });
    }
    let user_matters = !matches!(c.status, Status::Deleting | Status::NeedsReauth | Status::Invalid);
    if user_matters
        && let Some(expires) = c.token_expires_at
        && let Some(warn_from) = expires.checked_sub_days(chrono::Days::new(connections::EXPIRY_WARNING_DAYS as u64))
        && now.date_naive() >= warn_from
    {
        reasons.push(Reason {
            code: ReasonCode::TokenExpiring,
            message: connections::expiring_advice(expires),
            since: warn_from.and_time(chrono::NaiveTime::MIN).and_utc(),
        });
    }
    Health::from_reasons(reasons)
}
