//! Container probes (liveness, readiness, startup) with the kubelet's semantics.
//!
//! Pure parts: [`Spec`] (a probe's JSON), [`Tracker`] (one probe's thresholds and schedule) and
//! [`Probes`] (one container's probes, with the startup probe gating the others). Blocking
//! parts: [`run_network`] runs an HTTP or TCP probe inside the pod's network namespace; exec
//! probes run through the runtime and [`exec_outcome`] words their result.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use serde_json::Value;

/// The kubelet's User-Agent for HTTP probes: kube-probe/<major>.<minor>.
const USER_AGENT: &str = "kube-probe/1.37";
/// Exec output kept for the event, as the kubelet's 10 KiB limit.
const MAX_EXEC_OUTPUT: usize = 10 * 1024;
/// Longest status line read from an HTTP probe.
const MAX_STATUS_LINE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// The container field holding this probe.
    pub fn field(self) -> &'static str {
        match self {
            Kind::Liveness => "livenessProbe",
            Kind::Readiness => "readinessProbe",
            Kind::Startup => "startupProbe",
        }
    }

    /// The message of the `Unhealthy` event for a failed run:
    /// `Liveness probe failed: HTTP probe failed with statuscode: 500`.
    pub fn failure_message(self, detail: &str) -> String {
        format!("{self} probe failed: {detail}")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// A probe's action with its port resolved, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Exec(Vec<String>),
    Http {
        scheme: Scheme,
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<String>,
        port: u16,
    },
}

/// The action as written in the spec: a named port resolves only against the container.
#[derive(Debug, Clone, PartialEq)]
enum Handler {
    Exec(Vec<String>),
    Http {
        scheme: Scheme,
        host: Option<String>,
        port: Value,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<String>,
        port: Value,
    },
}

/// One probe of a container, with Kubernetes' defaults for missing or zero fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    handler: Handler,
}

impl Spec {
    pub fn parse(probe: &Value) -> Result<Spec, String> {
        // Zero means unset, as in the API's defaulting.
        let number = |key: &str, default: u32| match probe.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(0) => Ok(default),
                Some(n) => Ok(n),
                None => Err(format!("{key}: must be a non-negative integer, not {v}")),
            },
        };
        let seconds =
            |key: &str, default: u32| number(key, default).map(|s| Duration::from_secs(s.into()));
        let handlers: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc"]
            .into_iter()
            .filter(|key| probe.get(key).is_some_and(|v| !v.is_null()))
            .collect();
        let handler = match handlers[..] {
            ["exec"] => Handler::Exec(command(&probe["exec"])?),
            ["httpGet"] => http_handler(&probe["httpGet"])?,
            ["tcpSocket"] => {
                let tcp = &probe["tcpSocket"];
                Handler::Tcp {
                    host: host(tcp),
                    port: port_ref(tcp)?,
                }
            }
            ["grpc"] => return Err("grpc probes are not supported".into()),
            [] => return Err("must specify a handler type: exec, httpGet or tcpSocket".into()),
            _ => {
                return Err(format!(
                    "may not specify more than 1 handler type: {}",
                    handlers.join(", ")
                ));
            }
        };
        Ok(Spec {
            initial_delay: seconds("initialDelaySeconds", 0)?,
            period: seconds("periodSeconds", 10)?,
            timeout: seconds("timeoutSeconds", 1)?,
            success_threshold: number("successThreshold", 1)?,
            failure_threshold: number("failureThreshold", 3)?,
            handler,
        })
    }

    /// The action to run, named ports resolved through `container`'s ports.
    pub fn action(&self, container: &Value) -> Result<Action, String> {
        Ok(match &self.handler {
            Handler::Exec(command) => Action::Exec(command.clone()),
            Handler::Http {
                scheme,
                host,
                port,
                path,
                headers,
            } => Action::Http {
                scheme: *scheme,
                host: host.clone(),
                port: resolve_port(port, container)?,
                path: path.clone(),
                headers: headers.clone(),
            },
            Handler::Tcp { host, port } => Action::Tcp {
                host: host.clone(),
                port: resolve_port(port, container)?,
            },
        })
    }
}

fn command(exec: &Value) -> Result<Vec<String>, String> {
    let words = exec.get("command").and_then(Value::as_array).map(|words| {
        words
            .iter()
            .map(|w| w.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
    });
    match words {
        Some(Some(command)) if !command.is_empty() => Ok(command),
        _ => Err("exec.command: must be a non-empty list of strings".into()),
    }
}

fn host(action: &Value) -> Option<String> {
    action
        .get("host")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
}

/// The port as written: a number in range or a non-empty name.
fn port_ref(action: &Value) -> Result<Value, String> {
    match action.get("port") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|p| (1..=65535).contains(&p)) => {
            Ok(Value::Number(n.clone()))
        }
        Some(Value::String(name)) if !name.is_empty() => Ok(Value::String(name.clone())),
        Some(v) => Err(format!(
            "port: invalid value {v}: must be 1-65535 or a port name"
        )),
        None => Err("port: Required value".into()),
    }
}

fn http_handler(http: &Value) -> Result<Handler, String> {
    let scheme = match http.get("scheme").and_then(Value::as_str).unwrap_or("HTTP") {
        "HTTP" | "" => Scheme::Http,
        "HTTPS" => Scheme::Https,
        other => {
            return Err(format!(
                "httpGet.scheme: unsupported value {other:?}: supported values: \"HTTP\", \"HTTPS\""
            ));
        }
    };
    let path = http.get("path").and_then(Value::as_str).unwrap_or("");
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let mut headers = Vec::new();
    for header in http
        .get("httpHeaders")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = |key| header.get(key).and_then(Value::as_str).unwrap_or_default();
        let (name, value) = (field("name"), field("value"));
        // Both go verbatim into the request: nothing may end a line early.
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!("httpGet.httpHeaders: invalid header name {name:?}"));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(format!(
                "httpGet.httpHeaders: invalid value for header {name}"
            ));
        }
        headers.push((name.to_owned(), value.to_owned()));
    }
    Ok(Handler::Http {
        scheme,
        host: host(http),
        port: port_ref(http)?,
        path: escape_path(&path),
        headers,
    })
}

/// Percent-encodes what may not appear in a request line, as Go's URL does.
fn escape_path(path: &str) -> String {
    path.bytes()
        .map(|b| {
            if b.is_ascii_graphic() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A probe's port: a number, or a name looked up in the container's ports (falling back, as
/// the kubelet does, to a number written as a string).
pub fn resolve_port(port: &Value, container: &Value) -> Result<u16, String> {
    let number = match port {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => {
            let ports = container
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            let named = ports
                .filter(|p| p.get("name").and_then(Value::as_str) == Some(name))
                .find_map(|p| p.get("containerPort").and_then(Value::as_i64));
            match named.or_else(|| name.parse().ok()) {
                Some(n) => Some(n),
                None => return Err(format!("port {name} not found in the container's ports")),
            }
        }
        _ => None,
    };
    number
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("invalid port number: {port}"))
}

/// What a recorded result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    BecameReady,
    BecameUnready,
    /// A liveness or startup probe reached its failure threshold: restart the container.
    Failed,
    /// The startup probe succeeded: liveness and readiness probes may run.
    Started,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    At(Instant),
    Running,
    /// Startup succeeded, or a failure means restart: this incarnation is probed no more.
    Done,
}

/// One probe of one container incarnation: consecutive results and when it runs next.
#[derive(Debug, Clone)]
pub struct Tracker {
    kind: Kind,
    spec: Spec,
    /// The result last reported: alive, ready or started.
    passing: bool,
    /// The latest result, and how many runs in a row gave it.
    last: Option<bool>,
    run: u32,
    next: Next,
}

impl Tracker {
    /// A tracker for a container that started at `started`; the first run is due after the
    /// initial delay. A liveness probe starts passing, readiness and startup probes not.
    pub fn new(kind: Kind, spec: Spec, started: Instant) -> Tracker {
        let next = Next::At(started + spec.initial_delay);
        Tracker {
            kind,
            spec,
            passing: kind == Kind::Liveness,
            last: None,
            run: 0,
            next,
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Whether the probe currently holds: alive (liveness), ready (readiness), started (startup).
    pub fn passing(&self) -> bool {
        self.passing
    }

    /// When to run next (`now` if overdue); None while a run is in flight or when done.
    pub fn due(&self, now: Instant) -> Option<Instant> {
        match self.next {
            Next::At(at) => Some(at.max(now)),
            Next::Running | Next::Done => None,
        }
    }

    /// Marks a run as in flight, so that it is not started twice.
    pub fn begin(&mut self) {
        if self.next != Next::Done {
            self.next = Next::Running;
        }
    }

    /// Records a run's result at `now` and schedules the next one a period later.
    pub fn record(&mut self, ok: bool, now: Instant) -> Transition {
        if self.next == Next::Done {
            // A run that ended after the verdict: the container is already being restarted.
            return Transition::None;
        }
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            (self.last, self.run) = (Some(ok), 1);
        }
        self.next = Next::At(now + self.spec.period);
        let threshold = match (ok, self.kind) {
            (false, _) => self.spec.failure_threshold,
            (true, Kind::Readiness) => self.spec.success_threshold,
            // Kubernetes requires 1 for liveness and startup probes; bramble's validation does
            // not check it, so it is enforced here.
            (true, _) => 1,
        };
        if self.run < threshold {
            return Transition::None;
        }
        let transition = match (self.kind, ok) {
            (Kind::Readiness, _) if ok == self.passing => Transition::None,
            (Kind::Readiness, true) => Transition::BecameReady,
            (Kind::Readiness, false) => Transition::BecameUnready,
            (Kind::Liveness, true) => Transition::None,
            (Kind::Startup, true) => Transition::Started,
            (Kind::Liveness | Kind::Startup, false) => Transition::Failed,
        };
        self.passing = ok;
        if matches!(transition, Transition::Started | Transition::Failed) {
            self.next = Next::Done;
        }
        transition
    }
}

/// The probes of one running container incarnation. Liveness and readiness probes wait for
/// the startup probe; without a readiness probe the container is ready once started.
#[derive(Debug, Clone)]
pub struct Probes {
    trackers: Vec<Tracker>,
}

impl Probes {
    /// The probes of `container` (its spec JSON), which started running at `started`.
    pub fn new(container: &Value, started: Instant) -> Result<Probes, String> {
        let mut trackers = Vec::new();
        for kind in [Kind::Startup, Kind::Liveness, Kind::Readiness] {
            if let Some(probe) = container.get(kind.field()).filter(|p| !p.is_null()) {
                let spec = Spec::parse(probe).map_err(|e| format!("{}: {e}", kind.field()))?;
                trackers.push(Tracker::new(kind, spec, started));
            }
        }
        Ok(Probes { trackers })
    }

    fn get(&self, kind: Kind) -> Option<&Tracker> {
        self.trackers.iter().find(|t| t.kind == kind)
    }

    /// No startup probe, or it succeeded.
    pub fn started(&self) -> bool {
        self.get(Kind::Startup).is_none_or(Tracker::passing)
    }

    /// Started, and no readiness probe or it passes.
    pub fn ready(&self) -> bool {
        self.started() && self.get(Kind::Readiness).is_none_or(Tracker::passing)
    }

    pub fn spec(&self, kind: Kind) -> Option<&Spec> {
        self.get(kind).map(Tracker::spec)
    }

    /// When the next probe is due (`now` if overdue), for the caller's timer.
    pub fn due(&self, now: Instant) -> Option<Instant> {
        let started = self.started();
        let runnable = self.trackers.iter().filter(|t| may_run(started, t));
        runnable.filter_map(|t| t.due(now)).min()
    }

    /// Marks every probe due by `now` as in flight and returns their kinds, to run.
    pub fn take_due(&mut self, now: Instant) -> Vec<Kind> {
        let started = self.started();
        let mut due = Vec::new();
        for tracker in self.trackers.iter_mut().filter(|t| may_run(started, t)) {
            if tracker.due(now).is_some_and(|at| at <= now) {
                tracker.begin();
                due.push(tracker.kind);
            }
        }
        due
    }

    pub fn record(&mut self, kind: Kind, ok: bool, now: Instant) -> Transition {
        let tracker = self.trackers.iter_mut().find(|t| t.kind == kind);
        tracker.map_or(Transition::None, |t| t.record(ok, now))
    }
}

/// Only the startup probe runs until it succeeds.
fn may_run(started: bool, tracker: &Tracker) -> bool {
    started || tracker.kind == Kind::Startup
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The detail of the `Unhealthy` event (see [`Kind::failure_message`]).
    Failure(String),
}

/// The outcome of an exec probe, worded as the kubelet's: exit code 0 succeeds; otherwise the
/// command's output (at most 10 KiB) is the message. Without an exit code (killed, or could not
/// run) the probe fails too.
pub fn exec_outcome(exit_code: Option<i32>, output: &[u8], timed_out: bool) -> Outcome {
    if timed_out {
        return Outcome::Failure("command timed out".into());
    }
    match exit_code {
        Some(0) => Outcome::Success,
        _ => {
            let output = &output[..output.len().min(MAX_EXEC_OUTPUT)];
            Outcome::Failure(String::from_utf8_lossy(output).into_owned())
        }
    }
}

/// Runs an HTTP or TCP probe inside the pod's network namespace, pinned by the file `netns`
/// (e.g. `DATA_DIR/runtime/sandboxes/<uid>/net`), against 127.0.0.1 or the probe's host,
/// within `timeout`. A short-lived thread enters the namespace, so the caller's never changes.
pub fn run_network(netns: &Path, action: &Action, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let netns = match File::open(netns) {
        Ok(file) => file,
        Err(e) => {
            return Outcome::Failure(format!("open network namespace {}: {e}", netns.display()));
        }
    };
    thread::scope(|scope| {
        let prober = thread::Builder::new()
            .name("probe".into())
            .spawn_scoped(scope, || {
                // setns changes only this thread, and the thread ends with the probe.
                setns(&netns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("enter the pod's network namespace: {}", go_errno(e)))?;
                Ok(probe(action, deadline))
            });
        let joined = match prober {
            Ok(handle) => handle.join(),
            Err(e) => return Outcome::Failure(format!("start a probe thread: {e}")),
        };
        match joined {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(message)) => Outcome::Failure(message),
            Err(_) => Outcome::Failure("the probe thread panicked".into()),
        }
    })
}

fn probe(action: &Action, deadline: Instant) -> Outcome {
    match action {
        Action::Tcp { host, port } => match dial(host.as_deref(), *port, deadline) {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Failure(e),
        },
        Action::Http {
            scheme: Scheme::Https,
            host,
            port,
            path,
            ..
        } => {
            let authority = authority(host.as_deref(), *port);
            Outcome::Failure(format!(
                "Get \"https://{authority}{path}\": HTTPS probes are not supported by bramble \
                 (its prober has no TLS); use HTTP or a tcpSocket probe"
            ))
        }
        Action::Http {
            scheme: Scheme::Http,
            host,
            port,
            path,
            headers,
        } => {
            let authority = authority(host.as_deref(), *port);
            let request = request(&authority, path, headers);
            http_get(host.as_deref(), *port, &request, deadline).unwrap_or_else(|e| {
                Outcome::Failure(format!("Get \"http://{authority}{path}\": {e}"))
            })
        }
        Action::Exec(_) => {
            Outcome::Failure("exec probes run in the container, through the runtime".into())
        }
    }
}

fn authority(host: Option<&str>, port: u16) -> String {
    match host.unwrap_or("127.0.0.1") {
        ipv6 if ipv6.contains(':') => format!("[{ipv6}]:{port}"),
        host => format!("{host}:{port}"),
    }
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// Go's wording of an errno: "connection refused".
fn go_errno(errno: Errno) -> String {
    let desc = errno.desc();
    let mut chars = desc.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

fn io_detail(op: &str, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{op}: {}", go_errno(Errno::from_raw(code))),
        None => e.to_string(),
    }
}

/// Connects within the deadline; errors read as Go's net.Dial ("dial tcp 127.0.0.1:80: ...").
fn dial(host: Option<&str>, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let host = host.unwrap_or("127.0.0.1");
    let addr = match (host, port).to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) => return Err(format!("dial tcp: lookup {host}: no such host")),
        Err(e) => return Err(format!("dial tcp: lookup {host}: {e}")),
    };
    let timed_out = || format!("dial tcp {addr}: i/o timeout");
    let limit = remaining(deadline).ok_or_else(timed_out)?;
    TcpStream::connect_timeout(&addr, limit).map_err(|e| match e.kind() {
        io::ErrorKind::TimedOut => timed_out(),
        _ => format!("dial tcp {addr}: {}", io_detail("connect", &e)),
    })
}

fn request(authority: &str, path: &str, headers: &[(String, String)]) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    let given = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    for (name, value) in [
        ("Host", authority),
        ("User-Agent", USER_AGENT),
        ("Accept", "*/*"),
    ] {
        if !given(name) {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    // As the kubelet's client, which disables keep-alive.
    request.push_str("Connection: close\r\n\r\n");
    request
}

/// Sends the request and judges the status line: 200-399 succeeds. An Err is the detail after
/// `Get "URL": `, as in Go's client errors.
fn http_get(
    host: Option<&str>,
    port: u16,
    request: &str,
    deadline: Instant,
) -> Result<Outcome, String> {
    let mut stream = dial(host, port, deadline)?;
    let line = exchange(&mut stream, request.as_bytes(), deadline)?;
    let code = line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(200..=399) => Ok(Outcome::Success),
        Some(code) => Ok(Outcome::Failure(format!(
            "HTTP probe failed with statuscode: {code}"
        ))),
        None => Err(format!(
            "net/http: HTTP/1.x transport connection broken: malformed HTTP response {:?}",
            line.trim_end()
        )),
    }
}

/// Writes the request and reads the status line, all before the deadline. Errors read as Go's.
fn exchange(stream: &mut TcpStream, request: &[u8], deadline: Instant) -> Result<String, String> {
    let fail = |op: &str, e: io::Error| match e.kind() {
        // A socket timeout shows as EAGAIN.
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".to_string()
        }
        io::ErrorKind::UnexpectedEof => "EOF".to_string(),
        _ => io_detail(op, &e),
    };
    let limit = || remaining(deadline).ok_or(io::Error::from(io::ErrorKind::TimedOut));
    limit()
        .and_then(|limit| stream.set_write_timeout(Some(limit)))
        .and_then(|()| stream.write_all(request))
        .map_err(|e| fail("write", e))?;
    let mut line = Vec::new();
    let mut buf = [0; 256];
    while !line.contains(&b'\n') && line.len() < MAX_STATUS_LINE {
        let read = limit()
            .and_then(|limit| stream.set_read_timeout(Some(limit)))
            .and_then(|()| stream.read(&mut buf));
        match read.map_err(|e| fail("read", e))? {
            0 if line.is_empty() => return Err(fail("read", io::ErrorKind::UnexpectedEof.into())),
            0 => break,
            n => line.extend_from_slice(&buf[..n]),
        }
    }
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    Ok(String::from_utf8_lossy(&line[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::TcpListener;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;
    use std::process::Command;

    fn spec(probe: Value) -> Spec {
        Spec::parse(&probe).unwrap()
    }

    #[test]
    fn parse_applies_defaults() {
        let s = spec(json!({"tcpSocket": {"port": 80}, "periodSeconds": 0}));
        assert_eq!(s.initial_delay, Duration::ZERO);
        assert_eq!(s.period, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!((s.success_threshold, s.failure_threshold), (1, 3));
        let s = spec(
            json!({"exec": {"command": ["cat", "/tmp/ok"]}, "initialDelaySeconds": 5,
            "periodSeconds": 2, "timeoutSeconds": 3, "successThreshold": 2, "failureThreshold": 4}),
        );
        assert_eq!(
            (s.initial_delay, s.period, s.timeout),
            (
                Duration::from_secs(5),
                Duration::from_secs(2),
                Duration::from_secs(3)
            )
        );
        assert_eq!((s.success_threshold, s.failure_threshold), (2, 4));
        assert_eq!(
            s.action(&json!({})).unwrap(),
            Action::Exec(vec!["cat".into(), "/tmp/ok".into()])
        );
    }

    #[test]
    fn parse_http_with_named_port_and_headers() {
        let s = spec(json!({"httpGet": {"path": "healthz now", "port": "http",
            "httpHeaders": [{"name": "X-Probe", "value": "yes"}]}}));
        let container = json!({"ports": [{"name": "metrics", "containerPort": 9090}, {"name": "http", "containerPort": 8080}]});
        assert_eq!(
            s.action(&container).unwrap(),
            Action::Http {
                scheme: Scheme::Http,
                host: None,
                port: 8080,
                path: "/healthz%20now".into(),
                headers: vec![("X-Probe".into(), "yes".into())],
            }
        );
        assert_eq!(
            s.action(&json!({})).unwrap_err(),
            "port http not found in the container's ports"
        );
    }

    #[test]
    fn parse_rejects_bad_probes() {
        let err = |probe: Value| Spec::parse(&probe).unwrap_err();
        assert_eq!(
            err(json!({"periodSeconds": 1})),
            "must specify a handler type: exec, httpGet or tcpSocket"
        );
        assert_eq!(
            err(json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}})),
            "may not specify more than 1 handler type: exec, tcpSocket"
        );
        assert_eq!(
            err(json!({"grpc": {"port": 1}})),
            "grpc probes are not supported"
        );
        assert_eq!(
            err(json!({"exec": {"command": []}})),
            "exec.command: must be a non-empty list of strings"
        );
        assert_eq!(
            err(json!({"tcpSocket": {"port": 70000}})),
            "port: invalid value 70000: must be 1-65535 or a port name"
        );
        assert_eq!(
            err(json!({"tcpSocket": {"port": 80}, "failureThreshold": -1})),
            "failureThreshold: must be a non-negative integer, not -1"
        );
        assert!(
            err(json!({"httpGet": {"port": 80, "scheme": "FTP"}}))
                .starts_with("httpGet.scheme: unsupported value \"FTP\"")
        );
        let injected = json!({"httpGet": {"port": 80, "httpHeaders": [{"name": "X", "value": "a\r\nEvil: 1"}]}});
        assert_eq!(
            err(injected),
            "httpGet.httpHeaders: invalid value for header X"
        );
    }

    #[test]
    fn ports_resolve_as_the_kubelet_does() {
        let container = json!({"ports": [{"name": "http", "containerPort": 8080}]});
        assert_eq!(resolve_port(&json!(80), &container), Ok(80));
        assert_eq!(resolve_port(&json!("http"), &container), Ok(8080));
        assert_eq!(resolve_port(&json!("8081"), &container), Ok(8081));
        assert_eq!(
            resolve_port(&json!(0), &container),
            Err("invalid port number: 0".into())
        );
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn first_run_waits_for_the_initial_delay_then_runs_every_period() {
        let t0 = Instant::now();
        let probe =
            json!({"tcpSocket": {"port": 80}, "initialDelaySeconds": 15, "periodSeconds": 5});
        let mut t = Tracker::new(Kind::Liveness, spec(probe), t0);
        assert_eq!(t.due(t0), Some(t0 + secs(15)));
        assert_eq!(
            t.due(t0 + secs(20)),
            Some(t0 + secs(20)),
            "overdue means now"
        );
        t.begin();
        assert_eq!(t.due(t0 + secs(16)), None, "in flight");
        t.record(true, t0 + secs(16));
        assert_eq!(t.due(t0 + secs(16)), Some(t0 + secs(21)));
    }

    #[test]
    fn liveness_fails_at_the_threshold_and_stops() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Kind::Liveness, spec(json!({"tcpSocket": {"port": 80}})), t0);
        assert!(t.passing());
        let results: Vec<_> = [false, false, true, false, false, false]
            .iter()
            .map(|&ok| t.record(ok, t0))
            .collect();
        use Transition::{Failed, None as Nothing};
        assert_eq!(
            results,
            [Nothing, Nothing, Nothing, Nothing, Nothing, Failed]
        );
        assert!(!t.passing());
        assert_eq!(t.due(t0), None, "held until the container restarts");
        t.begin();
        assert_eq!(t.record(false, t0), Nothing);
    }

    #[test]
    fn liveness_and_startup_need_one_success_whatever_the_spec_says() {
        let t0 = Instant::now();
        let probe = json!({"tcpSocket": {"port": 80}, "successThreshold": 3});
        let mut t = Tracker::new(Kind::Startup, spec(probe), t0);
        assert_eq!(t.record(true, t0), Transition::Started);
    }

    #[test]
    fn readiness_follows_both_thresholds() {
        let t0 = Instant::now();
        let probe =
            json!({"tcpSocket": {"port": 80}, "successThreshold": 2, "failureThreshold": 2});
        let mut t = Tracker::new(Kind::Readiness, spec(probe), t0);
        assert!(!t.passing());
        let oks = [
            false, false, true, true, true, false, true, false, false, false, true, true,
        ];
        let results: Vec<_> = oks.iter().map(|&ok| t.record(ok, t0)).collect();
        use Transition::{BecameReady as Ready, BecameUnready as Unready, None as No};
        assert_eq!(
            results,
            [No, No, No, Ready, No, No, No, No, Unready, No, No, Ready]
        );
        assert!(t.due(t0).is_some(), "readiness keeps probing");
    }

    #[test]
    fn startup_fails_at_the_threshold_or_starts_once() {
        let t0 = Instant::now();
        let probe = json!({"tcpSocket": {"port": 80}, "failureThreshold": 2});
        let mut t = Tracker::new(Kind::Startup, spec(probe.clone()), t0);
        assert_eq!(t.record(false, t0), Transition::None);
        assert_eq!(t.record(false, t0), Transition::Failed);
        let mut t = Tracker::new(Kind::Startup, spec(probe), t0);
        assert_eq!(t.record(false, t0), Transition::None);
        assert_eq!(t.record(true, t0), Transition::Started);
        assert!(t.passing());
        assert_eq!(t.due(t0), None);
    }

    #[test]
    fn startup_probe_gates_the_others() {
        let t0 = Instant::now();
        let container = json!({
            "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
            "livenessProbe": {"httpGet": {"port": 80, "path": "/"}},
            "readinessProbe": {"tcpSocket": {"port": 80}, "initialDelaySeconds": 30},
        });
        let mut probes = Probes::new(&container, t0).unwrap();
        assert!(!probes.started() && !probes.ready());
        assert_eq!(probes.take_due(t0), [Kind::Startup]);
        assert_eq!(
            probes.due(t0),
            None,
            "only the startup probe may run, and it is in flight"
        );
        assert_eq!(probes.record(Kind::Startup, false, t0), Transition::None);
        assert_eq!(probes.due(t0), Some(t0 + secs(1)));
        probes.take_due(t0 + secs(1));
        assert_eq!(
            probes.record(Kind::Startup, true, t0 + secs(2)),
            Transition::Started
        );
        assert!(probes.started() && !probes.ready());
        assert_eq!(probes.take_due(t0 + secs(2)), [Kind::Liveness]);
        assert_eq!(probes.due(t0 + secs(2)), Some(t0 + secs(30)));
        assert_eq!(probes.take_due(t0 + secs(30)), [Kind::Readiness]);
        assert_eq!(
            probes.record(Kind::Readiness, true, t0 + secs(30)),
            Transition::BecameReady
        );
        assert!(probes.ready());
        assert_eq!(
            probes
                .spec(Kind::Liveness)
                .unwrap()
                .action(&container)
                .unwrap(),
            Action::Http {
                scheme: Scheme::Http,
                host: None,
                port: 80,
                path: "/".into(),
                headers: vec![]
            }
        );
    }

    #[test]
    fn without_probes_a_running_container_is_started_and_ready() {
        let probes = Probes::new(&json!({"name": "app"}), Instant::now()).unwrap();
        assert!(probes.started() && probes.ready());
        assert_eq!(probes.due(Instant::now()), None);
        let only_liveness = Probes::new(
            &json!({"livenessProbe": {"tcpSocket": {"port": 1}}}),
            Instant::now(),
        )
        .unwrap();
        assert!(only_liveness.ready());
        let bad = Probes::new(
            &json!({"readinessProbe": {"tcpSocket": {}}}),
            Instant::now(),
        )
        .unwrap_err();
        assert_eq!(bad, "readinessProbe: port: Required value");
    }

    #[test]
    fn exec_results_are_worded_as_the_kubelet() {
        assert_eq!(exec_outcome(Some(0), b"fine\n", false), Outcome::Success);
        let failed = exec_outcome(
            Some(1),
            b"cat: can't open '/tmp/healthy': No such file or directory\n",
            false,
        );
        let Outcome::Failure(detail) = failed else {
            panic!("{failed:?}")
        };
        assert_eq!(
            Kind::Liveness.failure_message(&detail),
            "Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory\n"
        );
        assert_eq!(
            exec_outcome(Some(0), b"", true),
            Outcome::Failure("command timed out".into())
        );
        assert_eq!(
            exec_outcome(None, b"", false),
            Outcome::Failure(String::new())
        );
        let long = vec![b'x'; 20_000];
        assert_eq!(
            exec_outcome(Some(2), &long, false),
            Outcome::Failure("x".repeat(10 * 1024))
        );
    }

    #[test]
    fn http_request_carries_the_kubelet_headers() {
        let given = [
            ("X-Probe".to_string(), "yes".to_string()),
            ("user-agent".to_string(), "mine".to_string()),
        ];
        assert_eq!(
            request("127.0.0.1:8080", "/healthz", &given),
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*\r\n\
             X-Probe: yes\r\nuser-agent: mine\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(authority(Some("::1"), 80), "[::1]:80");
        assert_eq!(
            Kind::Readiness.failure_message("x"),
            "Readiness probe failed: x"
        );
    }

    /// Tests that need root (network namespaces): skipped locally without it, failed in CI.
    fn have_root(test: &str) -> bool {
        let ip = Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        // /proc/self belongs to the effective user.
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if root && ip {
            return true;
        }
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{test} needs root and iproute2"
        );
        eprintln!("skipping {test}: needs root and iproute2");
        false
    }

    /// A network namespace made with `ip netns add`, deleted on drop.
    struct Netns {
        name: String,
        path: PathBuf,
    }

    impl Netns {
        fn new(tag: &str) -> Netns {
            let name = format!("bramble-probe-test-{}-{tag}", std::process::id());
            let ip = |args: &[&str]| {
                assert!(
                    Command::new("ip").args(args).status().unwrap().success(),
                    "ip {args:?}"
                )
            };
            ip(&["netns", "add", &name]);
            let netns = Netns {
                path: PathBuf::from("/var/run/netns").join(&name),
                name,
            };
            ip(&[
                "netns",
                "exec",
                &netns.name,
                "ip",
                "link",
                "set",
                "lo",
                "up",
            ]);
            netns
        }

        /// A listener on 127.0.0.1 inside the namespace: a socket stays in the namespace it
        /// was made in, whichever thread uses it.
        fn listen(&self) -> TcpListener {
            let file = File::open(&self.path).unwrap();
            thread::scope(|s| {
                s.spawn(|| {
                    setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
                    TcpListener::bind("127.0.0.1:0").unwrap()
                })
                .join()
                .unwrap()
            })
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }

    /// Answers one request with `reply` and returns the request's head.
    fn serve_once(listener: &TcpListener, reply: &'static str) -> thread::JoinHandle<String> {
        let listener = listener.try_clone().unwrap();
        thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            conn.write_all(reply.as_bytes()).unwrap();
            String::from_utf8(head).unwrap()
        })
    }

    fn own_netns() -> u64 {
        std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
    }

    fn http(port: u16, path: &str) -> Action {
        let headers = vec![("X-Probe".into(), "yes".into())];
        Action::Http {
            scheme: Scheme::Http,
            host: None,
            port,
            path: path.into(),
            headers,
        }
    }

    #[test]
    fn http_probes_reach_the_pod_namespace() {
        if !have_root("http_probes_reach_the_pod_namespace") {
            return;
        }
        let netns = Netns::new("http");
        let listener = netns.listen();
        let port = listener.local_addr().unwrap().port();
        let before = own_netns();
        let second = Duration::from_secs(1);

        let server = serve_once(&listener, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(
            run_network(&netns.path, &http(port, "/healthz"), second),
            Outcome::Success
        );
        let head = server.join().unwrap();
        assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
        for line in [
            format!("Host: 127.0.0.1:{port}"),
            "User-Agent: kube-probe/1.37".into(),
            "X-Probe: yes".into(),
        ] {
            assert!(
                head.contains(&format!("{line}\r\n")),
                "{line} not in {head}"
            );
        }

        let server = serve_once(&listener, "HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n");
        assert_eq!(
            run_network(&netns.path, &http(port, "/"), second),
            Outcome::Success
        );
        server.join().unwrap();

        let server = serve_once(&listener, "HTTP/1.1 500 Internal Server Error\r\n\r\n");
        let outcome = run_network(&netns.path, &http(port, "/"), second);
        assert_eq!(
            outcome,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        server.join().unwrap();

        let server = serve_once(&listener, "");
        let outcome = run_network(&netns.path, &http(port, "/"), second);
        let closed = format!("Get \"http://127.0.0.1:{port}/\": EOF");
        assert_eq!(outcome, Outcome::Failure(closed));
        server.join().unwrap();

        let server = serve_once(&listener, "SSH-2.0-OpenSSH\r\n");
        let Outcome::Failure(garbage) = run_network(&netns.path, &http(port, "/"), second) else {
            panic!("not HTTP, yet a success")
        };
        assert!(
            garbage.ends_with("malformed HTTP response \"SSH-2.0-OpenSSH\""),
            "{garbage}"
        );
        server.join().unwrap();

        // Accepted by the kernel, never answered.
        let outcome = run_network(
            &netns.path,
            &http(port, "/slow"),
            Duration::from_millis(200),
        );
        let waited = format!(
            "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        );
        assert_eq!(outcome, Outcome::Failure(waited));

        let https = Action::Http {
            scheme: Scheme::Https,
            host: None,
            port,
            path: "/".into(),
            headers: vec![],
        };
        let Outcome::Failure(refused) = run_network(&netns.path, &https, second) else {
            panic!("https ran")
        };
        assert!(
            refused.contains("HTTPS probes are not supported by bramble"),
            "{refused}"
        );
        assert_eq!(own_netns(), before, "the caller's namespace never changes");
    }

    #[test]
    fn tcp_probes_connect_or_are_refused() {
        if !have_root("tcp_probes_connect_or_are_refused") {
            return;
        }
        let netns = Netns::new("tcp");
        let listener = netns.listen();
        let port = listener.local_addr().unwrap().port();
        let second = Duration::from_secs(1);
        assert_eq!(
            run_network(&netns.path, &Action::Tcp { host: None, port }, second),
            Outcome::Success
        );

        let closed = netns.listen().local_addr().unwrap().port();
        let refused = format!("dial tcp 127.0.0.1:{closed}: connect: connection refused");
        let outcome = run_network(
            &netns.path,
            &Action::Tcp {
                host: None,
                port: closed,
            },
            second,
        );
        assert_eq!(outcome, Outcome::Failure(refused.clone()));
        assert_eq!(
            Kind::Readiness.failure_message(&refused),
            format!(
                "Readiness probe failed: dial tcp 127.0.0.1:{closed}: connect: connection refused"
            )
        );
        let outcome = run_network(&netns.path, &http(closed, "/"), second);
        assert_eq!(
            outcome,
            Outcome::Failure(format!("Get \"http://127.0.0.1:{closed}/\": {refused}"))
        );

        let missing = run_network(
            Path::new("/nonexistent/net"),
            &Action::Tcp { host: None, port },
            second,
        );
        assert!(
            matches!(missing, Outcome::Failure(m) if m.starts_with("open network namespace /nonexistent/net: "))
        );
    }
}
