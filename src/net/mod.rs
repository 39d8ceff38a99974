//! Cluster addressing: CIDRs and the allocation of service IPs and node
//! ports. Pure functions; the pod network itself comes later.

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
}
