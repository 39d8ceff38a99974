//! Pod networking and Services on one board, with real containers: pods get
//! addresses on the server's bridge, a NodePort Service spreads requests over
//! its ready pods, pods reach it by ClusterIP and by DNS name, see its
//! environment variables, and nothing of it is left on the host afterwards.
//!
//! Traffic goes only to the bridge and pod network this test's server made
//! (its own bridge and CIDR, see support::NetSlot) and to 127.0.0.1.

use std::collections::BTreeSet;
use std::process::Command;

use crate::support::{Server, curl, hostname_server, run_ok, server_with_busybox, wait_for};

fn web(image: &str, replicas: u32) -> String {
    let containers = hostname_server(image);
    format!(
        "apiVersion: v1
kind: ReplicationController
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{app: web}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
{containers}"
    )
}

fn service(node_port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: {node_port}}}]
"
    )
}

/// A pod to run clients in; it also serves "client" on a hostPort.
fn client(image: &str, host_port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  containers:
  - name: c
    image: {image}
    imagePullPolicy: Never
    command: [sh, -c, 'mkdir -p /w && echo client > /w/index.html && httpd -p 8080 -h /w && exec sleep 3600']
    ports: [{{containerPort: 8080, hostPort: {host_port}}}]
  terminationGracePeriodSeconds: 0
"
    )
}

/// Names of the ready endpoints of Service web.
fn ready_endpoints(s: &Server) -> usize {
    let out = s.kubectl_ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .count()
}

/// What of the host this server's network could have touched: its bridge,
/// veths on it, routes via it or into its CIDR, its nft table.
fn host_state(s: &Server) -> (Vec<String>, Vec<String>, bool) {
    let text = |args: &[&str]| {
        String::from_utf8(
            Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    let bridge = &s.net.bridge;
    // Routes into this server's own cluster CIDR (other test servers on the
    // machine have theirs).
    let (base, bits) = s.net.cluster_cidr.split_once('/').unwrap();
    let base = u32::from(base.parse::<std::net::Ipv4Addr>().unwrap());
    let mask = u32::MAX << (32 - bits.parse::<u32>().unwrap());
    let ours = |route: &str| {
        let dest = route.split(['/', ' ']).next().unwrap_or_default();
        dest.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| u32::from(ip) & mask == base & mask)
    };
    let links = text(&["ip", "-o", "link"])
        .lines()
        .filter(|l| l.contains(&format!(" {bridge}:")) || l.contains(&format!("master {bridge} ")))
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string())
        .collect();
    let routes = text(&["ip", "route"])
        .lines()
        .filter(|l| l.contains(&format!("dev {bridge} ")) || ours(l))
        .map(str::to_string)
        .collect();
    let table = Command::new("nft")
        .args(["list", "table", "ip", bridge])
        .output()
        .unwrap()
        .status
        .success();
    (links, routes, table)
}

#[test]
fn pods_reach_a_nodeport_service_by_ip_and_name_and_nothing_is_left() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    for tool in ["curl", "nft", "ip"] {
        if crate::support::missing(tool) {
            return;
        }
    }
    // Node ports on 127.0.0.1 are shared by every server on the machine: one
    // this test is unlikely to share.
    let node_port = 30000 + (std::process::id() % 2700) as u16;
    s.apply(&service(node_port));
    s.apply(&web(&image, 3));
    wait_for(90, "3 ready endpoints", || {
        (ready_endpoints(&s) == 3).then_some(())
    });

    // Every pod has an address in the node's pod CIDR.
    let node = s.kubectl_ok(&["get", "node", "test-node", "-o", "jsonpath={.spec.podCIDR}"]);
    let gw = s.net.gateway();
    assert_eq!(node, format!("{}0/24", gw.trim_end_matches('1')));
    let pods: serde_json::Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "json"]))
            .unwrap();
    let names: BTreeSet<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ip = p["status"]["podIP"].as_str().unwrap();
            assert!(
                ip.starts_with(gw.trim_end_matches('1')),
                "{ip} outside {node}"
            );
            assert_eq!(p["status"]["podIPs"][0]["ip"], ip);
            p["metadata"]["name"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(names.len(), 3);

    // From the host, through the node port on the bridge address and on 127.0.0.1.
    for host in [gw.as_str(), "127.0.0.1"] {
        let seen: BTreeSet<String> = (0..30)
            .map(|_| {
                curl(&format!("http://{host}:{node_port}/"))
                    .unwrap_or_else(|| panic!("no answer from {host}:{node_port}\n{}", s.log()))
            })
            .collect();
        assert_eq!(seen, names, "30 requests to {host}:{node_port}");
    }

    // sessionAffinity ClientIP: one client stays on one pod.
    let sticky = node_port + 1;
    s.apply(
        &service(sticky)
            .replace("name: web}", "name: sticky}")
            .replace(
                "type: NodePort",
                "type: NodePort\n  sessionAffinity: ClientIP",
            ),
    );
    let seen: BTreeSet<String> = wait_for(20, "the sticky service", || {
        (0..10)
            .map(|_| curl(&format!("http://{gw}:{sticky}/")))
            .collect::<Option<BTreeSet<String>>>()
    });
    assert_eq!(seen.len(), 1, "{seen:?}");
    s.kubectl_ok(&["delete", "svc", "sticky"]);

    // From a pod created after the Service: env, ClusterIP, DNS names, pod IP.
    s.apply(&client(&image, node_port + 2));
    s.wait_phase("client", "Running", 60);
    let got = wait_for(20, "the client's hostPort", || {
        curl(&format!("http://{gw}:{}/", node_port + 2))
    });
    assert_eq!(got, "client");
    let cluster_ip = s.kubectl_ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let env = s.exec_in("client", &["sh", "-c", "env"]).unwrap();
    for var in [
        format!("WEB_SERVICE_HOST={cluster_ip}"),
        "WEB_SERVICE_PORT=80".into(),
        "WEB_SERVICE_PORT_HTTP=80".into(),
        format!("WEB_PORT_80_TCP=tcp://{cluster_ip}:80"),
    ] {
        assert!(env.lines().any(|l| l == var), "{var} not in\n{env}");
    }
    for url in [
        format!("http://{cluster_ip}/"),
        "http://web.default.svc.cluster.local/".into(),
        "http://web/".into(),
    ] {
        let got = s.exec_in("client", &["wget", "-qO-", &url]);
        assert!(
            got.as_ref().is_some_and(|h| names.contains(h)),
            "{url}: {got:?}"
        );
    }
    let first = &pods["items"][0];
    let direct = s.exec_in(
        "client",
        &[
            "wget",
            "-qO-",
            &format!(
                "http://{}:8080/",
                first["status"]["podIP"].as_str().unwrap()
            ),
        ],
    );
    assert_eq!(direct.as_deref(), first["metadata"]["name"].as_str());
    let resolv = s.exec_in("client", &["cat", "/etc/resolv.conf"]).unwrap();
    assert!(resolv.contains(&format!("nameserver {gw}")), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );

    // Scaled to 1: requests still succeed, all on the one left.
    s.kubectl_ok(&["scale", "rc", "web", "--replicas=1"]);
    wait_for(60, "1 endpoint", || {
        (ready_endpoints(&s) == 1).then_some(())
    });
    let seen: BTreeSet<String> = wait_for(10, "requests on the one pod left", || {
        let seen: Option<BTreeSet<String>> = (0..10)
            .map(|_| curl(&format!("http://{gw}:{node_port}/")))
            .collect();
        seen.filter(|s| s.len() == 1)
    });
    assert!(names.is_superset(&seen));

    // Everything deleted: no veth, route, address or rule of it stays.
    s.kubectl_ok(&["delete", "rc", "web"]);
    s.kubectl_ok(&["delete", "svc", "web"]);
    s.kubectl_ok(&["delete", "pod", "client", "--grace-period=0"]);
    wait_for(60, "pods gone", || {
        s.kubectl_ok(&["get", "pods", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
    let ipam = s.data_dir().join("net/ipam/bramble");
    wait_for(10, "addresses released", || {
        let left: Vec<_> = std::fs::read_dir(&ipam)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok()
            })
            .collect();
        left.is_empty().then_some(())
    });
    let (links, routes, table) = wait_for(10, "veths gone", || {
        let after = host_state(&s);
        (after.0.len() <= 1).then_some(after)
    });
    // The bridge (with its connected route) and the table stay until
    // `bramble network cleanup`.
    assert_eq!(links, [format!("{}:", s.net.bridge)]);
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(table);
    let rules = String::from_utf8(
        Command::new("nft")
            .args(["list", "table", "ip", &s.net.bridge])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!rules.contains("dnat to"), "{rules}");
    run_ok(
        Command::new(crate::support::bramble())
            .args(["network", "cleanup", "--bridge", &s.net.bridge])
            .args(["--cluster-cidr", &s.net.cluster_cidr]),
    );
    // The slot's bridge, CIDR and table are this server's alone, so "as
    // before" is: none of them on the host.
    assert_eq!(host_state(&s), (vec![], vec![], false));
}

#[test]
fn a_restarted_daemon_keeps_pod_addresses_and_releases_those_of_gone_pods() {
    let Some((mut s, image)) = server_with_busybox() else {
        return;
    };
    s.apply(&client(&image, 0));
    let ip = wait_for(60, "client's address", || {
        let p = s.pod("client");
        (p["status"]["phase"] == "Running")
            .then(|| p["status"]["podIP"].as_str().map(str::to_string))
            .flatten()
    });
    s.kill9();
    // What a crash between deleting a pod and releasing its address leaves.
    let ipam = s.data_dir().join("net/ipam/bramble");
    let stale = ipam.join(format!("{}.200", s.net.gateway().trim_end_matches(".1")));
    std::fs::write(&stale, "0a1b2c3d-gone\r\neth0").unwrap();
    s.spawn(&[]);
    wait_for(20, "the stale address released", || {
        (!stale.exists()).then_some(())
    });
    assert!(
        ipam.join(&ip).exists(),
        "the running pod's address {ip} was released"
    );
    assert_eq!(s.pod("client")["status"]["podIP"], ip.as_str());
    let got = s.exec_in("client", &["cat", "/etc/hosts"]).unwrap();
    assert!(got.lines().any(|l| l == format!("{ip}\tclient")), "{got}");
}
