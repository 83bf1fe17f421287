//! Starts the real server on port 0 against the test's fresh database.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use connector_api::auth::{AuthConfig, Authenticator, issue_hs256};
use connector_api::{ApiLimits, AppState};
use connector_store::{ServiceRole, Store, TenantId};
use connector_test_support::fresh_keys;
use gitlab_client::UrlPolicy;
use secrecy::SecretString;
use serde_json::Value;
use sqlx::PgPool;

pub const HS256_SECRET: &str = "test-hs256-secret-that-is-long-enough-0123456789";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn auth_config() -> AuthConfig {
    AuthConfig {
        hs256_secret: Some(SecretString::from(HS256_SECRET)),
        jwks_file: Some(fixture("jwks.json")),
        jwks_url: None,
        jwks_refresh: connector_api::auth::JwksRefresh::default(),
        issuer: "coworker".into(),
        audience: "gitlab-connector".into(),
        tenant_claim: "tenant_id".into(),
    }
}

/// Everything every test's server logs, at every level, so tests can prove what never appears.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter("trace,sqlx=trace,hyper=info,h2=info,reqwest=info")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        buffer
    })
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    /// The test's own (owner) pool, for looking behind the API.
    pub owner: PgPool,
    /// The server's store (as the service role), for seeding data the way the worker writes it.
    pub store: Store,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Stops the server with the test, so its pooled connections are gone before `#[sqlx::test]`
/// drops the test database (PostgreSQL waits 5 s for lingering sessions, then refuses).
impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    /// With the default limits, but a request budget no test but the budget's own reaches: the
    /// isolation walk and the timing probes send thousands of requests in seconds.
    pub async fn spawn(owner: PgPool) -> Self {
        Self::spawn_with(owner, unlimited_requests(ApiLimits::default())).await
    }

    pub async fn spawn_with(owner: PgPool, limits: ApiLimits) -> Self {
        Self::start(owner, limits, auth_config(), UrlPolicy::default(), Vec::new()).await
    }

    pub async fn spawn_with_auth(owner: PgPool, auth: AuthConfig) -> Self {
        Self::start(owner, ApiLimits::default(), auth, UrlPolicy::default(), Vec::new()).await
    }

    /// With the `gitlab_url` policy of `GITLAB_URL_ALLOWLIST`, its DNS scripted or real.
    pub async fn spawn_with_gitlab_urls(owner: PgPool, gitlab_urls: UrlPolicy) -> Self {
        Self::start(owner, ApiLimits::default(), auth_config(), gitlab_urls, Vec::new()).await
    }

    /// With `CORS_ALLOWED_ORIGINS`.
    pub async fn spawn_with_cors(owner: PgPool, origins: Vec<String>) -> Self {
        Self::start(owner, unlimited_requests(ApiLimits::default()), auth_config(), UrlPolicy::default(), origins).await
    }

    async fn start(owner: PgPool, limits: ApiLimits, auth: AuthConfig, gitlab_urls: UrlPolicy, cors: Vec<String>) -> Self {
        logs();
        let keys = fresh_keys();
        // As the API pods log in, so a privilege the API lacks fails here.
        let store = Store::connect(ServiceRole::Api.connect_options(&owner.connect_options()), 4, keys).await.unwrap();
        let auth = Arc::new(Authenticator::new(auth).await.unwrap());
        auth.spawn_refresh();
        let budgets = Arc::new(connector_api::rate_limit::Budgets::new(&limits));
        let cors_origins = cors.iter().map(|o| o.parse().unwrap()).collect();
        let checks = Arc::new(connector_api::checks::Checks::new(gitlab_client::ClientOptions::default()));
        let state = AppState { store: store.clone(), auth, limits, budgets, cors_origins, gitlab_urls, checks };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, connector_api::router(state)).await });
        Self { base, http: reqwest::Client::new(), owner, store, server }
    }

    pub fn token(&self, tenant: &str) -> String {
        issue_hs256(&SecretString::from(HS256_SECRET), &auth_config(), &TenantId::parse(tenant).unwrap(), Duration::from_secs(600))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request as `tenant` (or anonymously) and returns the status and the JSON body.
    pub async fn call(&self, method: reqwest::Method, path: &str, tenant: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let (status, json, _) = self.call_with(method, path, tenant, body, &[]).await;
        (status, json)
    }

    /// [`TestApp::call`] with extra request headers, returning the response headers too.
    pub async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        tenant: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = tenant {
            req = req.bearer_auth(self.token(t));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let response_headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, json, response_headers)
    }
}

/// The worker's GitLab jobs over `store`, for a test that runs them one by one.
pub fn worker_jobs(store: Store, policy: UrlPolicy, options: gitlab_client::ClientOptions) -> connector_worker::GitLabJobs {
    let settings = connector_worker::SyncSettings {
        public_url: "https://connector.example".parse().unwrap(),
        backfill_slice: Duration::from_secs(1),
        catch_up_interval: chrono::Duration::hours(1),
        reconcile_interval: chrono::Duration::hours(1),
        tenant_concurrency: 1,
        outage_patience: connector_worker::DEFAULT_OUTAGE_PATIENCE,
        token_rotation_lease: connector_worker::DEFAULT_TOKEN_ROTATION_LEASE,
    };
    connector_worker::GitLabJobs::new(store, policy, options, settings)
}

pub fn unlimited_requests(limits: ApiLimits) -> ApiLimits {
    ApiLimits { requests_per_second: 1_000_000, request_burst: 1_000_000, ..limits }
}

pub fn valid_connection() -> Value {
    serde_json::json!({
        "access_token": "glpat-abcdefghijklmnopqrst",
        "groups_list": "123,456",
        "projects_list": "12,acme/backend",
        "start_date": "2024-01-01T00:00:00Z",
    })
}

/// The error shape every failure uses.
pub fn assert_error(body: &Value, code: &str) {
    let error = body.get("error").unwrap_or_else(|| panic!("no error object in {body}"));
    assert_eq!(error["code"], code, "{body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}
