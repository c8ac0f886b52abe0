//! The benchmark's own ends of the wire: a load generator's connection and the receiver, each
//! speaking just enough HTTP/1.1 over keep-alive loopback connections.
//!
//! Why not reqwest and axum here: everything in `herald bench` shares the machine's two cores,
//! so whatever the harness spends is taken from Herald and Postgres. A general client builds a
//! URL, a header map and a pooled connection checkout for every request; on the ingest phase
//! that was a good part of the process's CPU. These ends do what `wrk` and a counting sink do:
//! write a request that is mostly preformatted bytes, read the status line and
//! `content-length`, and go on. Herald's side of every connection is its real server (hyper,
//! axum) and its real outbound client (reqwest); only the benchmark's ends are lean.
//!
//! Both ends parse with `httparse` (hyper's own parser) and understand only what Herald and
//! its client send: bodies framed by `content-length`. A chunked message is an error rather
//! than something to guess at.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::ReceiverState;

/// Most header lines either end reads in one message.
const MAX_HEADERS: usize = 48;

/// One keep-alive client connection of the load generator.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed (a response may arrive in pieces).
    buf: Vec<u8>,
    /// The request being written, reused across requests.
    out: Vec<u8>,
    /// The answer's body to the last request.
    body: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
            body: Vec::new(),
        })
    }

    /// Sends `POST path` with `headers` (complete lines, each ending in `\r\n`) and a JSON
    /// `body`, reads the whole answer and returns its status code; the answer's body is then
    /// in [`Conn::body`].
    pub async fn post(&mut self, path: &str, headers: &str, body: &[u8]) -> anyhow::Result<u16> {
        use std::io::Write;
        self.out.clear();
        write!(
            self.out,
            "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n{headers}\r\n",
            body.len()
        )?;
        self.out.extend_from_slice(body);
        self.stream.write_all(&self.out).await?;
        self.read_response().await
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    async fn read_response(&mut self) -> anyhow::Result<u16> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut res = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = res.parse(&self.buf)? {
                let status = res.code.context("a response without a status code")?;
                let len = content_length(res.headers)?;
                fill(&mut self.stream, &mut self.buf, head + len).await?;
                self.body.clear();
                self.body.extend_from_slice(&self.buf[head..head + len]);
                self.buf.drain(..head + len);
                return Ok(status);
            }
            read_more(&mut self.stream, &mut self.buf).await?;
        }
    }
}

/// The `content-length` of a message; chunked bodies are not expected from either side.
fn content_length(headers: &[httparse::Header<'_>]) -> anyhow::Result<usize> {
    let mut len = 0;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            len = std::str::from_utf8(h.value)?.trim().parse()?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            anyhow::bail!("a chunked message; the benchmark's ends expect content-length");
        }
    }
    Ok(len)
}

/// Reads until `buf` holds at least `n` bytes.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> io::Result<()> {
    while buf.len() < n {
        read_more(stream, buf).await?;
    }
    Ok(())
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.reserve(4096);
    if stream.read_buf(buf).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Serves the receiver on `listener` until the process ends: every request is answered
/// `200 ok` and counted, its `webhook-id` remembered and, when its body carries the publish
/// time the benchmark wrote (`"t":<µs>`), its latency recorded.
pub async fn receive(listener: TcpListener, state: Arc<ReceiverState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, state.clone()));
    }
}

async fn serve_connection(mut stream: TcpStream, st: Arc<ReceiverState>) -> anyhow::Result<()> {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let mut buf = Vec::with_capacity(8192);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(head) = req.parse(&buf)? else {
            read_more(&mut stream, &mut buf).await?;
            continue;
        };
        let len = content_length(req.headers)?;
        let id = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("webhook-id"))
            .map(|h| String::from_utf8_lossy(h.value).into_owned());
        fill(&mut stream, &mut buf, head + len).await?;
        let arrived = super::now_us();
        st.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = publish_time(&buf[head..head + len]) {
            st.latencies_us
                .lock()
                .expect("not poisoned")
                .push(arrived.saturating_sub(t));
        }
        buf.drain(..head + len);
        stream.write_all(OK).await?;
        if let Some(id) = id {
            st.record_id(id);
        }
    }
}

/// The publish time the benchmark put in an event (`"t":<µs>`, the first such key; the
/// benchmark's payloads contain no other).
fn publish_time(body: &[u8]) -> Option<u64> {
    let at = body.windows(4).position(|w| w == b"\"t\":")? + 4;
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_time_is_read_from_the_first_t_key() {
        assert_eq!(
            publish_time(br#"{"type":"x","data":{"t":1700000000123456,"payload":"xx"}}"#),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(publish_time(br#"{"data":{"payload":"t"}}"#), None);
        assert_eq!(publish_time(br#"{"t":"late"}"#), None);
    }

    #[test]
    fn a_chunked_message_is_refused_rather_than_misread() {
        let mut headers = [httparse::EMPTY_HEADER; 4];
        let mut res = httparse::Response::new(&mut headers);
        res.parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .unwrap();
        assert!(content_length(res.headers).is_err());
    }

    /// The two ends against each other: requests are counted once, ids and latencies kept,
    /// answers read whole so the connection stays in step.
    #[tokio::test]
    async fn the_receiver_counts_what_a_connection_posts_over_one_keep_alive_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let st = Arc::new(ReceiverState::default());
        tokio::spawn(receive(listener, st.clone()));
        let mut c = Conn::connect(addr).await.unwrap();
        for i in 0..3 {
            let body = format!(
                r#"{{"data":{{"t":{},"payload":"x"}}}}"#,
                super::super::now_us()
            );
            let status = c
                .post(
                    "/hook",
                    &format!("webhook-id: msg_{}\r\n", i % 2),
                    body.as_bytes(),
                )
                .await
                .unwrap();
            assert_eq!(status, 200);
            assert_eq!(c.body(), b"ok");
        }
        assert_eq!(st.requests.load(Ordering::Relaxed), 3);
        assert_eq!(st.distinct(), 2);
        assert_eq!(st.latencies_us.lock().unwrap().len(), 3);
    }

    /// The waiting phase is woken when its target is reached, not left to its timeout. Time is
    /// paused: had the ids not woken it, the runtime would have moved the clock on to the
    /// timeout, and the elapsed time would show it.
    #[tokio::test(start_paused = true)]
    async fn a_wait_for_distinct_ids_is_woken_by_the_id_that_reaches_its_target() {
        let st = Arc::new(ReceiverState::default());
        let started = tokio::time::Instant::now();
        let waiter = tokio::spawn({
            let st = st.clone();
            async move { st.wait_for(3, std::time::Duration::from_secs(30)).await }
        });
        // Let the waiter park on its wait before the ids arrive.
        tokio::task::yield_now().await;
        for i in 0..3 {
            st.record_id(format!("msg_{i}"));
        }
        assert_eq!(waiter.await.unwrap(), 3);
        assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    }
}
