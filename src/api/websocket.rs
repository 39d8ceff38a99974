//! The server side of the Kubernetes streaming protocols over WebSocket: RFC 6455 framing plus the
//! `v5.channel.k8s.io` / `v4.channel.k8s.io` subprotocols, as `kubectl exec` speaks them.
//!
//! On the wire every message is a binary frame whose first byte is a channel: 0 stdin, 1 stdout,
//! 2 stderr, 3 error (one `metav1.Status` JSON at the end), 4 resize; v5 adds 255, "close the
//! stream named by the next byte" (how the client says stdin reached EOF).
//!
//! One thread does all socket I/O. The upgraded stream is one rustls connection that cannot be
//! split: a second thread blocked reading it would hold it, and output would stall. Instead the session polls the client: it
//! sends a ping and reads until the pong, which any client sends within a round trip, handling
//! stdin data and the client's own pings met on the way. Output is written as it comes in between.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// The subprotocols we accept, best first.
pub const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Largest client frame or reassembled message; stdin chunks and resize events are far smaller.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Fixed by RFC 6455 section 1.3.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
/// v5 only: `[CLOSE_STREAM, channel]` half-closes that channel.
const CLOSE_STREAM: u8 = 255;
const CLOSE_NORMAL: u16 = 1000;

/// How often the client is polled while stdin is open: the delay before typed input and the
/// output it causes show up.
const STDIN_POLL: Duration = Duration::from_millis(150);
/// How often it is polled otherwise. kubectl pings every 5 s and gives up 61 s after the last
/// pong, so its pings must be answered well within that.
const HEARTBEAT_POLL: Duration = Duration::from_secs(15);

/// The outcome of a successful opening handshake.
#[derive(Debug, PartialEq, Eq)]
pub struct Handshake {
    pub accept_key: String,
    pub protocol: &'static str,
}

impl Handshake {
    /// Headers for the 101 reply besides `Upgrade` and `Connection`, which the HTTP layer
    /// writes itself.
    pub fn headers(&self) -> [(&'static str, String); 2] {
        [
            ("Sec-WebSocket-Accept", self.accept_key.clone()),
            ("Sec-WebSocket-Protocol", self.protocol.to_string()),
        ]
    }
}

/// Checks the client's key and picks a subprotocol. `offered_protocols` is the value of
/// `Sec-WebSocket-Protocol` (join repeated headers with ", "). The error text suits a 400.
pub fn handshake(sec_websocket_key: &str, offered_protocols: &str) -> Result<Handshake, String> {
    let key = sec_websocket_key.trim();
    // RFC 6455 4.2.1: the key is 16 random bytes in base64.
    if STANDARD.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(format!("invalid Sec-WebSocket-Key {key:?}"));
    }
    let offered: Vec<&str> = offered_protocols.split(',').map(str::trim).collect();
    let protocol = PROTOCOLS
        .iter()
        .copied()
        .find(|p| offered.contains(p))
        .ok_or_else(|| {
            format!(
                "unsupported Sec-WebSocket-Protocol {offered_protocols:?}, expected one of {}",
                PROTOCOLS.join(", ")
            )
        })?;
    Ok(Handshake {
        accept_key: accept_key(key),
        protocol,
    })
}

fn accept_key(key: &str) -> String {
    STANDARD.encode(sha1(format!("{key}{GUID}").as_bytes()))
}

/// SHA-1 (FIPS 180-4), used only because RFC 6455's handshake mandates it;
/// nothing here relies on it for security. The handshake is its only use,
/// so it lives here rather than as a dependency.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut m = data.to_vec();
    m.push(0x80);
    while m.len() % 64 != 56 {
        m.push(0);
    }
    m.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in m.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Continuation = 0,
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

/// One frame as read off the wire, payload already unmasked.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: Opcode,
    pub masked: bool,
    pub payload: Vec<u8>,
}

fn protocol_error(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one frame, masked or not, refusing payloads above `max_payload` before allocating.
pub fn read_frame(r: &mut impl Read, max_payload: usize) -> io::Result<Frame> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head)?;
    if head[0] & 0x70 != 0 {
        return Err(protocol_error(
            "reserved bits set but no extension was negotiated",
        ));
    }
    let opcode = Opcode::from_bits(head[0] & 0x0f)
        .ok_or_else(|| protocol_error(format!("unknown opcode {}", head[0] & 0x0f)))?;
    let fin = head[0] & 0x80 != 0;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(protocol_error(
            "control frames must be whole and at most 125 bytes",
        ));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= max_payload)
        .ok_or_else(|| {
            protocol_error(format!(
                "frame of {len} bytes exceeds the limit of {max_payload}"
            ))
        })?;
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask)?;
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok(Frame {
        fin,
        opcode,
        masked,
        payload,
    })
}

/// Writes one unmasked, final frame (servers never mask) and flushes: each frame is meant to
/// reach the client now, and a TLS writer may buffer.
pub fn write_frame(w: &mut impl Write, opcode: Opcode, payload: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(payload.len() + 10);
    buf.push(0x80 | opcode as u8);
    let len = payload.len();
    if let Ok(short @ 0..=125) = u8::try_from(len) {
        buf.push(short);
    } else if let Ok(medium) = u16::try_from(len) {
        buf.push(126);
        buf.extend_from_slice(&medium.to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(len as u64).to_be_bytes()); // usize is at most 64 bits
    }
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// A complete client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The payload: a status code and a reason, or nothing.
    Close(Vec<u8>),
}

/// Reads client messages: requires masking (RFC 6455 5.1), reassembles fragments, and hands
/// back control frames that arrive between the fragments of a data message.
pub struct MessageReader {
    max_message: usize,
    partial: Option<(Opcode, Vec<u8>)>,
}

impl MessageReader {
    pub fn new(max_message: usize) -> MessageReader {
        MessageReader {
            max_message,
            partial: None,
        }
    }

    pub fn read(&mut self, r: &mut impl Read) -> io::Result<Message> {
        loop {
            let frame = read_frame(r, self.max_message)?;
            if !frame.masked {
                return Err(protocol_error("client frame is not masked"));
            }
            let (opcode, payload) = match (frame.opcode, self.partial.take()) {
                (Opcode::Ping, partial) => {
                    self.partial = partial;
                    return Ok(Message::Ping(frame.payload));
                }
                (Opcode::Pong, partial) => {
                    self.partial = partial;
                    return Ok(Message::Pong(frame.payload));
                }
                (Opcode::Close, _) => return Ok(Message::Close(frame.payload)),
                (Opcode::Continuation, None) => {
                    return Err(protocol_error("continuation frame outside a message"));
                }
                (Opcode::Continuation, Some((opcode, mut data))) => {
                    if data.len() + frame.payload.len() > self.max_message {
                        return Err(protocol_error(format!(
                            "message exceeds the limit of {} bytes",
                            self.max_message
                        )));
                    }
                    data.extend_from_slice(&frame.payload);
                    (opcode, data)
                }
                (opcode, None) => (opcode, frame.payload),
                (_, Some(_)) => return Err(protocol_error("new message inside a fragmented one")),
            };
            if !frame.fin {
                self.partial = Some((opcode, payload));
                continue;
            }
            return Ok(match opcode {
                Opcode::Text => Message::Text(payload),
                _ => Message::Binary(payload),
            });
        }
    }
}

/// Pipe ends from the container runtime for one exec.
pub struct ExecIo {
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    pub stdin: Option<File>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
    Unknown,
}

/// Runs one exec session on the calling thread, which owns the stream; two helper threads read
/// stdout and stderr. Output goes to channels 1 and 2 as it comes. The client is polled (see the
/// module docs) every 150 ms while stdin is open, so channel 0 reaches stdin and output follows
/// with little delay, and every 15 s after that, which answers kubectl's heartbeat. Stdin closes
/// when the client sends `[255, 0]` (v5) or the outputs end. Resize messages are ignored. Once
/// both outputs reach EOF, `exit` is awaited and its Status sent on channel 3, then a close frame,
/// then the client's close reply is awaited (closing with unread input makes the kernel reset the
/// connection, which can destroy the Status in flight).
///
/// On an error (including the client closing early) the caller should kill the process: the
/// output threads end only when its pipes close.
pub fn serve_exec<S: Read + Write>(
    mut stream: S,
    protocol: &str,
    io: ExecIo,
    exit: impl FnOnce() -> ExitStatus,
) -> io::Result<()> {
    // Unbounded on purpose: with a bound, writing stdin to a process blocked on a full stdout
    // pipe (`cat` with a large input) would deadlock.
    let (tx, rx) = mpsc::channel();
    for (channel, pipe) in [(STDOUT, io.stdout), (STDERR, io.stderr)] {
        if let Some(pipe) = pipe {
            let tx = tx.clone();
            thread::Builder::new()
                .name(format!("exec-out-{channel}"))
                .spawn(move || pump(channel, pipe, &tx))?;
        }
    }
    // The channel disconnects once every output thread is done: that is "outputs at EOF".
    drop(tx);

    let mut reader = MessageReader::new(MAX_MESSAGE);
    let mut stdin = io.stdin;
    let poll_interval = |stdin: &Option<File>| {
        if stdin.is_some() {
            STDIN_POLL
        } else {
            HEARTBEAT_POLL
        }
    };
    let mut next_poll = Instant::now() + poll_interval(&stdin);
    loop {
        if Instant::now() >= next_poll {
            poll_client(&mut stream, &mut reader, &mut stdin)?;
            next_poll = Instant::now() + poll_interval(&stdin);
        }
        match rx.recv_timeout(next_poll.saturating_duration_since(Instant::now())) {
            Ok(message) => write_frame(&mut stream, Opcode::Binary, &message)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    drop(stdin);
    log::debug!("exec over {protocol}: outputs closed, waiting for the exit status");

    finish(&mut stream, &mut reader, &exit_status_json(exit()))
}

/// A session whose command never started (no such container, not running,
/// no such executable): as the kubelet does, the upgrade succeeds and the
/// reason comes on the error channel. (Refusing the upgrade instead makes
/// kubectl retry over SPDY and print that refusal, not the reason.)
pub fn serve_failure<S: Read + Write>(mut stream: S, status: &Value) -> io::Result<()> {
    finish(&mut stream, &mut MessageReader::new(MAX_MESSAGE), status)
}

/// Sends the final Status on the error channel and closes.
fn finish<S: Read + Write>(
    stream: &mut S,
    reader: &mut MessageReader,
    status: &Value,
) -> io::Result<()> {
    let mut frame = vec![ERROR];
    frame.extend_from_slice(status.to_string().as_bytes());
    write_frame(stream, Opcode::Binary, &frame)?;
    write_frame(stream, Opcode::Close, &CLOSE_NORMAL.to_be_bytes())?;
    // Whatever the client sent meanwhile is moot; an error here means it is gone anyway.
    while let Ok(message) = reader.read(stream) {
        if let Message::Close(_) = message {
            break;
        }
    }
    Ok(())
}

/// Pings the client and handles what it sent until the pong comes back.
fn poll_client(
    stream: &mut (impl Read + Write),
    reader: &mut MessageReader,
    stdin: &mut Option<File>,
) -> io::Result<()> {
    write_frame(stream, Opcode::Ping, b"")?;
    loop {
        match reader.read(stream)? {
            Message::Pong(_) => return Ok(()),
            Message::Ping(payload) => write_frame(stream, Opcode::Pong, &payload)?,
            // The Python client sends stdin given as `str` in text frames; the API server takes
            // those like binary ones.
            Message::Binary(data) | Message::Text(data) => match data.split_first() {
                Some((&STDIN, input)) => {
                    // A process that closed its stdin gets no more input; that is not our error.
                    if stdin.as_mut().is_some_and(|s| s.write_all(input).is_err()) {
                        *stdin = None;
                    }
                }
                Some((&CLOSE_STREAM, [STDIN])) => *stdin = None,
                _ => log::debug!(
                    "exec: ignoring client message on channel {:?}",
                    data.first()
                ),
            },
            Message::Close(_) => {
                // Answering the close ends the connection cleanly; the process is the caller's.
                write_frame(stream, Opcode::Close, &CLOSE_NORMAL.to_be_bytes())?;
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the client closed the exec session",
                ));
            }
        }
    }
}

/// Copies one output pipe into messages that already carry their channel byte.
fn pump(channel: u8, mut pipe: File, tx: &mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; 32 * 1024];
    buf[0] = channel;
    loop {
        match pipe.read(&mut buf[1..]) {
            Ok(0) => return,
            Ok(n) => {
                if tx.send(buf[..=n].to_vec()).is_err() {
                    return; // the session ended
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("exec: reading channel {channel}: {e}");
                return;
            }
        }
    }
}

/// The Status the kubelet writes on the error channel. client-go's v4 error decoder reads the
/// exit code from the cause whose `reason` is `ExitCode`, parsed as a number from 0 to 255.
fn exit_status_json(status: ExitStatus) -> Value {
    let code = match status {
        ExitStatus::Code(code) => code,
        // Shells and CRI runtimes report death by signal N as 128 + N.
        ExitStatus::Signal(signal) => signal.saturating_add(128),
        ExitStatus::Unknown => -1,
    };
    match u8::try_from(code) {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(_) => json!({
            "metadata": {},
            "status": "Failure",
            "message": "error executing command in container: unknown exit status",
            "reason": "InternalError",
            "code": 500,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    /// A client frame, as kubectl would send it.
    fn masked(fin: bool, opcode: Opcode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut out = vec![
            u8::from(fin) << 7 | opcode as u8,
            0x80 | payload.len() as u8,
        ];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn pipe() -> (File, File) {
        let (r, w) = std::io::pipe().unwrap();
        (File::from(OwnedFd::from(r)), File::from(OwnedFd::from(w)))
    }

    #[test]
    fn handshake_rfc_example() {
        let h = handshake(
            "dGhlIHNhbXBsZSBub25jZQ==",
            "v4.channel.k8s.io, v5.channel.k8s.io",
        )
        .unwrap();
        assert_eq!(h.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h.protocol, "v5.channel.k8s.io", "our preference wins");
        assert_eq!(h.headers()[1].1, "v5.channel.k8s.io");
    }

    #[test]
    fn handshake_refusals() {
        assert!(handshake("dGhlIHNhbXBsZSBub25jZQ==", "SPDY/3.1+portforward.k8s.io").is_err());
        assert!(handshake("", "v5.channel.k8s.io").is_err());
        assert!(handshake("c2hvcnQ=", "v5.channel.k8s.io").is_err());
    }

    #[test]
    fn reads_rfc_masked_hello() {
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let frame = read_frame(&mut Cursor::new(wire), 125).unwrap();
        assert_eq!(
            frame,
            Frame {
                fin: true,
                opcode: Opcode::Text,
                masked: true,
                payload: b"Hello".to_vec()
            }
        );
    }

    #[test]
    fn writes_rfc_length_forms() {
        let mut out = Vec::new();
        write_frame(&mut out, Opcode::Text, b"Hello").unwrap();
        assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
        for (len, head) in [
            (256, vec![0x82, 0x7e, 0x01, 0x00]),
            (65536, vec![0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            write_frame(&mut out, Opcode::Binary, &vec![7; len]).unwrap();
            assert_eq!(out[..head.len()], head[..]);
            assert_eq!(out.len(), head.len() + len);
            let back = read_frame(&mut Cursor::new(out), len).unwrap();
            assert_eq!((back.masked, back.payload.len()), (false, len));
        }
    }

    #[test]
    fn enforces_limits_and_masking() {
        let mut big = Vec::new();
        write_frame(&mut big, Opcode::Binary, &[0; 300]).unwrap();
        assert!(read_frame(&mut Cursor::new(&big), 299).is_err());
        let unmasked = [0x82, 0x01, 0x00];
        assert!(
            MessageReader::new(10)
                .read(&mut Cursor::new(unmasked))
                .is_err()
        );
        let long_ping = [0x89, 0x7e, 0x00, 0x80];
        assert!(read_frame(&mut Cursor::new(long_ping), 1000).is_err());
    }

    #[test]
    fn reassembles_fragments_around_a_ping() {
        let mask = [1, 2, 3, 4];
        let mut wire = masked(false, Opcode::Text, b"Hel", mask);
        wire.extend(masked(true, Opcode::Ping, b"hb", mask));
        wire.extend(masked(true, Opcode::Continuation, b"lo", mask));
        let mut r = Cursor::new(wire);
        let mut reader = MessageReader::new(100);
        assert_eq!(reader.read(&mut r).unwrap(), Message::Ping(b"hb".to_vec()));
        assert_eq!(
            reader.read(&mut r).unwrap(),
            Message::Text(b"Hello".to_vec())
        );
        assert_eq!(
            reader.read(&mut r).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let mut too_long = Cursor::new(
            [
                masked(false, Opcode::Binary, &[0; 60], mask),
                masked(true, Opcode::Continuation, &[0; 60], mask),
            ]
            .concat(),
        );
        assert!(MessageReader::new(100).read(&mut too_long).is_err());
    }

    #[test]
    fn status_shapes() {
        assert_eq!(
            exit_status_json(ExitStatus::Code(0)).to_string(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let killed = exit_status_json(ExitStatus::Signal(9));
        assert_eq!(killed["details"]["causes"][0]["message"], "137");
        assert_eq!(
            exit_status_json(ExitStatus::Unknown)["reason"],
            "InternalError"
        );
    }

    /// Reads the next server frame other than a ping, answering pings as kubectl does.
    fn next(client: &mut UnixStream) -> (Opcode, Vec<u8>) {
        loop {
            let frame = read_frame(client, MAX_MESSAGE).unwrap();
            assert!(!frame.masked && frame.fin);
            if frame.opcode != Opcode::Ping {
                return (frame.opcode, frame.payload);
            }
            // The server may have hung up already; its next frame is what the test checks.
            let _ = client.write_all(&masked(true, Opcode::Pong, &frame.payload, [1, 1, 1, 1]));
        }
    }

    #[test]
    fn exec_streams_output_then_exit_code() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let (out_r, mut out_w) = pipe();
        let (err_r, mut err_w) = pipe();
        let io = ExecIo {
            stdout: Some(out_r),
            stderr: Some(err_r),
            stdin: None,
        };
        let session =
            thread::spawn(move || serve_exec(server, PROTOCOLS[0], io, || ExitStatus::Code(3)));

        out_w.write_all(b"hello\n").unwrap();
        drop(out_w);
        assert_eq!(next(&mut client), (Opcode::Binary, b"\x01hello\n".to_vec()));
        err_w.write_all(b"err\n").unwrap();
        drop(err_w);
        assert_eq!(next(&mut client), (Opcode::Binary, b"\x02err\n".to_vec()));

        let (opcode, status) = next(&mut client);
        assert_eq!((opcode, status[0]), (Opcode::Binary, ERROR));
        let status: Value = serde_json::from_slice(&status[1..]).unwrap();
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(
            status["details"]["causes"],
            json!([{"reason": "ExitCode", "message": "3"}])
        );
        assert_eq!(next(&mut client), (Opcode::Close, vec![0x03, 0xe8]));

        client
            .write_all(&masked(true, Opcode::Close, &[0x03, 0xe8], [9, 8, 7, 6]))
            .unwrap();
        session.join().unwrap().unwrap();
    }

    #[test]
    fn exec_v5_feeds_stdin_until_closed() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let (in_r, in_w) = pipe();
        let (out_r, out_w) = pipe();
        let io = ExecIo {
            stdout: Some(out_r),
            stderr: None,
            stdin: Some(in_w),
        };
        let session =
            thread::spawn(move || serve_exec(server, PROTOCOLS[0], io, || ExitStatus::Code(0)));
        // The "process": copies stdin to stdout until EOF, like `cat`.
        let cat = thread::spawn(move || {
            let (mut in_r, mut out_w) = (in_r, out_w);
            std::io::copy(&mut in_r, &mut out_w).unwrap();
        });

        let mask = [0xa, 0xb, 0xc, 0xd];
        // Ping first: output may follow any client message, and this keeps the order fixed.
        client
            .write_all(&masked(true, Opcode::Ping, b"hb", mask))
            .unwrap();
        assert_eq!(next(&mut client), (Opcode::Pong, b"hb".to_vec()));
        client
            .write_all(&masked(true, Opcode::Binary, b"\x00abc", mask))
            .unwrap();
        client
            .write_all(&masked(true, Opcode::Binary, &[CLOSE_STREAM, STDIN], mask))
            .unwrap();

        assert_eq!(next(&mut client), (Opcode::Binary, b"\x01abc".to_vec()));
        let (_, status) = next(&mut client);
        assert_eq!(&status[1..], br#"{"metadata":{},"status":"Success"}"#);
        assert_eq!(next(&mut client).0, Opcode::Close);
        client
            .write_all(&masked(true, Opcode::Close, &[], mask))
            .unwrap();
        session.join().unwrap().unwrap();
        cat.join().unwrap();
    }

    #[test]
    fn exec_client_close_ends_session() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let (_in_r, in_w) = pipe();
        let (out_r, _out_w) = pipe();
        let io = ExecIo {
            stdout: Some(out_r),
            stderr: None,
            stdin: Some(in_w),
        };
        let session =
            thread::spawn(move || serve_exec(server, PROTOCOLS[1], io, || ExitStatus::Unknown));
        client
            .write_all(&masked(true, Opcode::Close, &[0x03, 0xe8], [5, 6, 7, 8]))
            .unwrap();
        assert_eq!(next(&mut client).0, Opcode::Close);
        let err = session.join().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    }
}
