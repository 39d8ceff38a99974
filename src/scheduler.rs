//! The scheduler: binds each unscheduled pod to a node. For now a pod goes
//! to the first Ready, uncordoned node with room under its pod capacity (the
//! single-board case); the other filters and the scores of a real scheduler
//! come with the controllers work.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
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

fn ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The node's pod capacity (`status.allocatable.pods`, set from max pods).
fn pod_capacity(node: &Value) -> Option<usize> {
    node.pointer("/status/allocatable/pods")
        .and_then(Value::as_str)
        .and_then(|p| p.parse().ok())
}

/// The node a pod bound to, while it still holds a place there: a pod that
/// finished frees its place, as in Kubernetes.
fn holds_place(pod: &Object) -> Option<&str> {
    (!pod.finished && !pod.node_name.is_empty()).then_some(pod.node_name.as_str())
}

/// The first node that can take one more pod, or why none can, worded as the
/// Kubernetes scheduler words its FailedScheduling events.
pub fn fit<'a>(
    nodes: &'a [(String, Value)],
    bound: &HashMap<String, usize>,
) -> Result<&'a str, String> {
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, node) in nodes {
        let reason = if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
            "node(s) were unschedulable"
        } else if !ready(node) {
            "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
        } else if pod_capacity(node).is_some_and(|cap| bound.get(name).copied().unwrap_or(0) >= cap)
        {
            "Too many pods"
        } else {
            return Ok(name);
        };
        *reasons.entry(reason).or_default() += 1;
    }
    let mut counted: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    counted.sort();
    Err(format!(
        "0/{} nodes are available: {}.",
        nodes.len(),
        counted.join(", ")
    ))
}

pub async fn run(store: &Store) {
    // Pods found not to fit, with their resourceVersion and the state of the
    // nodes then: they are looked at again only when either changes, so a
    // burst of new pods costs one look at each, not one at all per pod.
    let mut unfit: HashMap<String, (u64, u64)> = HashMap::new();
    // No settling: a new pod should be bound at once.
    crate::controllers::level_loop(
        store,
        &[res("Pod"), res("Node")],
        std::time::Duration::ZERO,
        || {
            pass(store, &mut unfit);
            None
        },
    )
    .await
}

fn pass(store: &Store, unfit: &mut HashMap<String, (u64, u64)>) {
    let nodes: Vec<(String, Value)> = store
        .list(res("Node"), None)
        .into_iter()
        .map(|n| (n.name.clone(), n.value()))
        .collect();
    if nodes.is_empty() {
        return;
    }
    // Filtering on the store's extracted fields: no pod is parsed unless it
    // waits for a node.
    let pods = store.list(res("Pod"), None);
    let mut bound: HashMap<String, usize> = HashMap::new();
    for node in pods.iter().filter_map(|p| holds_place(p)) {
        *bound.entry(node.to_string()).or_default() += 1;
    }
    let world = world_version(store, &bound);
    let live: std::collections::HashSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
    unfit.retain(|uid, _| live.contains(uid.as_str()));
    let waiting: Vec<(Arc<Object>, Value)> = pods
        .iter()
        .filter(|p| p.node_name.is_empty() && !p.deleting)
        .filter(|p| unfit.get(&p.uid) != Some(&(p.rv, world)))
        .map(|p| (p.clone(), p.value()))
        .collect();
    let mut waiting: Vec<&(Arc<Object>, Value)> = waiting.iter().collect();
    // Oldest first, so that a pod created later never takes an earlier pod's place.
    waiting.sort_by_key(|(p, v)| {
        (
            v.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .map(str::to_owned),
            p.rv,
        )
    });
    for (p, v) in waiting {
        match fit(&nodes, &bound) {
            Ok(node) => match bind(store, &p.namespace, &p.name, node) {
                Ok(bound_pod) => {
                    *bound.entry(node.to_string()).or_default() += 1;
                    events::record(
                        store,
                        &bound_pod,
                        Type::Normal,
                        "Scheduled",
                        &format!("Successfully assigned {}/{} to {node}", p.namespace, p.name),
                        COMPONENT,
                        "",
                    )
                }
                Err(e) => log::warn!("binding pod {}/{}: {e}", p.namespace, p.name),
            },
            Err(why) => {
                let rv = unschedulable(store, p, v, &why);
                unfit.insert(p.uid.clone(), (rv, world));
            }
        }
    }
}

/// Changes whenever a node changes or a place on one is taken or freed.
fn world_version(store: &Store, bound: &HashMap<String, usize>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for n in store.list(res("Node"), None) {
        std::hash::Hash::hash(&(&n.name, n.rv), &mut h);
    }
    let mut counts: Vec<_> = bound.iter().collect();
    counts.sort();
    std::hash::Hash::hash(&counts, &mut h);
    std::hash::Hasher::finish(&h)
}

/// Marks a pod that fits nowhere PodScheduled=False with the reason, and
/// records a FailedScheduling event when the reason is new; an unchanged
/// reason writes nothing, so a waiting pod costs no writes while idle.
/// Returns the pod's resourceVersion afterwards.
fn unschedulable(store: &Store, pod: &Object, v: &Value, why: &str) -> u64 {
    let conds = v.pointer("/status/conditions").and_then(Value::as_array);
    let known = conds.into_iter().flatten().any(|c| {
        c["type"] == "PodScheduled" && c["reason"] == "Unschedulable" && c["message"] == why
    });
    if known {
        return pod.rv;
    }
    let mut v = v.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, pods: &str, ready: &str, cordoned: bool) -> (String, Value) {
        let v = json!({"spec": {"unschedulable": cordoned},
                       "status": {"allocatable": {"pods": pods}, "conditions": [{"type": "Ready", "status": ready}]}});
        (name.to_string(), v)
    }

    #[test]
    fn a_node_takes_pods_up_to_its_capacity() {
        let nodes = [node("a", "2", "True", false)];
        let mut bound = HashMap::new();
        assert_eq!(fit(&nodes, &bound), Ok("a"));
        bound.insert("a".to_string(), 2);
        assert_eq!(
            fit(&nodes, &bound),
            Err("0/1 nodes are available: 1 Too many pods.".to_string())
        );
    }

    #[test]
    fn reasons_are_counted_per_node() {
        let nodes = [
            node("a", "1", "True", false),
            node("b", "5", "True", true),
            node("c", "5", "False", false),
            node("d", "1", "True", false),
        ];
        let bound = HashMap::from([("a".to_string(), 1), ("d".to_string(), 3)]);
        assert_eq!(
            fit(&nodes, &bound),
            Err("0/4 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable, 2 Too many pods.".to_string())
        );
        let bound = HashMap::from([("a".to_string(), 1)]);
        assert_eq!(fit(&nodes, &bound), Ok("d"));
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
