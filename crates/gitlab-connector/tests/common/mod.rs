//! What the tests that run the real binary share: starting `serve` with some roles, killing it,
//! JWTs for its API, and calling the API.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_gitlab-connector");
pub const JWT_SECRET: &str = "live-test-jwt-secret-of-sufficient-length";
/// What Prometheus presents to `/metrics`.
pub const METRICS_TOKEN: &str = "live-test-metrics-token-of-sufficient-length";

/// A child process that dies with the test, however the test ends.
pub struct Running(pub Child);

impl Running {
    /// SIGKILL, as the OOM killer or a node failure ends a pod: no shutdown code runs.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `gitlab-connector serve --roles <roles>` against a migrated database, allowed to reach the
/// simulator on loopback, quiet; the caller adds what its scenario needs and spawns it.
pub fn serve(roles: &str, database_url: &str, master_keys: &str, dev_state: &Path, listen: &str, public_url: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--roles", roles])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("MIGRATE_ON_START", "false")
        .env("MASTER_KEYS", master_keys)
        .env("JWT_HS256_SECRET", JWT_SECRET)
        .env("METRICS_TOKEN", METRICS_TOKEN)
        .env("DEV_STATE_DIR", dev_state)
        .env("LISTEN_ADDR", listen)
        .env("PUBLIC_URL", public_url)
        .env("GITLAB_URL_ALLOWLIST", "127.0.0.1/32:*")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

pub fn token(tenant: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": "coworker", "aud": "gitlab-connector", "exp": now + 600, "tenant_id": tenant});
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes())).unwrap()
}

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Self {
        Self { base, http: reqwest::Client::new() }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, tenant: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token(tenant));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, tenant: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, tenant, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Waits for `/readyz` to answer 200.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.http.get(format!("{}/readyz", self.base)).send().await.map(|r| r.status().as_u16()).ok() != Some(200) {
            assert!(Instant::now() < deadline, "the server never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates a connection as `tenant`; returns its id.
    pub async fn connect(&self, tenant: &str, body: Value) -> String {
        let (status, c) = self.call(reqwest::Method::POST, "/v1/connections", tenant, Some(body)).await;
        assert_eq!(status, 201, "{c}");
        c["id"].as_str().unwrap().to_owned()
    }

    pub async fn wait_live(&self, tenant: &str, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let c = self.get(&format!("/v1/connections/{id}"), tenant).await;
            if c["status"] == "live" {
                return;
            }
            assert!(Instant::now() < deadline && !["invalid", "needs_reauth"].contains(&c["status"].as_str().unwrap()), "{c}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The simulator's control API: changes in "GitLab" that fire its webhooks.
pub struct SimControl {
    pub base: String,
    pub http: reqwest::Client,
}

impl SimControl {
    pub fn new(base: &str) -> Self {
        Self { base: base.to_owned(), http: reqwest::Client::new() }
    }

    /// Answers once the change's webhooks are delivered (or failed to be).
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/-/sim/{path}?wait=true", self.base);
        let resp = self.http.request(method, url).json(&body).send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {body}");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, body).await
    }
}
