//! `make bench`: measures bramble and prints figures with their method.
//! Asserts nothing: these machines are noisy, so figures are medians and
//! percentiles over repeated runs. Run with the release binary built
//! (`make bench` does that).
//!
//! BENCH_IDLE_SECS (default 60) sets how long idle writes are sampled;
//! BENCH_ONLY=api|pods|images|scheduler|cluster|soak|network runs one section;
//! BENCH_SOAK_SECS (default 1800) sets how long the soak churns;
//! BRAMBLE_BENCH_BIN names another bramble binary than target/release/bramble.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    std::env::var_os("BRAMBLE_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/bramble"))
}

struct Daemon {
    child: Child,
    dir: PathBuf,
    url: String,
    token: String,
    agent: ureq::Agent,
}

impl Daemon {
    fn start(tag: &str) -> (Daemon, Duration) {
        Daemon::start_with(tag, &["--cluster-listen", "127.0.0.1:0"])
    }

    fn start_with(tag: &str, extra: &[&str]) -> (Daemon, Duration) {
        let dir = std::env::temp_dir().join(format!("bramble-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("https://127.0.0.1:{port}");
        let t0 = Instant::now();
        let child = Command::new(bin())
            .args(["server", "--data-dir"])
            .arg(dir.join("data"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--node-name",
                "bench",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("target/release/bramble exists (run `make bench`)");
        // The CA appears first; then poll /readyz as tightly as we can.
        let ca = dir.join("data/tls/ca.crt");
        let agent = loop {
            if let Ok(pem) = std::fs::read(&ca)
                && let Ok(cert) = ureq::tls::Certificate::from_pem(&pem)
            {
                break agent_for(cert.to_owned());
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        loop {
            if agent
                .get(format!("{url}/readyz"))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "server did not become ready"
            );
        }
        let ready = t0.elapsed();
        let token = std::fs::read_to_string(dir.join("data/tls/token"))
            .unwrap()
            .trim()
            .to_string();
        (
            Daemon {
                child,
                dir,
                url,
                token,
                agent,
            },
            ready,
        )
    }

    fn get(&self, path: &str, accept: &str) -> usize {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.url))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Accept", accept)
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.body_mut().read_to_vec().unwrap().len()
    }

    /// Creates pods over one keep-alive connection with curl (a client with
    /// TCP_NODELAY and no pauses of its own), checking every answer is 201.
    fn create_pods(&self, names: &[String]) {
        let unbound: Vec<(String, String)> =
            names.iter().map(|n| (n.clone(), String::new())).collect();
        self.create_pods_on(&unbound);
    }

    /// `create_pods` of (name, node) pairs: a pod with a node is bound to it.
    fn create_pods_on(&self, names: &[(String, String)]) {
        let ca = self.dir.join("data/tls/ca.crt");
        let mut cmd = Command::new("curl");
        for (i, (name, node)) in names.iter().enumerate() {
            if i > 0 {
                cmd.arg("--next");
            }
            let bind = match node.as_str() {
                "" => String::new(),
                n => format!(r#""nodeName":"{n}","#),
            };
            let body = format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{"app":"bench"}}}},"spec":{{{bind}"containers":[{{"name":"c","image":"busybox:1.36","imagePullPolicy":"Never"}}]}}}}"#
            );
            cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}\n", "--cacert"])
                .arg(&ca)
                .args([
                    "-H",
                    &format!("Authorization: Bearer {}", self.token),
                    "-H",
                    "Content-Type: application/json",
                ])
                .args([
                    "--data",
                    &body,
                    &format!("{}/api/v1/namespaces/default/pods", self.url),
                ]);
        }
        let out = cmd.output().expect("curl runs");
        let codes = String::from_utf8_lossy(&out.stdout);
        assert!(
            codes.lines().all(|c| c == "201") && codes.lines().count() == names.len(),
            "creates failed: {codes}"
        );
    }

    /// Cordons the node so the API is measured alone (no pod gets scheduled).
    fn cordon(&self) {
        let r = self
            .agent
            .patch(format!("{}/api/v1/nodes/bench", self.url))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/merge-patch+json")
            .send(br#"{"spec":{"unschedulable":true}}"#.as_slice())
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.url);
        let auth = format!("Bearer {}", self.token);
        let resp = match (method, body) {
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(b.as_bytes()),
            ("PATCH", Some(b)) => self
                .agent
                .patch(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/merge-patch+json")
                .send(b.as_bytes()),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            _ => self.agent.get(&url).header("Authorization", &auth).call(),
        };
        let mut r = resp.expect("request");
        let code = r.status().as_u16();
        let v = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap_or_default())
            .unwrap_or_default();
        (code, v)
    }

    fn create(&self, pod: &str) {
        let (code, v) = self.call("POST", "/api/v1/namespaces/default/pods", Some(pod));
        assert_eq!(code, 201, "{v}");
    }

    fn delete_pod(&self, name: &str) {
        self.call(
            "DELETE",
            &format!("/api/v1/namespaces/default/pods/{name}?gracePeriodSeconds=0"),
            None,
        );
    }

    fn pods(&self) -> Vec<serde_json::Value> {
        self.call("GET", "/api/v1/namespaces/default/pods", None).1["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn pod_count(&self) -> usize {
        self.pods().len()
    }

    fn wait_running(&self, count: usize, timeout: Duration) {
        let t0 = Instant::now();
        while self
            .pods()
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
            < count
        {
            assert!(
                t0.elapsed() < timeout,
                "{count} pods not Running within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Imports an image archive into this daemon's data dir.
    /// `bramble token`: what an agent joins this server with.
    fn join_token(&self) -> String {
        let out = Command::new(bin())
            .args(["token", "--data-dir"])
            .arg(self.dir.join("data"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn import(&self, archive: &std::path::Path) {
        let ok = Command::new(bin())
            .args(["image", "import"])
            .arg(archive)
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "bramble image import failed");
    }

    /// Deletes every pod and waits until the kubelet has removed them.
    fn clear_pods(&self) {
        self.call(
            "DELETE",
            "/api/v1/namespaces/default/pods?gracePeriodSeconds=0",
            None,
        );
        let t0 = Instant::now();
        while self.pod_count() > 0 && t0.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.clear_pods();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The runtime helper outlives the daemon by design; this one has no pods.
        let _ = Command::new("pkill")
            .args([
                "-f",
                &format!("runtime-helper --root {}", self.dir.display()),
            ])
            .status();
        let _ = Command::new(bin()).args(["network", "cleanup"]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn agent_for(cert: ureq::tls::Certificate<'static>) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .build()
        .into()
}

fn proc_field(pid: u32, file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn api() {
    println!("## API server (release build, HTTPS on loopback)\n");
    let mut readies = Vec::new();
    for i in 0..5 {
        let (d, ready) = Daemon::start(&format!("ready{i}"));
        readies.push(ready);
        drop(d);
    }
    readies.sort();
    println!(
        "- start to /readyz answering (fresh data dir, includes CA and key generation), median of 5: {}",
        ms(percentile(&readies, 0.5))
    );

    let (d, _) = Daemon::start("api");
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "- idle RSS after start: {:.1} MiB",
        proc_field(d.pid(), "status", "VmRSS") as f64 / 1024.0
    );

    d.cordon();
    let n = 1000;
    let names: Vec<String> = (0..n).map(|i| format!("seq-{i}")).collect();
    let t = Instant::now();
    d.create_pods(&names);
    let seq = t.elapsed();
    println!(
        "- durable creates (curl, one keep-alive connection), {n} pods: {:.0} creates/s",
        n as f64 / seq.as_secs_f64()
    );

    let clients = 8;
    let t = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            let d = &d;
            s.spawn(move || {
                d.create_pods(
                    &(0..n / clients)
                        .map(|i| format!("par-{c}-{i}"))
                        .collect::<Vec<_>>(),
                )
            });
        }
    });
    let par = t.elapsed();
    println!(
        "- durable creates, {clients} concurrent curl clients, {n} pods: {:.0} creates/s",
        n as f64 / par.as_secs_f64()
    );

    // Lists of exactly 1,000 pods: select the sequential ones by name prefix is
    // not possible with selectors, so list a namespace holding 1,000.
    for (what, accept) in [
        ("JSON", "application/json"),
        (
            "Table",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        ),
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..50 {
            let t = Instant::now();
            bytes = d.get("/api/v1/namespaces/default/pods?limit=1000", accept);
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "- GET 1,000 pods as {what} ({} KiB), 50 requests: p50 {}, p99 {}",
            bytes / 1024,
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        );
    }
    println!(
        "- RSS with {} pods stored: {:.1} MiB",
        2 * n,
        proc_field(d.pid(), "status", "VmRSS") as f64 / 1024.0
    );

    let idle: u64 = std::env::var("BENCH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    std::thread::sleep(Duration::from_secs(2));
    let before = proc_field(d.pid(), "io", "write_bytes");
    std::thread::sleep(Duration::from_secs(idle));
    let after = proc_field(d.pid(), "io", "write_bytes");
    println!(
        "- bytes written to storage while idle for {idle} s (/proc/PID/io write_bytes): {}",
        after - before
    );
    println!();
}

mod cluster;
mod images;
mod network;
mod pods;
mod scheduler;
mod soak;

fn main() {
    println!("# bramble benchmark\n");
    println!(
        "machine: {} cores, kernel {}\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    // Board targets' sizes come from `make cross-aarch64` / `cross-armv7`
    // (scripts/cross-build.sh prints them); this is the binary measured here.
    let size = std::fs::metadata(bin()).map(|m| m.len()).unwrap_or(0);
    println!(
        "binary: {} ({:.1} MiB, {})\n",
        bin().display(),
        size as f64 / (1024.0 * 1024.0),
        std::env::consts::ARCH
    );
    // BENCH_ONLY=api|pods|images|scheduler|cluster|soak|network runs one section.
    let only = std::env::var("BENCH_ONLY").ok();
    let sections: &[(&str, fn())] = &[
        ("api", api),
        ("pods", pods::run),
        ("images", images::run),
        ("scheduler", scheduler::run),
        ("cluster", cluster::run),
        ("soak", soak::run),
        ("network", network::run),
    ];
    for (name, run) in sections.iter().copied() {
        if only.as_deref().is_none_or(|o| o == name) {
            run();
        }
    }
}
