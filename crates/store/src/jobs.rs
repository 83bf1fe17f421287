//! The work the worker does, as queued jobs. Jobs are enqueued inside the caller's transaction,
//! so a job exists exactly when the row change that asks for it committed.

use std::time::Duration;

use apalis_core::task::builder::TaskBuilder;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Result, TenantTx};

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
    Validate { connection: Uuid },
    InstallHooks { connection: Uuid },
    Backfill { connection: Uuid },
    CatchUp { connection: Uuid },
    TokenHealth { connection: Uuid },
    Disconnect { connection: Uuid },
}

impl Job {
    pub fn queue(&self) -> Queue {
        match self {
            Job::Validate { .. } | Job::InstallHooks { .. } | Job::TokenHealth { .. } | Job::Disconnect { .. } => {
                Queue::Connections
            }
            Job::Backfill { .. } => Queue::Backfill,
            Job::CatchUp { .. } => Queue::Sync,
        }
    }

    pub fn connection(&self) -> Uuid {
        match self {
            Job::Validate { connection }
            | Job::InstallHooks { connection }
            | Job::Backfill { connection }
            | Job::CatchUp { connection }
            | Job::TokenHealth { connection }
            | Job::Disconnect { connection } => *connection,
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
}

/// Queues `job` for the transaction's tenant, to run after `delay`; visible to workers once the
/// transaction commits.
pub async fn enqueue(tx: &mut TenantTx, job: Job, delay: Duration) -> Result<()> {
    let envelope = Envelope { tenant: tx.tenant().as_str().to_owned(), job, attempt: 0 };
    push(tx, &envelope, delay).await
}

/// Queues `envelope` as it is (a retry keeps its attempt count).
pub async fn push(conn: &mut sqlx::PgConnection, envelope: &Envelope, delay: Duration) -> Result<()> {
    let bytes = serde_json::to_vec(envelope).expect("a job envelope serializes");
    // One run per stored task: retries are ours (see Envelope).
    let task = TaskBuilder::new(bytes).run_after(delay).max_attempts(1).build();
    apalis_postgres::queries::push_tasks(conn, envelope.job.queue().name(), vec![task])
        .await
        .map_err(|e| match e {
            apalis_postgres::Error::Database(e) => crate::Error::Database(e),
            other => crate::Error::Queue(other.to_string()),
        })
}
