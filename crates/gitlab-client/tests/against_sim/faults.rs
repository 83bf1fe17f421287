//! Injected server errors, dropped connections and slow responses, and what the client's
//! retries make of them.

use std::time::{Duration, Instant};

use gitlab_client::api::hooks::{HookOwner, HookSpec};
use gitlab_client::api::projects::Project;
use gitlab_client::{ClientOptions, Error, PageRequest, RetryConfig};
use gitlab_sim::{Faults, Latency, SimConfig, TOKEN_OWNER};

use crate::common::{assert_no_token, client, client_with, large, options, small, start, walk};

fn faulty(faults: Faults) -> SimConfig {
    SimConfig { faults, ..SimConfig::default() }
}

#[tokio::test]
async fn every_other_request_failing_with_5xx_is_retried_to_the_same_result() {
    let sim = start(large(), SimConfig::default()).await;
    let gitlab = client(&sim, TOKEN_OWNER);
    let (clean, _) = walk::<Project>(&gitlab, PageRequest::group_projects(1)).await;

    sim.sim.update_config(|c| {
        c.faults = Faults { error_every: Some(2), error_statuses: vec![500, 502, 503, 504], ..Faults::default() };
    });
    let flaky = client(&sim, TOKEN_OWNER);
    let (projects, _) = walk::<Project>(&flaky, PageRequest::group_projects(1)).await;
    assert_eq!(flaky.project(1).await.unwrap().id, 1);
    assert_eq!(projects, clean);

    let stats = flaky.stats();
    let injected = sim.sim.stats().injected_errors;
    assert!(injected > 0);
    assert_eq!(stats.retries, injected, "each injected error cost one retry");
    assert_eq!(sim.sim.stats().total_requests, gitlab.stats().requests + stats.requests);
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    let sim = start(small(), faulty(Faults { drop_every: Some(3), ..Faults::default() })).await;
    let gitlab = client(&sim, TOKEN_OWNER);
    for _ in 0..6 {
        assert_eq!(gitlab.project(1).await.unwrap().id, 1);
    }
    let stats = gitlab.stats();
    let sim_stats = sim.sim.stats();
    assert!(sim_stats.dropped_connections >= 2, "{sim_stats:?}");
    assert_eq!(stats.retries, sim_stats.dropped_connections);
    // A dropped request never got an answer, so the simulator recorded no status for it.
    assert_eq!(sim_stats.total_requests + sim_stats.dropped_connections, stats.requests);
}

#[tokio::test]
async fn a_hook_create_that_may_have_reached_gitlab_is_not_repeated() {
    let spec = HookSpec { url: "https://coworker.example/hooks/gitlab".into(), ..HookSpec::default() };
    for faults in [
        Faults { error_every: Some(1), error_statuses: vec![502], ..Faults::default() },
        Faults { drop_every: Some(1), ..Faults::default() },
    ] {
        let sim = start(small(), faulty(faults)).await;
        let gitlab = client(&sim, TOKEN_OWNER);
        let err = gitlab.create_hook(&HookOwner::Project(1.into()), &spec).await.unwrap_err();
        assert!(matches!(err, Error::Transient { attempts: 1, .. }), "{err:?}");
        assert_no_token(&err, TOKEN_OWNER);
        assert_eq!(gitlab.stats().requests, 1, "a second hook must not be risked");
    }
}

#[tokio::test]
async fn a_permanent_503_is_transient_after_the_bounded_attempts() {
    let sim = start(small(), faulty(Faults { error_every: Some(1), error_statuses: vec![503], ..Faults::default() })).await;
    let gitlab = client(&sim, TOKEN_OWNER);
    let err = gitlab.project(1).await.unwrap_err();
    match &err {
        Error::Transient { attempts, message, answered } => {
            assert!(*answered, "a 503 is an answer");
            assert_eq!(*attempts, options().retry.max_attempts);
            assert!(message.contains("503"), "{message}");
        }
        other => panic!("expected Transient, got {other:?}"),
    }
    assert_no_token(&err, TOKEN_OWNER);
    assert_eq!(sim.sim.stats().injected_errors, u64::from(options().retry.max_attempts));
    assert_eq!(sim.sim.stats().count("/api/v4/projects/{id}", 503), u64::from(options().retry.max_attempts));
}

fn with_timeout(timeout: Duration, max_attempts: u32) -> ClientOptions {
    ClientOptions { request_timeout: timeout, retry: RetryConfig { max_attempts, ..options().retry }, ..options() }
}

#[tokio::test]
async fn latency_within_the_timeout_is_waited_for() {
    let sim = start(small(), SimConfig { latency: Latency { min_ms: 80, max_ms: 120 }, ..SimConfig::default() }).await;
    let gitlab = client_with(&sim, TOKEN_OWNER, with_timeout(Duration::from_secs(2), 4));
    let started = Instant::now();
    gitlab.version().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(80));
    assert_eq!(gitlab.stats().retries, 0);
}

#[tokio::test]
async fn a_response_slower_than_the_timeout_is_retried() {
    let sim = start(small(), faulty(Faults { slow_every: Some(2), slow_ms: 3_000, ..Faults::default() })).await;
    let gitlab = client_with(&sim, TOKEN_OWNER, with_timeout(Duration::from_millis(300), 4));
    gitlab.version().await.unwrap();
    // The second request is the slow one; its retry is not.
    gitlab.project(1).await.unwrap();
    assert_eq!(gitlab.stats().retries, 1);
    assert_eq!(sim.sim.stats().injected_slow, 1);
}

#[tokio::test]
async fn responses_always_slower_than_the_timeout_end_transient() {
    let sim = start(small(), faulty(Faults { slow_every: Some(1), slow_ms: 3_000, ..Faults::default() })).await;
    let gitlab = client_with(&sim, TOKEN_OWNER, with_timeout(Duration::from_millis(200), 3));
    let started = Instant::now();
    let err = gitlab.version().await.unwrap_err();
    assert!(matches!(err, Error::Transient { attempts: 3, .. }), "{err:?}");
    assert_no_token(&err, TOKEN_OWNER);
    // Three timeouts, not three full slow responses.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(sim.sim.stats().injected_slow, 3);
}
