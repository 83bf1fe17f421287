//! The HTTP listener. `axum::serve` offers no header-read timeout and no connection cap, so a
//! client that sends its headers a byte at a time (slowloris) could hold a socket for ever and
//! enough of them exhaust the process's file descriptors; this accept loop serves the same
//! router through hyper with both.
//!
//! hyper answers a request it cannot parse or will not hold (a request line over its fixed 64 KiB
//! URI limit, a head over its buffer, bad syntax) with a bare status and no body. So the first
//! request of each connection has its head read and checked here, under lower limits, and refused
//! in the API's JSON error shape; a later request of a kept-alive connection gets the JSON 414 from
//! [`limit_uri`] up to hyper's limit and hyper's bare status past it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use connector_api::error::ErrorCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Connections served at once; one more is closed on accept. Keep it below the process's
    /// open-file limit, which the database pool's sockets share.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, on a new connection and between
    /// requests of a kept-alive one.
    pub header_read_timeout: Duration,
}

/// Serves `router` until `shutdown`, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = router.layer(axum::middleware::from_fn(limit_uri));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closed) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut refused: u64 = 0;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(refused, max = limits.max_connections, "connection cap reached; closing new connections");
            }
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(io) = first_head(stream, limits.header_read_timeout).await else { return };
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_buf_size(MAX_HEAD_BYTES);
            let connection = http.serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                _ = closed.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    let _ = closing.send(true);
    // Every slot comes back once the requests in flight are answered.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
    Ok(())
}

/// The longest request target we serve: far above any URL our API or GitLab's hooks use, far
/// below hyper's own 64 KiB.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The largest request head (request line and headers) we read.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Headers in one request; hyper's own default.
const MAX_HEADERS: usize = 100;

type Prefixed =
    tokio::io::Join<tokio::io::Chain<std::io::Cursor<Vec<u8>>, tokio::net::tcp::OwnedReadHalf>, tokio::net::tcp::OwnedWriteHalf>;

/// What the first request's head, as far as it has arrived, says.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    Complete,
    Partial,
    Refused(Refusal),
}

/// An answer in the API's error shape, for a request refused before any route.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    status: StatusCode,
    code: ErrorCode,
    message: &'static str,
}

const fn refused(status: StatusCode, code: ErrorCode, message: &'static str) -> Head {
    Head::Refused(Refusal { status, code, message })
}

const URI_TOO_LONG: Refusal =
    Refusal { status: StatusCode::URI_TOO_LONG, code: ErrorCode::UriTooLong, message: "the request's URI is longer than 8 KiB" };
/// The longest request line a URI within [`MAX_URI_BYTES`] makes.
const MAX_REQUEST_LINE: usize = MAX_URI_BYTES + "CONNECT  HTTP/1.1\r".len();

fn judge(head: &[u8]) -> Head {
    let first_line = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    if first_line > MAX_REQUEST_LINE {
        return Head::Refused(URI_TOO_LONG);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(head);
    // httparse fills in the request line as soon as it has it, complete head or not.
    if parsed.is_ok() && request.path.is_some_and(|p| p.len() > MAX_URI_BYTES) {
        return Head::Refused(URI_TOO_LONG);
    }
    match parsed {
        Ok(httparse::Status::Complete(_)) => Head::Complete,
        Ok(httparse::Status::Partial) if head.len() >= MAX_HEAD_BYTES => {
            refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, ErrorCode::HeadersTooLarge, "the request's headers are larger than 64 KiB")
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, ErrorCode::HeadersTooLarge, "the request has more than 100 headers")
        }
        Err(_) => refused(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, "the request is not valid HTTP/1.1"),
    }
}

/// Reads the connection's first request head (within the header-read timeout) and either answers
/// it with a JSON error and closes, or hands hyper the connection with what was read put back.
async fn first_head(mut stream: TcpStream, timeout: Duration) -> Option<Prefixed> {
    let mut head = Vec::with_capacity(4096);
    let mut saw_line_end = false;
    let verdict = tokio::time::timeout(timeout, async {
        let mut chunk = [0u8; 8192];
        loop {
            let read = stream.read(&mut chunk[..(MAX_HEAD_BYTES - head.len()).min(8192)]).await.ok()?;
            if read == 0 {
                return None;
            }
            head.extend_from_slice(&chunk[..read]);
            // The head is parsed again from its start each time, so only when a line ended or a
            // limit was passed: a client sending a byte at a time costs a parse per line (at most
            // 100 headers), not per byte.
            let line_ended = chunk[..read].contains(&b'\n');
            let decidable = line_ended || head.len() >= MAX_HEAD_BYTES || (!saw_line_end && head.len() > MAX_REQUEST_LINE);
            saw_line_end |= line_ended;
            if !decidable {
                continue;
            }
            match judge(&head) {
                Head::Partial => continue,
                verdict => return Some(verdict),
            }
        }
    })
    .await
    .ok()??;
    if let Head::Refused(Refusal { status, code, message }) = verdict {
        let body = error_body(code, message);
        let answer = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        );
        let _ = tokio::time::timeout(timeout, stream.write_all(answer.as_bytes())).await;
        // Closing with unread request bytes would reset the connection and could discard the
        // answer before the client reads it, so the rest of the request is drained briefly.
        let _ = stream.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let mut sink = [0u8; 8192];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        return None;
    }
    let (read, write) = stream.into_split();
    Some(tokio::io::join(std::io::Cursor::new(head).chain(read), write))
}

fn error_body(code: ErrorCode, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}

/// The URI limit for the requests [`first_head`] does not see: later ones on a kept-alive
/// connection.
async fn limit_uri(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let target = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        let body = error_body(URI_TOO_LONG.code, URI_TOO_LONG.message);
        return (URI_TOO_LONG.status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_judged_before_hyper_sees_them() {
        assert_eq!(judge(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"), Head::Complete);
        assert_eq!(judge(b"GET /healthz HTTP/1.1\r\nhost: x\r\n"), Head::Partial);
        assert_eq!(judge(b"GET /hea"), Head::Partial);
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_URI_BYTES));
        assert!(matches!(judge(long.as_bytes()), Head::Refused(Refusal { status: StatusCode::URI_TOO_LONG, .. })));
        // Refused as soon as the request line is known to be too long, without its end.
        let unfinished = format!("GET /{}", "a".repeat(MAX_URI_BYTES + 40));
        assert!(matches!(judge(unfinished.as_bytes()), Head::Refused(Refusal { status: StatusCode::URI_TOO_LONG, .. })));
        let fits = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(MAX_URI_BYTES - 1));
        assert_eq!(judge(fits.as_bytes()), Head::Complete);
        assert!(matches!(judge(b"GET\x01/ HTTP/1.1\r\n\r\n"), Head::Refused(Refusal { status: StatusCode::BAD_REQUEST, .. })));
        let big = format!("GET / HTTP/1.1\r\nx: {}", "b".repeat(MAX_HEAD_BYTES));
        assert!(matches!(
            judge(&big.as_bytes()[..MAX_HEAD_BYTES]),
            Head::Refused(Refusal { status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, .. })
        ));
    }
}
