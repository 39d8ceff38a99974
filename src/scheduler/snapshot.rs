//! What the scheduler knows during one pass: nodes and pods parsed once into
//! the few fields scheduling reads, and per-node indexes (requested
//! resources, host ports, pods by owner, pods with labels for affinity)
//! that `assume` updates as the pass binds pods.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::model::quantity;

/// The requests Kubernetes assumes for scoring a container that asks for no
/// cpu or memory (`schedutil.DefaultMilliCPURequest`, `DefaultMemoryRequest`),
/// so that pods without requests still spread.
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

pub const ZONE: &str = "topology.kubernetes.io/zone";

/// cpu in millicores, memory and ephemeral storage in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral: i64,
}

impl Resources {
    fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral += o.ephemeral;
    }

    fn max(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral = self.ephemeral.max(o.ephemeral);
    }

    pub fn is_zero(&self) -> bool {
        *self == Resources::default()
    }
}

/// `null` reads as the empty collection, as Kubernetes' JSON decoding does.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A quantity from JSON (a string, or a number some clients send).
fn amount(q: &Value, exp10: i32) -> i64 {
    let v = match q {
        Value::String(s) => quantity::scaled(s, exp10),
        Value::Number(n) => n.as_f64().map(|f| f * 10f64.powi(exp10)),
        _ => None,
    };
    // Kubernetes rounds up (Quantity.MilliValue, Value).
    v.map(|f| f.ceil() as i64).unwrap_or(0)
}

fn resources<K: std::borrow::Borrow<str> + Ord, V: std::borrow::Borrow<Value>>(
    list: &BTreeMap<K, V>,
) -> Resources {
    let get = |k: &str, exp10| list.get(k).map(|q| amount(q.borrow(), exp10)).unwrap_or(0);
    Resources {
        milli_cpu: get("cpu", 3),
        memory: get("memory", 0),
        ephemeral: get("ephemeral-storage", 0),
    }
}

#[derive(Deserialize, Default, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", default)]
pub struct Requirement {
    pub key: String,
    pub operator: String,
    #[serde(deserialize_with = "nullable")]
    pub values: Vec<String>,
}

#[derive(Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeSelectorTerm {
    #[serde(deserialize_with = "nullable")]
    pub match_expressions: Vec<Requirement>,
    #[serde(deserialize_with = "nullable")]
    pub match_fields: Vec<Requirement>,
}

#[derive(Deserialize, Default, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelector {
    #[serde(deserialize_with = "nullable")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Toleration {
    pub key: String,
    pub operator: String,
    pub value: String,
    pub effect: String,
}

#[derive(Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

/// One pod (anti-)affinity term, its namespaces resolved against its pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodAffinityTerm {
    /// None: the term matches no pod (Kubernetes' null labelSelector).
    pub selector: Option<LabelSelector>,
    pub namespaces: BTreeSet<String>,
    /// Namespaces whose labels match this also count; `{}` is all of them.
    pub namespace_selector: Option<LabelSelector>,
    pub topology_key: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodAffinity {
    pub required: Vec<PodAffinityTerm>,
    pub required_anti: Vec<PodAffinityTerm>,
    pub preferred: Vec<(i64, PodAffinityTerm)>,
    pub preferred_anti: Vec<(i64, PodAffinityTerm)>,
}

impl PodAffinity {
    pub fn is_empty(&self) -> bool {
        *self == PodAffinity::default()
    }
}

/// What a placed pod's term asks: required affinity or anti-affinity, or a
/// preference with its weight (negative for anti-affinity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TermKind {
    Affinity,
    Anti,
    Preferred(i64),
}

/// A host port a container asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i64,
}

impl HostPort {
    /// Kubernetes' rule: same port and protocol, and addresses that overlap
    /// (0.0.0.0, or no address, overlaps every address).
    pub fn conflicts(&self, o: &HostPort) -> bool {
        let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == o.port
            && self.protocol == o.protocol
            && (any(&self.ip) || any(&o.ip) || self.ip == o.ip)
    }
}

/// The fields of a pod that scheduling reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub creation: String,
    /// The uid of the controller ownerReference.
    pub owner: Option<String>,
    pub requests: Resources,
    /// cpu and memory with the scoring defaults for containers without requests.
    pub nonzero: (i64, i64),
    pub host_ports: Vec<HostPort>,
    pub node_selector: BTreeMap<String, String>,
    /// None: no required node affinity.
    pub required_node_terms: Option<Vec<NodeSelectorTerm>>,
    pub preferred_node_terms: Vec<(i64, NodeSelectorTerm)>,
    pub tolerations: Vec<Toleration>,
    pub affinity: PodAffinity,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PodDoc {
    metadata: PodMeta,
    spec: PodSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PodMeta {
    namespace: String,
    name: String,
    #[serde(deserialize_with = "nullable")]
    labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    owner_references: Vec<OwnerRef>,
    #[serde(deserialize_with = "nullable")]
    creation_timestamp: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OwnerRef {
    uid: String,
    controller: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PodSpec {
    #[serde(deserialize_with = "nullable")]
    containers: Vec<Container>,
    #[serde(deserialize_with = "nullable")]
    init_containers: Vec<Container>,
    #[serde(deserialize_with = "nullable")]
    node_selector: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    tolerations: Vec<Toleration>,
    affinity: Option<AffinityDoc>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Container {
    resources: Option<ResourcesDoc>,
    #[serde(deserialize_with = "nullable")]
    ports: Vec<PortDoc>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResourcesDoc {
    #[serde(deserialize_with = "nullable")]
    requests: BTreeMap<String, Value>,
    #[serde(deserialize_with = "nullable")]
    limits: BTreeMap<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PortDoc {
    host_port: i64,
    #[serde(rename = "hostIP")]
    host_ip: String,
    protocol: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AffinityDoc {
    node_affinity: Option<NodeAffinityDoc>,
    pod_affinity: Option<PodAffinityDoc>,
    pod_anti_affinity: Option<PodAffinityDoc>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NodeAffinityDoc {
    required_during_scheduling_ignored_during_execution: Option<NodeSelectorDoc>,
    #[serde(deserialize_with = "nullable")]
    preferred_during_scheduling_ignored_during_execution: Vec<PreferredNodeTerm>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NodeSelectorDoc {
    #[serde(deserialize_with = "nullable")]
    node_selector_terms: Vec<NodeSelectorTerm>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PreferredNodeTerm {
    weight: i64,
    preference: NodeSelectorTerm,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PodAffinityDoc {
    #[serde(deserialize_with = "nullable")]
    required_during_scheduling_ignored_during_execution: Vec<PodAffinityTermDoc>,
    #[serde(deserialize_with = "nullable")]
    preferred_during_scheduling_ignored_during_execution: Vec<WeightedTermDoc>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PodAffinityTermDoc {
    label_selector: Option<LabelSelector>,
    #[serde(deserialize_with = "nullable")]
    namespaces: Vec<String>,
    namespace_selector: Option<LabelSelector>,
    topology_key: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WeightedTermDoc {
    weight: i64,
    pod_affinity_term: PodAffinityTermDoc,
}

impl PodAffinityTermDoc {
    fn resolve(self, own_namespace: &str) -> PodAffinityTerm {
        let mut namespaces: BTreeSet<String> = self.namespaces.into_iter().collect();
        if namespaces.is_empty() && self.namespace_selector.is_none() {
            namespaces.insert(own_namespace.to_string());
        }
        PodAffinityTerm {
            selector: self.label_selector,
            namespaces,
            namespace_selector: self.namespace_selector,
            topology_key: self.topology_key,
        }
    }
}

/// Kubernetes' effective request: the sum over app containers or the largest
/// init container, whichever is more, per resource; a container's requests
/// default to its limits. Pod overhead and sidecar init containers are not
/// counted.
fn pod_requests(spec: &PodSpec, defaults: bool) -> Resources {
    let container = |c: &Container| {
        let mut merged = BTreeMap::new();
        if let Some(r) = &c.resources {
            merged.extend(
                r.limits
                    .iter()
                    .chain(&r.requests)
                    .map(|(k, v)| (k.as_str(), v)),
            );
        }
        let mut res = resources(&merged);
        if defaults {
            if !merged.contains_key("cpu") {
                res.milli_cpu = DEFAULT_MILLI_CPU;
            }
            if !merged.contains_key("memory") {
                res.memory = DEFAULT_MEMORY;
            }
        }
        res
    };
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&container(c));
    }
    for c in &spec.init_containers {
        sum.max(&container(c));
    }
    sum
}

impl Pod {
    /// From a pod's JSON text (the store's `raw`).
    pub fn parse(raw: &str) -> Result<Pod, serde_json::Error> {
        Ok(Pod::from_doc(serde_json::from_str(raw)?))
    }

    pub fn from_value(v: &Value) -> Result<Pod, serde_json::Error> {
        Ok(Pod::from_doc(PodDoc::deserialize(v)?))
    }

    fn from_doc(doc: PodDoc) -> Pod {
        let PodDoc { metadata: m, spec } = doc;
        let requests = pod_requests(&spec, false);
        let nonzero = pod_requests(&spec, true);
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .filter(|p| p.host_port > 0)
            .map(|p| HostPort {
                ip: p.host_ip.clone(),
                protocol: if p.protocol.is_empty() {
                    "TCP".into()
                } else {
                    p.protocol.clone()
                },
                port: p.host_port,
            })
            .collect();
        let affinity = spec.affinity.unwrap_or_default();
        let node = affinity.node_affinity.unwrap_or_default();
        let ns = m.namespace.as_str();
        let terms = |doc: Option<PodAffinityDoc>| {
            let d = doc.unwrap_or_default();
            let required: Vec<PodAffinityTerm> = d
                .required_during_scheduling_ignored_during_execution
                .into_iter()
                .map(|t| t.resolve(ns))
                .collect();
            let preferred: Vec<(i64, PodAffinityTerm)> = d
                .preferred_during_scheduling_ignored_during_execution
                .into_iter()
                .map(|w| (w.weight, w.pod_affinity_term.resolve(ns)))
                .collect();
            (required, preferred)
        };
        let (required, preferred) = terms(affinity.pod_affinity);
        let (required_anti, preferred_anti) = terms(affinity.pod_anti_affinity);
        Pod {
            owner: m
                .owner_references
                .into_iter()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid),
            namespace: m.namespace,
            name: m.name,
            labels: m.labels,
            creation: m.creation_timestamp,
            requests,
            nonzero: (nonzero.milli_cpu, nonzero.memory),
            host_ports,
            node_selector: spec.node_selector,
            required_node_terms: node
                .required_during_scheduling_ignored_during_execution
                .map(|s| s.node_selector_terms),
            preferred_node_terms: node
                .preferred_during_scheduling_ignored_during_execution
                .into_iter()
                .map(|p| (p.weight, p.preference))
                .collect(),
            tolerations: spec.tolerations,
            affinity: PodAffinity {
                required,
                required_anti,
                preferred,
                preferred_anti,
            },
        }
    }
}

/// The fields of a node that scheduling reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub unschedulable: bool,
    /// spec.taints, plus the taint Kubernetes' node lifecycle controller
    /// would have put on a node that is not Ready, when it is not there yet.
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    /// status.allocatable.pods (0 when absent, as in Kubernetes).
    pub max_pods: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeDoc {
    metadata: NodeMeta,
    spec: NodeSpec,
    status: NodeStatus,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeMeta {
    name: String,
    #[serde(deserialize_with = "nullable")]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeSpec {
    unschedulable: Option<bool>,
    #[serde(deserialize_with = "nullable")]
    taints: Vec<Taint>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeStatus {
    #[serde(deserialize_with = "nullable")]
    allocatable: BTreeMap<String, Value>,
    #[serde(deserialize_with = "nullable")]
    conditions: Vec<Condition>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
}

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

impl Node {
    pub fn parse(raw: &str) -> Result<Node, serde_json::Error> {
        Ok(Node::from_doc(serde_json::from_str(raw)?))
    }

    pub fn from_value(v: &Value) -> Result<Node, serde_json::Error> {
        Ok(Node::from_doc(NodeDoc::deserialize(v)?))
    }

    fn from_doc(doc: NodeDoc) -> Node {
        let NodeDoc {
            metadata,
            spec,
            status,
        } = doc;
        let mut taints = spec.taints;
        let ready = status.conditions.iter().find(|c| c.kind == "Ready");
        // The controller's NoExecute taint alone does not keep new pods
        // off: every pod tolerates it for a while (DefaultTolerationSeconds).
        let lifecycle_tainted = taints
            .iter()
            .any(|t| (t.key == NOT_READY || t.key == UNREACHABLE) && t.effect == "NoSchedule");
        match ready.map(|c| c.status.as_str()) {
            Some("True") => {}
            _ if lifecycle_tainted => {}
            // Ready=False is not-ready; Unknown or never reported is unreachable.
            status => taints.push(Taint {
                key: if status == Some("False") {
                    NOT_READY
                } else {
                    UNREACHABLE
                }
                .into(),
                value: String::new(),
                effect: "NoSchedule".into(),
            }),
        }
        Node {
            name: metadata.name,
            labels: metadata.labels,
            unschedulable: spec.unschedulable == Some(true),
            taints,
            allocatable: resources(&status.allocatable),
            max_pods: status
                .allocatable
                .get("pods")
                .map(|q| amount(q, 0))
                .unwrap_or(0),
        }
    }
}

/// A node with what is bound to it.
#[derive(Debug)]
pub struct NodeState {
    pub node: Node,
    pub requested: Resources,
    /// cpu and memory requested with the scoring defaults.
    pub nonzero: (i64, i64),
    pub pods: i64,
    pub ports: Vec<HostPort>,
}

/// A pass's view of the cluster. Built once per pass; `assume` keeps it
/// current as the pass binds pods, so no decision re-reads the store.
pub struct Snapshot {
    pub nodes: Vec<NodeState>,
    by_name: HashMap<String, usize>,
    /// Namespace labels, for namespaceSelector.
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Owner uid → its pods per node index.
    owners: HashMap<String, Vec<u32>>,
    /// Every placed pod with its node, kept only when a pod to place has
    /// pod (anti-)affinity terms.
    pub placed: Option<Vec<(usize, Arc<Pod>)>>,
    /// Label key → value → indexes into `placed`, so a term's matchLabels
    /// finds its few candidates without looking at every placed pod.
    by_label: HashMap<String, HashMap<String, Vec<usize>>>,
    /// The distinct (anti-)affinity terms of placed pods, with how many
    /// pods carry each per node index: replicas share their terms, so a
    /// decision looks at a few terms, not at every placed pod.
    pub placed_terms: HashMap<(TermKind, PodAffinityTerm), Vec<u32>>,
}

impl Snapshot {
    /// `placed`: the pods holding a place on a node, by node name. Pods
    /// bound to a node not in `nodes` are left out. `track_pods` keeps every
    /// placed pod for inter-pod affinity.
    pub fn new(
        nodes: Vec<Node>,
        namespaces: HashMap<String, BTreeMap<String, String>>,
        placed: impl IntoIterator<Item = (String, Arc<Pod>)>,
        track_pods: bool,
    ) -> Snapshot {
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let mut s = Snapshot {
            nodes: nodes
                .into_iter()
                .map(|node| NodeState {
                    node,
                    requested: Resources::default(),
                    nonzero: (0, 0),
                    pods: 0,
                    ports: Vec::new(),
                })
                .collect(),
            by_name,
            namespaces,
            owners: HashMap::new(),
            placed: track_pods.then(Vec::new),
            by_label: HashMap::new(),
            placed_terms: HashMap::new(),
        };
        for (node, pod) in placed {
            if let Some(&i) = s.by_name.get(&node) {
                s.assume(&pod, i);
            }
        }
        s
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Counts `pod` as placed on node `i`.
    pub fn assume(&mut self, pod: &Arc<Pod>, i: usize) {
        let n = &mut self.nodes[i];
        n.requested.add(&pod.requests);
        n.nonzero.0 += pod.nonzero.0;
        n.nonzero.1 += pod.nonzero.1;
        n.pods += 1;
        n.ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = &pod.owner {
            let len = self.nodes.len();
            self.owners
                .entry(owner.clone())
                .or_insert_with(|| vec![0; len])[i] += 1;
        }
        if let Some(placed) = &mut self.placed {
            for (k, v) in &pod.labels {
                let values = self.by_label.entry(k.clone()).or_default();
                values.entry(v.clone()).or_default().push(placed.len());
            }
            placed.push((i, pod.clone()));
        }
        let a = &pod.affinity;
        let terms = (a.required.iter().map(|t| (TermKind::Affinity, t)))
            .chain(a.required_anti.iter().map(|t| (TermKind::Anti, t)))
            .chain(
                a.preferred
                    .iter()
                    .map(|(w, t)| (TermKind::Preferred(*w), t)),
            )
            .chain(
                a.preferred_anti
                    .iter()
                    .map(|(w, t)| (TermKind::Preferred(-w), t)),
            );
        for (kind, t) in terms {
            let len = self.nodes.len();
            self.placed_terms
                .entry((kind, t.clone()))
                .or_insert_with(|| vec![0; len])[i] += 1;
        }
    }

    /// Calls `f` with the node index of each placed pod that may match
    /// `t`'s label selector (callers still check the whole term): those
    /// with the rarest of its matchLabels, or every placed pod.
    pub fn candidates(&self, t: &PodAffinityTerm, mut f: impl FnMut(usize, &Pod)) {
        let Some(selector) = &t.selector else {
            return;
        };
        debug_assert!(
            self.placed.is_some(),
            "snapshot built without pods for affinity"
        );
        let placed = self.placed.as_deref().unwrap_or_default();
        let lists: Option<Vec<&Vec<usize>>> = selector
            .match_labels
            .iter()
            .map(|(k, v)| self.by_label.get(k)?.get(v))
            .collect();
        match lists {
            // Some label no placed pod has: no candidate.
            None => {}
            Some(lists) => match lists.into_iter().min_by_key(|l| l.len()) {
                Some(rarest) => {
                    for &j in rarest {
                        f(placed[j].0, &placed[j].1);
                    }
                }
                None => {
                    for (i, p) in placed {
                        f(*i, p);
                    }
                }
            },
        }
    }

    /// Pods of `owner` per node index.
    pub fn owned(&self, owner: &str) -> Option<&[u32]> {
        self.owners.get(owner).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Pod {
        Pod::from_value(&json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn requests_default_to_limits_and_init_containers_count_as_their_max() {
        let p = pod(json!({
            "containers": [
                {"resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "64Mi"}}},
                {"resources": {"requests": {"cpu": "0.2", "memory": "32Mi", "ephemeral-storage": "1Gi"}}}
            ],
            "initContainers": [
                {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                {"resources": {"limits": {"cpu": "200m"}}}
            ]
        }));
        assert_eq!(
            p.requests,
            Resources {
                milli_cpu: 500,
                memory: 1 << 30,
                ephemeral: 1 << 30
            }
        );
        // Scoring counts 100m and 200Mi for a container that asks for nothing.
        let bare = pod(json!({"containers": [{"name": "c"}]}));
        assert_eq!(bare.requests, Resources::default());
        assert_eq!(bare.nonzero, (100, 200 << 20));
    }

    #[test]
    fn affinity_terms_default_to_the_pods_own_namespace() {
        let p = pod(json!({"containers": [], "affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "a"}}, "topologyKey": "kubernetes.io/hostname"},
            {"labelSelector": null, "namespaces": ["x"], "topologyKey": "zone"}
        ]}}}));
        let req = &p.affinity.required;
        assert_eq!(req[0].namespaces, BTreeSet::from(["default".to_string()]));
        assert_eq!(req[1].namespaces, BTreeSet::from(["x".to_string()]));
        assert!(req[1].selector.is_none());
    }

    #[test]
    fn a_node_not_ready_carries_the_lifecycle_taint() {
        let node = |status: Value, taints: Value| {
            Node::from_value(
                &json!({"metadata": {"name": "n"}, "spec": {"taints": taints},
                "status": {"conditions": status}}),
            )
            .unwrap()
            .taints
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect::<Vec<_>>()
        };
        assert!(node(json!([{"type": "Ready", "status": "True"}]), json!(null)).is_empty());
        assert_eq!(
            node(json!([{"type": "Ready", "status": "False"}]), json!([])),
            ["node.kubernetes.io/not-ready:NoSchedule"]
        );
        assert_eq!(
            node(json!(null), json!(null)),
            ["node.kubernetes.io/unreachable:NoSchedule"]
        );
        // The node lifecycle controller's own taints are not doubled...
        let both = json!([{"key": UNREACHABLE, "effect": "NoExecute"}, {"key": UNREACHABLE, "effect": "NoSchedule"}]);
        assert_eq!(
            node(json!([{"type": "Ready", "status": "Unknown"}]), both),
            [
                "node.kubernetes.io/unreachable:NoExecute",
                "node.kubernetes.io/unreachable:NoSchedule"
            ]
        );
        // ...but its NoExecute taint alone gets the NoSchedule one beside it.
        assert_eq!(
            node(
                json!([{"type": "Ready", "status": "Unknown"}]),
                json!([{"key": UNREACHABLE, "effect": "NoExecute"}])
            ),
            [
                "node.kubernetes.io/unreachable:NoExecute",
                "node.kubernetes.io/unreachable:NoSchedule"
            ]
        );
    }
}
