//! Node lifecycle: Kubernetes' node lifecycle controller, taint manager and
//! pod garbage collector for orphaned pods, in one loop.
//!
//! - A node whose kubelet has not been heard from for the grace period
//!   (heartbeats live in the store's memory: `Store::last_heartbeat`; a node
//!   never heard from counts from when this loop first saw it: the daemon's
//!   start, or the node's creation) gets
//!   its conditions set to Unknown, the `node.kubernetes.io/unreachable`
//!   NoSchedule and NoExecute taints, and its pods Ready=False. A node whose
//!   kubelet reports Ready=False gets the `not-ready` taints instead. When
//!   the heartbeats come back the taints go; the kubelet reports Ready.
//! - NoExecute taints evict the pods on the node that do not tolerate them
//!   at once, and those that do after their tolerationSeconds (counted from
//!   the taint's timeAdded). Eviction is a graceful delete: the node's
//!   kubelet stops the pod if it comes back; controllers replace it.
//! - Pods bound to a node that no longer exists are deleted at once.
//!
//! Nothing is written while every node is healthy: the loop only wakes to
//! look at the heartbeats.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use super::replicaset::Retry;
use super::sooner;
use crate::events::{self, Type};
use crate::model::{self, placement, res};
use crate::store::{Object, Store, StoreError};

const COMPONENT: &str = "node-controller";
const EVICTION_COMPONENT: &str = "taint-eviction-controller";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// How late after a deadline the loop looks, so that the deadline has passed.
const MARGIN: Duration = Duration::from_millis(50);

/// What the loop remembers between passes (memory only).
#[derive(Debug, Default)]
struct Memory {
    /// When each node was first seen: a node never heard from counts from then.
    first_seen: HashMap<String, Instant>,
    /// When a NoExecute taint without timeAdded (`kubectl taint` sets none)
    /// was first seen, by (node, key): tolerationSeconds count from then.
    tainted_since: HashMap<(String, String), SystemTime>,
}

pub async fn run(store: &Store, grace: Duration) {
    let mut memory = Memory::default();
    let mut retry = Retry::default();
    let watched = [res("Node"), res("Pod")];
    super::level_loop(store, &watched, super::SETTLE, || {
        let (failed, wake) = pass(store, grace, &mut memory);
        sooner(retry.after(failed), wake)
    })
    .await
}

/// The node kubelet conditions become when it stops posting status.
const UNKNOWN_REASON: &str = "NodeStatusUnknown";
const UNKNOWN_MESSAGE: &str = "Kubelet stopped posting node status.";
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

fn ready_status(node: &Value) -> Option<&str> {
    node.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .get("status")?
        .as_str()
}

/// The node with its conditions and lifecycle taints as they should be;
/// None when they already are. `silent`: the grace period passed without a
/// heartbeat.
pub fn node_update(node: &Value, silent: bool, now: &str) -> Option<Value> {
    let mut new = node.clone();
    if silent {
        let conds = new["status"]
            .as_object_mut()
            .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
        if let Some(conds) = conds.and_then(Value::as_array_mut) {
            if !conds.iter().any(|c| c["type"] == "Ready") {
                conds.push(json!({"type": "Ready"}));
            }
            for c in conds.iter_mut() {
                let ty = c["type"].as_str().unwrap_or_default();
                if KUBELET_CONDITIONS.contains(&ty) && c["status"] != "Unknown" {
                    c["status"] = "Unknown".into();
                    c["reason"] = UNKNOWN_REASON.into();
                    c["message"] = UNKNOWN_MESSAGE.into();
                    c["lastTransitionTime"] = now.into();
                }
            }
        }
    }
    if !new["spec"].is_object() {
        new["spec"] = json!({});
    }
    let wanted = if silent {
        Some(UNREACHABLE)
    } else if ready_status(&new) == Some("False") {
        Some(NOT_READY)
    } else {
        None
    };
    let taints = new["spec"]
        .as_object_mut()
        .map(|s| s.entry("taints").or_insert_with(|| json!([])));
    if let Some(taints) = taints.and_then(Value::as_array_mut) {
        taints.retain(|t| {
            let key = t["key"].as_str().unwrap_or_default();
            !(key == UNREACHABLE || key == NOT_READY) || Some(key) == wanted
        });
        for effect in ["NoSchedule", "NoExecute"] {
            if let Some(key) = wanted
                && !taints
                    .iter()
                    .any(|t| t["key"] == key && t["effect"] == effect)
            {
                taints.push(json!({"key": key, "effect": effect, "timeAdded": now}));
            }
        }
        if taints.is_empty() {
            new["spec"].as_object_mut().map(|s| s.remove("taints"));
        }
    }
    (new != *node).then_some(new)
}

/// The pod with Ready=False, as the node controller marks the pods of an
/// unreachable node; None when it is not Ready=True.
pub fn pod_not_ready(pod: &Value, now: &str) -> Option<Value> {
    let mut new = pod.clone();
    let c = new
        .pointer_mut("/status/conditions")?
        .as_array_mut()?
        .iter_mut()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")?;
    c["status"] = "False".into();
    c["lastTransitionTime"] = now.into();
    Some(new)
}

/// When the pod must leave a node with these taints: now (None) if a
/// NoExecute taint is not tolerated, after the shortest tolerationSeconds
/// counted from when the taints were added, or never.
pub enum Eviction {
    Now,
    At(SystemTime),
    Never,
}

pub fn eviction(pod_spec: &Value, taints: &[Value], now: SystemTime) -> Eviction {
    let tolerations = placement::tolerations(pod_spec);
    let no_execute: Vec<&Value> = taints
        .iter()
        .filter(|t| t["effect"] == "NoExecute")
        .collect();
    if no_execute.is_empty() {
        return Eviction::Never;
    }
    if placement::untolerated(tolerations, taints, &["NoExecute"]).is_some() {
        return Eviction::Now;
    }
    let Some(secs) = placement::toleration_seconds(tolerations, taints) else {
        return Eviction::Never;
    };
    let added = no_execute
        .iter()
        .filter_map(|t| humantime::parse_rfc3339_weak(t["timeAdded"].as_str()?).ok())
        .min()
        .unwrap_or(now);
    Eviction::At(added + Duration::from_secs(secs))
}

/// One pass over every node and pod: whether any write failed, and when to
/// look again (the next heartbeat deadline or eviction).
fn pass(store: &Store, grace: Duration, memory: &mut Memory) -> (bool, Option<Duration>) {
    let (instant, now) = (Instant::now(), SystemTime::now());
    let mut failed = false;
    let mut wake: Option<Duration> = None;
    let nodes = store.list(res("Node"), None);
    let names: HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    memory.first_seen.retain(|n, _| names.contains(n.as_str()));
    let mut tainted_since = HashMap::new();
    let pods = store.list(res("Pod"), None);
    let mut report = |what: String, r: Result<(), StoreError>| {
        if let Err(e) = r {
            log::warn!("{what}: {e}");
            failed = true;
        }
    };
    for pod in pods
        .iter()
        .filter(|p| !p.node_name.is_empty() && !names.contains(p.node_name.as_str()))
    {
        log::info!(
            "deleting pod {}/{}: its node {} is gone",
            pod.namespace,
            pod.name,
            pod.node_name
        );
        let r = store.delete_gracefully(res("Pod"), &pod.namespace, &pod.name, Some(0));
        report(
            format!("deleting orphaned pod {}/{}", pod.namespace, pod.name),
            ignore_gone(r),
        );
    }
    for node in &nodes {
        let seen = *memory
            .first_seen
            .entry(node.name.clone())
            .or_insert(instant);
        let last = store.last_heartbeat(&node.name).unwrap_or(seen);
        let quiet = instant.saturating_duration_since(last);
        let silent = quiet > grace;
        if !silent {
            wake = sooner(wake, Some(grace - quiet + MARGIN));
        }
        let stamp = model::timestamp(now);
        let mut v = node.value();
        if let Some(new) = node_update(&v, silent, &stamp) {
            let became_unknown =
                ready_status(&new) == Some("Unknown") && ready_status(&v) != Some("Unknown");
            match store.update(res("Node"), new) {
                Ok(written) => {
                    v = written.value();
                    if became_unknown {
                        log::warn!("node {} stopped posting status for {quiet:?}", node.name);
                        let msg = format!("Node {} status is now: NodeNotReady", node.name);
                        events::record(
                            store,
                            &written,
                            Type::Normal,
                            "NodeNotReady",
                            &msg,
                            COMPONENT,
                            "",
                        );
                    }
                }
                Err(e) => report(format!("updating node {}", node.name), Err(e)),
            }
        }
        let mut taints = placement::taints(&v).to_vec();
        // A healthy node without NoExecute taints: its pods need no look.
        if !silent && !taints.iter().any(|t| t["effect"] == "NoExecute") {
            continue;
        }
        for t in taints
            .iter_mut()
            .filter(|t| t["effect"] == "NoExecute" && !t["timeAdded"].is_string())
        {
            let k = (
                node.name.clone(),
                t["key"].as_str().unwrap_or_default().to_string(),
            );
            let since = memory.tainted_since.get(&k).copied().unwrap_or(now);
            t["timeAdded"] = model::timestamp(since).into();
            tainted_since.insert(k, since);
        }
        for pod in pods
            .iter()
            .filter(|p| p.node_name == node.name && !p.deleting && !p.finished)
        {
            let pv = pod.value();
            if silent && let Some(new) = pod_not_ready(&pv, &stamp) {
                let r = store.update(res("Pod"), new).map(|written| {
                    events::record(
                        store,
                        &written,
                        Type::Warning,
                        "NodeNotReady",
                        "Node is not ready",
                        COMPONENT,
                        "",
                    );
                });
                report(
                    format!("marking pod {}/{} not ready", pod.namespace, pod.name),
                    r,
                );
            }
            match eviction(&pv["spec"], &taints, now) {
                Eviction::Never => {}
                Eviction::At(t) if t > now => {
                    let d = t.duration_since(now).unwrap_or_default();
                    wake = sooner(wake, Some(d + MARGIN));
                }
                Eviction::At(_) | Eviction::Now => {
                    report(
                        format!("evicting pod {}/{}", pod.namespace, pod.name),
                        evict(store, pod),
                    );
                }
            }
        }
    }
    memory.tainted_since = tainted_since;
    (failed, wake)
}

/// Marks a pod for deletion, as the taint manager does.
fn evict(store: &Store, pod: &Object) -> Result<(), StoreError> {
    log::info!(
        "evicting pod {}/{} from node {}",
        pod.namespace,
        pod.name,
        pod.node_name
    );
    ignore_gone(store.delete_gracefully(res("Pod"), &pod.namespace, &pod.name, None))?;
    let msg = format!("Marking for deletion Pod {}/{}", pod.namespace, pod.name);
    events::record(
        store,
        pod,
        Type::Normal,
        "TaintManagerEviction",
        &msg,
        EVICTION_COMPONENT,
        "",
    );
    Ok(())
}

fn ignore_gone<T>(r: Result<T, StoreError>) -> Result<(), StoreError> {
    match r {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Value {
        json!({"metadata": {"name": "pi"}, "spec": {},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": "t0"}]}})
    }

    #[test]
    fn a_silent_node_goes_unknown_and_unreachable_and_back() {
        assert_eq!(node_update(&node(), false, "t1"), None, "healthy: no write");
        let lost = node_update(&node(), true, "t1").unwrap();
        for c in lost["status"]["conditions"].as_array().unwrap() {
            assert_eq!(
                (&c["status"], &c["reason"], &c["message"]),
                (
                    &json!("Unknown"),
                    &json!("NodeStatusUnknown"),
                    &json!("Kubelet stopped posting node status.")
                ),
            );
            assert_eq!(c["lastTransitionTime"], "t1");
        }
        assert_eq!(
            lost["spec"]["taints"],
            json!([{"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": "t1"},
                   {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "t1"}])
        );
        assert_eq!(node_update(&lost, true, "t2"), None, "settled: no write");
        let mut bare = node();
        bare.as_object_mut().unwrap().remove("spec");
        let bare_lost = node_update(&bare, true, "t1").unwrap();
        assert_eq!(bare_lost["spec"], lost["spec"], "a node without a spec");
        // The heartbeat is back: the taints go; Ready is the kubelet's to report.
        let back = node_update(&lost, false, "t3").unwrap();
        assert!(back["spec"].get("taints").is_none());
        assert_eq!(back["status"], lost["status"]);
        // A kubelet that reports NotReady gets the not-ready taints; others stay.
        let mut not_ready = node();
        not_ready["status"]["conditions"][1]["status"] = "False".into();
        not_ready["spec"]["taints"] = json!([{"key": "gpu", "effect": "NoSchedule"}]);
        let t = node_update(&not_ready, false, "t4").unwrap();
        let keys: Vec<&Value> = t["spec"]["taints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| &t["key"])
            .collect();
        assert_eq!(keys, [&json!("gpu"), &json!(NOT_READY), &json!(NOT_READY)]);
    }

    #[test]
    fn pods_are_evicted_now_after_their_toleration_or_never() {
        let now = SystemTime::now();
        let added = now - Duration::from_secs(10);
        let taints = [
            json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": model::timestamp(added)}),
        ];
        assert!(matches!(eviction(&json!({}), &taints, now), Eviction::Now));
        let tolerating = |secs: Value| {
            let mut t = json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"});
            if !secs.is_null() {
                t["tolerationSeconds"] = secs;
            }
            json!({"tolerations": [t]})
        };
        match eviction(&tolerating(json!(30)), &taints, now) {
            Eviction::At(t) => {
                let left = t.duration_since(now).unwrap();
                assert!(
                    left > Duration::from_secs(18) && left <= Duration::from_secs(20),
                    "{left:?}"
                );
            }
            _ => panic!("a toleration with seconds evicts later"),
        }
        assert!(matches!(
            eviction(&tolerating(Value::Null), &taints, now),
            Eviction::Never
        ));
        assert!(matches!(eviction(&json!({}), &[], now), Eviction::Never));
    }

    #[test]
    fn pods_of_a_lost_node_are_marked_not_ready() {
        let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let marked = pod_not_ready(&pod, "t1").unwrap();
        assert_eq!(marked["status"]["conditions"][0]["status"], "False");
        assert_eq!(pod_not_ready(&marked, "t2"), None);
    }

    #[test]
    fn a_pass_taints_a_silent_node_evicts_and_collects_orphans() {
        use crate::controllers::replicaset;
        use crate::store::testing::temp_store_with_default_ns;
        let (store, dir) = temp_store_with_default_ns("lifecycle");
        let mut n = node();
        n["metadata"]["name"] = "sim".into();
        store.create(res("Node"), n).unwrap();
        let pod = |name: &str, node: &str| {
            json!({"metadata": {"name": name, "namespace": "default"},
                   "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
        };
        store.create(res("Pod"), pod("on-sim", "sim")).unwrap();
        store.create(res("Pod"), pod("orphan", "gone")).unwrap();
        let grace = Duration::from_millis(200);
        let mut seen = Memory::default();
        store.heartbeat("sim");
        let (failed, wake) = pass(&store, grace, &mut seen);
        assert!(!failed);
        assert!(wake.is_some_and(|w| w <= grace + MARGIN));
        assert!(store.get(res("Pod"), "default", "orphan").is_none());
        let rv = store.resource_version();
        assert!(!pass(&store, grace, &mut seen).0);
        assert_eq!(store.resource_version(), rv, "healthy: nothing written");
        std::thread::sleep(grace + MARGIN);
        assert!(!pass(&store, grace, &mut seen).0);
        let sim = store.get(res("Node"), "", "sim").unwrap().value();
        assert_eq!(ready_status(&sim), Some("Unknown"));
        let p = store.get(res("Pod"), "default", "on-sim").unwrap();
        assert!(p.deleting, "no toleration: evicted at once");
        assert!(!replicaset::is_ready(&p.value()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
