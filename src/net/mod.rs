//! The cluster network. This file: addressing (CIDRs, the allocation of
//! service IPs, node ports and nodes' pod CIDRs, pure) and the names one
//! board's network goes by ([`Names`]). Beside it: `cni` (pod addresses
//! through the CNI plugins), `proxy` (Services as nftables rules), `routes`
//! (other boards' pod CIDRs), `service_env` (Kubernetes' service variables)
//! and `dns` (the pods' resolver).

pub mod cni;
pub mod dns;
pub mod proxy;
pub mod routes;
pub mod service_env;

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 network, e.g. 10.43.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        };
        u32::from(ip) & mask == u32::from(self.base) & mask
    }

    /// The `n`th address of the network (1: the first host).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base).wrapping_add(n))
    }

    fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (want e.g. 10.43.0.0/16)"))?;
        let base: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 30)
            .ok_or_else(|| format!("{s:?}: the prefix length must be a number up to 30"))?;
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Ok(Cidr {
            base: Ipv4Addr::from(u32::from(base) & mask),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// The lowest free address in `cidr`, skipping the network address and the
/// first host (the API service's in Kubernetes) and broadcast.
pub fn allocate_ip(cidr: &Cidr, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let base = u32::from(cidr.base);
    (2..cidr.size() - 1)
        .map(|i| Ipv4Addr::from(base + i as u32))
        .find(|ip| !used.contains(ip))
}

pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

pub fn allocate_node_port(used: &HashSet<u16>) -> Option<u16> {
    NODE_PORTS.clone().find(|p| !used.contains(p))
}

/// Pods' addresses on one node: a /24 of the cluster CIDR.
pub const NODE_POD_PREFIX: u8 = 24;

/// The lowest /24 of `cluster` that no node has (`used`); a cluster CIDR of
/// /24 or longer is one node's whole.
pub fn allocate_pod_cidr(cluster: &Cidr, used: &[Cidr]) -> Option<Cidr> {
    if cluster.prefix >= NODE_POD_PREFIX {
        return (!used.contains(cluster)).then_some(*cluster);
    }
    let step = 1u32 << (32 - NODE_POD_PREFIX);
    (0..1u32 << (NODE_POD_PREFIX - cluster.prefix))
        .map(|i| Cidr {
            base: Ipv4Addr::from(u32::from(cluster.base) + i * step),
            prefix: NODE_POD_PREFIX,
        })
        .find(|c| !used.contains(c))
}

/// Gives every Node without spec.podCIDR one (the local node at
/// registration, others as they appear). Runs for the life of the daemon.
pub async fn assign_pod_cidrs(store: std::rc::Rc<crate::store::Store>, cluster: Cidr) {
    let nodes = crate::model::res("Node");
    crate::controllers::level_loop(&store, &[nodes], std::time::Duration::ZERO, || {
        let all: Vec<serde_json::Value> =
            store.list(nodes, None).iter().map(|n| n.value()).collect();
        for node in all.iter().filter(|n| pod_cidr_of(n).is_none()) {
            let used: Vec<Cidr> = all.iter().filter_map(pod_cidr_of).collect();
            let Some(cidr) = allocate_pod_cidr(&cluster, &used) else {
                log::warn!(
                    "the cluster CIDR {cluster} has no /24 left for node {}",
                    node["metadata"]["name"]
                );
                return None;
            };
            let mut v = node.clone();
            v["spec"]["podCIDR"] = cidr.to_string().into();
            v["spec"]["podCIDRs"] = serde_json::json!([cidr.to_string()]);
            if let Err(e) = store.update(nodes, v) {
                log::warn!("giving node {} a pod CIDR: {e}", node["metadata"]["name"]);
                return Some(std::time::Duration::from_secs(2));
            }
        }
        None
    })
    .await
}

pub fn pod_cidr_of(node: &serde_json::Value) -> Option<Cidr> {
    node.pointer("/spec/podCIDR")?.as_str()?.parse().ok()
}

/// Runs this board's side of the cluster network for the life of the
/// daemon: the Services' rules and the routes to other boards' pods
/// ([`proxy::run`]), and the pods' resolver ([`dns::serve_pods`]). The same
/// on the server's board and on agents, whose stores hold what the server
/// mirrors to them.
pub fn spawn(
    ex: &std::rc::Rc<async_executor::LocalExecutor<'static>>,
    store: &std::rc::Rc<crate::store::Store>,
    names: &Names,
    node_name: &str,
) {
    ex.spawn(proxy::run(
        store.clone(),
        proxy::NodeNet {
            table: names.bridge.clone(),
            bridge: names.bridge.clone(),
            cluster_cidr: names.cluster_cidr,
            pod_cidr: None,
            node_ips: vec![Ipv4Addr::LOCALHOST],
        },
        node_name.to_string(),
    ))
    .detach();
    ex.spawn(dns::serve_pods(
        store.clone(),
        ex.clone(),
        names.bridge.clone(),
        node_name.to_string(),
    ))
    .detach();
}

/// What one board's network is called and spans. Several bramble servers on
/// one machine (tests) need distinct bridges, tables and CIDRs.
#[derive(Debug, Clone, PartialEq)]
pub struct Names {
    /// The pods' bridge; the nftables table (`table ip NAME`) has the same name.
    pub bridge: String,
    pub cluster_cidr: Cidr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_normalise_and_contain() {
        let c: Cidr = "10.43.7.9/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert!(c.contains("10.43.255.1".parse().unwrap()));
        assert!(!c.contains("10.44.0.1".parse().unwrap()));
        assert!("10.43.0.0".parse::<Cidr>().is_err());
        assert!("10.43.0.0/31".parse::<Cidr>().is_err());
    }

    #[test]
    fn allocation_takes_the_lowest_free() {
        let c: Cidr = "10.43.0.0/29".parse().unwrap();
        let mut used = HashSet::new();
        let a = allocate_ip(&c, &used).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 43, 0, 2));
        used.insert(a);
        assert_eq!(allocate_ip(&c, &used).unwrap(), Ipv4Addr::new(10, 43, 0, 3));
        for i in 3..7 {
            used.insert(Ipv4Addr::new(10, 43, 0, i));
        }
        assert_eq!(allocate_ip(&c, &used), None);
        let ports: HashSet<u16> = [30000, 30001].into();
        assert_eq!(allocate_node_port(&ports), Some(30002));
    }

    #[test]
    fn pod_cidrs_are_the_lowest_free_24s() {
        let c: Cidr = "10.42.0.0/16".parse().unwrap();
        assert_eq!(
            allocate_pod_cidr(&c, &[]).unwrap().to_string(),
            "10.42.0.0/24"
        );
        let used = [
            "10.42.0.0/24".parse().unwrap(),
            "10.42.2.0/24".parse().unwrap(),
        ];
        assert_eq!(
            allocate_pod_cidr(&c, &used).unwrap().to_string(),
            "10.42.1.0/24"
        );
        let small: Cidr = "10.199.7.0/24".parse().unwrap();
        assert_eq!(allocate_pod_cidr(&small, &[]), Some(small));
        assert_eq!(allocate_pod_cidr(&small, &[small]), None);
        let two: Cidr = "10.42.0.0/23".parse().unwrap();
        let used = [
            "10.42.0.0/24".parse().unwrap(),
            "10.42.1.0/24".parse().unwrap(),
        ];
        assert_eq!(allocate_pod_cidr(&two, &used), None);
        assert_eq!(c.host(1), Ipv4Addr::new(10, 42, 0, 1));
    }
}
