//! Node selectors and node affinity, label selectors, and inter-pod
//! affinity and anti-affinity over topology domains (a topology domain is
//! a node label key and value, e.g. `kubernetes.io/hostname=board-1`).

use std::collections::{BTreeMap, HashMap};

use super::filter::Reason;
use super::snapshot::{
    LabelSelector, Node, NodeSelectorTerm, Pod, PodAffinityTerm, Requirement, Snapshot, TermKind,
};

/// One requirement against a label's value (None: the label is absent).
pub fn requirement_matches(r: &Requirement, value: Option<&str>) -> bool {
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !r.values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => match (value.and_then(number), r.values.as_slice()) {
            (Some(v), [bound]) => {
                number(bound).is_some_and(|b| if op == "Gt" { v > b } else { v < b })
            }
            _ => false,
        },
        _ => false,
    }
}

/// A nodeSelectorTerm: all its expressions and fields hold; an empty term
/// matches no node. The only field is metadata.name.
pub fn node_term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    (!term.match_expressions.is_empty() || !term.match_fields.is_empty())
        && term
            .match_expressions
            .iter()
            .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && term
            .match_fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&node.name)))
}

/// nodeSelector and required node affinity (any of its terms).
pub fn node_matches(pod: &Pod, node: &Node) -> bool {
    pod.node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v))
        && pod
            .required_node_terms
            .as_ref()
            .is_none_or(|terms| terms.iter().any(|t| node_term_matches(t, node)))
}

/// The sum of the weights of the preferred node affinity terms `node` matches.
pub fn preferred_node_weight(pod: &Pod, node: &Node) -> i64 {
    pod.preferred_node_terms
        .iter()
        .filter(|(_, t)| node_term_matches(t, node))
        .map(|(w, _)| w)
        .sum()
}

pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel
            .match_expressions
            .iter()
            .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Whether `pod` is one of the pods a term speaks of.
pub fn term_matches_pod(
    t: &PodAffinityTerm,
    pod: &Pod,
    namespaces: &HashMap<String, BTreeMap<String, String>>,
) -> bool {
    let in_namespace = t.namespaces.contains(&pod.namespace)
        || t.namespace_selector.as_ref().is_some_and(|s| {
            selector_matches(s, namespaces.get(&pod.namespace).unwrap_or(&NO_LABELS))
        });
    in_namespace
        && t.selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, &pod.labels))
}

type Domains<'a> = HashMap<(&'a str, &'a str), i64>;

/// Adds `w` per pod to the domains of the nodes where `counts` has pods.
fn add_per_node<'a>(
    domains: &mut Domains<'a>,
    snap: &'a Snapshot,
    t: &'a PodAffinityTerm,
    counts: &[u32],
    w: i64,
) {
    for (i, &c) in counts.iter().enumerate() {
        if c > 0
            && let Some(d) = domain(snap, i, &t.topology_key)
        {
            *domains.entry(d).or_default() += w * i64::from(c);
        }
    }
}

/// The required inter-pod rules for one pod, counted once per decision over
/// the placed pods (Kubernetes' InterPodAffinity PreFilter).
#[derive(Default)]
pub struct Required<'a> {
    /// Domains holding pods that match all the pod's required affinity terms.
    affinity: Domains<'a>,
    /// Domains holding pods that match one of its required anti-affinity terms.
    anti: Domains<'a>,
    /// Domains holding placed pods whose required anti-affinity matches the pod.
    existing_anti: Domains<'a>,
    /// The pod matches all its own affinity terms (it may start a group).
    self_match: bool,
}

fn domain<'a>(snap: &'a Snapshot, node: usize, key: &'a str) -> Option<(&'a str, &'a str)> {
    snap.nodes[node]
        .node
        .labels
        .get(key)
        .map(|v| (key, v.as_str()))
}

impl<'a> Required<'a> {
    pub fn new(snap: &'a Snapshot, pod: &'a Pod) -> Required<'a> {
        let mut r = Required::default();
        let a = &pod.affinity;
        let ns = &snap.namespaces;
        if let Some(first) = a.required.first() {
            snap.candidates(first, |i, other| {
                if a.required.iter().all(|t| term_matches_pod(t, other, ns)) {
                    for t in &a.required {
                        if let Some(d) = domain(snap, i, &t.topology_key) {
                            *r.affinity.entry(d).or_default() += 1;
                        }
                    }
                }
            });
        }
        for t in &a.required_anti {
            snap.candidates(t, |i, other| {
                if term_matches_pod(t, other, ns)
                    && let Some(d) = domain(snap, i, &t.topology_key)
                {
                    *r.anti.entry(d).or_default() += 1;
                }
            });
        }
        for ((kind, t), counts) in &snap.placed_terms {
            if *kind == TermKind::Anti && term_matches_pod(t, pod, ns) {
                add_per_node(&mut r.existing_anti, snap, t, counts, 1);
            }
        }
        r.self_match = a.required.iter().all(|t| term_matches_pod(t, pod, ns));
        r
    }

    /// Kubernetes' InterPodAffinity Filter for one node.
    pub fn check(&self, pod: &Pod, node: &Node) -> Option<Reason> {
        let a = &pod.affinity;
        let count = |m: &Domains, key: &str| {
            node.labels
                .get(key)
                .map(|v| m.get(&(key, v.as_str())).copied().unwrap_or(0))
        };
        if !a.required.is_empty() {
            let mut found = true;
            for t in &a.required {
                match count(&self.affinity, &t.topology_key) {
                    // A node without the topology label is in no domain.
                    None => return Some(Reason::PodAffinity),
                    Some(c) => found &= c > 0,
                }
            }
            // The first pod of a group whose terms match itself may go anywhere.
            let starts_group = self.affinity.is_empty() && self.self_match;
            if !(found || starts_group) {
                return Some(Reason::PodAffinity);
            }
        }
        if a.required_anti
            .iter()
            .any(|t| count(&self.anti, &t.topology_key).is_some_and(|c| c > 0))
        {
            return Some(Reason::PodAntiAffinity);
        }
        if self
            .existing_anti
            .iter()
            .any(|((k, v), c)| *c > 0 && node.labels.get(*k).is_some_and(|x| x == v))
        {
            return Some(Reason::ExistingAntiAffinity);
        }
        None
    }
}

/// Kubernetes' InterPodAffinity Score before normalising, for each node of
/// `nodes`: the pod's preferred terms over the placed pods (+weight for
/// affinity, -weight for anti-affinity), and the placed pods' terms that
/// match the pod (their required affinity with weight 1, their preferred
/// terms with theirs). None when nothing applies.
pub fn preferred_scores<'a>(snap: &'a Snapshot, pod: &'a Pod, nodes: &[usize]) -> Option<Vec<i64>> {
    let a = &pod.affinity;
    let own = !a.preferred.is_empty() || !a.preferred_anti.is_empty();
    if !own && snap.placed_terms.is_empty() {
        return None;
    }
    let mut domains: Domains = HashMap::new();
    // Adds `w` to the domain of node `i` when term `t` speaks of `subject`.
    let mut add = |i: usize, t: &'a PodAffinityTerm, w: i64, subject: &Pod| {
        if term_matches_pod(t, subject, &snap.namespaces)
            && let Some(d) = domain(snap, i, &t.topology_key)
        {
            *domains.entry(d).or_default() += w;
        }
    };
    let terms = a
        .preferred
        .iter()
        .map(|(w, t)| (*w, t))
        .chain(a.preferred_anti.iter().map(|(w, t)| (-w, t)));
    for (w, t) in terms {
        snap.candidates(t, |i, other| add(i, t, w, other));
    }
    for ((kind, t), counts) in &snap.placed_terms {
        let w = match kind {
            // kube-scheduler's hardPodAffinityWeight.
            TermKind::Affinity => 1,
            TermKind::Preferred(w) => *w,
            TermKind::Anti => continue,
        };
        if term_matches_pod(t, pod, &snap.namespaces) {
            add_per_node(&mut domains, snap, t, counts, w);
        }
    }
    if domains.is_empty() {
        return None;
    }
    Some(
        nodes
            .iter()
            .map(|&i| {
                let labels = &snap.nodes[i].node.labels;
                domains
                    .iter()
                    .filter(|((k, v), _)| labels.get(*k).is_some_and(|x| x == v))
                    .map(|(_, s)| s)
                    .sum()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{node, place, pod, snapshot};
    use super::*;
    use serde_json::{Value, json};

    fn req(op: &str, values: &[&str]) -> Requirement {
        Requirement {
            key: "k".into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn requirement_operators() {
        let cases = [
            ("In", &["a", "b"][..], Some("b"), true),
            ("In", &["a"], None, false),
            ("NotIn", &["a"], Some("b"), true),
            ("NotIn", &["a"], None, true),
            ("NotIn", &["a"], Some("a"), false),
            ("Exists", &[], Some(""), true),
            ("Exists", &[], None, false),
            ("DoesNotExist", &[], None, true),
            ("DoesNotExist", &[], Some("x"), false),
            ("Gt", &["3"], Some("4"), true),
            ("Gt", &["3"], Some("3"), false),
            ("Gt", &["3"], Some("four"), false),
            ("Lt", &["3"], Some("-1"), true),
            ("Lt", &["3"], None, false),
            ("Bogus", &[], Some("x"), false),
        ];
        for (op, values, label, want) in cases {
            assert_eq!(
                requirement_matches(&req(op, values), label),
                want,
                "{op} {values:?} {label:?}"
            );
        }
    }

    #[test]
    fn label_selectors_and_namespaces_of_terms() {
        let term = |t: Value| {
            pod("p", json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [t]}}}}))
                .affinity
                .required[0]
                .clone()
        };
        let web = pod(
            "w",
            json!({"metadata": {"labels": {"app": "web", "tier": "front"}}}),
        );
        let other_ns = pod(
            "w",
            json!({"metadata": {"namespace": "prod", "labels": {"app": "web"}}}),
        );
        let ns = HashMap::from([(
            "prod".to_string(),
            BTreeMap::from([("env".to_string(), "prod".to_string())]),
        )]);
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]});
        let own = term(json!({"labelSelector": sel, "topologyKey": "h"}));
        assert!(term_matches_pod(&own, &web, &ns));
        assert!(
            !term_matches_pod(&own, &other_ns, &ns),
            "the term's own namespace by default"
        );
        let listed = term(
            json!({"labelSelector": {"matchLabels": {"app": "web"}}, "namespaces": ["prod"], "topologyKey": "h"}),
        );
        assert!(term_matches_pod(&listed, &other_ns, &ns));
        assert!(!term_matches_pod(&listed, &web, &ns));
        let by_labels = term(
            json!({"labelSelector": {}, "namespaceSelector": {"matchLabels": {"env": "prod"}}, "topologyKey": "h"}),
        );
        assert!(term_matches_pod(&by_labels, &other_ns, &ns));
        assert!(!term_matches_pod(&by_labels, &web, &ns));
        let everywhere =
            term(json!({"labelSelector": {}, "namespaceSelector": {}, "topologyKey": "h"}));
        assert!(
            term_matches_pod(&everywhere, &web, &ns)
                && term_matches_pod(&everywhere, &other_ns, &ns)
        );
        // No labelSelector: no pod.
        assert!(!term_matches_pod(
            &term(json!({"topologyKey": "h"})),
            &web,
            &ns
        ));
    }

    fn zoned(name: &str, zone: &str) -> super::super::snapshot::Node {
        node(
            name,
            json!({"metadata": {"labels": {"topology.kubernetes.io/zone": zone}}}),
        )
    }

    #[test]
    fn required_affinity_by_zone_and_the_first_pod_of_a_group() {
        let cache = pod("cache", json!({"metadata": {"labels": {"app": "cache"}}}));
        let near_cache = pod(
            "web",
            json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}}}),
        );
        let nodes = || {
            vec![
                zoned("a1", "a"),
                zoned("a2", "a"),
                zoned("b1", "b"),
                node("x", json!({})),
            ]
        };
        let snap = snapshot(nodes(), &[("a1", &cache)]);
        let fit = super::super::filter::feasible(&snap, &near_cache).unwrap();
        let names: Vec<_> = fit
            .iter()
            .map(|&i| snap.nodes[i].node.name.as_str())
            .collect();
        assert_eq!(names, ["a1", "a2"]);
        // No cache anywhere and the pod is not one itself: it waits.
        let mut empty = snapshot(nodes(), &[]);
        assert_eq!(
            place(&mut empty, &near_cache),
            Err("0/4 nodes are available: 4 node(s) didn't match pod affinity rules.".into())
        );
    }

    #[test]
    fn anti_affinity_by_zone_and_its_symmetry() {
        let lonely = pod(
            "l",
            json!({"metadata": {"labels": {"app": "l"}}, "spec": {"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "noisy"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}}}),
        );
        let noisy = pod("n", json!({"metadata": {"labels": {"app": "noisy"}}}));
        let snap = snapshot(
            vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")],
            &[("a1", &noisy)],
        );
        let names = |snap: &Snapshot, p: &Pod| -> Vec<String> {
            super::super::filter::feasible(snap, p)
                .unwrap()
                .iter()
                .map(|&i| snap.nodes[i].node.name.clone())
                .collect()
        };
        assert_eq!(names(&snap, &lonely), ["b1"]);
        // Once the lonely pod is placed, noisy pods keep out of its zone.
        let snap = snapshot(
            vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")],
            &[("a1", &lonely)],
        );
        assert_eq!(names(&snap, &noisy), ["b1"]);
    }

    #[test]
    fn preferred_pod_affinity_and_anti_affinity_score_by_weight() {
        let db = pod("db", json!({"metadata": {"labels": {"app": "db"}}}));
        let batch = pod("batch", json!({"metadata": {"labels": {"app": "batch"}}}));
        let snap = snapshot(
            vec![
                node("n1", json!({})),
                node("n2", json!({})),
                node("n3", json!({})),
            ],
            &[("n1", &db), ("n2", &db), ("n2", &batch)],
        );
        let p = pod(
            "api",
            json!({"spec": {"affinity": {
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10,
                "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50,
                "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "batch"}}, "topologyKey": "kubernetes.io/hostname"}}]}}}}),
        );
        assert_eq!(
            preferred_scores(&snap, &p, &[0, 1, 2]),
            Some(vec![10, -40, 0])
        );
        // Placed pods' preferences count for the pod they speak of.
        let likes_web = pod(
            "m",
            json!({"spec": {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 7,
            "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}}]}}}}),
        );
        let snap = snapshot(
            vec![node("n1", json!({})), node("n2", json!({}))],
            &[("n2", &likes_web)],
        );
        let web = pod("w", json!({"metadata": {"labels": {"app": "web"}}}));
        assert_eq!(preferred_scores(&snap, &web, &[0, 1]), Some(vec![0, 7]));
        assert_eq!(preferred_scores(&snap, &db, &[0, 1]), None);
    }
}
