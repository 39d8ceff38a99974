//! Test support: a real `bramble server` on a loopback port, the real
//! kubectl and curl against it.

pub mod boards;
pub mod fixtures;
pub mod registry;

use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// True when a prerequisite is missing and the test should be skipped. In CI
/// (CI=true) a missing prerequisite fails the test instead.
pub fn missing(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return false;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{tool} is required for this test but is not installed (run .ci/run to install it)");
    }
    eprintln!("skipping: {tool} is not installed");
    true
}

/// Runs `cmd`, fails the test with its stderr unless it exits 0; its stdout.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// GET `url` with curl (3 s at most); the body, trimmed, on success.
pub fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "3", url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server with the busybox test image imported, and the image's name;
/// None when a tool is missing (a failure under CI=true).
pub fn server_with_busybox() -> Option<(Server, String)> {
    server_with_busybox_and(&[])
}

/// The `containers:` of a pod template (six spaces in) running the seed's
/// kubia: busybox httpd answering with its hostname on 8080, Ready once it
/// listens.
pub fn hostname_server(image: &str) -> String {
    format!(
        "      containers:
      - name: httpd
        image: {image}
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
"
    )
}

/// `server_with_busybox` with more server flags.
pub fn server_with_busybox_and(extra: &[&str]) -> Option<(Server, String)> {
    if missing("kubectl") {
        return None;
    }
    let fx = fixtures::busybox_image()?;
    let s = Server::start_with(extra);
    s.import_image(&fx.oci_archive);
    Some((s, fx.reference.clone()))
}

/// A board config (for `--config`) that allows hostPath volumes under the
/// tests' temporary directory, which a board refuses by default.
pub fn host_paths_in_tmp_config() -> String {
    let tmp = env!("CARGO_TARGET_TMPDIR");
    let path = format!("{tmp}/allow-tmp-host-paths.toml");
    // Written aside and renamed: tests running at once never read half a file.
    let part = format!(
        "{path}.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    );
    let text = format!("[security]\nhost_path_prefixes = [\"{tmp}\"]\n");
    std::fs::write(&part, text).unwrap();
    std::fs::rename(&part, &path).unwrap();
    path
}

/// A fresh directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn bramble() -> &'static str {
    env!("CARGO_BIN_EXE_bramble")
}

pub struct Server {
    pub dir: TempDir,
    pub port: u16,
    child: Option<Child>,
    pub kubeconfig: PathBuf,
    cache: PathBuf,
    pub token: String,
    /// This server's own pod network on the shared machine.
    pub net: NetSlot,
}

/// A pod network no other test server on this machine uses (any test
/// process): slot N is held by a lock on /tmp/bramble-it-net/N.lock and
/// gives bridge and nft table `brit<N>` and cluster CIDR 10.(200+N/16).(N%16*16).0/20.
pub struct NetSlot {
    _lock: std::fs::File,
    pub bridge: String,
    pub cluster_cidr: String,
}

impl NetSlot {
    pub fn take() -> NetSlot {
        let dir = PathBuf::from("/tmp/bramble-it-net");
        std::fs::create_dir_all(&dir).unwrap();
        for n in 0..128u32 {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{n}.lock")))
                .unwrap();
            if f.try_lock().is_ok() {
                return NetSlot {
                    _lock: f,
                    bridge: format!("brit{n}"),
                    cluster_cidr: format!("10.{}.{}.0/20", 200 + n / 16, n % 16 * 16),
                };
            }
        }
        panic!("all 128 test pod networks are in use");
    }

    /// The `bramble server` flags that put its pods on this slot.
    pub fn args(&self) -> [&str; 4] {
        [
            "--bridge",
            &self.bridge,
            "--cluster-cidr",
            &self.cluster_cidr,
        ]
    }

    /// The first pod CIDR's gateway: the bridge address of the test node.
    pub fn gateway(&self) -> String {
        let base = self.cluster_cidr.split('/').next().unwrap();
        format!("{}.1", base.rsplit_once('.').unwrap().0)
    }
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        let dir = TempDir::new("server");
        let port = free_port();
        let mut s = Server {
            kubeconfig: dir.0.join("kubeconfig"),
            cache: dir.0.join("kube-cache"),
            dir,
            port,
            child: None,
            token: String::new(),
            net: NetSlot::take(),
        };
        s.spawn(extra);
        let kc = Command::new(bramble())
            .args(["kubeconfig", "--data-dir"])
            .arg(s.data_dir())
            .args(["--server", &s.url()])
            .output()
            .unwrap();
        assert!(
            kc.status.success(),
            "bramble kubeconfig: {}",
            String::from_utf8_lossy(&kc.stderr)
        );
        std::fs::write(&s.kubeconfig, &kc.stdout).unwrap();
        s.token = std::fs::read_to_string(s.data_dir().join("tls/token"))
            .unwrap()
            .trim()
            .to_string();
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Starts the daemon and waits until /readyz answers.
    pub fn spawn(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join("server.log"))
            .unwrap();
        let child = Command::new(bramble())
            .args(["server", "--data-dir"])
            .arg(self.data_dir())
            .args([
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--node-name",
                "test-node",
                "--cluster-listen",
                "127.0.0.1:0",
            ])
            .args(self.net.args())
            .args(extra)
            .env("RUST_LOG", "info,bramble=debug")
            // `--board NAME` finds the source tree's board configs.
            .env(
                "BRAMBLE_BOARD_CONFIGS",
                concat!(env!("CARGO_MANIFEST_DIR"), "/board-configs"),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.ready() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "bramble server exited with {status} during start:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "bramble server did not become ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ready(&self) -> bool {
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--cacert"])
            .arg(self.data_dir().join("tls/ca.crt"))
            .arg(format!("{}/readyz", self.url()))
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`, as a power cut or OOM kill would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        unsafe_kill(c.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s.code();
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, "")
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut c = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    /// Runs kubectl and returns its stdout; fails the test on a non-zero exit.
    #[track_caller]
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[track_caller]
    pub fn apply(&self, manifest: &str) -> String {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], manifest);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A raw HTTPS request with curl; returns the status code and the body
    /// parsed as JSON (Null when it is not JSON).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        self.request_as(Some(&self.token.clone()), method, path, content_type, body)
    }

    pub fn request_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        let (code, text) = self.request_text(token, method, path, content_type, body);
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn request_text(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-X", method, "--cacert"])
            .arg(self.data_dir().join("tls/ca.crt"))
            .args(["-w", "\n%{http_code}"]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if let Some(ct) = content_type {
            cmd.args(["-H", &format!("Content-Type: {ct}")]);
        }
        if !body.is_empty() {
            cmd.args(["--data-binary", "@-"]);
        }
        let mut c = cmd
            .arg(format!("{}{path}", self.url()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(body).unwrap();
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// `bramble image import ARCHIVE` into this server's data dir (the
    /// daemon may be running); returns what the command printed.
    #[track_caller]
    pub fn import_image(&self, archive: &std::path::Path) -> String {
        let out = Command::new(bramble())
            .args(["image", "import"])
            .arg(archive)
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bramble image import {}: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `args` in pod `pod` through kubectl exec; its stdout, trimmed,
    /// if it succeeded. (busybox's wget crashes with -T, so the time limit,
    /// 30 s, is `timeout`'s.)
    pub fn exec_in(&self, pod: &str, args: &[&str]) -> Option<String> {
        let out = Command::new("timeout")
            .args(["30", "kubectl", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(["exec", pod, "--"])
            .args(args)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The pods labelled app=APP that are Running and not being deleted.
    pub fn running_of(&self, app: &str) -> Vec<Value> {
        let out = self.kubectl_ok(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .cloned()
            .collect()
    }

    /// The PID of the first container of the pod with `uid`, from the
    /// runtime's record.
    pub fn container_pid(&self, uid: &str) -> u32 {
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(
                self.data_dir()
                    .join(format!("runtime/containers/{uid}-c-0/meta.json")),
            )
            .unwrap(),
        )
        .unwrap();
        meta["pid"].as_u64().unwrap() as u32
    }

    /// A pod of the default namespace as JSON, via kubectl.
    #[track_caller]
    pub fn pod(&self, name: &str) -> Value {
        serde_json::from_str(&self.kubectl_ok(&["get", "pod", name, "-o", "json"])).unwrap()
    }

    /// Waits until the pod's phase is `phase`; returns the pod.
    #[track_caller]
    pub fn wait_phase(&self, name: &str, phase: &str, secs: u64) -> Value {
        wait_for(secs, &format!("pod {name} {phase}"), || {
            let p = self.pod(name);
            (p["status"]["phase"] == phase).then_some(p)
        })
    }

    /// GET that must succeed; returns the JSON body.
    #[track_caller]
    pub fn get_json(&self, path: &str) -> Value {
        let (code, v) = self.request("GET", path, None, b"");
        assert_eq!(code, 200, "GET {path}: {v}");
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
        reset_runtime(&self.data_dir());
    }
}

/// The slot's bridge, table and routes go with it (after its server, which
/// holds it in a field, or in a variable declared before the server's).
impl Drop for NetSlot {
    fn drop(&mut self) {
        let _ = Command::new(bramble())
            .args(["network", "cleanup", "--bridge", &self.bridge])
            .args(["--cluster-cidr", &self.cluster_cidr])
            .status();
    }
}

/// Stops what a test server's runtime left running: containers outlive the
/// daemon by design (and the runtime helper with them), so a test that ends
/// must stop them, unmount what is left and remove the pods' cgroups.
pub fn reset_runtime(data_dir: &std::path::Path) {
    let data = data_dir.display().to_string();
    let pods: Vec<String> = std::fs::read_dir(data_dir.join("runtime/sandboxes"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let cgroups: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path())
        .chain([PathBuf::from("/sys/fs/cgroup")])
        .flat_map(|h| pods.iter().map(move |uid| h.join("bramble").join(uid)))
        .filter(|p| p.is_dir())
        .collect();
    // The helper first, so it restarts nothing; then every process of the pods.
    for proc_dir in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(proc_dir.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("runtime-helper") && cmdline.contains(&data) {
            unsafe_kill(
                proc_dir.file_name().to_string_lossy().parse().unwrap_or(0),
                "KILL",
            );
        }
    }
    for cg in &cgroups {
        for procs in walk(cg).iter().map(|d| d.join("cgroup.procs")) {
            for pid in std::fs::read_to_string(procs).unwrap_or_default().lines() {
                unsafe_kill(pid.parse().unwrap_or(0), "KILL");
            }
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&data))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").args(["-l", &m]).status();
    }
    for cg in &cgroups {
        let mut dirs = walk(cg);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A directory and every directory below it.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&e.path()));
        }
    }
    out
}

pub fn unsafe_kill(pid: u32, signal: &str) {
    if pid == 0 {
        return;
    }
    // Often the process is gone already: that is not news.
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Polls `f` until it returns Some, or fails after `secs`.
#[track_caller]
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
