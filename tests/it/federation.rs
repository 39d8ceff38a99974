//! Federation: boards join one cluster. Each agent is a `bramble agent`
//! process in its own network namespace on a bridge this test creates and
//! removes; the server listens for boards on the bridge's address and serves
//! kubectl on 127.0.0.1. No traffic leaves those namespaces and the bridge.

use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bramble::cluster::{protocol, tls};

use crate::support::{
    Server, TempDir, bramble, fixtures, missing, reset_runtime, unsafe_kill, wait_for,
};

#[track_caller]
fn ip(args: &[&str]) {
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
struct Net {
    id: usize,
    bridge: Option<String>,
    namespaces: Vec<String>,
}

impl Net {
    fn new(boards: usize) -> Net {
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

    fn prefix(&self) -> String {
        format!("10.{}.{}", 200 + self.id / 250 % 50, self.id % 250)
    }

    /// The host's address on the bridge: where the server listens for boards.
    fn host(&self) -> String {
        format!("{}.1", self.prefix())
    }

    /// The host's end of board `i`'s link: down is a partition.
    fn veth(&self, i: usize) -> String {
        format!("bve{}-{i}", self.id)
    }

    fn board(&self, i: usize) -> String {
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
struct Agent {
    dir: TempDir,
    name: String,
    args: Vec<String>,
    child: Option<Child>,
}

impl Agent {
    fn start(net: &Net, i: usize, token: &str, image: &Path) -> Agent {
        let mut a = Agent::new(net, i, token, &format!("board-{i}"));
        let out = Command::new(bramble())
            .args(["image", "import"])
            .arg(image)
            .arg("--data-dir")
            .arg(a.data_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        a.args.extend([
            "--node-label".to_string(),
            format!("bramble.test/board=board-{i}"),
        ]);
        a.spawn();
        a
    }

    fn new(net: &Net, i: usize, token: &str, name: &str) -> Agent {
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

    fn data_dir(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    fn spawn(&mut self) {
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("agent.log")).unwrap_or_default()
    }

    /// SIGTERM and wait for the exit.
    fn terminate(&mut self) {
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
    fn exit_code(&mut self, secs: u64) -> Option<i32> {
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

fn token(server: &Server) -> String {
    let out = Command::new(bramble())
        .args(["token", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn nodes(server: &Server) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&server.kubectl_ok(&["get", "nodes", "-o", "json"])).unwrap();
    v["items"].as_array().unwrap().clone()
}

fn pinned_pod(name: &str, node: &str, image: &str, command: &str, volume: Option<&Path>) -> String {
    let (mounts, volumes) = match volume {
        Some(p) => (
            "    volumeMounts: [{name: v, mountPath: /out}]\n".to_string(),
            format!(
                "  volumes: [{{name: v, hostPath: {{path: {}, type: DirectoryOrCreate}}}}]\n",
                p.display()
            ),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    imagePullPolicy: Never
    command: [sh, -c, '{command}']
{mounts}{volumes}"
    )
}

/// What a connection to the cluster port gets for `bytes` sent after the
/// TLS handshake (no client certificate, as a joining board): the server
/// must end the connection.
fn send_raw_after_handshake(net: &Net, hash: &str, bytes: &[u8]) -> std::io::Result<usize> {
    let tcp = std::net::TcpStream::connect(format!("{}:6444", net.host()))?;
    tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
    let conn =
        rustls::ClientConnection::new(tls::client_config(hash, None).unwrap(), tls::server_name())
            .unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(bytes)?;
    s.flush()?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
}

fn prerequisites() -> Option<&'static fixtures::Fixture> {
    if missing("kubectl") || missing("ip") || missing("nsenter") {
        return None;
    }
    fixtures::busybox_image()
}

#[test]
fn boards_join_run_their_pods_and_bad_peers_are_refused() {
    let Some(fx) = prerequisites() else { return };
    let net = Net::new(3);
    let server = Server::start_with(&[
        "--cluster-listen",
        &format!("{}:6444", net.host()),
        "--control-plane-only",
    ]);
    server.import_image(&fx.oci_archive);
    let token = token(&server);
    let agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start(&net, i, &token, &fx.oci_archive))
        .collect();

    let all = wait_for(60, "4 Ready nodes", || {
        let n = nodes(&server);
        (n.len() == 4 && n.iter().all(ready)).then_some(n)
    });
    for (i, a) in agents.iter().enumerate() {
        let node = all
            .iter()
            .find(|n| n["metadata"]["name"] == a.name)
            .unwrap();
        let labels = &node["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], a.name.as_str());
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], bramble::node::go_arch());
        assert_eq!(labels["bramble.test/board"], a.name.as_str());
        let addresses = node["status"]["addresses"].to_string();
        assert!(addresses.contains(&net.board(i)), "{addresses}");
    }

    let own = all
        .iter()
        .find(|n| n["metadata"]["name"] == "test-node")
        .unwrap();
    assert_eq!(
        own["spec"]["taints"],
        serde_json::json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    );

    // Two pods per board, each bound to it; their status comes back.
    for k in 0..6 {
        let node = format!("board-{}", k % 3);
        server.apply(&pinned_pod(
            &format!("p{k}"),
            &node,
            &fx.reference,
            "echo hi from $(hostname); sleep 3600",
            None,
        ));
    }
    for k in 0..6 {
        let p = server.wait_phase(&format!("p{k}"), "Running", 90);
        assert_eq!(p["spec"]["nodeName"], format!("board-{}", k % 3));
    }
    let wide = server.kubectl_ok(&["get", "pods", "-o", "wide"]);
    for k in 0..6 {
        let line = wide
            .lines()
            .find(|l| l.starts_with(&format!("p{k} ")))
            .unwrap();
        assert!(
            line.contains("Running") && line.contains(&format!("board-{}", k % 3)),
            "{wide}"
        );
    }

    // Logs of pods on boards come through the cluster link, -f too.
    let logs = server.kubectl_ok(&["logs", "p4"]);
    assert_eq!(logs.trim(), "hi from p4");
    server.apply(&pinned_pod(
        "counter",
        "board-2",
        &fx.reference,
        "for i in 1 2 3; do echo line $i; sleep 1; done",
        None,
    ));
    server.wait_phase("counter", "Running", 60);
    let followed = server.kubectl_ok(&["logs", "-f", "counter"]);
    assert_eq!(followed, "line 1\nline 2\nline 3\n");

    // So does exec: output, error output and the exit code.
    let out = server.kubectl(&[
        "exec",
        "p5",
        "--",
        "sh",
        "-c",
        "echo out $(hostname); echo err >&2; exit 3",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out p5\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err"),
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // A wrong token: refused, and the agent says why and stops.
    let hash = token
        .trim_start_matches("K10")
        .split("::")
        .next()
        .unwrap()
        .to_string();
    let mut intruder = Agent::new(&net, 0, &format!("K10{hash}::not-the-secret"), "intruder");
    intruder.spawn();
    assert_ne!(intruder.exit_code(30), Some(0));
    assert!(
        intruder.log().contains("wrong join token"),
        "{}",
        intruder.log()
    );
    // The right token, but the server's own name: refused too.
    let mut impostor = Agent::new(&net, 0, &token, "test-node");
    impostor.spawn();
    assert_ne!(impostor.exit_code(30), Some(0));
    assert!(
        impostor.log().contains("the server's own node name"),
        "{}",
        impostor.log()
    );

    // A malformed frame, an oversized one and bytes that are not TLS at all.
    let malformed = [0, 0, 0, 1, 200];
    let oversized = u32::try_from(protocol::MAX_FRAME + 1)
        .unwrap()
        .to_be_bytes();
    for bytes in [&malformed[..], &oversized[..]] {
        let got = send_raw_after_handshake(&net, &hash, bytes);
        assert!(matches!(got, Ok(0) | Err(_)), "{got:?}");
    }
    let mut tcp = std::net::TcpStream::connect(format!("{}:6444", net.host())).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = tcp.read_to_end(&mut reply);
    let log = server.log();
    for what in ["wrong join token", "cannot decode frame", "exceeds the"] {
        assert!(log.contains(what), "server log lacks {what:?}:\n{log}");
    }

    // The others are still served: a new pod on a board runs.
    server.apply(&pinned_pod(
        "after",
        "board-1",
        &fx.reference,
        "sleep 3600",
        None,
    ));
    server.wait_phase("after", "Running", 60);
    assert!(nodes(&server).iter().all(ready));
}

#[test]
fn agents_keep_their_pods_across_server_and_agent_restarts() {
    let Some(fx) = prerequisites() else { return };
    let net = Net::new(1);
    let cluster = format!("{}:6444", net.host());
    let config = crate::support::host_paths_in_tmp_config();
    let mut server = Server::start_with(&["--cluster-listen", &cluster, "--config", &config]);
    let token = token(&server);
    let mut agent = Agent::start(&net, 0, &token, &fx.oci_archive);
    let out = agent.dir.0.join("out");
    // Each start of the container adds a line: starts are counted on the board.
    server.apply(&pinned_pod(
        "keeper",
        "board-0",
        &fx.reference,
        "echo started >> /out/starts; sleep 3600",
        Some(&out),
    ));
    let before = server.wait_phase("keeper", "Running", 90);
    let started =
        |p: &Value| p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"].clone();
    let starts = || {
        std::fs::read_to_string(out.join("starts"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(starts(), 1);

    // The server restarts: the agent reconnects and nothing restarts.
    server.terminate();
    server.spawn(&["--cluster-listen", &cluster]);
    wait_for(30, "the agent to reconnect", || {
        (server.log().matches("board board-0 connected").count() == 2).then_some(())
    });
    wait_for(30, "board-0 Ready", || {
        nodes(&server)
            .iter()
            .any(|n| n["metadata"]["name"] == "board-0" && ready(n))
            .then_some(())
    });
    let after = server.wait_phase("keeper", "Running", 10);
    assert_eq!(started(&after), started(&before));
    assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(starts(), 1);

    // The server goes away, and the board reboots (its runtime and
    // containers gone): the agent starts the pod again from its own store.
    server.terminate();
    agent.terminate();
    reset_runtime(&agent.data_dir());
    agent.spawn();
    wait_for(60, "the pod started again with the server down", || {
        (starts() == 2).then_some(())
    });

    // The server comes back and learns the new state.
    server.spawn(&["--cluster-listen", &cluster]);
    wait_for(60, "the new start reported", || {
        let p = server.pod("keeper");
        (p["status"]["phase"] == "Running" && started(&p) != started(&before)).then_some(())
    });
    assert_eq!(starts(), 2, "reconnecting started nothing more");
}

#[test]
fn a_partitioned_board_keeps_its_pods_and_stops_those_moved_away_once_healed() {
    let Some(fx) = prerequisites() else { return };
    let net = Net::new(1);
    let config = crate::support::host_paths_in_tmp_config();
    let server = Server::start_with(&[
        "--cluster-listen",
        &format!("{}:6444", net.host()),
        "--config",
        &config,
    ]);
    let token = token(&server);
    let agent = Agent::start(&net, 0, &token, &fx.oci_archive);
    let out = agent.dir.0.join("out");
    // Each pod notes its starts and its stop (SIGTERM) in a file of its own.
    let command = |name: &str| {
        format!(
            "echo started >> /out/{name}; trap \"echo stopped >> /out/{name}; exit 0\" TERM; sleep 3600 & wait"
        )
    };
    for name in ["stays", "moved"] {
        server.apply(&pinned_pod(
            name,
            "board-0",
            &fx.reference,
            &command(name),
            Some(&out),
        ));
    }
    server.wait_phase("stays", "Running", 90);
    server.wait_phase("moved", "Running", 90);
    let marks = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();

    // The board's link goes down: the server notices the silence.
    ip(&["link", "set", &net.veth(0), "down"]);
    wait_for(90, "the server to drop the silent board", || {
        server.log().contains("nothing heard for").then_some(())
    });
    // Meanwhile the pod is taken away from the board, as an eviction would.
    server.kubectl_ok(&["delete", "pod", "moved", "--force", "--grace-period=0"]);
    wait_for(90, "the board to notice the partition", || {
        agent.log().contains("cluster link: ").then_some(())
    });
    assert_eq!(marks("stays"), "started\n", "a partition stops nothing");
    assert_eq!(marks("moved"), "started\n", "the board cannot know yet");

    // Healed: the board reconnects, stops what is no longer its own, keeps the rest.
    ip(&["link", "set", &net.veth(0), "up"]);
    wait_for(120, "the moved pod stopped on the board", || {
        marks("moved").contains("stopped").then_some(())
    });
    assert_eq!(marks("stays"), "started\n");
    let stays = server.wait_phase("stays", "Running", 30);
    assert_eq!(stays["status"]["containerStatuses"][0]["restartCount"], 0);
    let gone = server.kubectl(&["get", "pod", "moved"]);
    assert!(!gone.status.success(), "moved must stay deleted");
}
