//! Kubernetes Events (what `kubectl describe` lists under Events): one
//! recorder for every component. A repeat of the same event on the same
//! object bumps its count instead of adding an object, as Kubernetes' event
//! correlator does, so a crash-looping pod costs one object, not hundreds.

use serde_json::json;

use crate::model::{self, res};
use crate::store::{Object, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Normal,
    Warning,
}

/// Records `reason`/`message` about `about` from `component` (e.g.
/// "kubelet", "default-scheduler"). Failures are logged, never fatal: events
/// are advisory.
pub fn record(
    store: &Store,
    about: &Object,
    ty: Type,
    reason: &str,
    message: &str,
    component: &str,
    host: &str,
) {
    let events = res("Event");
    let ns = if about.namespace.is_empty() {
        "default"
    } else {
        &about.namespace
    };
    let now = model::now();
    // Same object, reason and message: the same name, so a repeat is found
    // by key and bumps the existing event (no scan of all events).
    let name = format!(
        "{}.{:016x}",
        about.name,
        crate::model::fnv1a(&[about.uid.as_bytes(), reason.as_bytes(), message.as_bytes()])
    );
    let existing = store.get(events, ns, &name);
    let result = match existing {
        Some(e) => {
            let mut v = e.value();
            let count = v["count"].as_i64().unwrap_or(1) + 1;
            v["count"] = count.into();
            v["lastTimestamp"] = now.into();
            store.update(events, v)
        }
        None => {
            let v = json!({
                "metadata": {
                    "name": name,
                    "namespace": ns,
                },
                "involvedObject": {
                    "kind": about.resource.kind,
                    "namespace": about.namespace,
                    "name": about.name,
                    "uid": about.uid,
                    "apiVersion": about.resource.api_version(),
                    "resourceVersion": about.rv.to_string(),
                },
                "reason": reason,
                "message": message,
                "source": {"component": component, "host": host},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "type": match ty { Type::Normal => "Normal", Type::Warning => "Warning" },
                "reportingComponent": component,
                "reportingInstance": host,
            });
            store.create(events, v)
        }
    };
    if let Err(e) = result {
        log::warn!(
            "recording event {reason} for {}/{}: {e}",
            about.namespace,
            about.name
        );
    }
}

/// Events older than this go (Kubernetes keeps them an hour).
pub const TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// At most this many events are kept, the oldest going first: pod churn
/// on a board must not grow the store and the memory for an hour.
pub const MAX_EVENTS: usize = 2000;

/// How often expiry runs.
const EXPIRY_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// Deletes events whose last occurrence is older than [`TTL`], then the
/// oldest beyond [`MAX_EVENTS`].
pub fn expire(store: &Store, now: std::time::SystemTime) {
    let mut kept = Vec::new();
    for e in store.list(res("Event"), None) {
        let v = e.value();
        let last = v["lastTimestamp"].as_str().unwrap_or_default().to_string();
        let at = humantime::parse_rfc3339_weak(&last).ok();
        if at.is_some_and(|t| now.duration_since(t).is_ok_and(|age| age > TTL)) {
            let _ = store.delete(res("Event"), &e.namespace, &e.name, Some(&e.uid));
        } else {
            kept.push((last, e));
        }
    }
    if kept.len() > MAX_EVENTS {
        // RFC 3339 times in UTC sort as text.
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, e) in &kept[..kept.len() - MAX_EVENTS] {
            let _ = store.delete(res("Event"), &e.namespace, &e.name, Some(&e.uid));
        }
    }
}

/// Expires old events every minute, for the life of the daemon.
pub async fn run_expiry(store: &Store) {
    loop {
        smol::Timer::after(EXPIRY_PERIOD).await;
        expire(store, std::time::SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn repeats_bump_the_count_and_old_events_expire() {
        let (store, dir) = crate::store::testing::temp_store_with_default_ns("events");
        let pod = store
            .create(res("Pod"), json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": []}}))
            .unwrap();
        let rec = |ty, reason, msg| record(&store, &pod, ty, reason, msg, "kubelet", "node");
        rec(Type::Warning, "BackOff", "Back-off restarting");
        rec(Type::Warning, "BackOff", "Back-off restarting");
        rec(Type::Normal, "Started", "Started container c");
        let events = store.list(res("Event"), Some("default"));
        assert_eq!(events.len(), 2);
        let backoff = events
            .iter()
            .map(|e| e.value())
            .find(|v| v["reason"] == "BackOff")
            .unwrap();
        assert_eq!(backoff["count"], 2);
        assert_eq!(backoff["involvedObject"]["uid"], pod.uid.as_str());
        expire(&store, SystemTime::now());
        assert_eq!(store.list(res("Event"), None).len(), 2, "fresh events stay");
        expire(&store, SystemTime::now() + TTL + Duration::from_secs(1));
        assert_eq!(store.list(res("Event"), None).len(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_the_newest_events_are_kept() {
        let (store, dir) = crate::store::testing::temp_store_with_default_ns("events-cap");
        for i in 0..MAX_EVENTS + 5 {
            // Distinct, ordered times: event i happened i seconds after 10:00.
            let at = format!("2026-11-27T10:{:02}:{:02}Z", i / 60, i % 60);
            store
                .create(
                    res("Event"),
                    json!({"metadata": {"name": format!("e{i}"), "namespace": "default"},
                           "involvedObject": {}, "lastTimestamp": at}),
                )
                .unwrap();
        }
        // Within the hour of every event: only the cap removes any.
        let soon = humantime::parse_rfc3339("2026-11-27T10:40:00Z").unwrap();
        expire(&store, soon);
        let left = store.list(res("Event"), None);
        assert_eq!(left.len(), MAX_EVENTS);
        for gone in 0..5 {
            assert!(
                store
                    .get(res("Event"), "default", &format!("e{gone}"))
                    .is_none()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
