//! The accept loop: hyper with the timeouts `axum::serve` does not set.
//!
//! A client that opens a connection and sends its request headers one byte a minute
//! (slowloris) would hold a connection forever under `axum::serve`. Here each connection gets a
//! header-read timeout, and idle keep-alive connections are closed. Bodies are bounded by the
//! body-size limits; long polls and streams (which are legitimately slow) are not cut off.
//!
//! Shutdown: when `stop` resolves, the listener is dropped (no new connections), every open
//! connection is asked to finish its current request and close, and this returns once they have.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// What one connection may cost the server before it is cut off.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// How long a client has to send its request headers (slowloris).
    pub header_read_timeout: Duration,
    /// Most request headers; hyper answers 431 above it.
    pub max_headers: usize,
    /// Largest read buffer, which bounds the request head; hyper answers 431 above it.
    pub max_header_bytes: usize,
}

/// Serves `app` until `stop`, each connection within `limits`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.as_mut() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(remote));
                req.map(axum::body::Body::new)
            })
            .map_err(|e: Infallible| match e {});
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes)
            .keep_alive(true);
        let conn = builder.serve_connection_with_upgrades(
            TokioIo::new(stream),
            TowerToHyperService::new(service),
        );
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
