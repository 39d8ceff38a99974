//! Debian's real `docker-registry` (distribution 2.8) on a loopback port,
//! with optional htpasswd or token auth, plus a token server issuing RS256
//! JWTs with an x5c header, and a proxy that cuts or corrupts a download.
//! All traffic stays on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::fixtures::{Fixture, require, run};
use super::{TempDir, free_port};

pub const USER: &str = "bramble";
pub const PASSWORD: &str = "s3cret";

pub enum Auth {
    Anonymous,
    /// htpasswd with [`USER`]/[`PASSWORD`]: `Www-Authenticate: Basic`.
    Basic,
    /// Bearer tokens from a token server that wants [`USER`]/[`PASSWORD`].
    Token,
}

pub struct Registry {
    /// `127.0.0.1:PORT`, the registry part of references.
    pub host: String,
    child: Child,
    token: Option<TokenServer>,
    _dir: TempDir,
}

impl Registry {
    /// `None` (test skipped) when docker-registry or a helper tool is missing.
    pub fn start(auth: Auth) -> Option<Registry> {
        require(&["docker-registry", "skopeo"])?;
        let dir = TempDir::new("registry");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let (auth_yaml, token) = match auth {
            Auth::Anonymous => (String::new(), None),
            Auth::Basic => {
                require(&["htpasswd"])?;
                let htpasswd = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
                let file = dir.0.join("htpasswd");
                std::fs::write(&file, htpasswd).expect("write htpasswd");
                (
                    format!(
                        "auth: {{htpasswd: {{realm: bramble-test, path: {}}}}}\n",
                        file.display()
                    ),
                    None,
                )
            }
            Auth::Token => {
                require(&["openssl"])?;
                let server = TokenServer::start(&dir.0);
                let yaml = format!(
                    "auth: {{token: {{realm: 'http://{}/token', service: bramble-registry, issuer: bramble-test, rootcertbundle: {}}}}}\n",
                    server.addr,
                    server.cert.display()
                );
                (yaml, Some(server))
            }
        };
        let config = dir.0.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: '{host}'}}\n{auth_yaml}",
                dir.0.join("data").display()
            ),
        )
        .expect("write registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Registry {
            host,
            child,
            token,
            _dir: dir,
        };
        registry.wait_ready();
        Some(registry)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(&self.host) {
                let _ = write!(s, "GET /v2/ HTTP/1.0\r\n\r\n");
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("HTTP/") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "docker-registry did not answer on {} within 10 s",
            self.host
        );
    }

    /// Pushes a fixture as `repo_tag` (e.g. `busybox:1`) with skopeo; returns
    /// the full reference `127.0.0.1:PORT/busybox:1`.
    pub fn push(&self, fx: &Fixture, repo_tag: &str) -> String {
        self.push_layout(&fx.layout, &fx.layout_ref, repo_tag, fx.multi_arch, &[])
    }

    /// Pushes `oci:LAYOUT:REF`, with extra skopeo flags (e.g. compression).
    pub fn push_layout(
        &self,
        layout: &Path,
        layout_ref: &str,
        repo_tag: &str,
        all: bool,
        extra: &[&str],
    ) -> String {
        let reference = format!("{}/{repo_tag}", self.host);
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "-q", "--dest-tls-verify=false"])
            .args(extra);
        if all {
            cmd.arg("--all");
        }
        if self.token.is_some() || self.needs_creds() {
            cmd.args(["--dest-creds", &format!("{USER}:{PASSWORD}")]);
        }
        run(cmd
            .arg(format!("oci:{}:{layout_ref}", layout.display()))
            .arg(format!("docker://{reference}")));
        reference
    }

    fn needs_creds(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(&self.host) else {
            return false;
        };
        let _ = write!(s, "GET /v2/ HTTP/1.0\r\n\r\n");
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).is_ok() && line.contains(" 401 ")
    }

    /// The scopes the token server granted, in order.
    pub fn token_scopes(&self) -> Vec<String> {
        self.token
            .as_ref()
            .map(|t| t.scopes.lock().expect("scopes").clone())
            .unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issues JWTs the way Docker's token servers do, to clients that present
/// [`USER`]/[`PASSWORD`] with Basic auth.
struct TokenServer {
    addr: String,
    cert: std::path::PathBuf,
    scopes: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    fn start(dir: &Path) -> TokenServer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        // Our own config: `openssl req` must not depend on the machine's openssl.cnf.
        let config = dir.join("openssl.cnf");
        std::fs::write(&config, "[req]\ndistinguished_name = dn\n[dn]\n")
            .expect("write openssl.cnf");
        run(Command::new("openssl")
            .arg("req")
            .arg("-config")
            .arg(&config)
            .args([
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=bramble-test-token",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .expect("openssl x509");
        let x5c = STANDARD.encode(der.stdout);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let addr = listener.local_addr().expect("addr").to_string();
        let scopes = Arc::new(Mutex::new(Vec::new()));
        let seen = scopes.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer_token(stream, &key, &x5c, &seen);
            }
        });
        TokenServer { addr, cert, scopes }
    }
}

fn answer_token(
    mut stream: TcpStream,
    key: &Path,
    x5c: &str,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let head = read_head(&mut stream)?;
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_string();
    let expected = format!("basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let authorised = head.lines().any(|l| {
        l.to_ascii_lowercase().trim() == format!("authorization: {expected}").to_ascii_lowercase()
    });
    if !authorised {
        return write!(
            stream,
            "HTTP/1.0 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
        );
    }
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut service = String::new();
    let mut access = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "service" => service = v,
            "scope" => {
                seen.lock().expect("scopes").push(v.clone());
                // repository:NAME:ACTIONS
                let mut parts = v.splitn(3, ':');
                let (kind, name, actions) = (
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or(""),
                );
                access.push(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}));
            }
            _ => {}
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({"iss": "bramble-test", "sub": USER, "aud": service, "exp": now + 600,
        "nbf": now - 60, "iat": now, "jti": format!("{now}-{}", access.len()), "access": access});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sign = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    sign.stdin
        .take()
        .expect("stdin")
        .write_all(signing_input.as_bytes())?;
    let signature = sign.wait_with_output()?.stdout;
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 600}).to_string();
    write!(
        stream,
        "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// What the proxy does to the first response whose path contains `target`.
#[derive(Clone)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Close the connection after this many body bytes.
    CutAfter { target: String, bytes: usize },
    /// Flip one byte in the body.
    Corrupt { target: String },
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub accept: Option<String>,
}

/// A one-request-per-connection HTTP proxy in front of a registry; use its
/// `host` in references instead of the registry's.
pub struct Proxy {
    pub host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    pub fn start(upstream: &str, fault: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let host = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let upstream = upstream.to_string();
        let fault = Arc::new(Mutex::new(fault));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, log, fault) = (upstream.clone(), log.clone(), fault.clone());
                std::thread::spawn(move || {
                    let _ = relay(client, &upstream, &log, &fault);
                });
            }
        });
        Proxy { host, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

fn relay(
    mut client: TcpStream,
    upstream: &str,
    log: &Mutex<Vec<Seen>>,
    fault: &Mutex<Fault>,
) -> std::io::Result<()> {
    let head = read_head(&mut client)?;
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or("").to_string();
    let mut parts = request_line.split(' ');
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        })
    };
    log.lock().expect("log").push(Seen {
        method,
        path: path.clone(),
        range: header("range"),
        accept: header("accept"),
    });
    // One request per connection keeps the relay simple.
    let mut forwarded = format!("{request_line}\r\n");
    for l in head
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
    {
        forwarded.push_str(l);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(forwarded.as_bytes())?;
    let action = {
        let mut f = fault.lock().expect("fault");
        match &*f {
            Fault::CutAfter { target, .. } | Fault::Corrupt { target }
                if path.contains(target.as_str()) =>
            {
                std::mem::replace(&mut *f, Fault::None)
            }
            _ => Fault::None,
        }
    };
    let response_head = read_head(&mut server)?;
    client.write_all(response_head.as_bytes())?;
    let mut sent = 0usize;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = server.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &mut buf[..n];
        match &action {
            Fault::CutAfter { bytes, .. } if sent + n >= *bytes => {
                client.write_all(&chunk[..bytes - sent])?;
                client.flush()?;
                return client.shutdown(Shutdown::Both);
            }
            Fault::Corrupt { .. } if sent == 0 => chunk[n / 2] ^= 0xff,
            _ => {}
        }
        client.write_all(chunk)?;
        sent += n;
    }
    Ok(())
}
