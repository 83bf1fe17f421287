//! Shared helpers: a running simulator, an HTTP client, and a webhook receiver.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use gitlab_sim::*;
use serde_json::Value;

pub struct Sim {
    pub handle: SimHandle,
    pub http: reqwest::Client,
}

pub async fn start(config: SimConfig) -> Sim {
    start_with(Dataset::generate(7, Size::Small), config).await
}

pub async fn start_with(dataset: Dataset, config: SimConfig) -> Sim {
    let sim = Simulator::new(dataset, config);
    let handle = sim.spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
    Sim { handle, http: reqwest::Client::new() }
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Sim {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url)
    }

    pub async fn get(&self, token: &str, path: &str) -> Reply {
        let req = self.http.get(self.url(path)).header("PRIVATE-TOKEN", token);
        reply(req).await
    }

    pub async fn get_url(&self, token: &str, url: &str) -> Reply {
        reply(self.http.get(url).header("PRIVATE-TOKEN", token)).await
    }

    pub async fn send(&self, method: reqwest::Method, token: &str, path: &str, body: Value) -> Reply {
        let req = self.http.request(method, self.url(path)).bearer_auth(token).json(&body);
        reply(req).await
    }

    /// A control API call; waits for the webhooks it fires.
    pub async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> Reply {
        let sep = if path.contains('?') { '&' } else { '?' };
        let req = self.http.request(method, self.url(&format!("/-/sim{path}{sep}wait=true"))).json(&body);
        let r = reply(req).await;
        assert!(r.status < 300, "control {path} failed: {} {}", r.status, r.body);
        r
    }
}

async fn reply(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply { status, headers, body }
}

/// A webhook receiver on 127.0.0.1 that records every request and answers `status`.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    pub status: Arc<AtomicU16>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let received: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let (r, s) = (received.clone(), status.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (r, s) = (r.clone(), s.clone());
                async move {
                    r.lock().unwrap().push((headers, body));
                    axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, received, status }
    }

    pub fn events(&self) -> Vec<(String, Value)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(h, b)| (h["x-gitlab-event"].to_str().unwrap().to_string(), serde_json::from_str(b).unwrap()))
            .collect()
    }

    pub fn clear(&self) {
        self.received.lock().unwrap().clear();
    }
}

/// Every event switch on, for hooks that should see everything.
pub fn all_events(url: &str) -> Value {
    serde_json::json!({
        "url": url, "push_events": true, "tag_push_events": true, "issues_events": true,
        "confidential_issues_events": true, "merge_requests_events": true, "note_events": true,
        "confidential_note_events": true, "job_events": true, "pipeline_events": true,
        "subgroup_events": true, "member_events": true, "project_events": true, "releases_events": true, "deployment_events": true,
    })
}
