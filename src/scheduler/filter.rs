//! Filters: which nodes can take a pod, and why the others cannot, worded
//! and counted as kube-scheduler words its FailedScheduling events.

use std::collections::BTreeMap;
use std::fmt;

use super::affinity::{self, Required};
use super::snapshot::{Node, NodeState, Pod, Snapshot, Taint, Toleration};

/// Why a node cannot take a pod: kube-scheduler's reason strings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Unschedulable,
    Taint {
        key: String,
        value: String,
    },
    NodeAffinity,
    Ports,
    TooManyPods,
    /// cpu, memory or ephemeral-storage.
    Insufficient(&'static str),
    PodAffinity,
    PodAntiAffinity,
    ExistingAntiAffinity,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::Taint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::Ports => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::Insufficient(r) => write!(f, "Insufficient {r}"),
            Reason::PodAffinity => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::PodAntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::ExistingAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
        }
    }
}

/// No node fits: the reasons, counted over the nodes.
#[derive(Debug, PartialEq, Eq)]
pub struct FitError {
    pub nodes: usize,
    pub reasons: BTreeMap<Reason, usize>,
}

impl fmt::Display for FitError {
    /// "0/3 nodes are available: 2 Insufficient memory, 1 node(s) didn't
    /// match Pod's node affinity/selector." kube-scheduler sorts the
    /// "count reason" strings (its `FitError.Error`), so this does too.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counted: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        counted.sort();
        write!(
            f,
            "0/{} nodes are available: {}.",
            self.nodes,
            counted.join(", ")
        )
    }
}

/// Kubernetes' `Toleration.ToleratesTaint`: an empty effect matches every
/// effect, an empty key with Exists matches every key.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    (t.effect.is_empty() || t.effect == taint.effect)
        && (t.key.is_empty() || t.key == taint.key)
        && match t.operator.as_str() {
            "" | "Equal" => t.value == taint.value,
            "Exists" => true,
            _ => false,
        }
}

fn tolerated(pod: &Pod, taint: &Taint) -> bool {
    pod.tolerations.iter().any(|t| tolerates(t, taint))
}

/// A cordoned node takes only pods that tolerate the unschedulable taint.
pub fn unschedulable(pod: &Pod, node: &Node) -> Option<Reason> {
    let cordon = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        value: String::new(),
        effect: "NoSchedule".into(),
    };
    (node.unschedulable && !tolerated(pod, &cordon)).then_some(Reason::Unschedulable)
}

/// The first NoSchedule or NoExecute taint the pod does not tolerate
/// (PreferNoSchedule only scores).
pub fn taints(pod: &Pod, node: &Node) -> Option<Reason> {
    node.taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerated(pod, t))
        .map(|t| Reason::Taint {
            key: t.key.clone(),
            value: t.value.clone(),
        })
}

pub fn node_affinity(pod: &Pod, node: &Node) -> Option<Reason> {
    (!affinity::node_matches(pod, node)).then_some(Reason::NodeAffinity)
}

pub fn ports(pod: &Pod, n: &NodeState) -> Option<Reason> {
    pod.host_ports
        .iter()
        .any(|p| n.ports.iter().any(|q| p.conflicts(q)))
        .then_some(Reason::Ports)
}

/// Kubernetes' NodeResourcesFit: room for one more pod, and for each
/// resource the pod asks for, allocatable minus what placed pods request.
pub fn resources(pod: &Pod, n: &NodeState) -> Vec<Reason> {
    let mut out = Vec::new();
    if n.pods + 1 > n.node.max_pods {
        out.push(Reason::TooManyPods);
    }
    let (want, alloc, used) = (&pod.requests, &n.node.allocatable, &n.requested);
    for (name, want, alloc, used) in [
        ("cpu", want.milli_cpu, alloc.milli_cpu, used.milli_cpu),
        ("memory", want.memory, alloc.memory, used.memory),
        (
            "ephemeral-storage",
            want.ephemeral,
            alloc.ephemeral,
            used.ephemeral,
        ),
    ] {
        if want > 0 && want > alloc - used {
            out.push(Reason::Insufficient(name));
        }
    }
    out
}

/// Every filter for one node, in kube-scheduler's order, stopping at the
/// first that fails (the resource filter may give several reasons).
fn check(snap: &Snapshot, pod: &Pod, i: usize, required: &Required) -> Vec<Reason> {
    let n = &snap.nodes[i];
    let first = unschedulable(pod, &n.node)
        .or_else(|| taints(pod, &n.node))
        .or_else(|| node_affinity(pod, &n.node))
        .or_else(|| ports(pod, n));
    if let Some(r) = first {
        return vec![r];
    }
    let short = resources(pod, n);
    if !short.is_empty() {
        return short;
    }
    required.check(pod, &n.node).into_iter().collect()
}

/// The nodes (indexes into the snapshot) that can take `pod`.
pub fn feasible(snap: &Snapshot, pod: &Pod) -> Result<Vec<usize>, FitError> {
    let required = Required::new(snap, pod);
    let mut fit = Vec::new();
    let mut reasons: BTreeMap<Reason, usize> = BTreeMap::new();
    for i in 0..snap.nodes.len() {
        let why = check(snap, pod, i, &required);
        if why.is_empty() {
            fit.push(i);
        }
        for r in why {
            *reasons.entry(r).or_default() += 1;
        }
    }
    if fit.is_empty() {
        Err(FitError {
            nodes: snap.nodes.len(),
            reasons,
        })
    } else {
        Ok(fit)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{node, pod, snapshot};
    use super::*;
    use serde_json::json;

    fn taint_reason(tolerations: serde_json::Value, taints: serde_json::Value) -> Option<String> {
        let p = pod("p", json!({"spec": {"tolerations": tolerations}}));
        taints_of(&p, &node("n", json!({"spec": {"taints": taints}})))
    }

    fn taints_of(p: &Pod, n: &Node) -> Option<String> {
        taints(p, n).map(|r| r.to_string())
    }

    #[test]
    fn taints_block_unless_tolerated() {
        let dedicated = json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
        assert_eq!(
            taint_reason(json!([]), dedicated.clone()).as_deref(),
            Some("node(s) had untolerated taint {dedicated: gpu}")
        );
        for tolerates in [
            json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]),
            json!([{"key": "dedicated", "value": "gpu"}]),
            json!([{"key": "dedicated", "operator": "Exists"}]),
            json!([{"operator": "Exists"}]),
        ] {
            assert_eq!(
                taint_reason(tolerates.clone(), dedicated.clone()),
                None,
                "{tolerates}"
            );
        }
        for not in [
            json!([{"key": "dedicated", "value": "cpu"}]),
            json!([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]),
            json!([{"key": "other", "operator": "Exists"}]),
        ] {
            assert!(
                taint_reason(not.clone(), dedicated.clone()).is_some(),
                "{not}"
            );
        }
        let evict = json!([{"key": "k", "effect": "NoExecute"}]);
        assert_eq!(
            taint_reason(json!([]), evict).as_deref(),
            Some("node(s) had untolerated taint {k: }")
        );
        // PreferNoSchedule only scores.
        assert_eq!(
            taint_reason(
                json!([]),
                json!([{"key": "k", "effect": "PreferNoSchedule"}])
            ),
            None
        );
    }

    #[test]
    fn the_node_lifecycle_taints_keep_new_pods_off() {
        // What the API's defaulting gives every pod: 300 s on a failed node.
        let p = pod(
            "p",
            json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}}),
        );
        let gone = node(
            "n",
            json!({"spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        );
        assert_eq!(
            taints_of(&p, &gone).as_deref(),
            Some("node(s) had untolerated taint {node.kubernetes.io/unreachable: }")
        );
        // A pod that tolerates everything (a DaemonSet's, say) still goes there.
        let all = pod(
            "d",
            json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
        );
        assert_eq!(taints_of(&all, &gone), None);
    }

    #[test]
    fn a_cordoned_node_takes_only_pods_tolerating_it() {
        let cordoned = node("n", json!({"spec": {"unschedulable": true}}));
        assert_eq!(
            unschedulable(&pod("p", json!({})), &cordoned),
            Some(Reason::Unschedulable)
        );
        let tolerant = pod(
            "p",
            json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(unschedulable(&tolerant, &cordoned), None);
        assert_eq!(
            unschedulable(&pod("p", json!({})), &node("m", json!({}))),
            None
        );
    }

    #[test]
    fn node_selector_and_required_node_affinity() {
        let n = node(
            "n1",
            json!({"metadata": {"labels": {"disk": "ssd", "cores": "4"}}}),
        );
        let with = |spec: serde_json::Value| node_affinity(&pod("p", json!({"spec": spec})), &n);
        assert_eq!(with(json!({"nodeSelector": {"disk": "ssd"}})), None);
        assert_eq!(
            with(json!({"nodeSelector": {"disk": "hdd"}})),
            Some(Reason::NodeAffinity)
        );
        let required = |terms: serde_json::Value| {
            with(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
            )
        };
        assert_eq!(
            required(
                json!([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["2"]}]}])
            ),
            None
        );
        // Terms are ORed, expressions in a term ANDed.
        assert_eq!(
            required(json!([
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}, {"key": "gpu", "operator": "Exists"}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])),
            None
        );
        assert_eq!(
            required(
                json!([{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}, {"key": "gpu", "operator": "Exists"}]}])
            ),
            Some(Reason::NodeAffinity)
        );
        assert_eq!(required(json!([{}])), Some(Reason::NodeAffinity));
    }

    #[test]
    fn host_ports_conflict_on_port_protocol_and_overlapping_address() {
        let web = |ip: &str, proto: &str| {
            pod(
                "p",
                json!({"spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": 8080, "hostIP": ip, "protocol": proto}]}]}}),
            )
        };
        let check = |placed: &Arc<Pod>, new: &Arc<Pod>| {
            let snap = snapshot(vec![node("n", json!({}))], &[("n", placed)]);
            ports(new, &snap.nodes[0])
        };
        use std::sync::Arc;
        assert_eq!(check(&web("", "TCP"), &web("", "")), Some(Reason::Ports));
        assert_eq!(
            check(&web("10.0.0.1", "TCP"), &web("0.0.0.0", "TCP")),
            Some(Reason::Ports)
        );
        assert_eq!(
            check(&web("10.0.0.1", "TCP"), &web("10.0.0.2", "TCP")),
            None
        );
        assert_eq!(check(&web("", "UDP"), &web("", "TCP")), None);
        assert_eq!(check(&pod("q", json!({})), &web("", "TCP")), None);
    }

    #[test]
    fn requests_are_checked_against_allocatable_minus_placed_requests() {
        let asks = |cpu: &str, memory: &str, disk: &str| {
            pod(
                "p",
                json!({"spec": {"containers": [{"name": "c", "resources": {"requests":
                {"cpu": cpu, "memory": memory, "ephemeral-storage": disk}}}]}}),
            )
        };
        let placed = asks("1500m", "3Gi", "9Gi");
        let snap = snapshot(vec![node("n", json!({}))], &[("n", &placed)]);
        let n = &snap.nodes[0];
        assert_eq!(resources(&asks("500m", "1Gi", "1Gi"), n), []);
        assert_eq!(
            resources(&asks("501m", "1025Mi", "2Gi"), n),
            [
                Reason::Insufficient("cpu"),
                Reason::Insufficient("memory"),
                Reason::Insufficient("ephemeral-storage")
            ]
        );
        // A pod that asks for nothing needs only a place.
        let full = snapshot(
            vec![node("n", json!({"status": {"allocatable": {"pods": "1"}}}))],
            &[("n", &placed)],
        );
        assert_eq!(
            resources(&pod("q", json!({})), &full.nodes[0]),
            [Reason::TooManyPods]
        );
    }
}
