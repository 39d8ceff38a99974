//! The scheduler: binds each pod without a node to the best node for it,
//! as kube-scheduler does. Each pass parses what changed since the last
//! one into a [`Snapshot`] (nodes, and per node what placed pods request,
//! their host ports, owners and labels); each decision filters the nodes
//! (`filter.rs`), scores those that fit (`score.rs`, inter-pod rules in
//! `affinity.rs`), binds the winner and counts the pod in the snapshot, so
//! no decision re-reads the store.

mod affinity;
mod filter;
mod score;
mod snapshot;

pub use filter::{FitError, Reason};
pub use snapshot::{Node, Pod, Snapshot};

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::events::{self, Type};
use crate::model::res;
use crate::store::{Object, Store, StoreError};

const COMPONENT: &str = "default-scheduler";

/// Sets spec.nodeName and the PodScheduled condition, as a Binding does.
pub fn bind(
    store: &Store,
    namespace: &str,
    name: &str,
    node: &str,
) -> Result<Arc<Object>, StoreError> {
    let pods = res("Pod");
    let Some(pod) = store.get(pods, namespace, name) else {
        return Err(StoreError::NotFound {
            resource: pods,
            name: name.into(),
        });
    };
    let mut v = pod.value();
    if v.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
    {
        return Err(StoreError::Conflict {
            resource: pods,
            name: name.into(),
        });
    }
    v["spec"]["nodeName"] = node.into();
    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": crate::model::now()});
    let conds = v["status"]["conditions"].as_array_mut();
    match conds {
        Some(c) => {
            c.retain(|x| x["type"] != "PodScheduled");
            c.push(cond);
        }
        None => v["status"]["conditions"] = json!([cond]),
    }
    store.update(pods, v)
}

/// The node a pod bound to, while it still holds a place there: a pod that
/// finished frees its place, as in Kubernetes.
fn holds_place(pod: &Object) -> Option<&str> {
    (!pod.finished && !pod.node_name.is_empty()).then_some(pod.node_name.as_str())
}

/// One decision: the index in `snap` of the node for `pod`, or why no node
/// can take it.
pub fn schedule(snap: &Snapshot, pod: &Pod) -> Result<usize, FitError> {
    let nodes = filter::feasible(snap, pod)?;
    Ok(score::best(snap, pod, &nodes))
}

/// The scheduler's memory between passes.
#[derive(Default)]
pub struct Scheduler {
    /// Pods parsed for scheduling, by uid, with the resourceVersion parsed.
    parsed: HashMap<String, (u64, Arc<Pod>)>,
    /// Pods found not to fit, with their resourceVersion and the state of
    /// the world then: they are looked at again only when either changes,
    /// so a burst of new pods costs one look at each, not one at all per pod.
    unfit: HashMap<String, (u64, u64)>,
}

pub async fn run(store: &Store) {
    let mut scheduler = Scheduler::default();
    // No settling: a new pod should be bound at once. Namespaces matter to
    // affinity terms with a namespaceSelector.
    crate::controllers::level_loop(
        store,
        &[res("Pod"), res("Node"), res("Namespace")],
        std::time::Duration::ZERO,
        || {
            scheduler.pass(store);
            None
        },
    )
    .await
}

/// A pod parsed once per resourceVersion.
fn parsed(cache: &mut HashMap<String, (u64, Arc<Pod>)>, o: &Object) -> Option<Arc<Pod>> {
    if let Some((rv, pod)) = cache.get(&o.uid)
        && *rv == o.rv
    {
        return Some(pod.clone());
    }
    match Pod::parse(&o.raw) {
        Ok(pod) => {
            let pod = Arc::new(pod);
            cache.insert(o.uid.clone(), (o.rv, pod.clone()));
            Some(pod)
        }
        Err(e) => {
            log::warn!(
                "pod {}/{} cannot be read for scheduling: {e}",
                o.namespace,
                o.name
            );
            None
        }
    }
}

impl Scheduler {
    /// Binds every pod without a node that fits somewhere, oldest first, and
    /// marks the others unschedulable.
    pub fn pass(&mut self, store: &Store) {
        let node_objects = store.list(res("Node"), None);
        if node_objects.is_empty() {
            return;
        }
        let namespaces = store.list(res("Namespace"), None);
        // Filtering on the store's extracted fields: no pod is parsed unless
        // it changed since it was last parsed.
        let pods = store.list(res("Pod"), None);
        let world = world_version(&node_objects, &namespaces, &pods);
        let live: HashSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
        self.unfit.retain(|uid, _| live.contains(uid.as_str()));
        self.parsed.retain(|uid, _| live.contains(uid.as_str()));
        let waiting: Vec<&Arc<Object>> = pods
            .iter()
            .filter(|p| p.node_name.is_empty() && !p.deleting)
            .filter(|p| self.unfit.get(&p.uid) != Some(&(p.rv, world)))
            .collect();
        if waiting.is_empty() {
            return;
        }
        let mut waiting: Vec<(&Arc<Object>, Arc<Pod>)> = waiting
            .into_iter()
            .filter_map(|o| Some((o, parsed(&mut self.parsed, o)?)))
            .collect();
        // Oldest first, so that a pod created later never takes an earlier pod's place.
        waiting.sort_by(|(a, x), (b, y)| (&x.creation, a.rv).cmp(&(&y.creation, b.rv)));
        let placed: Vec<(String, Arc<Pod>)> = pods
            .iter()
            .filter_map(|p| Some((holds_place(p)?.to_string(), parsed(&mut self.parsed, p)?)))
            .collect();
        let nodes = node_objects
            .iter()
            .filter_map(|n| {
                Node::parse(&n.raw)
                    .map_err(|e| log::warn!("node {} cannot be read for scheduling: {e}", n.name))
                    .ok()
            })
            .collect();
        // Placed pods' own terms are indexed always; every placed pod is
        // kept only for the terms of a waiting pod.
        let track_pods = waiting.iter().any(|(_, p)| !p.affinity.is_empty());
        let ns_labels = namespaces
            .iter()
            .map(|n| (n.name.clone(), n.labels.clone()))
            .collect();
        let mut snap = Snapshot::new(nodes, ns_labels, placed, track_pods);
        for (o, pod) in waiting {
            match schedule(&snap, &pod) {
                Ok(i) => {
                    let node = snap.nodes[i].node.name.clone();
                    match bind(store, &o.namespace, &o.name, &node) {
                        Ok(bound) => {
                            snap.assume(&pod, i);
                            events::record(
                                store,
                                &bound,
                                Type::Normal,
                                "Scheduled",
                                &format!(
                                    "Successfully assigned {}/{} to {node}",
                                    o.namespace, o.name
                                ),
                                COMPONENT,
                                "",
                            )
                        }
                        Err(e) => log::warn!("binding pod {}/{}: {e}", o.namespace, o.name),
                    }
                }
                Err(why) => {
                    let rv = unschedulable(store, o, &why.to_string());
                    self.unfit.insert(o.uid.clone(), (rv, world));
                }
            }
        }
    }
}

/// Changes whenever what a decision reads changes: a node, a namespace's
/// labels, or the placed pods (which, where, with which labels; the rest
/// of a pod's spec that scheduling reads cannot change once created).
fn world_version(nodes: &[Arc<Object>], namespaces: &[Arc<Object>], pods: &[Arc<Object>]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for n in nodes.iter().chain(namespaces) {
        (&n.name, n.rv).hash(&mut h);
    }
    for p in pods {
        if let Some(node) = holds_place(p) {
            (&p.uid, node, &p.labels).hash(&mut h);
        }
    }
    h.finish()
}

/// Marks a pod that fits nowhere PodScheduled=False with the reason, and
/// records a FailedScheduling event when the reason is new; an unchanged
/// reason writes nothing, so a waiting pod costs no writes while idle.
/// Returns the pod's resourceVersion afterwards.
fn unschedulable(store: &Store, pod: &Object, why: &str) -> u64 {
    let mut v = pod.value();
    let conds = v.pointer("/status/conditions").and_then(Value::as_array);
    let known = conds.into_iter().flatten().any(|c| {
        c["type"] == "PodScheduled" && c["reason"] == "Unschedulable" && c["message"] == why
    });
    if known {
        return pod.rv;
    }
    let cond = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why,
                      "lastProbeTime": null, "lastTransitionTime": crate::model::now()});
    match v["status"]["conditions"].as_array_mut() {
        Some(c) => {
            c.retain(|x| x["type"] != "PodScheduled");
            c.push(cond);
        }
        None => v["status"]["conditions"] = json!([cond]),
    }
    match store.update(res("Pod"), v) {
        Ok(updated) => {
            events::record(
                store,
                &updated,
                Type::Warning,
                "FailedScheduling",
                why,
                COMPONENT,
                "",
            );
            updated.rv
        }
        Err(e) => {
            log::warn!(
                "marking pod {}/{} unschedulable: {e}",
                pod.namespace,
                pod.name
            );
            pod.rv
        }
    }
}

/// Nodes, pods and snapshots for the unit tests of every file here.
#[cfg(test)]
pub(super) mod fixtures {
    use super::*;

    /// Objects merge key by key; anything else replaces.
    fn merge(into: &mut Value, over: &Value) {
        match (into, over) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b.clone(),
        }
    }

    /// A Ready node with 2 cpus, 4 GiB, 10 GiB of disk and room for 110
    /// pods; `extra` is merged over it (spec, labels, allocatable...).
    pub fn node(name: &str, extra: Value) -> Node {
        let mut v = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}});
        merge(&mut v, &extra);
        Node::from_value(&v).unwrap()
    }

    /// A pod in `default` named `name`; `extra` is merged over it.
    pub fn pod(name: &str, extra: Value) -> Arc<Pod> {
        let mut v = json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        merge(&mut v, &extra);
        Arc::new(Pod::from_value(&v).unwrap())
    }

    pub fn snapshot(nodes: Vec<Node>, placed: &[(&str, &Arc<Pod>)]) -> Snapshot {
        Snapshot::new(
            nodes,
            HashMap::new(),
            placed.iter().map(|(n, p)| (n.to_string(), (*p).clone())),
            true,
        )
    }

    /// Schedules `pod` and counts it in the snapshot: the node's name, or
    /// the FailedScheduling message.
    pub fn place(snap: &mut Snapshot, pod: &Arc<Pod>) -> Result<String, String> {
        let i = schedule(snap, pod).map_err(|e| e.to_string())?;
        snap.assume(pod, i);
        Ok(snap.nodes[i].node.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn a_node_takes_pods_up_to_its_capacity() {
        let mut snap = snapshot(
            vec![node("a", json!({"status": {"allocatable": {"pods": "2"}}}))],
            &[],
        );
        assert_eq!(place(&mut snap, &pod("p1", json!({}))), Ok("a".into()));
        assert_eq!(place(&mut snap, &pod("p2", json!({}))), Ok("a".into()));
        assert_eq!(
            place(&mut snap, &pod("p3", json!({}))),
            Err("0/1 nodes are available: 1 Too many pods.".into())
        );
    }

    #[test]
    fn reasons_are_counted_per_node_and_sorted_as_kube_scheduler_does() {
        let full = pod("x", json!({}));
        let nodes = vec![
            node("a", json!({"status": {"allocatable": {"pods": "1"}}})),
            node("b", json!({"spec": {"unschedulable": true}})),
            node(
                "c",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            ),
            node("d", json!({"status": {"allocatable": {"pods": "1"}}})),
            node(
                "e",
                json!({"status": {"allocatable": {"memory": "1Gi", "cpu": "100m"}}}),
            ),
        ];
        let mut snap = snapshot(nodes, &[("a", &full), ("d", &full)]);
        let big = pod(
            "big",
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}),
        );
        // A node short of several resources counts once for each.
        assert_eq!(
            place(&mut snap, &big),
            Err(
                "0/5 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, \
                 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
                 1 node(s) were unschedulable, 2 Too many pods."
                    .into()
            )
        );
        // The example, in the order kube-scheduler prints it (the
        // sorted "count reason" strings: "1 node(s)..." before "2 Insufficient...").
        let nodes = vec![
            node(
                "a",
                json!({"metadata": {"labels": {"disk": "ssd"}}, "status": {"allocatable": {"memory": "1Gi"}}}),
            ),
            node(
                "b",
                json!({"metadata": {"labels": {"disk": "ssd"}}, "status": {"allocatable": {"memory": "1Gi"}}}),
            ),
            node("c", json!({})),
        ];
        let mut snap = snapshot(nodes, &[]);
        let p = pod(
            "p",
            json!({"spec": {"nodeSelector": {"disk": "ssd"},
            "containers": [{"name": "c", "resources": {"limits": {"memory": "2Gi"}}}]}}),
        );
        assert_eq!(
            place(&mut snap, &p),
            Err("0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient memory.".into())
        );
    }

    #[test]
    fn required_pod_affinity_colocates_a_group_among_many_nodes() {
        let nodes = (0..5).map(|i| node(&format!("n{i}"), json!({}))).collect();
        let mut snap = snapshot(nodes, &[]);
        let together = |name: &str, app: &str| {
            pod(
                name,
                json!({"metadata": {"labels": {"app": app, "group": "g"}},
                "spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"group": "g"}}, "topologyKey": "kubernetes.io/hostname"}]}}}}),
            )
        };
        // Filler pods make the emptiest node another one than the group's.
        for i in 0..3 {
            place(&mut snap, &pod(&format!("f{i}"), json!({}))).unwrap();
        }
        // The first pod matches its own term, so it may start the group anywhere.
        let first = place(&mut snap, &together("web", "web")).unwrap();
        let second = place(&mut snap, &together("cache", "cache")).unwrap();
        let third = place(&mut snap, &together("db", "db")).unwrap();
        assert_eq!((&second, &third), (&first, &first));
    }

    #[test]
    fn required_anti_affinity_spreads_a_group_over_distinct_nodes() {
        let nodes = (0..3).map(|i| node(&format!("n{i}"), json!({}))).collect();
        let mut snap = snapshot(nodes, &[]);
        let replica = |name: &str| {
            pod(
                name,
                json!({"metadata": {"labels": {"app": "db"}},
                "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}}}),
            )
        };
        let mut placed: Vec<String> = (0..3)
            .map(|i| place(&mut snap, &replica(&format!("db-{i}"))).unwrap())
            .collect();
        placed.sort();
        assert_eq!(placed, ["n0", "n1", "n2"]);
        assert_eq!(
            place(&mut snap, &replica("db-3")),
            Err("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.".into())
        );
        // A pod without rules of its own is kept off by the placed pods' rules
        // when it matches them (symmetry).
        assert_eq!(
            place(&mut snap, &pod("intruder", json!({"metadata": {"labels": {"app": "db"}}}))),
            Err("0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules.".into())
        );
        assert!(place(&mut snap, &pod("other", json!({}))).is_ok());
    }

    #[test]
    fn pods_of_one_owner_spread_over_nodes() {
        let nodes = (0..3).map(|i| node(&format!("n{i}"), json!({}))).collect();
        let mut snap = snapshot(nodes, &[]);
        let owned = |i: usize| {
            pod(
                &format!("rs-{i}"),
                json!({"metadata": {"ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}]}}),
            )
        };
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for i in 0..6 {
            *per_node
                .entry(place(&mut snap, &owned(i)).unwrap())
                .or_default() += 1;
        }
        assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
    }

    #[test]
    fn a_pass_binds_what_fits_marks_the_rest_once_and_retries_when_a_node_changes() {
        let (store, dir) = crate::store::testing::temp_store("sched-pass");
        let node = |name: &str, memory: &str| {
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {"allocatable": {"cpu": "1", "memory": memory, "pods": "10"},
                           "conditions": [{"type": "Ready", "status": "True"}]}})
        };
        store.create(res("Node"), node("a", "1Gi")).unwrap();
        for (name, memory) in [("small", "512Mi"), ("big", "2Gi")] {
            store
                .create(
                    res("Pod"),
                    json!({"metadata": {"name": name, "namespace": "default"},
                        "spec": {"containers": [{"name": "c", "image": "busybox",
                                 "resources": {"requests": {"memory": memory}}}]}}),
                )
                .unwrap();
        }
        let mut s = Scheduler::default();
        s.pass(&store);
        let get = |name: &str| store.get(res("Pod"), "default", name).unwrap();
        assert_eq!(get("small").node_name, "a");
        assert_eq!(get("big").node_name, "");
        let events = || {
            store
                .list(res("Event"), Some("default"))
                .iter()
                .map(|e| e.value())
                .filter(|e| e["reason"] == "FailedScheduling")
                .map(|e| {
                    (
                        e["message"].as_str().unwrap().to_string(),
                        e["count"].as_i64(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            events(),
            [(
                "0/1 nodes are available: 1 Insufficient memory.".to_string(),
                Some(1)
            )]
        );
        // Nothing changed: the next pass writes nothing.
        let rv = store.resource_version();
        s.pass(&store);
        assert_eq!(store.resource_version(), rv);
        // A bigger node: the waiting pod is looked at again and bound.
        store.create(res("Node"), node("b", "4Gi")).unwrap();
        s.pass(&store);
        assert_eq!(get("big").node_name, "b");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn finished_pods_free_their_place() {
        let pod = |v: Value| Object::from_value(res("Pod"), &v);
        let phase = |p: &str| pod(json!({"spec": {"nodeName": "a"}, "status": {"phase": p}}));
        assert_eq!(holds_place(&phase("Running")), Some("a"));
        assert_eq!(holds_place(&phase("Pending")), Some("a"));
        assert_eq!(holds_place(&phase("Succeeded")), None);
        assert_eq!(holds_place(&phase("Failed")), None);
        assert_eq!(holds_place(&pod(json!({"spec": {}}))), None);
    }
}
