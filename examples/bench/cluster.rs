//! Federation: the server with 100 simulated boards (threads speaking the
//! cluster protocol over mutual TLS, as `bramble agent` does, without
//! kubelets) and 11,000 pods bound to them: the server's memory, and the
//! bytes an idle board's link moves per minute.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bramble::cluster::join::Identity;
use bramble::cluster::protocol::{self, Message};
use bramble::cluster::tls::{self, Token};

use super::{Daemon, proc_field};

const BOARDS: usize = 100;
const PODS_PER_BOARD: usize = 110;
const HEARTBEAT: Duration = Duration::from_secs(10);

/// A socket that counts the bytes it moves both ways.
struct Counted {
    tcp: TcpStream,
    bytes: Arc<AtomicU64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tcp.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.tcp.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

type Stream = rustls::StreamOwned<rustls::ClientConnection, Counted>;

fn send(s: &mut Stream, msg: &Message) {
    s.write_all(&protocol::encode(msg).unwrap()).unwrap();
    s.flush().unwrap();
}

/// The next message, or None when the read timed out.
fn recv(s: &mut Stream, buf: &mut Vec<u8>) -> Option<Message> {
    loop {
        if let Some(m) = protocol::decode(buf).unwrap() {
            return Some(m);
        }
        let mut chunk = [0u8; 16384];
        match s.read(&mut chunk) {
            Ok(0) => panic!("the server closed a board's link"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(e) => panic!("a board's link: {e}"),
        }
    }
}

fn connect(
    addr: &str,
    token: &Token,
    identity: Option<&Identity>,
    bytes: Arc<AtomicU64>,
) -> Stream {
    let id = identity.map(|i| {
        (
            tls::certs_from_pem(&i.cert_pem).unwrap(),
            tls::key_from_pem(&i.key_pem).unwrap(),
        )
    });
    let cfg = tls::client_config(&token.ca_hash, id).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    let conn = rustls::ClientConnection::new(cfg, tls::server_name()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, Counted { tcp, bytes });
    // The handshake waits as long as it takes; reads after it poll.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s.sock
        .tcp
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// One simulated board: joins, connects, reads what it is sent and beats
/// every 10 s until `stop`.
fn board(
    addr: String,
    token: Token,
    name: String,
    bytes: Arc<AtomicU64>,
    synced: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let (key, public_key) = Identity::new_key().unwrap();
    let mut s = connect(&addr, &token, None, Arc::default());
    let mut buf = Vec::new();
    send(
        &mut s,
        &Message::Hello {
            version: protocol::VERSION,
            node: name.clone(),
        },
    );
    send(
        &mut s,
        &Message::Join {
            secret: token.secret.clone(),
            public_key,
        },
    );
    let certificate = loop {
        match recv(&mut s, &mut buf) {
            Some(Message::Joined { certificate }) => break certificate,
            Some(other) => panic!("joining: {other:?}"),
            None => {}
        }
    };
    let identity = Identity {
        key_pem: key.serialize_pem(),
        cert_pem: certificate,
    };
    let mut s = connect(&addr, &token, Some(&identity), bytes);
    buf.clear();
    send(
        &mut s,
        &Message::Hello {
            version: protocol::VERSION,
            node: name,
        },
    );
    let mut beat = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(Message::SyncEnd) = recv(&mut s, &mut buf) {
            synced.fetch_add(1, Ordering::Relaxed);
        }
        if beat.elapsed() >= HEARTBEAT {
            send(&mut s, &Message::Heartbeat);
            beat = Instant::now();
        }
    }
}

pub fn run() {
    println!(
        "## Cluster: {BOARDS} simulated boards, {} pods\n",
        BOARDS * PODS_PER_BOARD
    );
    let cluster_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{cluster_port}");
    let (d, _) = Daemon::start_with("cluster", &["--cluster-listen", &addr]);
    d.cordon();
    let token: Token = d.join_token().parse().unwrap();
    let rss_before = proc_field(d.pid(), "status", "VmRSS");
    let (bytes, synced, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let threads: Vec<_> = (0..BOARDS)
        .map(|i| {
            let (addr, token) = (addr.clone(), token.clone());
            let (bytes, synced, stop) = (bytes.clone(), synced.clone(), stop.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || board(addr, token, format!("sim-{i}"), bytes, synced, stop))
                .unwrap()
        })
        .collect();
    while synced.load(Ordering::Relaxed) < BOARDS as u64 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_boards = proc_field(d.pid(), "status", "VmRSS");
    let t0 = Instant::now();
    let names: Vec<(String, String)> = (0..BOARDS * PODS_PER_BOARD)
        .map(|k| (format!("p{k}"), format!("sim-{}", k % BOARDS)))
        .collect();
    for chunk in names.chunks(500) {
        d.create_pods_on(chunk);
    }
    let created = t0.elapsed();
    // Let the boards receive their pods, then measure an idle minute.
    std::thread::sleep(Duration::from_secs(5));
    let rss_pods = proc_field(d.pid(), "status", "VmRSS");
    let idle = std::env::var("BENCH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60u64);
    let before = bytes.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(idle));
    let per_board_minute =
        (bytes.load(Ordering::Relaxed) - before) as f64 / BOARDS as f64 * 60.0 / idle as f64;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!("| figure | value | method |");
    println!("|---|---|---|");
    println!(
        "| server RSS, no boards | {} KiB | VmRSS after start |",
        rss_before
    );
    println!(
        "| server RSS, {BOARDS} boards connected | {} KiB | VmRSS once every board has its full set |",
        rss_boards
    );
    println!(
        "| server RSS, {BOARDS} boards and {} pods | {} KiB (target <= 65536) | VmRSS 5 s after the last pod was created |",
        BOARDS * PODS_PER_BOARD,
        rss_pods
    );
    println!(
        "| creating {} pods bound to boards | {:.1} s | curl, 500 requests per connection |",
        BOARDS * PODS_PER_BOARD,
        created.as_secs_f64()
    );
    println!(
        "| link bytes per idle board per minute | {per_board_minute:.0} B (target <= 2048) | TLS bytes both ways at the socket over {idle} s, heartbeat every 10 s; TCP/IP headers not counted |\n"
    );
}
