//! The HTTP side of the API: tiny_http's threads, authentication, body limits
//! and writing replies. The executor never touches a socket: each request is
//! turned into a [`Request`] and sent over a channel; the worker thread waits
//! for the [`Reply`] and writes it. Streams (watch, `logs -f`) get a thread of
//! their own, fed by a channel, so a slow client stalls nobody else.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use super::status;

/// Bodies above this are refused (Kubernetes' own limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
const WORKERS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Other,
}

impl Method {
    pub fn verb(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Other => "OTHER",
        }
    }
}

#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub accept: String,
    pub content_type: String,
    pub body: Vec<u8>,
    /// A WebSocket upgrade (kubectl exec): Sec-WebSocket-Key and the offered
    /// subprotocols.
    pub websocket: Option<(String, String)>,
}

impl Request {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub enum Reply {
    Full {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// A chunked reply; the stream ends when the sender is dropped.
    Stream {
        content_type: &'static str,
        chunks: smol::channel::Receiver<Vec<u8>>,
    },
    /// Switch to WebSocket and hand the connection to `session` on a thread
    /// of its own.
    Upgrade {
        headers: Vec<(&'static str, String)>,
        session: Session,
    },
}

pub type Session = Box<dyn FnOnce(Box<dyn tiny_http::ReadWrite + Send>) + Send>;

impl Reply {
    pub fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply::Full {
            status,
            content_type: "application/json",
            body,
        }
    }
}

/// A request on its way to the executor, with where to send the answer.
pub struct Call {
    pub request: Request,
    pub reply: smol::channel::Sender<Reply>,
}

pub struct TlsConfig {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// The running HTTP server; dropping it does not stop it, [`Listener::stop`] does.
pub struct Listener {
    server: Arc<tiny_http::Server>,
    workers: Vec<thread::JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl Listener {
    /// `max_streams` caps the streaming replies (watches, log follows) open
    /// at once: each holds a thread.
    pub fn start(
        addr: SocketAddr,
        tls: TlsConfig,
        token: String,
        calls: smol::channel::Sender<Call>,
        max_streams: usize,
    ) -> Result<Listener, String> {
        let ssl = tiny_http::SslConfig {
            certificate: tls.cert_pem,
            private_key: tls.key_pem,
        };
        let listener =
            std::net::TcpListener::bind(addr).map_err(|e| format!("listening on {addr}: {e}"))?;
        // Accepted sockets inherit TCP_NODELAY. Without it a reply written
        // as headers then body waits for the client's delayed ACK (~40 ms).
        nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::TcpNoDelay, &true)
            .map_err(|e| format!("setting TCP_NODELAY on {addr}: {e}"))?;
        let server = Arc::new(
            tiny_http::Server::from_listener(listener, Some(ssl))
                .map_err(|e| format!("listening on {addr}: {e}"))?,
        );
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("listening on {addr}: not an IP socket"))?;
        let token: Arc<str> = token.into();
        let streams = Arc::new(Streams {
            open: AtomicUsize::new(0),
            max: max_streams,
        });
        let workers = (0..WORKERS)
            .map(|i| {
                let (server, token, calls, streams) = (
                    server.clone(),
                    token.clone(),
                    calls.clone(),
                    streams.clone(),
                );
                thread::Builder::new()
                    .name(format!("api-{i}"))
                    .spawn(move || worker(&server, &token, &calls, &streams))
                    .map_err(|e| format!("starting API threads: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Listener {
            server,
            workers,
            addr,
        })
    }

    /// Stops accepting and waits for the worker threads.
    pub fn stop(self) {
        self.server.unblock();
        for _ in 1..WORKERS {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn worker(
    server: &tiny_http::Server,
    token: &str,
    calls: &smol::channel::Sender<Call>,
    streams: &Arc<Streams>,
) {
    while let Ok(mut rq) = server.recv() {
        let reply = match prepare(&mut rq, token) {
            Err(reply) => reply,
            Ok(request) => {
                let (tx, rx) = smol::channel::bounded(1);
                if calls.send_blocking(Call { request, reply: tx }).is_err() {
                    status::reply(&status::Status::unavailable("the server is shutting down"))
                } else {
                    rx.recv_blocking().unwrap_or_else(|_| {
                        status::reply(&status::Status::internal("the request was dropped"))
                    })
                }
            }
        };
        respond(rq, reply, streams);
    }
}

/// Reads and checks one request: authentication first, then the body.
fn prepare(rq: &mut tiny_http::Request, token: &str) -> Result<Request, Reply> {
    let header = |name: &'static str| {
        rq.headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
            .unwrap_or_default()
    };
    let (accept, content_type, authorization) = (
        header("Accept"),
        header("Content-Type"),
        header("Authorization"),
    );
    let websocket = header("Upgrade")
        .eq_ignore_ascii_case("websocket")
        .then(|| {
            (
                header("Sec-WebSocket-Key"),
                rq.headers()
                    .iter()
                    .filter(|h| h.field.equiv("Sec-WebSocket-Protocol"))
                    .map(|h| h.value.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        });
    let (path, query) = split_url(rq.url());
    if !public_path(&path) && !authorized(&authorization, token) {
        return Err(status::reply(&status::Status::unauthorized()));
    }
    let method = match rq.method() {
        tiny_http::Method::Get | tiny_http::Method::Head => Method::Get,
        tiny_http::Method::Post => Method::Post,
        tiny_http::Method::Put => Method::Put,
        tiny_http::Method::Patch => Method::Patch,
        tiny_http::Method::Delete => Method::Delete,
        _ => Method::Other,
    };
    if rq.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(status::reply(&status::Status::too_large(MAX_BODY)));
    }
    let mut body = Vec::new();
    // An upgrade request has no body, and tiny_http hands it the whole
    // connection as its reader: reading would wait for the client forever.
    let read = match websocket {
        Some(_) => Ok(0),
        None => rq
            .as_reader()
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut body),
    };
    if let Err(e) = read {
        return Err(status::reply(&status::Status::bad_request(format!(
            "reading the request body: {e}"
        ))));
    }
    if body.len() > MAX_BODY {
        return Err(status::reply(&status::Status::too_large(MAX_BODY)));
    }
    Ok(Request {
        method,
        path,
        query,
        accept,
        content_type,
        body,
        websocket,
    })
}

/// Health and version are readable without a token, as in Kubernetes.
fn public_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
}

fn authorized(header: &str, token: &str) -> bool {
    let Some(given) = header.strip_prefix("Bearer ") else {
        return false;
    };
    // Constant time, so the comparison leaks nothing about the token.
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The streaming replies open now, and the board's cap on them.
struct Streams {
    open: AtomicUsize,
    max: usize,
}

fn respond(rq: tiny_http::Request, reply: Reply, streams: &Arc<Streams>) {
    match reply {
        Reply::Full {
            status,
            content_type,
            body,
        } => {
            let resp = tiny_http::Response::from_data(body)
                .with_status_code(status)
                .with_header(header("Content-Type", content_type));
            let _ = rq.respond(resp);
        }
        Reply::Upgrade { headers, session } => {
            let mut resp = tiny_http::Response::empty(101);
            for (k, v) in &headers {
                resp.add_header(header(k, v));
            }
            let stream = rq.upgrade("websocket", resp);
            let spawned = thread::Builder::new()
                .name("api-exec".into())
                .spawn(move || session(stream));
            if spawned.is_err() {
                log::warn!("could not start a thread for an exec session");
            }
        }
        Reply::Stream {
            content_type,
            chunks,
        } => {
            if streams.open.fetch_add(1, Ordering::SeqCst) >= streams.max {
                streams.open.fetch_sub(1, Ordering::SeqCst);
                let reply = status::reply(&status::Status::too_many_requests(format!(
                    "too many open watches and log streams: this board allows {} at once ([limits] max_watches in the board config)",
                    streams.max
                )));
                return respond(rq, reply, streams);
            }
            let counted = streams.clone();
            let spawned = thread::Builder::new()
                .name("api-stream".into())
                .spawn(move || {
                    let _ = stream(rq, content_type, &chunks);
                    counted.open.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                streams.open.fetch_sub(1, Ordering::SeqCst);
                log::warn!("could not start a thread for a streaming reply");
            }
        }
    }
}

/// Writes a chunked reply by hand: tiny_http's encoder buffers 8 KiB, which
/// would hold watch events back.
fn stream(
    rq: tiny_http::Request,
    content_type: &str,
    chunks: &smol::channel::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let mut w = rq.into_writer();
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache, private\r\n\r\n"
    )?;
    w.flush()?;
    while let Ok(chunk) = chunks.recv_blocking() {
        if chunk.is_empty() {
            continue;
        }
        write!(w, "{:x}\r\n", chunk.len())?;
        w.write_all(&chunk)?;
        w.write_all(b"\r\n")?;
        w.flush()?;
    }
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("static header names and values are valid")
}

/// `/a/b?x=1&y=%2F` -> ("/a/b", [("x","1"), ("y","/")]).
pub fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let (path, q) = url.split_once('?').unwrap_or((url, ""));
    let query = q
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (percent_decode(path), query)
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            (b'+', ..) => out.push(b' '),
            (c, ..) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_decode() {
        let (p, q) = split_url("/api/v1/pods?labelSelector=app%3Dkubia%2Ctier+in+(a)&watch=1&x");
        assert_eq!(p, "/api/v1/pods");
        assert_eq!(
            q,
            vec![
                ("labelSelector".into(), "app=kubia,tier in (a)".into()),
                ("watch".into(), "1".into()),
                ("x".into(), "".into())
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn bearer_tokens_must_match_exactly() {
        assert!(authorized("Bearer abc", "abc"));
        assert!(!authorized("Bearer abd", "abc"));
        assert!(!authorized("Bearer ab", "abc"));
        assert!(!authorized("abc", "abc"));
        assert!(!authorized("", "abc"));
    }
}
