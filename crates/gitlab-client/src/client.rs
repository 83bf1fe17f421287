//! The HTTP core: one place that sends a request, paces it, retries it and classifies the
//! outcome. The typed endpoint methods in [`crate::api`] are thin layers over it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use futures_util::Stream;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use url::Url;

use crate::error::{Error, Result, describe_transport, snippet};
use crate::pagination::{PER_PAGE, Page, PageRequest, next_request};
use crate::rate_limit::{LocalRateBudget, RateBudget, RateLimitObservation, unix_now};
use crate::retry::RetryConfig;
use crate::stats::{Observer, Stats, StatsSnapshot};
use crate::url_policy::UrlPolicy;

const API_PREFIX: &str = "/api/v4";

/// How long a base URL that answered like GitLab is trusted without asking again.
const PROVEN_FOR: Duration = Duration::from_secs(3600);

/// The API bases that answered like GitLab, and when, shared by every client of the process
/// (clients are made per job).
static PROVEN: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Mutex::default);

/// Tunables for a [`GitLabClient`].
#[derive(Clone)]
pub struct ClientOptions {
    /// Whole-request timeout (connect, send, read the body).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryConfig,
    pub user_agent: String,
    /// Used for a 429 that carries neither `Retry-After` nor `RateLimit-Reset`.
    pub default_retry_after: Duration,
    /// Paces requests; share one across clients of the same GitLab user to pace them together.
    pub rate_budget: Arc<dyn RateBudget>,
    /// Told about every attempt and rate-limit wait (the process's metrics); none by default.
    pub observer: Option<Arc<dyn Observer>>,
    /// The most of one response body that is read; a larger answer fails its request with
    /// [`Error::TooLarge`] and is never buffered past this.
    pub max_response_bytes: usize,
    /// Ask the base URL, without the token, whether a GitLab answers there before the token is
    /// first sent to it (see [`GitLabClient::ensure_gitlab`]). On unless a caller measures
    /// requests one by one against a known GitLab (the client's own retry and pacing tests).
    pub verify_gitlab: bool,
}

/// GitLab's largest answers are pages of 100 merge requests or issues, whose descriptions GitLab
/// caps at 1,048,576 characters each (`Issuable::DESCRIPTION_LENGTH_MAX`) but which run to a few
/// kilobytes in practice: a page of 100 is well under 1 MiB. 16 MiB leaves room for pages of
/// unusually long descriptions and commit messages while bounding what a GitLab a tenant
/// controls can make a worker hold (at most this per request in flight).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryConfig::default(),
            user_agent: concat!("coworker-gitlab-client/", env!("CARGO_PKG_VERSION")).into(),
            default_retry_after: Duration::from_secs(60),
            rate_budget: Arc::new(LocalRateBudget::default()),
            observer: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            verify_gitlab: true,
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("user_agent", &self.user_agent)
            .field("default_retry_after", &self.default_retry_after)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

/// A GitLab REST API v4 client for one instance and one token. Cheap to clone; clones share
/// the connection pool, rate budget and stats.
#[derive(Clone)]
pub struct GitLabClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    api_base: Url,
    token: SecretString,
    retry: RetryConfig,
    default_retry_after: Duration,
    budget: Arc<dyn RateBudget>,
    stats: Stats,
    observer: Option<Arc<dyn Observer>>,
    max_response_bytes: usize,
    verify_gitlab: bool,
}

impl fmt::Debug for GitLabClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitLabClient").field("base_url", &self.inner.base_url.as_str()).finish_non_exhaustive()
    }
}

/// A successful response, read in full (pages are at most [`PER_PAGE`] items).
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// How [`GitLabClient::attempts`] sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// With the token; a non-success answer is an error.
    WithToken,
    /// Without it, to see what answers; any final answer but a 429 or server error is returned.
    Probe,
}

impl GitLabClient {
    /// `base_url` is the instance root (`https://gitlab.com`, `https://example.com/gitlab`);
    /// `/api/v4` is appended unless already there. The URL is checked against `policy` now,
    /// and every DNS answer is checked again when connecting.
    pub fn new(base_url: &str, token: SecretString, policy: UrlPolicy, options: ClientOptions) -> Result<Self> {
        let base_url = parse_base_url(base_url)?;
        policy.check_url(&base_url)?;
        let mut api_base = base_url.clone();
        let root = base_url.path().trim_end_matches('/');
        if !root.ends_with(API_PREFIX) {
            api_base.set_path(&format!("{root}{API_PREFIX}"));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(policy.resolver_for(&base_url))
            .timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            .user_agent(options.user_agent)
            .build()
            .map_err(|e| Error::Config { message: describe_transport(e) })?;
        Ok(GitLabClient {
            inner: Arc::new(Inner {
                http,
                base_url,
                api_base,
                token,
                retry: options.retry,
                default_retry_after: options.default_retry_after,
                budget: options.rate_budget,
                stats: Stats::default(),
                observer: options.observer,
                max_response_bytes: options.max_response_bytes,
                verify_gitlab: options.verify_gitlab,
            }),
        })
    }

    /// The instance root this client was built with.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// Counters shared by all clones of this client.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// `GET` of a single resource at `path` (relative to `/api/v4`, e.g. `/projects/7`).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let request = PageRequest::new(path);
        let url = request.to_url(&self.inner.api_base)?;
        let reply = self.execute(Method::GET, url, None).await?;
        self.decode(request.path(), &reply.body)
    }

    /// One page of a collection. `T` may be a typed struct or `serde_json::Value` for the raw
    /// items. Store `page.next` as the checkpoint; pass it back here to continue.
    pub async fn page<T: DeserializeOwned>(&self, request: &PageRequest) -> Result<Page<T>> {
        let request = request.with_param("per_page", &PER_PAGE.to_string());
        let url = request.to_url(&self.inner.api_base)?;
        let reply = self.execute(Method::GET, url, None).await?;
        let items = self.decode(request.path(), &reply.body)?;
        let next = next_request(&request, &reply.headers, &self.inner.api_base)?;
        Ok(Page { items, next })
    }

    /// The pages of a collection from `first` on, fetched one at a time as the stream is
    /// polled, so only one page is held in memory. The stream ends after the last page or the
    /// first error.
    pub fn pages<T: DeserializeOwned + Send + 'static>(&self, first: PageRequest) -> impl Stream<Item = Result<Page<T>>> + Send + 'static {
        let client = self.clone();
        futures_util::stream::try_unfold(Some(first), move |state| {
            let client = client.clone();
            async move {
                let Some(request) = state else {
                    return Ok(None);
                };
                let page: Page<T> = client.page(&request).await?;
                let next = page.next.clone();
                Ok(Some((page, next)))
            }
        })
    }

    /// Every item of a collection that is known to be small (hooks, branches of one project).
    pub async fn collect_all<T: DeserializeOwned>(&self, first: PageRequest) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut next = Some(first);
        while let Some(request) = next {
            let page = self.page(&request).await?;
            items.extend(page.items);
            next = page.next;
        }
        Ok(items)
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send_json(Method::POST, path, body).await
    }

    pub(crate) async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send_json(Method::PUT, path, body).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<()> {
        let url = PageRequest::new(path).to_url(&self.inner.api_base)?;
        self.execute(Method::DELETE, url, None).await.map(drop)
    }

    async fn send_json<B: Serialize, T: DeserializeOwned>(&self, method: Method, path: &str, body: &B) -> Result<T> {
        let request = PageRequest::new(path);
        let url = request.to_url(&self.inner.api_base)?;
        let body = serde_json::to_vec(body).map_err(|e| Error::Config { message: format!("cannot encode request body: {e}") })?;
        let reply = self.execute(method, url, Some(body)).await?;
        self.decode(request.path(), &reply.body)
    }

    /// [`Self::attempts`] with any echo of the token scrubbed from the error, once the URL has
    /// answered like GitLab.
    async fn execute(&self, method: Method, url: Url, body: Option<Vec<u8>>) -> Result<Reply> {
        self.ensure_gitlab().await?;
        self.attempts(method, url, body, Sending::WithToken).await.map_err(|e| e.redact(self.inner.token.expose_secret()))
    }

    /// Asks, without the token, whether a GitLab answers at the base URL, so the token never
    /// goes to something else a tenant's URL could name (a database port, an internal admin
    /// API). Without a token GitLab answers `GET /api/v4/version` with 401 and
    /// `{"message":"401 Unauthorized"}`, as every API resource (docs: `doc/api/rest/authentication.md`,
    /// "returns 401 Unauthorized" with that body; `doc/api/version.md` needs authentication);
    /// an instance that serves it unauthenticated answers 200 with its `version`. Server errors,
    /// timeouts and 429s are retried like any request.
    async fn ensure_gitlab(&self) -> Result<()> {
        if !self.inner.verify_gitlab {
            return Ok(());
        }
        let key = self.inner.api_base.as_str().to_owned();
        let proven = |key: &str| PROVEN.lock().ok().and_then(|p| p.get(key).copied()).is_some_and(|at| at.elapsed() < PROVEN_FOR);
        if proven(&key) {
            return Ok(());
        }
        let url = PageRequest::new("/version").to_url(&self.inner.api_base)?;
        // An answer over the size cap stays TooLarge: what the tenant is told then says so.
        let reply = self.attempts(Method::GET, url, None, Sending::Probe).await?;
        let status = reply.status;
        let body: Option<serde_json::Value> = serde_json::from_slice(&reply.body).ok();
        let text = |field: &str| body.as_ref().and_then(|b| b.get(field)).and_then(|v| v.as_str()).map(str::to_owned);
        let like_gitlab = match status {
            StatusCode::UNAUTHORIZED => text("message").is_some_and(|m| m.starts_with("401")),
            StatusCode::OK => text("version").is_some(),
            _ => false,
        };
        if !like_gitlab {
            return Err(Error::NotGitLab { status: status.as_u16() });
        }
        if let Ok(mut proven) = PROVEN.lock() {
            proven.retain(|_, at| at.elapsed() < PROVEN_FOR);
            proven.insert(key, Instant::now());
        }
        Ok(())
    }

    /// Sends with pacing and retries. Idempotent methods are retried on timeouts, connection
    /// failures and 500/502/503/504. POST is retried only when the connection could not be
    /// established: once the request may have reached GitLab, a retry could create a second
    /// hook, so the caller gets `Transient` and decides (e.g. by listing hooks first).
    async fn attempts(&self, method: Method, url: Url, body: Option<Vec<u8>>, send: Sending) -> Result<Reply> {
        let inner = &self.inner;
        let idempotent = !matches!(method, Method::POST | Method::PATCH);
        let max_attempts = inner.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt > 1 {
                inner.stats.retry();
                tokio::time::sleep(inner.retry.backoff(attempt - 1)).await;
            }
            let wait = inner.budget.before_request().await;
            inner.stats.waited(wait);
            if let Some(observer) = inner.observer.as_ref().filter(|_| !wait.is_zero()) {
                observer.rate_limit_wait(wait);
            }
            inner.stats.request();
            let span = tracing::info_span!(
                "gitlab_request",
                method = %method,
                path = %url.path(),
                attempt,
                status = tracing::field::Empty,
            );
            let outcome = self.send_once(method.clone(), url.clone(), body.clone(), send).instrument(span.clone()).await;
            if let Some(observer) = &inner.observer {
                observer.attempt(outcome.as_ref().ok().map(|reply| reply.status.as_u16()));
            }
            let may_retry = attempt < max_attempts;
            match outcome {
                Ok(reply) => {
                    let status = reply.status;
                    span.record("status", status.as_u16());
                    let observation = RateLimitObservation::from_headers(&reply.headers);
                    if !observation.is_empty() {
                        inner.budget.observe(observation);
                    }
                    if status.is_success() {
                        return Ok(reply);
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        inner.stats.rate_limited();
                        let retry_after = retry_after(&reply.headers, inner.default_retry_after);
                        tracing::warn!(parent: &span, ?retry_after, "GitLab rate limit hit");
                        return Err(Error::RateLimited { retry_after });
                    }
                    if is_retryable_status(status) {
                        if idempotent && may_retry {
                            tracing::debug!(parent: &span, "retrying after server error");
                            continue;
                        }
                        return Err(Error::Transient {
                            attempts: attempt,
                            message: format!("HTTP {status}: {}", snippet_of(&reply.body)),
                            answered: true,
                        });
                    }
                    if send == Sending::Probe {
                        return Ok(reply);
                    }
                    return Err(Error::from_response(status, &reply.body));
                }
                // The same request gets the same answer: no retry.
                Err(ReadError::TooLarge) => {
                    return Err(Error::TooLarge { path: url.path().to_owned(), limit_mib: inner.max_response_bytes >> 20 });
                }
                Err(ReadError::Transport(err)) => {
                    if let Some(blocked) = policy_refusal(&err) {
                        return Err(blocked);
                    }
                    if err.is_builder() {
                        return Err(Error::Config { message: describe_transport(err) });
                    }
                    let retryable = if idempotent {
                        err.is_timeout() || err.is_connect() || err.is_request() || err.is_body()
                    } else {
                        err.is_connect()
                    };
                    if retryable && may_retry {
                        tracing::debug!(parent: &span, error = %describe_transport(err), "retrying after transport error");
                        continue;
                    }
                    return Err(Error::Transient { attempts: attempt, message: describe_transport(err), answered: false });
                }
            }
        }
    }

    fn decode<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T> {
        serde_json::from_slice(body)
            .map_err(|e| Error::Decode { path: path.to_owned(), message: e.to_string() }.redact(self.inner.token.expose_secret()))
    }

    async fn send_once(&self, method: Method, url: Url, body: Option<Vec<u8>>, send: Sending) -> Result<Reply, ReadError> {
        let mut request = self.inner.http.request(method, url).header(reqwest::header::ACCEPT, "application/json");
        if send == Sending::WithToken {
            let mut token = HeaderValue::from_str(self.inner.token.expose_secret()).unwrap_or_else(|_| HeaderValue::from_static(""));
            token.set_sensitive(true);
            request = request.header("PRIVATE-TOKEN", token);
        }
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(response, self.inner.max_response_bytes).await?;
        Ok(Reply { status, headers, body })
    }
}

/// Why one attempt, or one capped read ([`read_capped`]), got no body to use.
#[derive(Debug)]
pub enum ReadError {
    Transport(reqwest::Error),
    /// The body was larger than the cap.
    TooLarge,
}

/// Reads a response's body up to `limit` bytes, chunk by chunk: a declared length over it is
/// refused before reading, and a body without a length, or lying about it, stops at the cap, so
/// no more than `limit` is ever held. For any response a tenant's or an issuer's server sends.
pub async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl From<reqwest::Error> for ReadError {
    fn from(error: reqwest::Error) -> Self {
        ReadError::Transport(error)
    }
}

fn parse_base_url(raw: &str) -> Result<Url> {
    let url = Url::parse(raw.trim()).map_err(|e| Error::Config { message: format!("invalid GitLab URL: {e}") })?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config { message: "the GitLab URL must not have a query or fragment".into() });
    }
    Ok(url)
}

fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

fn snippet_of(body: &[u8]) -> String {
    snippet(&String::from_utf8_lossy(body))
}

/// `Retry-After` (seconds), else the time until `RateLimit-Reset`, else `default`.
fn retry_after(headers: &HeaderMap, default: Duration) -> Duration {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
    if let Some(secs) = header("retry-after") {
        return Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    }
    if let Some(reset) = header("ratelimit-reset") {
        let secs = reset.saturating_sub(unix_now()).max(1);
        return Duration::from_secs(u64::try_from(secs).unwrap_or(1));
    }
    default
}

/// The URL policy's refusal, if the resolver refused the connection: reqwest reports it as a
/// connect error with the policy's error somewhere in the source chain.
fn policy_refusal(err: &reqwest::Error) -> Option<Error> {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(Error::Blocked { reason }) = cause.downcast_ref::<Error>() {
            return Some(Error::Blocked { reason: reason.clone() });
        }
        source = cause.source();
    }
    None
}
