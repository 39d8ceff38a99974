//! The namespace controller: empties a namespace being deleted, then removes it.

use std::time::Duration;

use crate::model::{RESOURCES, res};
use crate::store::{self, Store};

/// How often to look again while deletions inside a namespace are pending
/// (pods waiting for their kubelet).
const RECHECK: Duration = Duration::from_secs(1);

pub async fn run(store: &Store) {
    let watched: Vec<_> = RESOURCES
        .iter()
        .filter(|r| r.namespaced)
        .chain([res("Namespace")])
        .collect();
    super::level_loop(store, &watched, super::SETTLE, || pass(store)).await
}

/// One reconcile pass over every terminating namespace. Idempotent.
fn pass(store: &Store) -> Option<Duration> {
    let mut waiting = false;
    for ns in store.list(res("Namespace"), None) {
        if !store::is_deleting(&ns.value()) {
            continue;
        }
        let mut left = 0;
        for r in RESOURCES.iter().filter(|r| r.namespaced) {
            for o in store.list(r, Some(&ns.name)) {
                left += 1;
                if !store::is_deleting(&o.value())
                    && let Err(e) = store.delete_gracefully(r, &o.namespace, &o.name, None)
                {
                    log::warn!(
                        "deleting {} {}/{} of a terminating namespace: {e}",
                        r.kind,
                        o.namespace,
                        o.name
                    );
                }
            }
        }
        if left == 0 {
            // Emptied: drop our finalizer; the store removes the namespace.
            let mut v = ns.value();
            if let Some(spec) = v.get_mut("spec").and_then(serde_json::Value::as_object_mut) {
                spec.insert("finalizers".into(), serde_json::json!([]));
            }
            match store.update(res("Namespace"), v) {
                Ok(_) => log::info!("namespace {} deleted", ns.name),
                Err(e) => log::warn!("finalizing namespace {}: {e}", ns.name),
            }
        } else {
            waiting = true;
        }
    }
    waiting.then_some(RECHECK)
}
