//! The whole product, as deployed: the simulator as GitLab, the binary running every role.
//! Two tenants connect through the REST API, reach `live` by themselves, and changes made in
//! GitLab arrive through webhooks into the right tenant's data and change feed, once.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Running};
use connector_crypto::MasterKeyRing;
use gitlab_sim::{Dataset, SimConfig, Simulator, Size};
use serde_json::{Value, json};
use sqlx::{ConnectOptions, PgPool};

impl Api {
    /// Polls until `check` holds for the tenant's change feed after `cursor`; returns how long.
    async fn until_in_feed(&self, tenant: &str, cursor: &str, check: impl Fn(&[Value]) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            let feed = self.get(&format!("/v1/changes?after={cursor}&limit=100"), tenant).await;
            if check(feed["items"].as_array().unwrap()) {
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(10), "not in the feed: {feed}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn changes_in_gitlab_reach_the_right_tenant_once(owner: PgPool) {
    let sim = Simulator::new(Dataset::generate(1, Size::Small), SimConfig::default()).spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dev_state = std::env::temp_dir().join(format!("gc-live-{}", uuid::Uuid::new_v4()));
    let database_url = owner.connect_options().to_url_lossy().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut serve = common::serve("api,ingest,worker", &database_url, &MasterKeyRing::generate_entry(1), &dev_state, &listen, &base);
    let _server = Running(serve.env("BACKFILL_SLICE", "2s").spawn().unwrap());
    let api = Api::new(base);
    api.wait_ready(Duration::from_secs(30)).await;

    let premium = api
        .connect(
            "premium-co",
            json!({"access_token": "glpat-sim-owner-api-0001", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": sim.base_url}),
        )
        .await;
    let free = api
        .connect(
            "free-co",
            json!({"access_token": "glpat-sim-owner-api-0001", "groups_list": "4", "projects_list": "2,6", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": sim.base_url}),
        )
        .await;
    api.wait_live("premium-co", &premium).await;
    api.wait_live("free-co", &free).await;

    // Where each tenant's feed stands now: read it to the end.
    let cursor = |tenant: &'static str| {
        let api = &api;
        async move {
            let mut cursor = String::new();
            loop {
                let page = api.get(&format!("/v1/changes?after={cursor}&limit=100"), tenant).await;
                let next = page["next_cursor"].as_str().unwrap().to_owned();
                if page["items"].as_array().unwrap().is_empty() {
                    return next;
                }
                cursor = next;
            }
        }
    };
    let (premium_cursor, free_cursor) = (cursor("premium-co").await, cursor("free-co").await);
    let gitlab = common::SimControl::new(&sim.base_url);

    // A push to a Premium project arrives through the group hook.
    gitlab.post("projects/1/push", json!({"branch": "main", "commits": 3})).await;
    let latency = api
        .until_in_feed("premium-co", &premium_cursor, |items| {
            items.iter().filter(|c| c["entity"] == "commit" && c["op"] == "insert").count() >= 3
        })
        .await;
    println!("push visible in the premium tenant's feed {latency:?} after delivery");

    // A merge request on a Free project listed in the connection arrives through its project hook.
    gitlab.post("projects/2/branches", json!({"name": "topic", "ref": "main"})).await;
    let mr = gitlab.post("projects/2/merge_requests", json!({"source_branch": "topic", "title": "Add the live test", "commits": 1})).await;
    let iid = mr["iid"].as_i64().unwrap_or(1);
    let latency = api
        .until_in_feed("free-co", &free_cursor, |items| {
            items.iter().any(|c| c["entity"] == "merge_request" && c["key"]["iid"] == iid && c["key"]["project_id"] == 2)
        })
        .await;
    println!("merge request visible in the free tenant's feed {latency:?} after delivery");

    // Exactly once: three commit inserts, whatever GitLab resends.
    let feed = api.get(&format!("/v1/changes?after={premium_cursor}&limit=100"), "premium-co").await;
    let commit_inserts = feed["items"].as_array().unwrap().iter().filter(|c| c["entity"] == "commit" && c["op"] == "insert").count();
    assert_eq!(commit_inserts, 3, "{feed}");
    // The right tenant only: the free tenant's feed has no commit of project 1, the premium
    // tenant's none of project 2.
    let free_feed = api.get(&format!("/v1/changes?after={free_cursor}&limit=100"), "free-co").await;
    assert!(free_feed["items"].as_array().unwrap().iter().all(|c| c["key"]["project_id"] != 1), "{free_feed}");
    assert!(feed["items"].as_array().unwrap().iter().all(|c| c["key"]["project_id"] != 2), "{feed}");

    // What the traffic above left in /metrics, served on the same listener to Prometheus' token.
    let resp = api.http.get(format!("{}/metrics", api.base)).bearer_auth(common::METRICS_TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let metrics = resp.text().await.unwrap();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{series} missing in\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert!(value(r#"gitlab_connector_http_requests_total{method="POST",route="/v1/connections",status="201"}"#) >= 2.0);
    assert!(value(r#"gitlab_connector_http_requests_total{method="GET",route="/v1/connections/{id}",status="200"}"#) >= 2.0);
    assert!(value(r#"gitlab_connector_http_request_duration_seconds_count{method="GET",route="/v1/changes"}"#) >= 1.0);
    assert!(value(r#"gitlab_connector_http_requests_total{method="POST",route="/webhooks/gitlab/{endpoint}",status="200"}"#) >= 2.0);
    for id in [&premium, &free] {
        let http_lines = metrics.lines().filter(|l| l.starts_with("gitlab_connector_http_"));
        assert!(http_lines.clone().all(|l| !l.contains(id.as_str())), "a raw path with an id became a label:\n{metrics}");
        assert!(!metrics.contains(id.as_str()), "a connection id in the metrics:\n{metrics}");
    }
    // Both live connections are counted in the lag buckets, by no name.
    assert_eq!(value(r#"gitlab_connector_connections_by_sync_lag{le="+Inf"}"#), 2.0);
    assert!(value("gitlab_connector_sync_lag_max_seconds") >= 0.0);
    assert!(value(r#"gitlab_connector_webhook_deliveries_total{result="accepted"}"#) >= 2.0);
    assert!(value(r#"gitlab_connector_webhook_deliveries_total{result="applied"}"#) >= 2.0);
    assert_eq!(value(r#"gitlab_connector_webhook_deliveries_total{result="unauthorized"}"#), 0.0);
    for kind in ["validate", "install_hooks", "backfill"] {
        assert!(value(&format!(r#"gitlab_connector_jobs_total{{kind="{kind}",outcome="succeeded"}}"#)) >= 2.0, "{kind}");
    }
    assert!(value(r#"gitlab_connector_gitlab_requests_total{status="200"}"#) >= 10.0);
    assert!(metrics.contains("# TYPE gitlab_connector_gitlab_rate_limit_waits_total counter"));
    for queue in ["connections", "backfill", "sync"] {
        value(&format!(r#"gitlab_connector_queue_depth{{queue="gitlab_connector.{queue}"}}"#));
        value(&format!(r#"gitlab_connector_queue_oldest_job_age_seconds{{queue="gitlab_connector.{queue}"}}"#));
    }
    assert_eq!(value("gitlab_connector_live_connections"), 2.0);
    value("gitlab_connector_catch_up_overdue_seconds");
    std::fs::remove_dir_all(&dev_state).ok();
}
