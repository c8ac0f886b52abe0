//! The accept loop: hyper with the timeouts `axum::serve` does not set.
//!
//! A client that opens a connection and sends its request headers one byte a minute
//! (slowloris) would hold a connection forever under `axum::serve`. Here each connection gets a
//! header-read timeout, and idle keep-alive connections are closed. Bodies are bounded by the
//! body-size limits and must arrive within a body-read timeout (a client trickling its body is
//! answered 408); long polls and streams (which are legitimately slow) are not cut off.
//!
//! Shutdown: when `stop` resolves, the listener is dropped (no new connections), every open
//! connection is asked to finish its current request and close, and this returns once they have.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::http::error::ApiError;

/// What one connection may cost the server before it is cut off.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// How long a client has to send its request headers (slowloris).
    pub header_read_timeout: Duration,
    /// Most request headers; hyper answers 431 above it.
    pub max_headers: usize,
    /// Largest read buffer, which bounds the request head; hyper answers 431 above it.
    pub max_header_bytes: usize,
    /// How long a client has, after its headers, to send the whole request body (the slow
    /// body variant of slowloris). Responses are not bounded: long polls and streams may
    /// legitimately last minutes.
    pub body_read_timeout: Duration,
}

/// Puts a deadline on reading the request body: the body is passed on as a stream that ends
/// with an error once `timeout` has passed since the headers, and when that happened the
/// handler's answer (whatever its extractor made of the error) is replaced by a 408
/// problem+json, and the connection is closed.
async fn body_deadline(timeout: Duration, req: Request, next: Next) -> Response {
    let deadline = tokio::time::Instant::now() + timeout;
    let expired = Arc::new(AtomicBool::new(false));
    let flag = expired.clone();
    let (parts, body) = req.into_parts();
    let frames = futures_util::stream::unfold(Some(body.into_data_stream()), move |rest| {
        let flag = flag.clone();
        async move {
            let mut frames = rest?;
            match tokio::time::timeout_at(deadline, frames.next()).await {
                Ok(Some(frame)) => Some((frame, Some(frames))),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, Ordering::SeqCst);
                    Some((Err(axum::Error::new(SlowBody)), None))
                }
            }
        }
    });
    let response = next
        .run(Request::from_parts(parts, Body::from_stream(frames)))
        .await;
    if !expired.load(Ordering::SeqCst) {
        return response;
    }
    let mut slow = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body did not arrive within {} s",
            timeout.as_secs_f64()
        ),
    )
    .into_response();
    slow.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    slow
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct SlowBody;

/// Serves `app` until `stop`, each connection within `limits`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let timeout = limits.body_read_timeout;
    let app = app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| body_deadline(timeout, req, next),
    ));
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
