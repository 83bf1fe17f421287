//! The work the worker does, as queued jobs. Jobs are enqueued inside the caller's transaction,
//! so a job exists exactly when the row change that asks for it committed.

use std::time::Duration;

use apalis_core::task::builder::TaskBuilder;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Result, Store, TenantTx};

/// The queues, named explicitly: apalis' default name is the Rust type's path, which would strand
/// queued jobs whenever a type is renamed or moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    /// Validation, hook installation, disconnection, token checks: short, per connection.
    Connections,
    /// Backfill of history: long, paged, checkpointed.
    Backfill,
    /// Periodic catch-up of what webhooks missed.
    Sync,
}

impl Queue {
    pub const ALL: [Queue; 3] = [Queue::Connections, Queue::Backfill, Queue::Sync];

    pub fn name(self) -> &'static str {
        match self {
            Queue::Connections => "gitlab_connector.connections",
            Queue::Backfill => "gitlab_connector.backfill",
            Queue::Sync => "gitlab_connector.sync",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    Validate {
        connection: Uuid,
    },
    InstallHooks {
        connection: Uuid,
    },
    Backfill {
        connection: Uuid,
    },
    CatchUp {
        connection: Uuid,
    },
    TokenHealth {
        connection: Uuid,
    },
    Disconnect {
        connection: Uuid,
    },
    /// Read one object back from GitLab: what a webhook could not tell (a merge's time, a merge
    /// request's commits after a push, which of two same-second versions is the later).
    Refresh {
        connection: Uuid,
        object: ObjectRef,
    },
}

/// One object a read-back is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ObjectRef {
    /// With its notes and commits.
    MergeRequest {
        project: i64,
        iid: i64,
    },
    /// With its notes.
    Issue {
        project: i64,
        iid: i64,
    },
    Pipeline {
        project: i64,
        id: i64,
    },
}

impl Job {
    pub fn queue(&self) -> Queue {
        match self {
            Job::Validate { .. } | Job::InstallHooks { .. } | Job::TokenHealth { .. } | Job::Disconnect { .. } => Queue::Connections,
            Job::Backfill { .. } => Queue::Backfill,
            Job::CatchUp { .. } | Job::Refresh { .. } => Queue::Sync,
        }
    }

    pub fn connection(&self) -> Uuid {
        match self {
            Job::Validate { connection }
            | Job::InstallHooks { connection }
            | Job::Backfill { connection }
            | Job::CatchUp { connection }
            | Job::TokenHealth { connection }
            | Job::Disconnect { connection }
            | Job::Refresh { connection, .. } => *connection,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Job::Validate { .. } => "validate",
            Job::InstallHooks { .. } => "install_hooks",
            Job::Backfill { .. } => "backfill",
            Job::CatchUp { .. } => "catch_up",
            Job::TokenHealth { .. } => "token_health",
            Job::Disconnect { .. } => "disconnect",
            Job::Refresh { .. } => "refresh",
        }
    }
}

/// A job as stored in the queue: which tenant it runs for, and how many times it has been tried
/// (apalis' own attempt count is not used: each stored task runs once and our retry schedules a
/// new one with backoff).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub tenant: String,
    pub job: Job,
    #[serde(default)]
    pub attempt: u32,
    /// The W3C trace context of the request, delivery or job that queued this one, so that the
    /// job's trace links to it; absent when traces are not exported (and in jobs queued before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    /// A first attempt of `job` for `tenant`, linked to the current trace.
    pub fn new(tenant: String, job: Job) -> Self {
        Self { tenant, job, attempt: 0, traceparent: connector_telemetry::current_traceparent() }
    }
}

/// Queues `job` for the transaction's tenant, to run after `delay`; visible to workers once the
/// transaction commits.
pub async fn enqueue(tx: &mut TenantTx, job: Job, delay: Duration) -> Result<()> {
    let envelope = Envelope::new(tx.tenant().as_str().to_owned(), job);
    push(tx, &envelope, delay).await
}

/// Queues `job` to run now unless the same job for the transaction's tenant is already waiting
/// and due (not started, so it will read what this transaction commits): many webhooks asking
/// for the same read-back queue one job, not one each. A job scheduled for later does not count.
pub async fn enqueue_now_once(tx: &mut TenantTx, job: Job) -> Result<()> {
    let wanted = serde_json::to_value(&job).expect("a job serializes");
    let tenant = tx.tenant().as_str().to_owned();
    let waiting: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM apalis.jobs
                        WHERE job_type = $1 AND status = 'Pending' AND run_at <= now()
                          AND convert_from(job, 'UTF8')::jsonb -> 'job' = $2
                          AND convert_from(job, 'UTF8')::jsonb ->> 'tenant' = $3)",
    )
    .bind(job.queue().name())
    .bind(&wanted)
    .bind(&tenant)
    .fetch_one(&mut **tx)
    .await?;
    if waiting {
        return Ok(());
    }
    enqueue(tx, job, Duration::ZERO).await
}

/// Deletes the transaction tenant's jobs that are not running (waiting, or finished), of one
/// connection or of all: what a deletion leaves of them. A running job finds its connection gone
/// and ends.
pub async fn delete_waiting(tx: &mut TenantTx, connection: Option<Uuid>) -> Result<u64> {
    let tenant = tx.tenant().as_str().to_owned();
    let deleted = sqlx::query(
        "DELETE FROM apalis.jobs
         WHERE tenant = $1 AND status NOT IN ('Running', 'Queued')
           AND ($2::uuid IS NULL OR convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'connection' = $2::text)",
    )
    .bind(&tenant)
    .bind(connection)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(deleted)
}

/// Queues `envelope` as it is (a retry keeps its attempt count).
pub async fn push(conn: &mut sqlx::PgConnection, envelope: &Envelope, delay: Duration) -> Result<()> {
    let bytes = serde_json::to_vec(envelope).expect("a job envelope serializes");
    // One run per stored task: retries are ours (see Envelope).
    let task = TaskBuilder::new(bytes).run_after(delay).max_attempts(1).build();
    apalis_postgres::queries::push_tasks(conn, envelope.job.queue().name(), vec![task]).await.map_err(|e| match e {
        apalis_postgres::Error::Database(e) => crate::Error::Database(e),
        other => crate::Error::Queue(other.to_string()),
    })
}

/// Each queue's waiting jobs (due now or scheduled later) and how long the oldest due one has
/// waited, for the metrics. Queues with nothing waiting are reported with zeros.
pub async fn queue_states(store: &Store) -> Result<Vec<connector_telemetry::metrics::QueueState>> {
    let names: Vec<&str> = Queue::ALL.iter().map(|q| q.name()).collect();
    // Across tenants by the system role's function, which every pod's /metrics may call.
    let rows: Vec<(String, i64, f64)> =
        sqlx::query_as("SELECT queue, waiting, oldest_seconds FROM system_queue_states($1)").bind(&names).fetch_all(store.pool()).await?;
    Ok(rows
        .into_iter()
        .map(|(queue, depth, age)| connector_telemetry::metrics::QueueState {
            queue,
            depth,
            oldest_due_age: Duration::from_secs_f64(age.max(0.0)),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs queued before the field existed still run; without a trace context none is written.
    #[test]
    fn the_traceparent_is_optional_both_ways() {
        let connection = Uuid::nil();
        let old = format!(r#"{{"tenant":"acme","job":{{"kind":"validate","connection":"{connection}"}},"attempt":2}}"#);
        let envelope: Envelope = serde_json::from_str(&old).unwrap();
        assert_eq!(envelope, Envelope { tenant: "acme".into(), job: Job::Validate { connection }, attempt: 2, traceparent: None });
        assert_eq!(serde_json::to_string(&envelope).unwrap(), old);
        let traced = Envelope { traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()), ..envelope };
        let back: Envelope = serde_json::from_str(&serde_json::to_string(&traced).unwrap()).unwrap();
        assert_eq!(back, traced);
    }
}
