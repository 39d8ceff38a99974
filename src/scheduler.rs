//! Binding pods to nodes.

use serde_json::{Value, json};
use std::sync::Arc;

use crate::model::res;
use crate::store::{Object, Store, StoreError};

/// Sets spec.nodeName and the PodScheduled condition, as a Binding does.
pub fn bind(store: &Store, namespace: &str, name: &str, node: &str) -> Result<Arc<Object>, StoreError> {
    let pods = res("Pod");
    let Some(pod) = store.get(pods, namespace, name) else {
        return Err(StoreError::NotFound { resource: pods, name: name.into() });
    };
    let mut v = pod.value();
    if v.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
        return Err(StoreError::Conflict { resource: pods, name: name.into() });
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
