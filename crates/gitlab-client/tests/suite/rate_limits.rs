//! 429 handling and pacing against `RateLimit-*` headers.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gitlab_client::{ClientOptions, Error, LocalRateBudget, PacingConfig, RateBudget, RateLimitObservation, pacing_delay};
use serde_json::json;

use crate::stub::{client, client_with, fast_options, json, stub};

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn retry_after_comes_from_the_retry_after_header() {
    let server = stub(|_, _| {
        json(
            429,
            &json!({"message": {"error": "This endpoint has been requested too many times. Try again later."}}),
            &[("retry-after", "31".into()), ("ratelimit-reset", (unix_now() + 5).to_string())],
        )
    })
    .await;
    let err = client(&server.base).current_user().await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { retry_after } if retry_after == Duration::from_secs(31)), "{err:?}");
}

#[tokio::test]
async fn retry_after_falls_back_to_ratelimit_reset() {
    let server = stub(|_, _| json(429, &json!({"error": "Retry later"}), &[("ratelimit-reset", (unix_now() + 42).to_string())])).await;
    match client(&server.base).current_user().await.unwrap_err() {
        Error::RateLimited { retry_after } => {
            assert!((40..=42).contains(&retry_after.as_secs()), "{retry_after:?}")
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[tokio::test]
async fn retry_after_falls_back_to_the_configured_default() {
    let server = stub(|_, _| json(429, &json!("Retry later"), &[])).await;
    let options = ClientOptions { default_retry_after: Duration::from_secs(90), ..fast_options() };
    let err = client_with(&server.base, options).current_user().await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { retry_after } if retry_after == Duration::from_secs(90)), "{err:?}");
}

#[test]
fn no_pacing_while_plenty_remains() {
    let config = PacingConfig::default();
    assert_eq!(pacing_delay(&config, Some(2000), 1500, Duration::from_secs(40)), Duration::ZERO);
    assert_eq!(pacing_delay(&config, Some(2000), 201, Duration::from_secs(40)), Duration::ZERO);
}

#[test]
fn low_remaining_spreads_the_rest_over_the_time_to_reset() {
    let config = PacingConfig::default();
    // 10% of 2000 is the low-water mark.
    assert_eq!(pacing_delay(&config, Some(2000), 200, Duration::from_secs(40)), Duration::from_millis(200));
    assert_eq!(pacing_delay(&config, Some(2000), 10, Duration::from_secs(40)), Duration::from_secs(4));
    // Without a limit header the absolute minimum (20) applies.
    assert_eq!(pacing_delay(&config, None, 20, Duration::from_secs(10)), Duration::from_millis(500));
    // Nothing left: wait for the reset, but never longer than max_delay.
    assert_eq!(pacing_delay(&config, Some(2000), 0, Duration::from_secs(12)), Duration::from_secs(12));
    assert_eq!(pacing_delay(&config, Some(2000), 0, Duration::from_secs(600)), Duration::from_secs(60));
}

#[test]
fn the_local_budget_spaces_requests_on_a_fake_clock() {
    let budget = LocalRateBudget::new(PacingConfig::default());
    let t0 = Instant::now();
    let unix = 1_800_000_000;
    assert_eq!(budget.reserve_at(t0), Duration::ZERO, "nothing observed yet");

    budget.observe_at(RateLimitObservation { limit: Some(2000), remaining: Some(5), reset_unix: Some(unix + 10) }, t0, unix);
    // Five left over ten seconds: each reservation pushes the next slot by reset/remaining,
    // so callers that reserve together are spaced out instead of bursting.
    assert_eq!(budget.reserve_at(t0), Duration::ZERO);
    assert_eq!(budget.reserve_at(t0), Duration::from_secs(2));
    assert_eq!(budget.reserve_at(t0), Duration::from_millis(4500));

    // Exhausted: the next request waits for the reset.
    budget.observe_at(RateLimitObservation { limit: Some(2000), remaining: Some(0), reset_unix: Some(unix + 10) }, t0, unix);
    let t1 = t0 + Duration::from_secs(8);
    assert_eq!(budget.reserve_at(t1), Duration::from_secs(2));

    // After the reset the stale window no longer slows anything down.
    let t2 = t0 + Duration::from_secs(11);
    assert_eq!(budget.reserve_at(t2), Duration::ZERO);
    assert_eq!(budget.reserve_at(t2), Duration::ZERO);
}

/// A budget that records what it is told and reports a fixed wait without sleeping.
#[derive(Default)]
struct Recording {
    observed: Mutex<Vec<RateLimitObservation>>,
    asked: Mutex<u32>,
}

impl RateBudget for Recording {
    fn before_request(&self) -> Pin<Box<dyn Future<Output = Duration> + Send + '_>> {
        *self.asked.lock().unwrap() += 1;
        Box::pin(async { Duration::from_millis(3) })
    }

    fn observe(&self, observation: RateLimitObservation) {
        self.observed.lock().unwrap().push(observation);
    }
}

#[tokio::test]
async fn every_response_feeds_the_pluggable_budget() {
    let reset = unix_now() + 30;
    let server = stub(move |_, index| {
        json(
            200,
            &json!({"version": "18.4.0", "revision": "abc"}),
            &[
                ("ratelimit-limit", "2000".into()),
                ("ratelimit-remaining", (150 - index).to_string()),
                ("ratelimit-reset", reset.to_string()),
                ("ratelimit-name", "throttle_authenticated_api".into()),
            ],
        )
    })
    .await;
    let budget = Arc::new(Recording::default());
    let options = ClientOptions { rate_budget: budget.clone(), ..fast_options() };
    let gitlab = client_with(&server.base, options);
    for _ in 0..3 {
        gitlab.version().await.unwrap();
    }
    assert_eq!(*budget.asked.lock().unwrap(), 3);
    let observed = budget.observed.lock().unwrap().clone();
    assert_eq!(observed.len(), 3);
    assert_eq!(observed[2], RateLimitObservation { limit: Some(2000), remaining: Some(148), reset_unix: Some(reset) });
    let stats = gitlab.stats();
    assert_eq!(stats.rate_limit_waits, 3);
    assert_eq!(stats.rate_limit_wait, Duration::from_millis(9));
}

#[tokio::test]
async fn the_default_budget_slows_down_when_remaining_is_low() {
    // Two left, resetting in a moment: the client waits instead of bursting into a 429.
    let reset = unix_now() + 2;
    let server = stub(move |_, _| {
        json(
            200,
            &json!({"version": "18.4.0", "revision": "abc"}),
            &[("ratelimit-limit", "2000".into()), ("ratelimit-remaining", "2".into()), ("ratelimit-reset", reset.to_string())],
        )
    })
    .await;
    let gitlab = client(&server.base);
    gitlab.version().await.unwrap();
    gitlab.version().await.unwrap();
    gitlab.version().await.unwrap();
    let stats = gitlab.stats();
    assert!(stats.rate_limit_waits >= 1, "{stats:?}");
    assert!(stats.rate_limit_wait <= Duration::from_secs(2), "{stats:?}");
}
