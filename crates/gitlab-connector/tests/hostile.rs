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
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_gitlab_answering_hundreds_of_mebibytes_is_read_only_up_to_the_cap(owner: PgPool) {
    // Every request, whatever its path, is answered 200 with an endless-looking JSON array,
    // streamed so that the hostile side itself holds one chunk at a time.
    let hostile = axum::Router::new().fallback(|| async {
        let chunk = Bytes::from(vec![b' '; 1 << 20]);
        let body = futures_util::stream::iter((0..ANSWER_MIB).map(move |i| {
            Ok::<_, std::io::Error>(if i == 0 { Bytes::from_static(b"[") } else { chunk.clone() })
        }));
        ([("content-type", "application/json")], Body::from_stream(body))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gitlab = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hostile).await });

    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dev_state = std::env::temp_dir().join(format!("gc-hostile-{}", uuid::Uuid::new_v4()));
    let database_url = owner.connect_options().to_url_lossy().to_string();
    let mut serve = common::serve("api,worker", &database_url, &MasterKeyRing::generate_entry(1), &dev_state, &format!("127.0.0.1:{port}"), &base);
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
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dev_state = std::env::temp_dir().join(format!("gc-hostile-{}", uuid::Uuid::new_v4()));
    let database_url = owner.connect_options().to_url_lossy().to_string();
    let mut serve = common::serve("api,ingest,worker", &database_url, &MasterKeyRing::generate_entry(1), &dev_state, &format!("127.0.0.1:{port}"), &base);
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
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dev_state = std::env::temp_dir().join(format!("gc-hostile-{}", uuid::Uuid::new_v4()));
    let database_url = owner.connect_options().to_url_lossy().to_string();
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
