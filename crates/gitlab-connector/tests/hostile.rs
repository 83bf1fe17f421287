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
