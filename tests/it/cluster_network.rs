//! Pod networking and Services across boards: the seed's kubia. The server
//! runs in this test's host namespace with its own bridge and cluster CIDR
//! (support::NetSlot); two agents run in network namespaces on a bridge the
//! test creates (support::boards). Requests go only to those namespaces, to
//! the test bridge's own address and to pods inside them.

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

use crate::support::boards::{Agent, Net, nodes, ready, token};
use crate::support::{Server, TempDir, curl, fixtures, hostname_server, missing, run_ok, wait_for};

/// Three HTTP pods answering with their hostname, one per board.
fn kubia(image: &str, replicas: u32) -> String {
    let containers = hostname_server(image);
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: kubia}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: kubia}}}}
  template:
    metadata: {{labels: {{app: kubia}}}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {{matchLabels: {{app: kubia}}}}
            topologyKey: kubernetes.io/hostname
{containers}---
apiVersion: v1
kind: Service
metadata: {{name: kubia}}
spec:
  type: NodePort
  selector: {{app: kubia}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"
    )
}

/// A pod on `node` to run clients in (created after the Service, so it has
/// the Service's variables).
fn client(image: &str, node: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: {image}
    imagePullPolicy: Never
    command: [sleep, '3600']
"
    )
}

/// `ip` output as text (in namespace `ns` if given).
fn ip_text(ns: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    String::from_utf8(cmd.args(args).output().unwrap().stdout).unwrap()
}

/// What a board's namespace shows of the network: link names, routes and
/// the nftables ruleset.
fn board_state(ns: &str) -> (Vec<String>, String, String) {
    let links = ip_text(Some(ns), &["-o", "link"])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    let nft = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "ruleset"])
        .output()
        .unwrap();
    (
        links,
        ip_text(Some(ns), &["route"]),
        String::from_utf8(nft.stdout).unwrap(),
    )
}

/// (pod name, node, pod IP) of the Running kubia pods.
fn kubia_pods(s: &Server) -> Vec<(String, String, String)> {
    s.running_of("kubia")
        .iter()
        .map(|p| {
            let f = |ptr: &str| {
                p.pointer(ptr)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            (f("/metadata/name"), f("/spec/nodeName"), f("/status/podIP"))
        })
        .collect()
}

fn ready_endpoints(s: &Server) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(&s.kubectl_ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=kubia",
        "-o",
        "json",
    ]))
    .unwrap();
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
        .collect()
}

/// The pod names answering `n` requests to `url`; panics on a failed one.
fn answers(url: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| curl(url).unwrap_or_else(|| panic!("GET {url} failed")))
        .collect()
}

#[test]
fn kubia_spreads_over_boards_behind_a_node_port_and_pods_talk_across_boards() {
    if missing("kubectl") || missing("ip") || missing("nsenter") || missing("curl") {
        return;
    }
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let net = Net::new(2);
    let before = board_state(&net.namespaces[0]);
    let dir = TempDir::new("crossnet-timings");
    let config = dir.0.join("board.toml");
    std::fs::write(
        &config,
        "[node_failure]\nnode_monitor_grace = \"15s\"\npod_eviction_timeout = \"5s\"\n",
    )
    .unwrap();
    let server = Server::start_with(&[
        "--cluster-listen",
        &format!("{}:6444", net.host()),
        "--node-ip",
        &net.host(),
        "--config",
        config.to_str().unwrap(),
    ]);
    server.import_image(&fx.oci_archive);
    let token = token(&server);
    let mut agents: Vec<Agent> = (0..2)
        .map(|i| Agent::start(&net, i, &token, &fx.oci_archive))
        .collect();
    let all = wait_for(60, "3 Ready nodes with pod CIDRs", || {
        let n = nodes(&server);
        (n.len() == 3
            && n.iter()
                .all(|n| ready(n) && !n["spec"]["podCIDR"].is_null()))
        .then_some(n)
    });
    let cidr_of = |name: &str| {
        all.iter()
            .find(|n| n["metadata"]["name"] == name)
            .and_then(|n| n["spec"]["podCIDR"].as_str())
            .unwrap()
            .to_string()
    };
    let (own, b0, b1) = (cidr_of("test-node"), cidr_of("board-0"), cidr_of("board-1"));

    // host-gw: every board routes the others' pod CIDRs via their addresses.
    wait_for(30, "routes between the boards", || {
        let host = ip_text(None, &["route", "show", "proto", "187"]);
        let on0 = ip_text(Some(&net.namespaces[0]), &["route", "show", "proto", "187"]);
        let on1 = ip_text(Some(&net.namespaces[1]), &["route", "show", "proto", "187"]);
        (host.contains(&format!("{b0} via {}", net.board(0)))
            && host.contains(&format!("{b1} via {}", net.board(1)))
            && on0.contains(&format!("{own} via {}", net.host()))
            && on0.contains(&format!("{b1} via {}", net.board(1)))
            && on1.contains(&format!("{b0} via {}", net.board(0))))
        .then_some(())
    });

    server.kubectl_stdin(&["apply", "-f", "-"], &kubia(&fx.reference, 3));
    let pods = wait_for(90, "3 kubia pods Running with addresses", || {
        let p = kubia_pods(&server);
        (p.len() == 3 && p.iter().all(|(_, _, ip)| !ip.is_empty())).then_some(p)
    });
    let boards: BTreeSet<&str> = pods.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(boards.len(), 3, "one per board: {pods:?}");
    wait_for(60, "3 ready endpoints", || {
        (ready_endpoints(&server).len() == 3).then_some(())
    });
    let svc: Value =
        serde_json::from_str(&server.kubectl_ok(&["get", "svc", "kubia", "-o", "json"])).unwrap();
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let names: BTreeSet<String> = pods.iter().map(|(n, _, _)| n.clone()).collect();

    // From the test host, the NodePort of any board reaches all three pods.
    for board in [net.host(), net.board(0), net.board(1)] {
        let url = format!("http://{board}:{node_port}/");
        wait_for(30, "the NodePort to answer", || curl(&url));
        assert_eq!(answers(&url, 30), names, "via {board}");
    }

    // From a pod on board-0: the ClusterIP, the Service's DNS name, its
    // variables, and the other boards' pods by IP and by pod DNS name.
    server.apply(&client(&fx.reference, "board-0"));
    server.wait_phase("client", "Running", 60);
    let via_name = wait_for(30, "the Service by DNS name from a pod", || {
        server.exec_in(
            "client",
            &["wget", "-qO-", "http://kubia.default.svc.cluster.local/"],
        )
    });
    assert!(names.contains(&via_name), "{via_name}");
    let seen: BTreeSet<String> = (0..15)
        .map(|_| {
            server
                .exec_in(
                    "client",
                    &["wget", "-qO-", &format!("http://{cluster_ip}/")],
                )
                .unwrap()
        })
        .collect();
    assert!(seen.len() >= 2 && seen.is_subset(&names), "{seen:?}");
    let vars = server
        .exec_in(
            "client",
            &["sh", "-c", "echo $KUBIA_SERVICE_HOST:$KUBIA_SERVICE_PORT"],
        )
        .unwrap();
    assert_eq!(vars, format!("{cluster_ip}:80"));
    for (name, node, ip) in pods.iter().filter(|(_, n, _)| n != "board-0") {
        let by_ip = server.exec_in("client", &["wget", "-qO-", &format!("http://{ip}:8080/")]);
        assert_eq!(by_ip.as_deref(), Some(name.as_str()), "pod on {node} by IP");
        let dns = format!(
            "http://{}.default.pod.cluster.local:8080/",
            ip.replace('.', "-")
        );
        let by_dns = server.exec_in("client", &["wget", "-qO-", &dns]);
        assert_eq!(
            by_dns.as_deref(),
            Some(name.as_str()),
            "pod on {node} by DNS name"
        );
    }

    // Scaled to 1: every board's NodePort still answers, from the one left.
    server.kubectl_ok(&["scale", "deployment", "kubia", "--replicas=1"]);
    wait_for(60, "1 ready endpoint", || {
        (ready_endpoints(&server).len() == 1).then_some(())
    });
    let left = wait_for(30, "one kubia pod", || {
        let p = kubia_pods(&server);
        (p.len() == 1).then(|| p[0].clone())
    });
    for board in [net.host(), net.board(0), net.board(1)] {
        let url = format!("http://{board}:{node_port}/");
        assert_eq!(
            answers(&url, 10),
            BTreeSet::from([left.0.clone()]),
            "via {board}"
        );
    }

    // Back to 3, then a board dies: once its endpoint is out, requests to
    // the boards left all succeed.
    server.kubectl_ok(&["scale", "deployment", "kubia", "--replicas=3"]);
    wait_for(90, "3 ready endpoints again", || {
        (ready_endpoints(&server).len() == 3).then_some(())
    });
    agents[1].kill9();
    wait_for(60, "the dead board's endpoint out", || {
        (ready_endpoints(&server).len() == 2).then_some(())
    });
    let alive: BTreeSet<String> = kubia_pods(&server)
        .into_iter()
        .filter(|(_, n, _)| n != "board-1")
        .map(|(n, _, _)| n)
        .collect();
    for board in [net.host(), net.board(0)] {
        let url = format!("http://{board}:{node_port}/");
        let got = answers(&url, 20);
        assert!(
            got.is_subset(&alive) && !got.is_empty(),
            "via {board}: {got:?} of {alive:?}"
        );
    }

    // A board that leaves the cluster takes its routes with it.
    server.kubectl_ok(&["delete", "node", "board-1"]);
    wait_for(30, "routes to board-1's pods gone", || {
        let host = ip_text(None, &["route", "show", "proto", "187"]);
        let on0 = ip_text(Some(&net.namespaces[0]), &["route", "show", "proto", "187"]);
        (!host.contains(&b1) && !on0.contains(&b1)).then_some(())
    });

    // Everything deleted: board-0 has no pod veth, address or service rule
    // left; after `bramble network cleanup` its namespace is as before.
    server.kubectl_ok(&["delete", "deployment", "kubia"]);
    server.kubectl_ok(&["delete", "svc", "kubia"]);
    server.kubectl_ok(&["delete", "pod", "client", "--grace-period=0"]);
    let ipam = agents[0].data_dir().join("net/ipam/bramble0");
    wait_for(60, "board-0's pods, veths and addresses gone", || {
        let (links, _, rules) = board_state(&net.namespaces[0]);
        let addresses = std::fs::read_dir(&ipam)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok()
            })
            .count();
        (links.len() == before.0.len() + 1 && !rules.contains("dnat to") && addresses == 0)
            .then_some(())
    });
    agents[0].terminate();
    run_ok(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", net.namespaces[0]))
            .args([
                "--",
                crate::support::bramble(),
                "network",
                "cleanup",
                "--data-dir",
            ])
            .arg(agents[0].data_dir()),
    );
    assert_eq!(board_state(&net.namespaces[0]), before);
    drop(agents);
}
