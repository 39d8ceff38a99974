//! The kube-proxy part: Services become one nftables table per board,
//! rendered whole from Services, EndpointSlices and this node's addresses
//! ([`render`], pure) and swapped in atomically with `nft -f` ([`run`]).
//!
//! ClusterIPs and node ports jump to a chain per service port that picks a
//! ready endpoint with `numgen random mod N`; sessionAffinity ClientIP keeps
//! a client on its endpoint through a set with timeouts, as kube-proxy's
//! nftables mode does. Service ports without ready endpoints are rejected
//! (TCP reset, ICMP port unreachable otherwise); headless Services get no
//! rules. Connections are masqueraded when their source is outside the
//! cluster CIDR (host, LAN, 127.0.0.1) or when a local pod reaches a pod on
//! the same bridge through a Service (else the reply would skip the NAT).

use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::rc::Rc;

use super::Cidr;
use crate::model::json::{at, int, list, text};
use crate::model::res;
use crate::store::Store;

/// What the rules of one board depend on besides the Services.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeNet {
    /// The nft table (`table ip NAME`) and bridge name.
    pub table: String,
    pub bridge: String,
    pub cluster_cidr: Cidr,
    /// This node's pod CIDR, None until it has one.
    pub pod_cidr: Option<Cidr>,
    /// Where node ports answer: the node's addresses, the bridge's, 127.0.0.1.
    pub node_ips: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServicePort {
    pub name: String,
    /// "tcp", "udp" or "sctp", as nft spells them.
    pub proto: String,
    pub port: u16,
    pub node_port: Option<u16>,
    /// Ready endpoints: address and port, sorted.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRules {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    /// sessionAffinity ClientIP: seconds a client stays on its endpoint.
    pub affinity_timeout: Option<u32>,
    pub ports: Vec<ServicePort>,
}

/// A container's hostPort on this node: (protocol, host port, pod IP, container port).
pub type HostPort = (String, u16, Ipv4Addr, u16);

/// The hostPorts of the pods with an address among `pods` (this node's).
pub fn host_ports(pods: &[Value]) -> Vec<HostPort> {
    let mut out = Vec::new();
    for pod in pods {
        let Ok(ip) = text(at(pod, "status"), "podIP").parse::<Ipv4Addr>() else {
            continue;
        };
        if at(pod, "spec")["hostNetwork"] == Value::Bool(true) {
            continue;
        }
        for c in list(at(pod, "spec"), "containers") {
            for p in list(c, "ports") {
                let (Some(hp), Some(cp)) = (int(p, "hostPort"), int(p, "containerPort")) else {
                    continue;
                };
                let (Ok(hp @ 1..), Ok(cp)) = (u16::try_from(hp), u16::try_from(cp)) else {
                    continue;
                };
                let proto = match text(p, "protocol") {
                    "" => "tcp".to_string(),
                    other => other.to_ascii_lowercase(),
                };
                out.push((proto, hp, ip, cp));
            }
        }
    }
    out.sort();
    out
}

/// The Services that get rules (headless and ExternalName ones do not), with
/// the ready endpoints their EndpointSlices list for each port.
pub fn services(services: &[Value], slices: &[Value]) -> Vec<ServiceRules> {
    let mut out = Vec::new();
    for svc in services {
        let spec = at(svc, "spec");
        let Ok(cluster_ip) = text(spec, "clusterIP").parse::<Ipv4Addr>() else {
            continue;
        };
        let namespace = text(at(svc, "metadata"), "namespace");
        let name = text(at(svc, "metadata"), "name");
        let mine: Vec<&Value> = slices
            .iter()
            .filter(|s| {
                text(at(s, "metadata"), "namespace") == namespace
                    && at(at(s, "metadata"), "labels")["kubernetes.io/service-name"] == name
            })
            .collect();
        let ports = list(spec, "ports")
            .iter()
            .filter_map(|p| {
                let port_name = text(p, "name");
                let proto = match text(p, "protocol") {
                    "" => "tcp".to_string(),
                    other => other.to_ascii_lowercase(),
                };
                let mut endpoints = BTreeSet::new();
                for slice in &mine {
                    let Some(sp) = list(slice, "ports").iter().find(|sp| {
                        text(sp, "name") == port_name
                            && text(sp, "protocol").eq_ignore_ascii_case(&proto)
                    }) else {
                        continue;
                    };
                    let Some(target) = int(sp, "port").and_then(|p| u16::try_from(p).ok()) else {
                        continue;
                    };
                    for ep in list(slice, "endpoints") {
                        if at(ep, "conditions")["ready"] == Value::Bool(false) {
                            continue;
                        }
                        for a in list(ep, "addresses") {
                            if let Some(ip) = a.as_str().and_then(|a| a.parse().ok()) {
                                endpoints.insert((ip, target));
                            }
                        }
                    }
                }
                Some(ServicePort {
                    name: port_name.to_string(),
                    proto,
                    port: u16::try_from(int(p, "port")?).ok()?,
                    node_port: int(p, "nodePort").and_then(|n| u16::try_from(n).ok()),
                    endpoints: endpoints.into_iter().collect(),
                })
            })
            .collect();
        let affinity_timeout = (text(spec, "sessionAffinity") == "ClientIP").then(|| {
            spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
                .and_then(Value::as_u64)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(10800)
        });
        out.push(ServiceRules {
            namespace: namespace.into(),
            name: name.into(),
            cluster_ip,
            affinity_timeout,
            ports,
        });
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// The whole table as `nft -f` input: it declares, deletes and recreates the
/// table in one transaction, so the rules change atomically.
pub fn render(node: &NodeNet, services: &[ServiceRules], host_ports: &[HostPort]) -> String {
    let t = &node.table;
    let mut s = format!("table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n");
    let node_ips = node
        .node_ips
        .iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        s,
        "\tset node-ips {{ type ipv4_addr; elements = {{ {node_ips} }} }}"
    );
    let mut dispatch = String::new();
    for (proto, hp, ip, cp) in host_ports {
        let _ = writeln!(
            dispatch,
            "\t\tip daddr @node-ips {proto} dport {hp} dnat to {ip}:{cp}"
        );
    }
    let mut reject = String::new();
    let mut chains = String::new();
    for svc in services {
        for p in &svc.ports {
            let id = format!("{}_{}_{}_{}", svc.namespace, svc.name, p.proto, p.port);
            let matches = std::iter::once(format!(
                "ip daddr {} {} dport {}",
                svc.cluster_ip, p.proto, p.port
            ))
            .chain(
                p.node_port
                    .map(|n| format!("ip daddr @node-ips {} dport {n}", p.proto)),
            );
            if p.endpoints.is_empty() {
                let how = if p.proto == "tcp" {
                    " with tcp reset"
                } else {
                    ""
                };
                for m in matches {
                    let _ = writeln!(reject, "\t\t{m} reject{how}");
                }
                continue;
            }
            for m in matches {
                let _ = writeln!(dispatch, "\t\t{m} goto svc_{id}");
            }
            let _ = writeln!(chains, "\tchain svc_{id} {{");
            if let Some(timeout) = svc.affinity_timeout {
                for i in 0..p.endpoints.len() {
                    let _ = writeln!(
                        s,
                        "\tset aff_{id}_{i} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"
                    );
                    let _ = writeln!(chains, "\t\tip saddr @aff_{id}_{i} goto ep_{id}_{i}");
                }
            }
            let vmap = (0..p.endpoints.len())
                .map(|i| format!("{i} : goto ep_{id}_{i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                chains,
                "\t\tnumgen random mod {} vmap {{ {vmap} }}\n\t}}",
                p.endpoints.len()
            );
            for (i, (ip, port)) in p.endpoints.iter().enumerate() {
                let _ = writeln!(chains, "\tchain ep_{id}_{i} {{");
                if svc.affinity_timeout.is_some() {
                    let _ = writeln!(chains, "\t\tupdate @aff_{id}_{i} {{ ip saddr }}");
                }
                let _ = writeln!(
                    chains,
                    "\t\tmeta l4proto {} dnat to {ip}:{port}\n\t}}",
                    p.proto
                );
            }
        }
    }
    // Prerouting: ClusterIPs for this board's pods only (another board's
    // pods are DNATed on theirs, and other servers on one machine keep to
    // their own), node ports for packets to this host.
    let (cluster, bridge) = (node.cluster_cidr, &node.bridge);
    let _ = write!(
        s,
        "\tchain nat-prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tiifname \"{bridge}\" jump services\n\t\tfib daddr type local jump services\n\t}}\n\
         \tchain nat-output {{\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tct status dnat ip saddr != {cluster} masquerade\n"
    );
    if let Some(pods) = node.pod_cidr {
        let b = &node.bridge;
        let _ = write!(
            s,
            "\t\tct status dnat ip saddr {pods} oifname \"{b}\" masquerade\n\
             \t\tip saddr {pods} ip daddr != {cluster} oifname != \"{b}\" masquerade\n"
        );
    }
    s.push_str("\t}\n");
    for hook in ["input", "forward", "output"] {
        let _ = writeln!(
            s,
            "\tchain filter-{hook} {{\n\t\ttype filter hook {hook} priority filter; policy accept;\n\t\tjump no-endpoints\n\t}}"
        );
    }
    let _ = write!(
        s,
        "\tchain no-endpoints {{\n{reject}\t}}\n\tchain services {{\n{dispatch}\t}}\n{chains}}}\n"
    );
    s
}

/// The desired rules: what [`render`] makes of the store now.
fn desired(store: &Store, base: &NodeNet, node_name: &str) -> String {
    let mut node = base.clone();
    if let Some(n) = store.get(res("Node"), "", node_name) {
        let v = n.value();
        node.pod_cidr = text(at(&v, "spec"), "podCIDR").parse().ok();
        for a in list(at(&v, "status"), "addresses") {
            if let Ok(ip) = text(a, "address").parse::<Ipv4Addr>()
                && !node.node_ips.contains(&ip)
            {
                node.node_ips.push(ip);
            }
        }
    }
    if let Some(gw) = node.pod_cidr.map(|c| c.host(1)) {
        node.node_ips.push(gw);
    }
    let svcs: Vec<Value> = store
        .list(res("Service"), None)
        .iter()
        .map(|o| o.value())
        .collect();
    let slices: Vec<Value> = store
        .list(res("EndpointSlice"), None)
        .iter()
        .map(|o| o.value())
        .collect();
    let pods: Vec<Value> = store
        .list(res("Pod"), None)
        .iter()
        .filter(|p| p.node_name == node_name)
        .map(|o| o.value())
        .collect();
    render(&node, &services(&svcs, &slices), &host_ports(&pods))
}

/// Loads `ruleset` with `nft -f -`.
pub fn apply(ruleset: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e} (install nftables)"))?;
    let _ = child
        .stdin
        .take()
        .map(|mut i| i.write_all(ruleset.as_bytes()));
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "nft -f rejected the service rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Removes the table (`bramble network cleanup`, and tests).
pub fn remove_table(table: &str) -> Result<(), String> {
    apply(&format!("table ip {table}\ndelete table ip {table}\n"))
}

/// Keeps the table in step with Services, EndpointSlices and this Node, and
/// the routes with the Nodes; runs nft and ip only when something changed.
pub async fn run(store: Rc<Store>, node: NodeNet, node_name: String) {
    let watched = [
        res("Service"),
        res("EndpointSlice"),
        res("Node"),
        res("Pod"),
    ];
    let mut applied: Option<String> = None;
    let mut routed = None;
    loop {
        let Ok(events) = store.watch_many(&watched, None, store.resource_version()) else {
            continue;
        };
        let want = desired(&store, &node, &node_name);
        if applied.as_deref() != Some(want.as_str()) {
            let text = want.clone();
            // nft is a process: it runs off the executor.
            match smol::unblock(move || apply(&text)).await {
                Ok(()) => applied = Some(want),
                Err(e) => {
                    log::warn!("{e}");
                    smol::Timer::after(std::time::Duration::from_secs(2)).await;
                    continue;
                }
            }
        }
        // Routes to other boards' pods, when the Nodes say something new.
        let nodes: Vec<Value> = store
            .list(res("Node"), None)
            .iter()
            .map(|o| o.value())
            .collect();
        let routes = super::routes::desired(&nodes, &node_name);
        if routed.as_ref() != Some(&routes) {
            let (me, cluster) = (node_name.clone(), node.cluster_cidr);
            if let Err(e) = smol::unblock(move || super::routes::sync(&nodes, &me, &cluster)).await
            {
                log::warn!("routes to other boards' pods: {e}");
            }
            // Tried again when the Nodes say something else.
            routed = Some(routes);
        }
        if events.recv().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> NodeNet {
        NodeNet {
            table: "bramble".into(),
            bridge: "bramble0".into(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            pod_cidr: Some("10.42.0.0/24".parse().unwrap()),
            node_ips: vec![Ipv4Addr::LOCALHOST, Ipv4Addr::new(192, 168, 1, 5)],
        }
    }

    fn web(affinity: bool, headless: bool) -> Value {
        let mut s = json!({"metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": if headless {"None"} else {"10.43.0.7"},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        if affinity {
            s["spec"]["sessionAffinity"] = "ClientIP".into();
        }
        s
    }

    fn slice(ready: &[(&str, bool)]) -> Value {
        let eps: Vec<Value> = ready
            .iter()
            .map(|(ip, r)| json!({"addresses": [ip], "conditions": {"ready": r}}))
            .collect();
        json!({"metadata": {"namespace": "default", "name": "web-abcde",
                            "labels": {"kubernetes.io/service-name": "web"}},
               "endpoints": eps, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    }

    #[test]
    fn services_take_ready_endpoints_by_port_name() {
        let s = services(
            &[web(false, false)],
            &[slice(&[
                ("10.42.0.9", true),
                ("10.42.0.3", true),
                ("10.42.0.4", false),
            ])],
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].ports[0].proto, "tcp");
        assert_eq!(s[0].ports[0].node_port, Some(30080));
        assert_eq!(
            s[0].ports[0].endpoints,
            [
                (Ipv4Addr::new(10, 42, 0, 3), 8080),
                (Ipv4Addr::new(10, 42, 0, 9), 8080)
            ]
        );
        assert!(services(&[web(false, true)], &[slice(&[("10.42.0.3", true)])]).is_empty());
    }

    #[test]
    fn render_balances_over_ready_endpoints_and_masquerades() {
        let s = services(
            &[web(false, false)],
            &[slice(&[("10.42.0.3", true), ("10.42.0.9", true)])],
        );
        let r = render(&node(), &s, &[]);
        assert!(r.starts_with("table ip bramble\ndelete table ip bramble\ntable ip bramble {\n"));
        assert!(r.contains("ip daddr 10.43.0.7 tcp dport 80 goto svc_default_web_tcp_80\n"));
        assert!(r.contains("ip daddr @node-ips tcp dport 30080 goto svc_default_web_tcp_80\n"));
        assert!(r.contains("elements = { 127.0.0.1, 192.168.1.5 }"));
        assert!(r.contains(
            "numgen random mod 2 vmap { 0 : goto ep_default_web_tcp_80_0, 1 : goto ep_default_web_tcp_80_1 }"
        ));
        assert!(r.contains("meta l4proto tcp dnat to 10.42.0.9:8080"));
        assert!(r.contains("ct status dnat ip saddr != 10.42.0.0/16 masquerade"));
        assert!(r.contains(
            "iifname \"bramble0\" jump services\n\t\tfib daddr type local jump services\n"
        ));
        assert!(r.contains("ct status dnat ip saddr 10.42.0.0/24 oifname \"bramble0\" masquerade"));
        assert!(!r.contains("reject"));
        assert!(!r.contains("aff_"));
    }

    #[test]
    fn render_rejects_without_endpoints_and_keeps_affinity() {
        let r = render(
            &node(),
            &services(&[web(false, false)], &[slice(&[("10.42.0.3", false)])]),
            &[],
        );
        assert!(r.contains("ip daddr 10.43.0.7 tcp dport 80 reject with tcp reset\n"));
        assert!(r.contains("ip daddr @node-ips tcp dport 30080 reject with tcp reset\n"));
        assert!(!r.contains("goto svc_"));
        let r = render(
            &node(),
            &services(&[web(true, false)], &[slice(&[("10.42.0.3", true)])]),
            &[],
        );
        assert!(r.contains("set aff_default_web_tcp_80_0 { type ipv4_addr; flags dynamic,timeout; timeout 10800s; }"));
        assert!(r.contains("ip saddr @aff_default_web_tcp_80_0 goto ep_default_web_tcp_80_0"));
        assert!(r.contains("update @aff_default_web_tcp_80_0 { ip saddr }"));
    }

    #[test]
    fn host_ports_dnat_on_the_node_addresses() {
        let pods = [
            json!({"spec": {"containers": [{"ports": [{"containerPort": 8080, "hostPort": 9090},
                                                      {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"},
                                                      {"containerPort": 7}, {"containerPort": 8, "hostPort": 0}]}]},
                   "status": {"podIP": "10.42.0.5"}}),
            json!({"spec": {"containers": [{"ports": [{"containerPort": 1, "hostPort": 1}]}]}, "status": {}}),
        ];
        let hp = host_ports(&pods);
        assert_eq!(hp.len(), 2);
        let r = render(&node(), &[], &hp);
        assert!(r.contains("ip daddr @node-ips tcp dport 9090 dnat to 10.42.0.5:8080\n"));
        assert!(r.contains("ip daddr @node-ips udp dport 5353 dnat to 10.42.0.5:53\n"));
    }
}
