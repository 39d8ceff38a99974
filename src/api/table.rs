//! Server-side printing: stored objects as `meta.k8s.io/v1` Tables, the form `kubectl get`
//! asks for (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`). kubectl prints the cells
//! as given, so columns and cell formats follow Kubernetes' own printers
//! (pkg/printers/internalversion/printers.go). Like the real apiserver, every row carries the
//! wide cells too; kubectl hides priority-1 columns unless `-o wide`.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

/// What each row carries in `object`, from `?includeObject=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    /// A PartialObjectMetadata: what `-A`, `--show-labels` and `-L` read.
    #[default]
    Metadata,
    /// The whole object: what `--sort-by` reads.
    Object,
}

impl FromStr for IncludeObject {
    type Err = String;

    /// The apiserver treats an empty value as `Metadata` and answers 400 to anything unknown.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(format!("unrecognized includeObject value: {other:?}")),
        }
    }
}

/// The `columnDefinitions` of a Table of `kind`.
pub fn column_definitions(kind: &str) -> Value {
    columns(kind)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.ty,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// A Table of `objs`, in the order given (the apiserver sorts nothing, events included).
pub fn table(
    kind: &str,
    objs: &[Value],
    resource_version: &str,
    include: IncludeObject,
    now: SystemTime,
) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": column_definitions(kind),
        "rows": objs.iter().map(|o| row_with(kind, o, include, now)).collect::<Vec<_>>(),
    })
}

/// The Table inside a watch event after the first: one row and `columnDefinitions: null`.
/// The apiserver sends column definitions with the first event of a stream only, so send
/// that one with [`table`] (`get -w --watch-only` needs them for its header and for hiding
/// the wide columns).
pub fn watch_table(
    kind: &str,
    obj: &Value,
    resource_version: &str,
    include: IncludeObject,
    now: SystemTime,
) -> Value {
    let mut t = table(
        kind,
        std::slice::from_ref(obj),
        resource_version,
        include,
        now,
    );
    t["columnDefinitions"] = Value::Null;
    t
}

/// k8s.io/apimachinery/pkg/util/duration.HumanDuration: two or three significant figures.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    let days = hours / 24;
    match hours {
        ..8 => match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        },
        8..48 => format!("{hours}h"),
        48..192 => match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        },
        192..17_520 => format!("{days}d"),
        17_520..70_080 => match days % 365 {
            0 => format!("{}y", days / 365),
            d => format!("{}y{d}d", days / 365),
        },
        _ => format!("{}y", days / 365),
    }
}

fn row_with(kind: &str, obj: &Value, include: IncludeObject, now: SystemTime) -> Value {
    let mut row = json!({"cells": cells(kind, obj, now), "object": embedded(kind, obj, include)});
    if kind == "Pod"
        && let Some(conditions) = pod_row_conditions(obj)
    {
        row["conditions"] = conditions;
    }
    row
}

fn embedded(kind: &str, obj: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => {
            let metadata = match &obj["metadata"] {
                m @ Value::Object(_) => m.clone(),
                _ => json!({}),
            };
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata})
        }
        IncludeObject::Object => {
            // List items may be stored without kind/apiVersion, but kubectl decodes each row
            // object on its own and needs them.
            let mut full = obj.clone();
            if let Some(map) = full.as_object_mut() {
                map.entry("kind").or_insert_with(|| kind.into());
                if let Some(v) = api_version(kind) {
                    map.entry("apiVersion").or_insert_with(|| v.into());
                }
            }
            full
        }
    }
}

fn api_version(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod"
        | "Node"
        | "Service"
        | "Endpoints"
        | "Namespace"
        | "Event"
        | "ConfigMap"
        | "Secret"
        | "ReplicationController" => Some("v1"),
        "Deployment" | "ReplicaSet" | "DaemonSet" => Some("apps/v1"),
        "Job" => Some("batch/v1"),
        "EndpointSlice" => Some("discovery.k8s.io/v1"),
        _ => None,
    }
}

// ---- columns ----

struct Column {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
}

const fn col(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column {
        name,
        ty,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, description: &'static str) -> Column {
    Column {
        name,
        ty: "string",
        format: "",
        description,
        priority: 1,
    }
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

// `format: "name"` is what makes `kubectl get all` prefix names with `pod/`.
const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    description: NAME_DOC,
    priority: 0,
};
const AGE: Column = col("Age", "string", AGE_DOC);
const CONTAINERS: Column = wide("Containers", "Names of each container in the template.");
const IMAGES: Column = wide(
    "Images",
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = wide(
    "Selector",
    "A label query over pods that are managed by this object.",
);

#[rustfmt::skip]
const POD: &[Column] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    AGE,
    wide("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
    wide("Node", "NodeName is a request to schedule this pod onto a specific node."),
    wide("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node."),
    wide("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness."),
];
#[rustfmt::skip]
const NODE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "List of addresses reachable to the node."),
    wide("External-IP", "List of addresses reachable to the node."),
    wide("OS-Image", "OS Image reported by the node from /etc/os-release."),
    wide("Kernel-Version", "Kernel Version reported by the node from 'uname -r'."),
    wide("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API."),
];
#[rustfmt::skip]
const DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
#[rustfmt::skip]
const REPLICA_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", "Replicas is the number of desired replicas."),
    col("Current", "integer", "Replicas is the most recently observed number of replicas."),
    col("Ready", "integer", "The number of ready replicas for this replica set."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
#[rustfmt::skip]
const DAEMON_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
    col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
    col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod."),
    col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
#[rustfmt::skip]
const JOB: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", "The number of pods which reached phase Succeeded."),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
#[rustfmt::skip]
const SERVICE: &[Column] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    col("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "Route service traffic to pods with label keys and values matching this selector."),
];
const ENDPOINTS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];
const ENDPOINT_SLICE: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];
const NAMESPACE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];
// Events lead with Last Seen; their Name is a wide column.
#[rustfmt::skip]
const EVENT: &[Column] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    wide("Subobject", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
    wide("Source", "The component reporting this event."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "The time at which the event was first recorded."),
    wide("Count", "The number of times this event has occurred."),
    Column { priority: 1, ..NAME },
];
const CONFIG_MAP: &[Column] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data."),
    AGE,
];
#[rustfmt::skip]
const SECRET: &[Column] = &[
    NAME,
    col("Type", "string", "Used to facilitate programmatic handling of secret data."),
    col("Data", "string", "Data contains the secret data."),
    AGE,
];
const GENERIC: &[Column] = &[NAME, AGE];

fn columns(kind: &str) -> &'static [Column] {
    match kind {
        "Pod" => POD,
        "Node" => NODE,
        "Deployment" => DEPLOYMENT,
        "ReplicaSet" | "ReplicationController" => REPLICA_SET,
        "DaemonSet" => DAEMON_SET,
        "Job" => JOB,
        "Service" => SERVICE,
        "Endpoints" => ENDPOINTS,
        "EndpointSlice" => ENDPOINT_SLICE,
        "Namespace" => NAMESPACE,
        "Event" => EVENT,
        "ConfigMap" => CONFIG_MAP,
        "Secret" => SECRET,
        _ => GENERIC,
    }
}

// ---- cells: one function per kind, in the order of `columns` ----

fn cells(kind: &str, obj: &Value, now: SystemTime) -> Vec<Value> {
    match kind {
        "Pod" => pod_cells(obj, now),
        "Node" => node_cells(obj, now),
        "Deployment" => deployment_cells(obj, now),
        "ReplicaSet" => replica_set_cells(obj, now, format_selector(&obj["spec"]["selector"])),
        // An RC's selector is a plain label map.
        "ReplicationController" => {
            replica_set_cells(obj, now, format_labels(&obj["spec"]["selector"]))
        }
        "DaemonSet" => daemon_set_cells(obj, now),
        "Job" => job_cells(obj, now),
        "Service" => service_cells(obj, now),
        "Endpoints" => vec![
            name(obj),
            format_endpoints(obj).into(),
            age(obj, now).into(),
        ],
        "EndpointSlice" => vec![
            name(obj),
            str_of(&obj["addressType"]).into(),
            first_few(
                list(&obj["ports"])
                    .iter()
                    .map(|p| int_of(&p["port"]).to_string()),
            )
            .into(),
            first_few(
                list(&obj["endpoints"])
                    .iter()
                    .flat_map(|e| list(&e["addresses"]).iter().map(|a| str_of(a).to_string())),
            )
            .into(),
            age(obj, now).into(),
        ],
        "Namespace" => vec![
            name(obj),
            str_of(&obj["status"]["phase"]).into(),
            age(obj, now).into(),
        ],
        "Event" => event_cells(obj, now),
        "ConfigMap" => {
            let data = count_keys(&obj["data"]) + count_keys(&obj["binaryData"]);
            vec![name(obj), data.into(), age(obj, now).into()]
        }
        "Secret" => {
            let data = count_keys(&obj["data"]);
            vec![
                name(obj),
                str_of(&obj["type"]).into(),
                data.into(),
                age(obj, now).into(),
            ]
        }
        _ => vec![name(obj), age(obj, now).into()],
    }
}

/// printPod, including its quirks: init containers first, then app containers from last to
/// first so the first container's state wins, and restarts counted only for the phase shown.
fn pod_cells(pod: &Value, now: SystemTime) -> Vec<Value> {
    let (spec, status) = (&pod["spec"], &pod["status"]);
    let phase = str_of(&status["phase"]);
    let mut reason = match str_of(&status["reason"]) {
        "" => phase,
        r => r,
    }
    .to_string();
    if list(&status["conditions"])
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    // Sidecars (init containers with restartPolicy Always) count as containers.
    let init_specs = list(&spec["initContainers"]);
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| c["name"] == name && c["restartPolicy"] == "Always")
    };
    let total = list(&spec["containers"]).len()
        + init_specs
            .iter()
            .filter(|c| c["restartPolicy"] == "Always")
            .count();
    let mut ready = 0;
    let (mut restarts, mut sidecar_restarts) = (0, 0);
    let (mut last_restart, mut last_sidecar_restart) = (None, None);

    let mut initializing = false;
    for (i, c) in list(&status["initContainerStatuses"]).iter().enumerate() {
        let count = int_of(&c["restartCount"]);
        let finished = timestamp(&c["lastState"]["terminated"]["finishedAt"]);
        restarts += count;
        last_restart = last_restart.max(finished);
        let sidecar = is_sidecar(str_of(&c["name"]));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = last_sidecar_restart.max(finished);
        }
        let terminated = &c["state"]["terminated"];
        let waiting = str_of(&c["state"]["waiting"]["reason"]);
        if terminated.is_object() && int_of(&terminated["exitCode"]) == 0 {
            continue;
        }
        if sidecar && c["started"] == true {
            if c["ready"] == true {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_object() {
            format!("Init:{}", terminated_reason(terminated))
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(status, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in list(&status["containerStatuses"]).iter().rev() {
            restarts += int_of(&c["restartCount"]);
            last_restart = last_restart.max(timestamp(&c["lastState"]["terminated"]["finishedAt"]));
            let terminated = &c["state"]["terminated"];
            let waiting = str_of(&c["state"]["waiting"]["reason"]);
            if !waiting.is_empty() {
                reason = waiting.into();
            } else if terminated.is_object() {
                reason = terminated_reason(terminated);
            } else if c["ready"] == true && c["state"]["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        // A container that exited cleanly while another still runs is no reason to say Completed.
        if reason == "Completed" && has_running {
            reason = if condition_true(status, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .into();
        }
    }

    if !pod["metadata"]["deletionTimestamp"].is_null() {
        if status["reason"] == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", elapsed(t, now)),
        _ => restarts.to_string(),
    };
    let ip = list(&status["podIPs"])
        .first()
        .map_or_else(|| str_of(&status["podIP"]), |p| str_of(&p["ip"]));
    let gates = list(&spec["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passed = gates
            .iter()
            .filter(|g| {
                list(&status["conditions"])
                    .iter()
                    .find(|c| c["type"] == g["conditionType"])
                    .is_some_and(|c| c["status"] == "True")
            })
            .count();
        format!("{passed}/{}", gates.len())
    };
    vec![
        name(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts.into(),
        age(pod, now).into(),
        or_none(ip).into(),
        or_none(str_of(&spec["nodeName"])).into(),
        or_none(str_of(&status["nominatedNodeName"])).into(),
        readiness_gates.into(),
    ]
}

/// A terminated container's reason, or its signal or exit code when it gave none.
fn terminated_reason(terminated: &Value) -> String {
    match (str_of(&terminated["reason"]), int_of(&terminated["signal"])) {
        ("", 0) => format!("ExitCode:{}", int_of(&terminated["exitCode"])),
        ("", signal) => format!("Signal:{signal}"),
        (reason, _) => reason.into(),
    }
}

/// Rows of finished pods carry a Completed condition, as the apiserver's do.
fn pod_row_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match str_of(&pod["status"]["phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

fn node_cells(node: &Value, now: SystemTime) -> Vec<Value> {
    let (status, info) = (&node["status"], &node["status"]["nodeInfo"]);
    // Later duplicates win, as in printNode's condition map.
    let ready = list(&status["conditions"])
        .iter()
        .rfind(|c| c["type"] == "Ready");
    let mut state = match ready {
        Some(c) if c["status"] == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }
    .to_string();
    if node["spec"]["unschedulable"] == true {
        state.push_str(",SchedulingDisabled");
    }
    let roles: BTreeSet<&str> = labels(&node["metadata"]["labels"])
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => Some(role),
            None if k == "kubernetes.io/role" => Some(v),
            None => None,
        })
        .filter(|role| !role.is_empty())
        .collect();
    let address = |ty: &str| {
        list(&status["addresses"])
            .iter()
            .find(|a| a["type"] == ty)
            .map_or("<none>", |a| str_of(&a["address"]))
    };
    vec![
        name(node),
        state.into(),
        or_none(&roles.into_iter().collect::<Vec<_>>().join(",")).into(),
        age(node, now).into(),
        str_of(&info["kubeletVersion"]).into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        or_unknown(str_of(&info["osImage"])).into(),
        or_unknown(str_of(&info["kernelVersion"])).into(),
        or_unknown(str_of(&info["containerRuntimeVersion"])).into(),
    ]
}

fn deployment_cells(d: &Value, now: SystemTime) -> Vec<Value> {
    let (spec, status) = (&d["spec"], &d["status"]);
    let (names, images) = containers(&spec["template"]["spec"]);
    // printDeployment prints an empty selector as "", not "<none>".
    let selector = selector_string(&spec["selector"]).unwrap_or_else(|| "<invalid>".into());
    vec![
        name(d),
        format!(
            "{}/{}",
            int_of(&status["readyReplicas"]),
            replicas(&spec["replicas"])
        )
        .into(),
        int_of(&status["updatedReplicas"]).into(),
        int_of(&status["availableReplicas"]).into(),
        age(d, now).into(),
        names.into(),
        images.into(),
        selector.into(),
    ]
}

fn replica_set_cells(rs: &Value, now: SystemTime, selector: String) -> Vec<Value> {
    let (spec, status) = (&rs["spec"], &rs["status"]);
    let (names, images) = containers(&spec["template"]["spec"]);
    vec![
        name(rs),
        replicas(&spec["replicas"]).into(),
        int_of(&status["replicas"]).into(),
        int_of(&status["readyReplicas"]).into(),
        age(rs, now).into(),
        names.into(),
        images.into(),
        selector.into(),
    ]
}

fn daemon_set_cells(ds: &Value, now: SystemTime) -> Vec<Value> {
    let (spec, status) = (&ds["spec"], &ds["status"]);
    let (names, images) = containers(&spec["template"]["spec"]);
    vec![
        name(ds),
        int_of(&status["desiredNumberScheduled"]).into(),
        int_of(&status["currentNumberScheduled"]).into(),
        int_of(&status["numberReady"]).into(),
        int_of(&status["updatedNumberScheduled"]).into(),
        int_of(&status["numberAvailable"]).into(),
        format_labels(&spec["template"]["spec"]["nodeSelector"]).into(),
        age(ds, now).into(),
        names.into(),
        images.into(),
        format_selector(&spec["selector"]).into(),
    ]
}

fn job_cells(job: &Value, now: SystemTime) -> Vec<Value> {
    let (spec, status) = (&job["spec"], &job["status"]);
    let succeeded = int_of(&status["succeeded"]);
    let completions = match (spec["completions"].as_i64(), int_of(&spec["parallelism"])) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, p) if p > 1 => format!("{succeeded}/1 of {p}"),
        (None, _) => format!("{succeeded}/1"),
    };
    let duration = match timestamp(&status["startTime"]) {
        None => String::new(),
        Some(start) => elapsed(start, timestamp(&status["completionTime"]).unwrap_or(now)),
    };
    // The first condition of a type decides, as in hasJobCondition.
    let has = |ty: &str| {
        list(&status["conditions"])
            .iter()
            .find(|c| c["type"] == ty)
            .is_some_and(|c| c["status"] == "True")
    };
    let state = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if !job["metadata"]["deletionTimestamp"].is_null() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = containers(&spec["template"]["spec"]);
    vec![
        name(job),
        state.into(),
        completions.into(),
        duration.into(),
        age(job, now).into(),
        names.into(),
        images.into(),
        format_selector(&spec["selector"]).into(),
    ]
}

fn service_cells(svc: &Value, now: SystemTime) -> Vec<Value> {
    let spec = &svc["spec"];
    // ClusterIP and TCP are the API defaults, for objects stored without them.
    let ty = match str_of(&spec["type"]) {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = list(&spec["clusterIPs"])
        .first()
        .map_or_else(|| or_none(str_of(&spec["clusterIP"])), str_of);
    let ports: Vec<String> = list(&spec["ports"])
        .iter()
        .map(|p| {
            let protocol = match str_of(&p["protocol"]) {
                "" => "TCP",
                proto => proto,
            };
            match (int_of(&p["port"]), int_of(&p["nodePort"])) {
                (port, node_port) if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                (port, _) => format!("{port}/{protocol}"),
            }
        })
        .collect();
    vec![
        name(svc),
        ty.into(),
        cluster_ip.into(),
        service_external_ip(svc, ty).into(),
        or_none(&ports.join(",")).into(),
        age(svc, now).into(),
        format_labels(&spec["selector"]).into(),
    ]
}

/// getServiceExternalIP as the apiserver calls it (wide, so load balancer names are not cut).
fn service_external_ip(svc: &Value, ty: &str) -> String {
    let external: Vec<&str> = list(&svc["spec"]["externalIPs"])
        .iter()
        .map(str_of)
        .collect();
    match ty {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".into(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = list(&svc["status"]["loadBalancer"]["ingress"])
                .iter()
                .map(|i| match str_of(&i["ip"]) {
                    "" => str_of(&i["hostname"]),
                    ip => ip,
                })
                .filter(|s| !s.is_empty())
                .collect();
            let all: Vec<&str> = ingress.into_iter().chain(external).collect();
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_of(&svc["spec"]["externalName"]).into(),
        _ => "<unknown>".into(),
    }
}

/// formatEndpoints: the first three `ip:port`s, then how many more.
/// The first three items joined with commas and how many more there are,
/// or `<unset>`, as kubectl prints an EndpointSlice's ports and addresses.
fn first_few(items: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = items.collect();
    match all.len() {
        0 => "<unset>".into(),
        n if n > 3 => format!("{} + {} more...", all[..3].join(","), n - 3),
        _ => all.join(","),
    }
}

fn format_endpoints(ep: &Value) -> String {
    const SHOWN: usize = 3;
    let subsets = list(&ep["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut all = Vec::new();
    for ss in subsets {
        let addresses = list(&ss["addresses"]);
        let ips = addresses.iter().map(|a| str_of(&a["ip"]));
        let ports = list(&ss["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            all.extend(ips.map(String::from));
            continue;
        }
        for port in ports.iter().map(|p| int_of(&p["port"])) {
            // net.JoinHostPort: IPv6 addresses in brackets.
            all.extend(ips.clone().map(|ip| {
                if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                }
            }));
        }
    }
    let shown = all[..all.len().min(SHOWN)].join(",");
    if all.len() > SHOWN {
        format!("{shown} + {} more...", all.len() - SHOWN)
    } else {
        shown
    }
}

fn event_cells(ev: &Value, now: SystemTime) -> Vec<Value> {
    // Events from events.k8s.io carry eventTime and series instead of the timestamps and count.
    let first = match timestamp(&ev["firstTimestamp"]) {
        Some(t) => elapsed(t, now),
        None => since(timestamp(&ev["eventTime"]), now),
    };
    let mut last =
        timestamp(&ev["lastTimestamp"]).map_or_else(|| first.clone(), |t| elapsed(t, now));
    let mut count = int_of(&ev["count"]);
    if ev["series"].is_object() {
        last = since(timestamp(&ev["series"]["lastObservedTime"]), now);
        count = int_of(&ev["series"]["count"]);
    } else if count == 0 {
        count = 1;
    }
    let involved = &ev["involvedObject"];
    let kind = str_of(&involved["kind"]).to_lowercase();
    let object = match str_of(&involved["name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let non_empty = |a: &'static str, b: &'static str| match str_of(&ev["source"][a]) {
        "" => str_of(&ev[b]),
        s => s,
    };
    let source = match (
        non_empty("component", "reportingComponent"),
        non_empty("host", "reportingInstance"),
    ) {
        (component, "") => component.to_string(),
        (component, instance) => format!("{component}, {instance}"),
    };
    vec![
        last.into(),
        str_of(&ev["type"]).into(),
        str_of(&ev["reason"]).into(),
        object.into(),
        str_of(&involved["fieldPath"]).into(),
        source.into(),
        str_of(&ev["message"]).trim().into(),
        first.into(),
        count.into(),
        name(ev),
    ]
}

// ---- formatting helpers ----

/// labels.FormatLabels: `k=v` pairs sorted by key, or "<none>".
fn format_labels(map: &Value) -> String {
    let mut pairs: Vec<_> = labels(map).collect();
    pairs.sort_unstable();
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    or_none(&joined.join(",")).into()
}

/// metav1.FormatLabelSelector: "<none>" when empty, "<error>" when invalid.
fn format_selector(selector: &Value) -> String {
    match selector_string(selector) {
        Some(s) if s.is_empty() => "<none>".into(),
        Some(s) => s,
        None => "<error>".into(),
    }
}

/// LabelSelectorAsSelector(..).String(): requirements sorted by key, e.g.
/// `app=kubia,tier in (a,b)`; None when an expression is invalid.
fn selector_string(selector: &Value) -> Option<String> {
    let mut reqs: Vec<(&str, String)> = labels(&selector["matchLabels"])
        .map(|(k, v)| (k, format!("{k}={v}")))
        .collect();
    for e in list(&selector["matchExpressions"]) {
        let key = str_of(&e["key"]);
        let mut values: Vec<&str> = list(&e["values"]).iter().map(str_of).collect();
        values.sort_unstable();
        let text = match (str_of(&e["operator"]), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return None,
        };
        reqs.push((key, text));
    }
    reqs.sort_by_key(|(k, _)| *k);
    Some(
        reqs.into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// layoutContainerCells: container names and images, comma-separated.
fn containers(pod_spec: &Value) -> (String, String) {
    let cs = list(&pod_spec["containers"]);
    let join = |field: &str| {
        cs.iter()
            .map(|c| str_of(&c[field]))
            .collect::<Vec<_>>()
            .join(",")
    };
    (join("name"), join("image"))
}

fn name(obj: &Value) -> Value {
    str_of(&obj["metadata"]["name"]).into()
}

fn age(obj: &Value, now: SystemTime) -> String {
    since(timestamp(&obj["metadata"]["creationTimestamp"]), now)
}

/// translateTimestampSince: "<unknown>" for a missing timestamp.
fn since(t: Option<SystemTime>, now: SystemTime) -> String {
    t.map_or_else(|| "<unknown>".into(), |t| elapsed(t, now))
}

/// HumanDuration of `to - from`, which tolerates clocks up to 2s apart.
fn elapsed(from: SystemTime, to: SystemTime) -> String {
    match to.duration_since(from) {
        Ok(d) => human_duration(d),
        Err(e) if e.duration() < Duration::from_secs(2) => "0s".into(),
        Err(_) => "<invalid>".into(),
    }
}

fn timestamp(v: &Value) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(v.as_str()?).ok()
}

fn condition_true(status: &Value, ty: &str) -> bool {
    list(&status["conditions"])
        .iter()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

/// Spec replicas, which the API defaults to 1.
fn replicas(v: &Value) -> i64 {
    v.as_i64().unwrap_or(1)
}

fn labels(map: &Value) -> impl Iterator<Item = (&str, &str)> {
    map.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), str_of(v)))
}

fn count_keys(map: &Value) -> usize {
    map.as_object().map_or(0, serde_json::Map::len)
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "<none>" } else { s }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "<unknown>" } else { s }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn int_of(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2026-11-26T15:00:00Z").unwrap()
    }

    /// The RFC3339 time `secs` seconds before `now()`.
    fn ago(secs: u64) -> String {
        humantime::format_rfc3339_seconds(now() - Duration::from_secs(secs)).to_string()
    }

    fn cells(kind: &str, obj: &Value) -> Value {
        row_with(kind, obj, IncludeObject::default(), now())["cells"].take()
    }

    fn pod(status: &Value) -> Value {
        json!({
            "metadata": {"name": "kubia", "creationTimestamp": ago(30)},
            "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia"}]},
            "status": status,
        })
    }

    /// Ready, Status and Restarts of a pod.
    fn pod_state(p: &Value) -> Value {
        let c = cells("Pod", p);
        json!([c[1], c[2], c[3]])
    }

    #[test]
    fn human_duration_boundaries() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1s"),
            (119, "119s"),
            (120, "2m"),
            (121, "2m1s"),
            (599, "9m59s"),
            (600, "10m"),
            (601, "10m"),
            (10_799, "179m"),
            (10_800, "3h"),
            (10_860, "3h1m"),
            (28_799, "7h59m"),
            (28_800, "8h"),
            (28_860, "8h"),
            (172_799, "47h"),
            (172_800, "2d"),
            (176_400, "2d1h"),
            (691_199, "7d23h"),
            (691_200, "8d"),
            (63_071_999, "729d"),
            (63_072_000, "2y"),
            (63_158_400, "2y1d"),
            (252_287_999, "7y364d"),
            (252_288_000, "8y"),
            (315_360_000, "10y"),
        ];
        for &(secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}s");
        }
        assert_eq!(human_duration(Duration::from_millis(1_999)), "1s");
    }

    #[test]
    fn future_and_missing_timestamps() {
        let n = now();
        assert_eq!(elapsed(n + Duration::from_millis(1_900), n), "0s");
        assert_eq!(elapsed(n + Duration::from_secs(2), n), "<invalid>");
        assert_eq!(since(None, n), "<unknown>");
        let age_of = |created: Value| {
            cells(
                "Lease",
                &json!({"metadata": {"creationTimestamp": created}}),
            )[1]
            .take()
        };
        assert_eq!(age_of(Value::Null), "<unknown>");
        assert_eq!(age_of(json!("soon")), "<unknown>");
        assert_eq!(age_of(json!("2026-11-26T14:59:59.5Z")), "0s");
        assert_eq!(age_of(json!("2026-11-26T15:00:05Z")), "<invalid>");
    }

    #[test]
    fn pod_pending_and_creating() {
        let p = pod(&json!({"phase": "Pending"}));
        assert_eq!(
            cells("Pod", &p),
            json!([
                "kubia", "0/1", "Pending", "0", "30s", "<none>", "<none>", "<none>", "<none>"
            ])
        );
        let p = pod(&json!({"phase": "Pending", "containerStatuses": [
            {"name": "kubia", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]}));
        assert_eq!(pod_state(&p), json!(["0/1", "ContainerCreating", "0"]));
    }

    #[test]
    fn pod_running_with_wide_cells() {
        let mut p = pod(&json!({
            "phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/gate", "status": "True"}],
            "containerStatuses": [{"name": "kubia", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(20)}}}],
        }));
        p["spec"]["nodeName"] = json!("edge-1");
        p["spec"]["readinessGates"] =
            json!([{"conditionType": "example.com/gate"}, {"conditionType": "example.com/other"}]);
        assert_eq!(
            cells("Pod", &p),
            json!([
                "kubia",
                "1/1",
                "Running",
                "0",
                "30s",
                "10.42.0.5",
                "edge-1",
                "<none>",
                "1/2"
            ])
        );
    }

    #[test]
    fn pod_crash_loop_shows_last_restart() {
        let p = pod(&json!({"phase": "Running", "containerStatuses": [{
            "name": "kubia", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(45)}},
        }]}));
        assert_eq!(
            pod_state(&p),
            json!(["0/1", "CrashLoopBackOff", "3 (45s ago)"])
        );
    }

    #[test]
    fn pod_completed_carries_row_condition() {
        let p = pod(&json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "kubia", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
        ]}));
        assert_eq!(pod_state(&p), json!(["0/1", "Completed", "0"]));
        let expected = json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]);
        assert_eq!(
            row_with("Pod", &p, IncludeObject::default(), now())["conditions"],
            expected
        );
        assert!(
            row_with(
                "Pod",
                &pod(&json!({"phase": "Running"})),
                IncludeObject::default(),
                now()
            )
            .get("conditions")
            .is_none()
        );
    }

    #[test]
    fn pod_terminated_reasons() {
        let status = |terminated: Value| {
            let p = pod(&json!({"phase": "Failed", "containerStatuses": [
                {"name": "kubia", "restartCount": 0, "state": {"terminated": terminated}}
            ]}));
            pod_state(&p)[1].take()
        };
        assert_eq!(status(json!({"exitCode": 1, "reason": "Error"})), "Error");
        assert_eq!(
            status(json!({"exitCode": 137, "reason": "OOMKilled"})),
            "OOMKilled"
        );
        assert_eq!(status(json!({"exitCode": 137, "signal": 9})), "Signal:9");
        assert_eq!(status(json!({"exitCode": 3})), "ExitCode:3");
    }

    #[test]
    fn pod_terminating() {
        let mut p = pod(&json!({"phase": "Running", "containerStatuses": [
            {"name": "kubia", "ready": true, "restartCount": 0, "state": {"running": {}}}
        ]}));
        p["metadata"]["deletionTimestamp"] = json!(ago(5));
        assert_eq!(pod_state(&p), json!(["1/1", "Terminating", "0"]));
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(pod_state(&p)[1], "Unknown");
        // A finished pod being deleted keeps its final status.
        let mut done = pod(&json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "kubia", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
        ]}));
        done["metadata"]["deletionTimestamp"] = json!(ago(5));
        assert_eq!(pod_state(&done)[1], "Completed");
    }

    #[test]
    fn pod_init_containers() {
        let init = |status: Value| {
            let mut p = pod(&status);
            p["spec"]["initContainers"] = json!([{"name": "init", "image": "busybox"}]);
            pod_state(&p)
        };
        let app_waiting = json!([{"name": "kubia", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]);
        let running = json!({"phase": "Pending", "containerStatuses": app_waiting,
            "initContainerStatuses": [{"name": "init", "restartCount": 0, "state": {"running": {}}}]});
        assert_eq!(init(running), json!(["0/1", "Init:0/1", "0"]));
        let crashing = json!({"phase": "Pending", "initContainerStatuses": [{
            "name": "init", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(10)}},
        }]});
        assert_eq!(
            init(crashing),
            json!(["0/1", "Init:CrashLoopBackOff", "2 (10s ago)"])
        );
        let failed = |t: Value| json!({"phase": "Pending", "initContainerStatuses": [{"name": "init", "state": {"terminated": t}}]});
        assert_eq!(
            init(failed(json!({"exitCode": 1, "reason": "Error"})))[1],
            "Init:Error"
        );
        assert_eq!(init(failed(json!({"exitCode": 3})))[1], "Init:ExitCode:3");
        let done = json!({"phase": "Pending", "containerStatuses": app_waiting,
            "initContainerStatuses": [{"name": "init", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]});
        assert_eq!(init(done), json!(["0/1", "PodInitializing", "0"]));
    }

    #[test]
    fn pod_sidecar_counts_as_container() {
        let mut p = pod(&json!({"phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(100)}}}],
            "containerStatuses": [{"name": "kubia", "ready": true, "restartCount": 0, "state": {"running": {}}}]}));
        p["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
        assert_eq!(pod_state(&p), json!(["2/2", "Running", "1 (100s ago)"]));
    }

    #[test]
    fn pod_completed_container_beside_running_one() {
        let mut p = pod(&json!({"phase": "Running", "containerStatuses": [
            {"name": "job", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "kubia", "ready": true, "restartCount": 0, "state": {"running": {}}},
        ]}));
        p["spec"]["containers"] = json!([{"name": "job"}, {"name": "kubia"}]);
        assert_eq!(pod_state(&p), json!(["1/2", "NotReady", "0"]));
        p["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(pod_state(&p)[1], "Running");
    }

    #[test]
    fn pod_scheduling_gated() {
        let conditions =
            json!([{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]);
        let p = pod(&json!({"phase": "Pending", "conditions": conditions}));
        assert_eq!(pod_state(&p)[1], "SchedulingGated");
    }

    #[test]
    fn node_rows() {
        let node = |ready: &str| {
            json!({
                "metadata": {"name": "edge-1", "creationTimestamp": ago(7_200), "labels": {
                    "node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "",
                    "kubernetes.io/role": "edge", "kubernetes.io/hostname": "edge-1"}},
                "spec": {},
                "status": {
                    "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready}],
                    "addresses": [{"type": "Hostname", "address": "edge-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
                    "nodeInfo": {"kubeletVersion": "v1.37.1", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0"},
                },
            })
        };
        assert_eq!(
            cells("Node", &node("True")),
            json!([
                "edge-1",
                "Ready",
                "control-plane,edge,master",
                "120m",
                "v1.37.1",
                "192.168.1.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0",
                "<unknown>",
            ])
        );
        assert_eq!(cells("Node", &node("False"))[1], "NotReady");
        assert_eq!(cells("Node", &node("Unknown"))[1], "NotReady");
        let mut cordoned = node("True");
        cordoned["spec"]["unschedulable"] = json!(true);
        assert_eq!(cells("Node", &cordoned)[1], "Ready,SchedulingDisabled");
        let bare = cells("Node", &json!({"metadata": {"name": "n"}}));
        assert_eq!(json!([bare[1], bare[2]]), json!(["Unknown", "<none>"]));
    }

    #[test]
    fn service_rows() {
        let svc = |spec: Value| json!({"metadata": {"name": "kubia", "creationTimestamp": ago(60)}, "spec": spec});
        let c = cells(
            "Service",
            &svc(json!({
                "type": "ClusterIP", "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}], "selector": {"tier": "web", "app": "kubia"},
            })),
        );
        assert_eq!(
            c,
            json!([
                "kubia",
                "ClusterIP",
                "10.43.0.10",
                "<none>",
                "80/TCP",
                "60s",
                "app=kubia,tier=web"
            ])
        );
        let c = cells(
            "Service",
            &svc(json!({"type": "NodePort", "clusterIP": "10.43.0.11",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]})),
        );
        assert_eq!(
            json!([c[2], c[4], c[6]]),
            json!(["10.43.0.11", "80:30080/TCP,53/UDP", "<none>"])
        );
        let c = cells(
            "Service",
            &svc(json!({"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}]})),
        );
        assert_eq!(json!([c[2], c[3]]), json!(["<none>", "<pending>"]));
        let mut lb = svc(json!({"type": "LoadBalancer", "externalIPs": ["5.6.7.8"]}));
        lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "lb.example.com"}]}});
        let c = cells("Service", &lb);
        assert_eq!(
            json!([c[3], c[4]]),
            json!(["1.2.3.4,lb.example.com,5.6.7.8", "<none>"])
        );
        let c = cells(
            "Service",
            &svc(json!({"clusterIP": "None", "externalIPs": ["9.9.9.9"]})),
        );
        assert_eq!(
            json!([c[1], c[2], c[3]]),
            json!(["ClusterIP", "None", "9.9.9.9"])
        );
        let c = cells(
            "Service",
            &svc(json!({"type": "ExternalName", "externalName": "example.com"})),
        );
        assert_eq!(c[3], "example.com");
    }

    #[test]
    fn endpoints_rows() {
        let addresses: Vec<Value> = (1..=5)
            .map(|i| json!({"ip": format!("10.42.0.{i}")}))
            .collect();
        let ep = json!({"metadata": {"name": "kubia"}, "subsets": [{"addresses": addresses, "ports": [{"port": 8080}]}]});
        assert_eq!(
            cells("Endpoints", &ep)[1],
            "10.42.0.1:8080,10.42.0.2:8080,10.42.0.3:8080 + 2 more..."
        );
        let ep = json!({"metadata": {"name": "kubia"}, "subsets": [
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]},
            {"addresses": [{"ip": "10.42.0.9"}]},
        ]});
        assert_eq!(cells("Endpoints", &ep)[1], "[fd00::1]:80,10.42.0.9");
        assert_eq!(
            cells("Endpoints", &json!({"metadata": {"name": "kubia"}}))[1],
            "<none>"
        );
    }

    #[test]
    fn endpoint_slice_rows() {
        let eps: Vec<Value> = (1..=4)
            .map(|i| json!({"addresses": [format!("10.42.0.{i}")]}))
            .collect();
        let slice = json!({"metadata": {"name": "kubia-x1"}, "addressType": "IPv4",
                           "ports": [{"port": 8080}], "endpoints": eps});
        let row = cells("EndpointSlice", &slice);
        assert_eq!(row[1], "IPv4");
        assert_eq!(row[2], "8080");
        assert_eq!(row[3], "10.42.0.1,10.42.0.2,10.42.0.3 + 1 more...");
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv4", "endpoints": []});
        let row = cells("EndpointSlice", &empty);
        assert_eq!((&row[2], &row[3]), (&json!("<unset>"), &json!("<unset>")));
    }

    #[test]
    fn event_rows() {
        let ev = json!({
            "metadata": {"name": "kubia.17f0", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "kubia", "fieldPath": "spec.containers{kubia}"},
            "reason": "Pulled", "message": "Successfully pulled image \"luksa/kubia\"\n", "type": "Normal",
            "source": {"component": "kubelet", "host": "edge-1"},
            "firstTimestamp": ago(300), "lastTimestamp": ago(45), "count": 4,
        });
        assert_eq!(
            cells("Event", &ev),
            json!([
                "45s",
                "Normal",
                "Pulled",
                "pod/kubia",
                "spec.containers{kubia}",
                "kubelet, edge-1",
                "Successfully pulled image \"luksa/kubia\"",
                "5m",
                4,
                "kubia.17f0",
            ])
        );
        // events.k8s.io style: eventTime, reportingComponent, no count.
        let ev = json!({
            "metadata": {"name": "e"}, "involvedObject": {"kind": "Node"}, "type": "Warning", "reason": "Rebooted",
            "eventTime": "2026-11-26T14:59:00.123456Z", "reportingComponent": "bramble-agent",
        });
        assert_eq!(
            cells("Event", &ev),
            json!([
                "59s",
                "Warning",
                "Rebooted",
                "node",
                "",
                "bramble-agent",
                "",
                "59s",
                1,
                "e"
            ])
        );
    }

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "kubia"}}, "spec": {"containers": [
            {"name": "kubia", "image": "luksa/kubia:v1"}, {"name": "proxy", "image": "envoy:1"}
        ]}})
    }

    #[test]
    fn workload_rows() {
        let d = json!({"metadata": {"name": "kubia", "creationTimestamp": ago(600)},
            "spec": {"replicas": 3, "template": template(), "selector": {"matchLabels": {"app": "kubia"}, "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "api"]}, {"key": "legacy", "operator": "DoesNotExist"}]}},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let selector = "app=kubia,!legacy,tier in (api,web)";
        assert_eq!(
            cells("Deployment", &d),
            json!([
                "kubia",
                "2/3",
                3,
                2,
                "10m",
                "kubia,proxy",
                "luksa/kubia:v1,envoy:1",
                selector
            ])
        );
        assert_eq!(
            cells("ReplicaSet", &d),
            json!([
                "kubia",
                3,
                3,
                2,
                "10m",
                "kubia,proxy",
                "luksa/kubia:v1,envoy:1",
                selector
            ])
        );
        let rc = json!({"metadata": {"name": "kubia"}, "spec": {"selector": {"app": "kubia"}, "template": template()}});
        let c = cells("ReplicationController", &rc);
        assert_eq!(
            c,
            json!([
                "kubia",
                1,
                0,
                0,
                "<unknown>",
                "kubia,proxy",
                "luksa/kubia:v1,envoy:1",
                "app=kubia"
            ])
        );

        // An empty selector prints "" in a Deployment, "<none>" elsewhere; a broken one differs too.
        let empty = json!({"spec": {"selector": {}}});
        assert_eq!(
            json!([
                cells("Deployment", &empty)[7],
                cells("ReplicaSet", &empty)[7]
            ]),
            json!(["", "<none>"])
        );
        let bad =
            json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}});
        assert_eq!(
            json!([cells("Deployment", &bad)[7], cells("ReplicaSet", &bad)[7]]),
            json!(["<invalid>", "<error>"])
        );

        let mut tpl = template();
        tpl["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
        let ds = json!({"metadata": {"name": "agent", "creationTimestamp": ago(90_000)},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": tpl},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            cells("DaemonSet", &ds),
            json!([
                "agent",
                3,
                3,
                2,
                3,
                2,
                "kubernetes.io/os=linux",
                "25h",
                "kubia,proxy",
                "luksa/kubia:v1,envoy:1",
                "app=agent",
            ])
        );
    }

    #[test]
    fn job_rows() {
        let job = |status: Value| {
            let spec = json!({"completions": 1, "selector": {"matchLabels": {"job-name": "batch"}}, "template": template()});
            json!({"metadata": {"name": "batch", "creationTimestamp": ago(400)}, "spec": spec, "status": status})
        };
        let done = job(
            json!({"startTime": ago(400), "completionTime": ago(330), "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(
            cells("Job", &done),
            json!([
                "batch",
                "Complete",
                "1/1",
                "70s",
                "6m40s",
                "kubia,proxy",
                "luksa/kubia:v1,envoy:1",
                "job-name=batch",
            ])
        );
        let c = cells("Job", &job(json!({"startTime": ago(150)})));
        assert_eq!(
            json!([c[1], c[2], c[3]]),
            json!(["Running", "0/1", "2m30s"])
        );
        let failed = job(json!({"conditions": [{"type": "Failed", "status": "True"}]}));
        assert_eq!(cells("Job", &failed)[1], "Failed");
        let c = cells(
            "Job",
            &job(json!({"conditions": [{"type": "Suspended", "status": "True"}]})),
        );
        assert_eq!(json!([c[1], c[3]]), json!(["Suspended", ""]));
        let parallel = json!({"spec": {"parallelism": 3}, "status": {"succeeded": 2}});
        assert_eq!(cells("Job", &parallel)[2], "2/1 of 3");
    }

    #[test]
    fn config_secret_namespace_and_generic_rows() {
        let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": ago(5)},
            "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(cells("ConfigMap", &cm), json!(["cfg", 3, "5s"]));
        let s = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            cells("Secret", &s),
            json!(["tls", "kubernetes.io/tls", 2, "<unknown>"])
        );
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": ago(86_400)}, "status": {"phase": "Active"}});
        assert_eq!(cells("Namespace", &ns), json!(["default", "Active", "24h"]));
        let lease = json!({"metadata": {"name": "l", "creationTimestamp": ago(3)}});
        assert_eq!(cells("Lease", &lease), json!(["l", "3s"]));
    }

    #[test]
    fn every_kind_has_a_cell_per_column() {
        let kinds = [
            "Pod",
            "Node",
            "Deployment",
            "ReplicaSet",
            "ReplicationController",
            "DaemonSet",
            "Job",
            "Service",
            "Endpoints",
            "Namespace",
            "Event",
            "ConfigMap",
            "Secret",
            "Widget",
        ];
        for kind in kinds {
            let defs = column_definitions(kind);
            let defs = defs.as_array().unwrap();
            assert_eq!(
                cells(kind, &json!({})).as_array().unwrap().len(),
                defs.len(),
                "{kind}"
            );
            let named: Vec<_> = defs
                .iter()
                .filter(|d| d["format"] == "name")
                .map(|d| &d["name"])
                .collect();
            assert_eq!(named, ["Name"], "{kind}");
        }
        let narrow = |kind: &str| -> Vec<Value> {
            let defs = column_definitions(kind);
            defs.as_array()
                .unwrap()
                .iter()
                .filter(|d| d["priority"] == 0)
                .map(|d| d["name"].clone())
                .collect()
        };
        assert_eq!(
            narrow("Event"),
            ["Last Seen", "Type", "Reason", "Object", "Message"]
        );
        assert_eq!(
            narrow("Deployment"),
            ["Name", "Ready", "Up-to-date", "Available", "Age"]
        );
        assert_eq!(narrow("Widget"), ["Name", "Age"]);
    }

    /// The pod behind kubectl-examples/pods_table.json, as stored.
    fn example_pod() -> Value {
        json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "kubia", "labels": {"run": "kubia"}, "namespace": "default",
                "uid": "8e0be922-1695-4d33-adc8-962124b1f619", "creationTimestamp": "2026-11-26T14:37:59Z", "resourceVersion": "1010"},
            "spec": {"nodeName": "spike-node", "containers": [{"name": "kubia", "image": "luksa/kubia", "ports": [{"containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": "10.244.0.205", "podIPs": [{"ip": "10.244.0.205"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "kubia", "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": "2026-11-26T14:38:01Z"}}}]},
        })
    }

    #[test]
    fn pod_table_matches_kubectl_example() {
        let now = humantime::parse_rfc3339("2026-11-26T14:38:15Z").unwrap();
        let t = table(
            "Pod",
            &[example_pod()],
            "1014",
            IncludeObject::Metadata,
            now,
        );
        assert_eq!(
            json!([t["kind"], t["apiVersion"], t["metadata"]]),
            json!(["Table", "meta.k8s.io/v1", {"resourceVersion": "1014"}])
        );
        let defs = t["columnDefinitions"].as_array().unwrap();
        let names: Vec<_> = defs
            .iter()
            .map(|d| json!([d["name"], d["priority"]]))
            .collect();
        assert_eq!(
            Value::from(names),
            json!([
                ["Name", 0],
                ["Ready", 0],
                ["Status", 0],
                ["Restarts", 0],
                ["Age", 0],
                ["IP", 1],
                ["Node", 1],
                ["Nominated Node", 1],
                ["Readiness Gates", 1],
            ])
        );
        assert_eq!(
            defs[0],
            json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DOC, "priority": 0})
        );
        assert_eq!(defs[4]["description"], AGE_DOC);
        assert_eq!(
            t["rows"],
            json!([{
                "cells": ["kubia", "1/1", "Running", "0", "16s", "10.244.0.205", "spike-node", "<none>", "<none>"],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {
                    "name": "kubia", "labels": {"run": "kubia"}, "namespace": "default",
                    "uid": "8e0be922-1695-4d33-adc8-962124b1f619", "creationTimestamp": "2026-11-26T14:37:59Z", "resourceVersion": "1010"}},
            }])
        );
        assert_eq!(
            table("Pod", &[], "7", IncludeObject::Metadata, now)["rows"],
            json!([])
        );
    }

    #[test]
    fn include_object_and_watch() {
        assert_eq!("".parse(), Ok(IncludeObject::Metadata));
        assert_eq!("Metadata".parse(), Ok(IncludeObject::Metadata));
        assert_eq!("None".parse(), Ok(IncludeObject::None));
        assert_eq!("Object".parse(), Ok(IncludeObject::Object));
        assert_eq!(
            "all".parse::<IncludeObject>(),
            Err("unrecognized includeObject value: \"all\"".into())
        );

        // List items may lack kind and apiVersion; embedded objects get them back.
        let mut item = example_pod();
        item.as_object_mut()
            .unwrap()
            .retain(|k, _| k != "kind" && k != "apiVersion");
        let t = table(
            "Pod",
            std::slice::from_ref(&item),
            "1",
            IncludeObject::Object,
            now(),
        );
        let obj = &t["rows"][0]["object"];
        assert_eq!(
            json!([obj["kind"], obj["apiVersion"], obj["spec"]["nodeName"]]),
            json!(["Pod", "v1", "spike-node"])
        );
        let t = table(
            "Deployment",
            &[json!({})],
            "1",
            IncludeObject::Object,
            now(),
        );
        assert_eq!(
            t["rows"][0]["object"],
            json!({"kind": "Deployment", "apiVersion": "apps/v1"})
        );
        let t = table(
            "Pod",
            std::slice::from_ref(&item),
            "1",
            IncludeObject::None,
            now(),
        );
        assert_eq!(t["rows"][0]["object"], Value::Null);

        let w = watch_table("Pod", &item, "1024", IncludeObject::Metadata, now());
        assert_eq!(w["columnDefinitions"], Value::Null);
        assert_eq!(w["metadata"], json!({"resourceVersion": "1024"}));
        assert_eq!(
            json!([w["rows"][0]["cells"][0], w["rows"][0]["object"]["kind"]]),
            json!(["kubia", "PartialObjectMetadata"])
        );
    }
}
