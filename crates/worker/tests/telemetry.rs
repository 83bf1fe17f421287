//! What the worker tells operators: each job run is a trace linked to the request that queued
//! it, job outcomes are counted by kind, and the queue and connection gauges read the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connector_store::TenantId;
use connector_store::connections;
use connector_store::jobs::{self, Envelope, Job, Queue};
use connector_test_support::{app_store, connection, spans, tenant};
use connector_worker::{JobError, Jobs, RetryPolicy, WorkerConfig, run_workers};
use opentelemetry::trace::{TraceContextExt, TraceId};
use opentelemetry_sdk::trace::SpanData;
use sqlx::PgPool;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

/// Fails each connection's job as many times as it is told to, permanently or not.
#[derive(Clone, Default)]
struct Script {
    runs: Arc<Mutex<HashMap<Uuid, usize>>>,
    failures: Arc<Mutex<HashMap<Uuid, (u32, bool)>>>,
}

impl Jobs for Script {
    async fn run(&self, _tenant: &TenantId, job: &Job) -> Result<(), JobError> {
        *self.runs.lock().unwrap().entry(job.connection()).or_default() += 1;
        match self.failures.lock().unwrap().get_mut(&job.connection()) {
            Some((left, permanent)) if *left > 0 => {
                *left -= 1;
                Err(if *permanent {
                    JobError::Permanent("the token lacks scope api".into())
                } else {
                    JobError::Retry { reason: "GitLab answered 503".into(), after: None }
                })
            }
            _ => Ok(()),
        }
    }
}

/// One sample's value in the rendered metrics, by its exact series.
fn sample(series: &str) -> f64 {
    let text = connector_telemetry::metrics::render();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
        .parse()
        .unwrap()
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn jobs_link_to_the_trace_that_queued_them_and_count_their_outcomes(owner: PgPool) {
    let spans = spans();
    let store = app_store(&owner, 8).await;
    let script = Script::default();
    let (linked, flaky, refused) = (connection(&store).await, connection(&store).await, connection(&store).await);
    script.failures.lock().unwrap().insert(flaky, (1, false));
    script.failures.lock().unwrap().insert(refused, (1, true));

    // As the API does: the job is queued inside the request's span.
    let request = tracing::info_span!("request");
    let request_trace = request.context().span().span_context().trace_id();
    assert_ne!(request_trace, TraceId::INVALID);
    async {
        let mut tx = store.tenant_tx(&tenant()).await.unwrap();
        jobs::enqueue(&mut tx, Job::Validate { connection: linked }, Duration::ZERO).await.unwrap();
        tx.commit().await.unwrap();
    }
    .instrument(request.clone())
    .await;
    drop(request);
    // Queued outside any span (the scheduler does): no link.
    for id in [flaky, refused] {
        let mut conn = store.pool().acquire().await.unwrap();
        jobs::push(&mut conn, &Envelope::new(tenant().as_str().into(), Job::Validate { connection: id }), Duration::ZERO).await.unwrap();
    }

    let config = WorkerConfig {
        name: "telemetry".into(),
        retry: RetryPolicy { max_attempts: 3, base: Duration::from_millis(50), cap: Duration::from_millis(100) },
        poll_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_workers(store.clone(), script.clone(), config, async {
        stopped.await.ok();
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    let runs = |id: Uuid| script.runs.lock().unwrap().get(&id).copied().unwrap_or(0);
    while runs(linked) < 1 || runs(flaky) < 2 || runs(refused) < 1 {
        assert!(Instant::now() < deadline, "the jobs did not all run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The last run's outcome is recorded just after the job returns.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();

    let finished = spans.get_finished_spans().unwrap();
    let job_spans = |id: Uuid| -> Vec<&SpanData> {
        finished.iter().filter(|s| s.name == "job validate" && attribute(s, "connection") == Some(id.to_string())).collect()
    };
    let linked_runs = job_spans(linked);
    assert_eq!(linked_runs.len(), 1, "{finished:#?}");
    let run = linked_runs[0];
    assert_ne!(run.span_context.trace_id(), request_trace, "a job run is a trace of its own");
    let links: Vec<TraceId> = run.links.links.iter().map(|l| l.span_context.trace_id()).collect();
    assert_eq!(links, vec![request_trace], "linked to the request that queued it");
    assert_eq!(attribute(run, "tenant").as_deref(), Some("acme"));
    assert_eq!(attribute(run, "kind").as_deref(), Some("validate"));
    let flaky_runs = job_spans(flaky);
    assert_eq!(flaky_runs.len(), 2);
    assert!(flaky_runs.iter().all(|s| s.links.links.is_empty()), "nothing to link to");
    assert_eq!(flaky_runs.iter().filter_map(|s| attribute(s, "attempt")).collect::<Vec<_>>(), ["0", "1"]);

    assert!(sample(r#"gitlab_connector_jobs_total{kind="validate",outcome="succeeded"}"#) >= 2.0);
    assert!(sample(r#"gitlab_connector_jobs_total{kind="validate",outcome="retried"}"#) >= 1.0);
    assert!(sample(r#"gitlab_connector_jobs_total{kind="validate",outcome="dead_lettered"}"#) >= 1.0);
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn queue_and_connection_gauges_read_the_database(owner: PgPool) {
    let store = app_store(&owner, 8).await;
    let (due, later) = (connection(&store).await, connection(&store).await);
    let mut conn = store.pool().acquire().await.unwrap();
    for (id, delay) in [(due, Duration::ZERO), (later, Duration::from_secs(3600))] {
        jobs::push(&mut conn, &Envelope::new("acme".into(), Job::Validate { connection: id }), delay).await.unwrap();
    }
    drop(conn);
    sqlx::query("UPDATE apalis.jobs SET run_at = now() - interval '40 seconds' WHERE run_at <= now()").execute(&owner).await.unwrap();
    let queues = jobs::queue_states(&store).await.unwrap();
    let state = |queue: Queue| queues.iter().find(|q| q.queue == queue.name()).unwrap_or_else(|| panic!("{queues:?}"));
    assert_eq!(state(Queue::Connections).depth, 2, "due now and scheduled later both wait");
    let age = state(Queue::Connections).oldest_due_age.as_secs_f64();
    assert!((40.0..60.0).contains(&age), "only due jobs age: {age}");
    assert_eq!((state(Queue::Backfill).depth, state(Queue::Backfill).oldest_due_age), (0, Duration::ZERO), "empty queues are reported");

    assert_eq!(connections::liveness(&store).await.unwrap(), (0, Duration::ZERO));
    sqlx::query("UPDATE gitlab_connections SET status = 'live', next_catch_up_at = now() - interval '90 seconds' WHERE id = $1")
        .bind(due)
        .execute(&owner)
        .await
        .unwrap();
    sqlx::query("UPDATE gitlab_connections SET status = 'live', next_catch_up_at = now() + interval '10 minutes' WHERE id = $1")
        .bind(later)
        .execute(&owner)
        .await
        .unwrap();
    let (live, overdue) = connections::liveness(&store).await.unwrap();
    assert_eq!(live, 2);
    assert!((90.0..110.0).contains(&overdue.as_secs_f64()), "{overdue:?}");
}
