//! Federation: boards join one cluster. Each agent is a `bramble agent`
//! process in its own network namespace on a bridge this test creates and
//! removes; the server listens for boards on the bridge's address and serves
//! kubectl on 127.0.0.1. No traffic leaves those namespaces and the bridge.

use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use bramble::cluster::{protocol, tls};

use crate::support::boards::{Agent, Net, ip, nodes, ready, token};
use crate::support::{Server, TempDir, fixtures, missing, reset_runtime, wait_for};

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

/// A ReplicationController of `replicas` pods labelled app=NAME that sleep.
fn spread_rc(name: &str, replicas: usize, image: &str) -> String {
    format!(
        "apiVersion: v1
kind: ReplicationController
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{app: {name}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {image}
        imagePullPolicy: Never
        command: [sh, -c, 'sleep 3600']
"
    )
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
    // An address only this board's namespace holds, listed before eth0's.
    ip(&[
        "-n",
        &net.namespaces[1],
        "addr",
        "add",
        "10.255.0.1/32",
        "dev",
        "lo",
    ]);
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
        // Board 1 has an address on lo too, listed first; the boards are
        // reached at the one they reach the server from.
        assert_eq!(
            node["status"]["addresses"][0],
            serde_json::json!({"type": "InternalIP", "address": net.board(i)}),
        );
    }

    let (code, metrics) = server.request_text(Some(&server.token), "GET", "/metrics", None, b"");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("\nbramble_cluster_boards 3\n"),
        "{metrics}"
    );
    let own = all
        .iter()
        .find(|n| n["metadata"]["name"] == "test-node")
        .unwrap();
    assert_eq!(
        own["spec"]["taints"],
        serde_json::json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    );
    // The boards reach the server where it listens for them: its address.
    assert_eq!(
        own["status"]["addresses"][0],
        serde_json::json!({"type": "InternalIP", "address": net.host()}),
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

    // An rc of 6 spreads over the three boards, none on the control plane.
    server.apply(&spread_rc("spread", 6, &fx.reference));
    let placed = wait_for(90, "6 Running replicas", || {
        let pods = server.running_of("spread");
        (pods.len() == 6).then_some(pods)
    });
    for board in ["board-0", "board-1", "board-2"] {
        let on = placed
            .iter()
            .filter(|p| p["spec"]["nodeName"] == board)
            .count();
        assert_eq!(on, 2, "{board}: {placed:?}");
    }
    server.kubectl_ok(&["delete", "rc", "spread"]);

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

#[test]
fn a_dead_board_s_pods_come_back_elsewhere_and_it_reconciles_on_return() {
    let Some(fx) = prerequisites() else { return };
    let net = Net::new(3);
    let dir = TempDir::new("fed-timings");
    let config = dir.0.join("board.toml");
    let (grace, eviction) = (15, 5);
    std::fs::write(
        &config,
        format!("[node_failure]\nnode_monitor_grace = \"{grace}s\"\npod_eviction_timeout = \"{eviction}s\"\n"),
    )
    .unwrap();
    let server = Server::start_with(&[
        "--cluster-listen",
        &format!("{}:6444", net.host()),
        "--control-plane-only",
        "--config",
        config.to_str().unwrap(),
    ]);
    let token = token(&server);
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start(&net, i, &token, &fx.oci_archive))
        .collect();
    wait_for(60, "4 Ready nodes", || {
        let n = nodes(&server);
        (n.len() == 4 && n.iter().all(ready)).then_some(())
    });
    server.apply(&spread_rc("web", 6, &fx.reference));
    let before = wait_for(90, "6 Running replicas", || {
        let pods = server.running_of("web");
        (pods.len() == 6).then_some(pods)
    });
    let on_dead: Vec<String> = before
        .iter()
        .filter(|p| p["spec"]["nodeName"] == "board-0")
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!on_dead.is_empty(), "{before:?}");

    // kill -9 of board-0's daemon: its containers keep running there.
    let killed = std::time::Instant::now();
    agents[0].kill9();
    let budget = grace + eviction + 5;
    wait_for(budget, "replacements Running on the other boards", || {
        let pods = server.running_of("web");
        let elsewhere = pods
            .iter()
            .filter(|p| p["spec"]["nodeName"] != "board-0")
            .count();
        (elsewhere == 6).then_some(())
    });
    eprintln!("replacements Running {:?} after the kill", killed.elapsed());
    let dead: Value =
        serde_json::from_str(&server.kubectl_ok(&["get", "node", "board-0", "-o", "json"]))
            .unwrap();
    let taints = dead["spec"]["taints"].to_string();
    assert!(
        taints.contains("node.kubernetes.io/unreachable"),
        "{taints}"
    );
    assert!(!ready(&dead));

    // The board comes back: the pods moved away stop there, none is left
    // twice, and the node is Ready again.
    agents[0].spawn();
    wait_for(60, "board-0 Ready again", || {
        nodes(&server)
            .iter()
            .any(|n| n["metadata"]["name"] == "board-0" && ready(n))
            .then_some(())
    });
    wait_for(60, "the evicted pods gone", || {
        let out = server.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
        on_dead
            .iter()
            .all(|name| !out.contains(&format!("pod/{name}\n")))
            .then_some(())
    });
    let after = server.running_of("web");
    assert_eq!(after.len(), 6, "{after:?}");
    // On the board itself, only what the server assigns it still runs.
    let mut wanted: Vec<String> = after
        .iter()
        .filter(|p| p["spec"]["nodeName"] == "board-0")
        .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
        .collect();
    wanted.sort();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut held = sandboxes(&agents[0].data_dir());
        held.sort();
        if held == wanted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "board-0 holds sandboxes {held:?}, the server assigns it {wanted:?}\n{}\nits runtime helper:\n{}",
            agents[0].log(),
            std::fs::read_to_string(agents[0].data_dir().join("runtime/helper.log"))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pod uids whose sandboxes the board's runtime still holds.
fn sandboxes(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir.join("runtime/sandboxes"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
