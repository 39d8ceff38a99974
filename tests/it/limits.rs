//! Limits with clear errors: a namespace holds at most the board's number of
//! objects, an image over the board's size is refused, a request body over
//! 3 MiB is refused, watches past the board's number get 429, a container's
//! log is rotated at the board's size, connections past the board's number
//! get 503, idle ones are closed, running out of file descriptors only
//! pauses the API; the daemon keeps serving and loses nothing.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::support::{Server, TempDir, missing, server_with_busybox_and, wait_for};

fn board(dir: &TempDir, text: &str) -> String {
    let path = dir.0.join("board.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn config_map(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{n: \"{name}\"}}\n"
    )
}

#[test]
fn a_namespace_holds_at_most_the_boards_number_of_objects() {
    let dir = TempDir::new("limits-ns");
    let s = Server::start_with(&[
        "--config",
        &board(&dir, "[limits]\nobjects_per_namespace = 100\n"),
    ]);
    let mut refused = None;
    for i in 0..110 {
        let out = s.kubectl_stdin(&["create", "-f", "-"], &config_map(&format!("cm-{i}")));
        if !out.status.success() {
            refused = Some((i, String::from_utf8_lossy(&out.stderr).into_owned()));
            break;
        }
    }
    let (at, err) = refused.expect("the 101st object of a namespace is refused");
    assert!(
        err.contains("namespace default already holds 100 objects")
            && err.contains("[limits] objects_per_namespace"),
        "{err}"
    );
    // Every object acknowledged before is there; another namespace is not full.
    let listed: Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "configmaps", "-o", "json"])).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), at);
    s.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n");
    let out = s.kubectl_stdin(&["create", "-n", "other", "-f", "-"], &config_map("fits"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Deleting makes room again.
    s.kubectl_ok(&["delete", "configmap", "cm-0"]);
    let out = s.kubectl_stdin(&["create", "-f", "-"], &config_map("again"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_image_over_the_boards_size_is_refused() {
    let Some(fx) = crate::support::fixtures::busybox_image() else {
        return;
    };
    let dir = TempDir::new("limits-image");
    let s = Server::start_with(&[
        "--config",
        &board(&dir, "[limits]\nmax_image_size = \"64Ki\"\n"),
    ]);
    let import = s.data_dir().join("images/import");
    std::fs::create_dir_all(&import).unwrap();
    std::fs::copy(&fx.oci_archive, import.join("busybox.tar")).unwrap();
    wait_for(30, "the refusal in the log", || {
        s.log()
            .contains("over this board's limit of 65536 bytes ([limits] max_image_size")
            .then_some(())
    });
    let images = std::process::Command::new(crate::support::bramble())
        .args(["image", "ls", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&images.stdout);
    assert!(!listed.contains("busybox"), "{listed}");
    // Still serving.
    s.kubectl_ok(&["get", "nodes"]);
}

/// A ConfigMap manifest of about `bytes` bytes.
fn big_config_map(name: &str, bytes: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{big: \"{}\"}}\n",
        "x".repeat(bytes)
    )
}

#[test]
fn a_request_body_over_3_mib_is_refused_and_nothing_is_stored() {
    if missing("kubectl") || missing("curl") {
        return;
    }
    let s = Server::start();
    let out = s.kubectl_stdin(&["create", "-f", "-"], &big_config_map("big", 4 << 20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("RequestEntityTooLarge")
            && err.contains("the request body is larger than 3145728 bytes"),
        "{err}"
    );
    // The same without a Content-Length: the body is read up to the limit only.
    let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "chunked"}, "data": {"big": "x".repeat(4 << 20)}})
    .to_string();
    let mut curl = Command::new("curl")
        .args(["-s", "-X", "POST", "--cacert"])
        .arg(s.data_dir().join("tls/ca.crt"))
        .args(["-H", &format!("Authorization: Bearer {}", s.token)])
        .args(["-H", "Content-Type: application/json"])
        .args(["-H", "Transfer-Encoding: chunked", "--data-binary", "@-"])
        .arg(format!("{}/api/v1/namespaces/default/configmaps", s.url()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The server may answer before it has all of it: a failed write is fine.
    let _ = curl.stdin.take().unwrap().write_all(body.as_bytes());
    let out = curl.wait_with_output().unwrap();
    let status: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        (&status["kind"], &status["code"], &status["reason"]),
        (
            &Value::from("Status"),
            &Value::from(413),
            &Value::from("RequestEntityTooLarge")
        ),
        "{status}"
    );
    // Still serving; nothing was stored; a body under the limit is taken.
    let listed = s.kubectl_ok(&["get", "configmaps", "-o", "name"]);
    assert!(
        !listed.contains("big") && !listed.contains("chunked"),
        "{listed}"
    );
    s.kubectl_stdin(&["create", "-f", "-"], &big_config_map("fits", 512 << 10));
    let got = s.kubectl_ok(&["get", "configmap", "fits", "-o", "jsonpath={.data.big}"]);
    assert_eq!(got.len(), 512 << 10);
}

/// `curl -Ni` on a watch URL; its lines (headers first) arrive on a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn open(s: &Server, path: &str) -> Watch {
        let mut child = Command::new("curl")
            .args(["-sNi", "--cacert"])
            .arg(s.data_dir().join("tls/ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {}", s.token)])
            .arg(format!("{}{path}", s.url()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    /// Waits for a line containing `what`; returns it.
    fn expect(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return l,
                Ok(_) => {}
                Err(e) => panic!("no line with {what:?} on the watch: {e}"),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watches_past_the_boards_limit_get_429_and_the_others_keep_going() {
    if missing("kubectl") || missing("curl") {
        return;
    }
    let dir = TempDir::new("limits-watch");
    let s = Server::start_with(&["--config", &board(&dir, "[limits]\nmax_watches = 4\n")]);
    const WATCH: &str = "/api/v1/namespaces/default/configmaps?watch=1";
    // Each watch starts with this object, which shows it is open (curl
    // writes the headers out with the first body bytes).
    s.kubectl_stdin(&["create", "-f", "-"], &config_map("first"));
    let mut watches: Vec<Watch> = (0..4)
        .map(|_| {
            let w = Watch::open(&s, WATCH);
            w.expect("HTTP/1.1 200");
            w
        })
        .collect();
    let (code, status) = s.request("GET", WATCH, None, b"");
    assert_eq!(
        (code, &status["code"]),
        (429, &Value::from(429)),
        "{status}"
    );
    let message = status["message"].as_str().unwrap();
    assert!(
        status["reason"] == "TooManyRequests"
            && message.contains("allows 4 at once")
            && message.contains("[limits] max_watches"),
        "{status}"
    );
    // Plain requests are not limited, and the open watches see the change.
    s.kubectl_stdin(&["create", "-f", "-"], &config_map("seen"));
    for w in &watches {
        w.expect("\"name\":\"seen\"");
    }
    // A closed watch gives its place up, though nothing is written to it.
    drop(watches.pop());
    let accepted = wait_for(20, "a watch accepted after one closed", || {
        let w = Watch::open(&s, WATCH);
        let status = w.expect("HTTP/1.1 ");
        status.contains(" 200").then_some(w)
    });
    s.kubectl_stdin(&["create", "-f", "-"], &config_map("after"));
    for w in watches.iter().chain([&accepted]) {
        w.expect("\"name\":\"after\"");
    }
}

#[test]
fn a_containers_log_is_rotated_at_the_boards_size() {
    let dir = TempDir::new("limits-logs");
    let config = board(&dir, "[logs]\nmax_size = \"4Ki\"\nmax_files = 2\n");
    let Some((s, image)) = server_with_busybox_and(&["--config", &config]) else {
        return;
    };
    // About 24 KB of output, 250 KB as CRI records.
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: chatty}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: app, image: {image}, imagePullPolicy: Never, command: [sh, -c, 'i=0; while [ $i -lt 5000 ]; do i=$((i+1)); echo $i; done']}}\n"
    ));
    let pod = s.wait_phase("chatty", "Succeeded", 60);
    let logs = s.kubectl_ok(&["logs", "chatty"]);
    // The newest lines, without a gap, up to the last; the oldest are gone.
    let numbers: Vec<u32> = logs.lines().map(|l| l.parse().unwrap()).collect();
    let first = numbers[0];
    assert!(
        first > 1 && logs.len() <= 2 * 4096,
        "{} bytes: {logs}",
        logs.len()
    );
    assert_eq!(numbers, (first..=5000).collect::<Vec<_>>());
    // On disk: at most max_files files of at most max_size each.
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let log = bramble::kubelet::log_path(&s.data_dir(), uid, "app", 0);
    let files: Vec<(String, u64)> = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    assert!(
        files.len() <= 2 && files.iter().all(|(_, len)| *len <= 4096),
        "{files:?}"
    );
}

/// `n` plain TCP connections to the API port that never say a word (no TLS).
fn idle_connections(s: &Server, n: usize) -> Vec<TcpStream> {
    let addr = s.url().trim_start_matches("https://").to_string();
    (0..n).map(|_| TcpStream::connect(&addr).unwrap()).collect()
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to the API that trusts the server's CA.
fn tls_connection(s: &Server) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(s.data_dir().join("tls/ca.crt")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls =
        rustls::ClientConnection::new(Arc::new(config), "127.0.0.1".try_into().unwrap()).unwrap();
    let sock = idle_connections(s, 1).pop().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    rustls::StreamOwned::new(tls, sock)
}

/// A connection that made one request (kept alive) and now sits idle.
fn kept_alive(s: &Server) -> Tls {
    let mut c = tls_connection(s);
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // The reply is a short head and "ok".
    while !got.ends_with(b"\r\n\r\nok") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    c
}

/// Waits (at most 30 s) for the server to close `r`'s connection; panics if
/// it stays open. Whatever the server sent before is discarded.
fn closed_by_server(mut r: impl Read, what: &str) {
    let mut buf = [0u8; 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server left {what} open: {e}")
            }
            // A reset or a TLS error: closed too.
            Err(_) => return,
        }
    }
}

#[test]
fn connections_past_the_boards_limit_get_a_clear_error_and_the_limit_frees_up() {
    if missing("kubectl") || missing("curl") {
        return;
    }
    let dir = TempDir::new("limits-conn");
    let s = Server::start_with(&["--config", &board(&dir, "[limits]\nmax_connections = 8\n")]);
    // Discovery answers errors without their text; once it is cached,
    // kubectl shows the server's message.
    s.kubectl_ok(&["get", "configmaps"]);
    // Kept-alive connections stay open for a minute when idle.
    let idle: Vec<Tls> = (0..8).map(|_| kept_alive(&s)).collect();
    let (code, status) = s.request("GET", "/api/v1/namespaces/default/configmaps", None, b"");
    assert_eq!(
        (code, &status["code"], &status["reason"]),
        (503, &Value::from(503), &Value::from("ServiceUnavailable")),
        "{status}"
    );
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("too many open connections: this board allows 8 at once")
            && message.contains("[limits] max_connections"),
        "{status}"
    );
    // It says when to try again, in the Status and in the headers.
    assert_eq!(status["details"]["retryAfterSeconds"], 1, "{status}");
    let head = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-D", "-", "--cacert"])
        .arg(s.data_dir().join("tls/ca.crt"))
        .arg(format!("https://127.0.0.1:{}/version", s.port))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
    // kubectl does: connections closed meanwhile give their places up, and
    // it gets its answer instead of an error.
    let closing = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        drop(idle);
    });
    let out = s.kubectl(&["get", "configmaps", "-v=6"]);
    closing.join().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("503 Service Unavailable"),
        "refused first: {log}"
    );
    serves_again(&s, 20);
}

#[test]
fn idle_and_half_sent_connections_are_closed_and_others_are_served_meanwhile() {
    if missing("kubectl") {
        return;
    }
    let s = Server::start();
    // One says nothing (not even a TLS hello), one stops in its request head.
    let silent = idle_connections(&s, 1).pop().unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut partial = tls_connection(&s);
    partial
        .write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: appl")
        .unwrap();
    partial.flush().unwrap();
    // Meanwhile others are served.
    s.kubectl_stdin(&["create", "-f", "-"], &config_map("served"));
    s.kubectl_ok(&["get", "configmap", "served"]);
    // The server gives each 10 s, then closes it.
    closed_by_server(silent, "a connection that sent nothing");
    closed_by_server(partial, "a connection that sent half a request head");
    s.kubectl_ok(&["get", "configmap", "served"]);
}

#[test]
fn running_out_of_file_descriptors_does_not_stop_the_api_for_good() {
    if missing("kubectl") || missing("prlimit") {
        return;
    }
    let s = Server::start();
    s.kubectl_ok(&["get", "configmaps"]);
    // Leave the daemon a few descriptors more than it uses now, then open
    // more connections than that: accepting fails with EMFILE meanwhile.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
        .unwrap()
        .count();
    let limit = fds + 8;
    let out = Command::new("prlimit")
        .arg(format!("--nofile={limit}:{limit}"))
        .arg(format!("--pid={}", s.pid()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let idle = idle_connections(&s, 20);
    wait_for(20, "EMFILE in the log", || {
        s.log()
            .contains("accepting an API connection: Too many open files")
            .then_some(())
    });
    // Once they are gone the API serves again.
    drop(idle);
    serves_again(&s, 30);
}

/// After the connections holding it up are gone, kubectl is served again
/// (within `secs`) and a create is stored.
fn serves_again(s: &Server, secs: u64) {
    wait_for(secs, "kubectl served again", || {
        s.kubectl(&["get", "configmaps"])
            .status
            .success()
            .then_some(())
    });
    s.kubectl_stdin(&["create", "-f", "-"], &config_map("after"));
    s.kubectl_ok(&["get", "configmap", "after"]);
}
