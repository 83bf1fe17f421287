//! A GitLab that a tenant controls, against the real binary: whatever it answers, the process
//! reads at most its response cap of one answer, and the tenant is told what went wrong.

mod common;

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use common::{Api, Running};
use connector_crypto::MasterKeyRing;
use serde_json::json;
use sqlx::{ConnectOptions, PgPool};

/// What the hostile GitLab answers every request with: 768 MiB of JSON-looking bytes.
const ANSWER_MIB: usize = 768;

/// The process's peak resident set (VmHWM) in MiB.
/// Where a test's server listens and keeps its development state, and the database it uses.
struct Site {
    port: u16,
    base: String,
    dev_state: std::path::PathBuf,
    database_url: String,
}

impl Site {
    fn new(owner: &PgPool) -> Self {
        let port = common::free_port();
        Site {
            port,
            base: format!("http://127.0.0.1:{port}"),
            dev_state: std::env::temp_dir().join(format!("gc-hostile-{}", uuid::Uuid::new_v4())),
            database_url: owner.connect_options().to_url_lossy().to_string(),
        }
    }
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap();
    kib / 1024
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_gitlab_answering_hundreds_of_mebibytes_is_read_only_up_to_the_cap(owner: PgPool) {
    // Every request, whatever its path, is answered 200 with an endless-looking JSON array,
    // streamed so that the hostile side itself holds one chunk at a time.
    let hostile = axum::Router::new().fallback(|| async {
        let chunk = Bytes::from(vec![b' '; 1 << 20]);
        let body = futures_util::stream::iter(
            (0..ANSWER_MIB).map(move |i| Ok::<_, std::io::Error>(if i == 0 { Bytes::from_static(b"[") } else { chunk.clone() })),
        );
        ([("content-type", "application/json")], Body::from_stream(body))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gitlab = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hostile).await });

    let Site { port, base, dev_state, database_url } = Site::new(&owner);
    let mut serve =
        common::serve("api,worker", &database_url, &MasterKeyRing::generate_entry(1), &dev_state, &format!("127.0.0.1:{port}"), &base);
    let server = Running(serve.spawn().unwrap());
    let pid = server.0.id();
    let api = Api::new(base);
    api.wait_ready(Duration::from_secs(30)).await;
    let before = peak_rss_mib(pid);
    let id = api
        .connect("acme", json!({"access_token": "glpat-hostile-test-000000", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": gitlab}))
        .await;

    let started = Instant::now();
    let connection = loop {
        let c = api.get(&format!("/v1/connections/{id}"), "acme").await;
        if !["pending", "validating"].contains(&c["status"].as_str().unwrap()) {
            break c;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "validation never ended: {c}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let peak = peak_rss_mib(pid);
    let message = connection["status_message"].as_str().unwrap_or_default().to_owned();
    assert_eq!(connection["status"], "invalid", "{connection}");
    assert!(message.contains("MiB"), "the tenant is told the answer was too large: {message}");
    assert!(peak < 160, "peak RSS {peak} MiB (from {before} MiB) while GitLab answered {ANSWER_MIB} MiB");
    println!(
        "hostile: GitLab answered {ANSWER_MIB} MiB per request; the process peaked at {peak} MiB (from {before} MiB at start); \
         the connection is invalid after {:.1?}: {message}",
        started.elapsed()
    );
}

/// Anyone on the internet can reach the webhook endpoint. Deliveries to unknown endpoints, and
/// to real ones without the hook's secret, are refused from their headers, before a byte of
/// their bodies is read; a body with the right secret is read only so fast and so long.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn webhook_bodies_are_read_only_after_the_headers_prove_the_hook(owner: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = gitlab_sim::Simulator::new(gitlab_sim::Dataset::generate(1, gitlab_sim::Size::Small), gitlab_sim::SimConfig::default())
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let Site { port, base, dev_state, database_url } = Site::new(&owner);
    let mut serve = common::serve(
        "api,ingest,worker",
        &database_url,
        &MasterKeyRing::generate_entry(1),
        &dev_state,
        &format!("127.0.0.1:{port}"),
        &base,
    );
    let server = Running(serve.spawn().unwrap());
    let pid = server.0.id();
    let api = Api::new(base.clone());
    api.wait_ready(Duration::from_secs(30)).await;
    let id = api
        .connect("acme", json!({"access_token": "glpat-sim-owner-api-0001", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": sim.base_url}))
        .await;
    api.wait_live("acme", &id).await;
    let hook = sim.sim.with_dataset(|d| d.hooks[0].clone());
    let before = peak_rss_mib(pid);

    // 16 senders at once, each announcing and sending 24 MiB: to an unknown endpoint, and to
    // the real one with no secret and with a wrong one.
    let body = Bytes::from(vec![b' '; 24 << 20]);
    let http = reqwest::Client::new();
    let unknown = format!("{base}/webhooks/gitlab/{}", uuid::Uuid::new_v4());
    let mut sent = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (http, body) = (http.clone(), body.clone());
        let (url, token) = match i % 3 {
            0 => (unknown.clone(), None),
            1 => (hook.url.clone(), None),
            _ => (hook.url.clone(), Some("not-the-secret")),
        };
        sent.spawn(async move {
            let mut request = http.post(url).header("x-gitlab-event", "Push Hook").body(body);
            if let Some(token) = token {
                request = request.header("x-gitlab-token", token);
            }
            request.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        });
    }
    let statuses: Vec<u16> = sent.join_all().await;
    let peak = peak_rss_mib(pid);
    assert!(statuses.iter().all(|s| [401, 404, 0].contains(s)), "{statuses:?}");
    assert!(peak < before + 64, "peak RSS {peak} MiB from {before} MiB under 16 unauthenticated 24 MiB bodies");

    // The right secret, then a body that trickles: cut off, not held.
    let address = base.trim_start_matches("http://");
    let path = hook.url.split_once("127.0.0.1").map(|(_, rest)| rest.split_once('/').map(|(_, p)| format!("/{p}")).unwrap()).unwrap();
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\nx-gitlab-event: Push Hook\r\nx-gitlab-token: {}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n",
        hook.token.clone().unwrap()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let cut = loop {
        if socket.write_all(b" ").await.is_err() {
            break started.elapsed();
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(500), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(60), "a trickling body was held for a minute");
    };
    println!(
        "hostile: 16 unauthenticated 24 MiB deliveries answered {statuses:?}, peak RSS {peak} MiB from {before} MiB; \
         a trickling body with the right secret cut off after {cut:.1?}: {}",
        String::from_utf8_lossy(&answer).lines().next().unwrap_or("(no answer)")
    );
    assert!(cut < Duration::from_secs(15), "{cut:?}");
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Slowloris: hundreds of sockets that send their headers a byte at a time. Each is closed once
/// the header-read timeout passes, sockets past the connection cap are closed at once (so the
/// process's open files stay bounded), and `/healthz` answers once the flood's sockets are gone.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn slow_headers_are_cut_off_and_connections_capped(owner: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SOCKETS: usize = 300;
    const CAP: usize = 200;
    let Site { port, base, dev_state, database_url } = Site::new(&owner);
    let mut serve = common::serve("api", &database_url, &MasterKeyRing::generate_entry(1), &dev_state, &format!("127.0.0.1:{port}"), &base);
    let server = Running(serve.env("MAX_CONNECTIONS", CAP.to_string()).env("HEADER_READ_TIMEOUT", "2s").spawn().unwrap());
    let pid = server.0.id();
    let api = Api::new(base.clone());
    api.wait_ready(Duration::from_secs(30)).await;
    let files_before = open_files(pid);

    let address = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..SOCKETS {
        let address = address.clone();
        flood.spawn(async move {
            let Ok(mut socket) = tokio::net::TcpStream::connect(&address).await else { return Duration::ZERO };
            let opened = Instant::now();
            let _ = socket.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await;
            loop {
                // A header line, a byte at a time, never ending.
                if socket.write_all(b"x").await.is_err() {
                    return opened.elapsed();
                }
                let mut buf = [0u8; 256];
                match tokio::time::timeout(Duration::from_millis(250), socket.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return opened.elapsed(),
                    _ => {}
                }
                if opened.elapsed() > Duration::from_secs(30) {
                    return opened.elapsed();
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let files_during = open_files(pid);
    let held: Vec<Duration> = flood.join_all().await;
    let longest = held.iter().max().copied().unwrap_or_default();
    let healthz = api.http.get(format!("{base}/healthz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
    println!(
        "hostile: {SOCKETS} slow-header sockets against a cap of {CAP}: open files {files_before} before, {files_during} during; \
         the longest held {longest:.1?} (header timeout 2 s); /healthz afterwards {healthz}; {:.1?} in all",
        started.elapsed()
    );
    assert!(longest < Duration::from_secs(5), "a slow-header socket was held {longest:?}");
    assert!(files_during <= files_before + CAP + 16, "{files_during} open files with a cap of {CAP} connections");
    assert_eq!(healthz, 200);
}

/// Sends `request` on a fresh socket and reads the whole answer (the server closes after an
/// error), returning its status and its body parsed as JSON (`Null` when it is not JSON).
async fn raw_exchange(address: &str, requests: &[&[u8]]) -> Vec<(u16, serde_json::Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    for request in requests {
        // The server may answer and close before it has read all of an oversized request.
        let _ = socket.write_all(request).await;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let mut answers = Vec::new();
    let mut rest = text.as_str();
    while let Some(head_end) = rest.find("\r\n\r\n") {
        let head = &rest[..head_end];
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        let body_end = (head_end + 4 + length).min(rest.len());
        let body = &rest[head_end + 4..body_end];
        answers.push((status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null)));
        rest = &rest[body_end..];
    }
    answers
}

/// Requests hyper would refuse before any route runs (a request line over its 64 KiB URI limit,
/// a head over its buffer, a malformed request line) are answered in the API's JSON error shape
/// when they open a connection, as are URIs over our own 8 KiB limit on any request. The one
/// exception, asserted as such: a later request of a kept-alive connection past hyper's own limit
/// gets hyper's bodyless status.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn malformed_and_oversized_requests_get_json_errors(owner: PgPool) {
    let Site { port, base, dev_state, database_url } = Site::new(&owner);
    let _server = Running(
        common::serve("api", &database_url, &MasterKeyRing::generate_entry(1), &dev_state, &format!("127.0.0.1:{port}"), &base)
            .spawn()
            .unwrap(),
    );
    let api = Api::new(base.clone());
    api.wait_ready(Duration::from_secs(30)).await;
    let address = format!("127.0.0.1:{port}");

    let long_path = format!("GET /v1/{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(100_000));
    let medium_path = format!("GET /v1/connections?{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(20_000));
    let huge_header = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "b".repeat(600_000));
    let many_headers =
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{}\r\n", (0..200).map(|i| format!("x-h{i}: v\r\n")).collect::<String>());
    let healthz: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    let cases: Vec<(&str, Vec<&[u8]>, u16, bool)> = vec![
        ("a 100 kB path", vec![long_path.as_bytes()], 414, true),
        ("a 100 kB path after a kept-alive request", vec![healthz, long_path.as_bytes()], 414, false),
        ("a 20 kB query", vec![medium_path.as_bytes()], 414, true),
        ("a 20 kB query after a kept-alive request", vec![healthz, medium_path.as_bytes()], 414, true),
        ("a 600 kB header", vec![huge_header.as_bytes()], 431, true),
        ("200 headers", vec![many_headers.as_bytes()], 431, true),
        ("a malformed request line", vec![b"GET\x01/ HTTP/1.1\r\nhost: x\r\n\r\n"], 400, true),
        ("a malformed header", vec![b"GET /healthz HTTP/1.1\r\nhost x\r\n\r\n"], 400, true),
    ];
    let mut failures = Vec::new();
    for (name, requests, status, json) in cases {
        let answers = raw_exchange(&address, &requests).await;
        println!("hostile: {name}: answered {:?}", answers.iter().map(|(s, b)| (s, b["error"]["code"].clone())).collect::<Vec<_>>());
        let Some((got, body)) = answers.last() else {
            failures.push(format!("{name}: no answer"));
            continue;
        };
        if answers.len() != requests.len() {
            failures.push(format!("{name}: {} answers to {} requests", answers.len(), requests.len()));
        }
        if *got != status || json && (!body["error"]["code"].is_string() || !body["error"]["message"].is_string()) {
            failures.push(format!("{name}: {got} {body}, wanted {status} with a JSON error"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// One tenant creating connections as fast as it can neither exceeds its cap nor holds up
/// another tenant's onboarding: jobs are taken round-robin between tenants, so the quiet
/// tenant's first connection goes live about as fast beside the flood as alone.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_flooding_tenant_is_capped_and_does_not_delay_anothers_onboarding(owner: PgPool) {
    use gitlab_sim::{Dataset, SimConfig, Simulator, Size};
    const CAP: usize = 40;
    let mut sim_config = SimConfig::default();
    // GitLab's own latency, so that jobs take the time they take against a real GitLab.
    sim_config.latency.min_ms = 40;
    sim_config.latency.max_ms = 60;
    let sim = Simulator::new(Dataset::generate(1, Size::Small), sim_config).spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let Site { port, base, dev_state, database_url } = Site::new(&owner);
    let mut serve = common::serve(
        "api,ingest,worker",
        &database_url,
        &MasterKeyRing::generate_entry(1),
        &dev_state,
        &format!("127.0.0.1:{port}"),
        &base,
    );
    let _server = Running(serve.env("TENANT_MAX_CONNECTIONS", CAP.to_string()).spawn().unwrap());
    let api = Api::new(base);
    api.wait_ready(Duration::from_secs(30)).await;
    let body = json!({"access_token": "glpat-sim-owner-api-0001", "groups_list": "4", "projects_list": "2", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": sim.base_url});

    // Another company: another GitLab user, so no GitLab rate limit is shared with the flood.
    let mut quiet_body = body.clone();
    // (The simulator's maintainer is a member of project 1 only.)
    quiet_body["access_token"] = json!(gitlab_sim::TOKEN_MAINTAINER);
    quiet_body["groups_list"] = json!("1");
    quiet_body["projects_list"] = json!("1");
    let time_to_live = |tenant: &'static str| {
        let (api, body) = (&api, quiet_body.clone());
        async move {
            let started = Instant::now();
            let id = api.connect(tenant, body).await;
            // Each status with when it was first seen, to show where the time goes.
            let mut seen: Vec<(String, Duration)> = Vec::new();
            loop {
                let status = api.get(&format!("/v1/connections/{id}"), tenant).await["status"].as_str().unwrap().to_owned();
                if seen.last().is_none_or(|(s, _)| *s != status) {
                    seen.push((status.clone(), started.elapsed()));
                }
                if status == "live" {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(120) && !["invalid", "failed"].contains(&status.as_str()), "{seen:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            println!("hostile: {tenant}: {:?}", seen.iter().map(|(s, t)| format!("{s} at {t:.1?}")).collect::<Vec<_>>());
            started.elapsed()
        }
    };
    let alone = time_to_live("quiet-alone").await;

    let flood_started = Instant::now();
    let mut created = 0;
    let mut refused = None;
    for _ in 0..CAP + 10 {
        let (status, answer) = api.call(reqwest::Method::POST, "/v1/connections", "flood", Some(body.clone())).await;
        match status {
            201 => created += 1,
            _ => {
                refused.get_or_insert((status, answer));
            }
        }
    }
    let flood_took = flood_started.elapsed();
    let beside = time_to_live("quiet-beside").await;
    // Fairness as order, which no pause of the whole worker can blur: how many of the flood's
    // jobs a worker took after each of the quiet tenant's jobs was due and before it took that one.
    let overtaken: Vec<(String, i64)> = sqlx::query_as(
        "SELECT q.job_type, count(f.id)
         FROM apalis.jobs q
         LEFT JOIN apalis.jobs f ON f.job_type = q.job_type AND f.tenant = 'flood' AND f.lock_at > q.run_at AND f.lock_at < q.lock_at
         WHERE q.tenant = 'quiet-beside' AND q.lock_at IS NOT NULL
         GROUP BY q.id, q.job_type ORDER BY min(q.run_at)",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    println!("hostile: the flood's jobs taken before each of the quiet tenant's once it was due: {overtaken:?}");
    println!(
        "hostile: a flooding tenant created {created} connections in {flood_took:.1?} (cap {CAP}), then was refused: {refused:?}; \
         another tenant's first connection went live in {beside:.1?} beside it, {alone:.1?} alone ({:.2}x)",
        beside.as_secs_f64() / alone.as_secs_f64()
    );
    assert_eq!(created, CAP);
    let (status, answer) = refused.expect("a connection past the cap was refused");
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "limit_reached", "{answer}");
    // What a worker had fetched before the quiet job was due (a batch of WORKER_CONCURRENCY, 4)
    // and what its running jobs requeued may still go first; the flood's other jobs may not.
    assert!(overtaken.len() >= 3 && overtaken.iter().all(|(_, n)| *n <= 12), "{overtaken:?}");
}

/// Our hooks on a GitLab project or group: those whose URL points at `base`.
async fn our_hooks(sim: &str, owner_path: &str, base: &str) -> usize {
    let hooks: Vec<serde_json::Value> = reqwest::Client::new()
        .get(format!("{sim}/api/v4/{owner_path}/hooks"))
        .header("PRIVATE-TOKEN", gitlab_sim::TOKEN_OWNER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    hooks.iter().filter(|h| h["url"].as_str().is_some_and(|u| u.starts_with(base))).count()
}

/// Rows naming `value` in every table (of every schema but the catalog's) that has `column`,
/// but those containing `except`: found from the catalog, so a table added later is counted too.
async fn rows_naming(owner: &PgPool, column: &str, value: &str, except: serde_json::Value) -> Vec<(String, i64)> {
    let tables: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_schema, table_name, data_type FROM information_schema.columns
         WHERE column_name = $1 AND table_schema NOT IN ('pg_catalog', 'information_schema')
           AND table_name IN (SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE')",
    )
    .bind(column)
    .fetch_all(owner)
    .await
    .unwrap();
    let mut found = Vec::new();
    for (schema, table, _) in tables {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {schema}.{table} AS t WHERE {column}::text = $1 AND NOT to_jsonb(t) @> $2"
        )))
        .bind(value)
        .bind(&except)
        .fetch_one(owner)
        .await
        .unwrap();
        if count > 0 {
            found.push((format!("{schema}.{table}"), count));
        }
    }
    found
}

/// Deleting a connection removes our hooks from GitLab and every row of it but one `connection`
/// deletion in the feed; deleting a tenant (the operator command) removes our hooks from every
/// connection's GitLab and every row naming the tenant, so a fresh token for it reads nothing.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn deleting_a_connection_or_a_tenant_leaves_nothing_behind(owner: PgPool) {
    use gitlab_sim::{Dataset, SimConfig, Simulator, Size};
    let sim = Simulator::new(Dataset::generate(1, Size::Small), SimConfig::default()).spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let Site { port, base, dev_state, database_url } = Site::new(&owner);
    let keys = MasterKeyRing::generate_entry(1);
    let _server =
        Running(common::serve("api,ingest,worker", &database_url, &keys, &dev_state, &format!("127.0.0.1:{port}"), &base).spawn().unwrap());
    let api = Api::new(base.clone());
    api.wait_ready(Duration::from_secs(30)).await;
    let token = gitlab_sim::TOKEN_OWNER;
    // A Free group's project (a project hook) and a Premium group (a group hook).
    let leaving = api
        .connect("leaver", json!({"access_token": token, "groups_list": "4", "projects_list": "2", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": sim.base_url}))
        .await;
    let gone = api
        .connect(
            "gone-co",
            json!({"access_token": token, "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": sim.base_url}),
        )
        .await;
    api.wait_live("leaver", &leaving).await;
    api.wait_live("gone-co", &gone).await;
    let gitlab = common::SimControl::new(&sim.base_url);
    gitlab.post("projects/2/push", json!({"branch": "main", "commits": 2})).await;
    gitlab.post("projects/1/push", json!({"branch": "main", "commits": 2})).await;
    assert_eq!(our_hooks(&sim.base_url, "projects/2", &base).await, 1);
    assert_eq!(our_hooks(&sim.base_url, "groups/1", &base).await, 1);
    let before = rows_naming(&owner, "connection_id", &leaving, json!({"never": true})).await;

    // A connection, through the API.
    let (status, _) = api.call(reqwest::Method::DELETE, &format!("/v1/connections/{leaving}"), "leaver", None).await;
    assert_eq!(status, 202);
    let started = Instant::now();
    while api.call(reqwest::Method::GET, &format!("/v1/connections/{leaving}"), "leaver", None).await.0 != 404 {
        assert!(started.elapsed() < Duration::from_secs(30), "the connection was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hooks_left = our_hooks(&sim.base_url, "projects/2", &base).await;
    let rows_left = rows_naming(&owner, "connection_id", &leaving, json!({"entity": "connection", "op": "delete"})).await;
    // The job rows that name the connection in their payload, but the disconnection's own.
    let jobs_left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM apalis.jobs
         WHERE convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'connection' = $1
           AND convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'kind' <> 'disconnect'",
    )
    .bind(&leaving)
    .fetch_one(&owner)
    .await
    .unwrap();
    // The feed shows a change once no transaction older than it is still open anywhere in the
    // cluster (it is gap-free), which under a loaded CI can be a moment after the commit: poll, as
    // a client does.
    let started = Instant::now();
    let feed = loop {
        let feed = api.get("/v1/changes?limit=100", "leaver").await;
        let feed: Vec<(String, String)> = feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["entity"].as_str().unwrap().to_owned(), c["op"].as_str().unwrap().to_owned()))
            .collect();
        if !feed.is_empty() || started.elapsed() > Duration::from_secs(15) {
            break feed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "hostile: deleting a connection: rows before {before:?}; after: {rows_left:?}, {jobs_left} job rows, {hooks_left} of our hooks in GitLab; its tenant's feed {feed:?}"
    );
    assert_eq!(hooks_left, 0);
    assert!(rows_left.is_empty(), "{rows_left:?}");
    assert_eq!(jobs_left, 0);
    assert_eq!(feed, vec![("connection".to_owned(), "delete".to_owned())]);

    // A tenant, by the operator.
    // Async: the simulator is served by this test's runtime, which a blocking wait would stop.
    let out = tokio::process::Command::new(common::BIN)
        .args(["tenants", "delete", "--tenant", "gone-co"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &database_url)
        .env("MASTER_KEYS", &keys)
        .env("DEV_STATE_DIR", &dev_state)
        .env("PUBLIC_URL", &base)
        .env("GITLAB_URL_ALLOWLIST", "127.0.0.1/32:*")
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let hooks_left = our_hooks(&sim.base_url, "groups/1", &base).await;
    let mut rows_left = rows_naming(&owner, "tenant_id", "gone-co", json!({"never": true})).await;
    rows_left.extend(rows_naming(&owner, "tenant", "gone-co", json!({"never": true})).await);
    let tenant_row: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE id = 'gone-co'").fetch_one(&owner).await.unwrap();
    let feed = api.get("/v1/changes?limit=100", "gone-co").await;
    println!(
        "hostile: deleting a tenant said {said:?}; after: {rows_left:?}, tenant row {tenant_row}, {hooks_left} of our hooks in GitLab; a fresh token's feed {feed}"
    );
    assert!(out.status.success(), "{said}");
    assert_eq!(hooks_left, 0);
    assert!(rows_left.is_empty(), "{rows_left:?}");
    assert_eq!(tenant_row, 0);
    assert_eq!(feed["items"], json!([]));
    // The other tenant's deletion event is still there: one tenant's deletion touches no other.
    assert_eq!(api.get("/v1/changes?limit=100", "leaver").await["items"].as_array().unwrap().len(), 1);
}

/// A listener that records what it is sent and answers each connection with `answer` (or
/// nothing, closing, when it is empty).
async fn trap(answer: &'static [u8]) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = heard.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), socket.read(&mut buf)).await {
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = socket.write_all(answer).await;
            });
        }
    });
    (port, heard)
}

/// A tenant's `gitlab_url` cannot reach a port the allowlist does not name, and where the
/// allowlist admits every port, the token goes only to something that answered like GitLab:
/// an HTTP server that is not GitLab, a listener that is not HTTP, PostgreSQL and a closed port
/// all get the one message, and none of them is sent the token.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_gitlab_url_reaches_only_allowed_ports_and_only_gitlab_gets_the_token(owner: PgPool) {
    let dev_state = std::env::temp_dir().join(format!("gc-hostile-{}", uuid::Uuid::new_v4()));
    let database_url = owner.connect_options().to_url_lossy().to_string();
    let token = "glpat-hostile-trap-token-0001";
    let body = |url: String| json!({"access_token": token, "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": url});

    // Loopback allowlisted without ports: 443 and 80 only.
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    // One key ring for both servers below: a pod with another key under version 1 would not start.
    let keys = MasterKeyRing::generate_entry(1);
    let server = Running(
        common::serve("api", &database_url, &keys, &dev_state, &format!("127.0.0.1:{port}"), &base)
            .env("GITLAB_URL_ALLOWLIST", "127.0.0.1/32")
            .spawn()
            .unwrap(),
    );
    let api = Api::new(base.clone());
    api.wait_ready(Duration::from_secs(30)).await;
    for target in ["http://127.0.0.1:5432".to_owned(), format!("http://127.0.0.1:{port}")] {
        let (status, answer) = api.call(reqwest::Method::POST, "/v1/connections", "prober", Some(body(target.clone()))).await;
        println!("hostile: {target} with 127.0.0.1/32 allowlisted: {status} {}", answer["error"]["message"]);
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["error"]["field"], "gitlab_url");
        assert!(answer["error"]["message"].as_str().unwrap().contains("port"), "{answer}");
    }
    drop(server);

    // Every loopback port allowlisted: the worker must tell GitLab from the rest.
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server =
        Running(common::serve("api,worker", &database_url, &keys, &dev_state, &format!("127.0.0.1:{port}"), &base).spawn().unwrap());
    let api = Api::new(base.clone());
    api.wait_ready(Duration::from_secs(30)).await;
    let (http_port, http_heard) =
        trap(b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found").await;
    let (raw_port, raw_heard) = trap(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    let closed = common::free_port();
    let pg_port = owner.connect_options().get_port();
    let targets = [
        ("an HTTP server that is not GitLab", http_port),
        ("a listener that is not HTTP", raw_port),
        ("PostgreSQL", pg_port),
        ("a closed port", closed),
        ("our own API", port),
    ];
    let mut messages = Vec::new();
    for (what, target) in targets {
        let id = api.connect("prober", body(format!("http://127.0.0.1:{target}"))).await;
        let started = Instant::now();
        let shown = loop {
            let c = api.get(&format!("/v1/connections/{id}"), "prober").await;
            if let Some(message) = c["status_message"].as_str() {
                break (c["status"].as_str().unwrap().to_owned(), message.to_owned());
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{what}: no message: {c}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!("hostile: {what} (port {target}): {shown:?} after {:.1?}", started.elapsed());
        messages.push(shown);
    }
    let heard = [http_heard.lock().unwrap().clone(), raw_heard.lock().unwrap().clone()].concat();
    let heard = String::from_utf8_lossy(&heard);
    assert!(heard.contains("GET /api/v4/version"), "the probe reached the traps: {heard}");
    assert!(!heard.contains(token) && !heard.to_ascii_lowercase().contains("private-token"), "a trap was sent the token: {heard}");
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "one message for every case: {messages:#?}");
    assert!(messages[0].1.contains("no GitLab answered"), "{messages:?}");
}

/// `/metrics` answers only Prometheus' token, and names no tenant or connection.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn metrics_need_the_token_and_name_no_tenant(owner: PgPool) {
    let Site { port, base, dev_state, database_url } = Site::new(&owner);
    // No worker: the connection is made live by hand below, and validation would undo that.
    let _server = Running(
        common::serve("api", &database_url, &MasterKeyRing::generate_entry(1), &dev_state, &format!("127.0.0.1:{port}"), &base)
            .spawn()
            .unwrap(),
    );
    let api = Api::new(base.clone());
    api.wait_ready(Duration::from_secs(30)).await;
    let id = api
        .connect("secret-customer", json!({"access_token": "glpat-metrics-test-00001", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": "http://127.0.0.1:9"}))
        .await;
    sqlx::query("UPDATE gitlab_connections SET status = 'live', last_synced_at = now() WHERE id = $1::uuid")
        .bind(&id)
        .execute(&owner)
        .await
        .unwrap();
    let url = format!("{base}/metrics");
    let mut refused = Vec::new();
    for authorization in [None, Some("Bearer wrong-token"), Some("Basic bWV0cmljczpzZWNyZXQ="), Some(common::METRICS_TOKEN)] {
        let mut request = api.http.get(&url);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert_eq!(status, 401, "{authorization:?}");
        assert_eq!(body["error"]["code"], "unauthorized", "{authorization:?}");
        refused.push(authorization);
    }
    let response = api.http.get(&url).bearer_auth(common::METRICS_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let metrics = response.text().await.unwrap();
    let naming: Vec<&str> = metrics.lines().filter(|l| l.contains(&id) || l.contains("secret-customer")).collect();
    println!(
        "hostile: /metrics refused {} requests without the token (401); with it, {} lines, {} naming the tenant or its connection",
        refused.len(),
        metrics.lines().count(),
        naming.len()
    );
    assert!(naming.is_empty(), "{naming:#?}");
    assert!(metrics.contains("gitlab_connector_connections_by_sync_lag{le=\"+Inf\"} 1"), "{metrics}");
}

/// What one database role can reach, tried as an attacker holding its credential would: take the
/// cross-tenant role, list the queue's tenants and the shared rate budgets with no tenant set,
/// and call one of the worker's cross-tenant functions.
async fn reach_of(owner: &PgPool, user: &str) -> serde_json::Value {
    let options = owner.connect_options().as_ref().clone().username(user).password("");
    let mut conn = options.connect().await.unwrap();
    let mut system = sqlx::Connection::begin(&mut conn).await.unwrap();
    let as_system: Result<Vec<String>, _> = async {
        sqlx::query("SET LOCAL ROLE gitlab_connector_system").execute(&mut *system).await?;
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM webhook_hooks").fetch_all(&mut *system).await
    }
    .await;
    drop(system);
    let jobs: Result<Vec<String>, _> = sqlx::query_scalar("SELECT DISTINCT tenant FROM apalis.jobs").fetch_all(&mut conn).await;
    let budgets: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM gitlab_rate_budgets").fetch_one(&mut conn).await;
    let due: Result<Vec<String>, _> =
        sqlx::query_scalar("SELECT tenant_id FROM system_connections_due('token_health')").fetch_all(&mut conn).await;
    let shown = |r: Result<Vec<String>, sqlx::Error>| match r {
        Ok(tenants) => json!(tenants),
        Err(e) => json!(format!("refused: {}", e.as_database_error().map(|d| d.message().to_owned()).unwrap_or(e.to_string()))),
    };
    json!({
        "set_role_system": shown(as_system),
        "queue_tenants": shown(jobs),
        "rate_budgets": shown(budgets.map(|n| vec![n.to_string()])),
        "connections_due": shown(due),
    })
}

/// The roles the sessions of this database other than the test's own are logged in as.
async fn session_users(owner: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT DISTINCT usename::text FROM pg_stat_activity
         WHERE datname = current_database() AND usename <> current_user ORDER BY 1",
    )
    .fetch_all(owner)
    .await
    .unwrap()
}

/// The API and ingest pods face the internet, so their database credential is the one most
/// likely to leak. It reaches one tenant's rows at a time, as the tenant it is told, and nothing
/// across tenants but routing a webhook endpoint it is given: it cannot take the system role,
/// list the queue's tenants or the rate budgets, or call the worker's cross-tenant functions.
/// The worker's credential cannot take the system role either; its cross-tenant reads are
/// named functions.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn each_process_kind_logs_in_with_only_what_it_needs(owner: PgPool) {
    use gitlab_sim::{Dataset, SimConfig, Simulator, Size};
    let sim = Simulator::new(Dataset::generate(1, Size::Small), SimConfig::default()).spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let Site { port, base, dev_state, database_url } = Site::new(&owner);
    let keys = MasterKeyRing::generate_entry(1);
    let _api_pod =
        Running(common::serve("api,ingest", &database_url, &keys, &dev_state, &format!("127.0.0.1:{port}"), &base).spawn().unwrap());
    let api = Api::new(base.clone());
    api.wait_ready(Duration::from_secs(30)).await;
    let api_users = session_users(&owner).await;
    let worker_listen = format!("127.0.0.1:{}", common::free_port());
    let _worker_pod = Running(common::serve("worker", &database_url, &keys, &dev_state, &worker_listen, &base).spawn().unwrap());
    let token = gitlab_sim::TOKEN_OWNER;
    let victim = api
        .connect("victim-co", json!({"access_token": token, "groups_list": "4", "projects_list": "2", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": sim.base_url}))
        .await;
    api.wait_live("victim-co", &victim).await;
    // A delivery routed by the API pod and applied: the narrow credential still does its work.
    let gitlab = common::SimControl::new(&sim.base_url);
    let commits = || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM commits").fetch_one(&owner).await.unwrap() };
    let before = commits().await;
    gitlab.post("projects/2/push", json!({"branch": "main", "commits": 2})).await;
    let started = Instant::now();
    while commits().await < before + 2 {
        assert!(started.elapsed() < Duration::from_secs(30), "the pushed commits never arrived through the API pod's webhook endpoint");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let worker_users: Vec<String> = session_users(&owner).await.into_iter().filter(|u| !api_users.contains(u)).collect();
    assert_eq!(api_users.len(), 1, "the API pod logged in as {api_users:?}");
    let api_reach = reach_of(&owner, &api_users[0]).await;
    println!("hostile: the API pod logs in as {api_users:?}; its credential reaches {api_reach:#}");
    assert_eq!(worker_users.len(), 1, "the worker logged in as {worker_users:?} besides the API pod's role");
    let worker_reach = reach_of(&owner, &worker_users[0]).await;
    println!("hostile: the worker logs in as {worker_users:?}; its credential reaches {worker_reach:#}");
    for field in ["set_role_system", "rate_budgets", "connections_due"] {
        assert!(api_reach[field].as_str().is_some_and(|v| v.starts_with("refused")), "the API credential reaches {field}: {api_reach}");
    }
    // The queue shows it the jobs of the tenant it sets, and with none set, none.
    assert_eq!(api_reach["queue_tenants"], json!([]), "{api_reach}");
    assert!(worker_reach["set_role_system"].as_str().is_some_and(|v| v.starts_with("refused")), "{worker_reach}");
    assert_eq!(worker_reach["connections_due"], json!(["victim-co"]));
}
