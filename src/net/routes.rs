//! Routes to the other boards' pods (host-gw: boards share a LAN): one route
//! per other Node's pod CIDR via its InternalIP. [`desired`] is pure; [`sync`]
//! makes the kernel match with `ip route`, touching only routes inside the
//! cluster CIDR tagged with [`PROTO`]. With one board there are none; the
//! cluster protocol only has to make Nodes with addresses appear.

use serde_json::Value;
use std::net::Ipv4Addr;

use super::{Cidr, pod_cidr_of};
use crate::model::json::{at, list, text};

/// The routing protocol number bramble's routes carry (`ip route ... proto 187`).
pub const PROTO: &str = "187";

/// (pod CIDR, gateway) for every other node with a pod CIDR and an InternalIP.
pub fn desired(nodes: &[Value], me: &str) -> Vec<(Cidr, Ipv4Addr)> {
    let mut routes: Vec<(Cidr, Ipv4Addr)> = nodes
        .iter()
        .filter(|n| text(at(n, "metadata"), "name") != me)
        .filter_map(|n| {
            let cidr = pod_cidr_of(n)?;
            let via = list(at(n, "status"), "addresses")
                .iter()
                .filter(|a| text(a, "type") == "InternalIP")
                .find_map(|a| text(a, "address").parse().ok())?;
            Some((cidr, via))
        })
        .collect();
    routes.sort_by_key(|(c, _)| u32::from(c.base));
    routes
}

/// `ip route` commands (arguments) that take `current` to `want`.
pub fn changes(current: &[(Cidr, Ipv4Addr)], want: &[(Cidr, Ipv4Addr)]) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    for (cidr, via) in current {
        if !want.iter().any(|(c, _)| c == cidr) {
            cmds.push(vec![
                "route".into(),
                "del".into(),
                cidr.to_string(),
                "via".into(),
                via.to_string(),
            ]);
        }
    }
    for (cidr, via) in want {
        if !current.contains(&(*cidr, *via)) {
            cmds.push(
                [
                    "route",
                    "replace",
                    &cidr.to_string(),
                    "via",
                    &via.to_string(),
                    "proto",
                    PROTO,
                ]
                .map(String::from)
                .to_vec(),
            );
        }
    }
    cmds
}

/// Our routes as the kernel has them: `ip -o route show proto 187` lines
/// ("10.42.1.0/24 via 192.168.1.6 dev eth0") inside the cluster CIDR.
pub fn parse_current(text: &str, cluster: &Cidr) -> Vec<(Cidr, Ipv4Addr)> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let cidr: Cidr = words.next()?.parse().ok()?;
            let via = words.skip_while(|w| *w != "via").nth(1)?.parse().ok()?;
            cluster.contains(cidr.base).then_some((cidr, via))
        })
        .collect()
}

/// Makes the kernel's routes to other boards' pods match the Node list.
pub fn sync(nodes: &[Value], me: &str, cluster: &Cidr) -> Result<(), String> {
    let want = desired(nodes, me);
    let out = std::process::Command::new("ip")
        .args(["-o", "route", "show", "proto", PROTO])
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    let current = parse_current(&String::from_utf8_lossy(&out.stdout), cluster);
    for args in changes(&current, &want) {
        let out = std::process::Command::new("ip")
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Value {
        let mut n = json!({"metadata": {"name": name}, "spec": {},
            "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}});
        if let Some(c) = cidr {
            n["spec"]["podCIDR"] = c.into();
        }
        n
    }

    #[test]
    fn a_route_per_other_node_with_a_cidr_and_an_address() {
        let nodes = [
            node("b", Some("10.42.1.0/24"), "192.168.1.6"),
            node("a", Some("10.42.0.0/24"), "192.168.1.5"),
            node("c", None, "192.168.1.7"),
            node("d", Some("10.42.2.0/24"), "not-an-ip"),
        ];
        let r = desired(&nodes, "a");
        assert_eq!(
            r,
            [(
                "10.42.1.0/24".parse().unwrap(),
                Ipv4Addr::new(192, 168, 1, 6)
            )]
        );
        assert!(desired(&nodes[1..2], "a").is_empty());
    }

    #[test]
    fn changes_add_move_and_drop_routes() {
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        let ip = |d| Ipv4Addr::new(192, 168, 1, d);
        let current = [(c("10.42.1.0/24"), ip(6)), (c("10.42.2.0/24"), ip(7))];
        let want = [(c("10.42.1.0/24"), ip(9)), (c("10.42.3.0/24"), ip(8))];
        let cmds: Vec<String> = changes(&current, &want)
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert_eq!(
            cmds,
            [
                "route del 10.42.2.0/24 via 192.168.1.7",
                "route replace 10.42.1.0/24 via 192.168.1.9 proto 187",
                "route replace 10.42.3.0/24 via 192.168.1.8 proto 187"
            ]
        );
        assert!(changes(&want, &want).is_empty());
        let cluster = c("10.42.0.0/16");
        let listed = "10.42.1.0/24 via 192.168.1.6 dev eth0 \n10.99.0.0/24 via 192.168.1.6 dev eth0\ngarbage";
        assert_eq!(
            parse_current(listed, &cluster),
            [(c("10.42.1.0/24"), ip(6))]
        );
    }
}
