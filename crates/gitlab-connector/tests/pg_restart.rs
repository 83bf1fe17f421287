//! PostgreSQL restarted under webhook load, on a cluster of the test's own: the service says it
//! is not ready while the database is gone, is ready again by itself once it is back, refuses
//! what it cannot store (so GitLab counts the delivery failed) and loses nothing it acknowledged.
//!
//! `PG_OUTAGE_SECS` sets how long the database stays stopped (default 8).

// The binary's own cluster helper; this test uses all of it but the directory accessor.
#[allow(dead_code)]
#[path = "../src/pg_cluster.rs"]
mod pg_cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use connector_crypto::MasterKeyRing;
use gitlab_sim::{Dataset, DeliveryConfig, SimConfig, Simulator, Size};
use serde_json::{Value, json};
use sqlx::ConnectOptions;

use pg_cluster::PgCluster;

const BIN: &str = env!("CARGO_BIN_EXE_gitlab-connector");
const JWT_SECRET: &str = "pg-restart-test-jwt-secret-of-sufficient-length";
/// Changes made in GitLab per second while the database comes and goes.
const CHANGES_PER_SEC: u64 = 10;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `/readyz` answer: when it was asked, when answered, and the status.
#[derive(Clone, Copy)]
struct Probe {
    asked: DateTime<Utc>,
    answered: DateTime<Utc>,
    status: Option<u16>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_under_webhook_load_lose_no_acknowledged_delivery() {
    let outage = Duration::from_secs(std::env::var("PG_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(8));
    let cluster = PgCluster::start("gc-pg-restart").unwrap();
    cluster.wait_ready(Duration::from_secs(30)).await.unwrap();

    // GitLab disables a hook after 4 failed deliveries; this test is about our answers, so the
    // hook keeps receiving through the outage as a self-managed GitLab with that switched off.
    let config = SimConfig { delivery: DeliveryConfig { auto_disable: false, ..Default::default() }, ..Default::default() };
    let sim = Simulator::new(Dataset::generate(1, Size::Small), config).spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let work = std::env::temp_dir().join(format!("gc-pg-restart-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).unwrap();
    let log = std::fs::File::create(work.join("serve.log")).unwrap();
    let mut server = Running(
        Command::new(BIN)
            .args(["serve", "--roles", "api,ingest,worker"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", cluster.url("gitlab_connector"))
            .env("MIGRATE_ON_START", "true")
            .env("MASTER_KEYS", MasterKeyRing::generate_entry(1))
            .env("JWT_HS256_SECRET", JWT_SECRET)
            .env("DEV_STATE_DIR", work.join("state"))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("PUBLIC_URL", &base)
            .env("GITLAB_URL_ALLOWLIST", "127.0.0.1/32:*")
            .env("BACKFILL_SLICE", "2s")
            .env("WORKER_HEARTBEAT", "2s")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let readyz = {
        let (http, url) = (http.clone(), format!("{base}/readyz"));
        move || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(url).send().await.ok().map(|r| r.status().as_u16()) }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while readyz().await != Some(200) {
        assert!(Instant::now() < deadline, "the server never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A Premium tenant connected through the API, live with its group hook pointing at us.
    let now = Utc::now().timestamp();
    let claims = json!({"iss": "coworker", "aud": "gitlab-connector", "exp": now + 3600, "tenant_id": "acme"});
    let jwt = jsonwebtoken::encode(&Default::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes())).unwrap();
    let body = json!({"access_token": "glpat-sim-owner-api-0001", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": sim.base_url});
    let created: Value =
        http.post(format!("{base}/v1/connections")).bearer_auth(&jwt).json(&body).send().await.unwrap().json().await.unwrap();
    let id = created["id"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let c: Value = http.get(format!("{base}/v1/connections/{id}")).bearer_auth(&jwt).send().await.unwrap().json().await.unwrap();
        if c["status"] == "live" {
            break;
        }
        assert!(Instant::now() < deadline, "never went live: {c}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The load: a change in GitLab every 100 ms, alternately a one-commit push and a new issue,
    // each delivered by the simulator to our endpoint in the background.
    let stop_load = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (http, sim_url, stop) = (http.clone(), sim.base_url.clone(), stop_load.clone());
        tokio::spawn(async move {
            let mut changes = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / CHANGES_PER_SEC));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let (path, body) = if changes.is_multiple_of(2) {
                    ("projects/1/push", json!({"branch": "main", "commits": 1}))
                } else {
                    ("projects/1/issues", json!({"title": format!("load {changes}")}))
                };
                http.post(format!("{sim_url}/-/sim/{path}")).json(&body).send().await.unwrap().error_for_status().unwrap();
                changes += 1;
            }
            changes
        })
    };
    // Probes as a kubelet sends them: on a period, each waiting for its own answer.
    let probes: Arc<Mutex<Vec<Probe>>> = Arc::default();
    let prober = {
        let (probes, stop, readyz) = (probes.clone(), stop_load.clone(), readyz.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut running = tokio::task::JoinSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let (probes, readyz) = (probes.clone(), readyz.clone());
                running.spawn(async move {
                    let asked = Utc::now();
                    let status = readyz().await;
                    probes.lock().unwrap().push(Probe { asked, answered: Utc::now(), status });
                });
            }
            while running.join_next().await.is_some() {}
        })
    };
    let pid = server.0.id();
    let still_running = |server: &mut Running, when: &str| {
        assert!(server.0.try_wait().unwrap().is_none(), "the service exited {when} (log: {})", work.join("serve.log").display());
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 1. A fast restart: sessions cut, the server back within a second or two.
    let restart_began = Utc::now();
    tokio::task::block_in_place(|| cluster.restart()).unwrap();
    let back = Utc::now();
    let ready_after_restart = until_ready(&probes, back).await;
    still_running(&mut server, "after the fast restart");
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 2. An outage: stopped for a while, then started again.
    tokio::task::block_in_place(|| cluster.stop()).unwrap();
    let down = Utc::now();
    tokio::time::sleep(outage).await;
    let up_begins = Utc::now();
    tokio::task::block_in_place(|| cluster.start_again()).unwrap();
    let up = Utc::now();
    let ready_after_outage = until_ready(&probes, up).await;
    still_running(&mut server, "after the outage");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_load.store(true, std::sync::atomic::Ordering::Relaxed);
    let changes = load.await.unwrap();
    prober.await.unwrap();
    assert_eq!(server.0.id(), pid);
    still_running(&mut server, "at the end");

    // While the database was down, every probe answered was 503, and there were some.
    let probes = probes.lock().unwrap().clone();
    let during_outage: Vec<&Probe> = probes.iter().filter(|p| p.asked >= down && p.answered <= up_begins).collect();
    assert!(!during_outage.is_empty(), "no probe fell inside the outage: it proves nothing");
    let not_503: Vec<_> = during_outage.iter().filter(|p| p.status != Some(503)).map(|p| p.status).collect();
    assert!(not_503.is_empty(), "readiness while the database was down: {not_503:?}");

    // Every delivery GitLab made, with our answer. Wait until each change's delivery is in.
    let deliveries = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list: Vec<Value> = http.get(format!("{}/-/sim/deliveries", sim.base_url)).send().await.unwrap().json().await.unwrap();
            let load: Vec<Value> =
                list.into_iter().filter(|d| parse_ts(&d["created_at"]) >= restart_began - chrono::Duration::seconds(10)).collect();
            if load.len() as u64 >= changes {
                break load;
            }
            assert!(Instant::now() < deadline, "{} of {changes} deliveries made", load.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let started = |d: &Value| {
        parse_ts(&d["created_at"]) - chrono::Duration::milliseconds((d["execution_duration"].as_f64().unwrap() * 1000.0) as i64)
    };
    let acked: BTreeSet<String> = deliveries
        .iter()
        .filter(|d| d["response_status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
        .map(|d| d["idempotency_key"].as_str().unwrap().to_owned())
        .collect();
    let in_outage: Vec<&Value> = deliveries.iter().filter(|d| started(d) >= down && parse_ts(&d["created_at"]) <= up_begins).collect();
    let acked_in_outage: Vec<&Value> =
        in_outage.iter().copied().filter(|d| acked.contains(d["idempotency_key"].as_str().unwrap())).collect();
    assert!(!in_outage.is_empty(), "no delivery fell inside the outage: it proves nothing");
    assert!(acked_in_outage.is_empty(), "acknowledged while the database was down: {acked_in_outage:?}");
    let refused_statuses: BTreeMap<String, usize> =
        deliveries.iter().filter(|d| !acked.contains(d["idempotency_key"].as_str().unwrap())).fold(BTreeMap::new(), |mut m, d| {
            *m.entry(d["response_status"].as_u64().map_or_else(|| "no answer".to_owned(), |s| s.to_string())).or_default() += 1;
            m
        });
    assert!(
        refused_statuses.keys().all(|s| s == "503"),
        "a refused delivery must be a 503 that GitLab counts as failed: {refused_statuses:?}"
    );

    // Every acknowledged delivery is in the inbox, once, and applied; the commit each pushed
    // is stored and entered the change feed once.
    let owner = cluster.options().database("gitlab_connector");
    let mut db = owner.connect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let inbox: BTreeMap<String, (String, i64)> = loop {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT dedup_key, status, count(*) OVER (PARTITION BY hook_id, dedup_key) FROM webhook_deliveries")
                .fetch_all(&mut db)
                .await
                .unwrap();
        let rows: BTreeMap<String, (String, i64)> = rows.into_iter().map(|(k, s, n)| (k, (s, n))).collect();
        if acked.iter().all(|k| rows.get(k).is_some_and(|(s, _)| s != "received")) || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lost: Vec<&String> = acked.iter().filter(|k| !inbox.contains_key(*k)).collect();
    assert!(lost.is_empty(), "acknowledged but not in the inbox: {lost:?}");
    let not_applied: Vec<(&String, &String)> =
        acked.iter().filter_map(|k| inbox.get(k).filter(|(s, _)| s != "applied").map(|(s, _)| (k, s))).collect();
    assert!(not_applied.is_empty(), "acknowledged but not applied: {not_applied:?}");
    assert!(inbox.values().all(|(_, n)| *n == 1), "a delivery stored twice");
    let pushed: BTreeSet<String> = deliveries
        .iter()
        .filter(|d| acked.contains(d["idempotency_key"].as_str().unwrap()) && d["event"] == "Push Hook")
        .flat_map(|d| {
            let body: Value = serde_json::from_str(d["request_body"].as_str().unwrap()).unwrap();
            body["commits"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        })
        .collect();
    assert!(!pushed.is_empty(), "no acknowledged push: nothing to check");
    let stored: BTreeSet<String> =
        sqlx::query_scalar("SELECT sha FROM commits WHERE project_id = 1").fetch_all(&mut db).await.unwrap().into_iter().collect();
    let missing: Vec<&String> = pushed.difference(&stored).collect();
    assert!(missing.is_empty(), "acknowledged pushes whose commits are not stored: {missing:?}");
    let twice: Vec<(String, i64)> = sqlx::query_as(
        "SELECT key ->> 'sha', count(*) FROM changes WHERE entity = 'commit' AND op = 'insert' GROUP BY 1 HAVING count(*) > 1",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(twice.is_empty(), "commits inserted twice: {twice:?}");

    // The worker recovered too: a push of more commits than a payload carries (GitLab sends 20)
    // needs its catch-up job, which also fetches what the refused deliveries announced. Then
    // the project's commits equal the ground truth.
    let big_push = http.post(format!("{}/-/sim/projects/1/push?wait=true", sim.base_url)).json(&json!({"branch": "main", "commits": 25}));
    big_push.send().await.unwrap().error_for_status().unwrap();
    let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
    let truth: BTreeSet<String> =
        sim.sim.with_dataset(|d| d.synced_since(1, start).unwrap().commits.iter().map(|c| c.id.clone()).collect());
    let deadline = Instant::now() + Duration::from_secs(90);
    let caught_up = Instant::now();
    loop {
        let stored: BTreeSet<String> =
            sqlx::query_scalar("SELECT sha FROM commits WHERE project_id = 1").fetch_all(&mut db).await.unwrap().into_iter().collect();
        if stored == truth {
            break;
        }
        let missing = truth.difference(&stored).count();
        assert!(
            Instant::now() < deadline,
            "{missing} commits of project 1 missing after the outage; extra: {:?}",
            stored.difference(&truth).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let caught_up = caught_up.elapsed();
    still_running(&mut server, "after the catch-up");

    let sent = deliveries.len();
    let refused: usize = refused_statuses.values().sum();
    println!(
        "pg restart: {changes} changes in GitLab, {sent} deliveries sent, {} acknowledged, {refused} refused {refused_statuses:?} \
         ({} of them inside the {outage:?} outage, 0 acknowledged there), lost 0, applied twice 0; \
         /readyz: {} probes, {} inside the outage all 503; ready again {ready_after_restart:?} after the fast restart \
         and {ready_after_outage:?} after the database came back ({:?} to start it), same process throughout; \
         the worker's catch-up then brought project 1 to its {} commits of the ground truth in {caught_up:?}",
        acked.len(),
        in_outage.len(),
        probes.len(),
        during_outage.len(),
        (up - up_begins).to_std().unwrap(),
        truth.len(),
    );
    std::fs::remove_dir_all(&work).ok();
}

/// How long after `since` a probe asked after it was first answered 200.
async fn until_ready(probes: &Mutex<Vec<Probe>>, since: DateTime<Utc>) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let first = probes.lock().unwrap().iter().filter(|p| p.asked >= since && p.status == Some(200)).map(|p| p.answered).min();
        if let Some(at) = first {
            return (at - since).to_std().unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "not ready 60 s after the database came back, and nothing restarted the service");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn parse_ts(v: &Value) -> DateTime<Utc> {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a timestamp: {v}"))
}
