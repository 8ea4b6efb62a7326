//! A tiny blocking HTTP/1.1 server for a node's observability endpoints (issue 15): `GET
//! /metrics` (Prometheus text), `GET /cluster.json` (every node's status, as this node sees
//! it: `observe.rs`) and `GET /` (the live cluster page, `page.html`).
//!
//! One thread accepts and answers one request per connection, then closes it: scrapes are rare
//! and small, so no pool and no keep-alive. No async runtime and no HTTP crate: the server reads
//! one request head (bounded in size and time), answers `GET` only and ignores any body.
//!
//! Invariants: nothing a client sends can panic or stall the server for more than the read
//! timeout; the server only reads the node's state (it never changes it); `stop` ends the
//! thread (it wakes the blocked `accept` by connecting to it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::Error;

/// The largest request head read; longer requests are answered 431.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// What is read and dropped after a request head too large, before closing.
const REQUEST_DRAIN_BYTES_MAX: u64 = 64 * 1024;
/// How long a client may take to send its request head (and to read the answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What the server answers, computed afresh for each request.
pub(crate) trait Endpoints: Send + Sync + 'static {
    /// The Prometheus text of `/metrics`.
    fn metrics(&self) -> String;
    /// The JSON of `/cluster.json`.
    fn cluster_json(&self) -> String;
}

/// A running HTTP server.
#[derive(Debug)]
pub(crate) struct HttpServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks one) and serves `endpoints` on a thread of its own.
    pub(crate) fn start(addr: SocketAddr, endpoints: Arc<dyn Endpoints>) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr).map_err(|source| Error::Io {
            what: format!("binding the metrics address {addr}"),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            what: format!("reading the bound metrics address of {addr}"),
            source,
        })?;
        let stopping = Arc::new(AtomicBool::new(false));
        let thread_stopping = Arc::clone(&stopping);
        let thread = std::thread::Builder::new()
            .name("alpo-http".into())
            .spawn(move || serve(&listener, endpoints.as_ref(), &thread_stopping))
            .map_err(|source| Error::Io {
                what: "starting the metrics HTTP thread".into(),
                source,
            })?;
        Ok(HttpServer {
            addr,
            stopping,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Ends the server's thread.
    pub(crate) fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::Release);
        // Wakes the blocked accept; if the connect fails the listener is gone already.
        let _ = TcpStream::connect_timeout(&self.addr, REQUEST_TIMEOUT);
        let _ = thread.join();
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: &TcpListener, endpoints: &dyn Endpoints, stopping: &AtomicBool) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of descriptors or an aborted connection: the next accept may succeed.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if let Err(error) = answer(stream, endpoints) {
            tracing::debug!(error = %error, "metrics HTTP request failed");
        }
    }
}

/// A response: status line, content type, body.
type Answer = (&'static str, &'static str, Vec<u8>);

fn answer(mut stream: TcpStream, endpoints: &dyn Endpoints) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let request = read_head(&mut stream)?;
    let (status, content_type, body) = match &request {
        Some(head) => route(head, endpoints),
        None => (
            "431 Request Header Fields Too Large",
            "text/plain",
            b"request head too large\n".to_vec(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()?;
    if request.is_none() {
        // Reads what the client still sends (bounded), so that closing with unread bytes does
        // not reset the connection before the client read the answer.
        stream.shutdown(std::net::Shutdown::Write)?;
        let _ = std::io::copy(
            &mut (&stream).take(REQUEST_DRAIN_BYTES_MAX),
            &mut std::io::sink(),
        );
    }
    Ok(())
}

/// Reads up to the blank line ending the request head; `None` when it is too long.
fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if REQUEST_HEAD_BYTES_MAX < head.len() {
            return Ok(None);
        }
        let count = stream.read(&mut buffer)?;
        if count == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..count]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

/// Answers the request line of `head`.
fn route(head: &str, endpoints: &dyn Endpoints) -> Answer {
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    if method != "GET" {
        return (
            "405 Method Not Allowed",
            "text/plain",
            b"only GET\n".to_vec(),
        );
    }
    // The query string (the page's cache-busting) does not choose the endpoint.
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            endpoints.metrics().into_bytes(),
        ),
        "/cluster.json" => (
            "200 OK",
            "application/json",
            endpoints.cluster_json().into_bytes(),
        ),
        "/" | "/index.html" => (
            "200 OK",
            "text/html; charset=utf-8",
            crate::page::PAGE.as_bytes().to_vec(),
        ),
        _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Endpoints for Fixed {
        fn metrics(&self) -> String {
            "alpo_term 3\n".into()
        }
        fn cluster_json(&self) -> String {
            "{}".into()
        }
    }

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn serves_metrics_and_refuses_what_it_does_not_know() {
        let mut server =
            HttpServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(Fixed)).unwrap();
        let addr = server.local_addr();
        let metrics = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.ends_with("\r\n\r\nalpo_term 3\n"), "{metrics}");
        let missing = get(addr, b"GET /nope HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(addr, b"POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let huge = vec![b'a'; REQUEST_HEAD_BYTES_MAX + 2048];
        let refused = get(addr, &huge);
        assert!(refused.starts_with("HTTP/1.1 431"), "{refused}");
        // Garbage and a connection closed without a request leave the server serving.
        drop(TcpStream::connect(addr).unwrap());
        let garbage = get(addr, b"\x00\xff\r\n\r\n");
        assert!(garbage.starts_with("HTTP/1.1 405"), "{garbage}");
        let page = get(addr, b"GET /?t=1 HTTP/1.1\r\n\r\n");
        assert!(page.contains("<!doctype html>"), "{page}");
        server.stop();
        assert!(TcpStream::connect(addr).is_err(), "stopped");
    }
}
