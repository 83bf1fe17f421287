//! SSRF at the API: a tenant names a `gitlab_url` that points inside our network. Whatever the
//! spelling (loopback, private ranges, link-local, cloud metadata, IPv4 in decimal, hex or
//! octal, IPv6 forms embedding IPv4, names resolving inside), creation answers 422 naming
//! `gitlab_url` unless the allowlist names the address; a name that resolves to a public
//! address at creation and to an internal one afterwards (DNS rebinding) is let in, then refused
//! by the worker on the address it would connect to. A listener on the loopback addresses
//! counts every connection: none may arrive.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connector_store::TenantId;
use connector_store::jobs::Job;
use connector_worker::{GitLabJobs, Jobs};
use gitlab_client::{ClientOptions, Lookup, RetryConfig, SystemLookup, UrlPolicy};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::common::TestApp;

const TENANT: &str = "mallory";
/// A public address (example.com's), what a rebinding name answers first.
const PUBLIC: &str = "93.184.215.14";

/// Accepts on 127.0.0.1 and ::1 (one port for both) and counts every connection.
struct Tripwire {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Tripwire {
    async fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        for _ in 0..50 {
            let v4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = v4.local_addr().unwrap().port();
            let Ok(v6) = TcpListener::bind((Ipv6Addr::LOCALHOST, port)).await else {
                continue;
            };
            for listener in [v4, v6] {
                let hits = hits.clone();
                tokio::spawn(async move {
                    while let Ok((conn, _)) = listener.accept().await {
                        hits.fetch_add(1, Ordering::SeqCst);
                        drop(conn);
                    }
                });
            }
            return Self { port, hits };
        }
        panic!("no port free on both 127.0.0.1 and ::1");
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// DNS with scripted answers for some names (the n-th lookup of a name gets its n-th answer,
/// the last one repeating) and the system's resolver for the rest (`localhost`).
#[derive(Default)]
struct Dns {
    script: HashMap<&'static str, Vec<Vec<IpAddr>>>,
    calls: Mutex<HashMap<String, usize>>,
}

impl Dns {
    fn answer(mut self, name: &'static str, answers: &[&[&str]]) -> Self {
        let answers = answers.iter().map(|ips| ips.iter().map(|ip| ip.parse().unwrap()).collect()).collect();
        self.script.insert(name, answers);
        self
    }

    fn calls(&self, name: &str) -> usize {
        self.calls.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl Lookup for Dns {
    fn lookup<'a>(&'a self, host: &'a str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(host.to_owned()).or_default();
            *n += 1;
            *n - 1
        };
        match self.script.get(host) {
            Some(answers) => {
                let answer = answers[n.min(answers.len() - 1)].clone();
                Box::pin(async move { Ok(answer) })
            }
            None => SystemLookup.lookup(host),
        }
    }
}

/// The URLs to refuse, by class; `{P}` is the tripwire's port, so that any loopback form that
/// got through would be counted.
const REFUSED: &[(&str, &[&str])] = &[
    (
        "loopback",
        &[
            "http://127.0.0.1:{P}",
            "https://127.0.0.1:{P}",
            "https://127.0.0.2:{P}",
            "https://127.255.255.254:{P}",
            "http://[::1]:{P}",
            "https://[::1]:{P}",
            "https://[0:0:0:0:0:0:0:1]:{P}",
            "http://localhost:{P}",
            "https://localhost:{P}",
            "https://LocalHost.:{P}",
            "https://127.1:{P}",
            "https://127.0.1:{P}",
            "http://0.0.0.0:{P}",
            "https://0.0.0.0:{P}",
            "https://0:{P}",
            "https://[::]:{P}",
            "https://2130706433:{P}",
            "https://0x7f000001:{P}",
            "https://0x7f.0.0.1:{P}",
            "https://0177.0.0.1:{P}",
            "https://017700000001:{P}",
            "https://[::ffff:127.0.0.1]:{P}",
            "https://[::ffff:7f00:1]:{P}",
            "https://[0:0:0:0:0:ffff:127.0.0.1]:{P}",
            "https://[::127.0.0.1]:{P}",
            "https://[64:ff9b::127.0.0.1]:{P}",
            "https://[2002:7f00:1::]:{P}",
            "https://v4mapped.attacker.example",
        ],
    ),
    ("ports other than 443 on public hosts", &["https://gitlab.example.com:22", "https://93.184.215.14:5432"]),
    (
        "private",
        &[
            "https://10.0.0.1",
            "https://10.255.255.254:8443",
            "https://172.16.0.1",
            "https://172.31.255.254",
            "https://192.168.0.1",
            "https://192.168.1.10/gitlab",
            "https://167772161",
            "https://0xc0a80001",
            "https://012.0.0.1",
            "https://100.64.0.1",
            "https://[fc00::1]",
            "https://[fd12:3456:789a::1]",
            "https://[::ffff:10.0.0.1]",
            "https://[::ffff:c0a8:101]",
            "https://[64:ff9b::10.0.0.1]",
            "https://intranet.corp.example",
            "https://multi.attacker.example",
            "https://ula.attacker.example",
        ],
    ),
    (
        "link-local",
        &[
            "https://169.254.0.1",
            "https://169.254.255.254",
            "https://[fe80::1]",
            "https://[febf::1]",
            "https://[::ffff:169.254.1.1]",
            "https://linklocal.attacker.example",
        ],
    ),
    (
        "cloud metadata",
        &[
            "http://169.254.169.254",
            "https://169.254.169.254/latest/meta-data",
            "http://169.254.170.2",
            "https://2852039166",
            "https://0xa9fea9fe",
            "https://0251.0376.0251.0376",
            "https://[::ffff:169.254.169.254]",
            "https://[::ffff:a9fe:a9fe]",
            "https://[fd00:ec2::254]",
            "http://metadata.google.internal",
            "https://metadata.google.internal",
            "https://Metadata.Google.Internal.",
            "https://metadata",
            "https://100.100.100.200",
        ],
    ),
];

fn dns() -> Dns {
    Dns::default()
        .answer("v4mapped.attacker.example", &[&["::ffff:127.0.0.1"]])
        .answer("intranet.corp.example", &[&["10.1.2.3"]])
        .answer("multi.attacker.example", &[&["10.0.0.7", "172.20.0.1", "192.168.7.7"]])
        .answer("ula.attacker.example", &[&["fd00::5"]])
        .answer("linklocal.attacker.example", &[&["169.254.10.10", "fe80::10"]])
        .answer("rebind.attacker.example", &[&[PUBLIC], &["127.0.0.1"]])
        .answer("rebind-metadata.attacker.example", &[&[PUBLIC], &["169.254.169.254"]])
}

/// Asks for a connection to `url` as the attacking tenant.
async fn create(app: &TestApp, url: &str) -> (u16, Value) {
    let body =
        json!({"access_token": "glpat-ssrf-probe-0000000000", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": url});
    app.call(Method::POST, "/v1/connections", Some(TENANT), Some(body)).await
}

/// The worker's GitLab jobs under `policy`, failing fast: the test waits for no retry.
fn worker(app: &TestApp, policy: UrlPolicy) -> GitLabJobs {
    let options = ClientOptions {
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        retry: RetryConfig { max_attempts: 1, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(10) },
        ..Default::default()
    };
    crate::common::worker_jobs(app.store.clone(), policy, options)
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn internal_gitlab_urls_are_refused_and_never_reached(owner: PgPool) {
    let wire = Tripwire::start().await;
    let dns = Arc::new(dns());
    // The listener's port is allowed for public hosts, so that what refuses a URL below is its
    // address, never the port.
    let policy = UrlPolicy::default().with_public_ports(&[443, wire.port]).with_lookup(dns.clone());
    let app = TestApp::spawn_with_gitlab_urls(owner.clone(), policy.clone()).await;

    let mut tried = 0;
    let mut refused = 0;
    let mut figures = Vec::new();
    for (class, urls) in REFUSED {
        for url in urls.iter().map(|u| u.replace("{P}", &wire.port.to_string())) {
            tried += 1;
            let (status, body) = create(&app, &url).await;
            assert_eq!(status, 422, "{url} was not refused: {body}");
            assert_eq!(body["error"]["code"], "validation_failed", "{url}: {body}");
            assert_eq!(body["error"]["field"], "gitlab_url", "{url}: {body}");
            let details = body["error"]["details"].as_array().unwrap();
            assert!(details.len() == 1 && details[0]["field"] == "gitlab_url", "{url}: {body}");
            refused += 1;
        }
        figures.push(format!("{} {class}", urls.len()));
    }
    // The scripted names were looked up by the API itself, not refused by their shape alone.
    for name in [
        "v4mapped.attacker.example",
        "intranet.corp.example",
        "multi.attacker.example",
        "ula.attacker.example",
        "linklocal.attacker.example",
    ] {
        assert_eq!(dns.calls(name), 1, "{name} looked up {} times", dns.calls(name));
    }
    let (_, list) = app.call(Method::GET, "/v1/connections", Some(TENANT), None).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "a refused URL was stored: {list}");

    // DNS rebinding: the name answers a public address when the API looks, an internal one when
    // the worker connects. Creation cannot tell; validation must refuse on the second answer.
    let worker = worker(&app, policy);
    let tenant = TenantId::parse(TENANT).unwrap();
    let mut rebound = 0;
    for name in ["rebind.attacker.example", "rebind-metadata.attacker.example"] {
        let url = format!("https://{name}:{}", wire.port);
        tried += 1;
        let (status, created) = create(&app, &url).await;
        assert_eq!(status, 201, "{url} answered public at creation: {created}");
        assert_eq!(dns.calls(name), 1, "the API looked {name} up");
        let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
        worker.run(&tenant, &Job::Validate { connection: id }).await.unwrap();
        assert!(dns.calls(name) >= 2, "the worker resolved {name} again instead of trusting the first answer");
        let (_, detail) = app.call(Method::GET, &format!("/v1/connections/{id}"), Some(TENANT), None).await;
        assert_eq!(detail["status"], "invalid", "{url}: {detail}");
        let message = detail["status_message"].as_str().unwrap_or_default();
        assert!(message.contains("GitLab URL is not allowed") && message.contains(name), "{url}: {message}");
        refused += 1;
        rebound += 1;
    }
    assert_eq!(wire.hits(), 0, "a refused URL reached the loopback listener");
    println!(
        "ssrf: {tried} gitlab_urls tried ({}, {rebound} DNS rebinding): {} refused at creation with 422 naming gitlab_url, \
         {rebound} rebinding names refused by the worker on the second DNS answer ({refused} refused in all); \
         0 connections reached the loopback listener",
        figures.join(", "),
        refused - rebound,
    );
}

/// The control: the same listener, allowlisted, does get connections. Without this the
/// zero above could be a listener that counts nothing.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn an_allowlisted_internal_address_is_accepted_and_reached(owner: PgPool) {
    let wire = Tripwire::start().await;
    let policy = UrlPolicy::from_allowlist("127.0.0.1/32:*,[::1/128]:*,localhost:*").unwrap();
    let app = TestApp::spawn_with_gitlab_urls(owner, policy.clone()).await;
    let worker = worker(&app, policy);
    let tenant = TenantId::parse(TENANT).unwrap();
    let urls =
        [format!("http://127.0.0.1:{}", wire.port), format!("http://[::1]:{}", wire.port), format!("http://localhost:{}", wire.port)];
    for url in &urls {
        let before = wire.hits();
        let (status, created) = create(&app, url).await;
        assert_eq!(status, 201, "{url}: {created}");
        let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
        // The listener hangs up at once: the validation fails to retry later, which is not the point.
        let _ = worker.run(&tenant, &Job::Validate { connection: id }).await;
        assert!(wire.hits() > before, "{url} was allowlisted but never reached");
    }
    println!("ssrf control: {} allowlisted loopback urls accepted, the listener counted {} connections", urls.len(), wire.hits());
}
