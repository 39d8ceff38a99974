//! Which nodes a pod may run on by its own spec, as Kubernetes decides it:
//! nodeSelector, required node affinity (matchExpressions on labels,
//! matchFields on metadata.name) and taints against tolerations. Pure
//! functions over the JSON shapes, used by the DaemonSet controller (which
//! node wants a daemon pod) and the taint manager (which pods a NoExecute
//! taint evicts, and when).

use serde_json::Value;

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Kubernetes' Toleration.ToleratesTaint: an empty effect tolerates every
/// effect, an empty key with `Exists` tolerates every taint, `Equal` (the
/// default operator) needs the same value.
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect = text(toleration, "effect");
    if !effect.is_empty() && effect != text(taint, "effect") {
        return false;
    }
    let key = text(toleration, "key");
    if !key.is_empty() && key != text(taint, "key") {
        return false;
    }
    match text(toleration, "operator") {
        "Exists" => true,
        "" | "Equal" => text(toleration, "value") == text(taint, "value"),
        _ => false,
    }
}

/// The pod's tolerations (spec.tolerations of a pod or a template's spec).
pub fn tolerations(pod_spec: &Value) -> &[Value] {
    pod_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The node's taints.
pub fn taints(node: &Value) -> &[Value] {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The first of the node's taints with one of `effects` that no toleration
/// tolerates.
pub fn untolerated<'a>(
    tolerations: &[Value],
    taints: &'a [Value],
    effects: &[&str],
) -> Option<&'a Value> {
    taints
        .iter()
        .filter(|t| effects.contains(&text(t, "effect")))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// How long a pod may stay on a node with these NoExecute taints, all of
/// which it tolerates: the shortest tolerationSeconds among the tolerations
/// that match them (Kubernetes' getMinTolerationTime). None: forever.
/// Negative seconds count as zero.
pub fn toleration_seconds(tolerations: &[Value], taints: &[Value]) -> Option<u64> {
    taints
        .iter()
        .filter(|t| text(t, "effect") == "NoExecute")
        .flat_map(|t| tolerations.iter().filter(move |tol| tolerates(tol, t)))
        .filter_map(|tol| tol.get("tolerationSeconds").and_then(Value::as_i64))
        .map(|s| s.max(0) as u64)
        .min()
}

/// One NodeSelectorRequirement against a value that may be absent.
fn requirement(req: &Value, actual: Option<&str>) -> bool {
    let values: Vec<&str> = req
        .get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let number = |s: &str| s.parse::<i64>().ok();
    match text(req, "operator") {
        "In" => actual.is_some_and(|a| values.contains(&a)),
        "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        "Gt" | "Lt" => {
            let (Some(a), Some(bound)) = (actual.and_then(number), values.first().copied()) else {
                return false;
            };
            let Some(b) = number(bound) else { return false };
            if text(req, "operator") == "Gt" {
                a > b
            } else {
                a < b
            }
        }
        _ => false,
    }
}

/// One NodeSelectorTerm: every expression and field requirement holds; a
/// term without any requirement matches nothing.
fn term(t: &Value, node: &Value) -> bool {
    let list = |k: &str| {
        t.get(k)
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
    };
    let (exprs, fields) = (list("matchExpressions"), list("matchFields"));
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let label = |k: &str| node.pointer("/metadata/labels")?.get(k)?.as_str();
    let field = |k: &str| match k {
        "metadata.name" => node.pointer("/metadata/name").and_then(Value::as_str),
        _ => None,
    };
    exprs.iter().all(|r| requirement(r, label(text(r, "key"))))
        && fields.iter().all(|r| requirement(r, field(text(r, "key"))))
}

/// Whether the node satisfies the pod's nodeSelector and required node
/// affinity (the terms are ORed).
pub fn matches_node(pod_spec: &Value, node: &Value) -> bool {
    let labels = node.pointer("/metadata/labels");
    let selector_ok = pod_spec
        .get("nodeSelector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
    let required = pod_spec.pointer(
        "/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
    );
    let affinity_ok = match required.and_then(Value::as_array) {
        None => true,
        Some(terms) => terms.iter().any(|t| term(t, node)),
    };
    selector_ok && affinity_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Value {
        json!({"metadata": {"name": "pi-1", "labels": {"disk": "ssd", "cores": "4"}}})
    }

    #[test]
    fn tolerations_match_key_value_and_effect() {
        let taint = json!({"key": "k", "value": "v", "effect": "NoSchedule"});
        for (tol, ok) in [
            (
                json!({"key": "k", "value": "v", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"key": "k", "operator": "Equal", "value": "v"}), true),
            (json!({"key": "k", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (json!({"key": "k", "value": "w"}), false),
            (
                json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}),
                false,
            ),
            (json!({"key": "other", "operator": "Exists"}), false),
        ] {
            assert_eq!(tolerates(&tol, &taint), ok, "{tol}");
        }
    }

    #[test]
    fn untolerated_taints_and_the_shortest_toleration() {
        let taints = [
            json!({"key": "a", "effect": "NoExecute"}),
            json!({"key": "b", "effect": "NoSchedule"}),
            json!({"key": "c", "effect": "PreferNoSchedule"}),
        ];
        let tols = [
            json!({"key": "a", "operator": "Exists", "tolerationSeconds": 30}),
            json!({"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}),
        ];
        assert_eq!(untolerated(&tols, &taints, &["NoExecute"]), None);
        assert_eq!(
            untolerated(&tols, &taints, &["NoExecute", "NoSchedule"]),
            Some(&taints[1])
        );
        assert_eq!(toleration_seconds(&tols, &taints), Some(10));
        let forever = [json!({"operator": "Exists"})];
        assert_eq!(toleration_seconds(&forever, &taints), None);
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let n = node();
        assert!(matches_node(&json!({}), &n));
        assert!(matches_node(&json!({"nodeSelector": {"disk": "ssd"}}), &n));
        assert!(!matches_node(&json!({"nodeSelector": {"disk": "hdd"}}), &n));
        let affinity = |term: Value| {
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [term]}}}})
        };
        let name_is = |n: &str| {
            affinity(
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}),
            )
        };
        assert!(matches_node(&name_is("pi-1"), &n));
        assert!(!matches_node(&name_is("pi-2"), &n));
        for (req, ok) in [
            (
                json!({"key": "disk", "operator": "In", "values": ["ssd", "nvme"]}),
                true,
            ),
            (
                json!({"key": "disk", "operator": "NotIn", "values": ["ssd"]}),
                false,
            ),
            (
                json!({"key": "gpu", "operator": "NotIn", "values": ["x"]}),
                true,
            ),
            (json!({"key": "gpu", "operator": "DoesNotExist"}), true),
            (json!({"key": "disk", "operator": "Exists"}), true),
            (
                json!({"key": "cores", "operator": "Gt", "values": ["2"]}),
                true,
            ),
            (
                json!({"key": "cores", "operator": "Lt", "values": ["2"]}),
                false,
            ),
        ] {
            let spec = affinity(json!({"matchExpressions": [req.clone()]}));
            assert_eq!(matches_node(&spec, &n), ok, "{req}");
        }
        assert!(
            !matches_node(&affinity(json!({})), &n),
            "an empty term matches nothing"
        );
    }
}
