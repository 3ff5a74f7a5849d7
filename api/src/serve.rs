//! The accept loop: HTTP/1 and HTTP/2 on one listener with a header-read timeout (a client
//! that opens a connection and sends no complete request head within it is disconnected, which
//! also closes idle keep-alive connections), a cap on open connections (beyond it the oldest
//! waiting clients are not accepted until others close), and a graceful shutdown that stops
//! accepting, lets in-flight requests finish and gives up on stragglers after a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// Connection limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time a client has to send a complete request head (also the keep-alive idle timeout).
    pub header_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a graceful shutdown waits for open connections before closing them.
    pub shutdown_grace: Duration,
}

/// Serve `router` on `listener` until `stop` turns true, then drain.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = until_true(&mut stop) => break,
        };
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: wait a
                    // little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = until_true(&mut stop) => break,
        };
        let _ = socket.set_nodelay(true);
        let svc = router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.map(axum::body::Body::new)
            },
        );
        let mut closing = closing_rx.clone();
        conns.spawn(async move {
            let _permit = permit;
            // A client that connects and sends nothing is dropped after the header timeout
            // (hyper's own timer starts only once the protocol is known, after the first
            // bytes). `peek` waits for real data; readiness alone can be spurious.
            let mut first = [0u8; 1];
            match tokio::time::timeout(limits.header_read_timeout, socket.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(limits.header_read_timeout))
                .keep_alive_timeout(limits.header_read_timeout);
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(socket),
                TowerToHyperService::new(svc),
            );
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => log_end(peer, r),
                _ = until_true(&mut closing) => {
                    conn.as_mut().graceful_shutdown();
                    log_end(peer, conn.await);
                }
            }
        });
        // Reap finished connection tasks so the set does not grow.
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "connections still open after the shutdown grace period: closing them"
        );
        conns.abort_all();
    }
    Ok(())
}

/// Resolves when the flag turns true (or its sender is gone).
async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn log_end<E: std::fmt::Display>(peer: SocketAddr, r: Result<(), E>) {
    if let Err(e) = r {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
