//! The crate's single error type and the mapping from GitLab's HTTP error responses onto it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// How much of GitLab's message is kept: enough to tell what went wrong, not enough to
/// copy a whole HTML error page into logs and API responses.
const MESSAGE_SNIPPET_CHARS: usize = 200;

/// Everything the client can fail with. Grouped by [`ErrorKind`] for callers that decide
/// what to tell the tenant.
///
/// No variant carries the token: requests send it as a header, and every message kept here
/// comes either from GitLab's response body or from a transport error stripped of its URL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 401 `{"message":"401 Unauthorized"}`: unknown, malformed or deleted token.
    #[error("GitLab rejected the token (401 Unauthorized)")]
    TokenInvalid,
    /// 401 `invalid_token` with "Token is expired".
    #[error("the GitLab token has expired")]
    TokenExpired,
    /// 401 `invalid_token` with "Token was revoked".
    #[error("the GitLab token was revoked")]
    TokenRevoked,
    /// 403 `insufficient_scope`; `required` is GitLab's `scope` field, e.g. `api read_api`.
    #[error("the GitLab token lacks a required scope: {required}")]
    InsufficientScope { required: String },
    /// Any other 403: missing role, feature disabled, IP block.
    #[error("GitLab refused access: {message}")]
    Forbidden { message: String },
    /// 404: missing, or not visible to this token (GitLab does not tell them apart).
    #[error("not found on GitLab: {message}")]
    NotFound { message: String },
    /// 429. The caller should reschedule the work after `retry_after` instead of waiting.
    #[error("GitLab rate limit reached; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// Timeouts, connection failures or 5xx that outlasted the retries.
    #[error("GitLab unavailable after {attempts} attempt(s): {message}")]
    Transient {
        attempts: u32,
        message: String,
        /// Whether an HTTP answer came back (a server error) rather than none at all (refused,
        /// reset, timed out, not HTTP, DNS failed).
        answered: bool,
    },
    /// The URL policy refused the address (SSRF protection).
    #[error("blocked by URL policy: {reason}")]
    Blocked { reason: String },
    /// Any other non-success status, with a short snippet of GitLab's message.
    #[error("GitLab returned {status}: {message}")]
    Other { status: u16, message: String },
    /// The answer was larger than the client reads of one response (`max_response_bytes`).
    #[error("GitLab's answer to {path} was larger than {limit_mib} MiB, the most read of one response")]
    TooLarge { path: String, limit_mib: usize },
    /// The response body did not have the expected shape.
    #[error("could not decode GitLab response for {path}: {message}")]
    Decode { path: String, message: String },
    /// The server broke the protocol the client relies on (e.g. a malformed pagination link).
    #[error("unexpected GitLab response: {message}")]
    Protocol { message: String },
    /// What answered at the URL did not answer as GitLab does, so no token was sent to it.
    #[error("no GitLab answered at this URL (HTTP {status} where GitLab answers 401 or its version); the token was not sent")]
    NotGitLab { status: u16 },
    /// The client was given something it cannot use (bad base URL, bad allowlist entry).
    #[error("invalid GitLab client configuration: {message}")]
    Config { message: String },
}

/// The coarse class of an [`Error`], for deciding what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    TokenInvalid,
    TokenExpired,
    TokenRevoked,
    InsufficientScope,
    Forbidden,
    NotFound,
    RateLimited,
    Transient,
    Blocked,
    Other,
    TooLarge,
    Decode,
    Protocol,
    NotGitLab,
    Config,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::TokenInvalid => ErrorKind::TokenInvalid,
            Error::TokenExpired => ErrorKind::TokenExpired,
            Error::TokenRevoked => ErrorKind::TokenRevoked,
            Error::InsufficientScope { .. } => ErrorKind::InsufficientScope,
            Error::Forbidden { .. } => ErrorKind::Forbidden,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Transient { .. } => ErrorKind::Transient,
            Error::Blocked { .. } => ErrorKind::Blocked,
            Error::Other { .. } => ErrorKind::Other,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::Decode { .. } => ErrorKind::Decode,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::NotGitLab { .. } => ErrorKind::NotGitLab,
            Error::Config { .. } => ErrorKind::Config,
        }
    }

    /// True when the tenant must supply a new or broader token before anything can work.
    pub fn is_token_problem(&self) -> bool {
        matches!(self.kind(), ErrorKind::TokenInvalid | ErrorKind::TokenExpired | ErrorKind::TokenRevoked | ErrorKind::InsufficientScope)
    }

    /// Replaces every occurrence of `secret` in the messages with `[REDACTED]`: a misbehaving
    /// server or proxy could echo request headers back in its error body.
    pub(crate) fn redact(self, secret: &str) -> Error {
        if secret.is_empty() {
            return self;
        }
        let clean = |text: String| text.replace(secret, "[REDACTED]");
        match self {
            Error::InsufficientScope { required } => Error::InsufficientScope { required: clean(required) },
            Error::Forbidden { message } => Error::Forbidden { message: clean(message) },
            Error::NotFound { message } => Error::NotFound { message: clean(message) },
            Error::Transient { attempts, message, answered } => Error::Transient { attempts, answered, message: clean(message) },
            Error::Other { status, message } => Error::Other { status, message: clean(message) },
            Error::Decode { path, message } => Error::Decode { path, message: clean(message) },
            other => other,
        }
    }

    /// Maps a non-success, non-429 response to an error. 5xx handling (retries) happens
    /// before this is reached; a 5xx that gets here was not retryable.
    pub(crate) fn from_response(status: StatusCode, body: &[u8]) -> Error {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| -> Option<String> {
            json.as_ref().and_then(|v| v.get(name)).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let message = snippet(
            &field("message")
                .or_else(|| field("error_description"))
                .or_else(|| field("error"))
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
        );
        match status.as_u16() {
            401 => {
                let description = field("error_description").unwrap_or_default();
                if description.contains("expired") {
                    Error::TokenExpired
                } else if description.contains("revoked") {
                    Error::TokenRevoked
                } else {
                    Error::TokenInvalid
                }
            }
            403 if field("error").as_deref() == Some("insufficient_scope") => {
                Error::InsufficientScope { required: snippet(&field("scope").unwrap_or_default()) }
            }
            403 => Error::Forbidden { message },
            404 => Error::NotFound { message },
            status => Error::Other { status, message },
        }
    }
}

/// Truncates to a bounded number of characters on a char boundary.
pub(crate) fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MESSAGE_SNIPPET_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Renders a transport error with its causes but without the request URL, so the message
/// stays free of anything a URL might carry.
pub(crate) fn describe_transport(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    snippet(&text)
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
