//! Object validation as the Kubernetes API server performs it before storing
//! an object. Field paths and wording follow Kubernetes, so a 422 reads the
//! same as from a real cluster.
//!
//! Objects are expected to be defaulted first (see `super::defaults`), as the
//! API server does; fields that defaulting fills are accepted when absent.
//! Fields of the wrong JSON type are the decoder's concern and are treated as
//! absent here.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::model::json::{at, entries, int, list, text};
use serde_json::{Map, Value};

use super::selector::{self, LabelSelector, aggregate, go_quote, go_string_slice};

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;
const MAX_SECRET_SIZE: usize = 1024 * 1024;
const QUANTITY_FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const NEGATIVE: &str = "must be greater than or equal to 0";
const IMMUTABLE: &str = "field is immutable";
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";
const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";
const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than \
    `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,\
    `spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` \
    (allow it to be set to 1 if it was previously negative)";
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
/// Kinds without a namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "PriorityClass",
];

/// Why a field is wrong (Kubernetes' field.ErrorType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
}

impl ErrorType {
    /// The phrase used in messages, e.g. "Required value".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "Not found",
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
        }
    }

    /// The cause type of a Status' `details.causes[].reason`, e.g. "FieldValueRequired".
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotFound => "FieldValueNotFound",
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
        }
    }
}

/// One validation failure, as Kubernetes' field.Error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The path, e.g. `spec.containers[0].name`.
    pub field: String,
    pub kind: ErrorType,
    /// The offending value as Kubernetes prints it (strings quoted as Go's
    /// `%q`, numbers bare, maps and structs as Go's `%#v`); `None` when the
    /// message leaves it out.
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    /// The full message, e.g. `spec.containers[0].name: Required value`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }

    /// The message without the field path: a Status cause's `message`.
    pub fn body(&self) -> String {
        let mut s = self.kind.as_str().to_owned();
        // Kubernetes never prints the value of these kinds.
        let shown = !matches!(
            self.kind,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong
        );
        if let Some(value) = self.value.as_deref().filter(|_| shown) {
            s.push_str(": ");
            s.push_str(value);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

fn error(
    field: impl Into<String>,
    kind: ErrorType,
    value: Option<String>,
    detail: impl Into<String>,
) -> FieldError {
    FieldError {
        field: field.into(),
        kind,
        value,
        detail: detail.into(),
    }
}

fn required(field: impl Into<String>, detail: &str) -> FieldError {
    error(field, ErrorType::Required, None, detail)
}

/// `value` is already rendered (see `FieldError::value`).
fn invalid(
    field: impl Into<String>,
    value: impl Into<String>,
    detail: impl Into<String>,
) -> FieldError {
    error(field, ErrorType::Invalid, Some(value.into()), detail)
}

fn duplicate(field: impl Into<String>, value: impl Into<String>) -> FieldError {
    error(field, ErrorType::Duplicate, Some(value.into()), "")
}

fn forbidden(field: impl Into<String>, detail: &str) -> FieldError {
    error(field, ErrorType::Forbidden, None, detail)
}

fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> FieldError {
    let quoted: Vec<String> = supported.iter().map(|v| go_quote(v)).collect();
    let detail = format!("supported values: {}", quoted.join(", "));
    error(
        field,
        ErrorType::NotSupported,
        Some(go_quote(value)),
        detail,
    )
}

fn too_long(field: impl Into<String>, max: usize) -> FieldError {
    error(
        field,
        ErrorType::TooLong,
        None,
        format!("may not be more than {max} bytes"),
    )
}

fn range_error(min: i64, max: i64) -> String {
    format!("must be between {min} and {max}, inclusive")
}

/// The message of Kubernetes' 422 StatusError: `Pod "x" is invalid: <error>`,
/// or `... is invalid: [<error>, <error>]` for several. Kinds outside the
/// core group are qualified with it, as Kubernetes does (`Deployment.apps`).
pub fn invalid_message(kind: &str, name: &str, errs: &[FieldError]) -> String {
    let group = api_group(kind);
    let qualified = if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    };
    let head = format!("{qualified} {} is invalid", go_quote(name));
    if errs.is_empty() {
        return head;
    }
    format!(
        "{head}: {}",
        aggregate(errs.iter().map(FieldError::message))
    )
}

/// The API group of a kind ("" for the core group), as a Status' `details.group`.
pub fn api_group(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "ControllerRevision" => "apps",
        "Job" | "CronJob" => "batch",
        "HorizontalPodAutoscaler" => "autoscaling",
        "Ingress" | "IngressClass" | "NetworkPolicy" => "networking.k8s.io",
        "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => {
            "rbac.authorization.k8s.io"
        }
        "Lease" => "coordination.k8s.io",
        "EndpointSlice" => "discovery.k8s.io",
        "PodDisruptionBudget" => "policy",
        "StorageClass" => "storage.k8s.io",
        "PriorityClass" => "scheduling.k8s.io",
        _ => "",
    }
}

pub use super::quantity::parse as parse_quantity;

// ---------------------------------------------------------------------------
// Go renderings of non-string values in messages

/// A `map[string]string` as Go's `%#v` prints it (keys sorted).
fn go_string_map(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return "map[string]string(nil)".to_owned();
    };
    let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
    pairs.sort_by_key(|(k, _)| *k);
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}:{}",
                go_quote(k),
                go_quote(v.as_str().unwrap_or_default())
            )
        })
        .collect();
    format!("map[string]string{{{}}}", items.join(", "))
}

/// A metav1.LabelSelector as Go's `%#v` prints it.
fn go_label_selector(v: &Value) -> String {
    let expressions = match v.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_owned(),
        Some(exprs) => {
            let items: Vec<String> = exprs
                .iter()
                .map(|e| {
                    let values: Vec<&str> =
                        list(e, "values").iter().filter_map(Value::as_str).collect();
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(text(e, "key")),
                        go_quote(text(e, "operator")),
                        go_string_slice(&values)
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{expressions}}}",
        go_string_map(at(v, "matchLabels"))
    )
}

// ---------------------------------------------------------------------------
// Create

/// Validates an object of `kind` as the API server does on create.
pub fn validate(kind: &str, obj: &Value) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    object_meta(kind, at(obj, "metadata"), &mut errs);
    let spec = at(obj, "spec");
    match kind {
        "Pod" => pod_spec(spec, "spec", &mut errs),
        "PodTemplate" => pod_template(at(obj, "template"), "template", &mut errs),
        "Service" => service_spec(spec, &mut errs),
        "ReplicationController" => replication_controller_spec(spec, &mut errs),
        "ReplicaSet" | "Deployment" => replica_set_spec(kind, spec, &mut errs),
        "DaemonSet" => daemon_set_spec(spec, &mut errs),
        "Job" => job_spec(spec, &mut errs),
        "ConfigMap" => config_map(obj, &mut errs),
        "Secret" => secret(obj, &mut errs),
        _ => {}
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

fn object_meta(kind: &str, meta: &Value, errs: &mut Vec<FieldError>) {
    let name_errors = |name: &str| match kind {
        "Namespace" => selector::dns1123_label_errors(name),
        "Service" => selector::dns1035_label_errors(name),
        _ => selector::dns1123_subdomain_errors(name),
    };
    let generate_name = text(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in name_errors(&mask_trailing_dash(generate_name)) {
            errs.push(invalid(
                "metadata.generateName",
                go_quote(generate_name),
                msg,
            ));
        }
    }
    let name = text(meta, "name");
    if name.is_empty() {
        // With generateName the server makes the name before validating.
        if generate_name.is_empty() {
            errs.push(required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        for msg in name_errors(name) {
            errs.push(invalid("metadata.name", go_quote(name), msg));
        }
    }
    // An absent namespace is the caller's to fill from the request path.
    let namespace = text(meta, "namespace");
    if CLUSTER_SCOPED.contains(&kind) {
        if !namespace.is_empty() {
            errs.push(forbidden("metadata.namespace", "not allowed on this type"));
        }
    } else if !namespace.is_empty() {
        for msg in selector::dns1123_label_errors(namespace) {
            errs.push(invalid("metadata.namespace", go_quote(namespace), msg));
        }
    }
    labels(at(meta, "labels"), "metadata.labels", errs);
    annotations(at(meta, "annotations"), "metadata.annotations", errs);
}

/// generateName may end in '-': Kubernetes validates it with the dash masked.
fn mask_trailing_dash(name: &str) -> String {
    match name.strip_suffix('-') {
        Some(rest) if !rest.is_empty() => {
            let mut masked = rest.to_owned();
            masked.pop();
            masked.push('a');
            masked
        }
        _ => name.to_owned(),
    }
}

fn labels(v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for (key, value) in v.as_object().into_iter().flatten() {
        for msg in selector::label_key_errors(key) {
            errs.push(invalid(path, go_quote(key), msg));
        }
        if let Some(value) = value.as_str() {
            for msg in selector::label_value_errors(value) {
                errs.push(invalid(path, go_quote(value), msg));
            }
        }
    }
}

fn annotations(v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let mut size = 0;
    for (key, value) in v.as_object().into_iter().flatten() {
        // Annotation keys are qualified names, but case does not matter.
        for msg in selector::label_key_errors(&key.to_lowercase()) {
            errs.push(invalid(path, go_quote(key), msg));
        }
        size += key.len() + value.as_str().map_or(0, str::len);
    }
    if size > TOTAL_ANNOTATION_SIZE {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE));
    }
}

fn non_negative(obj: &Value, key: &str, parent: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = int(obj, key)
        && n < 0
    {
        errs.push(invalid(format!("{parent}.{key}"), n.to_string(), NEGATIVE));
    }
}

/// An enumerated string field; unset is left to defaulting.
fn one_of(obj: &Value, key: &str, parent: &str, supported: &[&str], errs: &mut Vec<FieldError>) {
    let value = text(obj, key);
    if !value.is_empty() && !supported.contains(&value) {
        errs.push(not_supported(format!("{parent}.{key}"), value, supported));
    }
}

// ---------------------------------------------------------------------------
// Pods

fn pod_template(template: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let meta = at(template, "metadata");
    // Kubernetes reports template labels at `<path>.labels`, without "metadata".
    labels(at(meta, "labels"), &format!("{path}.labels"), errs);
    annotations(
        at(meta, "annotations"),
        &format!("{path}.annotations"),
        errs,
    );
    pod_spec(at(template, "spec"), &format!("{path}.spec"), errs);
}

fn pod_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let volumes = volumes(spec, path, errs);
    let containers = list(spec, "containers");
    if containers.is_empty() {
        errs.push(required(format!("{path}.containers"), ""));
    }
    let mut names = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let container_path = format!("{path}.containers[{i}]");
        container(c, &container_path, &volumes, errs);
        let name = text(c, "name");
        if !names.insert(name) {
            errs.push(duplicate(format!("{container_path}.name"), go_quote(name)));
        }
    }
    // Init container names must differ from each other and from the containers'.
    for (i, c) in list(spec, "initContainers").iter().enumerate() {
        let container_path = format!("{path}.initContainers[{i}]");
        container(c, &container_path, &volumes, errs);
        let name = text(c, "name");
        if names.contains(name) {
            errs.push(duplicate(format!("{container_path}.name"), go_quote(name)));
        } else if !name.is_empty() {
            names.insert(name);
        }
    }
    one_of(
        spec,
        "restartPolicy",
        path,
        &["Always", "OnFailure", "Never"],
        errs,
    );
    let dns_policies = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
    one_of(spec, "dnsPolicy", path, dns_policies, errs);
    if let Some(n) = int(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&n)
    {
        let detail = range_error(1, i32::MAX.into());
        errs.push(invalid(
            format!("{path}.activeDeadlineSeconds"),
            n.to_string(),
            detail,
        ));
    }
}

/// Validates the volumes and returns the names that mounts may refer to.
fn volumes<'a>(spec: &'a Value, path: &str, errs: &mut Vec<FieldError>) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for (i, volume) in list(spec, "volumes").iter().enumerate() {
        let name_path = format!("{path}.volumes[{i}].name");
        let name = text(volume, "name");
        let mut volume_errs = Vec::new();
        if name.is_empty() {
            volume_errs.push(required(&name_path, ""));
        } else {
            for msg in selector::dns1123_label_errors(name) {
                volume_errs.push(invalid(&name_path, go_quote(name), msg));
            }
        }
        if names.contains(name) {
            volume_errs.push(duplicate(&name_path, go_quote(name)));
        }
        // As Kubernetes, a volume with errors cannot be mounted either.
        if volume_errs.is_empty() {
            names.insert(name);
        }
        errs.append(&mut volume_errs);
    }
    names
}

fn container(c: &Value, path: &str, volumes: &HashSet<&str>, errs: &mut Vec<FieldError>) {
    let name = text(c, "name");
    if name.is_empty() {
        errs.push(required(format!("{path}.name"), ""));
    } else {
        for msg in selector::dns1123_label_errors(name) {
            errs.push(invalid(format!("{path}.name"), go_quote(name), msg));
        }
    }
    if text(c, "image").is_empty() {
        errs.push(required(format!("{path}.image"), ""));
    }
    container_ports(list(c, "ports"), &format!("{path}.ports"), errs);
    volume_mounts(
        list(c, "volumeMounts"),
        &format!("{path}.volumeMounts"),
        volumes,
        errs,
    );
    one_of(
        c,
        "imagePullPolicy",
        path,
        &["Always", "IfNotPresent", "Never"],
        errs,
    );
    resources(at(c, "resources"), &format!("{path}.resources"), errs);
}

fn container_ports(ports: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let port_path = format!("{path}[{i}]");
        let name = text(port, "name");
        if !name.is_empty() {
            let msgs = port_name_errors(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(invalid(format!("{port_path}.name"), go_quote(name), msg));
                }
            } else if !names.insert(name) {
                errs.push(duplicate(format!("{port_path}.name"), go_quote(name)));
            }
        }
        match int(port, "containerPort") {
            None | Some(0) => errs.push(required(format!("{port_path}.containerPort"), "")),
            Some(n) if !(1..=65535).contains(&n) => {
                errs.push(invalid(
                    format!("{port_path}.containerPort"),
                    n.to_string(),
                    range_error(1, 65535),
                ));
            }
            Some(_) => {}
        }
        // hostPort 0 means none.
        if let Some(n) = int(port, "hostPort")
            && n != 0
            && !(1..=65535).contains(&n)
        {
            errs.push(invalid(
                format!("{port_path}.hostPort"),
                n.to_string(),
                range_error(1, 65535),
            ));
        }
        one_of(port, "protocol", &port_path, PROTOCOLS, errs);
    }
}

/// Kubernetes' IsValidPortName: an IANA service name.
fn port_name_errors(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push(selector::max_len_error(15));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned(),
        );
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_owned());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".to_owned());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_owned());
    }
    errs
}

fn volume_mounts(
    mounts: &[Value],
    path: &str,
    volumes: &HashSet<&str>,
    errs: &mut Vec<FieldError>,
) {
    let mut mount_points = HashSet::new();
    for (i, mount) in mounts.iter().enumerate() {
        let mount_path = format!("{path}[{i}]");
        let name = text(mount, "name");
        if name.is_empty() {
            errs.push(required(format!("{mount_path}.name"), ""));
        }
        if !volumes.contains(name) {
            let e = error(
                format!("{mount_path}.name"),
                ErrorType::NotFound,
                Some(go_quote(name)),
                "",
            );
            errs.push(e);
        }
        let point = text(mount, "mountPath");
        if point.is_empty() {
            errs.push(required(format!("{mount_path}.mountPath"), ""));
        }
        if !mount_points.insert(point) {
            errs.push(invalid(
                format!("{mount_path}.mountPath"),
                go_quote(point),
                "must be unique",
            ));
        }
    }
}

/// A quantity's text and value, or the error that it is not a valid,
/// non-negative quantity.
fn quantity(v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Option<(String, f64)> {
    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    match parse_quantity(&text) {
        None => errs.push(invalid(path, go_quote(&text), QUANTITY_FORMAT_ERROR)),
        // A Quantity prints bare, not quoted.
        Some(n) if n < 0.0 => errs.push(invalid(path, text, NEGATIVE)),
        Some(n) => return Some((text, n)),
    }
    None
}

fn resources(r: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let mut limits = HashMap::new();
    for (name, q) in entries(r, "limits") {
        if let Some(parsed) = quantity(q, &format!("{path}.limits[{name}]"), errs) {
            limits.insert(name, parsed);
        }
    }
    for (name, q) in entries(r, "requests") {
        let Some((request, value)) = quantity(q, &format!("{path}.requests[{name}]"), errs) else {
            continue;
        };
        let Some((limit, limit_value)) = limits.get(name) else {
            continue;
        };
        // Native resources other than hugepages may be overcommitted; extended
        // resources (vendor.com/gpu) and hugepages must request their limit.
        let native = !name.contains('/') || name.contains("kubernetes.io/");
        let overcommit = native && !name.starts_with("hugepages-");
        if !overcommit && value != *limit_value {
            let detail = format!("must be equal to {name} limit of {limit}");
            errs.push(invalid(
                format!("{path}.requests"),
                go_quote(&request),
                detail,
            ));
        } else if value > *limit_value {
            let detail = format!("must be less than or equal to {name} limit of {limit}");
            errs.push(invalid(
                format!("{path}.requests"),
                go_quote(&request),
                detail,
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Services

fn service_spec(spec: &Value, errs: &mut Vec<FieldError>) {
    let service_type = text(spec, "type");
    let headless = text(spec, "clusterIP") == "None";
    let ports = list(spec, "ports");
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errs.push(required("spec.ports", ""));
    }
    if service_type == "ExternalName" {
        // The name may end in a dot to mark it fully qualified.
        let cname = text(spec, "externalName");
        let cname = cname.strip_suffix('.').unwrap_or(cname);
        if cname.is_empty() {
            errs.push(required("spec.externalName", ""));
        } else {
            for msg in selector::dns1123_subdomain_errors(cname) {
                errs.push(invalid("spec.externalName", go_quote(cname), msg));
            }
        }
    }
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        service_port(
            port,
            &format!("spec.ports[{i}]"),
            ports.len() > 1,
            &mut names,
            errs,
        );
    }
    labels(at(spec, "selector"), "spec.selector", errs);
    one_of(spec, "sessionAffinity", "spec", &["ClientIP", "None"], errs);
    one_of(
        spec,
        "type",
        "spec",
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        errs,
    );
    for (i, port) in ports.iter().enumerate() {
        let Some(node_port) = int(port, "nodePort").filter(|n| *n != 0) else {
            continue;
        };
        let field = format!("spec.ports[{i}].nodePort");
        if service_type == "ClusterIP" {
            errs.push(forbidden(
                field,
                "may not be used when `type` is 'ClusterIP'",
            ));
        } else if !(30000..=32767).contains(&node_port) {
            // The node port allocator's message; Kubernetes reports it on create too.
            let detail =
                "provided port is not in the valid range. The range of valid ports is 30000-32767";
            errs.push(invalid(field, node_port.to_string(), detail));
        }
    }
    let mut node_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        if let Some(node_port) = int(port, "nodePort").filter(|n| *n != 0)
            && !node_ports.insert((protocol(port), node_port))
        {
            errs.push(duplicate(
                format!("spec.ports[{i}].nodePort"),
                node_port.to_string(),
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let number = int(port, "port").unwrap_or(0);
        if !seen.insert((protocol(port), number)) {
            // Kubernetes prints the (protocol, port) key as a ServicePort struct.
            let key = format!(
                "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{number}, \
                 TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                go_quote(protocol(port))
            );
            errs.push(duplicate(format!("spec.ports[{i}]"), key));
        }
    }
}

fn service_port<'a>(
    port: &'a Value,
    path: &str,
    name_required: bool,
    names: &mut HashSet<&'a str>,
    errs: &mut Vec<FieldError>,
) {
    let name = text(port, "name");
    if name.is_empty() {
        if name_required {
            errs.push(required(format!("{path}.name"), ""));
        }
    } else {
        for msg in selector::dns1123_label_errors(name) {
            errs.push(invalid(format!("{path}.name"), go_quote(name), msg));
        }
        if !names.insert(name) {
            errs.push(duplicate(format!("{path}.name"), go_quote(name)));
        }
    }
    let number = int(port, "port").unwrap_or(0);
    if !(1..=65535).contains(&number) {
        errs.push(invalid(
            format!("{path}.port"),
            number.to_string(),
            range_error(1, 65535),
        ));
    }
    one_of(port, "protocol", path, PROTOCOLS, errs);
    match port.get("targetPort") {
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            if !(1..=65535).contains(&n) {
                errs.push(invalid(
                    format!("{path}.targetPort"),
                    n.to_string(),
                    range_error(1, 65535),
                ));
            }
        }
        Some(Value::String(s)) => {
            for msg in port_name_errors(s) {
                errs.push(invalid(format!("{path}.targetPort"), go_quote(s), msg));
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Workloads

/// The template must carry the labels its owner selects it by.
fn template_selected(selector: &LabelSelector, template: &Value, errs: &mut Vec<FieldError>) {
    let labels = at(at(template, "metadata"), "labels");
    if !selector.matches_value(Some(labels)) {
        errs.push(invalid(
            "spec.template.metadata.labels",
            go_string_map(labels),
            SELECTOR_MISMATCH,
        ));
    }
}

fn template_restart_policy(template: &Value, supported: &[&str], errs: &mut Vec<FieldError>) {
    // Unset is what defaulting makes it: Always.
    let policy = match text(at(template, "spec"), "restartPolicy") {
        "" => "Always",
        policy => policy,
    };
    if !supported.contains(&policy) {
        errs.push(not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            supported,
        ));
    }
}

/// A service port's protocol, TCP when unset.
fn protocol(port: &Value) -> &str {
    match text(port, "protocol") {
        "" => "TCP",
        proto => proto,
    }
}

/// metav1.LabelSelector field checks (ValidateLabelSelector).
fn label_selector_fields(selector: &Value, path: &str, errs: &mut Vec<FieldError>) {
    labels(
        at(selector, "matchLabels"),
        &format!("{path}.matchLabels"),
        errs,
    );
    for (i, expr) in list(selector, "matchExpressions").iter().enumerate() {
        let expr_path = format!("{path}.matchExpressions[{i}]");
        let values = list(expr, "values");
        match text(expr, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    let detail = "must be specified when `operator` is 'In' or 'NotIn'";
                    errs.push(required(format!("{expr_path}.values"), detail));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    let detail =
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'";
                    errs.push(forbidden(format!("{expr_path}.values"), detail));
                }
            }
            op => errs.push(invalid(
                format!("{expr_path}.operator"),
                go_quote(op),
                "not a valid selector operator",
            )),
        }
        let key = text(expr, "key");
        for msg in selector::label_key_errors(key) {
            errs.push(invalid(format!("{expr_path}.key"), go_quote(key), msg));
        }
        for (j, value) in values.iter().filter_map(Value::as_str).enumerate() {
            for msg in selector::label_value_errors(value) {
                errs.push(invalid(
                    format!("{expr_path}.values[{j}]"),
                    go_quote(value),
                    msg,
                ));
            }
        }
    }
}

fn selects_everything(selector: &Value) -> bool {
    list(selector, "matchExpressions").is_empty()
        && at(selector, "matchLabels")
            .as_object()
            .is_none_or(Map::is_empty)
}

fn replication_controller_spec(spec: &Value, errs: &mut Vec<FieldError>) {
    let selector = at(spec, "selector").as_object();
    if selector.is_none_or(Map::is_empty) {
        errs.push(required("spec.selector", ""));
    }
    non_negative(spec, "replicas", "spec", errs);
    let template = at(spec, "template");
    if template.is_null() {
        errs.push(required("spec.template", ""));
        return;
    }
    if let Some(selector) = selector {
        template_selected(&LabelSelector::from_map(selector), template, errs);
    }
    pod_template(template, "spec.template", errs);
    template_restart_policy(template, &["Always"], errs);
    if !at(at(template, "spec"), "activeDeadlineSeconds").is_null() {
        let detail = "activeDeadlineSeconds in ReplicationController is not Supported";
        errs.push(forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            detail,
        ));
    }
}

/// ReplicaSets and Deployments (apps/v1), whose checks Kubernetes shares,
/// messages included.
fn replica_set_spec(kind: &str, spec: &Value, errs: &mut Vec<FieldError>) {
    non_negative(spec, "replicas", "spec", errs);
    if kind == "Deployment" {
        deployment_spec(spec, errs);
    }
    let selector = at(spec, "selector");
    if selector.is_null() {
        errs.push(required("spec.selector", ""));
        if kind == "Deployment" {
            return;
        }
    } else {
        label_selector_fields(selector, "spec.selector", errs);
        if selects_everything(selector) {
            let detail = "empty selector is invalid for deployment";
            errs.push(invalid(
                "spec.selector",
                go_label_selector(selector),
                detail,
            ));
        }
    }
    let Ok(parsed) = LabelSelector::from_object(selector) else {
        errs.push(invalid(
            "spec.selector",
            go_label_selector(selector),
            "invalid label selector",
        ));
        return;
    };
    let template = at(spec, "template");
    template_selected(&parsed, template, errs);
    pod_template(template, "spec.template", errs);
    template_restart_policy(template, &["Always"], errs);
    if !at(at(template, "spec"), "activeDeadlineSeconds").is_null() {
        let detail = "activeDeadlineSeconds in ReplicaSet is not Supported";
        errs.push(forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            detail,
        ));
    }
}

/// What Kubernetes checks of a Deployment beyond its ReplicaSet-like part:
/// history and deadlines, and a strategy the controller can carry out.
fn deployment_spec(spec: &Value, errs: &mut Vec<FieldError>) {
    for key in [
        "minReadySeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
    ] {
        non_negative(spec, key, "spec", errs);
    }
    if let (Some(deadline), min_ready) = (
        int(spec, "progressDeadlineSeconds"),
        int(spec, "minReadySeconds"),
    ) && deadline <= min_ready.unwrap_or(0)
    {
        let detail = "must be greater than minReadySeconds";
        errs.push(invalid(
            "spec.progressDeadlineSeconds",
            deadline.to_string(),
            detail,
        ));
    }
    let strategy = at(spec, "strategy");
    one_of(
        strategy,
        "type",
        "spec.strategy",
        &["Recreate", "RollingUpdate"],
        errs,
    );
    let rolling = at(strategy, "rollingUpdate");
    if text(strategy, "type") == "Recreate" && !rolling.is_null() {
        let detail = "may not be specified when strategy `type` is 'Recreate'";
        errs.push(forbidden("spec.strategy.rollingUpdate", detail));
    }
    if text(strategy, "type") != "RollingUpdate" || rolling.is_null() {
        return;
    }
    let path = "spec.strategy.rollingUpdate";
    let unavailable = at(rolling, "maxUnavailable");
    let surge = at(rolling, "maxSurge");
    let mut values = [(unavailable, "maxUnavailable", 0), (surge, "maxSurge", 0)];
    for (v, key, n) in &mut values {
        match v {
            Value::Null => {}
            Value::Number(_) => {
                *n = v.as_i64().unwrap_or(0);
                if *n < 0 {
                    errs.push(invalid(format!("{path}.{key}"), n.to_string(), NEGATIVE));
                }
            }
            Value::String(s) => match s.strip_suffix('%').filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
                Some(p) => *n = p.parse().unwrap_or(i64::MAX),
                None => errs.push(invalid(
                    format!("{path}.{key}"),
                    go_int_or_string(v),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )),
            },
            _ => errs.push(invalid(
                format!("{path}.{key}"),
                go_int_or_string(v),
                "must be an integer or percentage (e.g '5%')",
            )),
        }
    }
    if values[0].2 == 0 && values[1].2 == 0 {
        errs.push(invalid(
            format!("{path}.maxUnavailable"),
            go_int_or_string(unavailable),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    if unavailable.is_string() && values[0].2 > 100 {
        errs.push(invalid(
            format!("{path}.maxUnavailable"),
            go_int_or_string(unavailable),
            "must not be greater than 100%",
        ));
    }
}

/// An IntOrString as Go's `%#v` prints it in field errors.
fn go_int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_quote(s)
        ),
        other => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            other.as_i64().unwrap_or(0)
        ),
    }
}

fn daemon_set_spec(spec: &Value, errs: &mut Vec<FieldError>) {
    let selector = at(spec, "selector");
    label_selector_fields(selector, "spec.selector", errs);
    let template = at(spec, "template");
    if let Ok(parsed) = LabelSelector::from_object(selector) {
        template_selected(&parsed, template, errs);
    }
    if !selector.is_null() && selects_everything(selector) {
        let detail = "empty selector is invalid for daemonset";
        errs.push(invalid(
            "spec.selector",
            go_label_selector(selector),
            detail,
        ));
    }
    pod_template(template, "spec.template", errs);
    template_restart_policy(template, &["Always"], errs);
}

fn job_spec(spec: &Value, errs: &mut Vec<FieldError>) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
    ] {
        non_negative(spec, key, "spec", errs);
    }
    one_of(
        spec,
        "completionMode",
        "spec",
        &["NonIndexed", "Indexed"],
        errs,
    );
    if spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
        && spec.get("completions").is_none_or(Value::is_null)
    {
        errs.push(required(
            "spec.completions",
            "when completion mode is Indexed",
        ));
    }
    let template = at(spec, "template");
    pod_template(template, "spec.template", errs);
    template_restart_policy(template, &["OnFailure", "Never"], errs);
    // The server generates the selector before validating unless manualSelector is set.
    let selector = at(spec, "selector");
    if selector.is_null() {
        errs.push(required("spec.selector", ""));
    } else {
        label_selector_fields(selector, "spec.selector", errs);
    }
    if let Ok(parsed) = LabelSelector::from_object(selector) {
        template_selected(&parsed, template, errs);
    }
}

// ---------------------------------------------------------------------------
// ConfigMaps and Secrets

/// Kubernetes' IsConfigMapKey.
fn config_key(key: &str, path: &str, errs: &mut Vec<FieldError>) {
    let mut msgs = Vec::new();
    if key.len() > 253 {
        msgs.push(selector::max_len_error(253));
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
    {
        let msg = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
        msgs.push(selector::regex_error(
            msg,
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    match key {
        "." => msgs.push("must not be '.'".to_owned()),
        ".." => msgs.push("must not be '..'".to_owned()),
        _ if key.starts_with("..") => msgs.push("must not start with '..'".to_owned()),
        _ => {}
    }
    errs.extend(
        msgs.into_iter()
            .map(|msg| invalid(path, go_quote(key), msg)),
    );
}

/// Decoded size of base64 data, or an error at the field.
fn base64_data(v: &Value, path: &str, errs: &mut Vec<FieldError>) -> usize {
    match base64_decoded_len(v.as_str().unwrap_or_default()) {
        Ok(n) => n,
        Err(at) => {
            // The data is secret: say where it is broken, not what it is.
            let detail = format!("illegal base64 data at input byte {at}");
            errs.push(error(path, ErrorType::Invalid, None, detail));
            0
        }
    }
}

/// Length of standard, padded base64 once decoded, or the offset Go's decoder
/// reports as corrupt; like Go it skips line breaks.
fn base64_decoded_len(s: &str) -> Result<usize, usize> {
    let src = s.as_bytes();
    let is_break = |c: u8| c == b'\n' || c == b'\r';
    let skip_breaks = |mut i: usize| {
        while i < src.len() && is_break(src[i]) {
            i += 1;
        }
        i
    };
    let (mut si, mut decoded) = (0, 0);
    loop {
        let mut j = 0; // symbols read in this quantum
        while j < 4 {
            if si == src.len() {
                return if j == 0 { Ok(decoded) } else { Err(si - j) };
            }
            let c = src[si];
            si += 1;
            if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' {
                j += 1;
                continue;
            }
            if is_break(c) {
                continue;
            }
            if c != b'=' || j < 2 {
                return Err(si - 1);
            }
            if j == 2 {
                // "==" is expected; the first '=' is consumed.
                si = skip_breaks(si);
                if si == src.len() {
                    return Err(src.len());
                }
                if src[si] != b'=' {
                    return Err(si - 1);
                }
                si += 1;
            }
            si = skip_breaks(si);
            if si < src.len() {
                return Err(si);
            }
            break;
        }
        decoded += j * 3 / 4;
    }
}

fn config_map(obj: &Value, errs: &mut Vec<FieldError>) {
    let binary = at(obj, "binaryData");
    let mut size = 0;
    for (key, value) in entries(obj, "data") {
        let path = format!("data[{key}]");
        config_key(key, &path, errs);
        if binary.get(key).is_some() {
            errs.push(invalid(
                &path,
                go_quote(key),
                "duplicate of key present in binaryData",
            ));
        }
        size += value.as_str().map_or(0, str::len);
    }
    for (key, value) in entries(obj, "binaryData") {
        let path = format!("binaryData[{key}]");
        config_key(key, &path, errs);
        size += base64_data(value, &path, errs);
    }
    if size > MAX_SECRET_SIZE {
        // Kubernetes names the whole object with an empty path, printed "[]".
        errs.push(too_long("[]", MAX_SECRET_SIZE));
    }
}

fn secret(obj: &Value, errs: &mut Vec<FieldError>) {
    let mut size = 0;
    for (key, value) in entries(obj, "data") {
        let path = format!("data[{key}]");
        config_key(key, &path, errs);
        size += base64_data(value, &path, errs);
    }
    if size > MAX_SECRET_SIZE {
        errs.push(too_long("data", MAX_SECRET_SIZE));
    }
}

// ---------------------------------------------------------------------------
// Update

/// Validates `new` as on create, plus the rules for changing `old` into it.
/// Server-set values (a Service's cluster IPs, a Job's selector) are expected
/// to be carried over from `old` before this is called.
pub fn validate_update(kind: &str, old: &Value, new: &Value) -> Result<(), Vec<FieldError>> {
    let mut errs = validate(kind, new).err().unwrap_or_default();
    let (old_spec, new_spec) = (at(old, "spec"), at(new, "spec"));
    match kind {
        "Pod" => pod_update(old_spec, new_spec, &mut errs),
        "Service" => service_update(old_spec, new_spec, &mut errs),
        "Deployment" | "ReplicaSet" | "DaemonSet" => {
            immutable_selector(old_spec, new_spec, &mut errs)
        }
        "Job" => {
            immutable_selector(old_spec, new_spec, &mut errs);
            if !same(at(old_spec, "template"), at(new_spec, "template")) {
                // Kubernetes prints the whole template struct; we leave it out.
                errs.push(error("spec.template", ErrorType::Invalid, None, IMMUTABLE));
            }
        }
        "Secret" => {
            let new_type = text(new, "type");
            if text(old, "type") != new_type {
                errs.push(invalid("type", go_quote(new_type), IMMUTABLE));
            }
            immutable_data(old, new, &["data"], &mut errs);
        }
        "ConfigMap" => immutable_data(old, new, &["data", "binaryData"], &mut errs),
        _ => {}
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Equality as Go compares decoded structs: a field holding its zero value
/// ("", 0, false, null, empty list or map) equals a missing one.
fn same(a: &Value, b: &Value) -> bool {
    normalized(a) == normalized(b)
}

fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .filter(|(_, v)| !is_zero(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
    }
}

/// `dst[key]` made equal to `src[key]`.
fn copy_field(dst: &mut Map<String, Value>, src: &Value, key: &str) {
    match src.get(key) {
        Some(v) => dst.insert(key.to_owned(), v.clone()),
        None => dst.remove(key),
    };
}

fn pod_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if list(old, "containers").len() != list(new, "containers").len() {
        errs.push(forbidden(
            "spec.containers",
            "pod updates may not add or remove containers",
        ));
        return;
    }
    let deadline_path = "spec.activeDeadlineSeconds";
    match (
        int(new, "activeDeadlineSeconds"),
        int(old, "activeDeadlineSeconds"),
    ) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(invalid(
                deadline_path,
                n.to_string(),
                range_error(0, i32::MAX.into()),
            ));
            return;
        }
        (Some(n), Some(o)) if n > o => {
            errs.push(invalid(
                deadline_path,
                n.to_string(),
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => {
            errs.push(invalid(
                deadline_path,
                "null",
                "must not update from a positive integer to nil value",
            ));
        }
        _ => {}
    }
    // Tolerations may be added, and existing ones may change tolerationSeconds only.
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Some(map) = t.as_object_mut() {
            map.remove("tolerationSeconds");
        }
        t
    };
    let new_tolerations: Vec<Value> = list(new, "tolerations")
        .iter()
        .map(without_seconds)
        .collect();
    for old_toleration in list(old, "tolerations") {
        let old_toleration = without_seconds(old_toleration);
        if !new_tolerations.iter().any(|t| same(t, &old_toleration)) {
            let detail = "existing toleration can not be modified except its tolerationSeconds";
            errs.push(forbidden("spec.tolerations", detail));
            break;
        }
    }
    // Put back what may change, then anything still different is forbidden.
    let mut munged = new.clone();
    if let Some(spec) = munged.as_object_mut() {
        for key in ["containers", "initContainers"] {
            let containers = spec
                .get_mut(key)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten();
            for (c, old_c) in containers.zip(list(old, key)) {
                if let Some(c) = c.as_object_mut() {
                    copy_field(c, old_c, "image");
                }
            }
        }
        copy_field(spec, old, "activeDeadlineSeconds");
        copy_field(spec, old, "tolerations");
        let grace = "terminationGracePeriodSeconds";
        if int(old, grace).is_some_and(|g| g < 0) && int(new, grace) == Some(1) {
            copy_field(spec, old, grace);
        }
    }
    if !same(&munged, old) {
        // Kubernetes appends a diff of the specs, which we leave out.
        errs.push(forbidden("spec", POD_UPDATE_FORBIDDEN));
    }
}

fn service_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if text(old, "type") == "ExternalName" || text(new, "type") == "ExternalName" {
        return;
    }
    let (old_ips, new_ips) = (cluster_ips(old), cluster_ips(new));
    // An empty new list compares as unchanged: the caller carries allocated IPs over.
    for (i, (o, n)) in old_ips.iter().zip(&new_ips).enumerate() {
        if o != n {
            errs.push(invalid(
                format!("spec.clusterIPs[{i}]"),
                go_string_slice(&new_ips),
                "may not change once set",
            ));
        }
    }
}

/// `clusterIPs`, or the older single `clusterIP` when only that is set.
fn cluster_ips(spec: &Value) -> Vec<&str> {
    let ips: Vec<&str> = list(spec, "clusterIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match text(spec, "clusterIP") {
        ip if ips.is_empty() && !ip.is_empty() => vec![ip],
        _ => ips,
    }
}

fn immutable_selector(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    let new_selector = at(new, "selector");
    if !same(at(old, "selector"), new_selector) {
        errs.push(invalid(
            "spec.selector",
            go_label_selector(new_selector),
            IMMUTABLE,
        ));
    }
}

fn immutable_data(old: &Value, new: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    if old.get("immutable") != Some(&Value::Bool(true)) {
        return;
    }
    if new.get("immutable") != Some(&Value::Bool(true)) {
        errs.push(forbidden("immutable", IMMUTABLE_WHEN_SET));
    }
    for field in fields {
        if !same(at(old, field), at(new, field)) {
            errs.push(forbidden(*field, IMMUTABLE_WHEN_SET));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
        characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', \
        regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters \
        or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex \
        used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

    fn messages(kind: &str, obj: &Value) -> Vec<String> {
        validate(kind, obj)
            .err()
            .unwrap_or_default()
            .iter()
            .map(FieldError::message)
            .collect()
    }

    fn update_messages(kind: &str, old: &Value, new: &Value) -> Vec<String> {
        validate_update(kind, old, new)
            .err()
            .unwrap_or_default()
            .iter()
            .map(FieldError::message)
            .collect()
    }

    fn pod_with(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    fn pod() -> Value {
        pod_with(json!({"containers": [{"name": "app", "image": "nginx"}]}))
    }

    /// `pod()` with `f` applied to its spec.
    fn pod_spec_with(f: impl FnOnce(&mut Value)) -> Value {
        let mut p = pod();
        f(&mut p["spec"]);
        p
    }

    fn deployment(selector: Value, template_labels: Value) -> Value {
        json!({"metadata": {"name": "d"}, "spec": {"replicas": 1, "selector": selector, "template": {
            "metadata": {"labels": template_labels},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}})
    }

    fn service(spec: Value) -> Value {
        json!({"metadata": {"name": "svc"}, "spec": spec})
    }

    #[test]
    fn field_error_messages_follow_kubernetes() {
        assert_eq!(
            required("spec.containers[0].name", "").message(),
            "spec.containers[0].name: Required value"
        );
        assert_eq!(
            duplicate("spec.containers[1].name", "\"a\"").message(),
            "spec.containers[1].name: Duplicate value: \"a\""
        );
        assert_eq!(
            not_supported("spec.restartPolicy", "Sometimes", &["Always", "Never"]).message(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\""
        );
        assert_eq!(
            too_long("metadata.annotations", 10).message(),
            "metadata.annotations: Too long: may not be more than 10 bytes"
        );
        assert_eq!(forbidden("spec", "no").message(), "spec: Forbidden: no");
        let e = invalid("spec.replicas", "-1", NEGATIVE);
        assert_eq!(
            e.body(),
            "Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            e.to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(ErrorType::Required.reason(), "FieldValueRequired");
        assert_eq!(ErrorType::NotSupported.reason(), "FieldValueNotSupported");
    }

    #[test]
    fn invalid_message_is_the_status_message() {
        let one = [required("spec.containers[0].image", "")];
        assert_eq!(
            invalid_message("Pod", "x", &one),
            "Pod \"x\" is invalid: spec.containers[0].image: Required value"
        );
        let two = [required("a", ""), required("b", ""), required("a", "")];
        assert_eq!(
            invalid_message("Deployment", "x", &two),
            "Deployment.apps \"x\" is invalid: [a: Required value, b: Required value]"
        );
        assert_eq!(
            invalid_message("Job", "j", &[]),
            "Job.batch \"j\" is invalid"
        );
        assert_eq!(api_group("Service"), "");
    }

    #[test]
    fn name_is_required_unless_generated() {
        assert_eq!(
            messages("ConfigMap", &json!({"metadata": {}})),
            ["metadata.name: Required value: name or generateName is required"]
        );
        assert!(messages("ConfigMap", &json!({"metadata": {"generateName": "cm-"}})).is_empty());
    }

    #[test]
    fn names_are_dns_subdomains_by_default() {
        assert_eq!(
            messages("ConfigMap", &json!({"metadata": {"name": "Foo_"}})),
            [format!(
                "metadata.name: Invalid value: \"Foo_\": {SUBDOMAIN_MSG}"
            )]
        );
        assert!(messages("ConfigMap", &json!({"metadata": {"name": "a.b-c"}})).is_empty());
        assert_eq!(
            messages("ConfigMap", &json!({"metadata": {"name": "a".repeat(254)}}))[0],
            format!(
                "metadata.name: Invalid value: \"{}\": must be no more than 253 characters",
                "a".repeat(254)
            )
        );
    }

    #[test]
    fn namespace_names_are_dns_labels() {
        assert_eq!(
            messages("Namespace", &json!({"metadata": {"name": "a.b"}})),
            ["metadata.name: Invalid value: \"a.b\": must not contain dots"]
        );
        assert_eq!(
            messages(
                "Namespace",
                &json!({"metadata": {"name": "ns", "namespace": "x"}})
            ),
            ["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn service_names_are_dns1035_labels() {
        let svc = json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}});
        assert_eq!(
            messages("Service", &svc),
            [
                "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric \
              characters or '-', start with an alphabetic character, and end with an alphanumeric character \
              (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
    }

    #[test]
    fn generate_name_is_validated_with_its_dash_masked() {
        assert!(
            messages(
                "Pod",
                &json!({"metadata": {"generateName": "web-"}, "spec": pod()["spec"]})
            )
            .is_empty()
        );
        assert_eq!(
            messages("ConfigMap", &json!({"metadata": {"generateName": "Web-"}})),
            [format!(
                "metadata.generateName: Invalid value: \"Web-\": {SUBDOMAIN_MSG}"
            )]
        );
    }

    #[test]
    fn namespace_must_be_a_dns_label() {
        assert_eq!(
            messages(
                "ConfigMap",
                &json!({"metadata": {"name": "c", "namespace": "A"}})
            ),
            [format!(
                "metadata.namespace: Invalid value: \"A\": {LABEL_MSG}"
            )]
        );
    }

    #[test]
    fn labels_are_checked() {
        let cm = json!({"metadata": {"name": "c", "labels": {"a/b/c": "x", "ok": "-bad"}}});
        let msgs = messages("ConfigMap", &cm);
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].starts_with(
            "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist"
        ));
        assert!(msgs[1].starts_with(
            "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string"
        ));
    }

    #[test]
    fn annotation_keys_ignore_case_and_size_is_limited() {
        let ok = json!({"metadata": {"name": "c", "annotations": {"Example.com/Key": "v"}}});
        assert!(messages("ConfigMap", &ok).is_empty());
        let big = json!({"metadata": {"name": "c", "annotations": {"k": "v".repeat(TOTAL_ANNOTATION_SIZE)}}});
        assert_eq!(
            messages("ConfigMap", &big),
            ["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    #[test]
    fn valid_pod_passes() {
        assert_eq!(validate("Pod", &pod()), Ok(()));
    }

    #[test]
    fn pod_needs_containers() {
        assert_eq!(
            messages("Pod", &pod_with(json!({}))),
            ["spec.containers: Required value"]
        );
    }

    #[test]
    fn container_names_and_images_are_required_and_unique() {
        let p = pod_with(json!({
            "containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "x"}, {"image": "x"}, {"name": "B_"}],
            "initContainers": [{"name": "a", "image": "x"}]}));
        assert_eq!(
            messages("Pod", &p),
            [
                "spec.containers[1].name: Duplicate value: \"a\"".to_owned(),
                "spec.containers[2].name: Required value".to_owned(),
                format!("spec.containers[3].name: Invalid value: \"B_\": {LABEL_MSG}"),
                "spec.containers[3].image: Required value".to_owned(),
                "spec.initContainers[0].name: Duplicate value: \"a\"".to_owned(),
            ]
        );
    }

    #[test]
    fn container_ports_are_checked() {
        let p = pod_spec_with(|s| {
            s["containers"][0]["ports"] = json!([
                {"containerPort": 70000, "hostPort": -1, "protocol": "ICMP"},
                {"name": "http", "containerPort": 80},
                {"name": "http", "containerPort": 81},
                {"name": "a-very-long-port-name"},
            ]);
        });
        assert_eq!(
            messages("Pod", &p),
            [
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].ports[2].name: Duplicate value: \"http\"",
                "spec.containers[0].ports[3].name: Invalid value: \"a-very-long-port-name\": must be no more than 15 characters",
                "spec.containers[0].ports[3].containerPort: Required value",
            ]
        );
    }

    #[test]
    fn port_names_are_iana_service_names() {
        assert!(port_name_errors("http-2").is_empty());
        assert_eq!(
            port_name_errors("-A--"),
            [
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must contain at least one letter (a-z)",
                "must not contain consecutive hyphens",
                "must not begin or end with a hyphen",
            ]
        );
    }

    #[test]
    fn restart_and_dns_policies_are_enumerated() {
        let p = pod_spec_with(|s| {
            s["restartPolicy"] = json!("Sometimes");
            s["dnsPolicy"] = json!("Google");
            s["containers"][0]["imagePullPolicy"] = json!("Maybe");
        });
        assert_eq!(
            messages("Pod", &p),
            [
                "spec.containers[0].imagePullPolicy: Unsupported value: \"Maybe\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                "spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\"",
            ]
        );
    }

    #[test]
    fn active_deadline_must_be_positive() {
        let p = pod_spec_with(|s| s["activeDeadlineSeconds"] = json!(0));
        assert_eq!(
            messages("Pod", &p),
            [
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"
            ]
        );
    }

    #[test]
    fn volumes_and_mounts_are_checked() {
        let p = pod_spec_with(|s| {
            s["volumes"] = json!([{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}, {"name": "Bad", "emptyDir": {}}]);
            s["containers"][0]["volumeMounts"] = json!([
                {"name": "data", "mountPath": "/d"},
                {"name": "missing", "mountPath": "/d"},
                {"name": "Bad"},
            ]);
        });
        assert_eq!(
            messages("Pod", &p),
            [
                "spec.volumes[1].name: Duplicate value: \"data\"".to_owned(),
                format!("spec.volumes[2].name: Invalid value: \"Bad\": {LABEL_MSG}"),
                "spec.containers[0].volumeMounts[1].name: Not found: \"missing\"".to_owned(),
                "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/d\": must be unique".to_owned(),
                "spec.containers[0].volumeMounts[2].name: Not found: \"Bad\"".to_owned(),
                "spec.containers[0].volumeMounts[2].mountPath: Required value".to_owned(),
            ]
        );
    }

    #[test]
    fn resource_quantities_must_parse_and_be_non_negative() {
        let p = pod_spec_with(|s| {
            s["containers"][0]["resources"] =
                json!({"limits": {"cpu": "abc"}, "requests": {"memory": "-1Mi"}});
        });
        assert_eq!(
            messages("Pod", &p),
            [
                format!("spec.containers[0].resources.limits[cpu]: Invalid value: \"abc\": {QUANTITY_FORMAT_ERROR}"),
                "spec.containers[0].resources.requests[memory]: Invalid value: -1Mi: must be greater than or equal to 0".to_owned(),
            ]
        );
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let p = pod_spec_with(|s| {
            s["containers"][0]["resources"] = json!({
                "limits": {"cpu": "1", "memory": "1Gi", "example.com/gpu": 2},
                "requests": {"cpu": "1500m", "memory": "512Mi", "example.com/gpu": 1}});
        });
        assert_eq!(
            messages("Pod", &p),
            [
                "spec.containers[0].resources.requests: Invalid value: \"1500m\": must be less than or equal to cpu limit of 1",
                "spec.containers[0].resources.requests: Invalid value: \"1\": must be equal to example.com/gpu limit of 2",
            ]
        );
        let equal = pod_spec_with(|s| {
            s["containers"][0]["resources"] =
                json!({"limits": {"cpu": "0.1"}, "requests": {"cpu": "100m"}});
        });
        assert!(messages("Pod", &equal).is_empty());
    }

    #[test]
    fn quantities_parse_with_kubernetes_suffixes() {
        let cases = [
            ("1", 1.0),
            ("100m", 0.1),
            ("1.5", 1.5),
            (".5", 0.5),
            ("2k", 2e3),
            ("3M", 3e6),
            ("1G", 1e9),
            ("1T", 1e12),
            ("1P", 1e15),
            ("1E", 1e18),
            ("5n", 5e-9),
            ("5u", 5e-6),
            ("1Ki", 1024.0),
            ("1Mi", 1048576.0),
            ("1.5Gi", 1.5 * 1073741824.0),
            ("1Ti", 1099511627776.0),
            ("1Pi", 1125899906842624.0),
            ("1Ei", 1152921504606846976.0),
            ("1e3", 1e3),
            ("1E-3", 1e-3),
            ("+2", 2.0),
            ("-2m", -0.002),
        ];
        for (text, want) in cases {
            assert_eq!(parse_quantity(text), Some(want), "{text}");
        }
        for bad in ["", "abc", "1.2.3", "1Gb", "m", "1 Gi", "1e", "Mi"] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn service_needs_ports_unless_headless_or_external_name() {
        assert_eq!(
            messages("Service", &service(json!({"type": "ClusterIP"}))),
            ["spec.ports: Required value"]
        );
        assert!(messages("Service", &service(json!({"clusterIP": "None"}))).is_empty());
        assert_eq!(
            messages("Service", &service(json!({"type": "ExternalName"}))),
            ["spec.externalName: Required value"]
        );
        assert!(
            messages(
                "Service",
                &service(json!({"type": "ExternalName", "externalName": "db.example.com."}))
            )
            .is_empty()
        );
    }

    #[test]
    fn service_ports_are_checked() {
        let svc = service(json!({"type": "NodePort", "ports": [
            {"name": "web", "port": 0, "nodePort": 80, "targetPort": "HTTP"},
            {"name": "web", "port": 81, "protocol": "ICMP", "targetPort": 70000},
            {"port": 82, "nodePort": 30001},
            {"name": "dup", "port": 82, "nodePort": 30001}]}));
        assert_eq!(
            messages("Service", &svc),
            [
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "spec.ports[0].targetPort: Invalid value: \"HTTP\": must contain at least one letter (a-z)",
                "spec.ports[1].name: Duplicate value: \"web\"",
                "spec.ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[2].name: Required value",
                "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
                "spec.ports[3].nodePort: Duplicate value: 30001",
                "spec.ports[3]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:82, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
            ]
        );
    }

    #[test]
    fn service_enums_and_cluster_ip_node_ports() {
        let svc =
            service(json!({"type": "Magic", "sessionAffinity": "Sticky", "ports": [{"port": 80}]}));
        assert_eq!(
            messages("Service", &svc),
            [
                "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
                "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ]
        );
        let svc = service(json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30080}]}));
        assert_eq!(
            messages("Service", &svc),
            ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
    }

    #[test]
    fn deployment_strategy_must_let_a_rollout_move() {
        let with = |strategy: Value, extra: Value| {
            let mut d = deployment(
                json!({"matchLabels": {"app": "web"}}),
                json!({"app": "web"}),
            );
            d["spec"]["strategy"] = strategy;
            for (k, v) in extra.as_object().unwrap() {
                d["spec"][k] = v.clone();
            }
            messages("Deployment", &d)
        };
        let rolling = |surge: Value, unavailable: Value| json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}});
        assert!(with(rolling(json!("25%"), json!(0)), json!({})).is_empty());
        assert_eq!(
            with(rolling(json!(0), json!("0%")), json!({})),
            [
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"0%\"}: may not be 0 when `maxSurge` is 0"
            ]
        );
        assert_eq!(
            with(rolling(json!(-1), json!("150%")), json!({})),
            [
                "spec.strategy.rollingUpdate.maxSurge: Invalid value: -1: must be greater than or equal to 0",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%",
            ]
        );
        assert_eq!(
            with(rolling(json!("x"), json!(1)), json!({})),
            [
                "spec.strategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"x\"}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
            ]
        );
        assert_eq!(
            with(json!({"type": "Recreate", "rollingUpdate": {}}), json!({})),
            [
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
            ]
        );
        assert_eq!(
            with(
                json!({"type": "Recreate"}),
                json!({"minReadySeconds": 10, "progressDeadlineSeconds": 10})
            ),
            [
                "spec.progressDeadlineSeconds: Invalid value: 10: must be greater than minReadySeconds"
            ]
        );
    }

    #[test]
    fn deployment_selector_must_match_template() {
        assert!(
            messages(
                "Deployment",
                &deployment(
                    json!({"matchLabels": {"app": "web"}}),
                    json!({"app": "web"})
                )
            )
            .is_empty()
        );
        assert_eq!(
            messages(
                "Deployment",
                &deployment(
                    json!({"matchLabels": {"app": "api"}}),
                    json!({"app": "web", "tier": "fe"})
                )
            ),
            [
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\", \"tier\":\"fe\"}: `selector` does not match template `labels`"
            ]
        );
    }

    #[test]
    fn deployment_selector_is_required_and_not_empty() {
        let mut d = deployment(Value::Null, json!({"app": "web"}));
        d["spec"].as_object_mut().unwrap().remove("selector");
        assert_eq!(
            messages("Deployment", &d),
            ["spec.selector: Required value"]
        );
        assert_eq!(
            messages("Deployment", &deployment(json!({}), json!({"app": "web"}))),
            [
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
            ]
        );
    }

    #[test]
    fn replica_set_without_selector_also_mismatches() {
        let mut rs = deployment(Value::Null, json!({"app": "web"}));
        rs["spec"].as_object_mut().unwrap().remove("selector");
        assert_eq!(
            messages("ReplicaSet", &rs),
            [
                "spec.selector: Required value",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            ]
        );
    }

    #[test]
    fn selector_expressions_are_checked() {
        let selector = json!({"matchExpressions": [
            {"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Near", "values": ["x"]}]});
        assert_eq!(
            messages("Deployment", &deployment(selector.clone(), json!({"a": "x"}))),
            [
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'".to_owned(),
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'".to_owned(),
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Near\": not a valid selector operator".to_owned(),
                format!("spec.selector: Invalid value: {}: invalid label selector", go_label_selector(&selector)),
            ]
        );
        assert!(go_label_selector(&selector).starts_with(
            "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{\
             v1.LabelSelectorRequirement{Key:\"a\", Operator:\"In\", Values:[]string(nil)}, \
             v1.LabelSelectorRequirement{Key:\"b\", Operator:\"Exists\", Values:[]string{\"x\"}}"
        ));
    }

    #[test]
    fn workload_templates_are_validated_as_pods() {
        let mut d = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web", "bad key": "x"}),
        );
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("image");
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        d["spec"]["template"]["spec"]["activeDeadlineSeconds"] = json!(5);
        let msgs = messages("Deployment", &d);
        assert_eq!(
            msgs[0],
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert!(msgs[1].starts_with(
            "spec.template.labels: Invalid value: \"bad key\": name part must consist"
        ));
        assert_eq!(
            msgs[2..],
            [
                "spec.template.spec.containers[0].image: Required value",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
            ]
        );
    }

    #[test]
    fn replication_controller_rules() {
        let rc = json!({"metadata": {"name": "rc"}, "spec": {"selector": {"app": "api"}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "app", "image": "nginx"}]}}}});
        assert_eq!(
            messages("ReplicationController", &rc),
            [
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
                "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
            ]
        );
        assert_eq!(
            messages(
                "ReplicationController",
                &json!({"metadata": {"name": "rc"}, "spec": {}})
            ),
            [
                "spec.selector: Required value",
                "spec.template: Required value"
            ]
        );
    }

    #[test]
    fn daemon_set_rules() {
        let mut ds = deployment(json!({}), json!({"app": "web"}));
        ds["spec"].as_object_mut().unwrap().remove("replicas");
        assert_eq!(
            messages("DaemonSet", &ds),
            [
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset"
            ]
        );
        ds["spec"]["selector"] = json!({"matchLabels": {"app": "api"}});
        assert_eq!(
            messages("DaemonSet", &ds),
            [
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"
            ]
        );
    }

    #[test]
    fn job_rules() {
        let mut job = json!({"metadata": {"name": "j"}, "spec": {
            "parallelism": -1, "completionMode": "Sometimes",
            "selector": {"matchLabels": {"controller-uid": "u"}},
            "template": {"metadata": {"labels": {"controller-uid": "u"}},
                         "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}});
        assert_eq!(
            messages("Job", &job),
            [
                "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
                "spec.completionMode: Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\"",
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
            ]
        );
        let spec = job["spec"].as_object_mut().unwrap();
        spec.remove("parallelism");
        spec.remove("completionMode");
        spec.remove("selector");
        job["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(
            messages("Job", &job),
            [
                "spec.selector: Required value",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"controller-uid\":\"u\"}: `selector` does not match template `labels`",
            ]
        );
        job["spec"]["completionMode"] = json!("Indexed");
        assert!(messages("Job", &job).contains(
            &"spec.completions: Required value: when completion mode is Indexed".to_string()
        ));
    }

    #[test]
    fn config_map_keys_and_size() {
        let cm = json!({"metadata": {"name": "c"}, "data": {"ok.key": "v", "bad/key": "v", "..x": "v", "dup": "v"},
                        "binaryData": {"dup": "AA=="}});
        assert_eq!(
            messages("ConfigMap", &cm),
            [
                "data[..x]: Invalid value: \"..x\": must not start with '..'",
                "data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "data[dup]: Invalid value: \"dup\": duplicate of key present in binaryData",
            ]
        );
        let big =
            json!({"metadata": {"name": "c"}, "data": {"k": "v".repeat(MAX_SECRET_SIZE + 1)}});
        assert_eq!(
            messages("ConfigMap", &big),
            ["[]: Too long: may not be more than 1048576 bytes"]
        );
    }

    #[test]
    fn secret_data_is_base64_with_valid_keys() {
        let s = json!({"metadata": {"name": "s"}, "data": {"a": "aGVsbG8=", "b": "aGVsbG8", "c!": "", "d": "aG=x"}});
        assert_eq!(
            messages("Secret", &s),
            [
                "data[b]: Invalid value: illegal base64 data at input byte 4",
                "data[c!]: Invalid value: \"c!\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "data[d]: Invalid value: illegal base64 data at input byte 2",
            ]
        );
    }

    #[test]
    fn base64_lengths_and_errors_follow_go() {
        assert_eq!(base64_decoded_len(""), Ok(0));
        assert_eq!(base64_decoded_len("aGVsbG8="), Ok(5));
        assert_eq!(base64_decoded_len("aGVs\nbG8h"), Ok(6));
        assert_eq!(base64_decoded_len("aGVsbA=="), Ok(4));
        assert_eq!(base64_decoded_len("aGVsbA="), Err(7));
        assert_eq!(base64_decoded_len("aGVsbA==x"), Err(8));
        assert_eq!(base64_decoded_len("a==="), Err(1));
        assert_eq!(base64_decoded_len("ab*d"), Err(2));
    }

    #[test]
    fn big_secrets_are_too_long() {
        let data = "A".repeat((MAX_SECRET_SIZE / 3 + 1) * 4);
        let s = json!({"metadata": {"name": "s"}, "data": {"k": data}});
        assert_eq!(
            messages("Secret", &s),
            ["data: Too long: may not be more than 1048576 bytes"]
        );
    }

    #[test]
    fn pod_update_may_change_images_deadline_and_add_tolerations() {
        let old = pod_spec_with(|s| {
            s["activeDeadlineSeconds"] = json!(100);
            s["tolerations"] = json!([{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]);
        });
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        new["spec"]["activeDeadlineSeconds"] = json!(50);
        new["spec"]["tolerations"] =
            json!([{"key": "k", "operator": "Exists", "tolerationSeconds": 9}, {"key": "n"}]);
        new["spec"]["hostNetwork"] = json!(false);
        new["metadata"]["labels"] = json!({"a": "b"});
        assert_eq!(validate_update("Pod", &old, &new), Ok(()));
    }

    #[test]
    fn pod_update_forbids_other_spec_changes() {
        let old = pod();
        let mut new = old.clone();
        new["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
        assert_eq!(
            update_messages("Pod", &old, &new),
            [format!("spec: Forbidden: {POD_UPDATE_FORBIDDEN}")]
        );
        assert_eq!(
            POD_UPDATE_FORBIDDEN,
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,\
             `spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),\
             `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
        );
        let mut more = old.clone();
        more["spec"]["containers"] =
            json!([{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]);
        assert_eq!(
            update_messages("Pod", &old, &more),
            ["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
    }

    #[test]
    fn pod_update_deadline_and_toleration_rules() {
        let old = pod_spec_with(|s| {
            s["activeDeadlineSeconds"] = json!(10);
            s["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        });
        let mut longer = old.clone();
        longer["spec"]["activeDeadlineSeconds"] = json!(20);
        assert_eq!(
            update_messages("Pod", &old, &longer),
            [
                "spec.activeDeadlineSeconds: Invalid value: 20: must be less than or equal to previous value"
            ]
        );
        let mut changed = old.clone();
        changed["spec"]["tolerations"] = json!([{"key": "k", "operator": "Equal", "value": "v"}]);
        assert_eq!(
            update_messages("Pod", &old, &changed),
            [
                "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
            ]
        );
        let mut negative = pod_spec_with(|s| s["terminationGracePeriodSeconds"] = json!(-1));
        let mut one = negative.clone();
        one["spec"]["terminationGracePeriodSeconds"] = json!(1);
        assert_eq!(validate_update("Pod", &negative, &one), Ok(()));
        negative["spec"]["terminationGracePeriodSeconds"] = json!(30);
        assert_eq!(update_messages("Pod", &negative, &one).len(), 1);
    }

    #[test]
    fn service_cluster_ip_is_immutable() {
        let old = service(
            json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ports": [{"port": 80}]}),
        );
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.0.0.2");
        new["spec"]["clusterIPs"] = json!(["10.0.0.2"]);
        assert_eq!(
            update_messages("Service", &old, &new),
            ["spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.2\"}: may not change once set"]
        );
        let mut kept = old.clone();
        kept["spec"]["ports"] = json!([{"port": 81}]);
        assert_eq!(validate_update("Service", &old, &kept), Ok(()));
        let mut to_external = new.clone();
        to_external["spec"] = json!({"type": "ExternalName", "externalName": "db.example.com"});
        assert_eq!(validate_update("Service", &old, &to_external), Ok(()));
    }

    #[test]
    fn workload_selectors_are_immutable() {
        let old = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web", "v": "2"}),
        );
        let new = deployment(
            json!({"matchLabels": {"app": "web", "v": "2"}}),
            json!({"app": "web", "v": "2"}),
        );
        let want = "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable";
        for kind in ["Deployment", "ReplicaSet"] {
            assert_eq!(update_messages(kind, &old, &new), [want]);
        }
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(3);
        assert_eq!(validate_update("Deployment", &old, &scaled), Ok(()));
    }

    #[test]
    fn job_template_is_immutable() {
        let old = json!({"metadata": {"name": "j"}, "spec": {"selector": {"matchLabels": {"u": "1"}}, "template": {
            "metadata": {"labels": {"u": "1"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "busybox"}]}}}});
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:2");
        assert_eq!(
            update_messages("Job", &old, &new),
            ["spec.template: Invalid value: field is immutable"]
        );
        let mut suspended = old.clone();
        suspended["spec"]["suspend"] = json!(true);
        assert_eq!(validate_update("Job", &old, &suspended), Ok(()));
    }

    #[test]
    fn immutable_secrets_and_config_maps() {
        let old = json!({"metadata": {"name": "s"}, "immutable": true, "type": "Opaque", "data": {"a": "YQ=="}});
        let mut new = old.clone();
        new["data"]["a"] = json!("Yg==");
        new["immutable"] = json!(false);
        new["type"] = json!("kubernetes.io/tls");
        assert_eq!(
            update_messages("Secret", &old, &new),
            [
                "type: Invalid value: \"kubernetes.io/tls\": field is immutable",
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set",
            ]
        );
        let cm = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        let mut changed = cm.clone();
        changed["binaryData"] = json!({"b": "YQ=="});
        changed["metadata"]["labels"] = json!({"x": "y"});
        assert_eq!(
            update_messages("ConfigMap", &cm, &changed),
            ["binaryData: Forbidden: field is immutable when `immutable` is set"]
        );
        let mut mutable = cm.clone();
        mutable["immutable"] = json!(false);
        mutable["data"]["a"] = json!("2");
        assert_eq!(validate_update("ConfigMap", &mutable, &cm), Ok(()));
    }
}
