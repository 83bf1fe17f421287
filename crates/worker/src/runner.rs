use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage};
use connector_store::jobs::{self, Envelope, Job, Queue};
use connector_store::{Store, TenantId};
use connector_telemetry::metrics::JobOutcome;
use tracing::Instrument;

use crate::retry::RetryPolicy;

/// Why a job did not finish, and whether it is worth another try.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth retrying: after `after` when GitLab said so (Retry-After), else with backoff.
    #[error("{reason}")]
    Retry { reason: String, after: Option<Duration> },
    /// Failed after storing part of its work (a backfill through a flaky GitLab): worth
    /// retrying with backoff, and, since the job is moving on, without using up an attempt, so a
    /// long job is never given up while each run gets somewhere.
    #[error("{reason}")]
    Interrupted { reason: String },
    /// A backfill or catch-up that could not get anywhere while GitLab (or the database) fails:
    /// retried with growing backoff, without a limit on attempts, since an outage is no reason
    /// to stop a sync for good; the caller bounds how long (`SyncSettings::outage_patience`).
    #[error("{reason}")]
    Outage { reason: String },
    /// Retrying cannot help; the reason is for the user or operator.
    #[error("{0}")]
    Permanent(String),
}

/// What the jobs do. The worker crate runs them; tests can run stand-ins.
pub trait Jobs: Send + Sync + 'static {
    fn run(&self, tenant: &TenantId, job: &Job) -> impl Future<Output = Result<(), JobError>> + Send;
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Prefix of this process's worker names; each worker appends its queue and a random suffix,
    /// so names are unique per pod even when pods share a hostname pattern.
    pub name: String,
    /// Jobs run at once per queue in this process.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// How long a stopping worker lets running jobs finish before it exits.
    pub grace: Duration,
    /// How often idle workers look for new jobs (apalis polls).
    pub poll_interval: Duration,
    /// How often a worker says it is alive. Jobs held by a worker silent for
    /// `heartbeat * missed_heartbeats` (a killed pod) are handed to others.
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            name: "worker".into(),
            concurrency: 4,
            retry: RetryPolicy::default(),
            grace: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            heartbeat: Duration::from_secs(10),
            missed_heartbeats: 3,
        }
    }
}

struct Shared<J> {
    jobs: J,
    store: Store,
    retry: RetryPolicy,
}

/// Runs one worker per queue until `shutdown` resolves, then lets running jobs finish within
/// the grace period.
pub async fn run_workers<J: Jobs>(
    store: Store,
    jobs: J,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared { jobs, store: store.clone(), retry: config.retry });
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    // A worker whose poll fails (the database restarting or unreachable for a while) ends; without
    // a restart this process would stay up, look ready, and never run another job.
    let mut monitor = Monitor::new().shutdown_timeout(config.grace).should_restart(|worker, error| {
        tracing::warn!(worker = worker.name(), %error, "queue worker stopped; restarting it");
        !worker.is_shutting_down()
    });
    for queue in Queue::ALL {
        let backend_config = Config::default()
            .queue(queue.name())
            .batch_size(config.concurrency)
            .heartbeat_interval(config.heartbeat)
            .missed_heartbeats(config.missed_heartbeats);
        let name = format!("{}-{}-{}", config.name, queue.name(), &suffix[..12]);
        let shared = shared.clone();
        let pool = store.pool().clone();
        let poll = config.poll_interval;
        let concurrency = config.concurrency;
        monitor = monitor.register(move |restarts| {
            // A restart drops the jobs the worker was running. Under a new name, the old name's
            // heartbeat stops and its jobs are handed on once it has been silent long enough;
            // under the same name the restarted worker would keep them marked running for good.
            let name = if restarts == 0 { name.clone() } else { format!("{name}-r{restarts}") };
            let backend = PostgresStorage::<Envelope>::new(&pool)
                .with_config(backend_config.clone())
                .poll_with_strategy(Strategy::new().interval(poll));
            WorkerBuilder::new(name).backend(backend).data(shared.clone()).concurrency(concurrency).build(handle::<J>)
        });
    }
    monitor
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)
}

/// Runs one job, and decides what its failure means: a new attempt later, or a dead letter.
async fn handle<J: Jobs>(envelope: Envelope, shared: Data<Arc<Shared<J>>>) -> Result<(), BoxDynError> {
    let tenant = TenantId::parse(&envelope.tenant)?;
    // A root span, not a child of whatever apalis is doing: each job run is a trace of its own,
    // linked to the one that queued it.
    let span = tracing::info_span!(
        parent: None,
        "job",
        otel.name = %format_args!("job {}", envelope.job.kind()),
        kind = envelope.job.kind(),
        tenant = %tenant,
        connection = %envelope.job.connection(),
        attempt = envelope.attempt,
    );
    connector_telemetry::link_to_traceparent(&span, envelope.traceparent.as_deref());
    // Instrumented rather than entered: a guard held across awaits would leave the span entered
    // on whatever thread polls next, attributing other tasks' events to this job.
    let outcome = run_once(&envelope, &tenant, &shared).instrument(span).await;
    if let Ok(outcome) = &outcome {
        connector_telemetry::metrics::job(envelope.job.kind(), *outcome);
    }
    outcome.map(|_| ())
}

async fn run_once<J: Jobs>(envelope: &Envelope, tenant: &TenantId, shared: &Shared<J>) -> Result<JobOutcome, BoxDynError> {
    let error = match shared.jobs.run(tenant, &envelope.job).await {
        Ok(()) => return Ok(JobOutcome::Succeeded),
        Err(error) => error,
    };
    let delay = match &error {
        JobError::Retry { after, .. } => shared.retry.next_delay(envelope.attempt, *after),
        // The backoff keeps the level it reached: a run that moves on is not a reason to ask
        // a failing GitLab more often.
        JobError::Interrupted { .. } | JobError::Outage { .. } => Some(shared.retry.backoff(envelope.attempt, crate::retry::random_u64())),
        JobError::Permanent(_) => None,
    };
    match delay {
        Some(delay) => {
            tracing::warn!(%error, retry_in = ?delay, "job failed; retrying");
            // Waiting out GitLab's rate limit is GitLab pacing us, not the job failing: it uses up
            // no attempt, so a long spell of 429s (another client spending the same user's
            // budget) delays the job but never dead-letters it.
            let attempt = match &error {
                JobError::Retry { after: Some(_), .. } | JobError::Interrupted { .. } => envelope.attempt,
                _ => envelope.attempt + 1,
            };
            // Keeps the traceparent: every attempt links to what first queued the job.
            let next = Envelope { attempt, ..envelope.clone() };
            let mut conn = shared.store.pool().acquire().await?;
            jobs::push(&mut conn, &next, delay).await?;
            Ok(JobOutcome::Retried)
        }
        None => {
            tracing::error!(%error, "job failed for good; dead-lettered");
            dead_letter(&shared.store, tenant, envelope, &error.to_string()).await?;
            Ok(JobOutcome::DeadLettered)
        }
    }
}

/// Records the job and its reason where the API shows them and, if it was the step moving its
/// connection along, stops the connection as failed with that reason.
async fn dead_letter(store: &Store, tenant: &TenantId, envelope: &Envelope, reason: &str) -> connector_store::Result<()> {
    let mut tx = store.tenant_tx(tenant).await?;
    connector_store::dead_letters::insert(&mut tx, envelope, reason).await?;
    connector_store::connections::give_up(&mut tx, &envelope.job, envelope.attempt + 1, reason).await?;
    tx.commit().await
}
