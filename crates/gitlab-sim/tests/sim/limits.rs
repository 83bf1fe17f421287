use gitlab_sim::*;
use serde_json::json;

use crate::common::start;

#[tokio::test]
async fn rate_limit_headers_then_429() {
    let mut config = SimConfig::default();
    config.rate_limit.requests = 3;
    let sim = start(config).await;
    let r = sim.get(TOKEN_OWNER, "/api/v4/user").await;
    assert_eq!(r.headers["ratelimit-name"], "throttle_authenticated_api");
    assert_eq!(r.headers["ratelimit-limit"], "3");
    assert_eq!(r.headers["ratelimit-observed"], "1");
    assert_eq!(r.headers["ratelimit-remaining"], "2");
    let reset: i64 = r.headers["ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset > chrono::Utc::now().timestamp() - 1);
    sim.get(TOKEN_OWNER, "/api/v4/user").await;
    sim.get(TOKEN_OWNER, "/api/v4/user").await;
    let r = sim.get(TOKEN_OWNER, "/api/v4/user").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body, json!("Retry later\n"));
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert!(r.headers["ratelimit-resettime"].to_str().unwrap().ends_with("GMT"));
    // Other tokens have their own budget.
    assert_eq!(sim.get(TOKEN_DEVELOPER, "/api/v4/user").await.status, 200);
    assert_eq!(sim.handle.sim.stats().rate_limited, 1);

    // Changed at run time through the control API.
    sim.control(reqwest::Method::PUT, "/rate_limit", json!({"enabled": false})).await;
    let r = sim.get(TOKEN_OWNER, "/api/v4/user").await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("ratelimit-limit").is_none());
}

#[tokio::test]
async fn injected_errors_drops_and_stats() {
    let sim = start(SimConfig::default()).await;
    sim.control(reqwest::Method::PUT, "/faults", json!({"error_every": 2, "error_statuses": [503]})).await;
    let a = sim.get(TOKEN_OWNER, "/api/v4/version").await;
    let b = sim.get(TOKEN_OWNER, "/api/v4/version").await;
    assert_eq!((a.status, b.status), (200, 503));

    sim.control(reqwest::Method::PUT, "/faults", json!({"drop_every": 1})).await;
    let err = sim.http.get(sim.url("/api/v4/version")).header("PRIVATE-TOKEN", TOKEN_OWNER).send().await;
    assert!(err.is_err(), "connection dropped without a response");

    sim.control(reqwest::Method::PUT, "/faults", json!({})).await;
    sim.control(reqwest::Method::PUT, "/latency", json!({"min_ms": 30, "max_ms": 40})).await;
    let started = std::time::Instant::now();
    assert_eq!(sim.get(TOKEN_OWNER, "/api/v4/version").await.status, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(30));

    let stats = sim.control(reqwest::Method::GET, "/stats", json!(null)).await.body;
    assert_eq!(stats["injected_errors"], 1);
    assert_eq!(stats["dropped_connections"], 1);
    assert_eq!(stats["requests"]["/api/v4/version"]["503"], 1);
    assert!(stats["requests"]["/api/v4/version"]["200"].as_u64().unwrap() >= 2);
}
