//! The queue machinery against a real PostgreSQL: transactional enqueue, once-only execution
//! across workers, retries with backoff, dead letters, once-per-period claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use connector_store::connections::{self, Status};
use connector_store::jobs::{self, Job};
use connector_store::{Store, TenantId};
use connector_test_support::{app_store, connection, tenant};
use connector_worker::{JobError, Jobs, Periodic, RetryPolicy, WorkerConfig, claim_period, run_workers};
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Records every run; fails each connection's job as many times as it is told to.
#[derive(Clone, Default)]
struct Script {
    runs: Arc<Mutex<HashMap<Uuid, Vec<Instant>>>>,
    failures: Arc<Mutex<HashMap<Uuid, (u32, Failure)>>>,
    /// Connections whose next run never ends (a job cut off mid-way).
    hangs: Arc<Mutex<std::collections::HashSet<Uuid>>>,
}

#[derive(Clone, Copy)]
enum Failure {
    Retry,
    Permanent,
    /// GitLab's 429, with the Retry-After it gave.
    RateLimited,
    /// A failure after the run stored some of its work.
    Interrupted,
    /// A sync that got nowhere while GitLab was failing.
    Outage,
}

impl Script {
    fn fail(&self, connection: Uuid, times: u32, failure: Failure) {
        self.failures.lock().unwrap().insert(connection, (times, failure));
    }

    fn runs(&self, connection: Uuid) -> usize {
        self.runs.lock().unwrap().get(&connection).map_or(0, Vec::len)
    }

    async fn wait_for(&self, connection: Uuid, runs: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.runs(connection) < runs {
            assert!(Instant::now() < deadline, "{connection} ran {} of {runs} times", self.runs(connection));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Jobs for Script {
    async fn run(&self, _tenant: &TenantId, job: &Job) -> Result<(), JobError> {
        let connection = job.connection();
        self.runs.lock().unwrap().entry(connection).or_default().push(Instant::now());
        if self.hangs.lock().unwrap().remove(&connection) {
            std::future::pending::<()>().await;
        }
        let mut failures = self.failures.lock().unwrap();
        match failures.get_mut(&connection) {
            Some((left, failure)) if *left > 0 => {
                *left -= 1;
                Err(match failure {
                    Failure::Permanent => JobError::Permanent("the token lacks scope api".into()),
                    Failure::Retry => JobError::Retry { reason: "GitLab answered 503".into(), after: None },
                    Failure::RateLimited => {
                        JobError::Retry { reason: "GitLab rate limit reached".into(), after: Some(Duration::from_millis(10)) }
                    }
                    Failure::Interrupted => JobError::Interrupted { reason: "GitLab answered 502 after 3 pages".into() },
                    Failure::Outage => JobError::Outage { reason: "GitLab unavailable after 4 attempts".into() },
                })
            }
            _ => Ok(()),
        }
    }
}

fn config(name: &str) -> WorkerConfig {
    WorkerConfig {
        name: name.into(),
        concurrency: 4,
        retry: RetryPolicy { max_attempts: 3, base: Duration::from_millis(100), cap: Duration::from_millis(200) },
        grace: Duration::from_secs(5),
        poll_interval: Duration::from_millis(100),
        heartbeat: Duration::from_secs(1),
        missed_heartbeats: 2,
    }
}

fn start(store: &Store, script: &Script, name: &str) -> (oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let (stop, stopped) = oneshot::channel();
    let handle = tokio::spawn(run_workers(store.clone(), script.clone(), config(name), async {
        stopped.await.ok();
    }));
    (stop, handle)
}

async fn enqueue(store: &Store, job: Job, commit: bool) {
    let mut tx = store.tenant_tx(&tenant()).await.unwrap();
    jobs::enqueue(&mut tx, job, Duration::ZERO).await.unwrap();
    if commit {
        tx.commit().await.unwrap();
    }
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_job_exists_only_if_its_transaction_commits(owner: PgPool) {
    let store = app_store(&owner, 8).await;
    let script = Script::default();
    let (kept, dropped) = (connection(&store).await, connection(&store).await);
    enqueue(&store, Job::Validate { connection: dropped }, false).await;
    enqueue(&store, Job::Validate { connection: kept }, true).await;
    let (stop, handle) = start(&store, &script, "w1");
    script.wait_for(kept, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(script.runs(dropped), 0, "a rolled-back enqueue ran");
    assert_eq!(script.runs(kept), 1);
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn two_workers_run_every_job_once(owner: PgPool) {
    let store = app_store(&owner, 8).await;
    let script = Script::default();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(connection(&store).await);
    }
    let (stop_a, a) = start(&store, &script, "pod-a");
    let (stop_b, b) = start(&store, &script, "pod-b");
    // Jobs of every queue, enqueued while both pods are polling.
    for (i, id) in ids.iter().enumerate() {
        for job in [Job::Validate { connection: *id }, Job::Backfill { connection: *id }, Job::CatchUp { connection: *id }] {
            let mut tx = store.tenant_tx(&tenant()).await.unwrap();
            jobs::enqueue(&mut tx, job, Duration::ZERO).await.unwrap();
            tx.commit().await.unwrap();
        }
        if i == 2 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    for id in &ids {
        script.wait_for(*id, 3).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in &ids {
        assert_eq!(script.runs(*id), 3, "{id}: each of its three jobs once");
    }
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn failures_retry_with_backoff_then_dead_letter(owner: PgPool) {
    let store = app_store(&owner, 8).await;
    let script = Script::default();
    let (flaky, broken, refused) = (connection(&store).await, connection(&store).await, connection(&store).await);
    script.fail(flaky, 2, Failure::Retry);
    script.fail(broken, 10, Failure::Retry);
    script.fail(refused, 1, Failure::Permanent);
    for id in [flaky, broken, refused] {
        enqueue(&store, Job::Validate { connection: id }, true).await;
    }
    let (stop, handle) = start(&store, &script, "w1");
    script.wait_for(flaky, 3).await;
    script.wait_for(broken, 3).await;
    script.wait_for(refused, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(script.runs(flaky), 3, "two failures then success");
    assert_eq!(script.runs(broken), 3, "max_attempts bounds the retries");
    assert_eq!(script.runs(refused), 1, "a permanent failure is not retried");

    let mut tx = store.tenant_tx(&tenant()).await.unwrap();
    assert!(connector_store::dead_letters::for_connection(&mut tx, flaky, 10).await.unwrap().is_empty());
    let broken_letters = connector_store::dead_letters::for_connection(&mut tx, broken, 10).await.unwrap();
    assert_eq!(broken_letters.len(), 1);
    assert_eq!((broken_letters[0].attempts, broken_letters[0].reason.as_str()), (3, "GitLab answered 503"));
    let refused_letters = connector_store::dead_letters::for_connection(&mut tx, refused, 10).await.unwrap();
    assert_eq!((refused_letters[0].attempts, refused_letters[0].reason.as_str()), (1, "the token lacks scope api"));
    drop(tx);
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn one_claimant_wins_each_period(owner: PgPool) {
    let store = app_store(&owner, 8).await;
    let now = Utc.with_ymd_and_hms(2026, 5, 1, 12, 7, 30).unwrap();
    let mut claims = Vec::new();
    for replica in 0..8 {
        let store = store.clone();
        claims.push(tokio::spawn(async move {
            claim_period(&store, Periodic::CatchUp, 300, now, &format!("replica-{replica}")).await.unwrap()
        }));
    }
    let mut winners = 0;
    for claim in claims {
        winners += claim.await.unwrap() as usize;
    }
    assert_eq!(winners, 1);
    // Later in the same period: nobody; the next period: one; another kind: its own periods.
    assert!(!claim_period(&store, Periodic::CatchUp, 300, now + chrono::Duration::seconds(100), "x").await.unwrap());
    assert!(claim_period(&store, Periodic::CatchUp, 300, now + chrono::Duration::seconds(300), "x").await.unwrap());
    assert!(claim_period(&store, Periodic::TokenHealth, 300, now, "x").await.unwrap());
}

/// A 429 is GitLab saying when to come back: however many in a row, the job is not given up.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn rate_limits_use_up_no_attempts(owner: PgPool) {
    let store = app_store(&owner, 8).await;
    let script = Script::default();
    let throttled = connection(&store).await;
    // Three times max_attempts, which a failure of any other kind would not outlive.
    script.fail(throttled, 9, Failure::RateLimited);
    enqueue(&store, Job::Validate { connection: throttled }, true).await;
    let (stop, handle) = start(&store, &script, "w1");
    script.wait_for(throttled, 10).await;
    let mut tx = store.tenant_tx(&tenant()).await.unwrap();
    assert!(connector_store::dead_letters::for_connection(&mut tx, throttled, 10).await.unwrap().is_empty());
    drop(tx);
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
}

/// A worker whose queue poll fails (the database unreachable for a moment) is restarted, and
/// the restart drops the jobs it was running. Each such job must run again: left marked running
/// under a worker name that keeps its heartbeat, it would never be handed on, and its connection
/// would wait for it for good.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_job_cut_off_by_its_workers_restart_runs_again(owner: PgPool) {
    let store = app_store(&owner, 8).await;
    let script = Script::default();
    let id = connection(&store).await;
    script.hangs.lock().unwrap().insert(id);
    enqueue(&store, Job::Backfill { connection: id }, true).await;
    let (stop, handle) = start(&store, &script, "w1");
    script.wait_for(id, 1).await;
    // Polls fail while the queue's table is away, for less than the time after which a silent
    // worker's jobs are handed on (as a moment without a free database connection would).
    sqlx::query("ALTER TABLE apalis.jobs RENAME TO jobs_away").execute(&owner).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("ALTER TABLE apalis.jobs_away RENAME TO jobs").execute(&owner).await.unwrap();
    script.wait_for(id, 2).await;
    let state: String = sqlx::query_scalar("SELECT status FROM apalis.jobs").fetch_one(&owner).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut state = state;
    while state != "Done" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = sqlx::query_scalar("SELECT status FROM apalis.jobs").fetch_one(&owner).await.unwrap();
    }
    assert_eq!(state, "Done", "the job's second run finished");
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
}

async fn set_status(store: &Store, id: Uuid, status: Status) {
    let mut tx = store.tenant_tx(&tenant()).await.unwrap();
    connections::set_status(&mut tx, id, status, None).await.unwrap();
    tx.commit().await.unwrap();
}

async fn status_of(store: &Store, id: Uuid) -> (Status, Option<String>) {
    let mut tx = store.tenant_tx(&tenant()).await.unwrap();
    let c = connections::get(&mut tx, id).await.unwrap();
    (c.status, c.status_message)
}

/// A step that runs out of attempts is the end of its connection's progress: nothing else would
/// move it on. It stops as failed, saying what went wrong and what to do, instead of showing a
/// step in progress that no job is doing. A catch-up that gives up leaves a live connection live
/// (its health says so).
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_step_that_gives_up_leaves_its_connection_failed_with_what_to_do(owner: PgPool) {
    let store = app_store(&owner, 8).await;
    let script = Script::default();
    let (validating, backfilling, live) = (connection(&store).await, connection(&store).await, connection(&store).await);
    set_status(&store, validating, Status::Validating).await;
    set_status(&store, backfilling, Status::Backfilling).await;
    set_status(&store, live, Status::Live).await;
    script.fail(validating, 10, Failure::Retry);
    script.fail(backfilling, 1, Failure::Permanent);
    script.fail(live, 10, Failure::Retry);
    enqueue(&store, Job::Validate { connection: validating }, true).await;
    enqueue(&store, Job::Backfill { connection: backfilling }, true).await;
    enqueue(&store, Job::CatchUp { connection: live }, true).await;
    let (stop, handle) = start(&store, &script, "w1");
    script.wait_for(validating, 3).await;
    script.wait_for(backfilling, 1).await;
    script.wait_for(live, 3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in [validating, backfilling] {
        while status_of(&store, id).await.0 != Status::Failed && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (status, message) = status_of(&store, validating).await;
    assert_eq!(status, Status::Failed);
    let message = message.unwrap();
    assert!(
        message.starts_with("validating the connection to https://gitlab.example.com stopped after 3 attempts: GitLab answered 503"),
        "{message}"
    );
    assert!(message.contains(&format!("POST /v1/connections/{validating}/resync")), "{message}");
    let (status, message) = status_of(&store, backfilling).await;
    assert_eq!(status, Status::Failed);
    assert!(message.unwrap().starts_with("the backfill stopped after 1 attempts: the token lacks scope api"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status_of(&store, live).await, (Status::Live, None), "a given-up catch-up leaves the connection live");
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
}

/// Whatever loses a job, no connection waits in a moving state without one for longer than the
/// documented bound: the scheduler's check queues the state's step again, and only where no job
/// is waiting, taken or running.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_connection_left_without_a_job_gets_its_step_again(owner: PgPool) {
    let store = app_store(&owner, 8).await;
    let (lost, waiting, recent, live, failed) =
        (connection(&store).await, connection(&store).await, connection(&store).await, connection(&store).await, connection(&store).await);
    for id in [lost, waiting, recent] {
        set_status(&store, id, Status::Backfilling).await;
    }
    set_status(&store, live, Status::Live).await;
    let mut tx = store.tenant_tx(&tenant()).await.unwrap();
    connections::set_status(&mut tx, failed, Status::Failed, Some("the backfill stopped")).await.unwrap();
    tx.commit().await.unwrap();
    enqueue(&store, Job::Backfill { connection: waiting }, true).await;
    // Quiet for longer than the bound, but `recent`.
    sqlx::query("UPDATE gitlab_connections SET updated_at = now() - make_interval(secs => $1) WHERE id <> $2")
        .bind(connector_worker::STALLED_AFTER.as_secs_f64() + 1.0)
        .bind(recent)
        .execute(&owner)
        .await
        .unwrap();
    assert_eq!(connector_worker::requeue_stalled(&store, connector_worker::STALLED_AFTER).await.unwrap(), 1);
    let queued: Vec<(String, String)> = sqlx::query_as(
        "SELECT convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'connection', convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'kind'
         FROM apalis.jobs ORDER BY run_at",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    assert_eq!(queued, vec![(waiting.to_string(), "backfill".to_owned()), (lost.to_string(), "backfill".to_owned())]);
    // Queued now, so the next check leaves it alone.
    assert_eq!(connector_worker::requeue_stalled(&store, connector_worker::STALLED_AFTER).await.unwrap(), 0);
}

/// Every final state explains itself: the database refuses one without a message.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_final_state_without_a_message_is_refused(owner: PgPool) {
    let store = app_store(&owner, 8).await;
    let id = connection(&store).await;
    for status in [Status::Failed, Status::Invalid, Status::NeedsReauth] {
        let mut tx = store.tenant_tx(&tenant()).await.unwrap();
        assert!(connections::set_status(&mut tx, id, status, None).await.is_err(), "{status:?} without a message");
    }
}

/// A long job that fails again and again but moves on each time (a backfill through a flaky
/// GitLab, storing pages between failures) is not stuck: those failures use up no attempt, so
/// it is never given up; nor is a sync through an outage (its patience is the caller's); one
/// that fails without moving and without an outage is given up after its attempts.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_job_that_moves_on_between_failures_is_never_given_up(owner: PgPool) {
    let store = app_store(&owner, 8).await;
    let script = Script::default();
    let (moving, outage, stuck) = (connection(&store).await, connection(&store).await, connection(&store).await);
    // Three times max_attempts, which a failure without progress would not outlive.
    script.fail(moving, 9, Failure::Interrupted);
    script.fail(outage, 9, Failure::Outage);
    script.fail(stuck, 9, Failure::Retry);
    for id in [moving, outage, stuck] {
        enqueue(&store, Job::Backfill { connection: id }, true).await;
    }
    let (stop, handle) = start(&store, &script, "w1");
    script.wait_for(moving, 10).await;
    script.wait_for(outage, 10).await;
    script.wait_for(stuck, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut tx = store.tenant_tx(&tenant()).await.unwrap();
    for id in [moving, outage] {
        assert!(connector_store::dead_letters::for_connection(&mut tx, id, 10).await.unwrap().is_empty());
    }
    assert_eq!(connector_store::dead_letters::for_connection(&mut tx, stuck, 10).await.unwrap().len(), 1);
    drop(tx);
    assert_eq!(script.runs(stuck), 3);
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
}
