//! The HTTP server: routing, the accept loop (which can drop connections on demand) and a
//! handle for tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::faults::ConnKill;
use crate::state::Simulator;
use crate::{api, control, faults};

impl Simulator {
    /// The whole application: GitLab's API under `/api/v4` and the control API under `/-/sim/`.
    pub fn router(&self) -> Router {
        let gitlab = api::routes(self)
            .fallback(api::no_route)
            .layer(from_fn_with_state(self.clone(), faults::inject))
            .layer(from_fn_with_state(self.clone(), faults::track));
        control::routes().merge(gitlab).with_state(self.clone())
    }

    /// Binds `addr` (port 0 for any) and serves until the handle is shut down or dropped.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        self.set_base_url_if_unset(format!("http://{addr}"));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let sim = self.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = (&mut rx).await;
            };
            if let Err(e) = serve(listener, sim, shutdown).await {
                tracing::error!(error = %e, "simulator server stopped");
            }
        });
        Ok(SimHandle { base_url: self.base_url(), addr, sim: self, stop: Some(tx), task: Some(task) })
    }
}

/// A running simulator. Dropping it stops the server.
pub struct SimHandle {
    pub base_url: String,
    pub addr: SocketAddr,
    pub sim: Simulator,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` completes; open connections are closed then.
/// Uses the listener's address as the public base URL unless the config sets one.
pub async fn serve(listener: TcpListener, sim: Simulator, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        sim.set_base_url_if_unset(format!("http://{addr}"));
    }
    let app = sim.router();
    let (closing_tx, closing_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let kill = Arc::new(Notify::new());
        let conn_kill = ConnKill(kill.clone());
        let svc = app.clone().map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(conn_kill.clone());
            req
        });
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            tokio::select! {
                result = conn => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection error");
                    }
                }
                // Dropping the connection future closes the socket without a response.
                () = kill.notified() => {}
                _ = closing.changed() => {}
            }
        });
    }
    let _ = closing_tx.send(true);
    Ok(())
}
