//! The ReplicationController and ReplicaSet controller: one loop for both
//! kinds, which differ only in how their selector is written (a plain map for
//! a ReplicationController, a metav1.LabelSelector for a ReplicaSet).
//!
//! A pass claims pods (adopting matching orphans, releasing owned pods that
//! stopped matching), creates or deletes pods to match spec.replicas, and
//! writes the status when it changed. The decisions are plain functions
//! below; `sync` only applies them through the store. Our own writes are in
//! the store's memory at once, so no "expectations" are needed to avoid
//! acting twice on the same gap, unlike Kubernetes' informer caches.

use serde_json::{Value, json};
use std::cmp::Ordering;
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::events::{self, Type};
use crate::model::selector::{LabelSelector, SelectorError};
use crate::model::{self, Resource, defaults, res};
use crate::store::{self, Object, Store, StoreError};

/// Back-off between passes that keep failing (each change to a watched
/// object also starts a pass).
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The delay before retrying after a pass: doubling while passes fail, none
/// after a clean one. The garbage collector uses it too.
#[derive(Debug, Default)]
pub(super) struct Retry(Option<Duration>);

impl Retry {
    pub(super) fn after(&mut self, failed: bool) -> Option<Duration> {
        self.0 = failed.then(|| self.0.map_or(RETRY_FIRST, |d| (d * 2).min(RETRY_MAX)));
        self.0
    }
}

#[derive(Debug)]
pub enum SyncError {
    Selector {
        owner: String,
        source: SelectorError,
    },
    Store {
        action: String,
        source: StoreError,
    },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Selector { owner, source } => write!(f, "selector of {owner}: {source}"),
            SyncError::Store { action, source } => write!(f, "{action}: {source}"),
        }
    }
}

impl std::error::Error for SyncError {}

pub(super) fn store_err(action: impl Into<String>) -> impl FnOnce(StoreError) -> SyncError {
    let action = action.into();
    move |source| SyncError::Store { action, source }
}

pub async fn run(store: &Store) {
    let watched = [res("Pod"), res("ReplicationController"), res("ReplicaSet")];
    let mut retry = Retry::default();
    super::level_loop(store, &watched, super::SETTLE, || {
        let p = pass(store, SystemTime::now());
        super::sooner(retry.after(p.failed), p.recheck)
    })
    .await
}

/// What a pass over every owner found.
#[derive(Debug, Default)]
pub(super) struct Pass {
    /// Some owner failed to sync.
    pub failed: bool,
    /// When the soonest pod becomes available (ready for the owner's
    /// minReadySeconds): the status must be counted again then, even if
    /// nothing else changes.
    pub recheck: Option<Duration>,
}

/// One reconcile pass over every ReplicationController and ReplicaSet.
pub(super) fn pass(store: &Store, now: SystemTime) -> Pass {
    let mut p = Pass::default();
    for kind in [res("ReplicationController"), res("ReplicaSet")] {
        for owner in store.list(kind, None) {
            match sync(store, kind, &owner, now) {
                Ok(recheck) => p.recheck = super::sooner(p.recheck, recheck),
                Err(e) => {
                    log::warn!(
                        "syncing {} {}/{}: {e}",
                        kind.kind,
                        owner.namespace,
                        owner.name
                    );
                    p.failed = true;
                }
            }
        }
    }
    p
}

fn component(kind: &Resource) -> &'static str {
    if kind.kind == "ReplicaSet" {
        "replicaset-controller"
    } else {
        "replication-controller"
    }
}

/// Makes one owner's pods match its spec. Idempotent: a pass over a settled
/// owner writes nothing. Returns when a ready pod will become available.
fn sync(
    store: &Store,
    kind: &'static Resource,
    owner: &Object,
    now: SystemTime,
) -> Result<Option<Duration>, SyncError> {
    let v = owner.value();
    let deleting = store::is_deleting(&v);
    let (sel, pods) = selector_and_pods(store, kind, owner, &v)?;
    let claimed = claim(&owner.uid, &sel, deleting, &pods);
    apply_claim(store, kind, &v, &claimed)?;
    // An owner being deleted (foreground) neither makes nor removes pods:
    // the garbage collector is taking them down. Nor does one in a
    // terminating namespace, where the API would refuse new pods.
    let ns_deleting = store
        .get(res("Namespace"), "", &owner.namespace)
        .is_none_or(|ns| store::is_deleting(&ns.value()));
    if !deleting && !ns_deleting {
        let replicas = v
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1) as usize;
        match diff(replicas, &claimed.owned) {
            Diff::Create(n) => {
                for _ in 0..n {
                    let pod = store
                        .create(res("Pod"), new_pod(kind, &v))
                        .map_err(store_err("creating a pod"))?;
                    let msg = format!("Created pod: {}", pod.name);
                    events::record(
                        store,
                        owner,
                        Type::Normal,
                        "SuccessfulCreate",
                        &msg,
                        component(kind),
                        "",
                    );
                }
            }
            Diff::Delete(victims) => {
                for p in victims {
                    let name = model::name(p);
                    match store.delete_gracefully(res("Pod"), &owner.namespace, name, None) {
                        Ok(_) | Err(StoreError::NotFound { .. }) => {}
                        Err(e) => return Err(store_err(format!("deleting pod {name}"))(e)),
                    }
                    let msg = format!("Deleted pod: {name}");
                    events::record(
                        store,
                        owner,
                        Type::Normal,
                        "SuccessfulDelete",
                        &msg,
                        component(kind),
                        "",
                    );
                }
            }
            Diff::None => {}
        }
    }
    let (new, recheck) = status(&v, &claimed.owned, now);
    if v.get("status") != Some(&new) {
        let mut updated = v;
        updated["status"] = new;
        store
            .update(kind, updated)
            .map_err(store_err("writing the status"))?;
    }
    Ok(recheck)
}

/// Writes a claim's adoptions and releases. The pods keep the
/// resourceVersion they were read with, so a pod changed meanwhile is a
/// conflict, retried on a later pass.
/// An owner's selector and the pods of its namespace: what claiming starts
/// from, for every controller that owns pods.
pub(super) fn selector_and_pods(
    store: &Store,
    kind: &Resource,
    owner: &Object,
    v: &Value,
) -> Result<(LabelSelector, Vec<Value>), SyncError> {
    let sel = selector(kind, v).map_err(|source| SyncError::Selector {
        owner: format!("{}/{}", owner.namespace, owner.name),
        source,
    })?;
    let pods = store
        .list(res("Pod"), Some(&owner.namespace))
        .iter()
        .map(|p| p.value())
        .collect();
    Ok((sel, pods))
}

pub(super) fn apply_claim(
    store: &Store,
    kind: &Resource,
    owner: &Value,
    claimed: &Claim,
) -> Result<(), SyncError> {
    let uid = model::meta_str(owner, "uid").unwrap_or_default();
    for p in &claimed.release {
        let mut released = (*p).clone();
        remove_owner_ref(&mut released, uid);
        store
            .update(res("Pod"), released)
            .map_err(store_err(format!("releasing pod {}", model::name(p))))?;
    }
    for p in &claimed.adopt {
        let mut adopted = (*p).clone();
        let refs = model::meta_mut(&mut adopted)
            .entry("ownerReferences")
            .or_insert_with(|| json!([]));
        if let Some(refs) = refs.as_array_mut() {
            refs.push(owner_ref(kind, owner));
        }
        store
            .update(res("Pod"), adopted)
            .map_err(store_err(format!("adopting pod {}", model::name(p))))?;
    }
    Ok(())
}

/// The owner's selector. An empty one would take every pod of the namespace
/// (validation forbids it; a stored one is treated as selecting nothing).
pub fn selector(kind: &Resource, owner: &Value) -> Result<LabelSelector, SelectorError> {
    let spec = owner.pointer("/spec/selector");
    let sel = if kind.kind == "ReplicationController" {
        let empty = serde_json::Map::new();
        LabelSelector::from_map(spec.and_then(Value::as_object).unwrap_or(&empty))
    } else {
        LabelSelector::from_object(spec.unwrap_or(&Value::Null))?
    };
    if sel.is_empty() {
        return LabelSelector::from_object(&Value::Null);
    }
    Ok(sel)
}

/// The ownerReference a controller puts on the pods it owns.
pub fn owner_ref(kind: &Resource, owner: &Value) -> Value {
    json!({
        "apiVersion": kind.api_version(),
        "kind": kind.kind,
        "name": model::name(owner),
        "uid": model::meta_str(owner, "uid").unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The uid of a pod's managing controller (the ownerReference with
/// `controller: true`), if any.
pub(super) fn controller_uid(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

pub(super) fn remove_owner_ref(pod: &mut Value, uid: &str) {
    let m = model::meta_mut(pod);
    if let Some(refs) = m.get_mut("ownerReferences").and_then(Value::as_array_mut) {
        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
        if refs.is_empty() {
            m.remove("ownerReferences");
        }
    }
}

/// Which pods an owner has after claiming, as Kubernetes' ClaimPods decides.
#[derive(Debug, Default)]
pub struct Claim<'a> {
    /// Pods the owner controls, adopted ones included.
    pub owned: Vec<&'a Value>,
    /// Orphans that match the selector; they get our ownerReference.
    pub adopt: Vec<&'a Value>,
    /// Pods we control that no longer match; they lose our ownerReference.
    pub release: Vec<&'a Value>,
}

pub fn claim<'a>(
    owner_uid: &str,
    sel: &LabelSelector,
    owner_deleting: bool,
    pods: &'a [Value],
) -> Claim<'a> {
    let mut c = Claim::default();
    for p in pods {
        let matches = sel.matches_value(p.pointer("/metadata/labels"));
        match controller_uid(p) {
            Some(uid) if uid == owner_uid => {
                // A pod being deleted is not released: an update to it
                // would remove it before its kubelet stopped it.
                if matches {
                    c.owned.push(p);
                } else if !store::is_deleting(p) {
                    c.release.push(p);
                }
            }
            Some(_) => {}
            // An owner being deleted adopts nothing, and a pod being deleted
            // is not worth adopting.
            None if matches && !owner_deleting && !store::is_deleting(p) => {
                c.adopt.push(p);
                c.owned.push(p);
            }
            None => {}
        }
    }
    c
}

pub(super) fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A pod that counts toward replicas: not being deleted, not finished.
pub fn is_active(pod: &Value) -> bool {
    !store::is_deleting(pod) && !matches!(phase(pod), "Succeeded" | "Failed")
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

pub fn is_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some_and(|c| c["status"] == "True")
}

/// How long until a pod is available, i.e. has been Ready for
/// `min_ready_seconds` (Kubernetes' IsPodAvailable): None while it is not
/// ready, zero once it is available. A ready pod with no transition time
/// waits the whole period from now.
pub fn available_in(pod: &Value, min_ready_seconds: u64, now: SystemTime) -> Option<Duration> {
    if !is_ready(pod) {
        return None;
    }
    let period = Duration::from_secs(min_ready_seconds);
    if period.is_zero() {
        return Some(Duration::ZERO);
    }
    let since = ready_condition(pod)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .unwrap_or(now);
    Some((since + period).duration_since(now).unwrap_or_default())
}

#[derive(Debug, PartialEq)]
pub enum Diff<'a> {
    None,
    Create(usize),
    /// Pods to delete, first the ones Kubernetes would delete first.
    Delete(Vec<&'a Value>),
}

/// What to create or delete so that `replicas` active pods remain.
pub fn diff<'a>(replicas: usize, owned: &[&'a Value]) -> Diff<'a> {
    let mut active: Vec<&Value> = owned.iter().copied().filter(|p| is_active(p)).collect();
    match active.len().cmp(&replicas) {
        Ordering::Equal => Diff::None,
        Ordering::Less => Diff::Create(replicas - active.len()),
        Ordering::Greater => {
            active.sort_by(|a, b| deletion_order(a, b));
            active.truncate(active.len() - replicas);
            Diff::Delete(active)
        }
    }
}

/// Kubernetes' ActivePods order: the pod to delete first sorts first.
/// Unscheduled before scheduled, Pending before Unknown before Running, not
/// ready before ready, ready for less time before longer, more restarts
/// before fewer, newer before older.
pub fn deletion_order(a: &Value, b: &Value) -> Ordering {
    let scheduled = |p: &Value| {
        p.pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Value| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    // RFC 3339 timestamps in UTC with seconds sort as text.
    let ready_since = |p: &Value| {
        ready_condition(p)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let restarts = |p: &Value| -> i64 {
        p.pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c["restartCount"].as_i64())
            .max()
            .unwrap_or(0)
    };
    let created = |p: &Value| {
        model::meta_str(p, "creationTimestamp")
            .unwrap_or("")
            .to_string()
    };
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then_with(|| {
            if is_ready(a) && is_ready(b) {
                ready_since(b).cmp(&ready_since(a))
            } else {
                Ordering::Equal
            }
        })
        .then(restarts(b).cmp(&restarts(a)))
        .then(created(b).cmp(&created(a)))
}

/// A new pod from the owner's template, owned by it.
pub fn new_pod(kind: &Resource, owner: &Value) -> Value {
    let template = owner.pointer("/spec/template");
    let field = |k: &str| {
        template
            .and_then(|t| t.pointer(&format!("/metadata/{k}")))
            .cloned()
    };
    let mut meta = json!({
        "generateName": format!("{}-", model::name(owner)),
        "namespace": model::namespace(owner),
        "ownerReferences": [owner_ref(kind, owner)],
    });
    for k in ["labels", "annotations", "finalizers"] {
        if let Some(v) = field(k) {
            meta[k] = v;
        }
    }
    let spec = template
        .and_then(|t| t.get("spec"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec});
    defaults::apply_defaults("Pod", &mut pod);
    pod
}

/// The status the owner should have for its owned pods at `now`, and when
/// the next ready pod becomes available; fields this controller does not
/// compute (conditions) are kept.
pub fn status(owner: &Value, owned: &[&Value], now: SystemTime) -> (Value, Option<Duration>) {
    let template_labels = owner
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    let active: Vec<&Value> = owned.iter().copied().filter(|p| is_active(p)).collect();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = p.pointer("/metadata/labels").and_then(Value::as_object);
            template_labels
                .into_iter()
                .flatten()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let min_ready = owner
        .pointer("/spec/minReadySeconds")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let waits: Vec<Duration> = active
        .iter()
        .filter_map(|p| available_in(p, min_ready, now))
        .collect();
    let available = waits.iter().filter(|d| d.is_zero()).count();
    let recheck = waits.into_iter().filter(|d| !d.is_zero()).min();
    let mut s = owner
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    s.insert("replicas".into(), active.len().into());
    s.insert("fullyLabeledReplicas".into(), fully_labeled.into());
    s.insert("readyReplicas".into(), ready.into());
    s.insert("availableReplicas".into(), available.into());
    if let Some(g) = model::meta(owner).and_then(|m| m.get("generation")) {
        s.insert("observedGeneration".into(), g.clone());
    }
    (Value::Object(s), recheck)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const OWNER: &str = "owner-uid";

    fn pod(name: &str, labels: Value, owner: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "default", "labels": labels,
                           "creationTimestamp": "2026-01-01T00:00:00Z"},
                           "spec": {"nodeName": "n"}, "status": {"phase": "Running"}});
        if let Some(uid) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": "ReplicaSet", "name": "x", "uid": uid, "controller": true}]);
        }
        p
    }

    fn names<'a>(pods: &[&'a Value]) -> Vec<&'a str> {
        pods.iter().map(|p| model::name(p)).collect()
    }

    fn web() -> LabelSelector {
        LabelSelector::parse("app=web").unwrap()
    }

    #[test]
    fn claim_adopts_matching_orphans_and_releases_owned_misfits() {
        let mut deleting = pod("deleting-orphan", json!({"app": "web"}), None);
        deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        let mut leaving = pod("deleting-relabeled", json!({"app": "db"}), Some(OWNER));
        leaving["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        let pods = [
            pod("mine", json!({"app": "web"}), Some(OWNER)),
            pod("orphan", json!({"app": "web"}), None),
            pod("theirs", json!({"app": "web"}), Some("other")),
            pod("relabeled", json!({"app": "db"}), Some(OWNER)),
            pod("unrelated", json!({"app": "db"}), None),
            deleting,
            leaving,
        ];
        let c = claim(OWNER, &web(), false, &pods);
        assert_eq!(names(&c.owned), ["mine", "orphan"]);
        assert_eq!(names(&c.adopt), ["orphan"]);
        assert_eq!(names(&c.release), ["relabeled"]);
        let c = claim(OWNER, &web(), true, &pods);
        assert!(c.adopt.is_empty(), "an owner being deleted adopts nothing");
    }

    pub(in crate::controllers) fn stored_rc(store: &Store, name: &str, replicas: u64) {
        let mut rc = json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"app": name}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        defaults::apply_defaults("ReplicationController", &mut rc);
        store.create(res("ReplicationController"), rc).unwrap();
    }

    #[test]
    fn a_pass_makes_the_pods_and_a_second_pass_writes_nothing() {
        let (store, dir) = crate::store::testing::temp_store_with_default_ns("rs-pass");
        stored_rc(&store, "kubia", 3);
        assert!(!pass(&store, SystemTime::now()).failed);
        let pods = store.list(res("Pod"), Some("default"));
        assert_eq!(pods.len(), 3);
        // The status counts what the pass found; the pass our own writes
        // wake counts the new pods.
        assert!(!pass(&store, SystemTime::now()).failed);
        let rc = store
            .get(res("ReplicationController"), "default", "kubia")
            .unwrap();
        assert_eq!(rc.value()["status"]["replicas"], 3);
        let rv = store.resource_version();
        assert!(!pass(&store, SystemTime::now()).failed);
        assert_eq!(
            store.resource_version(),
            rv,
            "a settled pass writes nothing"
        );
        // Scaled down, the unscheduled pods go at once.
        let mut v = rc.value();
        v["spec"]["replicas"] = 1.into();
        store.update(res("ReplicationController"), v).unwrap();
        assert!(!pass(&store, SystemTime::now()).failed);
        assert_eq!(store.list(res("Pod"), Some("default")).len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retries_back_off_while_passes_fail() {
        let mut r = Retry::default();
        assert_eq!(r.after(false), None);
        assert_eq!(r.after(true), Some(RETRY_FIRST));
        assert_eq!(r.after(true), Some(RETRY_FIRST * 2));
        for _ in 0..10 {
            r.after(true);
        }
        assert_eq!(r.after(true), Some(RETRY_MAX));
        assert_eq!(r.after(false), None);
        assert_eq!(r.after(true), Some(RETRY_FIRST));
    }

    #[test]
    fn rc_and_rs_selectors_and_an_empty_one_selects_nothing() {
        let rc = json!({"spec": {"selector": {"app": "web"}}});
        let s = selector(res("ReplicationController"), &rc).unwrap();
        assert!(s.matches_value(Some(&json!({"app": "web", "x": "y"}))));
        let rs = json!({"spec": {"selector": {"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["web", "api"]}]}}});
        let s = selector(res("ReplicaSet"), &rs).unwrap();
        assert!(s.matches_value(Some(&json!({"app": "api"}))));
        assert!(!s.matches_value(Some(&json!({"app": "db"}))));
        let empty = json!({"spec": {"selector": {}}});
        let s = selector(res("ReplicationController"), &empty).unwrap();
        assert!(!s.matches_value(Some(&json!({"app": "web"}))));
    }

    #[test]
    fn diff_ignores_deleting_and_finished_pods() {
        let mut gone = pod("gone", json!({}), Some(OWNER));
        gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        let mut done = pod("done", json!({}), Some(OWNER));
        done["status"]["phase"] = "Succeeded".into();
        let mut failed = pod("failed", json!({}), Some(OWNER));
        failed["status"]["phase"] = "Failed".into();
        let live = pod("live", json!({}), Some(OWNER));
        let owned = [&gone, &done, &failed, &live];
        assert_eq!(diff(3, &owned), Diff::Create(2));
        assert_eq!(diff(1, &owned), Diff::None);
        assert_eq!(diff(0, &owned), Diff::Delete(vec![&live]));
    }

    #[test]
    fn scale_down_deletes_unscheduled_pending_not_ready_then_newest() {
        let ready = |name: &str, created: &str| {
            let mut p = pod(name, json!({}), Some(OWNER));
            p["metadata"]["creationTimestamp"] = created.into();
            p["status"]["conditions"] = json!([{"type": "Ready", "status": "True",
                "lastTransitionTime": "2026-01-01T00:01:00Z"}]);
            p
        };
        let old = ready("old", "2026-01-01T00:00:00Z");
        let new = ready("new", "2026-01-01T00:00:30Z");
        let mut not_ready = ready("not-ready", "2026-01-01T00:00:00Z");
        not_ready["status"]["conditions"][0]["status"] = "False".into();
        let mut pending = ready("pending", "2026-01-01T00:00:00Z");
        pending["status"]["phase"] = "Pending".into();
        let mut unscheduled = pending.clone();
        unscheduled["metadata"]["name"] = "unscheduled".into();
        unscheduled["spec"]["nodeName"] = "".into();
        let mut restarted = ready("restarted", "2026-01-01T00:00:00Z");
        restarted["status"]["containerStatuses"] = json!([{"restartCount": 3}]);
        let owned = [&old, &new, &restarted, &not_ready, &pending, &unscheduled];
        let Diff::Delete(victims) = diff(1, &owned) else {
            panic!("must delete")
        };
        assert_eq!(
            names(&victims),
            ["unscheduled", "pending", "not-ready", "restarted", "new"]
        );
        // Ready for less time goes before ready for longer.
        let mut recent = ready("recent", "2026-01-01T00:00:00Z");
        recent["status"]["conditions"][0]["lastTransitionTime"] = "2026-01-01T00:05:00Z".into();
        assert_eq!(deletion_order(&recent, &new), Ordering::Less);
    }

    #[test]
    fn new_pods_come_from_the_template_with_a_controller_reference() {
        let rc = json!({"metadata": {"name": "kubia", "namespace": "ns", "uid": "u1", "labels": {"team": "a"}},
            "spec": {"replicas": 3, "selector": {"app": "kubia"}, "template": {
                "metadata": {"labels": {"app": "kubia"}, "annotations": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        let p = new_pod(res("ReplicationController"), &rc);
        assert_eq!(p["metadata"]["generateName"], "kubia-");
        assert_eq!(p["metadata"]["namespace"], "ns");
        assert_eq!(p["metadata"]["labels"], json!({"app": "kubia"}));
        assert_eq!(p["metadata"]["annotations"], json!({"a": "b"}));
        assert_eq!(
            p["metadata"]["ownerReferences"],
            json!([{"apiVersion": "v1", "kind": "ReplicationController", "name": "kubia",
                    "uid": "u1", "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(p["spec"]["containers"][0]["image"], "busybox");
        assert_eq!(
            p["status"]["phase"], "Pending",
            "defaulted like an API create"
        );
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        let rs = new_pod(res("ReplicaSet"), &rc);
        assert_eq!(
            rs["metadata"]["ownerReferences"][0]["apiVersion"],
            "apps/v1"
        );
    }

    #[test]
    fn pods_are_available_after_min_ready_seconds_and_the_status_says_when_to_look_again() {
        let t0 = humantime::parse_rfc3339("2026-01-01T00:01:00Z").unwrap();
        let ready_at = |name: &str, at: &str| {
            let mut p = pod(name, json!({}), Some(OWNER));
            p["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": at}]);
            p
        };
        let old = ready_at("old", "2026-01-01T00:00:00Z");
        let fresh = ready_at("fresh", "2026-01-01T00:00:58Z");
        let not_ready = pod("not-ready", json!({}), Some(OWNER));
        assert_eq!(available_in(&not_ready, 5, t0), None);
        assert_eq!(available_in(&fresh, 0, t0), Some(Duration::ZERO));
        assert_eq!(available_in(&fresh, 5, t0), Some(Duration::from_secs(3)));
        assert_eq!(available_in(&old, 5, t0), Some(Duration::ZERO));
        let owner = json!({"spec": {"minReadySeconds": 5}});
        let (s, recheck) = status(&owner, &[&old, &fresh, &not_ready], t0);
        assert_eq!(
            (&s["readyReplicas"], &s["availableReplicas"]),
            (&2.into(), &1.into())
        );
        assert_eq!(recheck, Some(Duration::from_secs(3)));
        let later = t0 + Duration::from_secs(3);
        let (s, recheck) = status(&owner, &[&old, &fresh, &not_ready], later);
        assert_eq!(s["availableReplicas"], 2);
        assert_eq!(recheck, None);
    }

    #[test]
    fn status_counts_active_labeled_and_ready_pods_and_keeps_conditions() {
        let owner = json!({"metadata": {"generation": 4},
            "spec": {"template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}}},
            "status": {"conditions": [{"type": "ReplicaFailure"}], "replicas": 9}});
        let mut ready = pod("a", json!({"app": "web", "tier": "fe"}), Some(OWNER));
        ready["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        let partial = pod("b", json!({"app": "web"}), Some(OWNER));
        let mut finished = pod("c", json!({"app": "web", "tier": "fe"}), Some(OWNER));
        finished["status"]["phase"] = "Failed".into();
        let now = SystemTime::now();
        let (s, recheck) = status(&owner, &[&ready, &partial, &finished], now);
        assert_eq!(recheck, None);
        assert_eq!(
            s,
            json!({"conditions": [{"type": "ReplicaFailure"}], "replicas": 2,
                   "fullyLabeledReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                   "observedGeneration": 4})
        );
        let settled = json!({"metadata": owner["metadata"], "spec": owner["spec"], "status": s});
        assert_eq!(
            status(&settled, &[&ready, &partial, &finished], now).0,
            settled["status"],
            "a settled owner's status does not change"
        );
    }
}
