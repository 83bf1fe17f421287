//! The process's Prometheus metrics, in one registry that `GET /metrics` renders. Each role
//! records through the typed functions below, so every label value comes from a fixed set (or a
//! route template, a queue name, a job kind, a status code) and never from user input.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// What became of a webhook delivery. Each delivery that reaches the endpoint is counted once
/// with one of the receipt results; each accepted one is counted again, once, when the processor
/// is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    // At receipt.
    /// Verified, stored, to be applied.
    Accepted,
    /// Verified, already stored (GitLab resent it).
    Duplicate,
    /// Verified and stored, but can never be applied (not JSON, no event kind); answered 2xx.
    KeptAsideOnReceipt,
    /// The secret token or signature did not verify.
    Unauthorized,
    /// No hook has this endpoint id.
    UnknownEndpoint,
    /// Larger than GitLab's own limit.
    TooLarge,
    /// The body could not be read.
    BadRequest,
    /// Verified but not stored (the database failed): answered 503.
    Unavailable,
    // After processing.
    Applied,
    OutOfScope,
    KeptAside,
    /// Every attempt to apply it failed.
    Failed,
}

impl Delivery {
    const ALL: [Delivery; 12] = [
        Delivery::Accepted,
        Delivery::Duplicate,
        Delivery::KeptAsideOnReceipt,
        Delivery::Unauthorized,
        Delivery::UnknownEndpoint,
        Delivery::TooLarge,
        Delivery::BadRequest,
        Delivery::Unavailable,
        Delivery::Applied,
        Delivery::OutOfScope,
        Delivery::KeptAside,
        Delivery::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Delivery::Accepted => "accepted",
            Delivery::Duplicate => "duplicate",
            // The same name as after processing: the delivery is set aside either way.
            Delivery::KeptAsideOnReceipt | Delivery::KeptAside => "kept_aside",
            Delivery::Unauthorized => "unauthorized",
            Delivery::UnknownEndpoint => "unknown_endpoint",
            Delivery::TooLarge => "too_large",
            Delivery::BadRequest => "bad_request",
            Delivery::Unavailable => "unavailable",
            Delivery::Applied => "applied",
            Delivery::OutOfScope => "out_of_scope",
            Delivery::Failed => "failed",
        }
    }
}

/// How one run of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Succeeded,
    /// Failed; a new attempt is queued with backoff.
    Retried,
    /// Failed for good; recorded where the API shows it.
    DeadLettered,
}

impl JobOutcome {
    pub fn label(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Retried => "retried",
            JobOutcome::DeadLettered => "dead_lettered",
        }
    }
}

struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    webhook_deliveries: IntCounterVec,
    jobs: IntCounterVec,
    queue_depth: IntGaugeVec,
    queue_oldest_age: GaugeVec,
    gitlab_requests: IntCounterVec,
    gitlab_rate_limit_waits: IntCounter,
    gitlab_rate_limit_wait_seconds: prometheus::Counter,
    live_connections: IntGauge,
    catch_up_overdue: prometheus::Gauge,
    sync_lag_max: prometheus::Gauge,
    connections_by_sync_lag: GaugeVec,
}

const PREFIX: &str = "gitlab_connector_";

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let name = |n: &str| format!("{PREFIX}{n}");
    let registry = Registry::new();
    let metrics = Metrics {
        http_requests: IntCounterVec::new(
            Opts::new(name("http_requests_total"), "HTTP requests answered, by route template, method and status"),
            &["route", "method", "status"],
        )
        .unwrap(),
        http_duration: HistogramVec::new(
            HistogramOpts::new(name("http_request_duration_seconds"), "Time to answer an HTTP request, by route template and method")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["route", "method"],
        )
        .unwrap(),
        webhook_deliveries: IntCounterVec::new(
            Opts::new(name("webhook_deliveries_total"), "GitLab webhook deliveries, by result at receipt and after processing"),
            &["result"],
        )
        .unwrap(),
        jobs: IntCounterVec::new(Opts::new(name("jobs_total"), "Job runs, by kind and outcome"), &["kind", "outcome"]).unwrap(),
        queue_depth: IntGaugeVec::new(
            Opts::new(name("queue_depth"), "Jobs waiting in each queue (due now or scheduled later), read when scraped"),
            &["queue"],
        )
        .unwrap(),
        queue_oldest_age: GaugeVec::new(
            Opts::new(
                name("queue_oldest_job_age_seconds"),
                "How long the oldest due job of each queue has waited (0: none due), read when scraped",
            ),
            &["queue"],
        )
        .unwrap(),
        gitlab_requests: IntCounterVec::new(
            Opts::new(name("gitlab_requests_total"), "HTTP requests to GitLab, retries included, by status code (error: no response)"),
            &["status"],
        )
        .unwrap(),
        gitlab_rate_limit_waits: IntCounter::new(name("gitlab_rate_limit_waits_total"), "Requests to GitLab the rate budget delayed")
            .unwrap(),
        gitlab_rate_limit_wait_seconds: prometheus::Counter::new(
            name("gitlab_rate_limit_wait_seconds_total"),
            "Time requests to GitLab spent waiting for the rate budget",
        )
        .unwrap(),
        live_connections: IntGauge::new(name("live_connections"), "Connections in status live, across tenants, read when scraped").unwrap(),
        catch_up_overdue: prometheus::Gauge::new(
            name("catch_up_overdue_seconds"),
            "How far past its due time the most overdue catch-up of a live connection is (0: none overdue), read when scraped",
        )
        .unwrap(),
        sync_lag_max: prometheus::Gauge::new(
            name("sync_lag_max_seconds"),
            "Time since the last finished sync of the live connection that has waited longest, read when scraped",
        )
        .unwrap(),
        // Buckets rather than one series per connection: no tenant's connection is named in
        // metrics (find which lags with `gitlab-connector connections list`).
        connections_by_sync_lag: GaugeVec::new(
            Opts::new(
                name("connections_by_sync_lag"),
                "Live connections whose last finished sync is at most `le` seconds ago, read when scraped",
            ),
            &["le"],
        )
        .unwrap(),
        registry,
    };
    let collectors: [Box<dyn prometheus::core::Collector>; 13] = [
        Box::new(metrics.http_requests.clone()),
        Box::new(metrics.http_duration.clone()),
        Box::new(metrics.webhook_deliveries.clone()),
        Box::new(metrics.jobs.clone()),
        Box::new(metrics.queue_depth.clone()),
        Box::new(metrics.queue_oldest_age.clone()),
        Box::new(metrics.gitlab_requests.clone()),
        Box::new(metrics.gitlab_rate_limit_waits.clone()),
        Box::new(metrics.gitlab_rate_limit_wait_seconds.clone()),
        Box::new(metrics.live_connections.clone()),
        Box::new(metrics.catch_up_overdue.clone()),
        Box::new(metrics.sync_lag_max.clone()),
        Box::new(metrics.connections_by_sync_lag.clone()),
    ];
    for collector in collectors {
        metrics.registry.register(collector).expect("metric names are unique");
    }
    // Every result exists from the start, so that a rate over a result that is still rare is 0
    // rather than absent.
    for result in Delivery::ALL {
        metrics.webhook_deliveries.with_label_values(&[result.label()]);
    }
    metrics
});

/// An HTTP request was answered. `route` is the route template (`/v1/connections/{id}`), never
/// the raw path.
pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let m = &*METRICS;
    m.http_requests.with_label_values(&[route, method, status.to_string().as_str()]).inc();
    m.http_duration.with_label_values(&[route, method]).observe(elapsed.as_secs_f64());
}

pub fn webhook_delivery(result: Delivery) {
    METRICS.webhook_deliveries.with_label_values(&[result.label()]).inc();
}

/// A job run ended; `kind` is the job's kind (`validate`, `backfill`, ...).
pub fn job(kind: &str, outcome: JobOutcome) {
    METRICS.jobs.with_label_values(&[kind, outcome.label()]).inc();
}

/// A request to GitLab got `status`, or no response at all (`None`: timeout, connection failure).
pub fn gitlab_request(status: Option<u16>) {
    let label = status.map(|s| s.to_string()).unwrap_or_else(|| "error".to_owned());
    METRICS.gitlab_requests.with_label_values(&[label.as_str()]).inc();
}

/// The rate budget delayed a request to GitLab by `wait`.
pub fn gitlab_rate_limit_wait(wait: Duration) {
    METRICS.gitlab_rate_limit_waits.inc();
    METRICS.gitlab_rate_limit_wait_seconds.inc_by(wait.as_secs_f64());
}

/// One queue's state, read from the job table.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueState {
    pub queue: String,
    pub depth: i64,
    pub oldest_due_age: Duration,
}

/// Replaces the queue gauges with what the job table says now.
pub fn set_queues(queues: &[QueueState]) {
    for q in queues {
        METRICS.queue_depth.with_label_values(&[q.queue.as_str()]).set(q.depth);
        METRICS.queue_oldest_age.with_label_values(&[q.queue.as_str()]).set(q.oldest_due_age.as_secs_f64());
    }
}

/// Replaces the connection gauges: how many are live, and how overdue the worst catch-up is.
pub fn set_connections(live: i64, most_overdue_catch_up: Duration) {
    METRICS.live_connections.set(live);
    METRICS.catch_up_overdue.set(most_overdue_catch_up.as_secs_f64());
}

/// The upper bounds of the sync-lag buckets, in seconds: a minute to a day.
const SYNC_LAG_BUCKETS: [f64; 7] = [60.0, 300.0, 900.0, 1800.0, 3600.0, 21600.0, 86400.0];

/// Replaces the lag gauges from every live connection's lag.
pub fn set_sync_lags(lags: &[Duration]) {
    let seconds: Vec<f64> = lags.iter().map(Duration::as_secs_f64).collect();
    METRICS.sync_lag_max.set(seconds.iter().copied().fold(0.0, f64::max));
    for bound in SYNC_LAG_BUCKETS {
        let within = seconds.iter().filter(|&&s| s <= bound).count();
        METRICS.connections_by_sync_lag.with_label_values(&[&bound.to_string()]).set(within as f64);
    }
    METRICS.connections_by_sync_lag.with_label_values(&["+Inf"]).set(seconds.len() as f64);
}

/// The Content-Type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric in Prometheus' text exposition format.
pub fn render() -> String {
    let mut out = Vec::new();
    TextEncoder::new().encode(&METRICS.registry.gather(), &mut out).expect("text encoding of gathered metrics cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sample's value, found by its name and exact label set as rendered.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.parse().unwrap()))
    }

    #[test]
    fn records_render_in_the_text_format() {
        http_request("/v1/connections/{id}", "GET", 200, Duration::from_millis(12));
        webhook_delivery(Delivery::KeptAsideOnReceipt);
        job("validate", JobOutcome::Retried);
        gitlab_request(Some(429));
        gitlab_request(None);
        gitlab_rate_limit_wait(Duration::from_millis(1500));
        set_queues(&[QueueState { queue: "q.test".into(), depth: 3, oldest_due_age: Duration::from_secs(7) }]);
        set_connections(2, Duration::from_secs(90));
        let text = render();
        let at_least = |series: &str, min: f64| {
            let v = sample(&text, series).unwrap_or_else(|| panic!("{series} missing in\n{text}"));
            assert!(v >= min, "{series} = {v}");
        };
        at_least(r#"gitlab_connector_http_requests_total{method="GET",route="/v1/connections/{id}",status="200"}"#, 1.0);
        at_least(r#"gitlab_connector_http_request_duration_seconds_bucket{method="GET",route="/v1/connections/{id}",le="0.025"}"#, 1.0);
        at_least(r#"gitlab_connector_webhook_deliveries_total{result="kept_aside"}"#, 1.0);
        assert!(sample(&text, r#"gitlab_connector_webhook_deliveries_total{result="too_large"}"#).is_some(), "results exist at 0");
        at_least(r#"gitlab_connector_jobs_total{kind="validate",outcome="retried"}"#, 1.0);
        at_least(r#"gitlab_connector_gitlab_requests_total{status="429"}"#, 1.0);
        at_least(r#"gitlab_connector_gitlab_requests_total{status="error"}"#, 1.0);
        at_least("gitlab_connector_gitlab_rate_limit_waits_total", 1.0);
        at_least("gitlab_connector_gitlab_rate_limit_wait_seconds_total", 1.5);
        assert_eq!(sample(&text, r#"gitlab_connector_queue_depth{queue="q.test"}"#), Some(3.0));
        assert_eq!(sample(&text, r#"gitlab_connector_queue_oldest_job_age_seconds{queue="q.test"}"#), Some(7.0));
        assert_eq!(sample(&text, "gitlab_connector_live_connections"), Some(2.0));
        assert_eq!(sample(&text, "gitlab_connector_catch_up_overdue_seconds"), Some(90.0));
        assert!(text.contains("# TYPE gitlab_connector_http_request_duration_seconds histogram"));
    }
}
