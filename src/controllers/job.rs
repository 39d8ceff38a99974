//! The Job controller: runs a Job's pods until `completions` of them
//! succeeded (NonIndexed mode) or a pod of each index 0..completions
//! succeeded (Indexed mode), at most `parallelism` at a time; fails the
//! Job past `backoffLimit` failed pods (or container restarts under
//! restartPolicy OnFailure; a failed pod's replacement waits a back-off of
//! 10 s doubling) or past `activeDeadlineSeconds`; stops its pods
//! while `suspend` is set; deletes a finished Job once
//! `ttlSecondsAfterFinished` have passed (its pods follow through the
//! garbage collector).
//!
//! Succeeded and failed pods are counted from the Job's pods, as Kubernetes
//! did before finalizer-based tracking: finished pods stay until the Job
//! goes. `plan` decides; `sync` applies its decision through the store.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::replicaset::{self, Retry, SyncError, store_err};
use super::sooner;
use crate::events::{self, Type};
use crate::model::{self, res};
use crate::store::{self, Object, Store, StoreError};

const COMPONENT: &str = "job-controller";
const BACKOFF_FIRST: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);
/// The annotation (and label) holding an Indexed Job pod's index.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

pub async fn run(store: &Store) {
    let watched = [res("Pod"), res("Job")];
    let mut retry = Retry::default();
    super::level_loop(store, &watched, super::SETTLE, || {
        let (failed, wake) = pass(store, SystemTime::now());
        sooner(retry.after(failed), wake)
    })
    .await
}

/// One pass over every Job: whether any failed, and when a deadline or TTL
/// asks for the next one.
fn pass(store: &Store, now: SystemTime) -> (bool, Option<Duration>) {
    let mut failed = false;
    let mut wake = None;
    for job in store.list(res("Job"), None) {
        match sync(store, &job, now) {
            Ok(w) => wake = sooner(wake, w),
            Err(e) => {
                log::warn!("syncing Job {}/{}: {e}", job.namespace, job.name);
                failed = true;
            }
        }
    }
    (failed, wake)
}

/// The labels a Job's pods get: its uid and name, under the current keys
/// and the legacy ones.
const GENERATED_LABELS: [&str; 4] = [
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
    "controller-uid",
    "job-name",
];

/// The labels Kubernetes gives a Job's pods and, unless
/// `spec.manualSelector` is set, the selector that picks them by the Job's
/// uid. Done on create, before validation (which needs the selector).
pub fn generate_selector(job: &mut Value, uid: &str) {
    let name = model::name(job).to_string();
    if job.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let [uid_key, name_key, legacy_uid_key, legacy_name_key] = GENERATED_LABELS;
    let labels = [
        (uid_key, uid),
        (name_key, name.as_str()),
        (legacy_uid_key, uid),
        (legacy_name_key, name.as_str()),
    ];
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if let Some(t) = template.as_object_mut() {
        let meta = t.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            let l = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = l.as_object_mut() {
                for (k, v) in labels {
                    l.insert(k.into(), v.into());
                }
            }
        }
    }
    if spec.get("selector").is_none_or(Value::is_null) {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    }
}

/// An Indexed Job pod's index.
fn index(pod: &Value) -> Option<u64> {
    pod.pointer("/metadata/annotations")?
        .get(INDEX_KEY)?
        .as_str()?
        .parse()
        .ok()
}

/// Indexes as Kubernetes writes completedIndexes: "0-2,4".
pub fn ranges(indexes: &BTreeSet<u64>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = indexes.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end = it.next().unwrap_or(end);
        }
        out.push(match end == start {
            true => start.to_string(),
            false => format!("{start}-{end}"),
        });
    }
    out.join(",")
}

/// A new pod of the Job; in Indexed mode it carries its index (annotation,
/// label, hostname `JOB-INDEX`, and JOB_COMPLETION_INDEX in every
/// container's environment, as Kubernetes gives it).
pub fn new_pod(job: &Value, index: Option<u64>) -> Value {
    let mut pod = replicaset::new_pod(res("Job"), job);
    let Some(i) = index else { return pod };
    let name = model::name(job);
    let meta = model::meta_mut(&mut pod);
    meta.insert("generateName".into(), format!("{name}-{i}-").into());
    for k in ["annotations", "labels"] {
        let m = meta.entry(k).or_insert_with(|| json!({}));
        if let Some(m) = m.as_object_mut() {
            m.insert(INDEX_KEY.into(), i.to_string().into());
        }
    }
    pod["spec"]["hostname"] = format!("{name}-{i}").into();
    let env = json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef":
        {"apiVersion": "v1", "fieldPath": format!("metadata.annotations['{INDEX_KEY}']")}}});
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
            match c.get_mut("env").and_then(Value::as_array_mut) {
                Some(e) => e.insert(0, env.clone()),
                None => c["env"] = json!([env]),
            }
        }
    }
    pod
}

/// Undoes `generate_selector` (for `bramble export`): another cluster
/// generates its own from the Job's new uid and refuses a selector it did
/// not generate.
pub fn strip_generated_selector(job: &mut Value) {
    if job.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("selector");
    }
    if let Some(labels) = job
        .pointer_mut("/spec/template/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        for k in GENERATED_LABELS {
            labels.remove(k);
        }
    }
}

/// What one pass does to a Job.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Pods to create: None in NonIndexed mode, else each one's index.
    pub create: Vec<Option<u64>>,
    pub delete: Vec<&'a Value>,
    pub status: Value,
    /// (type, reason, message) of the events of a state change.
    pub events: Vec<(Type, &'static str, &'static str)>,
    /// ttlSecondsAfterFinished has passed: the Job goes.
    pub expire: bool,
    /// When to look again though nothing changed (a deadline, a TTL).
    pub wake: Option<Duration>,
}

fn time(v: Option<&Value>) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(v?.as_str()?).ok()
}

/// `at + secs` as a delay from `now`; None when it has come.
fn until(at: SystemTime, secs: i64, now: SystemTime) -> Option<Duration> {
    (at + Duration::from_secs(secs.max(0) as u64))
        .duration_since(now)
        .ok()
        .filter(|d| !d.is_zero())
}

fn condition<'a>(status: &'a Map<String, Value>, ty: &str) -> Option<&'a Value> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

fn is_true(c: Option<&Value>) -> bool {
    c.is_some_and(|c| c["status"] == "True")
}

/// Sets a condition; its transition time changes only with its status.
fn set_condition(status: &mut Map<String, Value>, ty: &str, on: bool, reason: &str, msg: &str) {
    let now = model::now();
    let value = if on { "True" } else { "False" };
    let conds = status
        .entry("conditions")
        .or_insert_with(|| json!([]))
        .as_array_mut();
    let Some(conds) = conds else { return };
    match conds.iter_mut().find(|c| c["type"] == ty) {
        Some(c) if c["status"] == value && c["reason"] == reason => {}
        Some(c) => {
            if c["status"] != value {
                c["lastTransitionTime"] = now.clone().into();
            }
            c["status"] = value.into();
            c["reason"] = reason.into();
            c["message"] = msg.into();
            c["lastProbeTime"] = now.into();
        }
        None => conds.push(
            json!({"type": ty, "status": value, "reason": reason, "message": msg,
                                  "lastProbeTime": now, "lastTransitionTime": now}),
        ),
    }
}

/// Container restarts of the active pods: what fails a Job whose pods
/// restart in place (restartPolicy OnFailure).
fn restarts(active: &[&Value]) -> i64 {
    active
        .iter()
        .flat_map(|p| {
            ["containerStatuses", "initContainerStatuses"]
                .into_iter()
                .filter_map(|k| p.pointer(&format!("/status/{k}"))?.as_array())
                .flatten()
        })
        .filter_map(|c| c["restartCount"].as_i64())
        .sum()
}

/// The delay before a Job with `failed` failed pods makes a new one, as
/// Kubernetes' job controller backs off: 10 s, doubling, at most 6 min.
fn backoff(failed: i64) -> Duration {
    let doublings = failed.clamp(1, 7) - 1;
    (BACKOFF_FIRST * 2u32.pow(doublings as u32)).min(BACKOFF_MAX)
}

/// How much of the back-off after the latest failure is left, counted from
/// when its containers finished.
fn backoff_left(owned: &[&Value], failed: i64, now: SystemTime) -> Option<Duration> {
    let last = owned
        .iter()
        .filter(|x| replicaset::phase(x) == "Failed")
        .flat_map(|x| {
            ["containerStatuses", "initContainerStatuses"]
                .into_iter()
                .filter_map(|k| x.pointer(&format!("/status/{k}"))?.as_array())
                .flatten()
        })
        .filter_map(|c| time(c.pointer("/state/terminated/finishedAt")))
        .max()?;
    (last + backoff(failed))
        .duration_since(now)
        .ok()
        .filter(|d| !d.is_zero())
}

/// Decides one pass over a Job given the pods it owns.
pub fn plan<'a>(job: &Value, owned: &[&'a Value], now: SystemTime) -> Plan<'a> {
    let spec = job.get("spec").cloned().unwrap_or(Value::Null);
    let int = |k: &str| spec.get(k).and_then(Value::as_i64);
    let mut st = job
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut p = Plan::default();
    let mut active: Vec<&Value> = owned
        .iter()
        .copied()
        .filter(|x| replicaset::is_active(x))
        .collect();
    let count = |phase: &str| {
        owned
            .iter()
            .filter(|x| replicaset::phase(x) == phase)
            .count() as i64
    };
    let completions = int("completions");
    let indexed = spec.get("completionMode").and_then(Value::as_str) == Some("Indexed");
    // Indexed: the indexes below completions with a succeeded pod.
    let done_indexes: BTreeSet<u64> = owned
        .iter()
        .filter(|x| replicaset::phase(x) == "Succeeded")
        .filter_map(|x| index(x))
        .filter(|i| completions.is_some_and(|c| (*i as i64) < c))
        .collect();
    let failed = count("Failed");
    let succeeded = match indexed {
        true => done_indexes.len() as i64,
        false => count("Succeeded"),
    };
    let finished = is_true(condition(&st, "Complete")) || is_true(condition(&st, "Failed"));
    let mut want;
    if finished {
        want = 0;
        if let Some(ttl) = int("ttlSecondsAfterFinished") {
            let done = time(st.get("completionTime"))
                .or_else(|| time(condition(&st, "Failed")?.get("lastTransitionTime")))
                .unwrap_or(now);
            match until(done, ttl, now) {
                Some(d) => p.wake = Some(d),
                None => p.expire = true,
            }
        }
    } else if spec.get("suspend").and_then(Value::as_bool) == Some(true) {
        want = 0;
        if !is_true(condition(&st, "Suspended")) {
            set_condition(&mut st, "Suspended", true, "JobSuspended", "Job suspended");
            p.events.push((Type::Normal, "Suspended", "Job suspended"));
        }
    } else {
        if is_true(condition(&st, "Suspended")) {
            set_condition(&mut st, "Suspended", false, "JobResumed", "Job resumed");
            p.events.push((Type::Normal, "Resumed", "Job resumed"));
            // activeDeadlineSeconds counts time continuously active.
            st.remove("startTime");
        }
        let started = time(st.get("startTime")).unwrap_or(now);
        st.entry("startTime")
            .or_insert_with(|| model::timestamp(now).into());
        let limit = int("backoffLimit").unwrap_or(6);
        let on_failure = spec
            .pointer("/template/spec/restartPolicy")
            .and_then(Value::as_str)
            == Some("OnFailure");
        let restarted = restarts(&active);
        let past_backoff = failed > limit
            || (on_failure
                && (if limit == 0 {
                    restarted > 0
                } else {
                    restarted >= limit
                }));
        let deadline = int("activeDeadlineSeconds");
        let parallelism = int("parallelism").unwrap_or(1).max(0);
        let fail = |st: &mut Map<String, Value>, p: &mut Plan, reason, msg| {
            set_condition(st, "Failed", true, reason, msg);
            p.events.push((Type::Warning, reason, msg));
        };
        if past_backoff {
            want = 0;
            let msg = "Job has reached the specified backoff limit";
            fail(&mut st, &mut p, "BackoffLimitExceeded", msg);
        } else if let Some(secs) = deadline
            && until(started, secs, now).is_none()
        {
            want = 0;
            let msg = "Job was active longer than specified deadline";
            fail(&mut st, &mut p, "DeadlineExceeded", msg);
        } else if completions.map_or(succeeded > 0 && active.is_empty(), |c| succeeded >= c) {
            want = 0;
            let msg = "Reached expected number of succeeded pods";
            set_condition(&mut st, "Complete", true, "CompletionsReached", msg);
            st.insert("completionTime".into(), model::timestamp(now).into());
            p.events.push((Type::Normal, "Completed", "Job completed"));
        } else {
            p.wake = deadline.and_then(|secs| until(started, secs, now));
            want = match completions {
                Some(c) => parallelism.min(c - succeeded) as usize,
                // A work queue: once one pod succeeded, no new pods start.
                None if succeeded > 0 => active.len().min(parallelism as usize),
                None => parallelism as usize,
            };
            // After failures, new pods wait out the back-off.
            if want > active.len()
                && let Some(d) = backoff_left(owned, failed, now)
            {
                want = active.len();
                p.wake = sooner(p.wake, Some(d));
            }
        }
    }
    if active.len() > want {
        active.sort_by(|a, b| replicaset::deletion_order(a, b));
        let extra = active.len() - want;
        p.delete = active.drain(..extra).collect();
    } else if indexed {
        // The lowest indexes that neither succeeded nor run.
        let running: BTreeSet<u64> = active.iter().filter_map(|x| index(x)).collect();
        let limit = completions.unwrap_or(0).max(0) as u64;
        p.create = (0..limit)
            .filter(|i| !done_indexes.contains(i) && !running.contains(i))
            .take(want - active.len())
            .map(Some)
            .collect();
    } else {
        p.create = vec![None; want - active.len()];
    }
    // `active` now holds the pods that keep running.
    let ready = active.iter().filter(|x| replicaset::is_ready(x)).count();
    for (k, n) in [
        ("active", active.len() as i64),
        ("succeeded", succeeded),
        ("failed", failed),
    ] {
        match n {
            0 => st.remove(k),
            n => st.insert(k.into(), n.into()),
        };
    }
    st.insert("ready".into(), ready.into());
    if indexed && !done_indexes.is_empty() {
        st.insert("completedIndexes".into(), ranges(&done_indexes).into());
    }
    p.status = Value::Object(st);
    p
}

/// Applies one Job's plan. Idempotent: a pass over a settled Job writes
/// nothing.
fn sync(store: &Store, job: &Object, now: SystemTime) -> Result<Option<Duration>, SyncError> {
    let v = job.value();
    if store::is_deleting(&v) {
        return Ok(None);
    }
    let kind = res("Job");
    let (sel, pods) = replicaset::selector_and_pods(store, kind, job, &v)?;
    let claimed = replicaset::claim(&job.uid, &sel, false, &pods);
    replicaset::apply_claim(store, kind, &v, &claimed)?;
    let p = plan(&v, &claimed.owned, now);
    if p.expire {
        log::info!(
            "deleting Job {}/{}: ttlSecondsAfterFinished has passed",
            job.namespace,
            job.name
        );
        return match store.delete_gracefully(kind, &job.namespace, &job.name, None) {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err("deleting the finished Job")(e)),
        };
    }
    for victim in &p.delete {
        let name = model::name(victim);
        match store.delete_gracefully(res("Pod"), &job.namespace, name, None) {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(store_err(format!("deleting pod {name}"))(e)),
        }
        let msg = format!("Deleted pod: {name}");
        events::record(
            store,
            job,
            Type::Normal,
            "SuccessfulDelete",
            &msg,
            COMPONENT,
            "",
        );
    }
    for i in &p.create {
        let pod = store
            .create(res("Pod"), new_pod(&v, *i))
            .map_err(store_err("creating a pod"))?;
        let msg = format!("Created pod: {}", pod.name);
        events::record(
            store,
            job,
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
        let written = store
            .update(kind, updated)
            .map_err(store_err("writing the status"))?;
        for (ty, reason, msg) in &p.events {
            events::record(store, &written, *ty, reason, msg, COMPONENT, "");
        }
    }
    Ok(p.wake)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: Value) -> Value {
        let mut j = json!({"metadata": {"name": "pi", "namespace": "default", "uid": "u"},
            "spec": {"completions": 3, "parallelism": 2, "backoffLimit": 1,
                     "template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "x"}]}}}});
        for (k, v) in spec.as_object().unwrap() {
            j["spec"][k] = v.clone();
        }
        j
    }

    fn pod(name: &str, phase: &str) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"nodeName": "n"}, "status": {"phase": phase}})
    }

    fn cond<'a>(p: &'a Plan, ty: &str) -> Option<&'a Value> {
        p.status["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == ty)
    }

    #[test]
    fn runs_parallelism_pods_until_completions_succeed() {
        let now = SystemTime::now();
        let j = job(json!({}));
        let p = plan(&j, &[], now);
        assert_eq!(p.create, [None, None]);
        assert!(p.status["startTime"].is_string());
        let (a, b, c) = (
            pod("a", "Succeeded"),
            pod("b", "Succeeded"),
            pod("c", "Running"),
        );
        let p = plan(&j, &[&a, &b, &c], now);
        assert_eq!(
            (p.create.len(), p.delete.len()),
            (0, 0),
            "one more is needed and one runs"
        );
        assert_eq!(
            (&p.status["active"], &p.status["succeeded"]),
            (&json!(1), &json!(2))
        );
        let d = pod("c", "Succeeded");
        let p = plan(&j, &[&a, &b, &d], now);
        assert_eq!(cond(&p, "Complete").unwrap()["status"], "True");
        assert!(p.status["completionTime"].is_string());
        assert_eq!(p.events, [(Type::Normal, "Completed", "Job completed")]);
        assert!(p.status.get("active").is_none());
    }

    #[test]
    fn fails_past_the_backoff_limit() {
        let now = SystemTime::now();
        let j = job(json!({}));
        let (a, b) = (pod("a", "Failed"), pod("b", "Failed"));
        let p = plan(&j, &[&a], now);
        assert_eq!(p.create.len(), 2, "one failure is within backoffLimit 1");
        let running = pod("c", "Running");
        let p = plan(&j, &[&a, &b, &running], now);
        let failed = cond(&p, "Failed").unwrap();
        assert_eq!(
            (&failed["status"], &failed["reason"]),
            (&json!("True"), &json!("BackoffLimitExceeded"))
        );
        assert_eq!(p.delete.len(), 1, "the running pod is stopped");
        assert_eq!(p.status["failed"], 2);
        // Under OnFailure, container restarts count.
        let mut j = job(json!({"backoffLimit": 2}));
        j["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure".into();
        let mut r = pod("r", "Running");
        r["status"]["containerStatuses"] = json!([{"restartCount": 1}]);
        assert!(cond(&plan(&j, &[&r], now), "Failed").is_none());
        r["status"]["containerStatuses"][0]["restartCount"] = 2.into();
        assert_eq!(
            cond(&plan(&j, &[&r], now), "Failed").unwrap()["reason"],
            "BackoffLimitExceeded"
        );
    }

    #[test]
    fn the_active_deadline_fails_the_job_and_wakes_the_loop() {
        let now = SystemTime::now();
        let mut j = job(json!({"activeDeadlineSeconds": 10}));
        j["status"] = json!({"startTime": model::timestamp(now - Duration::from_secs(4))});
        let running = pod("a", "Running");
        let p = plan(&j, &[&running], now);
        assert!(p.wake.is_some_and(|w| w <= Duration::from_secs(6)));
        let p = plan(&j, &[&running], now + Duration::from_secs(7));
        assert_eq!(cond(&p, "Failed").unwrap()["reason"], "DeadlineExceeded");
        assert_eq!(p.delete.len(), 1);
        assert!(p.create.is_empty());
    }

    #[test]
    fn a_finished_job_expires_after_its_ttl() {
        let now = SystemTime::now();
        let mut j = job(json!({"ttlSecondsAfterFinished": 5}));
        j["status"] = json!({"completionTime": model::timestamp(now - Duration::from_secs(2)),
            "conditions": [{"type": "Complete", "status": "True"}]});
        let p = plan(&j, &[], now);
        assert!(!p.expire);
        assert!(p.wake.is_some_and(|w| w <= Duration::from_secs(3)));
        assert!(plan(&j, &[], now + Duration::from_secs(4)).expire);
        let done = job(json!({}));
        let mut done = done;
        done["status"] = j["status"].clone();
        assert!(!plan(&done, &[], now + Duration::from_secs(99)).expire);
    }

    #[test]
    fn suspend_stops_pods_and_resume_restarts_the_clock() {
        let now = SystemTime::now();
        let j = job(json!({"suspend": true}));
        let running = pod("a", "Running");
        let p = plan(&j, &[&running], now);
        assert_eq!((p.create.len(), p.delete.len()), (0, 1));
        assert_eq!(cond(&p, "Suspended").unwrap()["reason"], "JobSuspended");
        let mut resumed = job(json!({"suspend": false}));
        resumed["status"] = p.status.clone();
        let p = plan(&resumed, &[], now);
        assert_eq!(cond(&p, "Suspended").unwrap()["status"], "False");
        assert_eq!(p.create, [None, None]);
        assert_eq!(p.events, [(Type::Normal, "Resumed", "Job resumed")]);
    }

    #[test]
    fn a_settled_plan_changes_nothing() {
        let now = SystemTime::now();
        let mut j = job(json!({}));
        let (a, b) = (pod("a", "Running"), pod("b", "Running"));
        let p = plan(&j, &[&a, &b], now);
        j["status"] = p.status;
        let again = plan(&j, &[&a, &b], now + Duration::from_secs(5));
        assert_eq!(again.status, j["status"]);
        assert_eq!((again.create.len(), again.delete.len()), (0, 0));
    }

    #[test]
    fn indexed_jobs_run_each_missing_index_once() {
        let now = SystemTime::now();
        let j = job(json!({"completionMode": "Indexed", "completions": 4}));
        assert_eq!(plan(&j, &[], now).create, [Some(0), Some(1)]);
        let with = |name: &str, phase: &str, i: u64| {
            let mut p = pod(name, phase);
            p["metadata"]["annotations"] = json!({INDEX_KEY: i.to_string()});
            p
        };
        let (a, b, c) = (
            with("a", "Succeeded", 0),
            with("b", "Running", 1),
            with("c", "Succeeded", 3),
        );
        let dup = with("d", "Succeeded", 0);
        let p = plan(&j, &[&a, &b, &c, &dup], now);
        assert_eq!(p.create, [Some(2)]);
        assert_eq!(p.status["succeeded"], 2, "indexes, not pods");
        assert_eq!(p.status["completedIndexes"], "0,3");
        let mut set = BTreeSet::from([0, 1, 2, 4, 6, 7]);
        assert_eq!(ranges(&set), "0-2,4,6-7");
        set.clear();
        assert_eq!(ranges(&set), "");
        let pod = new_pod(&j, Some(2));
        assert_eq!(pod["metadata"]["generateName"], "pi-2-");
        assert_eq!(pod["metadata"]["labels"][INDEX_KEY], "2");
        assert_eq!(pod["spec"]["hostname"], "pi-2");
        assert_eq!(
            pod["spec"]["containers"][0]["env"][0]["name"],
            "JOB_COMPLETION_INDEX"
        );
    }

    #[test]
    fn passes_through_the_store_settle_and_then_write_nothing() {
        use crate::store::testing::temp_store_with_default_ns;
        let (store, dir) = temp_store_with_default_ns("job-pass");
        let mut j = job(json!({}));
        j["metadata"].as_object_mut().unwrap().remove("uid");
        generate_selector(&mut j, "job-uid");
        j["metadata"]["uid"] = "job-uid".into();
        store.create(res("Job"), j).unwrap();
        let now = SystemTime::now();
        assert!(!pass(&store, now).0);
        let pods = store.list(res("Pod"), Some("default"));
        assert_eq!(pods.len(), 2, "parallelism 2");
        let pod = pods[0].value();
        assert_eq!(pod["metadata"]["labels"]["job-name"], "pi");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "job-uid");
        assert!(!pass(&store, now).0);
        let rv = store.resource_version();
        assert!(!pass(&store, now).0);
        assert_eq!(
            store.resource_version(),
            rv,
            "a settled pass writes nothing"
        );
        let stored = store.get(res("Job"), "default", "pi").unwrap().value();
        assert_eq!(stored["status"]["active"], 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_pods_wait_out_the_back_off_after_failures() {
        let now = SystemTime::now();
        let j = job(json!({"backoffLimit": 6, "parallelism": 1}));
        let failed_at = |name: &str, ago: u64| {
            let mut p = pod(name, "Failed");
            let at = model::timestamp(now - Duration::from_secs(ago));
            p["status"]["containerStatuses"] =
                json!([{"state": {"terminated": {"exitCode": 1, "finishedAt": at}}}]);
            p
        };
        let a = failed_at("a", 4);
        let p = plan(&j, &[&a], now);
        assert!(p.create.is_empty());
        assert!(
            p.wake.is_some_and(|w| w <= Duration::from_secs(6)),
            "{:?}",
            p.wake
        );
        assert_eq!(
            plan(&j, &[&a], now + Duration::from_secs(7)).create.len(),
            1
        );
        // The second failure doubles the wait.
        let b = failed_at("b", 15);
        assert!(
            plan(&j, &[&b, &a], now + Duration::from_secs(12))
                .create
                .is_empty()
        );
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }

    #[test]
    fn selectors_are_generated_from_the_uid() {
        let mut j = json!({"metadata": {"name": "pi"}, "spec": {"template": {"spec": {}}}});
        generate_selector(&mut j, "u1");
        assert_eq!(
            j["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}})
        );
        let labels = &j["spec"]["template"]["metadata"]["labels"];
        assert_eq!(
            (&labels["job-name"], &labels["controller-uid"]),
            (&json!("pi"), &json!("u1"))
        );
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        let mut exported = j.clone();
        strip_generated_selector(&mut exported);
        assert!(exported["spec"].get("selector").is_none());
        assert_eq!(
            exported["spec"]["template"]["metadata"]["labels"],
            json!({})
        );
        let mut manual = json!({"metadata": {"name": "m"}, "spec": {"manualSelector": true}});
        generate_selector(&mut manual, "u1");
        assert!(manual["spec"].get("selector").is_none());
    }
}
