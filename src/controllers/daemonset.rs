//! The DaemonSet controller: one pod per node that the template's
//! nodeSelector and required node affinity match and whose NoSchedule and
//! NoExecute taints it tolerates (with the tolerations Kubernetes gives every
//! daemon pod). Nodes come and go: a new node gets a pod, a pod on a node
//! that is gone or no longer matches is deleted. A template change rolls
//! out node by node (RollingUpdate, at most maxUnavailable unavailable;
//! maxSurge is not honoured: an old pod goes before its replacement comes)
//! or waits for the user to delete old pods (OnDelete); pods carry the
//! template's hash in the `controller-revision-hash` label.
//!
//! Pods are pinned by a `matchFields metadata.name` node affinity as
//! Kubernetes does, and also created bound (spec.nodeName): the scheduler
//! of this tree binds to the first Ready node whatever a pod's affinity, and
//! a daemon pod belongs on its node even while that node is NotReady (its
//! kubelet starts it when it returns). Once the scheduler honours
//! matchFields, binding can be left to it (resource checks then apply).
//! `plan` decides; `sync` applies.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::replicaset::{self, Retry, SyncError, store_err};
use super::sooner;
use crate::events::{self, Type};
use crate::model::{self, placement, res};
use crate::store::{self, Object, Store, StoreError};

const COMPONENT: &str = "daemonset-controller";
pub const HASH_LABEL: &str = "controller-revision-hash";

pub async fn run(store: &Store) {
    let watched = [res("Pod"), res("Node"), res("DaemonSet")];
    let mut retry = Retry::default();
    super::level_loop(store, &watched, super::SETTLE, || {
        let (failed, wake) = pass(store);
        sooner(retry.after(failed), wake)
    })
    .await
}

/// One pass over every DaemonSet: whether any failed, and when a pod
/// becomes available.
fn pass(store: &Store) -> (bool, Option<Duration>) {
    let nodes: Vec<Value> = store
        .list(res("Node"), None)
        .iter()
        .map(|n| n.value())
        .collect();
    let (mut failed, mut wake) = (false, None);
    for ds in store.list(res("DaemonSet"), None) {
        match sync(store, &ds, &nodes, SystemTime::now()) {
            Ok(w) => wake = sooner(wake, w),
            Err(e) => {
                log::warn!("syncing DaemonSet {}/{}: {e}", ds.namespace, ds.name);
                failed = true;
            }
        }
    }
    (failed, wake)
}

/// The template's hash as Kubernetes writes it (a 32-bit hash, its decimal
/// digits mapped onto an alphabet without vowels), stable across releases.
pub fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let h = crate::model::fnv1a(&[template.to_string().as_bytes()]) as u32;
    h.to_string()
        .bytes()
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect()
}

/// The tolerations every daemon pod gets (Kubernetes'
/// AddOrUpdateDaemonPodTolerations): it stays on nodes that are not ready,
/// unreachable or under pressure, and goes to cordoned ones.
const DAEMON_TOLERATIONS: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// The template's pod spec with the daemon tolerations added (those it
/// lacks, by key and effect).
fn daemon_spec(ds: &Value) -> Value {
    let mut spec = ds
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let list = spec
        .as_object_mut()
        .map(|s| s.entry("tolerations").or_insert_with(|| json!([])));
    if let Some(list) = list.and_then(Value::as_array_mut) {
        for (key, effect) in DAEMON_TOLERATIONS {
            if !list
                .iter()
                .any(|t| t["key"] == key && t["effect"] == effect)
            {
                list.push(json!({"key": key, "operator": "Exists", "effect": effect}));
            }
        }
    }
    spec
}

/// The node a daemon pod is for: the one it is bound to, or the one its
/// matchFields term names.
fn target_node(pod: &Value) -> Option<&str> {
    if let Some(n) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Some(n);
    }
    pod.pointer(
        "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
    )?
    .as_array()?
    .iter()
    .flat_map(|t| t["matchFields"].as_array().into_iter().flatten())
    .find(|f| f["key"] == "metadata.name" && f["operator"] == "In")?
    .pointer("/values/0")?
    .as_str()
}

/// A new daemon pod for `node`.
pub fn new_pod(ds: &Value, hash: &str, node: &str) -> Value {
    let mut owner = ds.clone();
    let mut spec = daemon_spec(ds);
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}]}]});
    spec["nodeName"] = node.into();
    owner["spec"]["template"]["spec"] = spec;
    let labels = &mut owner["spec"]["template"]["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[HASH_LABEL] = hash.into();
    replicaset::new_pod(res("DaemonSet"), &owner)
}

/// What one pass does to a DaemonSet.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Nodes that get a new pod.
    pub create: Vec<String>,
    pub delete: Vec<&'a Value>,
    pub status: Value,
    /// When a ready pod becomes available (minReadySeconds).
    pub wake: Option<Duration>,
}

/// How long until a pod counts as available (ready for minReadySeconds):
/// zero when it is, None when it is not ready.
fn available_in(pod: &Value, min_ready: u64, now: SystemTime) -> Option<Duration> {
    if !replicaset::is_ready(pod) {
        return None;
    }
    if min_ready == 0 {
        return Some(Duration::ZERO);
    }
    let since = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .unwrap_or(now);
    Some(
        (since + Duration::from_secs(min_ready))
            .duration_since(now)
            .unwrap_or_default(),
    )
}

fn finished(p: &Value) -> bool {
    matches!(replicaset::phase(p), "Succeeded" | "Failed")
}

/// maxUnavailable of a RollingUpdate: a number, or a percentage of the
/// nodes that should run a pod, rounded up; at least 1.
fn max_unavailable(ds: &Value, desired: usize) -> usize {
    let v = ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable");
    let n = match v {
        Some(Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<usize>().ok())
            .map_or(1, |p| (p * desired).div_ceil(100)),
        Some(v) => v.as_u64().unwrap_or(1) as usize,
        None => 1,
    };
    n.max(1)
}

/// Decides one pass over a DaemonSet given the nodes and its pods.
pub fn plan<'a>(
    ds: &Value,
    nodes: &[Value],
    owned: &[&'a Value],
    hash: &str,
    now: SystemTime,
) -> Plan<'a> {
    let spec = daemon_spec(ds);
    let min_ready = ds
        .pointer("/spec/minReadySeconds")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let tolerations = placement::tolerations(&spec);
    let mut by_node: BTreeMap<&str, Vec<&'a Value>> = BTreeMap::new();
    let mut p = Plan::default();
    for pod in owned {
        match target_node(pod) {
            Some(n) => by_node.entry(n).or_default().push(pod),
            None => p.delete.push(pod),
        }
    }
    let is_current = |pod: &Value| {
        pod.pointer(&format!("/metadata/labels/{HASH_LABEL}"))
            .and_then(Value::as_str)
            == Some(hash)
    };
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    // Old pods on nodes that keep their pod: (pod, available).
    let mut old = Vec::new();
    for node in nodes {
        let name = model::name(node);
        let pods = by_node.remove(name).unwrap_or_default();
        let fits = placement::matches_node(&spec, node);
        let taints = placement::taints(node);
        let should_run = fits
            && placement::untolerated(tolerations, taints, &["NoSchedule", "NoExecute"]).is_none();
        let keep_running =
            fits && placement::untolerated(tolerations, taints, &["NoExecute"]).is_none();
        let (done, rest): (Vec<&Value>, Vec<&Value>) = pods.into_iter().partition(|x| finished(x));
        let (terminating, mut live): (Vec<&Value>, Vec<&Value>) =
            rest.into_iter().partition(|x| store::is_deleting(x));
        // A finished daemon pod is replaced once it is gone.
        p.delete
            .extend(done.iter().filter(|x| !store::is_deleting(x)));
        if !should_run && !live.is_empty() {
            misscheduled += 1;
        }
        if !keep_running {
            p.delete.append(&mut live);
            continue;
        }
        // A pod that may stay (a NoSchedule taint came after it) stays.
        if !should_run {
            continue;
        }
        desired += 1;
        live.sort_by_key(|x| {
            model::meta_str(x, "creationTimestamp")
                .unwrap_or_default()
                .to_string()
        });
        if live.len() > 1 {
            p.delete.extend(live.drain(1..));
        }
        match live.first() {
            None if terminating.is_empty() && done.is_empty() => p.create.push(name.to_string()),
            None => {}
            Some(pod) => {
                current += 1;
                ready += usize::from(replicaset::is_ready(pod));
                let is_available = match available_in(pod, min_ready, now) {
                    Some(Duration::ZERO) => true,
                    Some(left) => {
                        p.wake = sooner(p.wake, Some(left));
                        false
                    }
                    None => false,
                };
                available += usize::from(is_available);
                if is_current(pod) {
                    updated += 1;
                } else {
                    old.push((*pod, is_available));
                }
            }
        }
    }
    // Pods whose node is gone.
    for pods in by_node.into_values() {
        p.delete
            .extend(pods.into_iter().filter(|x| !store::is_deleting(x)));
    }
    let rolling = ds
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        != Some("OnDelete");
    if rolling {
        // Old pods that are not available go at once; available ones while
        // fewer than maxUnavailable nodes lack an available pod.
        let mut unavailable = desired - available;
        let budget = max_unavailable(ds, desired);
        for (pod, is_available) in old {
            if !is_available {
                p.delete.push(pod);
            } else if unavailable < budget {
                unavailable += 1;
                p.delete.push(pod);
            }
        }
    }
    let mut st = ds
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, n) in [
        ("desiredNumberScheduled", desired),
        ("currentNumberScheduled", current),
        ("numberMisscheduled", misscheduled),
        ("numberReady", ready),
        ("updatedNumberScheduled", updated),
        ("numberAvailable", available),
        ("numberUnavailable", desired - available),
    ] {
        st.insert(k.into(), n.into());
    }
    if let Some(g) = model::meta(ds).and_then(|m| m.get("generation")) {
        st.insert("observedGeneration".into(), g.clone());
    }
    p.status = Value::Object(st);
    p
}

/// Applies one DaemonSet's plan. Idempotent: a pass over a settled
/// DaemonSet writes nothing.
fn sync(
    store: &Store,
    ds: &Object,
    nodes: &[Value],
    now: SystemTime,
) -> Result<Option<Duration>, SyncError> {
    let v = ds.value();
    let kind = res("DaemonSet");
    let deleting = store::is_deleting(&v);
    let (sel, pods) = replicaset::selector_and_pods(store, kind, ds, &v)?;
    let claimed = replicaset::claim(&ds.uid, &sel, deleting, &pods);
    replicaset::apply_claim(store, kind, &v, &claimed)?;
    if deleting {
        return Ok(None);
    }
    let hash = template_hash(&v["spec"]["template"]);
    let p = plan(&v, nodes, &claimed.owned, &hash, now);
    for victim in &p.delete {
        let name = model::name(victim);
        match store.delete_gracefully(res("Pod"), &ds.namespace, name, None) {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(store_err(format!("deleting pod {name}"))(e)),
        }
        let msg = format!("Deleted pod: {name}");
        events::record(
            store,
            ds,
            Type::Normal,
            "SuccessfulDelete",
            &msg,
            COMPONENT,
            "",
        );
    }
    for node in &p.create {
        let pod = store
            .create(res("Pod"), new_pod(&v, &hash, node))
            .map_err(store_err(format!("creating a pod for node {node}")))?;
        let msg = format!("Created pod: {}", pod.name);
        events::record(
            store,
            ds,
            Type::Normal,
            "SuccessfulCreate",
            &msg,
            COMPONENT,
            "",
        );
    }
    if v.get("status") != Some(&p.status) {
        let mut updated = v;
        updated["status"] = p.status;
        store
            .update(kind, updated)
            .map_err(store_err("writing the status"))?;
    }
    Ok(p.wake)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(strategy: Value) -> Value {
        json!({"metadata": {"name": "agent", "namespace": "default", "uid": "ds", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "updateStrategy": strategy,
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"nodeSelector": {"role": "edge"},
                             "containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    fn node(name: &str, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": {"role": "edge"}}, "spec": {"taints": taints}})
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "labels": {"app": "agent", HASH_LABEL: hash},
                            "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"nodeName": node},
               "status": {"phase": "Running", "conditions": [
                   {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn names<'a>(pods: &[&'a Value]) -> Vec<&'a str> {
        pods.iter().map(|p| model::name(p)).collect()
    }

    #[test]
    fn one_pod_per_matching_tolerated_node() {
        let d = ds(json!({"type": "RollingUpdate"}));
        let mut other = node("other", json!([]));
        other["metadata"]["labels"]["role"] = "db".into();
        let nodes = [
            node("a", json!([])),
            node(
                "b",
                json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
            ),
            node("tainted", json!([{"key": "gpu", "effect": "NoSchedule"}])),
            other,
        ];
        let p = plan(&d, &nodes, &[], "h1", SystemTime::now());
        assert_eq!(
            p.create,
            ["a", "b"],
            "daemon pods tolerate unreachable nodes"
        );
        assert_eq!(p.status["desiredNumberScheduled"], 2);
        assert_eq!(p.status["observedGeneration"], 2);
        // A pod on a node that stopped matching, and one whose node is gone, go.
        let (on_other, on_gone) = (pod("x", "other", "h1", true), pod("y", "gone", "h1", true));
        let on_a = pod("z", "a", "h1", true);
        let p = plan(
            &d,
            &nodes,
            &[&on_other, &on_gone, &on_a],
            "h1",
            SystemTime::now(),
        );
        assert_eq!(names(&p.delete), ["x", "y"]);
        assert_eq!(p.create, ["b"]);
        assert_eq!(
            (&p.status["numberMisscheduled"], &p.status["numberReady"]),
            (&json!(1), &json!(1))
        );
    }

    #[test]
    fn a_node_with_a_terminating_pod_waits_and_extra_pods_go() {
        let d = ds(json!({"type": "RollingUpdate"}));
        let nodes = [node("a", json!([]))];
        let mut leaving = pod("old", "a", "h1", true);
        leaving["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        let p = plan(&d, &nodes, &[&leaving], "h1", SystemTime::now());
        assert!(p.create.is_empty() && p.delete.is_empty());
        let first = pod("first", "a", "h1", true);
        let mut second = pod("second", "a", "h1", true);
        second["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z".into();
        assert_eq!(
            names(&plan(&d, &nodes, &[&second, &first], "h1", SystemTime::now()).delete),
            ["second"]
        );
    }

    #[test]
    fn rolling_update_replaces_at_most_max_unavailable_at_a_time() {
        let d = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}));
        let nodes = [
            node("a", json!([])),
            node("b", json!([])),
            node("c", json!([])),
        ];
        let (a, b) = (pod("pa", "a", "old", true), pod("pb", "b", "old", true));
        let c = pod("pc", "c", "old", false);
        let p = plan(&d, &nodes, &[&a, &b, &c], "new", SystemTime::now());
        assert_eq!(
            names(&p.delete),
            ["pc"],
            "an unavailable old pod goes without using the budget, which it already uses"
        );
        let c = pod("pc", "c", "new", true);
        let p = plan(&d, &nodes, &[&a, &b, &c], "new", SystemTime::now());
        assert_eq!(names(&p.delete), ["pa"]);
        assert_eq!(p.status["updatedNumberScheduled"], 1);
        let on_delete = ds(json!({"type": "OnDelete"}));
        assert!(
            plan(&on_delete, &nodes, &[&a, &b, &c], "new", SystemTime::now())
                .delete
                .is_empty()
        );
    }

    #[test]
    fn new_pods_are_pinned_and_bound_to_their_node_with_daemon_tolerations() {
        let d = ds(json!({"type": "RollingUpdate"}));
        let p = new_pod(&d, "h1", "pi-2");
        assert_eq!(target_node(&p), Some("pi-2"));
        assert_eq!(
            p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchFields"][0],
            json!({"key": "metadata.name", "operator": "In", "values": ["pi-2"]})
        );
        assert_eq!(p["metadata"]["labels"][HASH_LABEL], "h1");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
        let tols = p["spec"]["tolerations"].as_array().unwrap();
        let unreachable: Vec<&Value> = tols
            .iter()
            .filter(|t| t["key"] == "node.kubernetes.io/unreachable")
            .collect();
        assert_eq!(unreachable.len(), 1, "{tols:?}");
        assert!(
            unreachable[0].get("tolerationSeconds").is_none(),
            "daemon pods stay forever"
        );
        assert_eq!(
            template_hash(&d["spec"]["template"]),
            template_hash(&d["spec"]["template"])
        );
        let mut changed = d.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2".into();
        assert_ne!(
            template_hash(&d["spec"]["template"]),
            template_hash(&changed["spec"]["template"])
        );
    }

    #[test]
    fn ready_pods_are_available_after_min_ready_seconds() {
        let mut d = ds(json!({"type": "RollingUpdate"}));
        d["spec"]["minReadySeconds"] = 10.into();
        let nodes = [node("a", json!([]))];
        let now = SystemTime::now();
        let mut a = pod("pa", "a", "h1", true);
        a["status"]["conditions"][0]["lastTransitionTime"] =
            model::timestamp(now - Duration::from_secs(4)).into();
        let p = plan(&d, &nodes, &[&a], "h1", now);
        assert_eq!(
            (&p.status["numberReady"], &p.status["numberAvailable"]),
            (&json!(1), &json!(0))
        );
        assert!(p.wake.is_some_and(|w| w <= Duration::from_secs(6)));
        let later = plan(&d, &nodes, &[&a], "h1", now + Duration::from_secs(7));
        assert_eq!(later.status["numberAvailable"], 1);
        assert_eq!(later.wake, None);
    }

    #[test]
    fn passes_through_the_store_settle_and_then_write_nothing() {
        use crate::store::testing::temp_store_with_default_ns;
        let (store, dir) = temp_store_with_default_ns("ds-pass");
        store.create(res("Node"), node("a", json!([]))).unwrap();
        store.create(res("Node"), node("b", json!([]))).unwrap();
        store
            .create(res("DaemonSet"), ds(json!({"type": "RollingUpdate"})))
            .unwrap();
        assert!(!pass(&store).0);
        let mut on: Vec<String> = store
            .list(res("Pod"), Some("default"))
            .iter()
            .map(|p| p.node_name.clone())
            .collect();
        on.sort();
        assert_eq!(on, ["a", "b"]);
        assert!(!pass(&store).0);
        let rv = store.resource_version();
        assert!(!pass(&store).0);
        assert_eq!(
            store.resource_version(),
            rv,
            "a settled pass writes nothing"
        );
        store.delete(res("Node"), "", "b", None).unwrap();
        assert!(!pass(&store).0);
        let left: Vec<_> = store
            .list(res("Pod"), Some("default"))
            .into_iter()
            .filter(|p| !p.deleting)
            .collect();
        assert_eq!(left.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
