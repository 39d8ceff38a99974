//! Scores: among the nodes that fit, the one with the highest weighted sum
//! wins; ties go to the first node by name. Each score is 0..=100 per node,
//! normalised as kube-scheduler normalises it, and weighted with
//! kube-scheduler's default plugin weights.

use super::affinity;
use super::filter::tolerates;
use super::snapshot::{Node, NodeState, Pod, Snapshot, ZONE};

pub const MAX: i64 = 100;

const W_LEAST_ALLOCATED: i64 = 1;
const W_SPREAD: i64 = 2;
const W_NODE_AFFINITY: i64 = 2;
const W_POD_AFFINITY: i64 = 2;
const W_TAINTS: i64 = 3;

/// Kubernetes' LeastAllocated over cpu and memory (equal weights), counting
/// 100m and 200Mi for containers that request nothing.
pub fn least_allocated(pod: &Pod, n: &NodeState) -> i64 {
    let free = |alloc: i64, used: i64| {
        if alloc <= 0 || used > alloc {
            0
        } else {
            (alloc - used) * MAX / alloc
        }
    };
    (free(n.node.allocatable.milli_cpu, n.nonzero.0 + pod.nonzero.0)
        + free(n.node.allocatable.memory, n.nonzero.1 + pod.nonzero.1))
        / 2
}

/// Spreading pods of one owner (Kubernetes' SelectorSpread, by controller
/// ownerReference): fewer of the owner's pods on a node scores higher; with
/// zones, the zone's count weighs two thirds. None: the pod has no owner
/// with placed pods (every node would score the same).
pub fn owner_spread(snap: &Snapshot, pod: &Pod, nodes: &[usize]) -> Option<Vec<i64>> {
    let counts = snap.owned(pod.owner.as_deref()?)?;
    let zone = |i: usize| snap.nodes[i].node.labels.get(ZONE);
    let max_node = nodes.iter().map(|&i| counts[i]).max().unwrap_or(0);
    let mut zones: std::collections::HashMap<&String, u32> = Default::default();
    for &i in nodes {
        if let Some(z) = zone(i) {
            *zones.entry(z).or_default() += counts[i];
        }
    }
    let max_zone = zones.values().copied().max().unwrap_or(0);
    let spread = |count: u32, max: u32| {
        if max == 0 {
            MAX as f64
        } else {
            MAX as f64 * f64::from(max - count) / f64::from(max)
        }
    };
    Some(
        nodes
            .iter()
            .map(|&i| {
                let s = spread(counts[i], max_node);
                match zone(i) {
                    Some(z) => s / 3.0 + 2.0 / 3.0 * spread(zones[z], max_zone),
                    None => s,
                }
                .round() as i64
            })
            .collect(),
    )
}

/// PreferNoSchedule taints the pod does not tolerate (fewer is better).
pub fn intolerable_preferences(pod: &Pod, node: &Node) -> i64 {
    let tolerations: Vec<_> = pod
        .tolerations
        .iter()
        .filter(|t| t.effect.is_empty() || t.effect == "PreferNoSchedule")
        .collect();
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| !tolerations.iter().any(|x| tolerates(x, t)))
        .count() as i64
}

/// Kubernetes' DefaultNormalizeScore: scaled so the highest is MAX (or,
/// reversed, the highest is 0).
pub fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores {
        let scaled = if max > 0 { *s * MAX / max } else { 0 };
        *s = if reverse { MAX - scaled } else { scaled };
    }
}

/// InterPodAffinity's normalisation: lowest 0, highest MAX.
fn normalize_min_max(scores: &mut [i64]) {
    let (min, max) = (
        scores.iter().copied().min().unwrap_or(0),
        scores.iter().copied().max().unwrap_or(0),
    );
    for s in scores {
        *s = if max > min {
            (*s - min) * MAX / (max - min)
        } else {
            0
        };
    }
}

/// The weighted total of every score for each of `nodes`.
pub fn totals(snap: &Snapshot, pod: &Pod, nodes: &[usize]) -> Vec<i64> {
    let mut total: Vec<i64> = nodes
        .iter()
        .map(|&i| W_LEAST_ALLOCATED * least_allocated(pod, &snap.nodes[i]))
        .collect();
    let mut add = |scores: Vec<i64>, weight: i64| {
        for (t, s) in total.iter_mut().zip(scores) {
            *t += weight * s;
        }
    };
    if let Some(s) = owner_spread(snap, pod, nodes) {
        add(s, W_SPREAD);
    }
    if !pod.preferred_node_terms.is_empty() {
        let mut s: Vec<i64> = nodes
            .iter()
            .map(|&i| affinity::preferred_node_weight(pod, &snap.nodes[i].node))
            .collect();
        normalize(&mut s, false);
        add(s, W_NODE_AFFINITY);
    }
    let mut s: Vec<i64> = nodes
        .iter()
        .map(|&i| intolerable_preferences(pod, &snap.nodes[i].node))
        .collect();
    normalize(&mut s, true);
    add(s, W_TAINTS);
    if let Some(mut s) = affinity::preferred_scores(snap, pod, nodes) {
        normalize_min_max(&mut s);
        add(s, W_POD_AFFINITY);
    }
    total
}

/// The node of `nodes` with the highest total; the first by name on a tie.
pub fn best(snap: &Snapshot, pod: &Pod, nodes: &[usize]) -> usize {
    if let [only] = nodes {
        return *only;
    }
    let total = totals(snap, pod, nodes);
    let name = |i: usize| snap.nodes[i].node.name.as_str();
    nodes
        .iter()
        .zip(total)
        .max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| name(**b).cmp(name(**a))))
        .map(|(i, _)| *i)
        .expect("nodes is not empty")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{node, place, pod, snapshot};
    use super::*;
    use serde_json::json;

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let big = pod(
            "b",
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}),
        );
        let snap = snapshot(
            vec![node("a", json!({})), node("b", json!({}))],
            &[("a", &big)],
        );
        let p = pod("p", json!({}));
        // b: cpu (2000-100)/2000, memory (4096-200)/4096 of 100.
        assert_eq!(least_allocated(&p, &snap.nodes[1]), (95 + 95) / 2);
        assert_eq!(least_allocated(&p, &snap.nodes[0]), (45 + 45) / 2);
        assert_eq!(best(&snap, &p, &[0, 1]), 1);
    }

    #[test]
    fn owner_spread_counts_nodes_and_zones() {
        let owned = |name: &str| {
            pod(
                name,
                json!({"metadata": {"ownerReferences": [{"uid": "rs1", "controller": true}]}}),
            )
        };
        let zone = |name: &str, z: &str| {
            node(
                name,
                json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z}}}),
            )
        };
        let (p1, p2) = (owned("1"), owned("2"));
        let snap = snapshot(
            vec![zone("a1", "a"), zone("a2", "a"), zone("b1", "b")],
            &[("a1", &p1), ("a1", &p2)],
        );
        // a2 is empty but in the busy zone: node 100/3, zone 0.
        assert_eq!(
            owner_spread(&snap, &owned("3"), &[0, 1, 2]),
            Some(vec![0, 33, 100])
        );
        assert_eq!(owner_spread(&snap, &pod("x", json!({})), &[0, 1, 2]), None);
    }

    #[test]
    fn preferred_node_affinity_wins_over_emptiness() {
        let filler = pod(
            "f",
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        let mut snap = snapshot(
            vec![
                node("a", json!({"metadata": {"labels": {"disk": "ssd"}}})),
                node("b", json!({})),
            ],
            &[("a", &filler)],
        );
        let p = pod(
            "p",
            json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 20, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}}),
        );
        assert_eq!(place(&mut snap, &p), Ok("a".into()));
        assert_eq!(place(&mut snap, &pod("q", json!({}))), Ok("b".into()));
    }

    #[test]
    fn prefer_no_schedule_taints_score_low_unless_tolerated() {
        let mut snap = snapshot(
            vec![
                node(
                    "a",
                    json!({"spec": {"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}}),
                ),
                node("b", json!({})),
            ],
            &[],
        );
        assert_eq!(place(&mut snap, &pod("p", json!({}))), Ok("b".into()));
        let tolerant = pod(
            "t",
            json!({"spec": {"tolerations": [{"key": "spot", "operator": "Exists"}]}}),
        );
        assert_eq!(intolerable_preferences(&tolerant, &snap.nodes[0].node), 0);
        assert_eq!(
            intolerable_preferences(&pod("p", json!({})), &snap.nodes[0].node),
            1
        );
    }

    #[test]
    fn normalising_and_ties() {
        let mut s = [0, 5, 10];
        normalize(&mut s, false);
        assert_eq!(s, [0, 50, 100]);
        let mut s = [0, 5, 10];
        normalize(&mut s, true);
        assert_eq!(s, [100, 50, 0]);
        let mut s = [0, 0];
        normalize(&mut s, true);
        assert_eq!(s, [100, 100]);
        // Equal nodes: the first by name, whatever their order.
        let snap = snapshot(
            vec![
                node("c", json!({})),
                node("a", json!({})),
                node("b", json!({})),
            ],
            &[],
        );
        assert_eq!(
            snap.nodes[best(&snap, &pod("p", json!({})), &[0, 1, 2])]
                .node
                .name,
            "a"
        );
    }
}
