//! Defaulting as the Kubernetes API server applies it on create and update:
//! the versioned types' SetDefaults functions, plus the values that admission
//! (DefaultTolerationSeconds) and create strategies (pod status, namespace
//! finalizer) add, limited to what users see in `kubectl get -o yaml`.
//!
//! Every rule only fills what is unset, so applying twice equals applying once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use super::validate::parse_quantity;

type Object = Map<String, Value>;

/// Fills the defaults Kubernetes gives an object of `kind`. Objects that are
/// not JSON objects, and kinds without defaults, are left alone.
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    match kind {
        "Pod" => pod(o),
        "PodTemplate" => template(o),
        "ReplicationController" => replication_controller(o),
        "ReplicaSet" => {
            if let Some(spec) = child(o, "spec") {
                fill(spec, "replicas", 1);
                template(spec);
            }
        }
        "Deployment" => deployment(o),
        "DaemonSet" => daemon_set(o),
        "Job" => job(o),
        "Service" => service(o),
        "Namespace" => namespace(o),
        "Secret" => secret(o),
        _ => {}
    }
}

/// What Go sees as unset: a missing or null field, or an empty string.
fn unset(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

fn fill(m: &mut Object, key: &str, value: impl Into<Value>) {
    if unset(m.get(key)) {
        m.insert(key.to_owned(), value.into());
    }
}

/// `fill` for Go integers that are not pointers, where 0 also means unset.
fn fill_nonzero(m: &mut Object, key: &str, value: i64) {
    if unset(m.get(key)) || m.get(key).and_then(Value::as_i64) == Some(0) {
        m.insert(key.to_owned(), value.into());
    }
}

/// Unset, or an empty map (which Go drops when encoding).
fn empty_map(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        _ => false,
    }
}

fn text<'a>(m: &'a Object, key: &str) -> &'a str {
    m.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The object at `key`, created when unset; `None` if something else is there.
fn child<'a>(m: &'a mut Object, key: &str) -> Option<&'a mut Object> {
    let v = m.entry(key).or_insert(Value::Null);
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut()
}

/// The object at `key` if there is one.
fn existing<'a>(m: &'a mut Object, key: &str) -> Option<&'a mut Object> {
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// The objects in the array at `key`.
fn items<'a>(m: &'a mut Object, key: &str) -> impl Iterator<Item = &'a mut Object> {
    m.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// The non-empty labels of `spec.template`, which several kinds copy.
fn template_labels(o: &Object) -> Option<Value> {
    let labels = o
        .get("spec")?
        .get("template")?
        .get("metadata")?
        .get("labels")?;
    (!empty_map(Some(labels))).then(|| labels.clone())
}

/// Pod-spec defaults for the template in `spec.template` (or `template` for
/// a PodTemplate); pod-only defaults stay off templates, as in Kubernetes.
fn template(parent: &mut Object) {
    let spec = parent
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut);
    if let Some(spec) = spec {
        pod_spec(spec);
    }
}

// ---------------------------------------------------------------------------
// Pods

fn pod(o: &mut Object) {
    let Some(spec) = child(o, "spec") else { return };
    pod_spec(spec);
    for list in ["containers", "initContainers"] {
        for c in items(spec, list) {
            requests_from_limits(c);
        }
    }
    fill(spec, "enableServiceLinks", true);
    if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
        for list in ["containers", "initContainers"] {
            for port in items(spec, list).flat_map(|c| items(c, "ports")) {
                if let Some(container_port) = port.get("containerPort").cloned() {
                    fill_nonzero(port, "hostPort", container_port.as_i64().unwrap_or(0));
                }
            }
        }
    }
    default_tolerations(spec);
    let qos = qos_class(spec);
    // The create strategy sets the initial status; an existing one is kept.
    let status = o.entry("status").or_insert(Value::Null);
    if empty_map(Some(status)) {
        *status = json!({"phase": "Pending", "qosClass": qos});
    }
}

fn pod_spec(spec: &mut Object) {
    fill(spec, "dnsPolicy", "ClusterFirst");
    fill(spec, "restartPolicy", "Always");
    fill(spec, "terminationGracePeriodSeconds", 30);
    fill(spec, "schedulerName", "default-scheduler");
    fill(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        for c in items(spec, list) {
            container(c);
        }
    }
    for v in items(spec, "volumes") {
        volume(v);
    }
}

fn container(c: &mut Object) {
    if unset(c.get("imagePullPolicy")) {
        let policy = pull_policy(text(c, "image"));
        c.insert("imagePullPolicy".to_owned(), policy.into());
    }
    fill(c, "terminationMessagePath", "/dev/termination-log");
    fill(c, "terminationMessagePolicy", "File");
    fill(c, "resources", json!({}));
    for port in items(c, "ports") {
        fill(port, "protocol", "TCP");
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = existing(c, probe) {
            fill_nonzero(p, "timeoutSeconds", 1);
            fill_nonzero(p, "periodSeconds", 10);
            fill_nonzero(p, "successThreshold", 1);
            fill_nonzero(p, "failureThreshold", 3);
            http_get(p);
        }
    }
    if let Some(lifecycle) = existing(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = existing(lifecycle, hook) {
                http_get(h);
            }
        }
    }
    for env in items(c, "env") {
        if let Some(from) = existing(env, "valueFrom") {
            if let Some(field) = existing(from, "fieldRef") {
                fill(field, "apiVersion", "v1");
            }
            // A zero Quantity still encodes, as "0".
            if let Some(resource) = existing(from, "resourceFieldRef") {
                fill(resource, "divisor", "0");
            }
        }
    }
}

fn http_get(handler: &mut Object) {
    if let Some(h) = existing(handler, "httpGet") {
        fill(h, "path", "/");
        fill(h, "scheme", "HTTP");
    }
}

/// Always for `:latest` or no tag (unless pinned by digest), else IfNotPresent.
fn pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    // A ':' before the last '/' belongs to a registry host and port.
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, "latest")) => "Always",
        None if !digest => "Always",
        _ => "IfNotPresent",
    }
}

fn volume(v: &mut Object) {
    // A volume naming no source is an emptyDir.
    if v.keys().all(|k| k == "name") {
        v.insert("emptyDir".to_owned(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = existing(v, source) {
            fill(s, "defaultMode", 0o644);
        }
    }
    if let Some(downward) = existing(v, "downwardAPI") {
        for item in items(downward, "items") {
            if let Some(field) = existing(item, "fieldRef") {
                fill(field, "apiVersion", "v1");
            }
        }
    }
}

/// Limits without requests request the limit (Pods only, not templates).
fn requests_from_limits(c: &mut Object) {
    let Some(resources) = existing(c, "resources") else {
        return;
    };
    let Some(limits) = resources
        .get("limits")
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
        .cloned()
    else {
        return;
    };
    if let Some(requests) = child(resources, "requests") {
        for (name, quantity) in limits {
            requests.entry(name).or_insert(quantity);
        }
    }
}

/// tolerationSeconds of the tolerations DefaultTolerationSeconds adds: the
/// board config's `[node_failure] pod_eviction_timeout`, set once at start
/// by the server (kube-apiserver's --default-unreachable-toleration-seconds,
/// 300 s in Kubernetes; the small-cluster default here).
static TOLERATION_SECONDS: AtomicU64 = AtomicU64::new(30);

/// Sets how long new pods tolerate a not-ready or unreachable node.
pub fn set_default_toleration_seconds(seconds: u64) {
    TOLERATION_SECONDS.store(seconds, Ordering::Relaxed);
}

/// The DefaultTolerationSeconds admission plugin: pods stay
/// `TOLERATION_SECONDS` on a node that is not ready or unreachable, unless
/// they already tolerate that. It is applied with the defaults rather than
/// in `api::admission` because controllers create pods in the store
/// directly, and their pods need it as much as the API's.
fn default_tolerations(spec: &mut Object) {
    let tolerations = spec.entry("tolerations").or_insert(Value::Null);
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = list.iter().any(|t| {
            let field = |name| t.get(name).and_then(Value::as_str).unwrap_or_default();
            (field("key").is_empty() || field("key") == key)
                && (field("effect").is_empty() || field("effect") == "NoExecute")
        });
        if !tolerated {
            let seconds = TOLERATION_SECONDS.load(Ordering::Relaxed);
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
}

/// Kubernetes' pod QoS class from the cpu and memory of all containers.
fn qos_class(spec: &Object) -> &'static str {
    let mut requests: BTreeMap<&str, f64> = BTreeMap::new();
    let mut limits: BTreeMap<&str, f64> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .into_iter()
        .filter_map(|k| spec.get(k)?.as_array());
    for c in containers.flatten() {
        for (name, q) in compute_resources(c, "requests") {
            *requests.entry(name).or_default() += q;
        }
        let c_limits = compute_resources(c, "limits");
        // Guaranteed needs both cpu and memory limits on every container.
        if c_limits.len() < 2 {
            guaranteed = false;
        }
        for (name, q) in c_limits {
            *limits.entry(name).or_default() += q;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        "BestEffort"
    } else if guaranteed && requests == limits {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Positive cpu and memory amounts in a container's `resources.<kind>`.
fn compute_resources<'a>(c: &'a Value, kind: &str) -> Vec<(&'a str, f64)> {
    let amounts = c
        .get("resources")
        .and_then(|r| r.get(kind))
        .and_then(Value::as_object);
    amounts
        .into_iter()
        .flatten()
        .filter(|(name, _)| matches!(name.as_str(), "cpu" | "memory"))
        .filter_map(|(name, q)| {
            let amount = q.as_f64().or_else(|| parse_quantity(q.as_str()?))?;
            (amount > 0.0).then_some((name.as_str(), amount))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Workloads

fn replication_controller(o: &mut Object) {
    if let Some(labels) = template_labels(o) {
        if let Some(spec) = child(o, "spec")
            && empty_map(spec.get("selector"))
        {
            spec.insert("selector".to_owned(), labels.clone());
        }
        if let Some(meta) = child(o, "metadata")
            && empty_map(meta.get("labels"))
        {
            meta.insert("labels".to_owned(), labels);
        }
    }
    if let Some(spec) = child(o, "spec") {
        fill(spec, "replicas", 1);
        template(spec);
    }
}

fn deployment(o: &mut Object) {
    let Some(spec) = child(o, "spec") else { return };
    fill(spec, "replicas", 1);
    if let Some(strategy) = child(spec, "strategy") {
        fill(strategy, "type", "RollingUpdate");
        if text(strategy, "type") == "RollingUpdate"
            && let Some(rolling) = child(strategy, "rollingUpdate")
        {
            fill(rolling, "maxUnavailable", "25%");
            fill(rolling, "maxSurge", "25%");
        }
    }
    fill(spec, "revisionHistoryLimit", 10);
    fill(spec, "progressDeadlineSeconds", 600);
    template(spec);
}

fn daemon_set(o: &mut Object) {
    let Some(spec) = child(o, "spec") else { return };
    if let Some(strategy) = child(spec, "updateStrategy") {
        fill(strategy, "type", "RollingUpdate");
        if text(strategy, "type") == "RollingUpdate"
            && let Some(rolling) = child(strategy, "rollingUpdate")
        {
            fill(rolling, "maxUnavailable", 1);
            fill(rolling, "maxSurge", 0);
        }
    }
    fill(spec, "revisionHistoryLimit", 10);
    template(spec);
}

fn job(o: &mut Object) {
    if let Some(labels) = template_labels(o)
        && let Some(meta) = child(o, "metadata")
        && empty_map(meta.get("labels"))
    {
        meta.insert("labels".to_owned(), labels);
    }
    let Some(spec) = child(o, "spec") else { return };
    // A job that sets neither runs one pod to completion; with parallelism
    // alone it is a work queue and completions stay unset.
    if unset(spec.get("completions")) && unset(spec.get("parallelism")) {
        spec.insert("completions".to_owned(), 1.into());
    }
    fill(spec, "parallelism", 1);
    let backoff = if unset(spec.get("backoffLimitPerIndex")) {
        6
    } else {
        i64::from(i32::MAX)
    };
    fill(spec, "backoffLimit", backoff);
    fill(spec, "completionMode", "NonIndexed");
    fill(spec, "suspend", false);
    let replacement = if unset(spec.get("podFailurePolicy")) {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    fill(spec, "podReplacementPolicy", replacement);
    template(spec);
}

// ---------------------------------------------------------------------------
// Other kinds

fn service(o: &mut Object) {
    let Some(spec) = child(o, "spec") else { return };
    fill(spec, "sessionAffinity", "None");
    if text(spec, "sessionAffinity") == "None" {
        spec.remove("sessionAffinityConfig");
    }
    fill(spec, "type", "ClusterIP");
    for port in items(spec, "ports") {
        fill(port, "protocol", "TCP");
        let target = port.get("targetPort");
        if unset(target) || target.and_then(Value::as_i64) == Some(0) {
            let number = port.get("port").cloned().unwrap_or(Value::Null);
            port.insert("targetPort".to_owned(), number);
        }
    }
    let service_type = text(spec, "type").to_owned();
    let external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|ips| !ips.is_empty());
    let node_ports = matches!(service_type.as_str(), "NodePort" | "LoadBalancer");
    if node_ports || (service_type == "ClusterIP" && external_ips) {
        fill(spec, "externalTrafficPolicy", "Cluster");
    }
    if node_ports || service_type == "ClusterIP" {
        fill(spec, "internalTrafficPolicy", "Cluster");
        // What the cluster IP allocator of a single-stack IPv4 cluster records.
        if spec
            .get("ipFamilies")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            spec.insert("ipFamilies".to_owned(), json!(["IPv4"]));
        }
        fill(spec, "ipFamilyPolicy", "SingleStack");
    }
    if service_type == "LoadBalancer" {
        fill(spec, "allocateLoadBalancerNodePorts", true);
    }
}

fn namespace(o: &mut Object) {
    // Kubernetes adds the finalizer on create only; a list that is present,
    // even empty, is kept so that finalization can remove it.
    if let Some(spec) = child(o, "spec")
        && spec.get("finalizers").is_none_or(Value::is_null)
    {
        spec.insert("finalizers".to_owned(), json!(["kubernetes"]));
    }
    if let Some(status) = child(o, "status") {
        fill(status, "phase", "Active");
    }
}

fn secret(o: &mut Object) {
    fill(o, "type", "Opaque");
    // stringData is write-only: its entries replace those of data, encoded.
    if let Some(Value::Object(string_data)) = o.remove("stringData")
        && let Some(data) = child(o, "data")
    {
        for (key, value) in string_data {
            if let Some(s) = value.as_str() {
                data.insert(key, base64(s.as_bytes()).into());
            }
        }
    }
}

/// Standard padded base64, as Go encodes `[]byte` in JSON.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(kind: &str, mut obj: Value) -> Value {
        apply_defaults(kind, &mut obj);
        obj
    }

    fn pod_with(containers: Value) -> Value {
        defaulted(
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"containers": containers}}),
        )
    }

    fn nginx_template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}})
    }

    #[test]
    fn pod_gets_kubernetes_defaults() {
        let pod = pod_with(json!([{"name": "app", "image": "nginx"}]));
        assert_eq!(
            pod["spec"],
            json!({
                "containers": [{
                    "name": "app", "image": "nginx", "imagePullPolicy": "Always", "resources": {},
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                "dnsPolicy": "ClusterFirst",
                "enableServiceLinks": true,
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "terminationGracePeriodSeconds": 30,
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]
            })
        );
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn explicit_values_are_kept() {
        let mut obj = json!({"spec": {"restartPolicy": "Never", "dnsPolicy": "Default", "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "a", "image": "x", "imagePullPolicy": "Never"}]}});
        apply_defaults("Pod", &mut obj);
        assert_eq!(obj["spec"]["restartPolicy"], "Never");
        assert_eq!(obj["spec"]["dnsPolicy"], "Default");
        assert_eq!(obj["spec"]["terminationGracePeriodSeconds"], 0);
        assert_eq!(obj["spec"]["containers"][0]["imagePullPolicy"], "Never");
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(pull_policy("nginx@sha256:abcd"), "IfNotPresent");
        assert_eq!(pull_policy("nginx:latest@sha256:abcd"), "Always");
        assert_eq!(pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(pull_policy("registry:5000/team/nginx:2"), "IfNotPresent");
    }

    #[test]
    fn container_ports_probes_hooks_and_env_are_defaulted() {
        let pod = pod_with(json!([{"name": "a", "image": "x:1",
            "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
            "livenessProbe": {"httpGet": {"port": 80}, "periodSeconds": 0},
            "readinessProbe": {"tcpSocket": {"port": 80}, "failureThreshold": 5},
            "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/quit"}}},
            "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}]));
        let c = &pod["spec"]["containers"][0];
        assert_eq!(
            c["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}])
        );
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["readinessProbe"]["failureThreshold"], 5);
        assert_eq!(
            c["lifecycle"]["preStop"]["httpGet"],
            json!({"port": 80, "path": "/quit", "scheme": "HTTP"})
        );
        assert_eq!(
            c["env"][0]["valueFrom"]["fieldRef"],
            json!({"fieldPath": "spec.nodeName", "apiVersion": "v1"})
        );
        assert_eq!(c["env"][1]["valueFrom"]["resourceFieldRef"]["divisor"], "0");
    }

    #[test]
    fn init_containers_get_container_defaults() {
        let pod = defaulted(
            "Pod",
            json!({"spec": {"containers": [], "initContainers": [{"name": "i", "image": "busybox:1"}]}}),
        );
        assert_eq!(
            pod["spec"]["initContainers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(
            pod["spec"]["initContainers"][0]["terminationMessagePolicy"],
            "File"
        );
    }

    #[test]
    fn volumes_default_to_empty_dir_and_mode_0644() {
        let pod = defaulted(
            "Pod",
            json!({"spec": {"containers": [], "volumes": [
            {"name": "scratch"},
            {"name": "cfg", "configMap": {"name": "c"}},
            {"name": "s", "secret": {"secretName": "s", "defaultMode": 256}},
            {"name": "d", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}}),
        );
        let v = &pod["spec"]["volumes"];
        assert_eq!(v[0], json!({"name": "scratch", "emptyDir": {}}));
        assert_eq!(v[1]["configMap"]["defaultMode"], 420);
        assert_eq!(v[2]["secret"]["defaultMode"], 256);
        assert_eq!(v[3]["downwardAPI"]["defaultMode"], 420);
        assert_eq!(
            v[3]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
            "v1"
        );
    }

    #[test]
    fn limits_become_requests_and_make_pods_guaranteed() {
        let pod = pod_with(
            json!([{"name": "a", "image": "x", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}]),
        );
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "500m", "memory": "128Mi"})
        );
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    }

    #[test]
    fn qos_class_follows_kubernetes() {
        let qos = |resources: Value| {
            pod_with(json!([{"name": "a", "image": "x", "resources": resources}]))["status"]["qosClass"].clone()
        };
        assert_eq!(qos(json!({"requests": {"cpu": "100m"}})), "Burstable");
        assert_eq!(qos(json!({"limits": {"cpu": "1"}})), "Burstable");
        assert_eq!(
            qos(
                json!({"requests": {"cpu": "0.5", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "1Gi"}})
            ),
            "Guaranteed"
        );
        assert_eq!(
            qos(
                json!({"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "1Gi"}})
            ),
            "Burstable"
        );
        assert_eq!(
            qos(json!({"requests": {"cpu": "0"}, "limits": {"example.com/gpu": "1"}})),
            "BestEffort"
        );
        let mixed = defaulted(
            "Pod",
            json!({"spec": {
            "containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
            "initContainers": [{"name": "i", "image": "x"}]}}),
        );
        assert_eq!(mixed["status"]["qosClass"], "Burstable");
    }

    #[test]
    fn existing_status_is_kept() {
        let pod = defaulted(
            "Pod",
            json!({"spec": {"containers": []}, "status": {"phase": "Running"}}),
        );
        assert_eq!(pod["status"], json!({"phase": "Running"}));
    }

    #[test]
    fn default_tolerations_respect_existing_ones() {
        let all = defaulted(
            "Pod",
            json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}}),
        );
        assert_eq!(all["spec"]["tolerations"], json!([{"operator": "Exists"}]));
        let custom = json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5});
        let pod = defaulted(
            "Pod",
            json!({"spec": {"containers": [], "tolerations": [custom.clone()]}}),
        );
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[0], custom);
        assert_eq!(tolerations[1]["key"], "node.kubernetes.io/unreachable");
    }

    #[test]
    fn host_network_pods_publish_container_ports() {
        let pod = defaulted(
            "Pod",
            json!({"spec": {"hostNetwork": true, "containers": [
            {"name": "a", "image": "x", "ports": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 9000}]}]}}),
        );
        let ports = &pod["spec"]["containers"][0]["ports"];
        assert_eq!(ports[0]["hostPort"], 80);
        assert_eq!(ports[1]["hostPort"], 9000);
    }

    #[test]
    fn templates_get_pod_spec_defaults_only() {
        let d = defaulted(
            "Deployment",
            json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "x", "resources": {"limits": {"cpu": "1"}}}]}}}}),
        );
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert!(spec.get("enableServiceLinks").is_none());
        assert!(spec.get("tolerations").is_none());
        assert!(spec["containers"][0]["resources"].get("requests").is_none());
        assert!(d["spec"]["template"].get("status").is_none());
        let pt = defaulted(
            "PodTemplate",
            json!({"template": {"spec": {"containers": []}}}),
        );
        assert_eq!(pt["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn deployment_defaults() {
        let d = defaulted(
            "Deployment",
            json!({"spec": {"template": nginx_template()}}),
        );
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        let recreate = defaulted(
            "Deployment",
            json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(recreate["spec"]["replicas"], 0);
    }

    #[test]
    fn replica_set_defaults() {
        let rs = defaulted(
            "ReplicaSet",
            json!({"spec": {"template": nginx_template()}}),
        );
        assert_eq!(rs["spec"]["replicas"], 1);
        assert_eq!(
            rs["spec"]["template"]["spec"]["schedulerName"],
            "default-scheduler"
        );
    }

    #[test]
    fn replication_controller_copies_template_labels() {
        let rc = defaulted(
            "ReplicationController",
            json!({"metadata": {"name": "rc"}, "spec": {"template": nginx_template()}}),
        );
        assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(rc["spec"]["replicas"], 1);
        let own = defaulted(
            "ReplicationController",
            json!({"metadata": {"labels": {"team": "a"}},
            "spec": {"selector": {"app": "web", "v": "1"}, "template": nginx_template()}}),
        );
        assert_eq!(own["spec"]["selector"], json!({"app": "web", "v": "1"}));
        assert_eq!(own["metadata"]["labels"], json!({"team": "a"}));
    }

    #[test]
    fn daemon_set_defaults() {
        let ds = defaulted("DaemonSet", json!({"spec": {"template": nginx_template()}}));
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        let on_delete = defaulted(
            "DaemonSet",
            json!({"spec": {"updateStrategy": {"type": "OnDelete"}}}),
        );
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
    }

    #[test]
    fn job_defaults() {
        let job = defaulted("Job", json!({"spec": {"template": nginx_template()}}));
        let spec = &job["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert!(spec.get("manualSelector").is_none() && spec.get("selector").is_none());
        assert_eq!(job["metadata"]["labels"], json!({"app": "web"}));
        let queue = defaulted(
            "Job",
            json!({"spec": {"parallelism": 3, "backoffLimitPerIndex": 1, "podFailurePolicy": {"rules": []}}}),
        );
        assert!(queue["spec"].get("completions").is_none());
        assert_eq!(queue["spec"]["parallelism"], 3);
        assert_eq!(queue["spec"]["backoffLimit"], 2147483647);
        assert_eq!(queue["spec"]["podReplacementPolicy"], "Failed");
    }

    #[test]
    fn service_defaults() {
        let svc = defaulted(
            "Service",
            json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https", "protocol": "TCP"}]}}),
        );
        assert_eq!(
            svc["spec"],
            json!({"selector": {"app": "web"}, "type": "ClusterIP", "sessionAffinity": "None",
                   "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}, {"port": 443, "targetPort": "https", "protocol": "TCP"}],
                   "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"})
        );
    }

    #[test]
    fn service_defaults_depend_on_type() {
        let lb = defaulted(
            "Service",
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 0}]}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(lb["spec"]["ports"][0]["targetPort"], 80);
        let external = defaulted(
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
        );
        assert_eq!(
            external["spec"],
            json!({"type": "ExternalName", "externalName": "db.example.com", "sessionAffinity": "None"})
        );
        let ips = defaulted("Service", json!({"spec": {"externalIPs": ["1.2.3.4"]}}));
        assert_eq!(ips["spec"]["externalTrafficPolicy"], "Cluster");
        let sticky = defaulted(
            "Service",
            json!({"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}}}),
        );
        assert!(sticky["spec"].get("sessionAffinityConfig").is_none());
    }

    #[test]
    fn namespace_defaults() {
        let ns = defaulted("Namespace", json!({"metadata": {"name": "team"}}));
        assert_eq!(ns["spec"], json!({"finalizers": ["kubernetes"]}));
        assert_eq!(ns["status"], json!({"phase": "Active"}));
        let finalized = defaulted(
            "Namespace",
            json!({"spec": {"finalizers": []}, "status": {"phase": "Terminating"}}),
        );
        assert_eq!(finalized["spec"]["finalizers"], json!([]));
        assert_eq!(finalized["status"]["phase"], "Terminating");
    }

    #[test]
    fn secret_defaults_and_string_data() {
        let s = defaulted(
            "Secret",
            json!({"data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "hello", "c": "hi!"}}),
        );
        assert_eq!(
            s,
            json!({"type": "Opaque", "data": {"a": "eA==", "b": "aGVsbG8=", "c": "aGkh"}})
        );
        let tls = defaulted("Secret", json!({"type": "kubernetes.io/tls"}));
        assert_eq!(tls, json!({"type": "kubernetes.io/tls"}));
    }

    #[test]
    fn base64_encodes_like_go() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==");
    }

    #[test]
    fn unknown_kinds_and_non_objects_are_untouched() {
        let node = json!({"metadata": {"name": "n"}, "spec": {}});
        assert_eq!(defaulted("Node", node.clone()), node);
        assert_eq!(defaulted("Pod", json!("x")), json!("x"));
    }

    #[test]
    fn defaulting_is_idempotent_for_every_kind() {
        let samples = [
            (
                "Pod",
                json!({"spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "x",
                "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                "livenessProbe": {"httpGet": {"port": 80}}}], "volumes": [{"name": "v"}]}}),
            ),
            ("PodTemplate", json!({"template": nginx_template()})),
            (
                "ReplicationController",
                json!({"spec": {"template": nginx_template()}}),
            ),
            (
                "ReplicaSet",
                json!({"spec": {"template": nginx_template()}}),
            ),
            (
                "Deployment",
                json!({"spec": {"template": nginx_template()}}),
            ),
            ("DaemonSet", json!({"spec": {"template": nginx_template()}})),
            ("Job", json!({"spec": {"template": nginx_template()}})),
            (
                "Service",
                json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
            ),
            ("Namespace", json!({})),
            ("Secret", json!({"stringData": {"k": "v"}})),
            ("ConfigMap", json!({"data": {"k": "v"}})),
            ("Node", json!({})),
        ];
        for (kind, obj) in samples {
            let once = defaulted(kind, obj);
            assert_eq!(defaulted(kind, once.clone()), once, "{kind}");
        }
    }
}
