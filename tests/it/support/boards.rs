//! Boards for multi-board tests: a bridge and a network namespace per
//! board that the test creates and removes, and `bramble agent` processes in
//! them. No traffic leaves those namespaces and the bridge.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Server, TempDir, bramble, reset_runtime, run_ok, unsafe_kill, wait_for};

#[track_caller]
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bridge on the host and one network namespace per board, named uniquely
/// for this test run; everything is removed on drop, even after a failure.
pub struct Net {
    id: usize,
    bridge: Option<String>,
    pub namespaces: Vec<String>,
}

impl Net {
    pub fn new(boards: usize) -> Net {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = (std::process::id() as usize % 1000) * 10 + N.fetch_add(1, Ordering::SeqCst) % 10;
        let mut net = Net {
            id,
            bridge: None,
            namespaces: Vec::new(),
        };
        let bridge = format!("bbr{id}");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        net.bridge = Some(bridge.clone());
        ip(&["addr", "add", &format!("{}/24", net.host()), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..boards {
            let ns = format!("bns{id}-{i}");
            ip(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            let veth = net.veth(i);
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["link", "set", &veth, "master", &bridge, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.board(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    pub fn prefix(&self) -> String {
        format!("10.{}.{}", 200 + self.id / 250 % 50, self.id % 250)
    }

    /// The host's address on the bridge: where the server listens for boards.
    pub fn host(&self) -> String {
        format!("{}.1", self.prefix())
    }

    /// The host's end of board `i`'s link: down is a partition.
    pub fn veth(&self, i: usize) -> String {
        format!("bve{}-{i}", self.id)
    }

    pub fn board(&self, i: usize) -> String {
        format!("{}.{}", self.prefix(), 10 + i)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and so the pair.
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if let Some(b) = &self.bridge {
            let _ = Command::new("ip").args(["link", "del", b]).status();
        }
    }
}

/// A `bramble agent` in a namespace of `Net`, with the busybox image.
pub struct Agent {
    pub dir: TempDir,
    pub name: String,
    pub args: Vec<String>,
    child: Option<Child>,
}

impl Agent {
    pub fn start(net: &Net, i: usize, token: &str, image: &Path) -> Agent {
        let mut a = Agent::new(net, i, token, &format!("board-{i}"));
        run_ok(
            Command::new(bramble())
                .args(["image", "import"])
                .arg(image)
                .arg("--data-dir")
                .arg(a.data_dir()),
        );
        a.args.extend([
            "--node-label".to_string(),
            format!("bramble.test/board=board-{i}"),
        ]);
        a.spawn();
        a
    }

    pub fn new(net: &Net, i: usize, token: &str, name: &str) -> Agent {
        let dir = TempDir::new(&format!("agent-{name}"));
        let args = [
            &format!("--net=/run/netns/{}", net.namespaces[i]),
            "--",
            bramble(),
            "agent",
            "--server",
            &format!("{}:6444", net.host()),
            "--token",
            token,
            "--node-name",
            name,
            "--data-dir",
            &dir.0.join("data").display().to_string(),
        ]
        .map(str::to_string)
        .to_vec();
        Agent {
            dir,
            name: name.to_string(),
            args,
            child: None,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join("agent.log"))
            .unwrap();
        self.child = Some(
            Command::new("nsenter")
                .args(&self.args)
                .env("RUST_LOG", "info,bramble=debug")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("agent.log")).unwrap_or_default()
    }

    /// kill -9 of the daemon; its containers keep running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() {
                assert!(
                    Instant::now() < deadline,
                    "agent did not stop:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Waits for the agent to exit on its own; its exit code.
    pub fn exit_code(&mut self, secs: u64) -> Option<i32> {
        let c = self.child.as_mut().expect("running");
        let status = wait_for(secs, "the agent to exit", || c.try_wait().unwrap());
        self.child = None;
        status.code()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- agent {} log ---\n{}", self.name, self.log());
        }
        reset_runtime(&self.data_dir());
    }
}

pub fn token(server: &Server) -> String {
    run_ok(
        Command::new(bramble())
            .args(["token", "--data-dir"])
            .arg(server.data_dir()),
    )
    .trim()
    .to_string()
}

pub fn ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

pub fn nodes(server: &Server) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&server.kubectl_ok(&["get", "nodes", "-o", "json"])).unwrap();
    v["items"].as_array().unwrap().clone()
}
