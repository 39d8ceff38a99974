//! Network: request latency and throughput from a client pod to a server pod
//! through a Service's ClusterIP beside the same to the pod's IP directly
//! (in the same run), on one board and across two (an agent in a network
//! namespace on a bridge made here, host-gw routes between them), and the
//! time from an EndpointSlice change to the nftables rules carrying it.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{Daemon, bin, ms};

const IMAGE: &str = "bramble.local/kubia:1";

/// A pod of the example image; bound to `node` unless it is empty.
fn pod(name: &str, node: &str, labels: &str, cmd: &str) -> String {
    let bind = match node {
        "" => String::new(),
        n => format!(r#""nodeName":"{n}","#),
    };
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{{labels}}}}},"spec":{{{bind}"terminationGracePeriodSeconds":0,"containers":[{{"name":"c","image":"{IMAGE}","imagePullPolicy":"IfNotPresent","command":["sh","-c","{cmd}"]}}]}}}}"#
    )
}

/// A second board: an agent in a network namespace on a bridge of its own,
/// all of it removed on drop.
struct Board {
    dir: std::path::PathBuf,
    ns: String,
    bridge: String,
    agent: Option<std::process::Child>,
}

const HOST: &str = "10.254.77.1";
const BOARD: &str = "10.254.77.10";

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {}", args.join(" "));
}

impl Board {
    /// The bridge (the host's address on it is where the server listens for
    /// boards) and the board's namespace.
    fn new() -> Board {
        let id = std::process::id() % 10000;
        let (ns, bridge) = (format!("bbench{id}"), format!("bbbr{id}"));
        let dir = std::env::temp_dir().join(format!("bramble-bench-board-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{HOST}/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        ip(&["netns", "add", &ns]);
        let veth = format!("bbve{id}");
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["link", "set", &veth, "master", &bridge, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{BOARD}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        Board {
            dir,
            ns,
            bridge,
            agent: None,
        }
    }

    /// Runs `bramble agent` in the namespace with the example image.
    fn join(&mut self, token: &str, archive: &std::path::Path) {
        let data = self.dir.join("data");
        let ok = Command::new(bin())
            .args(["image", "import"])
            .arg(archive)
            .arg("--data-dir")
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "bramble image import failed");
        let agent = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg("--")
            .arg(bin())
            .args([
                "agent",
                "--server",
                &format!("{HOST}:6444"),
                "--token",
                token,
            ])
            .args(["--node-name", "board-1", "--data-dir"])
            .arg(&data)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("nsenter runs");
        self.agent = Some(agent);
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        let _ = Command::new("pkill")
            .args([
                "-f",
                &format!("runtime-helper --root {}", self.dir.display()),
            ])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Wall-clock time of `script` run by sh in pod `client` through kubectl exec.
fn timed_exec(kubeconfig: &std::path::Path, script: &str) -> Duration {
    let t0 = Instant::now();
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["exec", "client", "--", "sh", "-c", script])
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t0.elapsed()
}

fn pod_ip(d: &Daemon, name: &str) -> String {
    loop {
        let (_, v) = d.call(
            "GET",
            &format!("/api/v1/namespaces/default/pods/{name}"),
            None,
        );
        let ready = v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if let (true, Some(ip)) = (ready, v["status"]["podIP"].as_str()) {
            return ip.to_string();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run() {
    println!("## Network (client pod -> server pod, busybox wget and httpd)\n");
    one_board();
    across_boards();
    println!();
}

fn kubeconfig(d: &Daemon) -> std::path::PathBuf {
    let kubeconfig = d.dir.join("kubeconfig");
    let kc = Command::new(bin())
        .args(["kubeconfig", "--data-dir"])
        .arg(d.dir.join("data"))
        .args(["--server", &d.url])
        .output()
        .unwrap();
    std::fs::write(&kubeconfig, kc.stdout).unwrap();
    kubeconfig
}

/// Service web, a server pod (with a 256 MiB file) on `server_node` and a
/// client pod on `client_node`; once the ClusterIP answers the client:
/// (ClusterIP, server pod IP).
fn service_and_pods(
    d: &Daemon,
    kubeconfig: &std::path::Path,
    server_node: &str,
    client_node: &str,
) -> (String, String) {
    let (code, v) = d.call(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"selector":{"app":"web"},"ports":[{"port":80,"targetPort":8080}]}}"#),
    );
    assert_eq!(code, 201, "{v}");
    let cluster_ip = v["spec"]["clusterIP"].as_str().unwrap().to_string();
    d.create(&pod(
        "server",
        server_node,
        r#""app":"web""#,
        "mkdir -p /www && hostname > /www/index.html && busybox dd if=/dev/zero of=/www/big bs=1M count=256 2>/dev/null && exec httpd -f -p 8080 -h /www",
    ));
    d.create(&pod("client", client_node, "", "sleep 3600"));
    let server_ip = pod_ip(d, "server");
    pod_ip(d, "client");
    // Until the rules carry the endpoint, the ClusterIP rejects.
    while !Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "exec",
            "client",
            "--",
            "wget",
            "-qO-",
            &format!("http://{cluster_ip}/"),
        ])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    (cluster_ip, server_ip)
}

/// Prints latency and throughput through the Service beside direct.
fn measure(kubeconfig: &std::path::Path, cluster_ip: &str, server_ip: &str, what: &str) {
    // Rounds of n requests, direct and Service alternating, and the median
    // round of each: noise from the other core lands on both.
    let (n, rounds) = (100, 5);
    let lp = |body: &str| format!("i=0; while [ $i -lt {n} ]; do {body}; i=$((i+1)); done");
    let base = timed_exec(kubeconfig, &lp("true"));
    let per = |url: &str| {
        let t = timed_exec(kubeconfig, &lp(&format!("wget -qO- {url} >/dev/null")));
        t.saturating_sub(base) / n
    };
    let (mut direct, mut service) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        direct.push(per(&format!("http://{server_ip}:8080/")));
        service.push(per(&format!("http://{cluster_ip}/")));
    }
    direct.sort();
    service.sort();
    let (direct, service) = (direct[rounds / 2], service[rounds / 2]);
    println!(
        "- {what}: request latency, median of {rounds} alternating rounds of {n} sequential HTTP GETs (a new wget process and TCP connection each): pod -> pod {}, pod -> Service -> pod {} ({:.2}x)",
        ms(direct),
        ms(service),
        service.as_secs_f64() / direct.as_secs_f64()
    );
    // One 256 MiB download is over in about 0.1 s: the median of 5 each,
    // alternating, so that a burst of noise does not pick the winner.
    let one = timed_exec(kubeconfig, "true");
    let mbps = |url: &str| {
        let t = timed_exec(kubeconfig, &format!("wget -qO /dev/null {url}")).saturating_sub(one);
        256.0 / t.as_secs_f64()
    };
    let (mut direct, mut service) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        direct.push(mbps(&format!("http://{server_ip}:8080/big")));
        service.push(mbps(&format!("http://{cluster_ip}/big")));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (direct, service) = (median(&mut direct), median(&mut service));
    println!(
        "- {what}: throughput, median of 5 downloads of 256 MiB: pod -> pod {direct:.0} MiB/s, pod -> Service -> pod {service:.0} MiB/s ({:.2}x)",
        service / direct
    );
}

fn one_board() {
    let (d, _) = Daemon::start("network");
    let archive = super::pods::example_image(&d.dir);
    d.import(&archive);
    let kubeconfig = kubeconfig(&d);
    let (cluster_ip, server_ip) = service_and_pods(&d, &kubeconfig, "", "");
    measure(&kubeconfig, &cluster_ip, &server_ip, "one board");
    // Endpoint change -> rules: a second server; the slice shows it ready,
    // then the table has its DNAT. Both polled in one loop.
    d.create(&pod(
        "server2",
        "",
        r#""app":"web""#,
        "exec httpd -f -p 8080 -h /",
    ));
    let ip2 = pod_ip(&d, "server2");
    let (mut in_slice, mut in_rules) = (None, None);
    let (t0, mut polls) = (Instant::now(), 0u32);
    while (in_slice.is_none() || in_rules.is_none()) && t0.elapsed() < Duration::from_secs(30) {
        polls += 1;
        if in_slice.is_none() {
            let (_, v) = d.call(
                "GET",
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb",
                None,
            );
            if v.to_string().contains(&format!("\"{ip2}\"")) {
                in_slice = Some(Instant::now());
            }
        }
        if in_rules.is_none() {
            let out = Command::new("nft")
                .args(["list", "table", "ip", "bramble0"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains(&format!("dnat to {ip2}:")) {
                in_rules = Some(Instant::now());
            }
        }
    }
    match (in_slice, in_rules) {
        (Some(a), Some(b)) => println!(
            "- endpoint change to rules: the new endpoint in the EndpointSlice (API polled) then in the nft table (`nft list` polled): {} (one poll round: {})",
            ms(b.saturating_duration_since(a)),
            ms(t0.elapsed() / polls.max(1))
        ),
        _ => println!("- endpoint change to rules: not seen within 30 s"),
    }
    // The kubelet tears pods down after they leave the store: wait for it,
    // so that stopping the daemon leaves no container, veth or address.
    d.clear_pods();
    let sandboxes = d.dir.join("data/runtime/sandboxes");
    let t0 = Instant::now();
    while std::fs::read_dir(&sandboxes).is_ok_and(|mut e| e.next().is_some())
        && t0.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The server pod on a second board (an agent), the client on the server's
/// board: every request crosses the boards' link and a host-gw route.
fn across_boards() {
    let mut board = Board::new();
    let (d, _) = Daemon::start_with(
        "network-boards",
        &[
            "--cluster-listen",
            &format!("{HOST}:6444"),
            "--node-ip",
            HOST,
        ],
    );
    let archive = super::pods::example_image(&d.dir);
    d.import(&archive);
    let kubeconfig = kubeconfig(&d);
    board.join(&d.join_token(), &archive);
    let t0 = Instant::now();
    loop {
        let (_, v) = d.call("GET", "/api/v1/nodes/board-1", None);
        let ready = v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready && !v["spec"]["podCIDR"].is_null() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "board-1 did not join: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (cluster_ip, server_ip) = service_and_pods(&d, &kubeconfig, "board-1", "bench");
    measure(&kubeconfig, &cluster_ip, &server_ip, "across two boards");
    d.clear_pods();
    drop(board);
}
