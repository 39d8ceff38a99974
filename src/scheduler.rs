//! The scheduler: binds each unscheduled pod to a node. For now every pod
//! goes to a Ready node that is not cordoned (the single-board case); the
//! filters and scores of a real scheduler come with the controllers work.

use serde_json::{Value, json};
use std::sync::Arc;

use crate::events::{self, Type};
use crate::model::res;
use crate::store::{self, Object, Store, StoreError};

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

/// A node pods may be placed on: Ready and not cordoned.
fn schedulable(node: &Value) -> bool {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    ready && node.pointer("/spec/unschedulable").and_then(Value::as_bool) != Some(true)
}

pub async fn run(store: &Store) {
    crate::controllers::level_loop(store, &[res("Pod"), res("Node")], || {
        pass(store);
        None
    })
    .await
}

fn pass(store: &Store) {
    let nodes: Vec<Arc<Object>> = store
        .list(res("Node"), None)
        .into_iter()
        .filter(|n| schedulable(&n.value()))
        .collect();
    for p in store.list(res("Pod"), None) {
        let v = p.value();
        let unscheduled = v
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if !unscheduled || store::is_deleting(&v) {
            continue;
        }
        let Some(node) = nodes.first() else {
            continue;
        };
        match bind(store, &p.namespace, &p.name, &node.name) {
            Ok(bound) => events::record(
                store,
                &bound,
                Type::Normal,
                "Scheduled",
                &format!(
                    "Successfully assigned {}/{} to {}",
                    p.namespace, p.name, node.name
                ),
                COMPONENT,
                "",
            ),
            Err(e) => log::warn!("binding pod {}/{}: {e}", p.namespace, p.name),
        }
    }
}
