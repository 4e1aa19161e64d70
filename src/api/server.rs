//! The API's accept loop. `axum::serve` has neither a header-read timeout nor a
//! connection limit, so one client that opens connections and sends a header byte now
//! and then (slowloris) holds sockets and tasks forever. Here:
//! - at most `max_connections` are served at once; the next accept waits for a free slot
//!   (clients queue in the kernel's backlog instead of the process running out of files);
//! - hyper's header-read timeout (it needs a timer, which axum does not give it) cuts off
//!   a client that does not send a request's headers in time, idle keep-alives included;
//! - shutdown stops accepting, asks every connection to finish its request, and waits
//!   for them at most `drain`.
//!
//! A WebSocket leaves both once upgraded (hyper hands the socket over and the
//! connection's task ends): live clients have their own cap (`server.max_live_clients`)
//! and end when the live hub closes at shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

use crate::telemetry::metrics::Metrics;

/// How long shutdown waits for open connections.
pub const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// How long shutdown waits for open connections (live streams end on their own when
    /// the hub closes; a stuck client does not hold the process).
    pub drain: Duration,
}

impl ConnectionLimits {
    pub fn from_config(s: &super::config::ServerConfig) -> Self {
        Self { max_connections: s.max_connections.max(1), header_read_timeout: Duration::from_secs_f64(s.header_read_timeout_s), drain: DRAIN }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut warned_full = false;
    loop {
        if slots.available_permits() == 0 && !warned_full {
            tracing::warn!(max_connections = limits.max_connections, "HTTP connection limit reached; new clients wait");
        }
        warned_full = slots.available_permits() == 0;
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        metrics.http_connections_accepted.inc();
        metrics.http_connections_open.inc();
        let service = TowerToHyperService::new(app.clone());
        let (metrics, mut stop) = (metrics.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                // The guard `wait_for` returns is not Send: drop it inside.
                _ = async { drop(stop.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = result {
                let reason = if e.is_timeout() { "timeout" } else { "error" };
                // Clients that hang up mid-request are common; they are not news.
                if !e.is_incomplete_message() && !e.is_canceled() {
                    metrics.http_connections_failed.with_label_values(&[reason]).inc();
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
            }
            metrics.http_connections_open.dec();
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain, slots.acquire_many(all)).await.is_err() {
        tracing::warn!(open = metrics.http_connections_open.get(), "HTTP connections still open after the drain time; leaving them");
    }
    Ok(())
}
