//! The jobs that talk to GitLab: validate a connection, install its hooks, backfill its
//! history. Each moves the connection along and enqueues the next step in the same transaction
//! as its own result, so a crash between steps loses nothing and repeats nothing.

mod backfill;
mod catch_up;
mod disconnect;
pub use disconnect::Disconnected;
mod history;
mod hooks;
mod locks;
mod reconcile;
mod refresh;
mod rotation;
mod step;
mod streams;
mod token_health;
mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use connector_store::connections::{self, Connection, Status};
use connector_store::jobs::Job;
use connector_store::{Store, TenantId};
use gitlab_client::{ClientOptions, GitLabClient, UrlPolicy};
use secrecy::SecretString;
use uuid::Uuid;

use crate::rate_budget::SharedRateBudget;
use crate::runner::{JobError, Jobs};

/// Tunables of the GitLab jobs.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// The base URL GitLab sends webhooks to (`PUBLIC_URL`).
    pub public_url: url::Url,
    /// How long one backfill job works before it queues its continuation behind other
    /// connections' work: the fairness between tenants.
    pub backfill_slice: Duration,
    /// How soon a live connection gets its first catch-up.
    pub catch_up_interval: chrono::Duration,
    /// How often a catch-up compares each stream's ids with GitLab's, to find what GitLab
    /// deleted without telling (merge requests, issues, notes, pipelines): a deletion leaves our
    /// data within this plus `catch_up_interval`.
    pub reconcile_interval: chrono::Duration,
    /// Backfills and catch-ups one tenant may run at once across all workers, however many
    /// connections it has: the rest wait their turn, and other tenants' work goes first.
    pub tenant_concurrency: usize,
    /// How long a backfill or catch-up keeps retrying while it gets nowhere (GitLab down or
    /// failing) before its attempts start to count towards giving up.
    pub outage_patience: Duration,
    /// How long a token rotation marked as asked is taken to be in flight: past it, one not
    /// finished was cut off, and the token is checked instead of rotated again. Longer than
    /// one GitLab request may take.
    pub token_rotation_lease: Duration,
}

/// Two minutes: four times the GitLab client's whole-request timeout.
pub const DEFAULT_TOKEN_ROTATION_LEASE: Duration = Duration::from_secs(120);

/// One day: a GitLab outage or maintenance window of hours does not stop a sync.
pub const DEFAULT_OUTAGE_PATIENCE: Duration = Duration::from_secs(24 * 3600);

pub struct GitLabJobs {
    store: Store,
    policy: UrlPolicy,
    client_options: ClientOptions,
    settings: SyncSettings,
}

impl GitLabJobs {
    pub fn new(store: Store, policy: UrlPolicy, client_options: ClientOptions, settings: SyncSettings) -> Self {
        Self { store, policy, client_options, settings }
    }

    /// The connection and its decrypted token; none when it is gone or paused (a paused
    /// connection's jobs end without reading GitLab: resuming it starts them again).
    async fn load(&self, tenant: &TenantId, id: Uuid) -> Result<Option<(Connection, SecretString)>, JobError> {
        let loaded = self.load_any(tenant, id).await?;
        if let Some((connection, _)) = &loaded
            && connection.status == Status::Paused
        {
            tracing::info!(connection = %id, "paused: the job ends without reading GitLab");
            return Ok(None);
        }
        Ok(loaded)
    }

    /// The connection and its decrypted token, paused or not; none when it is gone.
    async fn load_any(&self, tenant: &TenantId, id: Uuid) -> Result<Option<(Connection, SecretString)>, JobError> {
        let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
        let connection = match connections::get(&mut tx, id).await {
            Ok(c) => c,
            // Deleted meanwhile: nothing left to do.
            Err(connector_store::Error::NotFound) => return Ok(None),
            Err(e) => return Err(retry(e)),
        };
        let token = connections::access_token(&mut tx, self.store.keys(), id).await.map_err(retry)?;
        Ok(Some((connection, token)))
    }

    /// A client whose pacing draws on the budget shared by every pod that acts as the same
    /// GitLab user (or, before validation has named the user, as this connection).
    fn client(&self, connection: &Connection, token: SecretString) -> Result<GitLabClient, gitlab_client::Error> {
        let key = match connection.gitlab_user_id {
            Some(user) => format!("{}#user:{user}", connection.gitlab_url),
            None => format!("{}#connection:{}", connection.gitlab_url, connection.id),
        };
        let mut options = self.client_options.clone();
        options.rate_budget = Arc::new(SharedRateBudget::new(self.store.pool().clone(), key));
        options.observer = Some(Arc::new(GitLabMetrics));
        GitLabClient::new(&connection.gitlab_url, token, self.policy.clone(), options)
    }

    /// Records a problem only the user can fix; the job itself is done.
    async fn user_problem(&self, tenant: &TenantId, id: Uuid, status: Status, message: &str) -> Result<(), JobError> {
        tracing::info!(connection = %id, ?status, message, "connection needs the user");
        let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
        match connections::set_status(&mut tx, id, status, Some(message)).await {
            Ok(()) | Err(connector_store::Error::NotFound) => {}
            Err(e) => return Err(retry(e)),
        }
        tx.commit().await.map_err(retry)
    }
}

impl Jobs for GitLabJobs {
    async fn run(&self, tenant: &TenantId, job: &Job) -> Result<(), JobError> {
        let outcome = match job {
            Job::Validate { connection } => self.validate(tenant, *connection).await,
            Job::InstallHooks { connection } => self.install_hooks(tenant, *connection).await,
            Job::Backfill { connection } => self.moving_on(tenant, *connection, self.backfill(tenant, *connection)).await,
            Job::TokenHealth { connection } => self.token_health(tenant, *connection).await,
            Job::Disconnect { connection } => self.disconnect(tenant, *connection).await,
            Job::CatchUp { connection } => self.moving_on(tenant, *connection, self.catch_up(tenant, *connection)).await,
            Job::Refresh { connection, object } => self.refresh(tenant, *connection, object).await,
        };
        if matches!(job, Job::Backfill { .. } | Job::CatchUp { .. }) {
            self.note_sync_outcome(tenant, job.connection(), &outcome).await;
        }
        outcome
    }
}

impl GitLabJobs {
    /// Runs a paged job. A failure after it stored a page is `Interrupted` (no attempt used up):
    /// a backfill through a GitLab that fails every few pages moves on with each run, and
    /// giving it up after a count of such runs would stop a sync that was getting there. One
    /// that got nowhere is an `Outage` (growing backoff, no attempt limit) until the sync has
    /// failed for `outage_patience`; then its attempts count, and a sync that keeps failing ends
    /// as `failed` with the reason. Meanwhile the connection's health shows it failing.
    async fn moving_on(&self, tenant: &TenantId, id: Uuid, job: impl Future<Output = Result<(), JobError>>) -> Result<(), JobError> {
        let progress = || async {
            let mut tx = self.store.tenant_tx(tenant).await?;
            connector_store::sync::last_progress(&mut tx, id).await
        };
        // Unreadable (the database busy or restarting), progress counts as none.
        let before = progress().await.ok();
        match job.await {
            Err(JobError::Retry { reason, after: None }) => {
                if let Some(before) = before
                    && progress().await.is_ok_and(|after| after > before)
                {
                    return Err(JobError::Interrupted { reason });
                }
                let failing_since = async {
                    let mut tx = self.store.tenant_tx(tenant).await?;
                    connections::get(&mut tx, id).await.map(|c| c.sync_failing_since)
                };
                let patient = match failing_since.await {
                    Ok(since) => {
                        let patience = chrono::Duration::from_std(self.settings.outage_patience).unwrap_or(chrono::Duration::MAX);
                        since.is_none_or(|since| chrono::Utc::now() - since < patience)
                    }
                    Err(_) => true,
                };
                Err(if patient { JobError::Outage { reason } } else { JobError::Retry { reason, after: None } })
            }
            other => other,
        }
    }

    /// Keeps the connection's health true about its syncing: failing from the first failed
    /// attempt (the job's own retries may take many minutes to run out), fine again once one
    /// succeeds. Waiting out GitLab's rate limit is pacing, not failing. Best effort: the job's
    /// outcome stands whether or not this is written.
    async fn note_sync_outcome(&self, tenant: &TenantId, id: Uuid, outcome: &Result<(), JobError>) {
        let noted = async {
            let mut tx = self.store.tenant_tx(tenant).await?;
            match outcome {
                Ok(()) => connections::clear_sync_failure(&mut tx, id).await?,
                Err(JobError::Retry { after: Some(_), .. }) => return Ok(()),
                Err(error) => connections::record_sync_failure(&mut tx, id, &error.to_string()).await?,
            }
            tx.commit().await
        };
        if let Err(error) = noted.await {
            tracing::warn!(%error, connection = %id, "could not record the sync's health");
        }
    }
}

/// Counts every client's requests and rate-limit waits in the process's metrics.
struct GitLabMetrics;

impl gitlab_client::Observer for GitLabMetrics {
    fn attempt(&self, status: Option<u16>) {
        connector_telemetry::metrics::gitlab_request(status);
    }

    fn rate_limit_wait(&self, wait: Duration) {
        connector_telemetry::metrics::gitlab_rate_limit_wait(wait);
    }
}

/// A store failure is worth retrying: the database may be restarting.
fn retry(error: connector_store::Error) -> JobError {
    JobError::Retry { reason: format!("database: {error}"), after: None }
}

/// What a GitLab failure means for the job, when it is not a problem for the user to fix.
fn gitlab_retry(error: gitlab_client::Error) -> JobError {
    match error {
        gitlab_client::Error::RateLimited { retry_after } => {
            JobError::Retry { reason: "GitLab rate limit reached".into(), after: Some(retry_after) }
        }
        other => JobError::Retry { reason: other.to_string(), after: None },
    }
}
