//! The HTTP listener. `axum::serve` offers no header-read timeout and no connection cap, so a
//! client that sends its headers a byte at a time (slowloris) could hold a socket for ever and
//! enough of them exhaust the process's file descriptors; this accept loop serves the same
//! router through hyper with both.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
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
pub async fn serve(listener: TcpListener, router: axum::Router, limits: ServerLimits, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
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
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            let connection = http.serve_connection(TokioIo::new(stream), service);
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
