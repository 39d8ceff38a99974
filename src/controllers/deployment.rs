//! The Deployment controller, shaped like Kubernetes' (pkg/controller/deployment):
//! a ReplicaSet per pod template, rolled by the RollingUpdate or Recreate
//! strategy, with revisions kept as annotations so that `kubectl rollout`
//! history, undo, restart, pause, resume and status work.
//!
//! A pass over one Deployment claims its ReplicaSets (adopting orphans that
//! match its selector, releasing owned ones that stopped matching), finds the
//! ReplicaSet whose template equals the Deployment's (the "new" one), makes
//! one step of the rollout, removes history beyond revisionHistoryLimit and
//! writes the status. Every decision is a plain function below over [`Spec`]
//! and [`Rs`]; `sync` reads the store and applies them.
//!
//! Pod availability (Ready for minReadySeconds) is counted by the ReplicaSet
//! controller; this one reads the ReplicaSets' status, and copies the
//! Deployment's minReadySeconds onto its ReplicaSets.
//!
//! The pod-template-hash: FNV-1a (32 bits) over the template as canonical
//! JSON (keys sorted; nulls, empty maps and empty lists left out; without
//! the pod-template-hash label), then the collision count as 8 little-endian
//! bytes when set, printed in decimal and mapped onto Kubernetes' 27 safe
//! characters (`SafeEncodeString`). Kubernetes hashes the Go structure with
//! the same FNV-32a and encoding, so names look alike
//! (`web-6b9c8d7f54`) but differ in value.

use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::fmt;
use std::time::{Duration, SystemTime};

use super::replicaset::{self, Retry};
use crate::events::{self, Type};
use crate::model::selector::{LabelSelector, SelectorError};
use crate::model::{self, defaults, res};
use crate::store::{self, Object, Store, StoreError};

/// The label that tells the ReplicaSets of one Deployment apart.
pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The Deployment's annotations not copied onto its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    LAST_APPLIED,
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// Kubernetes' cap on the revision-history annotation.
const REVISION_HISTORY_CHARS: usize = 2000;
const COMPONENT: &str = "deployment-controller";

// Condition types and reasons, as Kubernetes words them (kubectl reads some).
const AVAILABLE: &str = "Available";
const PROGRESSING: &str = "Progressing";
const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
const RS_UPDATED: &str = "ReplicaSetUpdated";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";

#[derive(Debug)]
pub enum DeploymentError {
    Spec {
        deployment: String,
        detail: String,
    },
    Selector {
        deployment: String,
        source: SelectorError,
    },
    Store {
        action: String,
        source: StoreError,
    },
    /// The name the new ReplicaSet would get is taken by another object; the
    /// collision count was raised so the next pass hashes differently.
    HashCollision {
        name: String,
    },
}

impl fmt::Display for DeploymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeploymentError::Spec { deployment, detail } => {
                write!(f, "deployment {deployment}: {detail}")
            }
            DeploymentError::Selector { deployment, source } => {
                write!(f, "selector of deployment {deployment}: {source}")
            }
            DeploymentError::Store { action, source } => write!(f, "{action}: {source}"),
            DeploymentError::HashCollision { name } => write!(
                f,
                "replica set {name} exists with another template; retrying with a new hash"
            ),
        }
    }
}

impl std::error::Error for DeploymentError {}

fn store_err(action: impl Into<String>) -> impl FnOnce(StoreError) -> DeploymentError {
    let action = action.into();
    move |source| DeploymentError::Store { action, source }
}

pub async fn run(store: &Store) {
    let watched = [res("Deployment"), res("ReplicaSet"), res("Pod")];
    let mut retry = Retry::default();
    super::level_loop(store, &watched, super::SETTLE, || {
        let (failed, recheck) = pass(store, SystemTime::now());
        super::sooner(retry.after(failed), recheck)
    })
    .await
}

/// One pass over every Deployment: whether any failed, and when the soonest
/// progress deadline must be checked again.
fn pass(store: &Store, now: SystemTime) -> (bool, Option<Duration>) {
    let mut failed = false;
    let mut recheck = None;
    for d in store.list(res("Deployment"), None) {
        match sync(store, &d, now) {
            Ok(again) => recheck = super::sooner(recheck, again),
            Err(e) => {
                log::warn!("syncing deployment {}/{}: {e}", d.namespace, d.name);
                failed = true;
            }
        }
    }
    (failed, recheck)
}

// ---------------------------------------------------------------------------
// The model the decisions work on

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    Recreate,
    /// maxSurge and maxUnavailable resolved against spec.replicas.
    RollingUpdate {
        max_surge: i32,
        max_unavailable: i32,
    },
}

/// What the decisions need of a Deployment's spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub replicas: i32,
    pub strategy: Strategy,
    pub paused: bool,
    pub min_ready_seconds: i64,
    pub revision_history_limit: Option<usize>,
    /// None when unset or "no deadline" (MaxInt32).
    pub progress_deadline_seconds: Option<u64>,
}

impl Spec {
    pub fn from_value(d: &Value) -> Result<Spec, String> {
        let spec = &d["spec"];
        let replicas = spec["replicas"].as_i64().unwrap_or(1) as i32;
        let strategy = match spec.pointer("/strategy/type").and_then(Value::as_str) {
            Some("Recreate") => Strategy::Recreate,
            _ => {
                let field = |k: &str| {
                    spec.pointer(&format!("/strategy/rollingUpdate/{k}"))
                        .unwrap_or(&Value::Null)
                };
                let (max_surge, max_unavailable) =
                    fenceposts(field("maxSurge"), field("maxUnavailable"), replicas)?;
                Strategy::RollingUpdate {
                    max_surge,
                    max_unavailable,
                }
            }
        };
        Ok(Spec {
            replicas,
            strategy,
            paused: spec["paused"].as_bool().unwrap_or(false),
            min_ready_seconds: spec["minReadySeconds"].as_i64().unwrap_or(0),
            revision_history_limit: spec["revisionHistoryLimit"].as_u64().map(|n| n as usize),
            progress_deadline_seconds: spec["progressDeadlineSeconds"]
                .as_u64()
                .filter(|s| *s != i32::MAX as u64),
        })
    }

    pub fn max_surge(&self) -> i32 {
        match self.strategy {
            Strategy::RollingUpdate { max_surge, .. } => max_surge,
            Strategy::Recreate => 0,
        }
    }

    /// Kubernetes' MaxUnavailable: never more than the replicas.
    pub fn max_unavailable(&self) -> i32 {
        match self.strategy {
            Strategy::RollingUpdate {
                max_unavailable, ..
            } if self.replicas > 0 => max_unavailable.min(self.replicas),
            _ => 0,
        }
    }

    /// The fewest available pods a rolling update keeps.
    fn min_available(&self) -> i32 {
        self.replicas - self.max_unavailable()
    }
}

/// An int-or-percent of a rolling update against `total`: an int as it is,
/// "N%" of the total rounded up (maxSurge) or down (maxUnavailable); unset
/// is 0.
pub fn scaled_value(v: &Value, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_i64()
            .map(|n| n as i32)
            .ok_or_else(|| format!("invalid value {n}: must be an integer")),
        Value::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    format!("invalid value {s:?}: must be an integer or a percentage")
                })?;
            let x = percent * i64::from(total);
            let scaled = if round_up {
                x.div_euclid(100) + i64::from(x.rem_euclid(100) != 0)
            } else {
                x.div_euclid(100)
            };
            Ok(scaled as i32)
        }
        other => Err(format!(
            "invalid value {other}: must be an integer or a percentage"
        )),
    }
}

/// Kubernetes' ResolveFenceposts: maxSurge rounds up, maxUnavailable down;
/// when both come to 0 (a percentage of few replicas), one pod may be
/// unavailable so that the rollout can move at all.
pub fn fenceposts(surge: &Value, unavailable: &Value, replicas: i32) -> Result<(i32, i32), String> {
    let s = scaled_value(surge, replicas, true).map_err(|e| format!("maxSurge: {e}"))?;
    let u =
        scaled_value(unavailable, replicas, false).map_err(|e| format!("maxUnavailable: {e}"))?;
    Ok(if s == 0 && u == 0 { (0, 1) } else { (s, u) })
}

/// What the decisions need of one owned ReplicaSet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rs {
    pub name: String,
    pub created: String,
    pub revision: i64,
    /// spec.replicas
    pub replicas: i32,
    /// status.replicas
    pub current: i32,
    pub ready: i32,
    pub available: i32,
    /// The desired-replicas annotation: the Deployment's replicas when this
    /// ReplicaSet was last scaled.
    pub desired: Option<i32>,
    /// The max-replicas annotation (replicas + maxSurge then).
    pub max: Option<i32>,
    /// Its controller has seen its latest spec.
    pub observed: bool,
    pub deleting: bool,
}

impl Rs {
    pub fn from_value(v: &Value) -> Rs {
        let ann = |k: &str| annotation(v, k).and_then(|s| s.parse::<i64>().ok());
        let int = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        Rs {
            name: model::name(v).to_string(),
            created: model::meta_str(v, "creationTimestamp")
                .unwrap_or_default()
                .to_string(),
            revision: ann(REVISION).unwrap_or(0),
            replicas: v
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1) as i32,
            current: int("/status/replicas") as i32,
            ready: int("/status/readyReplicas") as i32,
            available: int("/status/availableReplicas") as i32,
            desired: ann(DESIRED_REPLICAS).map(|n| n as i32),
            max: ann(MAX_REPLICAS).map(|n| n as i32),
            observed: int("/status/observedGeneration") >= int("/metadata/generation"),
            deleting: store::is_deleting(v),
        }
    }

    /// Available pods counted against this ReplicaSet, never more than its
    /// spec.replicas: a scale-down its controller has not carried out yet
    /// must not count the pods it is about to remove.
    fn available_now(&self) -> i32 {
        self.available.min(self.replicas)
    }
}

fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.pointer("/metadata/annotations")?.get(key)?.as_str()
}

fn total(rss: &[Rs]) -> i32 {
    rss.iter().map(|r| r.replicas).sum()
}

// ---------------------------------------------------------------------------
// Templates, hashes and revisions

/// The template as compared and hashed: no pod-template-hash label, and no
/// nulls, empty maps or empty lists (Kubernetes' semantic equality treats
/// them as unset, and kubectl's rollback sends Go's encoding of them).
fn canonical(v: &Value) -> Value {
    fn strip(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => {
                let m: Map<String, Value> = m
                    .iter()
                    .filter_map(|(k, v)| strip(v).map(|v| (k.clone(), v)))
                    .collect();
                (!m.is_empty()).then_some(Value::Object(m))
            }
            Value::Array(a) => (!a.is_empty())
                .then(|| Value::Array(a.iter().map(|x| strip(x).unwrap_or(json!({}))).collect())),
            other => Some(other.clone()),
        }
    }
    let mut t = v.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    strip(&t).unwrap_or(Value::Null)
}

/// Whether two pod templates are the same, the hash label aside.
pub fn same_template(a: &Value, b: &Value) -> bool {
    canonical(a) == canonical(b)
}

/// The pod-template-hash of a template (see the module comment).
pub fn template_hash(template: &Value, collision_count: Option<u32>) -> String {
    let text = serde_json::to_string(&canonical(template)).expect("JSON values serialize");
    let mut bytes = text.into_bytes();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&u64::from(c).to_le_bytes());
    }
    let h = bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// The annotations a new (or newly current) ReplicaSet gets, as Kubernetes'
/// SetNewReplicaSetAnnotations: the Deployment's own (change-cause among
/// them) except the controller's and last-applied; the revision raised to
/// `revision` when lower, the revision it had kept in revision-history (a
/// rollback to it); on creation the desired and max replicas.
pub fn new_rs_annotations(
    deployment: &Map<String, Value>,
    rs: &Map<String, Value>,
    revision: i64,
    created: Option<(i32, i32)>,
) -> Map<String, Value> {
    let mut out = rs.clone();
    for (k, v) in deployment {
        if !NOT_COPIED.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    let old = rs.get(REVISION).and_then(Value::as_str);
    let old_n: i64 = old.and_then(|s| s.parse().ok()).unwrap_or(0);
    if old_n < revision {
        out.insert(REVISION.into(), revision.to_string().into());
        if let Some(old) = old {
            let history = rs
                .get(REVISION_HISTORY)
                .and_then(Value::as_str)
                .unwrap_or("");
            let mut parts: Vec<&str> = history.split(',').filter(|s| !s.is_empty()).collect();
            parts.push(old);
            while parts.join(",").len() > REVISION_HISTORY_CHARS && parts.len() > 1 {
                parts.remove(0);
            }
            out.insert(REVISION_HISTORY.into(), parts.join(",").into());
        }
    }
    if let Some((desired, max)) = created {
        set_replicas_annotations(&mut out, desired, max);
    }
    out
}

/// Sets desired-replicas and max-replicas; whether they changed.
fn set_replicas_annotations(ann: &mut Map<String, Value>, desired: i32, max: i32) -> bool {
    let mut changed = false;
    for (k, n) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let s = Value::from(n.to_string());
        if ann.get(k) != Some(&s) {
            ann.insert(k.into(), s);
            changed = true;
        }
    }
    changed
}

/// The ReplicaSet a Deployment makes for its current template.
pub fn new_replica_set(
    d: &Value,
    hash: &str,
    replicas: i32,
    annotations: Map<String, Value>,
) -> Value {
    let mut template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let labels = model::meta_mut(&mut template)
        .entry("labels")
        .or_insert_with(|| json!({}));
    labels[HASH_LABEL] = hash.into();
    let labels = labels.clone();
    let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
    let match_labels = selector
        .as_object_mut()
        .map(|s| s.entry("matchLabels").or_insert_with(|| json!({})));
    if let Some(m) = match_labels {
        m[HASH_LABEL] = hash.into();
    }
    let mut rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", model::name(d)),
            "namespace": model::namespace(d),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [replicaset::owner_ref(res("Deployment"), d)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": d.pointer("/spec/minReadySeconds").cloned().unwrap_or(0.into()),
            "selector": selector,
            "template": template,
        },
    });
    defaults::apply_defaults("ReplicaSet", &mut rs);
    rs
}

// ---------------------------------------------------------------------------
// Rollout decisions

/// What one pass does to the ReplicaSets.
#[derive(Debug, PartialEq)]
pub enum Step {
    None,
    /// Create the new ReplicaSet with this many replicas.
    Create(i32),
    /// Scale these ReplicaSets (by index) to these sizes; their
    /// desired/max-replicas annotations are brought up to date as well.
    Scale(Vec<(usize, i32)>),
}

/// Kubernetes' NewRSNewReplicas: how far the new ReplicaSet may grow now.
pub fn new_rs_replicas(spec: &Spec, all_replicas: i32, new_replicas: i32) -> i32 {
    match spec.strategy {
        Strategy::Recreate => spec.replicas,
        Strategy::RollingUpdate { max_surge, .. } => {
            let max_total = spec.replicas + max_surge;
            if all_replicas >= max_total {
                return new_replicas;
            }
            let up = (max_total - all_replicas).min(spec.replicas - new_replicas);
            new_replicas + up
        }
    }
}

/// Whether the Deployment was scaled since its active ReplicaSets were:
/// then replicas are spread proportionally instead of rolling.
pub fn is_scaling_event(spec: &Spec, rss: &[Rs]) -> bool {
    rss.iter()
        .filter(|r| r.replicas > 0)
        .any(|r| r.desired.is_some_and(|d| d != spec.replicas))
}

/// One step of a rolling update (rolloutRolling): grow the new ReplicaSet
/// within maxSurge; otherwise shrink old ones, unavailable pods first,
/// keeping replicas - maxUnavailable available. `rss` are in creation order.
pub fn rolling_step(spec: &Spec, rss: &[Rs], new: Option<usize>) -> Step {
    let Some(new) = new else {
        return Step::Create(new_rs_replicas(spec, total(rss), 0));
    };
    let n = &rss[new];
    if n.replicas != spec.replicas {
        let to = if n.replicas > spec.replicas {
            spec.replicas
        } else {
            new_rs_replicas(spec, total(rss), n.replicas)
        };
        if to != n.replicas {
            return Step::Scale(vec![(new, to)]);
        }
    }
    let old: Vec<usize> = (0..rss.len())
        .filter(|&i| i != new && rss[i].replicas > 0)
        .collect();
    if old.is_empty() {
        return Step::None;
    }
    let min_available = spec.min_available();
    let new_unavailable = n.replicas - n.available_now();
    let max_scaled_down = total(rss) - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Step::None;
    }
    let mut sizes: Vec<i32> = rss.iter().map(|r| r.replicas).collect();
    // Unhealthy replicas first: they would block the rollout otherwise.
    let mut cleaned = 0;
    for &i in &old {
        if cleaned >= max_scaled_down {
            break;
        }
        let unavailable = sizes[i] - rss[i].available_now();
        if unavailable <= 0 {
            continue;
        }
        let down = unavailable.min(max_scaled_down - cleaned);
        sizes[i] -= down;
        cleaned += down;
    }
    let available: i32 = rss
        .iter()
        .zip(&sizes)
        .map(|(r, s)| r.available.min(*s))
        .sum();
    if available > min_available {
        let budget = available - min_available;
        let mut done = 0;
        for &i in &old {
            if done >= budget {
                break;
            }
            let down = sizes[i].min(budget - done);
            sizes[i] -= down;
            done += down;
        }
    }
    changes(rss, &sizes)
}

fn changes(rss: &[Rs], sizes: &[i32]) -> Step {
    let c: Vec<(usize, i32)> = rss
        .iter()
        .zip(sizes)
        .enumerate()
        .filter(|(_, (r, s))| r.replicas != **s)
        .map(|(i, (_, s))| (i, *s))
        .collect();
    if c.is_empty() {
        Step::None
    } else {
        Step::Scale(c)
    }
}

/// One step of a Recreate rollout: scale every old ReplicaSet to 0, wait
/// until none of their pods is left (`old_pods`: pods of old ReplicaSets not
/// finished, terminating ones included), then create or grow the new one.
pub fn recreate_step(spec: &Spec, rss: &[Rs], new: Option<usize>, old_pods: usize) -> Step {
    let old = |i: &usize| Some(*i) != new;
    let shrink: Vec<(usize, i32)> = (0..rss.len())
        .filter(|i| old(i) && rss[*i].replicas > 0)
        .map(|i| (i, 0))
        .collect();
    if !shrink.is_empty() {
        return Step::Scale(shrink);
    }
    let old_current: i32 = (0..rss.len()).filter(old).map(|i| rss[i].current).sum();
    if old_pods > 0 || old_current > 0 {
        return Step::None;
    }
    match new {
        None => Step::Create(spec.replicas),
        Some(i) if rss[i].replicas != spec.replicas => Step::Scale(vec![(i, spec.replicas)]),
        Some(_) => Step::None,
    }
}

/// Scaling without rolling (a paused Deployment, or a scaling event), as
/// Kubernetes' `scale`: one active ReplicaSet (or none: the newest) takes
/// all replicas; a saturated new one leaves the old ones at 0; otherwise,
/// in a rolling update, the change is spread over the active ReplicaSets in
/// proportion to their size. `status_replicas` is the Deployment's
/// status.replicas (the fallback base of the proportion).
pub fn proportional_step(
    spec: &Spec,
    rss: &[Rs],
    new: Option<usize>,
    status_replicas: i32,
) -> Step {
    let mut active: Vec<usize> = (0..rss.len()).filter(|&i| rss[i].replicas > 0).collect();
    if active.len() <= 1 {
        let target = active
            .first()
            .copied()
            .or(new)
            .or_else(|| (0..rss.len()).max_by(|&a, &b| by_creation(&rss[a], &rss[b])));
        return match target {
            Some(i) if rss[i].replicas != spec.replicas => Step::Scale(vec![(i, spec.replicas)]),
            _ => Step::None,
        };
    }
    if let Some(n) = new.map(|i| &rss[i])
        && n.replicas == spec.replicas
        && n.desired == Some(spec.replicas)
        && n.available == spec.replicas
    {
        return Step::Scale(
            active
                .into_iter()
                .filter(|&i| Some(i) != new)
                .map(|i| (i, 0))
                .collect(),
        );
    }
    if spec.strategy == Strategy::Recreate {
        return Step::None;
    }
    let allowed = if spec.replicas > 0 {
        spec.replicas + spec.max_surge()
    } else {
        0
    };
    let to_add = allowed - active.iter().map(|&i| rss[i].replicas).sum::<i32>();
    // Larger first; on a tie, newer first when growing, older first when shrinking.
    active.sort_by(|&a, &b| {
        let tie = by_creation(&rss[a], &rss[b]);
        rss[b]
            .replicas
            .cmp(&rss[a].replicas)
            .then(if to_add > 0 { tie.reverse() } else { tie })
    });
    let mut added = 0;
    let mut sizes: Vec<(usize, i32)> = Vec::new();
    for &i in &active {
        let p = proportion(&rss[i], spec, to_add, added, status_replicas);
        sizes.push((i, rss[i].replicas + p));
        added += p;
    }
    if let Some(first) = sizes.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    // Every active ReplicaSet is listed: its annotations record the new size
    // of the Deployment even when its own size stays.
    Step::Scale(sizes)
}

/// Kubernetes' GetProportion: this ReplicaSet's share of `to_add`, never
/// more (in absolute value) than what is left to add.
fn proportion(rs: &Rs, spec: &Spec, to_add: i32, added: i32, status_replicas: i32) -> i32 {
    if rs.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if spec.replicas == 0 {
        -rs.replicas
    } else {
        let max_now = spec.replicas + spec.max_surge();
        let before = match rs.max {
            Some(m) if m != 0 => m,
            _ => status_replicas,
        };
        if before == 0 {
            0
        } else {
            let size = f64::from(rs.replicas) * f64::from(max_now) / f64::from(before);
            (size + 0.5).floor() as i32 - rs.replicas
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn by_creation(a: &Rs, b: &Rs) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
}

/// Old ReplicaSets beyond revisionHistoryLimit to delete: the lowest
/// revisions first, only those scaled to 0 with no pods left.
pub fn history_to_delete(spec: &Spec, rss: &[Rs], new: Option<usize>) -> Vec<usize> {
    let Some(limit) = spec.revision_history_limit else {
        return Vec::new();
    };
    let mut old: Vec<usize> = (0..rss.len())
        .filter(|&i| Some(i) != new && !rss[i].deleting)
        .collect();
    if old.len() <= limit {
        return Vec::new();
    }
    old.sort_by(|&a, &b| {
        rss[a]
            .revision
            .cmp(&rss[b].revision)
            .then_with(|| by_creation(&rss[a], &rss[b]))
    });
    let excess = old.len() - limit;
    old.into_iter()
        .take(excess)
        .filter(|&i| rss[i].replicas == 0 && rss[i].current == 0 && rss[i].observed)
        .collect()
}

// ---------------------------------------------------------------------------
// Status and conditions

fn condition<'a>(status: &'a Value, ty: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

/// Kubernetes' SetDeploymentCondition: the same status and reason change
/// nothing; the same status keeps its lastTransitionTime; the condition
/// moves to the end of the list.
fn set_condition(
    status: &mut Value,
    ty: &str,
    state: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    let current = condition(status, ty).cloned();
    if let Some(c) = &current
        && c["status"] == state
        && c["reason"] == reason
    {
        return;
    }
    let since = match &current {
        Some(c) if c["status"] == state => c["lastTransitionTime"].clone(),
        _ => now.into(),
    };
    remove_condition(status, ty);
    let conds = status
        .as_object_mut()
        .expect("status is an object")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if let Some(list) = conds.as_array_mut() {
        list.push(json!({"type": ty, "status": state, "lastUpdateTime": now,
            "lastTransitionTime": since, "reason": reason, "message": message}));
    }
}

fn remove_condition(status: &mut Value, ty: &str) {
    if let Some(list) = status.get_mut("conditions").and_then(Value::as_array_mut) {
        list.retain(|c| c["type"] != ty);
    }
}

fn count(status: &Value, key: &str) -> i64 {
    status[key].as_i64().unwrap_or(0)
}

/// Kubernetes' calculateStatus: the counts summed over the ReplicaSets, the
/// Available condition, and the conditions and collisionCount carried over
/// from `prev`. Zero counts are left out, as Kubernetes encodes them.
pub fn calculate_status(
    spec: &Spec,
    generation: i64,
    prev: &Value,
    rss: &[Rs],
    new: Option<usize>,
    now: &str,
) -> Value {
    let available: i32 = rss.iter().map(|r| r.available).sum();
    let unavailable = (total(rss) - available).max(0);
    let mut s = Map::new();
    s.insert("observedGeneration".into(), generation.into());
    let counts = [
        ("replicas", rss.iter().map(|r| r.current).sum::<i32>()),
        ("updatedReplicas", new.map_or(0, |i| rss[i].current)),
        ("readyReplicas", rss.iter().map(|r| r.ready).sum()),
        ("availableReplicas", available),
        ("unavailableReplicas", unavailable),
    ];
    for (k, n) in counts {
        if n != 0 {
            s.insert(k.into(), n.into());
        }
    }
    for k in ["conditions", "collisionCount"] {
        if let Some(v) = prev.get(k) {
            s.insert(k.into(), v.clone());
        }
    }
    let mut s = Value::Object(s);
    if available >= spec.min_available() {
        set_condition(
            &mut s,
            AVAILABLE,
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        );
    } else {
        set_condition(
            &mut s,
            AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        );
    }
    s
}

/// Kubernetes' DeploymentComplete.
pub fn is_complete(spec: &Spec, generation: i64, status: &Value) -> bool {
    let r = i64::from(spec.replicas);
    count(status, "updatedReplicas") == r
        && count(status, "replicas") == r
        && count(status, "availableReplicas") == r
        && count(status, "observedGeneration") >= generation
}

/// Kubernetes' DeploymentProgressing: more updated, ready or available
/// pods, or fewer old ones, than the last status said.
fn is_progressing(prev: &Value, new: &Value) -> bool {
    let old_pods = |s: &Value| count(s, "replicas") - count(s, "updatedReplicas");
    count(new, "updatedReplicas") > count(prev, "updatedReplicas")
        || old_pods(new) < old_pods(prev)
        || count(new, "readyReplicas") > count(prev, "readyReplicas")
        || count(new, "availableReplicas") > count(prev, "availableReplicas")
}

fn parse_time(v: &Value) -> Option<SystemTime> {
    v.as_str()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
}

/// Kubernetes' syncRolloutStatus: the Progressing condition of a rollout.
/// Complete: NewReplicaSetAvailable; progress since `prev`: ReplicaSetUpdated
/// (its lastUpdateTime is the clock of the deadline); no progress for
/// progressDeadlineSeconds: ProgressDeadlineExceeded.
pub fn progress(
    spec: &Spec,
    generation: i64,
    prev: &Value,
    status: &mut Value,
    new_rs: Option<&str>,
    now: SystemTime,
) {
    let stamp = model::timestamp(now);
    let Some(deadline) = spec.progress_deadline_seconds else {
        remove_condition(status, PROGRESSING);
        return;
    };
    let current = condition(prev, PROGRESSING);
    let finished = count(status, "replicas") == count(status, "updatedReplicas")
        && current.is_some_and(|c| c["reason"] == NEW_RS_AVAILABLE);
    if finished {
        return;
    }
    let subject = match new_rs {
        Some(n) => format!("ReplicaSet \"{n}\""),
        None => "Deployment".to_string(),
    };
    if is_complete(spec, generation, status) {
        let msg = format!("{subject} has successfully progressed.");
        set_condition(status, PROGRESSING, "True", NEW_RS_AVAILABLE, &msg, &stamp);
    } else if is_progressing(prev, status) {
        let msg = format!("{subject} is progressing.");
        // Progress refreshes lastUpdateTime even with the same reason.
        let since = current
            .filter(|c| c["status"] == "True")
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| stamp.clone().into());
        remove_condition(status, PROGRESSING);
        set_condition(status, PROGRESSING, "True", RS_UPDATED, &msg, &stamp);
        if let Some(c) = status["conditions"]
            .as_array_mut()
            .and_then(|l| l.iter_mut().find(|c| c["type"] == PROGRESSING))
        {
            c["lastTransitionTime"] = since;
        }
    } else if let Some(c) = condition(status, PROGRESSING).cloned() {
        let timed_out = c["reason"] == TIMED_OUT
            || (c["reason"] != NEW_RS_AVAILABLE
                && parse_time(&c["lastUpdateTime"])
                    .is_some_and(|t| t + Duration::from_secs(deadline) < now));
        if timed_out {
            let msg = format!("{subject} has timed out progressing.");
            set_condition(status, PROGRESSING, "False", TIMED_OUT, &msg, &stamp);
        }
    }
}

/// When to look at a rollout again to see whether its deadline passed
/// (Kubernetes' requeueStuckDeployment): None when complete, timed out or
/// without a deadline.
pub fn deadline_recheck(
    spec: &Spec,
    generation: i64,
    status: &Value,
    now: SystemTime,
) -> Option<Duration> {
    let deadline = spec.progress_deadline_seconds?;
    let c = condition(status, PROGRESSING)?;
    if is_complete(spec, generation, status)
        || c["reason"] == TIMED_OUT
        || c["reason"] == NEW_RS_AVAILABLE
        || c["status"] != "True"
    {
        return None;
    }
    let at = parse_time(&c["lastUpdateTime"])? + Duration::from_secs(deadline);
    Some(at.duration_since(now).unwrap_or_default() + Duration::from_secs(1))
}

/// Kubernetes' checkPausedConditions: pausing and resuming show in the
/// Progressing condition (reason Unknown), so a paused Deployment never
/// times out. A reported timeout is kept.
pub fn paused_condition(spec: &Spec, status: &mut Value, now: &str) {
    if spec.progress_deadline_seconds.is_none() {
        return;
    }
    let reason = condition(status, PROGRESSING).map(|c| c["reason"].clone());
    if reason.as_ref().is_some_and(|r| r == TIMED_OUT) {
        return;
    }
    let paused_shown = reason.is_some_and(|r| r == PAUSED);
    if spec.paused && !paused_shown {
        set_condition(
            status,
            PROGRESSING,
            "Unknown",
            PAUSED,
            "Deployment is paused",
            now,
        );
    } else if !spec.paused && paused_shown {
        set_condition(
            status,
            PROGRESSING,
            "Unknown",
            RESUMED,
            "Deployment is resumed",
            now,
        );
    }
}

// ---------------------------------------------------------------------------
// The sync

/// One Deployment and what it owns, as read at the start of a pass.
struct Owned {
    values: Vec<Value>,
    rss: Vec<Rs>,
    new: Option<usize>,
}

/// Makes one Deployment's ReplicaSets match its spec. Idempotent: a pass
/// over a settled Deployment writes nothing. Returns when to check its
/// progress deadline again.
fn sync(store: &Store, obj: &Object, now: SystemTime) -> Result<Option<Duration>, DeploymentError> {
    let key = format!("{}/{}", obj.namespace, obj.name);
    let d = obj.value();
    let spec = Spec::from_value(&d).map_err(|detail| DeploymentError::Spec {
        deployment: key.clone(),
        detail,
    })?;
    let sel = replicaset::selector(res("Deployment"), &d).map_err(|source| {
        DeploymentError::Selector {
            deployment: key.clone(),
            source,
        }
    })?;
    let deleting = store::is_deleting(&d);
    claim(store, obj, &d, &sel, deleting)?;
    let mut owned = owned(store, obj, &d, &sel);
    let generation = model::meta(&d)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let stamp = model::timestamp(now);
    let prev = d.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut status = prev.clone();
    if !status.is_object() {
        status = json!({});
    }
    let mut revision = None;
    // Scaling (and anything while paused) does not roll, and its status
    // does not count as rollout progress.
    let scaling = spec.paused || is_scaling_event(&spec, &owned.rss);

    if !deleting {
        paused_condition(&spec, &mut status, &stamp);
        let max_old = (0..owned.rss.len())
            .filter(|&i| Some(i) != owned.new)
            .map(|i| owned.rss[i].revision)
            .max()
            .unwrap_or(0);
        let next_revision = max_old + 1;
        if let Some(i) = owned.new {
            revision = Some(sync_new_rs(store, &d, &spec, &mut owned, i, next_revision)?);
            if spec.progress_deadline_seconds.is_some() && condition(&status, PROGRESSING).is_none()
            {
                let msg = format!("Found new replica set \"{}\"", owned.rss[i].name);
                set_condition(&mut status, PROGRESSING, "True", FOUND_NEW_RS, &msg, &stamp);
            }
        }
        let step = if scaling {
            let status_replicas = count(&prev, "replicas") as i32;
            proportional_step(&spec, &owned.rss, owned.new, status_replicas)
        } else {
            match spec.strategy {
                Strategy::Recreate => {
                    let old_pods = old_pods(store, &d, &owned);
                    recreate_step(&spec, &owned.rss, owned.new, old_pods)
                }
                Strategy::RollingUpdate { .. } => rolling_step(&spec, &owned.rss, owned.new),
            }
        };
        match step {
            Step::None => {}
            Step::Create(replicas) => {
                let i = create_new_rs(store, obj, &d, &spec, &mut owned, replicas, next_revision)?;
                revision = Some(next_revision);
                if spec.progress_deadline_seconds.is_some() {
                    let msg = format!("Created new replica set \"{}\"", owned.rss[i].name);
                    set_condition(
                        &mut status,
                        PROGRESSING,
                        "True",
                        NEW_RS_CREATED,
                        &msg,
                        &stamp,
                    );
                }
            }
            Step::Scale(sizes) => {
                for (i, to) in sizes {
                    scale_rs(store, obj, &spec, &mut owned, i, to)?;
                }
            }
        }
    }

    let mut new_status =
        calculate_status(&spec, generation, &status, &owned.rss, owned.new, &stamp);
    if !deleting && !scaling {
        let new_name = owned.new.map(|i| owned.rss[i].name.clone());
        progress(
            &spec,
            generation,
            &prev,
            &mut new_status,
            new_name.as_deref(),
            now,
        );
    }
    if !deleting && (spec.paused || is_complete(&spec, generation, &new_status)) {
        for i in history_to_delete(&spec, &owned.rss, owned.new) {
            let name = &owned.rss[i].name;
            match store.delete_gracefully(res("ReplicaSet"), &obj.namespace, name, None) {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(store_err(format!("deleting old replica set {name}"))(e)),
            }
        }
    }

    let mut updated = d.clone();
    if let Some(rev) = revision {
        let ann = model::meta_mut(&mut updated)
            .entry("annotations")
            .or_insert_with(|| json!({}));
        ann[REVISION] = rev.to_string().into();
    }
    updated["status"] = new_status;
    if updated != d {
        store
            .update(res("Deployment"), updated.clone())
            .map_err(store_err("writing the deployment status"))?;
    }
    Ok(deadline_recheck(&spec, generation, &updated["status"], now))
}

/// Adopts orphan ReplicaSets that match the selector and releases owned
/// ones that stopped matching (Kubernetes' ClaimReplicaSets).
fn claim(
    store: &Store,
    obj: &Object,
    d: &Value,
    sel: &LabelSelector,
    deleting: bool,
) -> Result<(), DeploymentError> {
    let all: Vec<Value> = store
        .list(res("ReplicaSet"), Some(&obj.namespace))
        .iter()
        .map(|o| o.value())
        .collect();
    let claimed = replicaset::claim(&obj.uid, sel, deleting, &all);
    for rs in &claimed.release {
        let mut v = (*rs).clone();
        replicaset::remove_owner_ref(&mut v, &obj.uid);
        store
            .update(res("ReplicaSet"), v)
            .map_err(store_err(format!(
                "releasing replica set {}",
                model::name(rs)
            )))?;
    }
    for rs in &claimed.adopt {
        let mut v = (*rs).clone();
        let refs = model::meta_mut(&mut v)
            .entry("ownerReferences")
            .or_insert_with(|| json!([]));
        if let Some(refs) = refs.as_array_mut() {
            refs.push(replicaset::owner_ref(res("Deployment"), d));
        }
        store
            .update(res("ReplicaSet"), v)
            .map_err(store_err(format!(
                "adopting replica set {}",
                model::name(rs)
            )))?;
    }
    Ok(())
}

/// The ReplicaSets the Deployment controls, oldest first, and which of
/// them has its template (the oldest such, as Kubernetes picks).
fn owned(store: &Store, obj: &Object, d: &Value, sel: &LabelSelector) -> Owned {
    let mut values: Vec<Value> = store
        .list(res("ReplicaSet"), Some(&obj.namespace))
        .iter()
        .map(|o| o.value())
        .filter(|v| {
            replicaset::controller_uid(v) == Some(obj.uid.as_str())
                && sel.matches_value(v.pointer("/metadata/labels"))
        })
        .collect();
    let created = |v: &Value| {
        let meta = |k| model::meta_str(v, k).unwrap_or_default().to_string();
        (meta("creationTimestamp"), meta("name"))
    };
    values.sort_by_key(created);
    let rss: Vec<Rs> = values.iter().map(Rs::from_value).collect();
    let template = d.pointer("/spec/template").unwrap_or(&Value::Null);
    let new = values.iter().position(|v| {
        same_template(
            v.pointer("/spec/template").unwrap_or(&Value::Null),
            template,
        )
    });
    Owned { values, rss, new }
}

/// Pods of the old ReplicaSets that are not finished (terminating ones
/// count: Recreate waits until they are gone).
fn old_pods(store: &Store, d: &Value, owned: &Owned) -> usize {
    let old_uids: Vec<&str> = (0..owned.values.len())
        .filter(|&i| Some(i) != owned.new)
        .filter_map(|i| model::meta_str(&owned.values[i], "uid"))
        .collect();
    store
        .list(res("Pod"), Some(model::namespace(d)))
        .iter()
        // The text test skips parsing pods that name none of them.
        .filter(|p| !p.finished && old_uids.iter().any(|u| p.raw.contains(u)))
        .filter(|p| {
            let v = p.value();
            replicaset::controller_uid(&v).is_some_and(|u| old_uids.contains(&u))
        })
        .count()
}

/// Brings the new ReplicaSet's annotations (revision, copied annotations)
/// and minReadySeconds up to date; returns its revision.
fn sync_new_rs(
    store: &Store,
    d: &Value,
    spec: &Spec,
    owned: &mut Owned,
    i: usize,
    revision: i64,
) -> Result<i64, DeploymentError> {
    let v = &owned.values[i];
    let empty = Map::new();
    let d_ann = model::meta(d)
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let rs_ann = model::meta(v)
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let ann = new_rs_annotations(d_ann, rs_ann, revision, None);
    let mut updated = v.clone();
    model::meta_mut(&mut updated).insert("annotations".into(), Value::Object(ann));
    updated["spec"]["minReadySeconds"] = spec.min_ready_seconds.into();
    if updated != *v {
        let stored = store
            .update(res("ReplicaSet"), updated)
            .map_err(store_err(format!(
                "updating replica set {}",
                model::name(v)
            )))?;
        owned.values[i] = stored.value();
        owned.rss[i] = Rs::from_value(&owned.values[i]);
    }
    Ok(owned.rss[i].revision)
}

fn create_new_rs(
    store: &Store,
    obj: &Object,
    d: &Value,
    spec: &Spec,
    owned: &mut Owned,
    replicas: i32,
    revision: i64,
) -> Result<usize, DeploymentError> {
    let collisions = d
        .pointer("/status/collisionCount")
        .and_then(Value::as_u64)
        .map(|n| n as u32);
    let template = d.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let hash = template_hash(&template, collisions);
    let empty = Map::new();
    let d_ann = model::meta(d)
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let ann = new_rs_annotations(
        d_ann,
        &Map::new(),
        revision,
        Some((spec.replicas, spec.replicas + spec.max_surge())),
    );
    let rs = new_replica_set(d, &hash, replicas, ann);
    let name = model::name(&rs).to_string();
    let created = match store.create(res("ReplicaSet"), rs) {
        Ok(o) => o,
        Err(StoreError::AlreadyExists { .. }) => {
            // Not ours with this template (that one would have been found):
            // a hash collision. A new count makes a new hash next pass.
            let mut v = d.clone();
            v["status"]["collisionCount"] = (collisions.unwrap_or(0) + 1).into();
            store
                .update(res("Deployment"), v)
                .map_err(store_err("raising the collision count"))?;
            return Err(DeploymentError::HashCollision { name });
        }
        Err(e) => {
            let msg = format!("Failed to create new replica set \"{name}\": {e}");
            events::record(
                store,
                obj,
                Type::Warning,
                "FailedCreate",
                &msg,
                COMPONENT,
                "",
            );
            return Err(store_err(format!("creating replica set {name}"))(e));
        }
    };
    if replicas > 0 {
        let msg = format!("Scaled up replica set {name} to {replicas}");
        events::record(
            store,
            obj,
            Type::Normal,
            "ScalingReplicaSet",
            &msg,
            COMPONENT,
            "",
        );
    }
    let v = created.value();
    owned.rss.push(Rs::from_value(&v));
    owned.values.push(v);
    let i = owned.values.len() - 1;
    owned.new = Some(i);
    Ok(i)
}

/// Scales one ReplicaSet and records the size the Deployment had then
/// (desired/max-replicas); an event when its size changed.
fn scale_rs(
    store: &Store,
    obj: &Object,
    spec: &Spec,
    owned: &mut Owned,
    i: usize,
    to: i32,
) -> Result<(), DeploymentError> {
    let v = &owned.values[i];
    let from = owned.rss[i].replicas;
    let mut updated = v.clone();
    updated["spec"]["replicas"] = to.into();
    let ann = model::meta_mut(&mut updated)
        .entry("annotations")
        .or_insert_with(|| json!({}));
    if let Some(ann) = ann.as_object_mut() {
        set_replicas_annotations(ann, spec.replicas, spec.replicas + spec.max_surge());
    }
    if updated == *v {
        return Ok(());
    }
    let name = model::name(v).to_string();
    let stored = store
        .update(res("ReplicaSet"), updated)
        .map_err(store_err(format!("scaling replica set {name}")))?;
    owned.values[i] = stored.value();
    owned.rss[i] = Rs::from_value(&owned.values[i]);
    if from != to {
        let dir = if to > from { "up" } else { "down" };
        let msg = format!("Scaled {dir} replica set {name} to {to} from {from}");
        events::record(
            store,
            obj,
            Type::Normal,
            "ScalingReplicaSet",
            &msg,
            COMPONENT,
            "",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rolling(replicas: i32, surge: Value, unavailable: Value) -> Spec {
        let d = json!({"spec": {"replicas": replicas, "progressDeadlineSeconds": 600,
            "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}});
        Spec::from_value(&d).unwrap()
    }

    fn rs(name: &str, created: &str, replicas: i32, available: i32) -> Rs {
        Rs {
            name: name.into(),
            created: created.into(),
            replicas,
            current: replicas,
            ready: available,
            available,
            desired: Some(3),
            max: Some(4),
            observed: true,
            ..Rs::default()
        }
    }

    #[test]
    fn surge_rounds_up_and_unavailable_rounds_down() {
        assert_eq!(scaled_value(&json!("25%"), 3, true), Ok(1));
        assert_eq!(scaled_value(&json!("25%"), 3, false), Ok(0));
        assert_eq!(scaled_value(&json!("50%"), 5, true), Ok(3));
        assert_eq!(scaled_value(&json!("50%"), 5, false), Ok(2));
        assert_eq!(scaled_value(&json!(2), 5, false), Ok(2));
        assert!(scaled_value(&json!("2"), 5, false).is_err());
        assert_eq!(fenceposts(&json!("25%"), &json!("25%"), 3), Ok((1, 0)));
        // Both rounding to 0: one pod may be unavailable.
        assert_eq!(fenceposts(&json!(0), &json!("10%"), 3), Ok((0, 1)));
        let s = rolling(3, json!(1), json!(5));
        assert_eq!(s.max_unavailable(), 3, "never more than the replicas");
        let recreate =
            Spec::from_value(&json!({"spec": {"replicas": 2, "strategy": {"type": "Recreate"}}}));
        assert_eq!(recreate.unwrap().max_surge(), 0);
    }

    #[test]
    fn hashes_are_stable_and_ignore_the_hash_label_and_empty_fields() {
        let t = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {}}]}});
        let mut labelled = t.clone();
        labelled["metadata"]["labels"][HASH_LABEL] = "x".into();
        labelled["metadata"]["creationTimestamp"] = Value::Null;
        labelled["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("resources");
        assert!(same_template(&t, &labelled));
        assert_eq!(template_hash(&t, None), template_hash(&labelled, None));
        let h = template_hash(&t, None);
        assert!(h.len() >= 8 && h.len() <= 10, "{h}");
        assert!(
            h.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
        let mut v2 = t.clone();
        v2["spec"]["containers"][0]["image"] = "busybox:2".into();
        assert!(!same_template(&t, &v2));
        assert_ne!(template_hash(&v2, None), h);
        assert_ne!(
            template_hash(&t, Some(1)),
            h,
            "a collision count changes the hash"
        );
    }

    #[test]
    fn a_rolling_update_surges_then_scales_old_down_within_max_unavailable() {
        // 3 replicas, maxSurge 1, maxUnavailable 0: one new pod at a time.
        let spec = rolling(3, json!(1), json!(0));
        let old = rs("old", "t1", 3, 3);
        assert_eq!(
            rolling_step(&spec, std::slice::from_ref(&old), None),
            Step::Create(1)
        );
        let new = rs("new", "t2", 1, 0);
        let rss = [old.clone(), new.clone()];
        // The new pod is not available: nothing can go.
        assert_eq!(rolling_step(&spec, &rss, Some(1)), Step::None);
        let rss = [old.clone(), rs("new", "t2", 1, 1)];
        assert_eq!(
            rolling_step(&spec, &rss, Some(1)),
            Step::Scale(vec![(0, 2)])
        );
        // Old scaled to 2 but its status still says 3 available: the stale
        // count must not allow a second scale-down.
        let mut stale = rs("old", "t1", 2, 3);
        stale.current = 3;
        let rss = [stale, rs("new", "t2", 1, 1)];
        assert_eq!(
            rolling_step(&spec, &rss, Some(1)),
            Step::Scale(vec![(1, 2)])
        );
        let rss = [rs("old", "t1", 2, 2), rs("new", "t2", 2, 1)];
        assert_eq!(rolling_step(&spec, &rss, Some(1)), Step::None);
        let rss = [rs("old", "t1", 0, 0), rs("new", "t2", 3, 3)];
        assert_eq!(rolling_step(&spec, &rss, Some(1)), Step::None);
    }

    #[test]
    fn a_rolling_update_with_max_unavailable_removes_unhealthy_old_pods_first() {
        // 4 replicas, maxSurge 0, maxUnavailable 2.
        let spec = rolling(4, json!(0), json!(2));
        // No room to surge: old goes down by 2 first.
        let old = rs("old", "t1", 4, 4);
        assert_eq!(
            rolling_step(&spec, std::slice::from_ref(&old), None),
            Step::Create(0)
        );
        let rss = [old, rs("new", "t2", 0, 0)];
        assert_eq!(
            rolling_step(&spec, &rss, Some(1)),
            Step::Scale(vec![(0, 2)])
        );
        // Two old sets, the newer with an unavailable pod: that pod goes
        // first, then the oldest set gives up an available one.
        let rss = [
            rs("a", "t1", 2, 2),
            rs("b", "t2", 2, 1),
            rs("new", "t3", 0, 0),
        ];
        assert_eq!(
            rolling_step(&spec, &rss, Some(2)),
            Step::Scale(vec![(0, 1), (1, 1)])
        );
    }

    #[test]
    fn recreate_scales_old_to_zero_waits_for_their_pods_then_creates() {
        let spec =
            Spec::from_value(&json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}}))
                .unwrap();
        let old = rs("old", "t1", 3, 3);
        assert_eq!(
            recreate_step(&spec, &[old], None, 3),
            Step::Scale(vec![(0, 0)])
        );
        let mut draining = rs("old", "t1", 0, 0);
        draining.current = 1;
        assert_eq!(recreate_step(&spec, &[draining], None, 1), Step::None);
        let gone = rs("old", "t1", 0, 0);
        assert_eq!(
            recreate_step(&spec, std::slice::from_ref(&gone), None, 1),
            Step::None,
            "terminating pods count"
        );
        assert_eq!(
            recreate_step(&spec, std::slice::from_ref(&gone), None, 0),
            Step::Create(3)
        );
        let rss = [gone, rs("new", "t2", 3, 0)];
        assert_eq!(recreate_step(&spec, &rss, Some(1), 0), Step::None);
    }

    #[test]
    fn scaling_spreads_replicas_in_proportion_and_one_active_set_takes_all() {
        // Scaled from 10 to 15 in the middle of a rollout (maxSurge 3 -> 4).
        let spec = rolling(15, json!("25%"), json!(0));
        let mut a = rs("a", "t1", 8, 8);
        a.max = Some(13);
        a.desired = Some(10);
        let mut b = rs("b", "t2", 5, 5);
        b.max = Some(13);
        b.desired = Some(10);
        let rss = [a.clone(), b.clone()];
        assert!(is_scaling_event(&spec, &rss));
        // allowed 15 + 4 = 19, 6 to add: 8*19/13 = 11.7 -> 12 (+4), 5*19/13 = 7.3 -> 7 (+2).
        assert_eq!(
            proportional_step(&spec, &rss, Some(1), 13),
            Step::Scale(vec![(0, 12), (1, 7)])
        );
        // One active set takes the whole size.
        let rss = [rs("a", "t1", 0, 0), rs("b", "t2", 3, 3)];
        assert_eq!(
            proportional_step(&spec, &rss, Some(1), 3),
            Step::Scale(vec![(1, 15)])
        );
        // None active: the new one.
        let rss = [rs("a", "t1", 0, 0), rs("b", "t2", 0, 0)];
        assert_eq!(
            proportional_step(&spec, &rss, Some(0), 0),
            Step::Scale(vec![(0, 15)])
        );
        let settled = [rs("a", "t1", 3, 3)];
        assert!(!is_scaling_event(&rolling(3, json!(1), json!(0)), &settled));
    }

    #[test]
    fn revisions_move_to_a_reused_template_and_annotations_are_copied() {
        let d_ann: Map<String, Value> = serde_json::from_value(json!({
            "kubernetes.io/change-cause": "set image v2", REVISION: "2",
            LAST_APPLIED: "{}"}))
        .unwrap();
        let fresh = new_rs_annotations(&d_ann, &Map::new(), 3, Some((3, 4)));
        assert_eq!(
            Value::Object(fresh),
            json!({"kubernetes.io/change-cause": "set image v2", REVISION: "3",
                   DESIRED_REPLICAS: "3", MAX_REPLICAS: "4"})
        );
        // Rolling back to revision 1: it becomes 3 and remembers 1.
        let old: Map<String, Value> = serde_json::from_value(json!({REVISION: "1",
            DESIRED_REPLICAS: "3", MAX_REPLICAS: "4"}))
        .unwrap();
        let back = new_rs_annotations(&d_ann, &old, 3, None);
        assert_eq!(back[REVISION], "3");
        assert_eq!(back[REVISION_HISTORY], "1");
        // Already current: the revision stays.
        let same = new_rs_annotations(&d_ann, &back, 3, None);
        assert_eq!(same, back);
    }

    #[test]
    fn history_beyond_the_limit_goes_lowest_revision_first() {
        let mut spec = rolling(3, json!(1), json!(0));
        spec.revision_history_limit = Some(1);
        let old = |name: &str, rev: i64, replicas: i32| {
            let mut r = rs(name, "t", replicas, replicas);
            r.revision = rev;
            r
        };
        let rss = [
            old("r2", 2, 0),
            old("r1", 1, 0),
            old("busy", 3, 1),
            old("new", 4, 3),
        ];
        assert_eq!(history_to_delete(&spec, &rss, Some(3)), vec![1, 0]);
        spec.revision_history_limit = Some(3);
        assert!(history_to_delete(&spec, &rss, Some(3)).is_empty());
    }

    #[test]
    fn status_counts_and_conditions_follow_the_rollout() {
        let spec = rolling(3, json!(1), json!(0));
        let t0 = humantime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let stamp = model::timestamp(t0);
        let rss = [rs("old", "t1", 2, 2), rs("new", "t2", 2, 1)];
        let s = calculate_status(&spec, 2, &json!({}), &rss, Some(1), &stamp);
        assert_eq!(s["replicas"], 4);
        assert_eq!(s["updatedReplicas"], 2);
        assert_eq!(s["availableReplicas"], 3);
        assert_eq!(s["unavailableReplicas"], 1);
        assert_eq!(s["observedGeneration"], 2);
        assert_eq!(
            condition(&s, AVAILABLE).unwrap()["reason"],
            "MinimumReplicasAvailable"
        );
        let down = calculate_status(
            &spec,
            2,
            &json!({}),
            &[rs("new", "t2", 3, 1)],
            Some(0),
            &stamp,
        );
        assert_eq!(condition(&down, AVAILABLE).unwrap()["status"], "False");
        assert!(down.get("replicas").is_some() && down.get("collisionCount").is_none());

        // Progress since the last status: ReplicaSetUpdated.
        let prev = json!({"replicas": 3, "updatedReplicas": 1, "conditions": [
            {"type": PROGRESSING, "status": "True", "reason": NEW_RS_CREATED,
             "lastUpdateTime": "2025-12-31T23:59:00Z", "lastTransitionTime": "2025-12-31T23:59:00Z"}]});
        let mut s = calculate_status(&spec, 2, &prev, &rss, Some(1), &stamp);
        progress(&spec, 2, &prev, &mut s, Some("new"), t0);
        let c = condition(&s, PROGRESSING).unwrap();
        assert_eq!(
            (&c["reason"], &c["message"]),
            (
                &RS_UPDATED.into(),
                &"ReplicaSet \"new\" is progressing.".into()
            )
        );
        assert_eq!(c["lastUpdateTime"], stamp.as_str());
        assert_eq!(c["lastTransitionTime"], "2025-12-31T23:59:00Z");
        assert_eq!(
            deadline_recheck(&spec, 2, &s, t0),
            Some(Duration::from_secs(601))
        );

        // No progress for progressDeadlineSeconds: timed out, which kubectl reports.
        let late = t0 + Duration::from_secs(601);
        let mut stuck = s.clone();
        progress(&spec, 2, &s, &mut stuck, Some("new"), late);
        assert_eq!(condition(&stuck, PROGRESSING).unwrap()["reason"], TIMED_OUT);
        assert_eq!(condition(&stuck, PROGRESSING).unwrap()["status"], "False");
        assert_eq!(deadline_recheck(&spec, 2, &stuck, late), None);

        // Complete: NewReplicaSetAvailable.
        let done = [rs("old", "t1", 0, 0), rs("new", "t2", 3, 3)];
        let mut s = calculate_status(&spec, 2, &stuck, &done, Some(1), &stamp);
        progress(&spec, 2, &stuck, &mut s, Some("new"), late);
        assert!(is_complete(&spec, 2, &s));
        assert_eq!(
            condition(&s, PROGRESSING).unwrap()["reason"],
            NEW_RS_AVAILABLE
        );
        assert_eq!(
            condition(&s, PROGRESSING).unwrap()["message"],
            "ReplicaSet \"new\" has successfully progressed."
        );
    }

    #[test]
    fn pausing_and_resuming_show_in_the_progressing_condition() {
        let mut spec = rolling(3, json!(1), json!(0));
        spec.paused = true;
        let mut s = json!({});
        paused_condition(&spec, &mut s, "t1");
        assert_eq!(condition(&s, PROGRESSING).unwrap()["reason"], PAUSED);
        assert_eq!(condition(&s, PROGRESSING).unwrap()["status"], "Unknown");
        let before = s.clone();
        paused_condition(&spec, &mut s, "t2");
        assert_eq!(s, before, "settled: no change");
        spec.paused = false;
        paused_condition(&spec, &mut s, "t3");
        assert_eq!(condition(&s, PROGRESSING).unwrap()["reason"], RESUMED);
    }

    fn stored_deployment(store: &Store, name: &str, replicas: i64, image: &str) -> Value {
        let mut d = json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}}});
        defaults::apply_defaults("Deployment", &mut d);
        store.create(res("Deployment"), d).unwrap().value()
    }

    fn replica_sets(store: &Store) -> Vec<Value> {
        store
            .list(res("ReplicaSet"), Some("default"))
            .iter()
            .map(|o| o.value())
            .collect()
    }

    #[test]
    fn a_pass_creates_the_replica_set_with_revision_and_owner_then_settles() {
        use crate::store::testing::temp_store_with_default_ns;
        let (store, dir) = temp_store_with_default_ns("deploy-pass");
        let d = stored_deployment(&store, "web", 3, "busybox:1");
        let now = SystemTime::now();
        assert!(!pass(&store, now).0);
        let rss = replica_sets(&store);
        assert_eq!(rss.len(), 1);
        let rs = &rss[0];
        let hash = rs["metadata"]["labels"][HASH_LABEL]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
        assert_eq!(
            rs["spec"]["selector"]["matchLabels"][HASH_LABEL],
            hash.as_str()
        );
        assert_eq!(
            rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL],
            hash.as_str()
        );
        assert_eq!(rs["spec"]["replicas"], 3);
        assert_eq!(rs["metadata"]["annotations"][REVISION], "1");
        assert_eq!(rs["metadata"]["annotations"][DESIRED_REPLICAS], "3");
        assert_eq!(rs["metadata"]["annotations"][MAX_REPLICAS], "4");
        let r = &rs["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&r["kind"], &r["uid"]),
            (&"Deployment".into(), &d["metadata"]["uid"])
        );
        assert_eq!(
            (&r["controller"], &r["blockOwnerDeletion"]),
            (&true.into(), &true.into())
        );
        let dv = store
            .get(res("Deployment"), "default", "web")
            .unwrap()
            .value();
        assert_eq!(dv["metadata"]["annotations"][REVISION], "1");
        assert_eq!(
            condition(&dv["status"], PROGRESSING).unwrap()["reason"],
            NEW_RS_CREATED
        );
        let rv = store.resource_version();
        assert!(!pass(&store, now).0);
        assert_eq!(
            store.resource_version(),
            rv,
            "a settled pass writes nothing"
        );

        // A new template: a second replica set, revision 2, surging by one.
        let mut dv = dv;
        dv["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2".into();
        store.update(res("Deployment"), dv).unwrap();
        assert!(!pass(&store, now).0);
        let rss = replica_sets(&store);
        assert_eq!(rss.len(), 2);
        let new = rss
            .iter()
            .find(|r| r["metadata"]["annotations"][REVISION] == "2")
            .unwrap();
        assert_eq!(new["spec"]["replicas"], 1);
        let dv = store
            .get(res("Deployment"), "default", "web")
            .unwrap()
            .value();
        assert_eq!(dv["metadata"]["annotations"][REVISION], "2");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recreate_waits_for_the_old_pods_to_be_gone() {
        use crate::controllers::replicaset;
        use crate::store::testing::temp_store_with_default_ns;
        let (store, dir) = temp_store_with_default_ns("deploy-recreate");
        let mut d = stored_deployment(&store, "rec", 2, "busybox:1");
        d["spec"]["strategy"] = json!({"type": "Recreate"});
        store.update(res("Deployment"), d).unwrap();
        let now = SystemTime::now();
        let settle = || {
            assert!(!pass(&store, now).0);
            assert!(!replicaset::pass(&store, now).failed);
        };
        settle();
        let pods = store.list(res("Pod"), Some("default"));
        assert_eq!(pods.len(), 2);
        // One pod is on a node: its deletion waits for the kubelet.
        let mut bound = pods[0].value();
        bound["spec"]["nodeName"] = "n".into();
        store.update(res("Pod"), bound).unwrap();

        let mut d = store
            .get(res("Deployment"), "default", "rec")
            .unwrap()
            .value();
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2".into();
        store.update(res("Deployment"), d).unwrap();
        for _ in 0..3 {
            settle();
        }
        let rss = replica_sets(&store);
        assert_eq!(rss.len(), 1, "no new replica set while an old pod is left");
        assert_eq!(rss[0]["spec"]["replicas"], 0);
        let left = store.list(res("Pod"), Some("default"));
        assert_eq!(left.len(), 1);
        assert!(left[0].deleting);

        // The kubelet confirms: the pod goes, the new replica set comes.
        store
            .delete(res("Pod"), "default", &left[0].name, None)
            .unwrap();
        settle();
        let rss = replica_sets(&store);
        assert_eq!(rss.len(), 2);
        let new = rss.iter().find(|r| r["spec"]["replicas"] == 2).unwrap();
        assert_eq!(
            new["spec"]["template"]["spec"]["containers"][0]["image"],
            "busybox:2"
        );
        assert_eq!(new["metadata"]["annotations"][REVISION], "2");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
