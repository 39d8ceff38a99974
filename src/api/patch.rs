//! The patch formats of the API server's PATCH verb: JSON merge patch (RFC 7396, formerly
//! RFC 7386), JSON patch (RFC 6902), Kubernetes strategic merge patch, and the merge step of
//! server-side apply.
//!
//! Strategic merge follows k8s.io/apimachinery/pkg/util/strategicpatch. Kubernetes reads how each
//! list merges from the `patchStrategy`/`patchMergeKey` tags of its Go types; bramble serves a
//! fixed set of built-in types, so the same facts live in `merge_key` and `is_set_list`,
//! looked up by the field path.

use std::fmt;

use json_patch::{PatchErrorKind, PatchOperation};
use serde_json::{Map, Value};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";

#[derive(Debug)]
pub enum PatchError {
    /// A JSON patch body that is not an array.
    JsonPatchNotArray,
    /// JSON patch operation `index` (0-based) is malformed, e.g. an unknown `op` or no `path`.
    InvalidOperation { index: usize, reason: String },
    /// JSON patch operation `index` (0-based) could not be applied; the target is unchanged.
    OperationFailed {
        index: usize,
        op: &'static str,
        path: String,
        reason: String,
    },
    /// A strategic merge patch or apply configuration that is not a JSON object.
    NotAnObject(&'static str),
    /// `$patch` with a value other than `replace`, `delete` or `merge`.
    UnknownDirective { path: String, value: String },
    /// An element of a list merged by key lacks the key (or is not an object).
    MissingMergeKey { path: String, key: &'static str },
    /// Any other malformed directive, or a directive in an apply configuration.
    InvalidPatch { path: String, reason: String },
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JsonPatchNotArray => write!(f, "json patch must be a JSON array of operations"),
            Self::InvalidOperation { index, reason } => {
                write!(f, "json patch operation {index} is invalid: {reason}")
            }
            Self::OperationFailed {
                index,
                op,
                path,
                reason,
            } => {
                write!(f, "json patch operation {index} ({op} {path}): {reason}")
            }
            Self::NotAnObject(what) => write!(f, "{what} must be a JSON object"),
            Self::UnknownDirective { path, value } => write!(
                f,
                "unknown $patch directive {value} at {path}: expected \"replace\", \"delete\" or \"merge\""
            ),
            Self::MissingMergeKey { path, key } => {
                write!(
                    f,
                    "every element of list {path} needs its merge key \"{key}\""
                )
            }
            Self::InvalidPatch { path, reason } => write!(f, "invalid patch at {path}: {reason}"),
        }
    }
}

impl std::error::Error for PatchError {}

/// JSON merge patch (RFC 7396): objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch. All operations apply or none do.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch
        .as_array()
        .ok_or(PatchError::JsonPatchNotArray)?
        .iter()
        .enumerate()
        .map(|(index, op)| {
            serde_json::from_value::<PatchOperation>(op.clone()).map_err(|e| {
                PatchError::InvalidOperation {
                    index,
                    reason: e.to_string(),
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // json_patch::patch undoes the operations already applied when a later one fails.
    json_patch::patch(target, &ops).map_err(|e| {
        // The failed index is always one of `ops`: json-patch reports the operation it ran.
        let (op, from) = match &ops[e.operation] {
            PatchOperation::Add(_) => ("add", ""),
            PatchOperation::Remove(_) => ("remove", ""),
            PatchOperation::Replace(_) => ("replace", ""),
            PatchOperation::Move(m) => ("move", m.from.as_str()),
            PatchOperation::Copy(c) => ("copy", c.from.as_str()),
            PatchOperation::Test(_) => ("test", ""),
        };
        let reason = match e.kind {
            PatchErrorKind::TestFailed => "test failed: the value differs".to_string(),
            PatchErrorKind::InvalidPointer => "path not found".to_string(),
            PatchErrorKind::InvalidFromPointer => format!("from path {from} not found"),
            PatchErrorKind::CannotMoveInsideItself => "cannot move a value into itself".to_string(),
            other => other.to_string(),
        };
        PatchError::OperationFailed {
            index: e.operation,
            op,
            path: e.path.to_string(),
            reason,
        }
    })
}

/// Kubernetes strategic merge patch (application/strategic-merge-patch+json). On error the
/// target is unchanged.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    merge_root(target, patch, Mode::Strategic, "strategic merge patch")
}

/// The merge of server-side apply: like a strategic merge that never deletes (`null` means no
/// opinion) and takes no directives. Fields the applied configuration leaves out stay as they are.
pub fn apply_patch(live: &mut Value, applied: &Value) -> Result<(), PatchError> {
    merge_root(live, applied, Mode::Apply, "apply configuration")
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Strategic,
    Apply,
}

/// Patch merge key of the list at `path`: the object field names from the root, list positions
/// left out (`["spec", "template", "spec", "containers"]`). Mirrors the `patchMergeKey` tags of the
/// served types; `None` means the list is replaced whole (e.g. tolerations, Endpoints subsets and
/// Node taints, which Kubernetes marks atomic), unless [`is_set_list`] says otherwise.
fn merge_key(path: &[&str]) -> Option<&'static str> {
    match path {
        [.., "metadata", "ownerReferences"] => Some("uid"),
        [.., "status", "conditions"] => Some("type"),
        [.., "status", "podIPs" | "hostIPs"] => Some("ip"),
        // Only a Service has ports directly under its spec; container ports come next.
        ["spec", "ports"] => Some("port"),
        [
            ..,
            "containers" | "initContainers" | "ephemeralContainers",
            field,
        ] => match *field {
            "env" => Some("name"),
            "ports" => Some("containerPort"),
            "volumeMounts" => Some("mountPath"),
            "volumeDevices" => Some("devicePath"),
            _ => None,
        },
        // Pod spec lists, wherever the pod spec sits (Pod, or a workload's template).
        [
            ..,
            "spec",
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "volumes"
            | "imagePullSecrets"
            | "schedulingGates"
            | "resourceClaims",
        ] => Some("name"),
        [.., "spec", "hostAliases"] => Some("ip"),
        [.., "spec", "topologySpreadConstraints"] => Some("topologyKey"),
        _ => None,
    }
}

/// Whether the primitive list at `path` has `patchStrategy: merge`, i.e. merges as a set.
fn is_set_list(path: &[&str]) -> bool {
    matches!(path, [.., "metadata", "finalizers"] | ["spec", "podCIDRs"])
}

fn merge_root(
    target: &mut Value,
    patch: &Value,
    mode: Mode,
    what: &'static str,
) -> Result<(), PatchError> {
    let patch = patch.as_object().ok_or(PatchError::NotAnObject(what))?;
    // Merge into a copy so that a failing patch leaves the target untouched.
    let mut merged = target.as_object().cloned().unwrap_or_default();
    merge_map(&mut merged, patch, &[], mode)?;
    *target = Value::Object(merged);
    Ok(())
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ORDER)
        || key.starts_with(DELETE_PRIMITIVES)
}

fn merge_map<'p>(
    orig: &mut Map<String, Value>,
    patch: &'p Map<String, Value>,
    path: &[&'p str],
    mode: Mode,
) -> Result<(), PatchError> {
    if mode == Mode::Apply
        && let Some(key) = patch.keys().find(|k| is_directive(k))
    {
        let reason = format!("{key} is a patch directive, which server-side apply does not take");
        return Err(invalid(path, reason));
    }
    match patch.get(PATCH) {
        None => {}
        Some(d) if d == "merge" => {}
        // The rest of the patch becomes the whole map.
        Some(d) if d == "replace" => orig.clear(),
        // Kubernetes leaves an empty map, not a missing field.
        Some(d) if d == "delete" => {
            orig.clear();
            return Ok(());
        }
        Some(d) => {
            return Err(PatchError::UnknownDirective {
                path: at(path),
                value: d.to_string(),
            });
        }
    }
    let retain = patch
        .get(RETAIN_KEYS)
        .map(|v| directive_list(v, RETAIN_KEYS, path))
        .transpose()?;
    let retained = |key: &str| retain.is_none_or(|keys| keys.iter().any(|k| k == key));
    // Like Kubernetes, refuse to set a field that the patch's own $retainKeys would drop.
    if let Some((key, _)) = patch
        .iter()
        .find(|(k, v)| !is_directive(k) && !v.is_null() && !retained(k))
    {
        return Err(invalid(
            path,
            format!("{key} is set but not listed in {RETAIN_KEYS}"),
        ));
    }

    for (key, value) in patch {
        if is_directive(key) {
            continue;
        }
        if value.is_null() {
            if mode == Mode::Strategic {
                orig.remove(key);
            }
            continue;
        }
        let order_key = format!("{SET_ORDER}{key}");
        let order = patch
            .get(&order_key)
            .map(|o| directive_list(o, &order_key, path))
            .transpose()?;
        let slot = orig.entry(key.clone()).or_insert(Value::Null);
        merge_value(slot, value, &child(path, key), order, mode)?;
    }

    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(SET_ORDER) {
            let order = directive_list(value, key, path)?;
            // A field that is in the patch too was ordered while it merged.
            if !patch.contains_key(field)
                && let Some(Value::Array(list)) = orig.get_mut(field)
            {
                let path = child(path, field);
                *list = merge_list(std::mem::take(list), &[], &path, Some(order), mode)?;
            }
        } else if let Some(field) = key.strip_prefix(DELETE_PRIMITIVES) {
            let gone = directive_list(value, key, path)?;
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                list.retain(|v| !gone.contains(v));
            }
        }
    }
    orig.retain(|key, _| retained(key));
    Ok(())
}

/// Merges `patch` into `slot` (`Null` for a field the original lacks). A value of another type
/// than the original replaces it; merging into an empty value strips directives and nulls.
fn merge_value<'p>(
    slot: &mut Value,
    patch: &'p Value,
    path: &[&'p str],
    order: Option<&'p [Value]>,
    mode: Mode,
) -> Result<(), PatchError> {
    *slot = match patch {
        Value::Object(p) => {
            let mut map = match slot.take() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            merge_map(&mut map, p, path, mode)?;
            Value::Object(map)
        }
        Value::Array(p) => {
            let list = match slot.take() {
                Value::Array(l) => l,
                _ => Vec::new(),
            };
            Value::Array(merge_list(list, p, path, order, mode)?)
        }
        other => other.clone(),
    };
    Ok(())
}

/// Merges a patch list into `orig`. `order` is the `$setElementOrder` list for this field.
fn merge_list<'p>(
    mut orig: Vec<Value>,
    patch: &'p [Value],
    path: &[&'p str],
    order: Option<&'p [Value]>,
    mode: Mode,
) -> Result<Vec<Value>, PatchError> {
    let key = merge_key(path);
    let merging = key.is_some() || is_set_list(path);
    let mut replace = !merging;
    let mut items = Vec::new();
    for el in patch {
        // Apply passes `$patch` on to merge_map, which rejects it.
        let directive = match el.get(PATCH) {
            Some(d) if mode == Mode::Strategic => d,
            _ => {
                items.push(el);
                continue;
            }
        };
        if directive == "replace" {
            replace = true;
        } else if directive == "delete" {
            let Some(key) = key else {
                return Err(invalid(
                    path,
                    "$patch: delete needs a list merged by key".into(),
                ));
            };
            let id = el.get(key).ok_or_else(|| missing_key(path, key))?;
            orig.retain(|o| o.get(key) != Some(id));
        } else if directive == "merge" {
            items.push(el);
        } else {
            let value = directive.to_string();
            return Err(PatchError::UnknownDirective {
                path: at(path),
                value,
            });
        }
    }
    if replace {
        orig.clear();
    }
    // Where untouched elements stood, to keep them there after reordering.
    let before = ids(&orig, key);

    for &el in &items {
        let existing = match key {
            Some(k) => {
                let id = el.get(k).ok_or_else(|| missing_key(path, k))?;
                orig.iter_mut().find(|o| o.get(k) == Some(id))
            }
            // Set semantics: an element already there is not added again.
            None if merging && orig.contains(el) => continue,
            None => None,
        };
        match existing {
            Some(o) => merge_value(o, el, path, None, mode)?,
            None => {
                let mut new = Value::Null;
                merge_value(&mut new, el, path, None, mode)?;
                orig.push(new);
            }
        }
    }
    if !merging {
        return Ok(orig);
    }

    // Kubernetes orders patched elements by $setElementOrder (else by the patch) and slots each
    // untouched element in before the first patched one that followed it in the original.
    let order = match order {
        Some(o) => ids(o, key),
        None => ids(items.iter().copied(), key),
    };
    let pos =
        |ids: &[Value], v: &Value| identity(v, key).and_then(|id| ids.iter().position(|x| x == id));
    let mut last = 0;
    for el in &items {
        match pos(&order, el) {
            Some(i) if i >= last => last = i,
            _ => {
                let field = path.last().copied().unwrap_or_default();
                let reason =
                    format!("{SET_ORDER}{field} must list the patch's elements in the same order");
                return Err(invalid(path, reason));
            }
        }
    }
    let (mut patched, untouched): (Vec<_>, Vec<_>) =
        orig.into_iter().partition(|v| pos(&order, v).is_some());
    patched.sort_by_key(|v| pos(&order, v));
    let mut untouched = untouched.into_iter().peekable();
    let mut out = Vec::with_capacity(patched.len() + untouched.len());
    for p in patched {
        let goes_first =
            |u: &Value| matches!((pos(&before, u), pos(&before, &p)), (Some(a), Some(b)) if a < b);
        while let Some(u) = untouched.next_if(goes_first) {
            out.push(u);
        }
        out.push(p);
    }
    out.extend(untouched);
    Ok(out)
}

/// What identifies a list element: its merge key value, or itself in a primitive list.
fn identity<'v>(v: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(k) => v.get(k),
        None => Some(v),
    }
}

fn ids<'a>(list: impl IntoIterator<Item = &'a Value>, key: Option<&str>) -> Vec<Value> {
    list.into_iter()
        .filter_map(|v| identity(v, key))
        .cloned()
        .collect()
}

fn directive_list<'p>(
    value: &'p Value,
    name: &str,
    path: &[&str],
) -> Result<&'p [Value], PatchError> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| invalid(path, format!("{name} must be a list")))
}

fn child<'p>(path: &[&'p str], key: &'p str) -> Vec<&'p str> {
    let mut path = path.to_vec();
    path.push(key);
    path
}

/// A field path for error messages, e.g. `spec.template.spec.containers`.
fn at(path: &[&str]) -> String {
    if path.is_empty() {
        "the top level".to_string()
    } else {
        path.join(".")
    }
}

fn invalid(path: &[&str], reason: String) -> PatchError {
    PatchError::InvalidPatch {
        path: at(path),
        reason,
    }
}

fn missing_key(path: &[&str], key: &'static str) -> PatchError {
    PatchError::MissingMergeKey {
        path: at(path),
        key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(mut target: Value, patch: Value) -> Value {
        strategic_merge_patch(&mut target, &patch).unwrap();
        target
    }

    fn smp_err(target: Value, patch: Value) -> String {
        let mut t = target.clone();
        let err = strategic_merge_patch(&mut t, &patch).unwrap_err();
        assert_eq!(t, target, "a failed patch must leave the target unchanged");
        err.to_string()
    }

    fn key(path: &str) -> Option<&'static str> {
        merge_key(&path.split('.').collect::<Vec<_>>())
    }

    // merge_key: one test per entry.

    #[test]
    fn key_containers() {
        assert_eq!(key("spec.containers"), Some("name"));
        assert_eq!(key("spec.template.spec.containers"), Some("name"));
    }

    #[test]
    fn key_init_containers() {
        assert_eq!(key("spec.initContainers"), Some("name"));
    }

    #[test]
    fn key_ephemeral_containers() {
        assert_eq!(key("spec.ephemeralContainers"), Some("name"));
    }

    #[test]
    fn key_volumes() {
        assert_eq!(key("spec.template.spec.volumes"), Some("name"));
    }

    #[test]
    fn key_env() {
        assert_eq!(key("spec.containers.env"), Some("name"));
        assert_eq!(key("spec.template.spec.initContainers.env"), Some("name"));
    }

    #[test]
    fn key_image_pull_secrets() {
        assert_eq!(key("spec.imagePullSecrets"), Some("name"));
    }

    #[test]
    fn key_scheduling_gates_and_resource_claims() {
        assert_eq!(key("spec.schedulingGates"), Some("name"));
        assert_eq!(key("spec.resourceClaims"), Some("name"));
    }

    #[test]
    fn key_container_ports() {
        assert_eq!(key("spec.containers.ports"), Some("containerPort"));
        assert_eq!(
            key("spec.template.spec.ephemeralContainers.ports"),
            Some("containerPort")
        );
    }

    #[test]
    fn key_volume_mounts() {
        assert_eq!(key("spec.containers.volumeMounts"), Some("mountPath"));
    }

    #[test]
    fn key_volume_devices() {
        assert_eq!(key("spec.containers.volumeDevices"), Some("devicePath"));
    }

    #[test]
    fn key_service_ports() {
        assert_eq!(key("spec.ports"), Some("port"));
    }

    #[test]
    fn key_owner_references() {
        assert_eq!(key("metadata.ownerReferences"), Some("uid"));
        assert_eq!(key("spec.template.metadata.ownerReferences"), Some("uid"));
    }

    #[test]
    fn key_status_conditions() {
        assert_eq!(key("status.conditions"), Some("type"));
    }

    #[test]
    fn key_pod_and_host_ips() {
        assert_eq!(key("status.podIPs"), Some("ip"));
        assert_eq!(key("status.hostIPs"), Some("ip"));
    }

    #[test]
    fn key_host_aliases() {
        assert_eq!(key("spec.template.spec.hostAliases"), Some("ip"));
    }

    #[test]
    fn key_topology_spread_constraints() {
        assert_eq!(key("spec.topologySpreadConstraints"), Some("topologyKey"));
    }

    #[test]
    fn key_atomic_lists_have_none() {
        assert_eq!(key("spec.tolerations"), None);
        assert_eq!(key("spec.taints"), None);
        assert_eq!(key("subsets"), None);
        assert_eq!(key("subsets.ports"), None);
        assert_eq!(key("spec.containers.args"), None);
        assert_eq!(key("spec.template.spec.containers.envFrom"), None);
    }

    #[test]
    fn set_lists() {
        assert!(is_set_list(&["metadata", "finalizers"]));
        assert!(is_set_list(&["spec", "podCIDRs"]));
        assert!(!is_set_list(&["spec", "containers", "args"]));
        assert!(!is_set_list(&["spec", "finalizers"]));
    }

    // Strategic merge patch.

    #[test]
    fn maps_merge_recursively_and_null_deletes() {
        let live =
            json!({"metadata": {"labels": {"a": "1", "b": "2"}, "name": "x"}, "data": {"k": "v"}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "data": null});
        assert_eq!(
            smp(live, patch),
            json!({"metadata": {"labels": {"b": "2", "c": "3"}, "name": "x"}})
        );
    }

    #[test]
    fn nulls_inside_new_fields_are_dropped() {
        let patch = json!({"metadata": {"annotations": {"a": "1", "b": null}}});
        assert_eq!(
            smp(json!({}), patch),
            json!({"metadata": {"annotations": {"a": "1"}}})
        );
    }

    #[test]
    fn value_of_other_type_replaces() {
        let live = json!({"spec": {"replicas": {"odd": true}, "selector": "x"}});
        let patch = json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "a"}}}});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "a"}}}})
        );
    }

    #[test]
    fn containers_merge_by_name() {
        let live = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "b:1"}
        ]}});
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}]}});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
                {"name": "b", "image": "b:2"},
                {"name": "c", "image": "c:1"}
            ]}})
        );
    }

    #[test]
    fn template_containers_merge_by_name_in_deployment() {
        let live = json!({"kind": "Deployment", "spec": {"replicas": 1, "template": {"spec": {
            "containers": [{"name": "web", "image": "web:1", "env": [{"name": "A", "value": "1"}]}],
            "initContainers": [{"name": "init", "image": "init:1"}]
        }}}});
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "web", "env": [{"name": "B", "value": "2"}]}],
            "initContainers": [{"name": "init", "image": "init:2"}]
        }}}});
        assert_eq!(
            smp(live, patch),
            json!({"kind": "Deployment", "spec": {"replicas": 1, "template": {"spec": {
                "containers": [{"name": "web", "image": "web:1",
                                "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]}],
                "initContainers": [{"name": "init", "image": "init:2"}]
            }}}})
        );
    }

    #[test]
    fn container_ports_merge_by_container_port() {
        let live = json!({"spec": {"containers": [{"name": "a", "ports": [
            {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}
        ]}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}]}});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {"containers": [{"name": "a", "ports": [
                {"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}
            ]}]}})
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        let live = json!({"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
        assert_eq!(
            smp(live, patch),
            json!({"kind": "Service", "spec": {"ports": [
                {"port": 80, "targetPort": 9090}, {"port": 443}
            ]}})
        );
    }

    #[test]
    fn volumes_and_mounts_merge_by_key() {
        let live = json!({"spec": {
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [{"name": "a", "volumeMounts": [{"mountPath": "/data", "name": "data"}],
                            "volumeDevices": [{"devicePath": "/dev/x", "name": "x"}]}]
        }});
        let patch = json!({"spec": {
            "volumes": [{"name": "cfg", "configMap": {"name": "c"}}],
            "containers": [{"name": "a", "volumeMounts": [{"mountPath": "/data", "readOnly": true}],
                            "volumeDevices": [{"devicePath": "/dev/y", "name": "y"}]}]
        }});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {
                "volumes": [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "data", "emptyDir": {}}],
                "containers": [{"name": "a",
                    "volumeMounts": [{"mountPath": "/data", "name": "data", "readOnly": true}],
                    "volumeDevices": [{"devicePath": "/dev/y", "name": "y"}, {"devicePath": "/dev/x", "name": "x"}]}]
            }})
        );
    }

    #[test]
    fn image_pull_secrets_host_aliases_and_spread_constraints_merge_by_key() {
        let live = json!({"spec": {
            "imagePullSecrets": [{"name": "r1"}],
            "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}],
            "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}]
        }});
        let patch = json!({"spec": {
            "imagePullSecrets": [{"name": "r2"}],
            "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
            "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}]
        }});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {
                "imagePullSecrets": [{"name": "r2"}, {"name": "r1"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}]
            }})
        );
    }

    #[test]
    fn owner_references_and_conditions_merge_by_key() {
        let live = json!({
            "metadata": {"ownerReferences": [{"uid": "u1", "kind": "ReplicaSet", "controller": true}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}
        });
        let patch = json!({
            "metadata": {"ownerReferences": [{"uid": "u2", "kind": "Job"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        });
        assert_eq!(
            smp(live, patch),
            json!({
                "metadata": {"ownerReferences": [
                    {"uid": "u2", "kind": "Job"}, {"uid": "u1", "kind": "ReplicaSet", "controller": true}
                ]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]}
            })
        );
    }

    #[test]
    fn atomic_lists_are_replaced() {
        let live = json!({
            "spec": {"tolerations": [{"key": "a", "operator": "Exists"}], "taints": [{"key": "t1", "effect": "NoSchedule"}],
                     "containers": [{"name": "a", "args": ["x", "y"]}]},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]
        });
        let patch = json!({
            "spec": {"tolerations": [{"key": "b", "operator": "Exists"}], "taints": [{"key": "t2", "effect": "NoExecute"}],
                     "containers": [{"name": "a", "args": ["z"]}]},
            "subsets": [{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 81}]}]
        });
        assert_eq!(smp(live, patch.clone()), patch);
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let live = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"finalizers": ["b", "c"]}});
        assert_eq!(
            smp(live, patch),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}})
        );
        // Kubernetes' own case: the patch's order wins for the elements it names.
        let live = json!({"metadata": {"finalizers": ["1", "2", "3"]}});
        let patch = json!({"metadata": {"finalizers": ["3", "1"]}});
        assert_eq!(
            smp(live, patch),
            json!({"metadata": {"finalizers": ["2", "3", "1"]}})
        );
    }

    #[test]
    fn new_elements_go_first_without_set_element_order() {
        // Kubernetes' order: patch elements first unless the live list placed an untouched one
        // before them; a new element has no live place.
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "b"}, {"name": "c"}]}});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {"containers": [
                {"name": "a"}, {"name": "b", "image": "b"}, {"name": "c"}
            ]}})
        );
        let live = json!({"spec": {"containers": [{"name": "a"}]}});
        let patch = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {"containers": [{"name": "c"}, {"name": "a"}]}})
        );
    }

    #[test]
    fn patch_list_order_wins_for_patched_elements() {
        // As Kubernetes: patched elements follow the patch, untouched ones keep their place.
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({"spec": {"containers": [{"name": "c", "image": "c"}, {"name": "a", "image": "a"}]}});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {"containers": [
                {"name": "b"}, {"name": "c", "image": "c"}, {"name": "a", "image": "a"}
            ]}})
        );
    }

    #[test]
    fn directive_patch_replace_on_map() {
        let live = json!({"spec": {"selector": {"app": "a", "tier": "web"}, "replicas": 1}});
        let patch = json!({"spec": {"selector": {"$patch": "replace", "app": "b"}}});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {"selector": {"app": "b"}, "replicas": 1}})
        );
    }

    #[test]
    fn directive_patch_replace_on_whole_object() {
        let live = json!({"a": 1, "b": 2});
        assert_eq!(
            smp(live, json!({"$patch": "replace", "c": 3})),
            json!({"c": 3})
        );
    }

    #[test]
    fn directive_patch_replace_in_list() {
        let live = json!({"spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b"}]}});
        let patch =
            json!({"spec": {"containers": [{"name": "c", "image": "c"}, {"$patch": "replace"}]}});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {"containers": [{"name": "c", "image": "c"}]}})
        );
    }

    #[test]
    fn directive_patch_replace_alone_empties_list() {
        let live = json!({"spec": {"volumes": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"volumes": [{"$patch": "replace"}]}});
        assert_eq!(smp(live, patch), json!({"spec": {"volumes": []}}));
    }

    #[test]
    fn directive_patch_delete_on_map_empties_it() {
        let live = json!({"metadata": {"labels": {"a": "1"}, "name": "x"}});
        let patch = json!({"metadata": {"labels": {"$patch": "delete"}}});
        assert_eq!(
            smp(live, patch),
            json!({"metadata": {"labels": {}, "name": "x"}})
        );
    }

    #[test]
    fn directive_patch_delete_list_element() {
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}, {"name": "c", "image": "c:2"}]}});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {"containers": [{"name": "a"}, {"name": "c", "image": "c:2"}]}})
        );
    }

    #[test]
    fn directive_patch_delete_element_needs_merge_key() {
        let live = json!({"spec": {"containers": [{"name": "a"}]}});
        let patch = json!({"spec": {"containers": [{"$patch": "delete"}]}});
        assert_eq!(
            smp_err(live, patch),
            r#"every element of list spec.containers needs its merge key "name""#
        );
        let live = json!({"spec": {"tolerations": [{"key": "a"}]}});
        let patch = json!({"spec": {"tolerations": [{"key": "a", "$patch": "delete"}]}});
        assert_eq!(
            smp_err(live, patch),
            "invalid patch at spec.tolerations: $patch: delete needs a list merged by key"
        );
    }

    #[test]
    fn directive_patch_merge_is_the_default() {
        let live = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "a", "image": "a:1"}]}});
        let patch = json!({
            "metadata": {"labels": {"$patch": "merge", "b": "2"}},
            "spec": {"containers": [{"$patch": "merge", "name": "a", "image": "a:2"}]}
        });
        assert_eq!(
            smp(live, patch),
            json!({
                "metadata": {"labels": {"a": "1", "b": "2"}},
                "spec": {"containers": [{"name": "a", "image": "a:2"}]}
            })
        );
    }

    #[test]
    fn unknown_patch_directive_is_an_error() {
        let live =
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            smp_err(
                live.clone(),
                json!({"metadata": {"labels": {"$patch": "remove"}}})
            ),
            r#"unknown $patch directive "remove" at metadata.labels: expected "replace", "delete" or "merge""#
        );
        assert_eq!(
            smp_err(
                live,
                json!({"spec": {"containers": [{"name": "a", "$patch": 1}]}})
            ),
            r#"unknown $patch directive 1 at spec.containers: expected "replace", "delete" or "merge""#
        );
    }

    #[test]
    fn directive_delete_from_primitive_list() {
        let live = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "finalizers": ["d"]}});
        assert_eq!(
            smp(live, patch),
            json!({"metadata": {"finalizers": ["d", "a", "c"]}})
        );
    }

    #[test]
    fn directive_set_element_order_reorders_merged_list() {
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
            "containers": [{"name": "c"}]
        }});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {"containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}]}})
        );
    }

    #[test]
    fn directive_set_element_order_keeps_unlisted_elements_in_place() {
        // Kubernetes slots an unlisted element before the first listed one it preceded.
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "x"}, {"name": "b"}, {"name": "c"}, {"name": "y"}]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}]}});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {"containers": [
                {"name": "x"}, {"name": "c"}, {"name": "b"}, {"name": "a"}, {"name": "y"}
            ]}})
        );
        let live = json!({"metadata": {"finalizers": ["z", "a", "b"]}});
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"]}});
        assert_eq!(
            smp(live, patch),
            json!({"metadata": {"finalizers": ["z", "b", "a"]}})
        );
    }

    #[test]
    fn directive_set_element_order_must_match_patch_list() {
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b"}]}});
        assert_eq!(
            smp_err(live, patch),
            "invalid patch at spec.containers: $setElementOrder/containers must list the patch's elements in the same order"
        );
    }

    #[test]
    fn directive_retain_keys() {
        let live = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        assert_eq!(
            smp(live, patch),
            json!({"spec": {"strategy": {"type": "Recreate"}}})
        );
    }

    #[test]
    fn directive_retain_keys_must_list_patched_fields() {
        let live = json!({"spec": {"strategy": {"type": "Recreate"}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}});
        assert_eq!(
            smp_err(live, patch),
            "invalid patch at spec.strategy: rollingUpdate is set but not listed in $retainKeys"
        );
    }

    #[test]
    fn directive_must_be_lists() {
        let live = json!({"metadata": {"finalizers": ["a"]}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}});
        assert_eq!(
            smp_err(live, patch),
            "invalid patch at metadata: $deleteFromPrimitiveList/finalizers must be a list"
        );
    }

    #[test]
    fn directives_on_new_fields_never_reach_the_result() {
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "$patch": "merge", "env": [{"name": "X", "value": "1"}]}],
            "nodeSelector": {"$patch": "replace", "disk": "ssd"}
        }});
        assert_eq!(
            smp(json!({}), patch),
            json!({"spec": {
                "containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}],
                "nodeSelector": {"disk": "ssd"}
            }})
        );
    }

    #[test]
    fn kubectl_apply_patch_keeps_container_ports() {
        let live = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kubia"}, "spec": {"containers": [
            {"name": "kubia", "image": "luksa/kubia:v1", "ports": [{"containerPort": 8080}]}
        ]}});
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "..."}, "labels": {"tier": "web"}},
            "spec": {"$setElementOrder/containers": [{"name": "kubia"}], "containers": [{"image": "luksa/kubia:v2", "name": "kubia"}]}
        });
        assert_eq!(
            smp(live, patch),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "kubia", "labels": {"tier": "web"},
                             "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "..."}},
                "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia:v2", "ports": [{"containerPort": 8080}]}]}
            })
        );
    }

    #[test]
    fn strategic_patch_must_be_an_object() {
        assert_eq!(
            smp_err(json!({"a": 1}), json!([1])),
            "strategic merge patch must be a JSON object"
        );
    }

    #[test]
    fn missing_merge_key_is_an_error() {
        let live = json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        assert_eq!(
            smp_err(live, patch),
            r#"every element of list spec.template.spec.containers needs its merge key "name""#
        );
    }

    // JSON merge patch.

    #[test]
    fn merge_patch_merges_and_null_deletes() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "d": 4});
        merge_patch(
            &mut t,
            &json!({"a": {"b": null, "e": {"f": null, "g": 5}}, "l": [3], "d": null}),
        );
        assert_eq!(t, json!({"a": {"c": 2, "e": {"g": 5}}, "l": [3]}));
    }

    #[test]
    fn merge_patch_non_object_replaces_target() {
        let mut t = json!({"a": 1});
        merge_patch(&mut t, &json!(["x"]));
        assert_eq!(t, json!(["x"]));
        merge_patch(&mut t, &json!("s"));
        assert_eq!(t, json!("s"));
        merge_patch(&mut t, &json!({"a": {"b": 1}}));
        assert_eq!(t, json!({"a": {"b": 1}}));
    }

    // JSON patch.

    fn jp(mut target: Value, patch: Value) -> Result<Value, String> {
        json_patch(&mut target, &patch)
            .map(|()| target)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn json_patch_operations() {
        let doc = json!({"spec": {"replicas": 1, "list": ["a"]}, "metadata": {"name": "x"}});
        let patch = json!([
            {"op": "add", "path": "/spec/list/-", "value": "b"},
            {"op": "remove", "path": "/metadata/name"},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "move", "from": "/spec/list", "path": "/items"},
            {"op": "copy", "from": "/items/0", "path": "/first"},
            {"op": "test", "path": "/first", "value": "a"}
        ]);
        assert_eq!(
            jp(doc, patch),
            Ok(json!({"spec": {"replicas": 3}, "metadata": {}, "items": ["a", "b"], "first": "a"}))
        );
    }

    #[test]
    fn json_patch_failed_test_leaves_target_unchanged() {
        let doc = json!({"spec": {"replicas": 1}});
        let mut t = doc.clone();
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 2},
            {"op": "test", "path": "/spec/replicas", "value": 5}
        ]);
        let err = json_patch(&mut t, &patch).unwrap_err();
        assert_eq!(
            err.to_string(),
            "json patch operation 1 (test /spec/replicas): test failed: the value differs"
        );
        assert_eq!(t, doc);
    }

    #[test]
    fn json_patch_errors_name_the_operation() {
        let doc = json!({"spec": {}});
        assert_eq!(
            jp(
                doc.clone(),
                json!([{"op": "add", "path": "/a", "value": 1}, {"op": "replace", "path": "/spec/x", "value": 1}])
            ),
            Err("json patch operation 1 (replace /spec/x): path not found".into())
        );
        assert_eq!(
            jp(
                doc.clone(),
                json!([{"op": "move", "from": "/nope", "path": "/b"}])
            ),
            Err("json patch operation 0 (move /b): from path /nope not found".into())
        );
        assert_eq!(
            jp(doc.clone(), json!({"op": "add"})),
            Err("json patch must be a JSON array of operations".into())
        );
        assert_eq!(
            jp(doc, json!([{"op": "add", "path": "/a", "value": 1}, {"op": "frobnicate", "path": "/a"}])),
            Err("json patch operation 1 is invalid: unknown variant `frobnicate`, expected one of `add`, `remove`, `replace`, `move`, `copy`, `test`".into())
        );
    }

    // Server-side apply.

    fn apply(mut live: Value, applied: Value) -> Result<Value, String> {
        apply_patch(&mut live, &applied)
            .map(|()| live)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn apply_keeps_fields_absent_from_config() {
        let live = json!({"metadata": {"name": "x", "labels": {"a": "1"}, "uid": "u"}, "spec": {"replicas": 2}, "status": {"ready": 1}});
        let applied =
            json!({"metadata": {"name": "x", "labels": {"b": "2"}}, "spec": {"replicas": 3}});
        assert_eq!(
            apply(live, applied),
            Ok(json!({
                "metadata": {"name": "x", "labels": {"a": "1", "b": "2"}, "uid": "u"},
                "spec": {"replicas": 3}, "status": {"ready": 1}
            }))
        );
    }

    #[test]
    fn apply_merges_containers_by_name_and_replaces_other_lists() {
        let live = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "a:1", "args": ["x"]}, {"name": "sidecar", "image": "s:1"}],
            "tolerations": [{"key": "t1"}]
        }}}});
        let applied = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "a:2", "args": ["y"]}],
            "tolerations": [{"key": "t2"}]
        }}}});
        assert_eq!(
            apply(live, applied),
            Ok(json!({"spec": {"template": {"spec": {
                "containers": [{"name": "a", "image": "a:2", "args": ["y"]}, {"name": "sidecar", "image": "s:1"}],
                "tolerations": [{"key": "t2"}]
            }}}}))
        );
    }

    #[test]
    fn apply_never_deletes() {
        let live = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["f1"]}});
        let applied = json!({"metadata": {"labels": {"a": null}, "finalizers": ["f2"]}});
        assert_eq!(
            apply(live, applied),
            Ok(json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["f2", "f1"]}}))
        );
    }

    #[test]
    fn apply_rejects_directives_and_non_objects() {
        let live = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            apply(live.clone(), json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}})),
            Err("invalid patch at spec.containers: $patch is a patch directive, which server-side apply does not take".into())
        );
        assert_eq!(
            apply(live.clone(), json!({"$patch": "replace"})),
            Err("invalid patch at the top level: $patch is a patch directive, which server-side apply does not take".into())
        );
        assert_eq!(
            apply(live, json!("x")),
            Err("apply configuration must be a JSON object".into())
        );
    }

    #[test]
    fn mutated_patches_apply_or_fail_cleanly() {
        let pod = json!({"metadata": {"name": "a", "labels": {"x": "y"}, "ownerReferences": [{"uid": "u1"}]},
            "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}],
                                     "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
                     "volumes": [{"name": "v", "emptyDir": {}}]}});
        let corpus: &[&[u8]] = &[
            br#"{"spec": {"containers": [{"name": "c", "image": "j", "$patch": "replace"}], "$setElementOrder/containers": [{"name": "c"}]}}"#,
            br#"[{"op": "add", "path": "/metadata/labels/z", "value": "w"}, {"op": "move", "from": "/spec/volumes/0", "path": "/spec/volumes/-"}, {"op": "test", "path": "/metadata/name", "value": "a"}]"#,
            br#"{"metadata": {"labels": null, "$deleteFromPrimitiveList/finalizers": ["f"]}, "spec": {"$retainKeys": ["containers"]}}"#,
        ];
        crate::mutate::each_mutation(3, 20_000, corpus, |input| {
            let Ok(patch) = serde_json::from_slice::<Value>(input) else {
                return;
            };
            let mut target = pod.clone();
            merge_patch(&mut target, &patch);
            for f in [json_patch, strategic_merge_patch, apply_patch] {
                let mut target = pod.clone();
                let _ = f(&mut target, &patch);
            }
        });
    }
}
