//! A scriptable GitLab stub on 127.0.0.1 and a client wired to it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use gitlab_client::{ClientOptions, GitLabClient, RetryConfig, UrlPolicy};
use secrecy::SecretString;

pub const TOKEN: &str = "glpat-TEST-secret-token-9f8e7d";

/// What the stub saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub token: Option<String>,
    /// `Host` header, for building absolute pagination links as GitLab does.
    pub host: String,
    pub body: Vec<u8>,
}

impl Seen {
    /// This request's origin, as GitLab puts it into `Link` URLs.
    pub fn origin(&self) -> String {
        format!("http://{}", self.host)
    }

    pub fn param(&self, key: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
    }
}

type Handler = dyn Fn(&Seen, usize) -> Response + Send + Sync;

struct StubState {
    handler: Box<Handler>,
    seen: Mutex<Vec<Seen>>,
}

pub struct Stub {
    pub base: String,
    state: Arc<StubState>,
}

impl Stub {
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }
}

/// Starts a stub whose `handler` gets each request and its 0-based index.
pub async fn stub(handler: impl Fn(&Seen, usize) -> Response + Send + Sync + 'static) -> Stub {
    let state = Arc::new(StubState { handler: Box::new(handler), seen: Mutex::new(Vec::new()) });
    let app = axum::Router::new().fallback(dispatch).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Stub { base: format!("http://{addr}"), state }
}

async fn dispatch(State(state): State<Arc<StubState>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let seen = Seen {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        token: headers.get("private-token").and_then(|v| v.to_str().ok()).map(str::to_owned),
        host: headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned(),
        body: body.to_vec(),
    };
    let index = {
        let mut all = state.seen.lock().unwrap();
        all.push(seen.clone());
        all.len() - 1
    };
    (state.handler)(&seen, index)
}

/// A JSON response with extra headers.
pub fn json(status: u16, body: &serde_json::Value, headers: &[(&str, String)]) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    let map = response.headers_mut();
    map.insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    response
}

/// The stubs answer the requests a test scripts, one by one: without the unauthenticated GitLab
/// check before the first (tested against the simulator).
pub fn fast_options() -> ClientOptions {
    ClientOptions {
        verify_gitlab: false,
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        retry: RetryConfig { max_attempts: 4, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5) },
        ..ClientOptions::default()
    }
}

pub fn loopback_policy() -> UrlPolicy {
    UrlPolicy::from_allowlist("127.0.0.0/8:*").unwrap()
}

pub fn client_with(base: &str, options: ClientOptions) -> GitLabClient {
    GitLabClient::new(base, SecretString::from(TOKEN), loopback_policy(), options).unwrap()
}

pub fn client(base: &str) -> GitLabClient {
    client_with(base, fast_options())
}

/// What a [`raw_server`] does with one connection.
pub enum Raw {
    /// Read the request, then close the connection without answering.
    Drop,
    /// Read the request and never answer.
    Hang,
    /// Answer `200` with this JSON body.
    Ok(&'static str),
}

pub struct RawServer {
    pub base: String,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl RawServer {
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A bare TCP server for failures axum cannot produce: dropped connections and silence.
/// `plan` gets the 0-based connection index.
pub async fn raw_server(plan: impl Fn(usize) -> Raw + Send + Sync + 'static) -> RawServer {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let plan = Arc::new(plan);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let index = counter.fetch_add(1, Ordering::SeqCst);
            let plan = plan.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                match plan(index) {
                    Raw::Drop => drop(socket),
                    Raw::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
                    Raw::Ok(body) => {
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                    }
                }
            });
        }
    });
    RawServer { base, connections }
}
