//! One API connection: rustls over a blocking `TcpStream`, driven by hand so
//! that every read has a deadline (a client trickling bytes cannot stretch
//! it), plus HTTP/1.1 framing: request heads (httparse), bodies by
//! Content-Length or chunked, and the few reply shapes the API writes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection};

/// Request heads above this are refused (400); kubectl's are about 1 KiB.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

pub struct Conn {
    tls: ServerConnection,
    sock: TcpStream,
    /// Plaintext read but not consumed yet (the rest of a head, a body, or
    /// the next request).
    buf: Vec<u8>,
}

/// A parsed request head; header names as sent, values trimmed.
#[derive(Debug, Default)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header, or "".
    pub fn get(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of a header, joined with ", " as HTTP allows.
    pub fn all(&self, name: &str) -> String {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the connection may carry another request after this one.
    pub fn keep_alive(&self) -> bool {
        self.version == 1 && !self.has_token("Connection", "close")
    }

    pub fn expects_continue(&self) -> bool {
        self.version == 1 && self.get("Expect").eq_ignore_ascii_case("100-continue")
    }

    /// How the body is framed (RFC 9112 6.3): chunked wins over a length.
    pub fn body(&self) -> Result<BodyKind, String> {
        let te = self.all("Transfer-Encoding");
        if !te.is_empty() {
            return match te.rsplit(',').next().map(str::trim) {
                Some(t) if t.eq_ignore_ascii_case("chunked") => Ok(BodyKind::Chunked),
                _ => Err(format!("unsupported Transfer-Encoding {te:?}")),
            };
        }
        match self.get("Content-Length") {
            "" => Ok(BodyKind::Length(0)),
            n => n
                .parse()
                .map(BodyKind::Length)
                .map_err(|_| format!("invalid Content-Length {n:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Length(u64),
    Chunked,
}

/// Why reading a request failed.
#[derive(Debug)]
pub enum ReadError {
    /// The client went away or timed out: nothing to answer.
    Gone(io::Error),
    /// A malformed head or body: answer 400 with this text.
    Bad(String),
    /// A head over [`MAX_HEAD`] or with too many headers: answer 400.
    HeadTooLarge,
    /// A body over the limit: answer 413.
    TooLarge,
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        ReadError::Gone(e)
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the client was too slow")
}

impl Conn {
    pub fn new(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<Conn> {
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Conn {
            tls,
            sock,
            buf: Vec::new(),
        })
    }

    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// Completes the TLS handshake by `deadline`.
    pub fn handshake(&mut self, deadline: Instant) -> io::Result<()> {
        while self.tls.is_handshaking() {
            self.flush_tls()?;
            if !self.tls.is_handshaking() {
                break;
            }
            if !self.read_tls(deadline)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        self.flush_tls()
    }

    /// Reads one batch of TLS records (by `deadline`) and processes them.
    /// Returns false at the end of the socket.
    fn read_tls(&mut self, deadline: Instant) -> io::Result<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        self.sock.set_read_timeout(Some(left))?;
        let n = match self.tls.read_tls(&mut self.sock) {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock) => return Err(timed_out()),
            r => r?,
        };
        if let Err(e) = self.tls.process_new_packets() {
            // Tell the client why (a TLS alert), then give up.
            let _ = self.flush_tls();
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(n > 0)
    }

    /// Sends whatever rustls has queued (handshake, alerts, encrypted data).
    fn flush_tls(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.sock)?;
        }
        Ok(())
    }

    /// Appends at least one byte of plaintext to `buf` by `deadline`; Ok(false)
    /// when the client closed the connection.
    fn fill(&mut self, deadline: Instant) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.tls.reader().read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(e),
            }
            self.flush_tls()?;
            if !self.read_tls(deadline)? {
                // The socket ended; rustls says whether that was clean.
                return match self.tls.reader().read(&mut chunk) {
                    Ok(n) if n > 0 => {
                        self.buf.extend_from_slice(&chunk[..n]);
                        Ok(true)
                    }
                    _ => Ok(false),
                };
            }
        }
    }

    /// Waits up to `idle` for the next request to start, then up to `head`
    /// for the rest of its head. None when the client closed the connection
    /// between requests.
    pub fn read_head(&mut self, idle: Duration, head: Duration) -> Result<Option<Head>, ReadError> {
        let mut deadline = Instant::now() + idle;
        let mut started = !self.buf.is_empty();
        if started {
            deadline = Instant::now() + head;
        }
        loop {
            if let Some((parsed, len)) = parse_head(&self.buf)? {
                self.buf.drain(..len);
                return Ok(Some(parsed));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::HeadTooLarge);
            }
            if !self.fill(deadline)? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(ReadError::Gone(io::ErrorKind::UnexpectedEof.into()));
            }
            if !started {
                started = true;
                deadline = Instant::now() + head;
            }
        }
    }

    /// Reads a body of at most `max` bytes; each read must come within `timeout`.
    pub fn read_body(
        &mut self,
        kind: BodyKind,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, ReadError> {
        match kind {
            BodyKind::Length(n) => {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= max)
                    .ok_or(ReadError::TooLarge)?;
                self.need(n, timeout)?;
                Ok(self.buf.drain(..n).collect())
            }
            BodyKind::Chunked => self.read_chunked(max, timeout),
        }
    }

    /// Makes sure `buf` holds at least `n` bytes.
    fn need(&mut self, n: usize, timeout: Duration) -> Result<(), ReadError> {
        while self.buf.len() < n {
            if !self.fill(Instant::now() + timeout)? {
                return Err(ReadError::Bad(
                    "the client closed the connection in the middle of the body".into(),
                ));
            }
        }
        Ok(())
    }

    /// One CRLF-terminated line (chunk sizes, trailers), without the CRLF.
    fn line(&mut self, timeout: Duration) -> Result<String, ReadError> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Bad("a chunk header line is too long".into()));
            }
            let have = self.buf.len();
            self.need(have + 1, timeout)?;
        }
    }

    fn read_chunked(&mut self, max: usize, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let line = self.line(timeout)?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| ReadError::Bad(format!("invalid chunk size {size:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line(timeout)?.is_empty() {}
                return Ok(body);
            }
            if body.len().saturating_add(size) > max {
                return Err(ReadError::TooLarge);
            }
            self.need(size + 2, timeout)?;
            body.extend(self.buf.drain(..size));
            if self.buf.drain(..2).as_slice() != b"\r\n" {
                return Err(ReadError::Bad("a chunk does not end with CRLF".into()));
            }
        }
    }

    /// Writes and flushes bytes; the socket's write timeout bounds it.
    /// rustls takes plaintext up to its buffer limit at a time.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.tls.writer().write(data)?;
            data = &data[n..];
            self.flush_tls()?;
        }
        Ok(())
    }

    /// Whether the client has closed the connection (or reset it, or sent
    /// more than a request head's worth meanwhile): checked between the
    /// chunks of a stream, where nothing else reads the socket. Go clients
    /// send a TLS close_notify before their FIN, so what is readable is read.
    pub fn peer_closed(&mut self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            return false;
        }
        match self.fill(Instant::now() + Duration::from_millis(10)) {
            Ok(more) => !more || self.buf.len() > MAX_HEAD,
            Err(e) => e.kind() != io::ErrorKind::TimedOut,
        }
    }

    /// Ends the connection so that a reply written before unread input still
    /// arrives: closing a socket with unread data makes the kernel send a
    /// reset, which can destroy the reply in flight. So: close_notify, our
    /// FIN, then discard what the client still sends, for at most `linger`.
    pub fn close(mut self, linger: Duration) {
        self.tls.send_close_notify();
        let _ = self.flush_tls();
        let _ = self.sock.shutdown(Shutdown::Write);
        let deadline = Instant::now() + linger;
        let mut sink = [0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.sock.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.sock.read(&mut sink) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// The connection as a plain byte stream, for a protocol switch; bytes
    /// already read come first.
    pub fn into_stream(self) -> Upgraded {
        Upgraded {
            early: io::Cursor::new(self.buf),
            tls: rustls::StreamOwned::new(self.tls, self.sock),
        }
    }
}

/// The stream a WebSocket session gets.
pub struct Upgraded {
    early: io::Cursor<Vec<u8>>,
    tls: rustls::StreamOwned<ServerConnection, TcpStream>,
}

impl Read for Upgraded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.early.read(buf)? {
            0 => self.tls.read(buf),
            n => Ok(n),
        }
    }
}

impl Write for Upgraded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tls.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tls.flush()
    }
}

/// A complete head at the start of `buf` and its length, or None if more is needed.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => Ok(Some((
            Head {
                method: req.method.unwrap_or_default().to_string(),
                target: req.path.unwrap_or_default().to_string(),
                version: req.version.unwrap_or(1),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect(),
            },
            len,
        ))),
        Err(httparse::Error::TooManyHeaders) => Err(ReadError::HeadTooLarge),
        Err(e) => Err(ReadError::Bad(format!("malformed request head: {e}"))),
    }
}

/// The reason phrase for the status codes the API uses.
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
    use std::net::TcpListener;

    type Client = StreamOwned<ClientConnection, TcpStream>;

    /// A server connection and a client for it over loopback.
    fn pair() -> (Conn, Client) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], PrivateKeyDer::Pkcs8(key))
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let tls = ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap()).unwrap();
        (
            Conn::new(accepted, Arc::new(server)).unwrap(),
            StreamOwned::new(tls, sock),
        )
    }

    fn read_n(c: &mut Client, n: usize) -> String {
        let mut buf = vec![0u8; n];
        c.read_exact(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn chunked_bodies_continue_and_pipelined_requests_come_through() {
        let (mut server, mut client) = pair();
        let talk = std::thread::spawn(move || {
            client
                .write_all(b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
                .unwrap();
            let cont = read_n(&mut client, 25);
            client
                .write_all(b"5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n")
                .unwrap();
            // Two more at once: a body by length, then one too large.
            client
                .write_all(b"PUT /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n")
                .unwrap();
            let reply = read_n(&mut client, 4);
            // The server closes after its reply; so do we.
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest);
            (cont, reply)
        });
        let t = Duration::from_secs(10);
        server.handshake(Instant::now() + t).unwrap();
        let head = server.read_head(t, t).unwrap().unwrap();
        assert_eq!(
            (head.method.as_str(), head.body()),
            ("POST", Ok(BodyKind::Chunked))
        );
        assert!(head.expects_continue());
        server.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        assert_eq!(
            server.read_body(BodyKind::Chunked, 100, t).unwrap(),
            b"hello world"
        );
        let head = server.read_head(t, t).unwrap().unwrap();
        assert_eq!(head.target, "/b");
        assert_eq!(
            server.read_body(head.body().unwrap(), 100, t).unwrap(),
            b"abc"
        );
        let head = server.read_head(t, t).unwrap().unwrap();
        assert_eq!(head.target, "/c");
        assert!(matches!(
            server.read_body(BodyKind::Chunked, 15, t),
            Err(ReadError::TooLarge)
        ));
        assert!(matches!(
            server.read_body(BodyKind::Length(16), 15, t),
            Err(ReadError::TooLarge)
        ));
        server.write_all(b"done").unwrap();
        server.close(Duration::from_secs(1));
        let (cont, reply) = talk.join().unwrap();
        assert_eq!(
            (cont.as_str(), reply.as_str()),
            ("HTTP/1.1 100 Continue\r\n\r\n", "done")
        );
    }

    #[test]
    fn idle_and_half_sent_heads_time_out_and_a_closed_client_ends_the_wait() {
        let (mut server, mut client) = pair();
        let talk = std::thread::spawn(move || {
            while client.conn.is_handshaking() {
                client.conn.complete_io(&mut client.sock).unwrap();
            }
            std::thread::sleep(Duration::from_millis(400));
            client.write_all(b"GET / HTTP/1.1\r\nHost:").unwrap();
            std::thread::sleep(Duration::from_millis(500));
            client.conn.send_close_notify();
            let _ = client.flush();
        });
        let t = Duration::from_secs(10);
        let short = Duration::from_millis(100);
        server.handshake(Instant::now() + t).unwrap();
        let idle = server.read_head(short, t);
        assert!(
            matches!(&idle, Err(ReadError::Gone(e)) if e.kind() == io::ErrorKind::TimedOut),
            "{idle:?}"
        );
        let head = server.read_head(t, short);
        assert!(
            matches!(&head, Err(ReadError::Gone(e)) if e.kind() == io::ErrorKind::TimedOut),
            "{head:?}"
        );
        talk.join().unwrap();
        assert!(matches!(server.read_head(t, t), Err(ReadError::Gone(_))));
        assert!(server.peer_closed());
    }

    fn head(text: &str) -> Head {
        parse_head(text.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn heads_parse_and_frame_bodies() {
        let h = head(
            "POST /api/v1/pods?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nAccept: b\r\n\r\n",
        );
        assert_eq!(
            (h.method.as_str(), h.target.as_str()),
            ("POST", "/api/v1/pods?x=1")
        );
        assert_eq!((h.get("accept"), h.get("Missing")), ("b", ""));
        assert_eq!(h.body(), Ok(BodyKind::Length(12)));
        assert!(h.keep_alive() && !h.expects_continue());

        let h = head(
            "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\nConnection: keep-alive, Close\r\nExpect: 100-continue\r\n\r\n",
        );
        assert_eq!(h.body(), Ok(BodyKind::Chunked));
        assert!(!h.keep_alive() && h.expects_continue());

        let h = head("GET / HTTP/1.0\r\nContent-Length: x\r\n\r\n");
        assert!(h.body().is_err() && !h.keep_alive());
        assert!(
            head("GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n")
                .body()
                .is_err()
        );

        let h = head(
            "GET / HTTP/1.1\r\nSec-WebSocket-Protocol: a\r\nsec-websocket-protocol: b\r\n\r\n",
        );
        assert_eq!(h.all("Sec-WebSocket-Protocol"), "a, b");

        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Ok(None)
        ));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
            Err(ReadError::Bad(_))
        ));
    }
}
