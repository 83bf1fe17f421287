//! The simulator's `throttle_authenticated_api` against the client's pacing and its handling
//! of 429, with both sides' counters compared.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gitlab_client::{ClientOptions, Error, LocalRateBudget, PacingConfig};
use gitlab_sim::{RateLimitConfig, SimConfig, TOKEN_OWNER};

use crate::common::{assert_no_token, client, client_with, options, small, start};

fn limited(requests: u32, period_secs: u64) -> SimConfig {
    SimConfig { rate_limit: RateLimitConfig { enabled: true, requests, period_secs }, ..SimConfig::default() }
}

#[tokio::test]
async fn pacing_from_the_headers_stays_under_the_limit() {
    // A 2-second window instead of GitLab's minute: crossing window boundaries is what proves
    // the pacing, and it has to happen within the test's time budget.
    const LIMIT: u32 = 30;
    let sim = start(small(), limited(LIMIT, 2)).await;
    let gitlab = client(&sim, TOKEN_OWNER);
    let sent = LIMIT as u64 * 3 / 2;
    let started = Instant::now();
    for i in 0..sent {
        // A mix of endpoints: the budget is per token, not per route.
        if i % 2 == 0 {
            gitlab.version().await.unwrap();
        } else {
            gitlab.project(1).await.unwrap();
        }
    }
    let client_stats = gitlab.stats();
    let sim_stats = sim.sim.stats();
    assert_eq!(sim_stats.rate_limited, 0, "no 429: {sim_stats:?}");
    assert_eq!(client_stats.rate_limited_responses, 0);
    assert_eq!(client_stats.requests, sent);
    assert_eq!(sim_stats.total_requests, sent);
    assert_eq!(client_stats.retries, 0);
    // More than one window's worth went out, so the client must have waited for a reset.
    assert!(client_stats.rate_limit_waits > 0, "{client_stats:?}");
    assert!(client_stats.rate_limit_wait <= started.elapsed());
}

#[tokio::test]
async fn an_exhausted_limit_gives_rate_limited_with_the_servers_retry_after() {
    // An hour-long window so that it cannot roll over between exhausting it and the storm.
    const LIMIT: u32 = 30;
    let sim = start(small(), limited(LIMIT, 3600)).await;
    // A budget that never waits, so every request of the storm reaches the server and the
    // test shows the client itself does not sleep on a 429.
    let never_waits = ClientOptions {
        rate_budget: Arc::new(LocalRateBudget::new(PacingConfig { low_water_percent: 0, low_water_min: 0, max_delay: Duration::ZERO })),
        ..options()
    };
    let gitlab = client_with(&sim, TOKEN_OWNER, never_waits);
    for _ in 0..LIMIT {
        gitlab.version().await.unwrap();
    }

    const STORM: u64 = 5;
    let mut waits = Vec::new();
    let started = Instant::now();
    for _ in 0..STORM {
        let err = gitlab.version().await.unwrap_err();
        assert_no_token(&err, TOKEN_OWNER);
        match err {
            Error::RateLimited { retry_after } => waits.push(retry_after),
            other => panic!("expected RateLimited, got {other:?}"),
        }
    }
    let storm_took = started.elapsed();
    let client_stats = gitlab.stats();
    let sim_stats = sim.sim.stats();

    // The server's own Retry-After, read right after the storm: the client's values are the
    // same, give or take the second that may have ticked in between.
    let raw =
        reqwest::Client::new().get(format!("{}/api/v4/version", sim.base_url)).header("PRIVATE-TOKEN", TOKEN_OWNER).send().await.unwrap();
    assert_eq!(raw.status(), 429);
    let server_says: u64 = raw.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    for wait in &waits {
        let secs = wait.as_secs();
        assert!((server_says..=server_says + 1).contains(&secs), "{secs} vs {server_says}");
    }
    // Retry-After is at least a second, so sleeping on even one 429 would show.
    assert!(storm_took < Duration::from_secs(1), "the client slept on the 429s: {storm_took:?}");

    assert_eq!(client_stats.requests, LIMIT as u64 + STORM);
    assert_eq!(client_stats.rate_limited_responses, STORM);
    assert_eq!(client_stats.retries, 0, "a 429 is handed back, not retried");
    assert_eq!(sim_stats.total_requests, client_stats.requests);
    assert_eq!(sim_stats.rate_limited, STORM);
    assert_eq!(sim_stats.count("/api/v4/version", 429), STORM);
    assert_eq!(sim_stats.count("/api/v4/version", 200), LIMIT as u64);
}
