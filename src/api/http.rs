//! The HTTP side of the API: connections, TLS, authentication, body limits
//! and writing replies. An accept thread admits at most `[limits]
//! max_connections` connections, each served by a thread of its own (the
//! wire is in [`super::conn`]); one more gets a 503 naming the limit. Every
//! read has a deadline, so idle and slow clients give their place up. The
//! executor never touches a socket: each request is turned into a
//! [`Request`] and sent over a channel; the connection's thread waits for the
//! [`Reply`] and writes it. Streams (watch, `logs -f`) and exec sessions are
//! written by their connection's thread too, so a slow client stalls nobody
//! else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::conn::{self, Conn, Head, ReadError};
use super::status;

/// Bodies above this are refused (Kubernetes' own limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// How long a client has for the TLS handshake, and for each request head
/// once it has started.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a kept-alive connection may sit idle between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest pause while a body arrives, and the longest a write may block.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// A refused connection's handshake, request head and reply each get this.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections being refused at once; more are closed without a word.
const MAX_REFUSING: usize = 4;
/// How long a closing connection still reads what the client sends, so that
/// our last reply is not destroyed by a reset.
const LINGER: Duration = Duration::from_secs(1);
/// How often a stream checks that its client is still there.
const CLIENT_CHECK: Duration = Duration::from_secs(1);
/// After an accept error (out of file descriptors, say), wait this long.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Repeated warnings (accept errors, refused connections) at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Connection threads parse heads, run rustls and exec sessions: nothing deep.
const STACK_SIZE: usize = 256 * 1024;

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

/// A byte stream both ways: what a WebSocket session gets.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

pub type Session = Box<dyn FnOnce(Box<dyn ReadWrite + Send>) + Send>;

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
    shared: Arc<Shared>,
    socket: TcpListener,
    acceptor: thread::JoinHandle<()>,
    pub addr: SocketAddr,
}

/// What the accept thread and every connection thread share.
struct Shared {
    tls: Arc<rustls::ServerConfig>,
    token: String,
    calls: smol::channel::Sender<Call>,
    /// Streaming replies (watches, log follows) open now, and the cap.
    streams: AtomicUsize,
    max_streams: usize,
    /// Connections admitted and not yet closed, and the cap.
    connections: AtomicUsize,
    max_connections: usize,
    /// Connections being answered 503 now.
    refusing: AtomicUsize,
    /// Requests read and not yet answered: [`Listener::stop`] waits for them.
    busy: AtomicUsize,
    stopping: AtomicBool,
}

/// Takes a unit of a counter in [`Shared`] unless `max` are taken already.
fn take(counter: &AtomicUsize, max: usize) -> bool {
    if counter.fetch_add(1, Ordering::SeqCst) < max {
        return true;
    }
    counter.fetch_sub(1, Ordering::SeqCst);
    false
}

/// Gives a unit of a counter back when dropped.
struct Release<'a>(&'a AtomicUsize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Listener {
    /// `max_streams` caps the streaming replies (watches, log follows) open
    /// at once, `max_connections` the connections: each holds a thread.
    pub fn start(
        addr: SocketAddr,
        tls: TlsConfig,
        token: String,
        calls: smol::channel::Sender<Call>,
        max_streams: usize,
        max_connections: usize,
    ) -> Result<Listener, String> {
        let tls = server_config(&tls).map_err(|e| format!("the API's TLS certificate: {e}"))?;
        let socket = listen(addr)?;
        let addr = socket
            .local_addr()
            .map_err(|e| format!("listening on {addr}: {e}"))?;
        let shared = Arc::new(Shared {
            tls,
            token,
            calls,
            streams: AtomicUsize::new(0),
            max_streams,
            connections: AtomicUsize::new(0),
            max_connections,
            refusing: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        });
        let (accepting, s) = (
            socket
                .try_clone()
                .map_err(|e| format!("listening on {addr}: {e}"))?,
            shared.clone(),
        );
        let acceptor = thread::Builder::new()
            .name("api-accept".into())
            .stack_size(STACK_SIZE)
            .spawn(move || accept_loop(&accepting, &s))
            .map_err(|e| format!("starting the API's accept thread: {e}"))?;
        Ok(Listener {
            shared,
            socket,
            acceptor,
            addr,
        })
    }

    /// Stops accepting, then waits (a while) for the requests being answered.
    pub fn stop(self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept thread: accept() fails on a shut-down socket.
        let _ =
            nix::sys::socket::shutdown(self.socket.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        let _ = self.acceptor.join();
        let deadline = Instant::now() + IO_TIMEOUT;
        while self.shared.busy.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    use crate::cluster::tls::{certs_from_pem, key_from_pem};
    let text = |pem: &[u8]| String::from_utf8(pem.to_vec()).map_err(|e| e.to_string());
    let chain = certs_from_pem(&text(&tls.cert_pem)?).map_err(|e| e.to_string())?;
    let key = key_from_pem(&text(&tls.key_pem)?).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// Logs a repeated warning at most once per [`LOG_EVERY`], counting the rest.
struct RateLimited {
    next: Instant,
    skipped: u64,
}

impl RateLimited {
    fn new() -> RateLimited {
        RateLimited {
            next: Instant::now(),
            skipped: 0,
        }
    }

    fn warn(&mut self, message: impl FnOnce() -> String) {
        let now = Instant::now();
        if now < self.next {
            self.skipped += 1;
            return;
        }
        match self.skipped {
            0 => log::warn!("{}", message()),
            n => log::warn!("{} ({n} more like it in the last {LOG_EVERY:?})", message()),
        }
        (self.next, self.skipped) = (now + LOG_EVERY, 0);
    }
}

/// Admits connections up to the cap, one thread each, until stopped. An
/// accept error (out of file descriptors, say) is waited out, never fatal.
fn accept_loop(socket: &TcpListener, shared: &Arc<Shared>) {
    let (mut errors, mut refused) = (RateLimited::new(), RateLimited::new());
    loop {
        let accepted = socket.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let sock = match accepted {
            Ok((sock, _)) => sock,
            Err(e) => {
                errors.warn(|| format!("accepting an API connection: {e}; retrying"));
                thread::sleep(ACCEPT_RETRY);
                continue;
            }
        };
        if !take(&shared.connections, shared.max_connections) {
            refused.warn(|| {
                format!(
                    "refusing an API connection: {} are open, the limit ([limits] max_connections)",
                    shared.max_connections
                )
            });
            refuse(sock, shared);
            continue;
        }
        let s = shared.clone();
        let spawned = thread::Builder::new()
            .name("api-conn".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let _release = Release(&s.connections);
                if let Err(e) = serve(sock, &s) {
                    log::debug!("API connection closed: {e}");
                }
            });
        if let Err(e) = spawned {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            errors.warn(|| format!("starting a thread for an API connection: {e}"));
        }
    }
}

/// Answers a connection past the cap with a 503 Status naming the limit and
/// a Retry-After (kubectl tries again), on a short-lived thread with bounded
/// time; past [`MAX_REFUSING`] of those the connection is just closed.
fn refuse(sock: TcpStream, shared: &Arc<Shared>) {
    if !take(&shared.refusing, MAX_REFUSING) {
        return;
    }
    let s = shared.clone();
    let spawned = thread::Builder::new()
        .name("api-refuse".into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let _release = Release(&s.refusing);
            let status = status::Status::unavailable(format!(
                "too many open connections: this board allows {} at once ([limits] max_connections in the board config)",
                s.max_connections
            ));
            if let Err(e) = send_refusal(sock, &s.tls, &status) {
                log::debug!("refusing an API connection: {e}");
            }
        });
    if spawned.is_err() {
        shared.refusing.fetch_sub(1, Ordering::SeqCst);
    }
}

fn send_refusal(
    sock: TcpStream,
    tls: &Arc<rustls::ServerConfig>,
    status: &status::Status,
) -> std::io::Result<()> {
    sock.set_write_timeout(Some(REFUSE_TIMEOUT))?;
    let mut c = Conn::new(sock, tls.clone())?;
    c.handshake(Instant::now() + REFUSE_TIMEOUT)?;
    // The request comes first: a reply before it confuses clients (Go's
    // drops it as unsolicited).
    if c.read_head(REFUSE_TIMEOUT, REFUSE_TIMEOUT).is_err() {
        return Ok(());
    }
    let body = serde_json::to_vec(&status.to_json()).expect("JSON values serialize");
    write_full(&mut c, status.code, "application/json", &body, false, false)?;
    c.close(LINGER);
    Ok(())
}

/// Serves one connection's requests until it closes, idles out or switches
/// protocol.
fn serve(sock: TcpStream, shared: &Shared) -> std::io::Result<()> {
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut c = Conn::new(sock, shared.tls.clone())?;
    c.handshake(Instant::now() + HEAD_TIMEOUT)?;
    // The first request is due right after the handshake.
    let mut idle = HEAD_TIMEOUT;
    loop {
        let head = match c.read_head(idle, HEAD_TIMEOUT) {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            Err(ReadError::Gone(e)) => return Err(e),
            Err(e) => {
                let s = read_error(e);
                let body = serde_json::to_vec(&s.to_json()).expect("JSON values serialize");
                write_full(&mut c, s.code, "application/json", &body, false, false)?;
                c.close(LINGER);
                return Ok(());
            }
        };
        idle = IDLE_TIMEOUT;
        shared.busy.fetch_add(1, Ordering::SeqCst);
        let busy = Release(&shared.busy);
        let (reply, keep_alive) = match prepare(&mut c, &head, &shared.token) {
            // The body may be unread: the connection cannot carry on.
            Err(reply) => (reply, false),
            Ok(request) => {
                let (tx, rx) = smol::channel::bounded(1);
                let call = Call { request, reply: tx };
                let reply = if shared.calls.send_blocking(call).is_err() {
                    status::reply(&status::Status::unavailable("the server is shutting down"))
                } else {
                    rx.recv_blocking().unwrap_or_else(|_| {
                        status::reply(&status::Status::internal("the request was dropped"))
                    })
                };
                (
                    reply,
                    head.keep_alive() && !shared.stopping.load(Ordering::SeqCst),
                )
            }
        };
        match respond(c, &head, reply, keep_alive, busy, shared)? {
            Some(next) => c = next,
            None => return Ok(()),
        }
    }
}

fn read_error(e: ReadError) -> status::Status {
    match e {
        ReadError::Bad(why) => status::Status::bad_request(why),
        ReadError::HeadTooLarge => status::Status::bad_request("the request head is too large"),
        ReadError::TooLarge => status::Status::too_large(MAX_BODY),
        ReadError::Gone(e) => status::Status::bad_request(format!("reading the request: {e}")),
    }
}

/// Reads and checks one request: authentication first, then the body.
fn prepare(c: &mut Conn, head: &Head, token: &str) -> Result<Request, Reply> {
    let header = |name: &str| head.get(name).to_string();
    let (accept, content_type, authorization) = (
        header("Accept"),
        header("Content-Type"),
        header("Authorization"),
    );
    let websocket = head
        .get("Upgrade")
        .eq_ignore_ascii_case("websocket")
        .then(|| {
            (
                header("Sec-WebSocket-Key"),
                head.all("Sec-WebSocket-Protocol"),
            )
        });
    let (path, query) = split_url(&head.target);
    if !public_path(&path) && !authorized(&authorization, token) {
        return Err(status::reply(&status::Status::unauthorized()));
    }
    let method = match head.method.as_str() {
        "GET" | "HEAD" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        _ => Method::Other,
    };
    let kind = head
        .body()
        .map_err(|e| status::reply(&status::Status::bad_request(e)))?;
    if matches!(kind, conn::BodyKind::Length(n) if n > MAX_BODY as u64) {
        return Err(status::reply(&status::Status::too_large(MAX_BODY)));
    }
    // An upgrade request has no body: what follows it is the new protocol.
    let body = match websocket {
        Some(_) => Vec::new(),
        None => {
            if head.expects_continue() && kind != conn::BodyKind::Length(0) {
                c.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .map_err(|e| read_reply(ReadError::Gone(e)))?;
            }
            c.read_body(kind, MAX_BODY, IO_TIMEOUT)
                .map_err(read_reply)?
        }
    };
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

fn read_reply(e: ReadError) -> Reply {
    status::reply(&match e {
        ReadError::Gone(e) => status::Status::bad_request(format!("reading the request body: {e}")),
        ReadError::Bad(why) => {
            status::Status::bad_request(format!("reading the request body: {why}"))
        }
        e => read_error(e),
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

/// Status line, Content-Type and Content-Length, then the body (not for HEAD).
fn write_full(
    c: &mut Conn,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let retry = status::retry_after_secs(status)
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{retry}{}\r\n",
        conn::reason(status),
        body.len(),
        if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    c.write_all(&out)
}

/// Writes a reply; gives the connection back if it may carry another request.
fn respond(
    mut c: Conn,
    head: &Head,
    reply: Reply,
    keep_alive: bool,
    busy: Release<'_>,
    shared: &Shared,
) -> std::io::Result<Option<Conn>> {
    match reply {
        Reply::Full {
            status,
            content_type,
            body,
        } => {
            write_full(
                &mut c,
                status,
                content_type,
                &body,
                keep_alive,
                head.method == "HEAD",
            )?;
            drop(busy);
            if keep_alive {
                return Ok(Some(c));
            }
            c.close(LINGER);
            Ok(None)
        }
        Reply::Upgrade { headers, session } => {
            let mut out =
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    .to_string();
            for (k, v) in &headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            c.write_all(out.as_bytes())?;
            drop(busy);
            // The session paces itself (see websocket.rs): no deadlines.
            c.socket().set_read_timeout(None)?;
            c.socket().set_write_timeout(None)?;
            session(Box::new(c.into_stream()));
            Ok(None)
        }
        Reply::Stream {
            content_type,
            chunks,
        } => {
            if !take(&shared.streams, shared.max_streams) {
                let reply = status::reply(&status::Status::too_many_requests(format!(
                    "too many open watches and log streams: this board allows {} at once ([limits] max_watches in the board config)",
                    shared.max_streams
                )));
                return respond(c, head, reply, keep_alive, busy, shared);
            }
            let _open = Release(&shared.streams);
            drop(busy);
            // HTTP/1.0 has no chunks: the body ends when the connection does.
            let chunked = head.version == 1;
            c.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{}Cache-Control: no-cache, private\r\n\r\n",
                    if chunked {
                        "Transfer-Encoding: chunked\r\n"
                    } else {
                        "Connection: close\r\n"
                    }
                )
                .as_bytes(),
            )?;
            if !stream(&mut c, &chunks, chunked)? {
                return Ok(None);
            }
            if chunked && keep_alive && !shared.stopping.load(Ordering::SeqCst) {
                return Ok(Some(c));
            }
            c.close(LINGER);
            Ok(None)
        }
    }
}

/// Writes chunks as they come until the sender is dropped (true) or the
/// client goes away (false). Between chunks the socket is checked every
/// [`CLIENT_CHECK`], so a closed watch gives its place up promptly.
fn stream(
    c: &mut Conn,
    chunks: &smol::channel::Receiver<Vec<u8>>,
    chunked: bool,
) -> std::io::Result<bool> {
    loop {
        let next = smol::block_on(smol::future::or(
            async { Some(chunks.recv().await) },
            async {
                smol::Timer::after(CLIENT_CHECK).await;
                None
            },
        ));
        match next {
            None if c.peer_closed() => return Ok(false),
            None => {}
            Some(Err(_)) => break,
            Some(Ok(chunk)) if chunk.is_empty() => {}
            Some(Ok(chunk)) if chunked => {
                let mut out = format!("{:x}\r\n", chunk.len()).into_bytes();
                out.extend_from_slice(&chunk);
                out.extend_from_slice(b"\r\n");
                c.write_all(&out)?;
            }
            Some(Ok(chunk)) => c.write_all(&chunk)?,
        }
    }
    if chunked {
        c.write_all(b"0\r\n\r\n")?;
    }
    Ok(true)
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

/// The API's listening socket. Accepted sockets inherit its options:
/// TCP_NODELAY, without which a reply written as headers then body waits
/// for the client's delayed ACK (~40 ms); and keepalive probes with a user
/// timeout, so a client that vanished (a laptop shut mid-exec, a board
/// unplugged) gives its connection up within about a minute instead of
/// holding it, and its place under `max_connections`, for good.
fn listen(addr: SocketAddr) -> Result<TcpListener, String> {
    use nix::sys::socket::{setsockopt, sockopt};
    let socket = TcpListener::bind(addr).map_err(|e| format!("listening on {addr}: {e}"))?;
    let set =
        |what: &str, r: nix::Result<()>| r.map_err(|e| format!("setting {what} on {addr}: {e}"));
    set(
        "TCP_NODELAY",
        setsockopt(&socket, sockopt::TcpNoDelay, &true),
    )?;
    set(
        "SO_KEEPALIVE",
        setsockopt(&socket, sockopt::KeepAlive, &true),
    )?;
    set(
        "TCP_KEEPIDLE",
        setsockopt(&socket, sockopt::TcpKeepIdle, &KEEPALIVE_IDLE_SECS),
    )?;
    set(
        "TCP_KEEPINTVL",
        setsockopt(&socket, sockopt::TcpKeepInterval, &KEEPALIVE_INTERVAL_SECS),
    )?;
    set(
        "TCP_KEEPCNT",
        setsockopt(&socket, sockopt::TcpKeepCount, &KEEPALIVE_PROBES),
    )?;
    // Unacknowledged data (a client gone while a watch writes) counts too.
    let unacked = (KEEPALIVE_IDLE_SECS + KEEPALIVE_INTERVAL_SECS * KEEPALIVE_PROBES) * 1000;
    set(
        "TCP_USER_TIMEOUT",
        setsockopt(&socket, sockopt::TcpUserTimeout, &unacked),
    )?;
    Ok(socket)
}

const KEEPALIVE_IDLE_SECS: u32 = 30;
const KEEPALIVE_INTERVAL_SECS: u32 = 10;
const KEEPALIVE_PROBES: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_inherit_nodelay_and_keepalive() {
        use nix::sys::socket::{getsockopt, sockopt};
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (conn, _) = listener.accept().unwrap();
        assert!(getsockopt(&conn, sockopt::TcpNoDelay).unwrap());
        assert!(getsockopt(&conn, sockopt::KeepAlive).unwrap());
        assert_eq!(getsockopt(&conn, sockopt::TcpKeepIdle).unwrap(), 30);
        assert_eq!(getsockopt(&conn, sockopt::TcpKeepInterval).unwrap(), 10);
        assert_eq!(getsockopt(&conn, sockopt::TcpKeepCount).unwrap(), 3);
        assert_eq!(getsockopt(&conn, sockopt::TcpUserTimeout).unwrap(), 60_000);
    }

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
