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
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
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
    /// Most request headers; above it the answer is 431.
    pub max_headers: usize,
    /// Largest request head (target and headers) in bytes; above it the answer is 431.
    pub max_header_bytes: usize,
    /// How long a client has, after its headers, to send the whole request body (the slow
    /// body variant of slowloris). Responses are not bounded: long polls and streams may
    /// legitimately last minutes.
    pub body_read_timeout: Duration,
}

/// Puts a deadline on reading the request body: the body ends with an error once `timeout`
/// has passed since the headers, and when that happened the handler's answer (whatever its
/// extractor made of the error) is replaced by a 408 problem+json, and the connection closed.
async fn body_deadline(limits: ServerLimits, req: Request, next: Next) -> Response {
    if let Some(problem) = head_over_limits(&limits, &req) {
        return closing(problem);
    }
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let timeout = limits.body_read_timeout;
    let expired = Arc::new(AtomicBool::new(false));
    let req = req.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            expired: expired.clone(),
        })
    });
    let response = next.run(req).await;
    if !expired.load(Ordering::SeqCst) {
        return response;
    }
    closing(ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body did not arrive within {} s",
            timeout.as_secs_f64()
        ),
    ))
}

/// A request head over the limits, as a 431 problem+json that names the limit. hyper's own
/// limits are set above these (twice as high, at least 100 headers), as the backstop for heads too large to parse at
/// all: its 431 has no body to say what was wrong.
fn head_over_limits(limits: &ServerLimits, req: &Request) -> Option<ApiError> {
    let too_large = |detail: String| {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            detail,
        )
    };
    let count = req.headers().len();
    if count > limits.max_headers {
        return Some(too_large(format!(
            "the request has {count} headers; at most {} are accepted (max_request_headers)",
            limits.max_headers
        )));
    }
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let bytes = target
        + req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    (bytes > limits.max_header_bytes).then(|| {
        too_large(format!(
            "the request head is {bytes} bytes; at most {} are accepted (max_request_header_bytes)",
            limits.max_header_bytes
        ))
    })
}

/// The problem, on a connection that closes after it: the rest of the body is never read.
fn closing(problem: ApiError) -> Response {
    let mut r = problem.into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A request body that fails once its deadline passes. It keeps the inner body's size hint,
/// which the body limits downstream rely on. (A declared `Content-Length` over a route's
/// limit never gets here: the router answers it 413 first, see `http::reject_declared_oversize`.)
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(axum::Error::new(SlowBody))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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
    let app = app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| body_deadline(limits, req, next),
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
            .max_headers(limits.max_headers.saturating_mul(2).max(100))
            .max_buf_size(limits.max_header_bytes.saturating_mul(2))
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
