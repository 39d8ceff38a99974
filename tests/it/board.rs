//! On the board: `bramble check` (this machine, and a fake /proc where the
//! memory cgroup is off), the systemd notify protocol against a test
//! NOTIFY_SOCKET, `bramble export` into a fresh server, and the unit files.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Server, TempDir, bramble, free_port, missing, reset_runtime};

fn check(root: Option<&Path>) -> Output {
    let mut cmd = Command::new(bramble());
    cmd.args(["check", "--data-dir", env!("CARGO_TARGET_TMPDIR")]);
    if let Some(r) = root {
        cmd.env("BRAMBLE_CHECK_ROOT", r);
    }
    cmd.output().unwrap()
}

#[test]
fn check_passes_on_this_machine_and_names_its_cgroup_layout() {
    let out = check(None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bramble check failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (v1, v2) = (
        mountinfo.contains(" - cgroup "),
        mountinfo.contains(" - cgroup2 "),
    );
    let layout = match (v1, v2) {
        (true, true) => "cgroups: hybrid",
        (true, false) => "cgroups: v1",
        _ => "cgroups: v2",
    };
    assert!(text.contains(layout), "want {layout:?} in:\n{text}");
    for line in text.lines() {
        assert!(
            ["OK ", "WARN ", "FAIL "]
                .iter()
                .any(|t| line.starts_with(t)),
            "not a finding: {line}"
        );
    }
}

/// A fake root whose /proc/cgroups has memory disabled, as on Raspberry Pi
/// OS without `cgroup_enable=memory`; everything else is fine.
fn fake_root(cmdline: &str) -> TempDir {
    let root = TempDir::new("check-root");
    let write = |rel: &str, text: &str| {
        let p = root.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    for ns in ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"] {
        write(&format!("proc/self/ns/{ns}"), "");
    }
    write("proc/filesystems", "nodev\tproc\nnodev\toverlay\n");
    write("proc/self/status", "Name:\tbramble\nSeccomp:\t0\n");
    write(
        "proc/cgroups",
        "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
         cpuset\t2\t9\t1\ncpu\t3\t9\t1\nmemory\t0\t9\t0\npids\t4\t9\t1\n",
    );
    write(
        "proc/self/mountinfo",
        "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
         32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
         39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
         41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
    );
    write("sys/fs/cgroup/unified/cgroup.controllers", "");
    write(
        cmdline,
        "console=serial0,115200 root=PARTUUID=1234-02 rootwait\n",
    );
    root
}

#[test]
fn check_fails_without_the_memory_cgroup_and_prints_the_cmdline_fix() {
    for (file, named) in [
        ("boot/firmware/cmdline.txt", "/boot/firmware/cmdline.txt"),
        ("boot/cmdline.txt", "/boot/cmdline.txt"),
    ] {
        let root = fake_root(file);
        let out = check(Some(&root.0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "check passed:\n{text}");
        assert!(text.contains("cgroups: hybrid"), "{text}");
        let fix = format!(
            "add `cgroup_memory=1 cgroup_enable=memory` to the single line in {named} and reboot"
        );
        let fails: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("FAIL") && !l.starts_with("FAIL port"))
            .collect();
        assert_eq!(fails.len(), 1, "only memory should fail:\n{text}");
        assert!(fails[0].contains(&fix), "want {fix:?} in:\n{text}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("required check(s) failed"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `bramble server` started by hand with a NOTIFY_SOCKET the test reads:
/// Server::start waits on /readyz, which a wedged executor may never answer.
struct Notified {
    /// Dropped after the server is killed (fields drop after `drop`).
    _net: crate::support::NetSlot,
    dir: TempDir,
    child: Child,
    socket: UnixDatagram,
}

impl Notified {
    fn start(env: &[(&str, &str)]) -> Notified {
        let dir = TempDir::new("notify");
        let path = dir.0.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let log = std::fs::File::create(dir.0.join("server.log")).unwrap();
        let net = crate::support::NetSlot::take();
        let child = Command::new(bramble())
            .args(["server", "--data-dir"])
            .arg(dir.0.join("data"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--node-name", "test-node"])
            .args(net.args())
            .args(["--cluster-listen", &format!("127.0.0.1:{}", free_port())])
            .env("NOTIFY_SOCKET", &path)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Notified {
            dir,
            child,
            socket,
            _net: net,
        }
    }

    /// The messages that arrive until `until`, each with its arrival time.
    fn messages_until(&self, until: Instant) -> Vec<(Instant, String)> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            self.socket.set_read_timeout(Some(left)).unwrap();
            match self.socket.recv(&mut buf) {
                Ok(n) => out.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                )),
                Err(_) => break,
            }
        }
        out
    }

    /// Waits for READY=1; returns when it arrived.
    #[track_caller]
    fn ready(&self) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            self.socket
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            if let Ok(n) = self.socket.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
            {
                return Instant::now();
            }
        }
        panic!("no READY=1 within 20 s:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Notified {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
        reset_runtime(&self.dir.0.join("data"));
    }
}

fn watchdogs(msgs: &[(Instant, String)]) -> Vec<Instant> {
    msgs.iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn server_notifies_ready_and_feeds_the_watchdog() {
    let s = Notified::start(&[("WATCHDOG_USEC", "200000")]);
    let ready = s.ready();
    let msgs = s.messages_until(ready + Duration::from_secs(1));
    let n = watchdogs(&msgs).len();
    assert!(
        n >= 3,
        "{n} WATCHDOG=1 within 1 s of READY=1 (period 200 ms): {msgs:?}"
    );
}

#[test]
fn watchdog_stops_when_the_executor_is_wedged() {
    let s = Notified::start(&[
        ("WATCHDOG_USEC", "200000"),
        ("BRAMBLE_TEST_WEDGE_AFTER_MS", "300"),
    ]);
    let ready = s.ready();
    // The wedge comes 300 ms after READY=1; leave it time to take hold.
    let before = s.messages_until(ready + Duration::from_millis(600));
    assert!(
        !watchdogs(&before).is_empty(),
        "no WATCHDOG=1 before the wedge: {before:?}"
    );
    let after = s.messages_until(Instant::now() + Duration::from_secs(1));
    assert!(
        watchdogs(&after).is_empty(),
        "WATCHDOG=1 kept coming after the wedge: {after:?}"
    );
    assert!(
        s.log().contains("wedging the executor"),
        "the hook did not run:\n{}",
        s.log()
    );
}

const OBJECTS: &str = "
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: web}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
  labels: {app: shop}
data:
  greeting: hello
  mode: prod
---
apiVersion: v1
kind: Service
metadata:
  name: front
  namespace: shop
  labels: {app: shop}
spec:
  type: NodePort
  selector: {app: shop}
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: shop}
spec:
  containers:
  - name: web
    image: bramble.test/none:1
    imagePullPolicy: Never
";

/// What a user made, comparable across clusters.
fn user_view(s: &Server) -> Value {
    let get = |args: &[&str]| -> Value {
        serde_json::from_str(&s.kubectl_ok(&[args, &["-o", "json"]].concat())).unwrap()
    };
    let ns = get(&["get", "namespace", "shop"]);
    let cm = get(&["get", "configmap", "settings", "-n", "shop"]);
    let svc = get(&["get", "service", "front", "-n", "shop"]);
    let pod = get(&["get", "pod", "web", "-n", "shop"]);
    let ports: Vec<Value> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| serde_json::json!([p["name"], p["port"], p["targetPort"], p["nodePort"]]))
        .collect();
    serde_json::json!({
        "namespace": [ns["metadata"]["name"], ns["metadata"]["labels"]["team"]],
        "configmap": [cm["metadata"]["name"], cm["metadata"]["labels"], cm["data"]],
        "service": [svc["metadata"]["name"], svc["metadata"]["labels"], svc["spec"]["type"],
                    svc["spec"]["selector"], ports],
        "pod": [pod["metadata"]["name"], pod["metadata"]["labels"],
                pod["spec"]["containers"][0]["image"]],
    })
}

#[test]
fn export_applied_to_a_fresh_server_recreates_the_objects() {
    if missing("kubectl") || missing("curl") {
        return;
    }
    let a = Server::start();
    a.apply(OBJECTS);
    let out = Command::new(bramble())
        .args(["export", "--data-dir"])
        .arg(a.data_dir())
        .args(["--server", &a.url()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bramble export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    for server_field in [
        "uid:",
        "resourceVersion:",
        "creationTimestamp:",
        "clusterIP:",
        "nodeName:",
        "status:",
        "last-applied-configuration",
    ] {
        assert!(
            !yaml.contains(server_field),
            "{server_field} left in:\n{yaml}"
        );
    }
    assert!(!yaml.contains("name: kube-system"), "{yaml}");

    let b = Server::start();
    let applied = b.kubectl_stdin(&["apply", "-f", "-"], &yaml);
    assert!(
        applied.status.success(),
        "kubectl apply of the export failed: {}\n{yaml}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert_eq!(user_view(&b), user_view(&a), "export:\n{yaml}");
}

#[test]
fn install_script_places_binary_units_and_flags_that_verify() {
    if missing("systemd-analyze") {
        return;
    }
    // The install script places the units with ExecStart pointing at the
    // binary it installed, which verify checks exists.
    let root = TempDir::new("install");
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-board.sh"))
        .args(["--binary", bramble(), "--destdir"])
        .arg(&root.0)
        .args([
            "--prefix",
            "/usr",
            "--board",
            "raspberry-pi-4b",
            "--no-start",
        ])
        .args([
            "--agent",
            "--server",
            "10.0.0.1:6444",
            "--token",
            "K10aa::secret",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install-board.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = root.0.join("usr/bin/bramble");
    let version = Command::new(&installed).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("bramble "));
    assert!(
        root.0
            .join("usr/share/bramble/board-configs/raspberry-pi-zero-2w.toml")
            .is_file()
    );
    let env = std::fs::read_to_string(root.0.join("etc/default/bramble")).unwrap();
    assert!(
        env.contains("BRAMBLE_SERVER_ARGS=\"--data-dir /var/lib/bramble --board raspberry-pi-4b\""),
        "{env}"
    );
    assert!(env.contains("BRAMBLE_AGENT_ARGS=\"--data-dir /var/lib/bramble --server 10.0.0.1:6444 --token K10aa::secret --board raspberry-pi-4b\""), "{env}");
    let units = root.0.join("etc/systemd/system");
    let files: Vec<std::path::PathBuf> = ["bramble.service", "bramble-agent.service"]
        .iter()
        .map(|u| units.join(u))
        .collect();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(exec.starts_with("ExecStart=/usr/bin/bramble "), "{exec}");
    }
    // verify resolves ExecStart on this machine: point the copies at the
    // binary inside the install root.
    for f in &files {
        let text = std::fs::read_to_string(f)
            .unwrap()
            .replace("/usr/bin/bramble", &installed.to_string_lossy());
        std::fs::write(f, text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the first sample of `metric` whose line contains `labels`.
fn sample(text: &str, metric: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(metric) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_report_pods_api_store_and_process() {
    let Some((s, image)) = crate::support::server_with_busybox() else {
        return;
    };
    // A pod that holds 8 MiB in memory and burns some CPU.
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: busy}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    imagePullPolicy: Never
    command: [sh, -c, 'head -c 8388608 /dev/zero > /dev/shm/ballast; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 3600']
"
    ));
    s.wait_phase("busy", "Running", 30);
    let pod = "namespace=\"default\",pod=\"busy\"";
    let text = crate::support::wait_for(20, "the pod's usage in /metrics", || {
        let (code, text) = s.request_text(Some(&s.token), "GET", "/metrics", None, b"");
        assert_eq!(code, 200);
        sample(&text, "bramble_pod_cpu_seconds_total", pod)
            .filter(|cpu| *cpu > 0.0)
            .and(sample(&text, "bramble_pod_memory_bytes", pod))
            .filter(|mem| *mem >= 8.0 * 1024.0 * 1024.0)
            .map(|_| text)
    });
    assert!(
        sample(
            &text,
            "bramble_api_requests_total",
            "verb=\"GET\",code=\"200\""
        )
        .unwrap()
            >= 1.0
    );
    assert!(sample(&text, "bramble_api_request_duration_seconds_count", "").unwrap() >= 1.0);
    assert_eq!(
        sample(&text, "bramble_store_objects", "resource=\"pods\""),
        Some(1.0)
    );
    assert!(sample(&text, "bramble_store_disk_bytes", "").unwrap() > 0.0);
    assert!(sample(&text, "process_resident_memory_bytes", "").unwrap() > 1e6);
    assert!(sample(&text, "process_open_fds", "").unwrap() > 3.0);
    assert!(
        sample(
            &text,
            "bramble_node_memory_used_bytes",
            "node=\"test-node\""
        )
        .unwrap()
            > 0.0
    );
    assert!(
        sample(
            &text,
            "bramble_node_cpu_seconds_total",
            "node=\"test-node\""
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(sample(&text, "bramble_image_pulls_total", ""), Some(0.0));
}

#[test]
fn version_names_the_git_revision_it_was_built_from() {
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(head.status.success(), "this test needs the git checkout");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let out = Command::new(bramble()).arg("version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains(&format!("git {head}")), "{text}");
}
