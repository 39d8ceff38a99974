//! The pods' resolver, on the bridge address port 53 (UDP): Services by
//! name (`web.default.svc.cluster.local`: the ClusterIP; a headless Service:
//! its ready endpoints), pods by dashed address
//! (`10-42-0-5.default.pod.cluster.local`); other names are forwarded to the
//! board's resolver from /etc/resolv.conf. Also the pods' resolv.conf per
//! dnsPolicy ([`resolv_conf`]).
//!
//! The message codec is the few parts of RFC 1035 a stub resolver's A/AAAA
//! questions need; every read is bounds-checked and a malformed packet is
//! dropped, never a panic.

use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use crate::model::json::{at, list, text};
use crate::model::res;
use crate::store::Store;

pub const DOMAIN: &str = "cluster.local";
const TTL: u32 = 5;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const NXDOMAIN: u8 = 3;
const SERVFAIL: u8 = 2;
const NOTIMP: u8 = 4;
const MAX_UDP: usize = 512;

/// The pod's /etc/resolv.conf per its dnsPolicy (ClusterFirst by default,
/// Default: the board's, None: dnsConfig alone), dnsConfig merged in.
pub fn resolv_conf(pod: &Value, nameserver: Ipv4Addr, host: &str) -> String {
    let spec = at(pod, "spec");
    let ns = text(at(pod, "metadata"), "namespace");
    let (mut servers, mut search, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        (Vec::new(), Vec::new(), Vec::new());
    match text(spec, "dnsPolicy") {
        "None" => {}
        "Default" => {
            for line in host.lines() {
                let mut w = line.split_whitespace();
                match w.next() {
                    Some("nameserver") => servers.extend(w.next().map(str::to_string)),
                    Some("search" | "domain") => search.extend(w.map(str::to_string)),
                    Some("options") => options.extend(w.map(str::to_string)),
                    _ => {}
                }
            }
        }
        _ => {
            servers.push(nameserver.to_string());
            search.extend([
                format!("{ns}.svc.{DOMAIN}"),
                format!("svc.{DOMAIN}"),
                DOMAIN.into(),
            ]);
            options.push("ndots:5".into());
        }
    }
    let cfg = at(spec, "dnsConfig");
    servers.extend(
        list(cfg, "nameservers")
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string)),
    );
    search.extend(
        list(cfg, "searches")
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string)),
    );
    for o in list(cfg, "options") {
        let name = text(o, "name");
        options.retain(|x| x.split(':').next() != Some(name));
        options.push(match o.get("value").and_then(Value::as_str) {
            Some(v) => format!("{name}:{v}"),
            None => name.to_string(),
        });
    }
    let mut out = String::new();
    if !search.is_empty() {
        out += &format!("search {}\n", search.join(" "));
    }
    for s in servers.iter().take(3) {
        out += &format!("nameserver {s}\n");
    }
    if !options.is_empty() {
        out += &format!("options {}\n", options.join(" "));
    }
    out
}

/// One question of a query.
#[derive(Debug, PartialEq)]
pub struct Query {
    pub id: u16,
    /// Header flags as received (RD is echoed).
    pub flags: u16,
    /// Lowercased, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question section ends in the packet.
    pub question_end: usize,
}

/// Parses a standard query with one question; None for anything else.
pub fn parse_query(p: &[u8]) -> Option<Query> {
    let u16_at = |i: usize| Some(u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]));
    let id = u16_at(0)?;
    let flags = u16_at(2)?;
    // QR must be 0 (a query), opcode 0 (QUERY), exactly one question.
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || u16_at(4)? != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*p.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        // Compression pointers (0xc0) have no place in a question.
        if len > 63 {
            return None;
        }
        let label = p.get(i..i + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        i += len;
        if i > 255 + 12 {
            return None;
        }
    }
    Some(Query {
        id,
        flags,
        name: labels.join("."),
        qtype: u16_at(i)?,
        qclass: u16_at(i + 2)?,
        question_end: i + 4,
    })
}

/// The reply to `q` (`packet` is the query it came in): A records, or an
/// error code with none.
pub fn reply(packet: &[u8], q: &Query, rcode: u8, answers: &[Ipv4Addr]) -> Vec<u8> {
    let answers = &answers[..answers.len().min(16)];
    let mut r = Vec::with_capacity(q.question_end + 16 * answers.len());
    r.extend(q.id.to_be_bytes());
    // QR, the query's RD, RA, the rcode.
    r.extend((0x8080 | (q.flags & 0x0100) | u16::from(rcode & 0xf)).to_be_bytes());
    r.extend(1u16.to_be_bytes());
    r.extend((answers.len() as u16).to_be_bytes());
    r.extend([0, 0, 0, 0]);
    r.extend(packet.get(12..q.question_end).unwrap_or_default());
    for ip in answers {
        r.extend([0xc0, 0x0c]);
        r.extend(TYPE_A.to_be_bytes());
        r.extend(CLASS_IN.to_be_bytes());
        r.extend(TTL.to_be_bytes());
        r.extend(4u16.to_be_bytes());
        r.extend(ip.octets());
    }
    r
}

/// What a cluster name resolves to.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The name exists; its A records (none: exists without IPv4 addresses).
    Found(Vec<Ipv4Addr>),
    NotFound,
    /// Not a cluster name: ask the board's resolver.
    Forward,
}

/// Resolves `name` against the Services and EndpointSlices.
pub fn resolve(name: &str, services: &[Value], slices: &[Value]) -> Answer {
    let Some(local) = name.strip_suffix(DOMAIN).and_then(|n| n.strip_suffix('.')) else {
        return match name == DOMAIN {
            true => Answer::Found(Vec::new()),
            false => Answer::Forward,
        };
    };
    let parts: Vec<&str> = local.split('.').collect();
    match parts.as_slice() {
        [svc, ns, "svc"] => {
            let Some(s) = services.iter().find(|s| {
                let m = at(s, "metadata");
                text(m, "name") == *svc && text(m, "namespace") == *ns
            }) else {
                return Answer::NotFound;
            };
            if let Ok(ip) = text(at(s, "spec"), "clusterIP").parse() {
                return Answer::Found(vec![ip]);
            }
            let mut ips: Vec<Ipv4Addr> = slices
                .iter()
                .filter(|sl| {
                    text(at(sl, "metadata"), "namespace") == *ns
                        && at(at(sl, "metadata"), "labels")["kubernetes.io/service-name"] == *svc
                })
                .flat_map(|sl| list(sl, "endpoints"))
                .filter(|e| at(e, "conditions")["ready"] != Value::Bool(false))
                .flat_map(|e| list(e, "addresses"))
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect();
            ips.sort();
            ips.dedup();
            Answer::Found(ips)
        }
        [dashed, _ns, "pod"] => match dashed.replace('-', ".").parse() {
            Ok(ip) => Answer::Found(vec![ip]),
            Err(_) => Answer::NotFound,
        },
        _ => Answer::NotFound,
    }
}

/// The first nameserver of a resolv.conf.
pub fn upstream(resolv: &str) -> Option<Ipv4Addr> {
    resolv.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("nameserver")).then(|| w.next()?.parse().ok())?
    })
}

/// Serves DNS to the pods on the bridge address once this node has a pod
/// CIDR (from the scheduler's side, or the server for an agent).
pub async fn serve_pods(
    store: Rc<Store>,
    ex: Rc<async_executor::LocalExecutor<'static>>,
    bridge: String,
    node_name: String,
) {
    let cidr = loop {
        if let Some(c) = store
            .get(res("Node"), "", &node_name)
            .and_then(|n| super::pod_cidr_of(&n.value()))
        {
            break c;
        }
        smol::Timer::after(Duration::from_secs(1)).await;
    };
    if let Err(e) = smol::unblock(move || super::cni::ensure_bridge(&bridge, &cidr)).await {
        log::error!("no DNS for pods: {e}");
        return;
    }
    let addr = SocketAddr::from((cidr.host(1), 53));
    if let Err(e) = serve(store, ex, addr).await {
        log::error!("{e}");
    }
}

/// Serves DNS on `addr` (the bridge address, port 53) for the life of the
/// daemon; forwarded queries run as their own tasks.
pub async fn serve(
    store: Rc<Store>,
    ex: Rc<async_executor::LocalExecutor<'static>>,
    addr: SocketAddr,
) -> Result<(), String> {
    let sock = Rc::new(
        smol::net::UdpSocket::bind(addr)
            .await
            .map_err(|e| format!("DNS cannot listen on {addr}: {e}"))?,
    );
    log::info!("DNS for pods on {addr}");
    let mut buf = [0u8; MAX_UDP];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let packet = buf[..n].to_vec();
        let Some(q) = parse_query(&packet) else {
            continue;
        };
        if q.qclass != CLASS_IN {
            let _ = sock.send_to(&reply(&packet, &q, NOTIMP, &[]), from).await;
            continue;
        }
        let value = |r| {
            store
                .list(res(r), None)
                .iter()
                .map(|o| o.value())
                .collect::<Vec<_>>()
        };
        let out = match resolve(&q.name, &value("Service"), &value("EndpointSlice")) {
            Answer::Found(ips) if q.qtype == TYPE_A => reply(&packet, &q, 0, &ips),
            Answer::Found(_) => reply(&packet, &q, 0, &[]),
            Answer::NotFound => reply(&packet, &q, NXDOMAIN, &[]),
            Answer::Forward => {
                let sock = sock.clone();
                ex.spawn(async move {
                    let out = match forward(&packet).await {
                        Some(r) => r,
                        None => reply(&packet, &q, SERVFAIL, &[]),
                    };
                    let _ = sock.send_to(&out, from).await;
                })
                .detach();
                continue;
            }
        };
        let _ = sock.send_to(&out, from).await;
    }
}

/// Asks the board's resolver; None when it does not answer in 2 s.
async fn forward(packet: &[u8]) -> Option<Vec<u8>> {
    let resolv = smol::fs::read_to_string("/etc/resolv.conf").await.ok()?;
    let server = SocketAddr::from((upstream(&resolv)?, 53));
    let sock = smol::net::UdpSocket::bind("0.0.0.0:0").await.ok()?;
    sock.send_to(packet, server).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let got = smol::future::or(async { sock.recv(&mut buf).await.ok() }, async {
        smol::Timer::after(Duration::from_secs(2)).await;
        None
    })
    .await?;
    buf.truncate(got);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            p.push(l.len() as u8);
            p.extend(l.as_bytes());
        }
        p.push(0);
        p.extend(qtype.to_be_bytes());
        p.extend(CLASS_IN.to_be_bytes());
        p
    }

    #[test]
    fn queries_parse_and_replies_carry_a_records() {
        let p = query("Web.default.svc.cluster.local", TYPE_A);
        let q = parse_query(&p).unwrap();
        assert_eq!(q.name, "web.default.svc.cluster.local");
        assert_eq!((q.id, q.qtype, q.question_end), (0x1234, TYPE_A, p.len()));
        let r = reply(&p, &q, 0, &[Ipv4Addr::new(10, 43, 0, 7)]);
        assert_eq!(&r[..4], &[0x12, 0x34, 0x81, 0x80]);
        assert_eq!(&r[6..8], &[0, 1]);
        assert_eq!(&r[12..p.len()], &p[12..]);
        assert_eq!(&r[r.len() - 4..], &[10, 43, 0, 7]);
        let r = reply(&p, &q, NXDOMAIN, &[]);
        assert_eq!(r[3] & 0xf, NXDOMAIN);
    }

    #[test]
    fn malformed_packets_are_refused_without_panicking() {
        let good = query("a.b", TYPE_A);
        for cut in 0..good.len() {
            assert_eq!(parse_query(&good[..cut]), None, "cut at {cut}");
        }
        let mut pointer = good.clone();
        pointer[12] = 0xc0;
        assert_eq!(parse_query(&pointer), None);
        let mut response = good.clone();
        response[2] |= 0x80;
        assert_eq!(parse_query(&response), None);
        let long: Vec<u8> = [&good[..12], &[63u8; 1][..], &[b'a'; 63][..]]
            .concat()
            .repeat(1)
            .into_iter()
            .chain(std::iter::repeat_n(1u8, 600))
            .collect();
        assert_eq!(parse_query(&long), None);
        // Every byte string up to 3 bytes past the header, and noise.
        let mut x: u32 = 7;
        for len in 0..300 {
            let noise: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = parse_query(&noise);
        }
    }

    #[test]
    fn cluster_names_resolve_from_services_and_slices() {
        let svcs = [
            json!({"metadata": {"namespace": "default", "name": "web"}, "spec": {"clusterIP": "10.43.0.7"}}),
            json!({"metadata": {"namespace": "default", "name": "db"}, "spec": {"clusterIP": "None"}}),
        ];
        let slices = [
            json!({"metadata": {"namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
            "endpoints": [{"addresses": ["10.42.0.9"], "conditions": {"ready": true}},
                          {"addresses": ["10.42.0.4"]},
                          {"addresses": ["10.42.0.5"], "conditions": {"ready": false}}]}),
        ];
        let ip = |a, b, c, d| Ipv4Addr::new(a, b, c, d);
        assert_eq!(
            resolve("web.default.svc.cluster.local", &svcs, &slices),
            Answer::Found(vec![ip(10, 43, 0, 7)])
        );
        assert_eq!(
            resolve("db.default.svc.cluster.local", &svcs, &slices),
            Answer::Found(vec![ip(10, 42, 0, 4), ip(10, 42, 0, 9)])
        );
        assert_eq!(
            resolve("web.other.svc.cluster.local", &svcs, &slices),
            Answer::NotFound
        );
        assert_eq!(
            resolve("10-42-0-5.default.pod.cluster.local", &svcs, &slices),
            Answer::Found(vec![ip(10, 42, 0, 5)])
        );
        assert_eq!(
            resolve("x-y.default.pod.cluster.local", &svcs, &slices),
            Answer::NotFound
        );
        assert_eq!(resolve("example.com", &svcs, &slices), Answer::Forward);
        assert_eq!(resolve("notcluster.local", &svcs, &slices), Answer::Forward);
        assert_eq!(
            upstream("# x\nsearch a\nnameserver 192.0.2.53\n"),
            Some(ip(192, 0, 2, 53))
        );
    }

    #[test]
    fn resolv_conf_follows_the_dns_policy() {
        let host = "search lan\nnameserver 192.0.2.53\noptions edns0\n";
        let gw = Ipv4Addr::new(10, 42, 0, 1);
        let pod = json!({"metadata": {"namespace": "shop"}, "spec": {}});
        assert_eq!(
            resolv_conf(&pod, gw, host),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.42.0.1\noptions ndots:5\n"
        );
        let pod = json!({"metadata": {"namespace": "shop"}, "spec": {"dnsPolicy": "Default"}});
        assert_eq!(
            resolv_conf(&pod, gw, host),
            "search lan\nnameserver 192.0.2.53\noptions edns0\n"
        );
        let pod = json!({"metadata": {"namespace": "shop"}, "spec": {"dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["1.2.3.4"], "searches": ["a.b"], "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}}});
        assert_eq!(
            resolv_conf(&pod, gw, host),
            "search a.b\nnameserver 1.2.3.4\noptions ndots:2 rotate\n"
        );
    }
}
