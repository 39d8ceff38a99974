//! Chaos: 1,000 API operations (ConfigMaps from three threads, pod churn
//! with real containers from a fourth) while the daemon is kill -9ed at 20
//! random moments and restarted. No acknowledged write may be lost, no
//! object may appear twice or change uid, no container may restart because
//! the daemon died, and once every pod is deleted nothing may be left:
//! containers, cgroups, overlay mounts, pinned namespaces, pod addresses.
//!
//! The moments come from a seeded PRNG; the seed is printed, and
//! CHAOS_SEED=N replays a run's choices (not its timing).

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::pods::{leftovers, pod_cgroups};
use crate::support::{Server, server_with_busybox, unsafe_kill, wait_for};

const OPS: usize = 1000;
const KILLS: usize = 20;
/// Pods declared at once, the two steady ones included.
const MAX_PODS: usize = 6;
const CM_THREADS: u64 = 3;
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const PODS: &str = "/api/v1/namespaces/default/pods";

/// xorshift64*: the repo has no rand crate, and a test needs no more.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one request got.
struct Reply {
    /// False when curl could not connect: the daemon got nothing.
    sent: bool,
    /// 0 when no answer came (the daemon died with the request in flight).
    code: u16,
    body: Value,
}

fn call(s: &Server, method: &str, path: &str, content_type: &str, body: &Value) -> Reply {
    let mut c = Command::new("curl")
        .args(["-s", "--max-time", "20", "-X", method, "--cacert"])
        .arg(s.data_dir().join("tls/ca.crt"))
        .args(["-w", "\n%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {}", s.token)])
        .args(["-H", &format!("Content-Type: {content_type}")])
        .args(["--data-binary", "@-"])
        .arg(format!("{}{path}", s.url()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Reply {
        // curl's exit code 7: failed to connect.
        sent: out.status.code() != Some(7),
        code: code.trim().parse().unwrap_or(0),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// An object as the test expects it: absent (for a pod: gone or being
/// deleted), or present with a value (a ConfigMap's data, a pod's `gen` label).
#[derive(Clone, Debug, PartialEq)]
enum State {
    Absent,
    Present(String),
}

/// What the test knows of one object.
struct Entry {
    state: State,
    uid: Option<String>,
    /// Some while a request on it got no answer: the states it may be in,
    /// until a read after the restart tells.
    unsure: Option<Vec<State>>,
}

#[derive(Default)]
struct Model {
    /// "configmaps/NAME" or "pods/NAME".
    entries: BTreeMap<String, Entry>,
    violations: Vec<String>,
    /// Every pod uid seen, for the cgroup check.
    pod_uids: Vec<String>,
    /// Requests the daemon died answering.
    unanswered: usize,
}

/// The state an object read back from the API is in.
fn observed(kind: &str, v: &Value) -> State {
    if kind == "pods" {
        if v["metadata"]["deletionTimestamp"].is_string() {
            return State::Absent;
        }
        return State::Present(v["metadata"]["labels"]["gen"].as_str().unwrap_or("").into());
    }
    State::Present(v["data"]["v"].as_str().unwrap_or("").into())
}

fn base(kind: &str) -> &'static str {
    if kind == "pods" { PODS } else { CONFIGMAPS }
}

/// Shared by the threads: the server (write-locked only to restart it),
/// the model, and the count of operations the daemon received.
struct Chaos {
    server: RwLock<Server>,
    model: Mutex<Model>,
    ops: AtomicUsize,
    /// Requests on their way, so that kills can land among them.
    in_flight: AtomicUsize,
    image: String,
}

enum Op {
    Create(String),
    Update(String),
    Delete,
}

impl Chaos {
    fn done(&self) -> bool {
        self.ops.load(Ordering::SeqCst) >= OPS
    }

    /// One operation on `kind/name`; records what the answer proves.
    fn apply(&self, kind: &str, name: &str, op: Op) {
        let key = format!("{kind}/{name}");
        let waiting = Instant::now();
        loop {
            let s = self.server.read().unwrap();
            let (method, path, ct, body, after) = match &op {
                Op::Create(v) => (
                    "POST",
                    base(kind).to_string(),
                    "application/json",
                    self.body(kind, name, v),
                    State::Present(v.clone()),
                ),
                Op::Update(v) => {
                    let patch = if kind == "pods" {
                        json!({"metadata": {"labels": {"gen": v}}})
                    } else {
                        json!({"data": {"v": v}})
                    };
                    (
                        "PATCH",
                        format!("{}/{name}", base(kind)),
                        "application/merge-patch+json",
                        patch,
                        State::Present(v.clone()),
                    )
                }
                Op::Delete => (
                    "DELETE",
                    format!("{}/{name}", base(kind)),
                    "application/json",
                    Value::Null,
                    State::Absent,
                ),
            };
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let r = call(&s, method, &path, ct, &body);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if !r.sent {
                // The daemon is down; the restart takes the write lock.
                drop(s);
                patience(waiting);
                continue;
            }
            self.ops.fetch_add(1, Ordering::SeqCst);
            let mut m = self.model.lock().unwrap();
            let before = m
                .entries
                .get(&key)
                .map_or(State::Absent, |e| e.state.clone());
            match r.code {
                200..=299 => {
                    let uid = r.body["metadata"]["uid"].as_str().map(str::to_string);
                    if kind == "pods"
                        && let Some(u) = &uid
                        && !m.pod_uids.contains(u)
                    {
                        m.pod_uids.push(u.clone());
                    }
                    let known = m.entries.get(&key).and_then(|e| e.uid.clone());
                    if let (Some(k), Some(u)) = (&known, &uid)
                        && k != u
                    {
                        m.violations
                            .push(format!("{key}: uid {u} answered, {k} created"));
                    }
                    m.entries.insert(
                        key,
                        Entry {
                            state: after,
                            uid: known.or(uid),
                            unsure: None,
                        },
                    );
                    return;
                }
                code => {
                    let allowed = if code == 0 {
                        m.unanswered += 1;
                        vec![before, after]
                    } else {
                        m.violations
                            .push(format!("{method} {path}: {code} {}", r.body));
                        // Wrong already; from here on, whatever it is.
                        Vec::new()
                    };
                    m.entries
                        .entry(key.clone())
                        .or_insert(Entry {
                            state: State::Absent,
                            uid: None,
                            unsure: None,
                        })
                        .unsure = Some(allowed);
                }
            }
            drop(m);
            drop(s);
            self.resolve(kind, name);
            return;
        }
    }

    /// After a request that got no answer: reads the object once the daemon
    /// is back; it must be in one of the states the request allowed.
    fn resolve(&self, kind: &str, name: &str) {
        let key = format!("{kind}/{name}");
        let waiting = Instant::now();
        loop {
            let s = self.server.read().unwrap();
            let r = call(
                &s,
                "GET",
                &format!("{}/{name}", base(kind)),
                "application/json",
                &Value::Null,
            );
            let seen = match r.code {
                200 => observed(kind, &r.body),
                404 => State::Absent,
                _ => {
                    drop(s);
                    patience(waiting);
                    continue;
                }
            };
            let uid = r.body["metadata"]["uid"].as_str().map(str::to_string);
            let mut m = self.model.lock().unwrap();
            if kind == "pods"
                && let Some(u) = &uid
                && !m.pod_uids.contains(u)
            {
                m.pod_uids.push(u.clone());
            }
            let e = m.entries.get_mut(&key).expect("resolved entries exist");
            let allowed = e.unsure.take().unwrap_or_default();
            let known = e.uid.clone();
            e.state = seen.clone();
            if e.uid.is_none() {
                e.uid = uid.clone();
            }
            let mut bad = Vec::new();
            if !allowed.is_empty() && !allowed.contains(&seen) {
                bad.push(format!(
                    "{key}: {seen:?} after an unanswered request, expected one of {allowed:?}"
                ));
            }
            if let (Some(k), Some(u)) = (&known, &uid)
                && k != u
            {
                bad.push(format!("{key}: uid {u}, created as {k}"));
            }
            m.violations.extend(bad);
            return;
        }
    }

    fn body(&self, kind: &str, name: &str, v: &str) -> Value {
        if kind == "pods" {
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"chaos": "yes", "gen": v}},
                "spec": {"terminationGracePeriodSeconds": 5, "containers": [{
                    "name": "c", "image": self.image, "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]}]}})
        } else {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                "data": {"v": v}})
        }
    }

    /// Names of `kind` the model holds present and sure, starting with `prefix`.
    fn present(&self, kind: &str, prefix: &str) -> Vec<String> {
        let m = self.model.lock().unwrap();
        m.entries
            .iter()
            .filter(|(k, e)| {
                k.starts_with(&format!("{kind}/{prefix}"))
                    && e.unsure.is_none()
                    && matches!(e.state, State::Present(_))
            })
            .map(|(k, _)| k.split_once('/').unwrap().1.to_string())
            .collect()
    }

    fn cm_worker(&self, t: u64, seed: u64) {
        let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut made = 0;
        let mut version = 0;
        while !self.done() {
            let alive = self.present("configmaps", &format!("cm-{t}-"));
            let pick = rng.below(100);
            if alive.len() < 3 || pick < 40 {
                made += 1;
                self.apply(
                    "configmaps",
                    &format!("cm-{t}-{made}"),
                    Op::Create("v0".into()),
                );
            } else {
                let name = &alive[rng.below(alive.len() as u64) as usize];
                if pick < 80 {
                    version += 1;
                    self.apply("configmaps", name, Op::Update(format!("v{version}")));
                } else {
                    self.apply("configmaps", name, Op::Delete);
                }
            }
            std::thread::sleep(Duration::from_millis(rng.below(300)));
        }
    }

    fn pod_worker(&self, seed: u64) {
        let mut rng = Rng(seed ^ 0xD1B5_4A32_D192_ED03);
        let mut made = 0;
        let mut version = 0;
        while !self.done() {
            let churn = self.present("pods", "churn-");
            let declared = churn.len() + 2;
            let pick = rng.below(100);
            if churn.is_empty() || (declared < MAX_PODS && pick < 40) {
                made += 1;
                self.apply("pods", &format!("churn-{made}"), Op::Create("0".into()));
            } else if pick < 70 {
                let name = &churn[rng.below(churn.len() as u64) as usize];
                self.apply("pods", name, Op::Delete);
            } else {
                let all = self.present("pods", "");
                if all.is_empty() {
                    continue;
                }
                let name = &all[rng.below(all.len() as u64) as usize];
                version += 1;
                self.apply("pods", name, Op::Update(version.to_string()));
            }
            std::thread::sleep(Duration::from_millis(200 + rng.below(600)));
        }
    }

    /// Every sure entry of the model against the API, every pod's
    /// restartCount, and no object the model does not know of.
    fn check(&self, s: &Server, when: &str) {
        let mut m = self.model.lock().unwrap();
        let mut found: BTreeMap<String, (State, String, Value)> = BTreeMap::new();
        for kind in ["configmaps", "pods"] {
            let list = s.get_json(base(kind));
            for item in list["items"].as_array().unwrap() {
                let name = item["metadata"]["name"].as_str().unwrap();
                let key = format!("{kind}/{name}");
                let was = found.insert(
                    key.clone(),
                    (
                        observed(kind, item),
                        item["metadata"]["uid"].as_str().unwrap().to_string(),
                        item.clone(),
                    ),
                );
                if was.is_some() {
                    m.violations.push(format!("{when}: {key} listed twice"));
                }
            }
        }
        let mut bad = Vec::new();
        for (key, e) in &m.entries {
            if e.unsure.is_some() {
                continue;
            }
            let seen = found.get(key).map_or(State::Absent, |f| f.0.clone());
            if seen != e.state {
                bad.push(format!(
                    "{when}: {key} is {seen:?}, acknowledged {:?}",
                    e.state
                ));
            }
            if let (Some((_, uid, _)), Some(want)) = (found.get(key), &e.uid)
                && uid != want
            {
                bad.push(format!("{when}: {key} has uid {uid}, created as {want}"));
            }
        }
        for (key, (_, _, item)) in &found {
            if !m.entries.contains_key(key) {
                bad.push(format!("{when}: {key} exists but was never created"));
            }
            for c in item["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if c["restartCount"] != 0 {
                    bad.push(format!("{when}: {key} restarted: {c}"));
                }
            }
        }
        m.violations.extend(bad);
    }
}

/// Waits a little for the daemon to come back; fails the test (rather than
/// hanging it) when it has not for a minute.
fn patience(since: Instant) {
    assert!(
        since.elapsed() < Duration::from_secs(60),
        "the daemon did not come back for a minute"
    );
    std::thread::sleep(Duration::from_millis(50));
}

#[test]
fn a_thousand_operations_with_twenty_kill_9s_lose_nothing_and_leave_nothing() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("chaos seed {seed} (CHAOS_SEED={seed} replays its choices)");
    let started = Instant::now();
    let chaos = Chaos {
        server: RwLock::new(s),
        model: Mutex::default(),
        ops: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        image,
    };
    // Two steady pods live through every kill: the same processes at the end.
    for name in ["steady-0", "steady-1"] {
        chaos.apply("pods", name, Op::Create("0".into()));
    }
    let steady: Vec<(String, String, u32)> = {
        let s = chaos.server.read().unwrap();
        ["steady-0", "steady-1"]
            .iter()
            .map(|n| {
                let p = s.wait_phase(n, "Running", 60);
                let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
                let pid = s.container_pid(&uid);
                (n.to_string(), uid, pid)
            })
            .collect()
    };
    let check_steady = |s: &Server, when: &str| {
        let mut m = chaos.model.lock().unwrap();
        for (name, uid, pid) in &steady {
            let now = s.container_pid(uid);
            if now != *pid || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                m.violations.push(format!(
                    "{when}: {name}'s container is pid {now}, was {pid}"
                ));
            }
        }
    };

    let mut rng = Rng(seed);
    std::thread::scope(|scope| {
        for t in 0..CM_THREADS {
            let chaos = &chaos;
            scope.spawn(move || chaos.cm_worker(t, seed));
        }
        scope.spawn(|| chaos.pod_worker(seed));
        let window = OPS / KILLS;
        for k in 0..KILLS {
            // A random moment in this kill's share of the operations.
            let at = k * window + 1 + rng.below(window as u64 - 1) as usize;
            let stalled = Instant::now() + Duration::from_secs(120);
            while chaos.ops.load(Ordering::SeqCst) < at {
                assert!(Instant::now() < stalled, "no operation for 2 minutes");
                std::thread::sleep(Duration::from_millis(5));
            }
            // Mostly with requests in flight: a write mid-commit is the
            // interesting moment.
            let deadline = Instant::now() + Duration::from_secs(1);
            while chaos.in_flight.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(rng.below(20)));
            let pid = chaos.server.read().unwrap().pid();
            unsafe_kill(pid, "KILL");
            let mut s = chaos.server.write().unwrap();
            s.kill9();
            s.spawn(&[]);
            let when = format!("after kill {}", k + 1);
            chaos.check(&s, &when);
            check_steady(&s, &when);
        }
    });
    let ops = chaos.ops.load(Ordering::SeqCst);
    let s = chaos.server.read().unwrap();
    // Settled: every declared pod runs, none restarted, same steady processes.
    wait_for(90, "every declared pod Running", || {
        let list = s.get_json(PODS);
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
            .all(|p| p["status"]["phase"] == "Running")
            .then_some(())
    });
    chaos.check(&s, "at the end");
    check_steady(&s, "at the end");
    let mut model = chaos.model.lock().unwrap();

    // Everything goes; nothing is left behind.
    for p in s.get_json(PODS)["items"].as_array().unwrap() {
        let name = p["metadata"]["name"].as_str().unwrap();
        let (code, v) = s.request("DELETE", &format!("{PODS}/{name}"), None, b"");
        if code != 200 && code != 404 {
            model
                .violations
                .push(format!("deleting {name}: {code} {v}"));
        }
    }
    wait_for(120, "every pod gone", || {
        s.get_json(PODS)["items"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    wait_for(
        30,
        "no container, sandbox, mount or pinned namespace left",
        || leftovers(&s).is_empty().then_some(()),
    );
    let ipam = s.data_dir().join("net/ipam/bramble");
    let addresses: Vec<String> = std::fs::read_dir(&ipam)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
        .collect();
    assert_eq!(addresses, Vec::<String>::new(), "pod addresses left");
    for uid in &model.pod_uids {
        assert_eq!(
            pod_cgroups(uid),
            Vec::<String>::new(),
            "cgroups of pod {uid}"
        );
    }
    eprintln!(
        "chaos: {ops} operations ({} unanswered), {KILLS} kills, {} pods, {:?}",
        model.unanswered,
        model.pod_uids.len(),
        started.elapsed()
    );
    assert_eq!(
        model.violations,
        Vec::<String>::new(),
        "seed {seed}: {} violations",
        model.violations.len()
    );
    assert!(ops >= OPS);
}
