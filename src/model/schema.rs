//! Field schemas of the Kubernetes types bramble serves.
//!
//! One declarative table drives both strict field validation
//! ([`unknown_fields`], for `?fieldValidation=Strict|Warn`) and the OpenAPI v3
//! documents kubectl reads before `create -f` / `apply -f` and for `explain`
//! ([`openapi_root`], [`openapi_group_version`]), so the two cannot disagree.
//! Schemas follow Kubernetes' published v3 spec: names such as
//! `io.k8s.api.core.v1.Pod`, `$ref`s wrapped in `allOf` when they carry a
//! description, and the `x-kubernetes-*` extensions kubectl looks at.

use serde_json::{Value, json};
use std::sync::OnceLock;

/// Field paths in `obj` that the kind's schema does not know, as Kubernetes
/// prints them: "spec.containers[0].imagePullPolcy", "metadata.labelz".
/// Maps with free keys (labels, annotations, data, nodeSelector, resources
/// limits/requests, selectors, ...) accept any key. Unknown kinds: empty.
/// Paths come in key order, not document order.
pub fn unknown_fields(kind: &str, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((_, def)) = lookup(kind).filter(|(_, d)| d.gv.is_some()) {
        walk(&Ty::Ref(def.name), obj, "", &mut out);
    }
    out
}

/// Collects unknown fields below `path`. Values of the wrong JSON type are left
/// to the decoder, which reports them differently.
fn walk(ty: &Ty, value: &Value, path: &str, out: &mut Vec<String>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (ty, value) {
        (Ty::Ref(name), Value::Object(obj)) => {
            let Some((_, def)) = lookup(name) else { return };
            for (key, v) in obj {
                match def.field(key) {
                    Some(field) => walk(&field.ty, v, &join(key), out),
                    None => out.push(join(key)),
                }
            }
        }
        (Ty::Map(item), Value::Object(obj)) => {
            for (key, v) in obj {
                walk(item, v, &join(key), out);
            }
        }
        (Ty::List(item), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                walk(item, v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The root document of GET /openapi/v3: every served group-version with the
/// URL of its document. The URL carries a hash of the document, so kubectl
/// refetches (rather than using its cache) only when the document changes.
pub fn openapi_root() -> Value {
    let paths: serde_json::Map<String, Value> = documents()
        .iter()
        .map(|doc| {
            let url = format!("/openapi/v3/{}?hash={}", doc.path, doc.hash);
            (doc.path.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// The document of GET /openapi/v3/<path> for "api/v1", "apis/apps/v1" and
/// "apis/batch/v1"; None for any other group-version.
pub fn openapi_group_version(path: &str) -> Option<Value> {
    let path = path.trim_matches('/');
    documents()
        .iter()
        .find(|doc| doc.path == path)
        .map(|doc| doc.body.clone())
}

/// The JSON type of a field.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    /// base64 text: Secret `data`, ConfigMap `binaryData`.
    Bytes,
    Int32,
    Int64,
    Bool,
    IntOrString,
    Quantity,
    Time,
    MicroTime,
    /// An object with free keys, such as labels.
    Map(&'static Ty),
    List(&'static Ty),
    /// Another definition of the table, by its short name.
    Ref(&'static str),
    /// An object whose fields are not modelled: anything goes.
    Free,
}

#[derive(Clone, Copy)]
struct Field {
    name: &'static str,
    ty: Ty,
    doc: &'static str,
    required: bool,
    /// Strategic merge patch (merge key, strategy) where Kubernetes declares one.
    patch: Option<(&'static str, &'static str)>,
}

const fn f(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        doc: "",
        required: false,
        patch: None,
    }
}

impl Field {
    const fn doc(self, doc: &'static str) -> Self {
        Field { doc, ..self }
    }
    const fn req(self) -> Self {
        Field {
            required: true,
            ..self
        }
    }
    const fn merge(self, key: &'static str) -> Self {
        self.patch(key, "merge")
    }
    /// An empty key declares a strategy alone (lists of scalars).
    const fn patch(self, key: &'static str, strategy: &'static str) -> Self {
        Field {
            patch: Some((key, strategy)),
            ..self
        }
    }
}

/// A named object type.
struct Def {
    name: &'static str,
    doc: &'static str,
    /// (group, version) of top-level kinds, which also get apiVersion, kind and metadata.
    gv: Option<(&'static str, &'static str)>,
    fields: &'static [Field],
    /// Fields shared with another definition (Container / EphemeralContainer, conditions).
    shared: &'static [Field],
}

const fn def(name: &'static str, doc: &'static str, fields: &'static [Field]) -> Def {
    Def {
        name,
        doc,
        gv: None,
        fields,
        shared: &[],
    }
}

impl Def {
    const fn kind(self, group: &'static str, version: &'static str) -> Self {
        Def {
            gv: Some((group, version)),
            ..self
        }
    }
    const fn with(self, shared: &'static [Field]) -> Self {
        Def { shared, ..self }
    }
    fn all_fields(&'static self) -> impl Iterator<Item = &'static Field> {
        let head = if self.gv.is_some() { KIND_FIELDS } else { &[] };
        head.iter().chain(self.shared).chain(self.fields)
    }
    fn field(&'static self, name: &str) -> Option<&'static Field> {
        self.all_fields().find(|f| f.name == name)
    }
}

const S: Ty = Ty::Str;
const I32: Ty = Ty::Int32;
const I64: Ty = Ty::Int64;
const B: Ty = Ty::Bool;
const T: Ty = Ty::Time;
const IOS: Ty = Ty::IntOrString;
const FREE: Ty = Ty::Free;
const STRS: Ty = Ty::List(&Ty::Str);
const STR_MAP: Ty = Ty::Map(&Ty::Str);
const QTYS: Ty = Ty::Map(&Ty::Quantity);

const fn r(name: &'static str) -> Ty {
    Ty::Ref(name)
}

/// A list of another definition.
macro_rules! list {
    ($name:literal) => {
        Ty::List(&Ty::Ref($name))
    };
}

const KIND_FIELDS: &[Field] = &[
    f("apiVersion", S).doc("APIVersion defines the versioned schema of this representation of an object."),
    f("kind", S).doc("Kind is a string value representing the REST resource this object represents. In CamelCase."),
    f("metadata", r("ObjectMeta")).doc("Standard object's metadata."),
];

const CONDITION: &[Field] = &[
    f("type", S).req().doc("Type of the condition."),
    f("status", S)
        .req()
        .doc("Status of the condition, one of True, False, Unknown."),
    f("lastTransitionTime", T)
        .doc("Last time the condition transitioned from one status to another."),
    f("reason", S).doc("Unique, one-word, CamelCase reason for the condition's last transition."),
    f("message", S).doc("Human-readable message indicating details about the last transition."),
];

const RETAIN: &str = "merge,retainKeys";

static META: &[Def] = &[
    def("ObjectMeta", "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.", &[
        f("name", S).doc("Name must be unique within a namespace. Cannot be updated."),
        f("generateName", S).doc("Optional prefix used by the server to generate a unique name if name is not provided."),
        f("namespace", S).doc("Namespace defines the space within which each name must be unique. Empty means \"default\" for namespaced kinds."),
        f("selfLink", S),
        f("uid", S).doc("UID is the unique in time and space value for this object. Populated by the system. Read-only."),
        f("resourceVersion", S).doc("An opaque value that represents the internal version of this object, used for optimistic concurrency."),
        f("generation", I64).doc("A sequence number representing a specific generation of the desired state. Populated by the system. Read-only."),
        f("creationTimestamp", T).doc("Time when this object was created. Populated by the system. Read-only."),
        f("deletionTimestamp", T).doc("Time at which this resource will be deleted. Set by the server when a graceful deletion is requested. Read-only."),
        f("deletionGracePeriodSeconds", I64),
        f("labels", STR_MAP).doc("Map of string keys and values that can be used to organize and categorize (scope and select) objects."),
        f("annotations", STR_MAP).doc("Unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata."),
        f("ownerReferences", list!("OwnerReference")).merge("uid").doc("List of objects depended by this object. Used by the garbage collector."),
        f("finalizers", STRS).patch("", "merge").doc("Must be empty before the object is deleted from the registry."),
        f("managedFields", list!("ManagedFieldsEntry")).doc("Maps workflow-id and version to the set of fields that are managed by that workflow. Mostly for internal housekeeping."),
    ]),
    def("OwnerReference", "OwnerReference contains enough information to let you identify an owning object.", &[
        f("apiVersion", S).req(),
        f("kind", S).req(),
        f("name", S).req(),
        f("uid", S).req(),
        f("controller", B).doc("If true, this reference points to the managing controller."),
        f("blockOwnerDeletion", B),
    ]),
    def("ManagedFieldsEntry", "ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of the resource that the fieldset applies to.", &[
        f("manager", S),
        f("operation", S),
        f("apiVersion", S),
        f("time", T),
        f("fieldsType", S),
        f("fieldsV1", FREE),
        f("subresource", S),
    ]),
    def("LabelSelector", "A label selector is a label query over a set of resources. The result of matchLabels and matchExpressions are ANDed.", &[
        f("matchLabels", STR_MAP).doc("Map of {key,value} pairs, each equivalent to a matchExpressions element with operator In and the single value."),
        f("matchExpressions", list!("LabelSelectorRequirement")).doc("List of label selector requirements. The requirements are ANDed."),
    ]),
    def("LabelSelectorRequirement", "A selector that contains values, a key, and an operator that relates the key and values.", &[
        f("key", S).req(),
        f("operator", S).req().doc("One of In, NotIn, Exists and DoesNotExist."),
        f("values", STRS),
    ]),
    def("Condition", "Condition contains details for one aspect of the current state of this API Resource.", &[
        f("observedGeneration", I64),
    ])
    .with(CONDITION),
];

const CONTAINER: &[Field] = &[
    f("name", S).req().doc("Name of the container specified as a DNS_LABEL. Each container in a pod must have a unique name. Cannot be updated."),
    f("image", S).doc("Container image name."),
    f("command", STRS).doc("Entrypoint array, not executed within a shell. The image's ENTRYPOINT is used if this is not provided."),
    f("args", STRS).doc("Arguments to the entrypoint. The image's CMD is used if this is not provided."),
    f("workingDir", S).doc("Container's working directory. Defaults to the image's."),
    f("ports", list!("ContainerPort")).merge("containerPort").doc("List of ports to expose from the container."),
    f("envFrom", list!("EnvFromSource")).doc("List of sources to populate environment variables in the container."),
    f("env", list!("EnvVar")).merge("name").doc("List of environment variables to set in the container."),
    f("resources", r("ResourceRequirements")).doc("Compute resources required by this container."),
    f("resizePolicy", list!("ContainerResizePolicy")).doc("Resources resize policy for the container."),
    f("restartPolicy", S).doc("Restart behavior of an individual container; \"Always\" on an init container makes it a sidecar."),
    f("restartPolicyRules", Ty::List(&Ty::Free)),
    f("volumeMounts", list!("VolumeMount")).merge("mountPath").doc("Pod volumes to mount into the container's filesystem."),
    f("volumeDevices", list!("VolumeDevice")).merge("devicePath").doc("List of block devices to be used by the container."),
    f("livenessProbe", r("Probe")).doc("Periodic probe of container liveness. The container is restarted if the probe fails."),
    f("readinessProbe", r("Probe")).doc("Periodic probe of container service readiness. The container is removed from service endpoints if the probe fails."),
    f("startupProbe", r("Probe")).doc("Probe that must succeed before any other probe runs; the container is restarted if it fails."),
    f("lifecycle", r("Lifecycle")).doc("Actions that the management system should take in response to container lifecycle events."),
    f("terminationMessagePath", S).doc("File to which the container's termination message is written. Defaults to /dev/termination-log."),
    f("terminationMessagePolicy", S).doc("How the termination message is populated: File or FallbackToLogsOnError."),
    f("imagePullPolicy", S).doc("Image pull policy: Always, Never or IfNotPresent. Defaults to Always for the :latest tag, IfNotPresent otherwise."),
    f("securityContext", r("SecurityContext")).doc("Security options the container should be run with."),
    f("stdin", B).doc("Whether this container should allocate a buffer for stdin in the container runtime."),
    f("stdinOnce", B).doc("Whether the container runtime should close the stdin channel after it has been opened by a single attach."),
    f("tty", B).doc("Whether this container should allocate a TTY for itself; requires stdin to be true."),
];

/// Pod-level and container-level security contexts share these.
const SECURITY_COMMON: &[Field] = &[
    f("seLinuxOptions", r("SELinuxOptions")),
    f("windowsOptions", r("WindowsSecurityContextOptions")),
    f("runAsUser", I64).doc("The UID to run the entrypoint of the container process."),
    f("runAsGroup", I64).doc("The GID to run the entrypoint of the container process."),
    f("runAsNonRoot", B).doc("Indicates that the container must run as a non-root user."),
    f("seccompProfile", r("SeccompProfile")),
    f("appArmorProfile", r("AppArmorProfile")),
];

/// Volume sources that are accepted but not modelled field by field.
const OTHER_VOLUME_SOURCES: &[Field] = &[
    f("awsElasticBlockStore", FREE),
    f("azureDisk", FREE),
    f("azureFile", FREE),
    f("cephfs", FREE),
    f("cinder", FREE),
    f("csi", FREE),
    f("ephemeral", FREE),
    f("fc", FREE),
    f("flexVolume", FREE),
    f("flocker", FREE),
    f("gcePersistentDisk", FREE),
    f("gitRepo", FREE),
    f("glusterfs", FREE),
    f("image", FREE),
    f("iscsi", FREE),
    f("photonPersistentDisk", FREE),
    f("portworxVolume", FREE),
    f("quobyte", FREE),
    f("rbd", FREE),
    f("scaleIO", FREE),
    f("storageos", FREE),
    f("vsphereVolume", FREE),
];

const POD_AFFINITY: &[Field] = &[
    f(
        "requiredDuringSchedulingIgnoredDuringExecution",
        list!("PodAffinityTerm"),
    )
    .doc("Terms that must be met at scheduling time. All terms must be satisfied."),
    f(
        "preferredDuringSchedulingIgnoredDuringExecution",
        list!("WeightedPodAffinityTerm"),
    )
    .doc("Terms the scheduler prefers; the node with the greatest sum of weights is preferred."),
];

const SPEC: &str = "Specification of the desired behavior. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status";
const STATUS: &str = "Most recently observed status. Populated by the system. Read-only.";

static CORE: &[Def] = &[
    def("Pod", "Pod is a collection of containers that can run on a host. This resource is created by clients and scheduled onto hosts.", &[
        f("spec", r("PodSpec")).doc(SPEC),
        f("status", r("PodStatus")).doc(STATUS),
    ])
    .kind("", "v1"),
    def("PodSpec", "PodSpec is a description of a pod.", &[
        f("volumes", list!("Volume")).patch("name", RETAIN).doc("List of volumes that can be mounted by containers belonging to the pod."),
        f("initContainers", list!("Container")).merge("name").doc("Containers run in order before the app containers start; each must succeed before the next one runs."),
        f("containers", list!("Container")).merge("name").req().doc("List of containers belonging to the pod. There must be at least one. Cannot be updated."),
        f("ephemeralContainers", list!("EphemeralContainer")).merge("name").doc("Ephemeral containers run in this pod for user-initiated actions such as debugging."),
        f("restartPolicy", S).doc("Restart policy for all containers within the pod: Always, OnFailure or Never. Defaults to Always."),
        f("terminationGracePeriodSeconds", I64).doc("Duration in seconds the pod needs to terminate gracefully. Defaults to 30 seconds."),
        f("activeDeadlineSeconds", I64).doc("Duration in seconds the pod may be active on the node before the system actively tries to mark it failed."),
        f("dnsPolicy", S).doc("DNS policy for the pod: ClusterFirstWithHostNet, ClusterFirst, Default or None. Defaults to ClusterFirst."),
        f("nodeSelector", STR_MAP).doc("Labels a node must have for the pod to fit on it."),
        f("serviceAccountName", S).doc("Name of the ServiceAccount to use to run this pod."),
        f("serviceAccount", S).doc("Deprecated alias for serviceAccountName."),
        f("automountServiceAccountToken", B),
        f("nodeName", S).doc("Request to schedule this pod onto a specific node."),
        f("hostNetwork", B).doc("Use the host's network namespace."),
        f("hostPID", B).doc("Use the host's pid namespace."),
        f("hostIPC", B).doc("Use the host's ipc namespace."),
        f("shareProcessNamespace", B),
        f("securityContext", r("PodSecurityContext")).doc("Pod-level security attributes and common container settings."),
        f("imagePullSecrets", list!("LocalObjectReference")).merge("name").doc("References to secrets in the same namespace to use for pulling the images."),
        f("hostname", S).doc("Hostname of the pod. Defaults to a system-defined value."),
        f("subdomain", S),
        f("affinity", r("Affinity")).doc("The pod's scheduling constraints."),
        f("schedulerName", S),
        f("tolerations", list!("Toleration")).doc("The pod's tolerations."),
        f("hostAliases", list!("HostAlias")).merge("ip").doc("Hosts and IPs injected into the pod's hosts file."),
        f("priorityClassName", S),
        f("priority", I32),
        f("dnsConfig", r("PodDNSConfig")).doc("DNS parameters of the pod, merged with those generated from dnsPolicy."),
        f("readinessGates", list!("PodReadinessGate")),
        f("runtimeClassName", S),
        f("enableServiceLinks", B),
        f("preemptionPolicy", S),
        f("overhead", QTYS),
        f("topologySpreadConstraints", list!("TopologySpreadConstraint")).merge("topologyKey"),
        f("setHostnameAsFQDN", B),
        f("os", r("PodOS")),
        f("hostUsers", B),
        f("hostnameOverride", S),
        f("schedulingGates", list!("PodSchedulingGate")).merge("name"),
        f("resourceClaims", list!("PodResourceClaim")).patch("name", RETAIN),
        f("resources", r("ResourceRequirements")).doc("Total amount of resources the pod needs, shared by its containers."),
    ]),
    def("Container", "A single application container that you want to run within a pod.", CONTAINER),
    def("EphemeralContainer", "An EphemeralContainer is a temporary container added to an existing pod for user-initiated activities such as debugging.", &[
        f("targetContainerName", S).doc("Name of the container whose namespaces this ephemeral container targets."),
    ])
    .with(CONTAINER),
    def("ContainerPort", "ContainerPort represents a network port in a single container.", &[
        f("name", S).doc("An IANA_SVC_NAME that services can refer to."),
        f("hostPort", I32),
        f("containerPort", I32).req().doc("Port number to expose on the pod's IP address."),
        f("protocol", S).doc("UDP, TCP, or SCTP. Defaults to TCP."),
        f("hostIP", S),
    ]),
    def("EnvFromSource", "EnvFromSource represents the source of a set of ConfigMaps or Secrets.", &[
        f("prefix", S),
        f("configMapRef", r("ConfigMapEnvSource")),
        f("secretRef", r("SecretEnvSource")),
    ]),
    def("ConfigMapEnvSource", "Selects a ConfigMap to populate the environment variables with.", &[f("name", S), f("optional", B)]),
    def("SecretEnvSource", "Selects a Secret to populate the environment variables with.", &[f("name", S), f("optional", B)]),
    def("EnvVar", "EnvVar represents an environment variable present in a Container.", &[
        f("name", S).req().doc("Name of the environment variable."),
        f("value", S).doc("Value of the variable; $(VAR_NAME) references are expanded."),
        f("valueFrom", r("EnvVarSource")).doc("Source for the variable's value. Cannot be used if value is not empty."),
    ]),
    def("EnvVarSource", "EnvVarSource represents a source for the value of an EnvVar.", &[
        f("fieldRef", r("ObjectFieldSelector")),
        f("resourceFieldRef", r("ResourceFieldSelector")),
        f("configMapKeyRef", r("ConfigMapKeySelector")),
        f("secretKeyRef", r("SecretKeySelector")),
        f("fileKeyRef", FREE),
    ]),
    def("ObjectFieldSelector", "ObjectFieldSelector selects an APIVersioned field of an object.", &[
        f("apiVersion", S),
        f("fieldPath", S).req(),
    ]),
    def("ResourceFieldSelector", "ResourceFieldSelector represents container resources (cpu, memory) and their output format.", &[
        f("containerName", S),
        f("resource", S).req(),
        f("divisor", Ty::Quantity),
    ]),
    def("ConfigMapKeySelector", "Selects a key from a ConfigMap.", &[f("name", S), f("key", S).req(), f("optional", B)]),
    def("SecretKeySelector", "SecretKeySelector selects a key of a Secret.", &[f("name", S), f("key", S).req(), f("optional", B)]),
    def("ResourceRequirements", "ResourceRequirements describes the compute resource requirements.", &[
        f("limits", QTYS).doc("Maximum amount of compute resources allowed."),
        f("requests", QTYS).doc("Minimum amount of compute resources required. Defaults to limits if omitted."),
        f("claims", list!("ResourceClaim")),
    ]),
    def("ResourceClaim", "ResourceClaim references one entry in PodSpec.ResourceClaims.", &[f("name", S).req(), f("request", S)]),
    def("ContainerResizePolicy", "ContainerResizePolicy represents resource resize policy for the container.", &[
        f("resourceName", S).req(),
        f("restartPolicy", S).req(),
    ]),
    def("VolumeMount", "VolumeMount describes a mounting of a Volume within a container.", &[
        f("name", S).req().doc("Must match the name of a volume."),
        f("readOnly", B),
        f("recursiveReadOnly", S),
        f("mountPath", S).req().doc("Path within the container at which the volume should be mounted."),
        f("subPath", S),
        f("mountPropagation", S),
        f("subPathExpr", S),
    ]),
    def("VolumeDevice", "volumeDevice describes a mapping of a raw block device within a container.", &[
        f("name", S).req(),
        f("devicePath", S).req(),
    ]),
    def("Probe", "Probe describes a health check to be performed against a container to determine whether it is alive or ready to receive traffic.", &[
        f("exec", r("ExecAction")).doc("Exec specifies a command to execute in the container."),
        f("httpGet", r("HTTPGetAction")).doc("HTTPGet specifies an HTTP GET request to perform."),
        f("tcpSocket", r("TCPSocketAction")).doc("TCPSocket specifies a connection to a TCP port."),
        f("grpc", r("GRPCAction")).doc("GRPC specifies a GRPC HealthCheckRequest."),
        f("initialDelaySeconds", I32).doc("Number of seconds after the container has started before probes are initiated."),
        f("timeoutSeconds", I32).doc("Number of seconds after which the probe times out. Defaults to 1 second."),
        f("periodSeconds", I32).doc("How often (in seconds) to perform the probe. Defaults to 10 seconds."),
        f("successThreshold", I32).doc("Minimum consecutive successes for the probe to be considered successful after having failed. Defaults to 1."),
        f("failureThreshold", I32).doc("Minimum consecutive failures for the probe to be considered failed after having succeeded. Defaults to 3."),
        f("terminationGracePeriodSeconds", I64),
    ]),
    def("ExecAction", "ExecAction describes a \"run in container\" action.", &[
        f("command", STRS).doc("Command line to execute inside the container; it is not run in a shell."),
    ]),
    def("HTTPGetAction", "HTTPGetAction describes an action based on HTTP Get requests.", &[
        f("path", S).doc("Path to access on the HTTP server."),
        f("port", IOS).req().doc("Name or number of the port to access on the container."),
        f("host", S).doc("Host name to connect to, defaults to the pod IP."),
        f("scheme", S).doc("Scheme to use for connecting to the host. Defaults to HTTP."),
        f("httpHeaders", list!("HTTPHeader")).doc("Custom headers to set in the request."),
    ]),
    def("HTTPHeader", "HTTPHeader describes a custom header to be used in HTTP probes.", &[f("name", S).req(), f("value", S).req()]),
    def("TCPSocketAction", "TCPSocketAction describes an action based on opening a socket.", &[
        f("port", IOS).req().doc("Number or name of the port to access on the container."),
        f("host", S),
    ]),
    def("GRPCAction", "GRPCAction specifies an action involving a GRPC service.", &[f("port", I32).req(), f("service", S)]),
    def("Lifecycle", "Lifecycle describes actions that the management system should take in response to container lifecycle events.", &[
        f("postStart", r("LifecycleHandler")).doc("Called immediately after a container is created."),
        f("preStop", r("LifecycleHandler")).doc("Called immediately before a container is terminated."),
        f("stopSignal", S),
    ]),
    def("LifecycleHandler", "LifecycleHandler defines a specific action that should be taken in a lifecycle hook.", &[
        f("exec", r("ExecAction")),
        f("httpGet", r("HTTPGetAction")),
        f("tcpSocket", r("TCPSocketAction")),
        f("sleep", r("SleepAction")),
    ]),
    def("SleepAction", "SleepAction describes a \"sleep\" action.", &[f("seconds", I64).req()]),
    def("SecurityContext", "SecurityContext holds security configuration that will be applied to a container.", &[
        f("capabilities", r("Capabilities")).doc("The capabilities to add/drop when running containers."),
        f("privileged", B).doc("Run the container in privileged mode. Defaults to false."),
        f("readOnlyRootFilesystem", B),
        f("allowPrivilegeEscalation", B),
        f("procMount", S),
    ])
    .with(SECURITY_COMMON),
    def("PodSecurityContext", "PodSecurityContext holds pod-level security attributes and common container settings.", &[
        f("supplementalGroups", Ty::List(&Ty::Int64)),
        f("supplementalGroupsPolicy", S),
        f("fsGroup", I64).doc("A special supplemental group that applies to all containers in a pod."),
        f("fsGroupChangePolicy", S),
        f("sysctls", list!("Sysctl")),
        f("seLinuxChangePolicy", S),
    ])
    .with(SECURITY_COMMON),
    def("Capabilities", "Adds and removes POSIX capabilities from running containers.", &[f("add", STRS), f("drop", STRS)]),
    def("SELinuxOptions", "SELinuxOptions are the labels to be applied to the container.", &[
        f("user", S),
        f("role", S),
        f("type", S),
        f("level", S),
    ]),
    def("WindowsSecurityContextOptions", "WindowsSecurityContextOptions contain Windows-specific options and credentials.", &[
        f("gmsaCredentialSpecName", S),
        f("gmsaCredentialSpec", S),
        f("runAsUserName", S),
        f("hostProcess", B),
    ]),
    def("SeccompProfile", "SeccompProfile defines a pod/container's seccomp profile settings.", &[
        f("type", S).req(),
        f("localhostProfile", S),
    ]),
    def("AppArmorProfile", "AppArmorProfile defines a pod or container's AppArmor settings.", &[
        f("type", S).req(),
        f("localhostProfile", S),
    ]),
    def("Sysctl", "Sysctl defines a kernel parameter to be set.", &[f("name", S).req(), f("value", S).req()]),
    def("Volume", "Volume represents a named volume in a pod that may be accessed by any container in the pod.", &[
        f("name", S).req().doc("Name of the volume; must be a DNS_LABEL and unique within the pod."),
        f("emptyDir", r("EmptyDirVolumeSource")).doc("A temporary directory that shares a pod's lifetime."),
        f("hostPath", r("HostPathVolumeSource")).doc("A pre-existing file or directory on the host machine."),
        f("configMap", r("ConfigMapVolumeSource")).doc("A configMap that should populate this volume."),
        f("secret", r("SecretVolumeSource")).doc("A secret that should populate this volume."),
        f("downwardAPI", r("DownwardAPIVolumeSource")).doc("Downward API about the pod that should populate this volume."),
        f("projected", r("ProjectedVolumeSource")).doc("Items for all in one resources: secrets, configmaps, and downward API."),
        f("persistentVolumeClaim", r("PersistentVolumeClaimVolumeSource")).doc("A reference to a PersistentVolumeClaim in the same namespace."),
        f("nfs", r("NFSVolumeSource")).doc("An NFS mount on the host that shares a pod's lifetime."),
    ])
    .with(OTHER_VOLUME_SOURCES),
    def("EmptyDirVolumeSource", "Represents an empty directory for a pod.", &[
        f("medium", S).doc("Storage medium: \"\" (node default) or Memory."),
        f("sizeLimit", Ty::Quantity),
    ]),
    def("HostPathVolumeSource", "Represents a host path mapped into a pod.", &[f("path", S).req(), f("type", S)]),
    def("KeyToPath", "Maps a string key to a path within a volume.", &[
        f("key", S).req(),
        f("path", S).req(),
        f("mode", I32),
    ]),
    def("ConfigMapVolumeSource", "Adapts a ConfigMap into a volume.", &[
        f("name", S),
        f("items", list!("KeyToPath")),
        f("defaultMode", I32),
        f("optional", B),
    ]),
    def("SecretVolumeSource", "Adapts a Secret into a volume.", &[
        f("secretName", S),
        f("items", list!("KeyToPath")),
        f("defaultMode", I32),
        f("optional", B),
    ]),
    def("DownwardAPIVolumeSource", "DownwardAPIVolumeSource represents a volume containing downward API info.", &[
        f("items", list!("DownwardAPIVolumeFile")),
        f("defaultMode", I32),
    ]),
    def("DownwardAPIVolumeFile", "DownwardAPIVolumeFile represents information to create the file containing the pod field.", &[
        f("path", S).req(),
        f("fieldRef", r("ObjectFieldSelector")),
        f("resourceFieldRef", r("ResourceFieldSelector")),
        f("mode", I32),
    ]),
    def("ProjectedVolumeSource", "Represents a projected volume source.", &[
        f("sources", list!("VolumeProjection")),
        f("defaultMode", I32),
    ]),
    def("VolumeProjection", "Projection that may be projected along with other supported volume types.", &[
        f("secret", r("SecretProjection")),
        f("configMap", r("ConfigMapProjection")),
        f("downwardAPI", r("DownwardAPIProjection")),
        f("serviceAccountToken", r("ServiceAccountTokenProjection")),
        f("clusterTrustBundle", FREE),
        f("podCertificate", FREE),
    ]),
    def("SecretProjection", "Adapts a secret into a projected volume.", &[
        f("name", S),
        f("items", list!("KeyToPath")),
        f("optional", B),
    ]),
    def("ConfigMapProjection", "Adapts a ConfigMap into a projected volume.", &[
        f("name", S),
        f("items", list!("KeyToPath")),
        f("optional", B),
    ]),
    def("DownwardAPIProjection", "Represents downward API info for projecting into a projected volume.", &[
        f("items", list!("DownwardAPIVolumeFile")),
    ]),
    def("ServiceAccountTokenProjection", "Represents a projected service account token volume.", &[
        f("audience", S),
        f("expirationSeconds", I64),
        f("path", S).req(),
    ]),
    def("PersistentVolumeClaimVolumeSource", "References the user's PVC in the same namespace.", &[
        f("claimName", S).req(),
        f("readOnly", B),
    ]),
    def("NFSVolumeSource", "Represents an NFS mount that lasts the lifetime of a pod.", &[
        f("server", S).req(),
        f("path", S).req(),
        f("readOnly", B),
    ]),
    def("Affinity", "Affinity is a group of affinity scheduling rules.", &[
        f("nodeAffinity", r("NodeAffinity")).doc("Node affinity scheduling rules for the pod."),
        f("podAffinity", r("PodAffinity")).doc("Rules to co-locate this pod with other pods."),
        f("podAntiAffinity", r("PodAntiAffinity")).doc("Rules to keep this pod away from other pods."),
    ]),
    def("NodeAffinity", "Node affinity is a group of node affinity scheduling rules.", &[
        f("requiredDuringSchedulingIgnoredDuringExecution", r("NodeSelector")).doc("Requirements a node must meet for the pod to be scheduled onto it."),
        f("preferredDuringSchedulingIgnoredDuringExecution", list!("PreferredSchedulingTerm")).doc("Terms the scheduler prefers; the node with the greatest sum of weights is preferred."),
    ]),
    def("NodeSelector", "A node selector represents the union of the results of one or more label queries over a set of nodes.", &[
        f("nodeSelectorTerms", list!("NodeSelectorTerm")).req().doc("A list of node selector terms. The terms are ORed."),
    ]),
    def("NodeSelectorTerm", "A null or empty node selector term matches no objects. The requirements of them are ANDed.", &[
        f("matchExpressions", list!("NodeSelectorRequirement")).doc("Node selector requirements by node's labels."),
        f("matchFields", list!("NodeSelectorRequirement")).doc("Node selector requirements by node's fields."),
    ]),
    def("NodeSelectorRequirement", "A selector that contains values, a key, and an operator that relates the key and values.", &[
        f("key", S).req(),
        f("operator", S).req().doc("One of In, NotIn, Exists, DoesNotExist, Gt and Lt."),
        f("values", STRS),
    ]),
    def("PreferredSchedulingTerm", "A weighted node selector term.", &[
        f("weight", I32).req(),
        f("preference", r("NodeSelectorTerm")).req(),
    ]),
    def("PodAffinity", "Pod affinity is a group of inter pod affinity scheduling rules.", POD_AFFINITY),
    def("PodAntiAffinity", "Pod anti affinity is a group of inter pod anti affinity scheduling rules.", POD_AFFINITY),
    def("PodAffinityTerm", "Defines a set of pods that this pod should be co-located (affinity) or not co-located (anti-affinity) with.", &[
        f("labelSelector", r("LabelSelector")),
        f("namespaces", STRS),
        f("topologyKey", S).req(),
        f("namespaceSelector", r("LabelSelector")),
        f("matchLabelKeys", STRS),
        f("mismatchLabelKeys", STRS),
    ]),
    def("WeightedPodAffinityTerm", "The weights of all of the matched WeightedPodAffinityTerm fields are added per-node to find the most preferred node(s).", &[
        f("weight", I32).req(),
        f("podAffinityTerm", r("PodAffinityTerm")).req(),
    ]),
    def("Toleration", "The pod this Toleration is attached to tolerates any taint that matches the triple <key,value,effect>.", &[
        f("key", S),
        f("operator", S).doc("Exists or Equal. Defaults to Equal."),
        f("value", S),
        f("effect", S).doc("NoSchedule, PreferNoSchedule or NoExecute; empty matches all effects."),
        f("tolerationSeconds", I64),
    ]),
    def("HostAlias", "HostAlias holds the mapping between IP and hostnames injected into the pod's hosts file.", &[
        f("ip", S).req(),
        f("hostnames", STRS),
    ]),
    def("PodDNSConfig", "PodDNSConfig defines the DNS parameters of a pod in addition to those generated from DNSPolicy.", &[
        f("nameservers", STRS),
        f("searches", STRS),
        f("options", list!("PodDNSConfigOption")),
    ]),
    def("PodDNSConfigOption", "PodDNSConfigOption defines DNS resolver options of a pod.", &[f("name", S), f("value", S)]),
    def("PodReadinessGate", "PodReadinessGate contains the reference to a pod condition.", &[f("conditionType", S).req()]),
    def("TopologySpreadConstraint", "TopologySpreadConstraint specifies how to spread matching pods among the given topology.", &[
        f("maxSkew", I32).req(),
        f("topologyKey", S).req(),
        f("whenUnsatisfiable", S).req(),
        f("labelSelector", r("LabelSelector")),
        f("minDomains", I32),
        f("nodeAffinityPolicy", S),
        f("nodeTaintsPolicy", S),
        f("matchLabelKeys", STRS),
    ]),
    def("PodOS", "PodOS defines the OS parameters of a pod.", &[f("name", S).req()]),
    def("PodSchedulingGate", "PodSchedulingGate is associated to a Pod to guard its scheduling.", &[f("name", S).req()]),
    def("PodResourceClaim", "PodResourceClaim references exactly one ResourceClaim.", &[
        f("name", S).req(),
        f("resourceClaimName", S),
        f("resourceClaimTemplateName", S),
    ]),
    def("LocalObjectReference", "LocalObjectReference contains enough information to let you locate the referenced object inside the same namespace.", &[
        f("name", S),
    ]),
    def("PodStatus", "PodStatus represents information about the status of a pod.", &[
        f("observedGeneration", I64),
        f("phase", S).doc("Pending, Running, Succeeded, Failed or Unknown."),
        f("conditions", list!("PodCondition")).merge("type").doc("Current service state of the pod."),
        f("message", S),
        f("reason", S),
        f("nominatedNodeName", S),
        f("hostIP", S),
        f("hostIPs", list!("HostIP")).merge("ip"),
        f("podIP", S),
        f("podIPs", list!("PodIP")).merge("ip"),
        f("startTime", T),
        f("initContainerStatuses", list!("ContainerStatus")),
        f("containerStatuses", list!("ContainerStatus")).doc("Statuses of the containers in the pod, one per container."),
        f("ephemeralContainerStatuses", list!("ContainerStatus")),
        f("qosClass", S),
        f("resize", S),
        f("resourceClaimStatuses", list!("PodResourceClaimStatus")).patch("name", RETAIN),
        f("extendedResourceClaimStatus", FREE),
    ]),
    def("PodCondition", "PodCondition contains details for the current condition of this pod.", &[
        f("observedGeneration", I64),
        f("lastProbeTime", T),
    ])
    .with(CONDITION),
    def("HostIP", "HostIP represents a single IP address allocated to the host.", &[f("ip", S).req()]),
    def("PodIP", "PodIP represents a single IP address allocated to the pod.", &[f("ip", S).req()]),
    def("PodResourceClaimStatus", "PodResourceClaimStatus is stored in the PodStatus for each PodResourceClaim.", &[
        f("name", S).req(),
        f("resourceClaimName", S),
    ]),
    def("ContainerStatus", "ContainerStatus contains details for the current status of this container.", &[
        f("name", S).req(),
        f("state", r("ContainerState")).doc("Details about the container's current condition."),
        f("lastState", r("ContainerState")).doc("Details about the container's last termination condition."),
        f("ready", B).req(),
        f("restartCount", I32).req(),
        f("image", S).req(),
        f("imageID", S).req(),
        f("containerID", S),
        f("started", B),
        f("allocatedResources", QTYS),
        f("resources", r("ResourceRequirements")),
        f("volumeMounts", list!("VolumeMountStatus")),
        f("user", FREE),
        f("allocatedResourcesStatus", Ty::List(&Ty::Free)),
        f("stopSignal", S),
    ]),
    def("ContainerState", "ContainerState holds a possible state of container. Only one of its members may be specified.", &[
        f("waiting", r("ContainerStateWaiting")),
        f("running", r("ContainerStateRunning")),
        f("terminated", r("ContainerStateTerminated")),
    ]),
    def("ContainerStateWaiting", "ContainerStateWaiting is a waiting state of a container.", &[f("reason", S), f("message", S)]),
    def("ContainerStateRunning", "ContainerStateRunning is a running state of a container.", &[f("startedAt", T)]),
    def("ContainerStateTerminated", "ContainerStateTerminated is a terminated state of a container.", &[
        f("exitCode", I32).req(),
        f("signal", I32),
        f("reason", S),
        f("message", S),
        f("startedAt", T),
        f("finishedAt", T),
        f("containerID", S),
    ]),
    def("VolumeMountStatus", "VolumeMountStatus shows status of volume mounts.", &[
        f("name", S).req(),
        f("mountPath", S).req(),
        f("readOnly", B),
        f("recursiveReadOnly", S),
    ]),
    def("PodTemplateSpec", "PodTemplateSpec describes the data a pod should have when created from a template.", &[
        f("metadata", r("ObjectMeta")).doc("Standard object's metadata."),
        f("spec", r("PodSpec")).doc("Specification of the desired behavior of the pod."),
    ]),
    def("Service", "Service is a named abstraction of software service consisting of a local port that the proxy listens on and the selector that determines which pods answer requests sent through the proxy.", &[
        f("spec", r("ServiceSpec")).doc(SPEC),
        f("status", r("ServiceStatus")).doc(STATUS),
    ])
    .kind("", "v1"),
    def("ServiceSpec", "ServiceSpec describes the attributes that a user creates on a service.", &[
        f("ports", list!("ServicePort")).merge("port").doc("The list of ports that are exposed by this service."),
        f("selector", STR_MAP).doc("Route service traffic to pods with label keys and values matching this selector."),
        f("clusterIP", S).doc("IP address of the service, usually assigned randomly; \"None\" makes a headless service."),
        f("clusterIPs", STRS),
        f("type", S).doc("How the Service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName. Defaults to ClusterIP."),
        f("externalIPs", STRS),
        f("sessionAffinity", S).doc("ClientIP or None. Defaults to None."),
        f("loadBalancerIP", S),
        f("loadBalancerSourceRanges", STRS),
        f("externalName", S),
        f("externalTrafficPolicy", S),
        f("healthCheckNodePort", I32),
        f("publishNotReadyAddresses", B),
        f("sessionAffinityConfig", r("SessionAffinityConfig")),
        f("ipFamilies", STRS),
        f("ipFamilyPolicy", S),
        f("allocateLoadBalancerNodePorts", B),
        f("loadBalancerClass", S),
        f("internalTrafficPolicy", S),
        f("trafficDistribution", S),
    ]),
    def("ServicePort", "ServicePort contains information on service's port.", &[
        f("name", S).doc("The name of this port within the service; required when there is more than one port."),
        f("protocol", S).doc("TCP, UDP, or SCTP. Defaults to TCP."),
        f("appProtocol", S),
        f("port", I32).req().doc("The port that will be exposed by this service."),
        f("targetPort", IOS).doc("Number or name of the port to access on the pods targeted by the service. Defaults to port."),
        f("nodePort", I32).doc("The port on each node on which this service is exposed when type is NodePort or LoadBalancer."),
    ]),
    def("SessionAffinityConfig", "SessionAffinityConfig represents the configurations of session affinity.", &[f("clientIP", r("ClientIPConfig"))]),
    def("ClientIPConfig", "ClientIPConfig represents the configurations of Client IP based session affinity.", &[f("timeoutSeconds", I32)]),
    def("ServiceStatus", "ServiceStatus represents the current status of a service.", &[
        f("loadBalancer", r("LoadBalancerStatus")),
        f("conditions", list!("Condition")).merge("type"),
    ]),
    def("LoadBalancerStatus", "LoadBalancerStatus represents the status of a load-balancer.", &[f("ingress", list!("LoadBalancerIngress"))]),
    def("LoadBalancerIngress", "LoadBalancerIngress represents the status of a load-balancer ingress point.", &[
        f("ip", S),
        f("hostname", S),
        f("ipMode", S),
        f("ports", list!("PortStatus")),
    ]),
    def("PortStatus", "PortStatus represents the error condition of a service port.", &[
        f("port", I32).req(),
        f("protocol", S).req(),
        f("error", S),
    ]),
    def("Endpoints", "Endpoints is a collection of endpoints that implement the actual service.", &[
        f("subsets", list!("EndpointSubset")).doc("The set of all endpoints is the union of all subsets."),
    ])
    .kind("", "v1"),
    def("EndpointSubset", "EndpointSubset is a group of addresses with a common set of ports.", &[
        f("addresses", list!("EndpointAddress")),
        f("notReadyAddresses", list!("EndpointAddress")),
        f("ports", list!("EndpointPort")),
    ]),
    def("EndpointAddress", "EndpointAddress is a tuple that describes single IP address.", &[
        f("ip", S).req(),
        f("hostname", S),
        f("nodeName", S),
        f("targetRef", r("ObjectReference")),
    ]),
    def("EndpointPort", "EndpointPort is a tuple that describes a single port.", &[
        f("name", S),
        f("port", I32).req(),
        f("protocol", S),
        f("appProtocol", S),
    ]),
    def("ObjectReference", "ObjectReference contains enough information to let you inspect or modify the referred object.", &[
        f("kind", S),
        f("namespace", S),
        f("name", S),
        f("uid", S),
        f("apiVersion", S),
        f("resourceVersion", S),
        f("fieldPath", S),
    ]),
    def("ConfigMap", "ConfigMap holds configuration data for pods to consume.", &[
        f("immutable", B).doc("If true, the data cannot be updated."),
        f("data", STR_MAP).doc("Configuration data (UTF-8 values)."),
        f("binaryData", Ty::Map(&Ty::Bytes)).doc("Binary configuration data (base64 values)."),
    ])
    .kind("", "v1"),
    def("Secret", "Secret holds secret data of a certain type. The total bytes of the values in the data field must be less than 1MiB.", &[
        f("immutable", B).doc("If true, the data cannot be updated."),
        f("data", Ty::Map(&Ty::Bytes)).doc("Secret data; values are base64 encoded."),
        f("stringData", STR_MAP).doc("Write-only convenience: plain string values merged into data on write."),
        f("type", S).doc("Used to facilitate programmatic handling of secret data."),
    ])
    .kind("", "v1"),
    def("Namespace", "Namespace provides a scope for Names.", &[
        f("spec", r("NamespaceSpec")).doc(SPEC),
        f("status", r("NamespaceStatus")).doc(STATUS),
    ])
    .kind("", "v1"),
    def("NamespaceSpec", "NamespaceSpec describes the attributes on a Namespace.", &[f("finalizers", STRS)]),
    def("NamespaceStatus", "NamespaceStatus is information about the current status of a Namespace.", &[
        f("phase", S).doc("Active or Terminating."),
        f("conditions", list!("NamespaceCondition")).merge("type"),
    ]),
    def("NamespaceCondition", "NamespaceCondition contains details about state of namespace.", &[]).with(CONDITION),
    def("Node", "Node is a worker node in Kubernetes.", &[
        f("spec", r("NodeSpec")).doc(SPEC),
        f("status", r("NodeStatus")).doc(STATUS),
    ])
    .kind("", "v1"),
    def("NodeSpec", "NodeSpec describes the attributes that a node is created with.", &[
        f("podCIDR", S),
        f("podCIDRs", STRS).patch("", "merge"),
        f("providerID", S),
        f("unschedulable", B).doc("Controls node schedulability of new pods."),
        f("taints", list!("Taint")).doc("The node's taints."),
        f("configSource", FREE),
        f("externalID", S),
    ]),
    def("Taint", "The node this Taint is attached to has the \"effect\" on any pod that does not tolerate the Taint.", &[
        f("key", S).req(),
        f("value", S),
        f("effect", S).req(),
        f("timeAdded", T),
    ]),
    def("NodeStatus", "NodeStatus is information about the current status of a node.", &[
        f("capacity", QTYS).doc("Total resources of the node."),
        f("allocatable", QTYS).doc("Resources of a node that are available for scheduling."),
        f("phase", S),
        f("conditions", list!("NodeCondition")).merge("type"),
        f("addresses", list!("NodeAddress")).merge("type"),
        f("daemonEndpoints", r("NodeDaemonEndpoints")),
        f("nodeInfo", r("NodeSystemInfo")),
        f("images", list!("ContainerImage")),
        f("volumesInUse", STRS),
        f("volumesAttached", list!("AttachedVolume")),
        f("config", FREE),
        f("runtimeHandlers", Ty::List(&Ty::Free)),
        f("features", FREE),
    ]),
    def("NodeCondition", "NodeCondition contains condition information for a node.", &[f("lastHeartbeatTime", T)]).with(CONDITION),
    def("NodeAddress", "NodeAddress contains information for the node's address.", &[
        f("type", S).req(),
        f("address", S).req(),
    ]),
    def("NodeDaemonEndpoints", "NodeDaemonEndpoints lists ports opened by daemons running on the Node.", &[
        f("kubeletEndpoint", r("DaemonEndpoint")),
    ]),
    def("DaemonEndpoint", "DaemonEndpoint contains information about a single Daemon endpoint.", &[f("Port", I32).req()]),
    def("NodeSystemInfo", "NodeSystemInfo is a set of ids/uuids to uniquely identify the node.", &[
        f("machineID", S),
        f("systemUUID", S),
        f("bootID", S),
        f("kernelVersion", S),
        f("osImage", S),
        f("containerRuntimeVersion", S),
        f("kubeletVersion", S),
        f("kubeProxyVersion", S),
        f("operatingSystem", S),
        f("architecture", S),
        f("swap", FREE),
    ]),
    def("ContainerImage", "Describe a container image.", &[f("names", STRS), f("sizeBytes", I64)]),
    def("AttachedVolume", "AttachedVolume describes a volume attached to a node.", &[
        f("name", S).req(),
        f("devicePath", S).req(),
    ]),
    def("Event", "Event is a report of an event somewhere in the cluster.", &[
        f("involvedObject", r("ObjectReference")).req().doc("The object that this event is about."),
        f("reason", S).doc("Short, machine understandable string that gives the reason for the transition into the object's current status."),
        f("message", S).doc("A human-readable description of the status of this operation."),
        f("source", r("EventSource")).doc("The component reporting this event."),
        f("firstTimestamp", T).doc("The time at which the event was first recorded."),
        f("lastTimestamp", T).doc("The time at which the most recent occurrence of this event was recorded."),
        f("count", I32).doc("The number of times this event has occurred."),
        f("type", S).doc("Type of this event (Normal, Warning)."),
        f("eventTime", Ty::MicroTime),
        f("series", r("EventSeries")),
        f("action", S),
        f("related", r("ObjectReference")),
        f("reportingComponent", S),
        f("reportingInstance", S),
    ])
    .kind("", "v1"),
    def("EventSource", "EventSource contains information for an event.", &[f("component", S), f("host", S)]),
    def("EventSeries", "EventSeries contain information on series of events.", &[
        f("count", I32),
        f("lastObservedTime", Ty::MicroTime),
    ]),
    def("ReplicationController", "ReplicationController represents the configuration of a replication controller.", &[
        f("spec", r("ReplicationControllerSpec")).doc(SPEC),
        f("status", r("ReplicationControllerStatus")).doc(STATUS),
    ])
    .kind("", "v1"),
    def("ReplicationControllerSpec", "ReplicationControllerSpec is the specification of a replication controller.", &[
        f("replicas", I32).doc("Number of desired replicas. Defaults to 1."),
        f("minReadySeconds", I32),
        f("selector", STR_MAP).doc("Label query over pods that should match the replicas count. Defaults to the template's labels."),
        f("template", r("PodTemplateSpec")).doc("Object that describes the pod that will be created if insufficient replicas are detected."),
    ]),
    def("ReplicationControllerStatus", "ReplicationControllerStatus represents the current status of a replication controller.", &[
        f("replicas", I32).req(),
        f("fullyLabeledReplicas", I32),
        f("readyReplicas", I32),
        f("availableReplicas", I32),
        f("observedGeneration", I64),
        f("conditions", list!("ReplicationControllerCondition")).merge("type"),
    ]),
    def("ReplicationControllerCondition", "ReplicationControllerCondition describes the state of a replication controller at a certain point.", &[])
        .with(CONDITION),
];

static APPS: &[Def] = &[
    def("Deployment", "Deployment enables declarative updates for Pods and ReplicaSets.", &[
        f("spec", r("DeploymentSpec")).doc("Specification of the desired behavior of the Deployment."),
        f("status", r("DeploymentStatus")).doc("Most recently observed status of the Deployment."),
    ])
    .kind("apps", "v1"),
    def("DeploymentSpec", "DeploymentSpec is the specification of the desired behavior of the Deployment.", &[
        f("replicas", I32).doc("Number of desired pods. Defaults to 1."),
        f("selector", r("LabelSelector")).req().doc("Label selector for pods. It must match the pod template's labels."),
        f("template", r("PodTemplateSpec")).req().doc("Template describes the pods that will be created."),
        f("strategy", r("DeploymentStrategy")).doc("The deployment strategy to use to replace existing pods with new ones."),
        f("minReadySeconds", I32).doc("Minimum number of seconds a new pod should be ready without any of its containers crashing to be considered available."),
        f("revisionHistoryLimit", I32).doc("The number of old ReplicaSets to retain to allow rollback. Defaults to 10."),
        f("paused", B).doc("Indicates that the deployment is paused."),
        f("progressDeadlineSeconds", I32).doc("Maximum time in seconds for a deployment to make progress before it is considered failed. Defaults to 600s."),
    ]),
    def("DeploymentStrategy", "DeploymentStrategy describes how to replace existing pods with new ones.", &[
        f("type", S).doc("Recreate or RollingUpdate. Default is RollingUpdate."),
        f("rollingUpdate", r("RollingUpdateDeployment")).doc("Rolling update config params. Present only if type is RollingUpdate."),
    ]),
    def("RollingUpdateDeployment", "Spec to control the desired behavior of rolling update.", &[
        f("maxUnavailable", IOS).doc("The maximum number of pods that can be unavailable during the update (number or percentage). Defaults to 25%."),
        f("maxSurge", IOS).doc("The maximum number of pods that can be scheduled above the desired number of pods (number or percentage). Defaults to 25%."),
    ]),
    def("DeploymentStatus", "DeploymentStatus is the most recently observed status of the Deployment.", &[
        f("observedGeneration", I64),
        f("replicas", I32),
        f("updatedReplicas", I32),
        f("readyReplicas", I32),
        f("availableReplicas", I32),
        f("unavailableReplicas", I32),
        f("terminatingReplicas", I32),
        f("conditions", list!("DeploymentCondition")).merge("type"),
        f("collisionCount", I32),
    ]),
    def("DeploymentCondition", "DeploymentCondition describes the state of a deployment at a certain point.", &[f("lastUpdateTime", T)])
        .with(CONDITION),
    def("ReplicaSet", "ReplicaSet ensures that a specified number of pod replicas are running at any given time.", &[
        f("spec", r("ReplicaSetSpec")).doc(SPEC),
        f("status", r("ReplicaSetStatus")).doc(STATUS),
    ])
    .kind("apps", "v1"),
    def("ReplicaSetSpec", "ReplicaSetSpec is the specification of a ReplicaSet.", &[
        f("replicas", I32).doc("Number of desired pods. Defaults to 1."),
        f("minReadySeconds", I32),
        f("selector", r("LabelSelector")).req().doc("Label query over pods that should match the replica count."),
        f("template", r("PodTemplateSpec")).doc("Object that describes the pod that will be created if insufficient replicas are detected."),
    ]),
    def("ReplicaSetStatus", "ReplicaSetStatus represents the current status of a ReplicaSet.", &[
        f("replicas", I32).req(),
        f("fullyLabeledReplicas", I32),
        f("readyReplicas", I32),
        f("availableReplicas", I32),
        f("terminatingReplicas", I32),
        f("observedGeneration", I64),
        f("conditions", list!("ReplicaSetCondition")).merge("type"),
    ]),
    def("ReplicaSetCondition", "ReplicaSetCondition describes the state of a replica set at a certain point.", &[]).with(CONDITION),
    def("DaemonSet", "DaemonSet represents the configuration of a daemon set.", &[
        f("spec", r("DaemonSetSpec")).doc(SPEC),
        f("status", r("DaemonSetStatus")).doc(STATUS),
    ])
    .kind("apps", "v1"),
    def("DaemonSetSpec", "DaemonSetSpec is the specification of a daemon set.", &[
        f("selector", r("LabelSelector")).req().doc("Label query over pods that are managed by the daemon set."),
        f("template", r("PodTemplateSpec")).req().doc("Object that describes the pod that will be created on every eligible node."),
        f("updateStrategy", r("DaemonSetUpdateStrategy")).doc("Update strategy to replace existing DaemonSet pods with new pods."),
        f("minReadySeconds", I32),
        f("revisionHistoryLimit", I32),
    ]),
    def("DaemonSetUpdateStrategy", "DaemonSetUpdateStrategy is a struct used to control the update strategy for a DaemonSet.", &[
        f("type", S).doc("RollingUpdate or OnDelete. Default is RollingUpdate."),
        f("rollingUpdate", r("RollingUpdateDaemonSet")),
    ]),
    def("RollingUpdateDaemonSet", "Spec to control the desired behavior of daemon set rolling update.", &[
        f("maxUnavailable", IOS),
        f("maxSurge", IOS),
    ]),
    def("DaemonSetStatus", "DaemonSetStatus represents the current status of a daemon set.", &[
        f("currentNumberScheduled", I32).req(),
        f("numberMisscheduled", I32).req(),
        f("desiredNumberScheduled", I32).req(),
        f("numberReady", I32).req(),
        f("observedGeneration", I64),
        f("updatedNumberScheduled", I32),
        f("numberAvailable", I32),
        f("numberUnavailable", I32),
        f("collisionCount", I32),
        f("conditions", list!("DaemonSetCondition")).merge("type"),
    ]),
    def("DaemonSetCondition", "DaemonSetCondition describes the state of a DaemonSet at a certain point.", &[]).with(CONDITION),
];

static BATCH: &[Def] = &[
    def("Job", "Job represents the configuration of a single job.", &[
        f("spec", r("JobSpec")).doc("Specification of the desired behavior of a job."),
        f("status", r("JobStatus")).doc("Current status of a job."),
    ])
    .kind("batch", "v1"),
    def("JobSpec", "JobSpec describes how the job execution will look like.", &[
        f("parallelism", I32).doc("The maximum desired number of pods the job should run at any given time."),
        f("completions", I32).doc("The desired number of successfully finished pods the job should be run with."),
        f("activeDeadlineSeconds", I64).doc("Duration in seconds relative to the startTime that the job may be continuously active before the system tries to terminate it."),
        f("podFailurePolicy", r("PodFailurePolicy")),
        f("successPolicy", r("SuccessPolicy")),
        f("backoffLimit", I32).doc("Number of retries before marking this job failed. Defaults to 6."),
        f("backoffLimitPerIndex", I32),
        f("maxFailedIndexes", I32),
        f("selector", r("LabelSelector")).doc("A label query over pods that should match the pod count. Normally set by the system."),
        f("manualSelector", B),
        f("template", r("PodTemplateSpec")).req().doc("Describes the pod that will be created when executing a job; restartPolicy must be Never or OnFailure."),
        f("ttlSecondsAfterFinished", I32).doc("Seconds after the job finishes before it becomes eligible for automatic deletion."),
        f("completionMode", S).doc("NonIndexed (default) or Indexed."),
        f("suspend", B).doc("Whether the Job controller should create Pods or not."),
        f("podReplacementPolicy", S),
        f("managedBy", S),
    ]),
    def("PodFailurePolicy", "PodFailurePolicy describes how failed pods influence the backoffLimit.", &[
        f("rules", list!("PodFailurePolicyRule")).req(),
    ]),
    def("PodFailurePolicyRule", "PodFailurePolicyRule describes how a pod failure is handled when the requirements are met.", &[
        f("action", S).req(),
        f("onExitCodes", r("PodFailurePolicyOnExitCodesRequirement")),
        f("onPodConditions", list!("PodFailurePolicyOnPodConditionsPattern")),
    ]),
    def("PodFailurePolicyOnExitCodesRequirement", "Describes the requirement for handling a failed pod based on its container exit codes.", &[
        f("containerName", S),
        f("operator", S).req(),
        f("values", Ty::List(&Ty::Int32)).req(),
    ]),
    def("PodFailurePolicyOnPodConditionsPattern", "Describes a pattern for matching an actual pod condition type.", &[
        f("type", S).req(),
        f("status", S),
    ]),
    def("SuccessPolicy", "SuccessPolicy describes when a Job can be declared as succeeded based on the success of some indexes.", &[
        f("rules", list!("SuccessPolicyRule")).req(),
    ]),
    def("SuccessPolicyRule", "SuccessPolicyRule describes a rule for declaring a Job as succeeded.", &[
        f("succeededIndexes", S),
        f("succeededCount", I32),
    ]),
    def("JobStatus", "JobStatus represents the current state of a Job.", &[
        f("conditions", list!("JobCondition")).merge("type").doc("The latest available observations of the job's current state."),
        f("startTime", T),
        f("completionTime", T),
        f("active", I32).doc("The number of pending and running pods."),
        f("succeeded", I32).doc("The number of pods which reached phase Succeeded."),
        f("failed", I32).doc("The number of pods which reached phase Failed."),
        f("terminating", I32),
        f("completedIndexes", S),
        f("failedIndexes", S),
        f("uncountedTerminatedPods", r("UncountedTerminatedPods")),
        f("ready", I32),
    ]),
    def("JobCondition", "JobCondition describes current state of a job.", &[f("lastProbeTime", T)]).with(CONDITION),
    def("UncountedTerminatedPods", "UIDs of Pods that have terminated but haven't been accounted in Job status counters.", &[
        f("succeeded", STRS),
        f("failed", STRS),
    ]),
];

static AUTOSCALING: &[Def] = &[
    def("Scale", "Scale represents a scaling request for a resource.", &[
        f("spec", r("ScaleSpec")).doc("Defines the behavior of the scale."),
        f("status", r("ScaleStatus")).doc("The current status of the scale. Read-only."),
    ])
    .kind("autoscaling", "v1"),
    def("ScaleSpec", "ScaleSpec describes the attributes of a scale subresource.", &[
        f("replicas", I32).doc("The desired number of instances for the scaled object."),
    ]),
    def("ScaleStatus", "ScaleStatus represents the current status of a scale subresource.", &[
        f("replicas", I32).req().doc("The actual number of observed instances of the scaled object."),
        f("selector", S).doc("Label query over pods that should match the replicas count, in the string form of a label selector."),
    ]),
];

static DISCOVERY: &[Def] = &[
    // Its ports reuse core's EndpointPort: the same four fields.
    def(
        "EndpointSlice",
        "EndpointSlice represents a set of service endpoints.",
        &[
            f("addressType", S)
                .req()
                .doc("addressType specifies the type of address carried by this EndpointSlice."),
            f("endpoints", list!("Endpoint"))
                .req()
                .doc("endpoints is a list of unique endpoints in this slice."),
            f("ports", list!("EndpointPort")).doc(
                "ports specifies the list of network ports exposed by each endpoint in this slice.",
            ),
        ],
    )
    .kind("discovery.k8s.io", "v1"),
    def(
        "Endpoint",
        "Endpoint represents a single logical \"backend\" implementing a service.",
        &[
            f("addresses", STRS).req(),
            f("conditions", r("EndpointConditions")),
            f("hostname", S),
            f("targetRef", r("ObjectReference")),
            f("deprecatedTopology", STR_MAP),
            f("nodeName", S),
            f("zone", S),
            f("hints", FREE),
        ],
    ),
    def(
        "EndpointConditions",
        "EndpointConditions represents the current condition of an endpoint.",
        &[f("ready", B), f("serving", B), f("terminating", B)],
    ),
];

/// Every definition with the package prefix of its schema name; short names are unique.
static PACKAGES: &[(&str, &[Def])] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1", META),
    ("io.k8s.api.core.v1", CORE),
    ("io.k8s.api.apps.v1", APPS),
    ("io.k8s.api.batch.v1", BATCH),
    ("io.k8s.api.autoscaling.v1", AUTOSCALING),
    ("io.k8s.api.discovery.v1", DISCOVERY),
];

/// A served resource: its kind, plural, scope and whether it has a scale subresource.
struct Resource {
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    scale: bool,
}

const fn res(kind: &'static str, plural: &'static str, namespaced: bool, scale: bool) -> Resource {
    Resource {
        kind,
        plural,
        namespaced,
        scale,
    }
}

static RESOURCES: &[Resource] = &[
    res("Pod", "pods", true, false),
    res("Service", "services", true, false),
    res("Endpoints", "endpoints", true, false),
    res("EndpointSlice", "endpointslices", true, false),
    res("ConfigMap", "configmaps", true, false),
    res("Secret", "secrets", true, false),
    res("Namespace", "namespaces", false, false),
    res("Node", "nodes", false, false),
    res("Event", "events", true, false),
    res(
        "ReplicationController",
        "replicationcontrollers",
        true,
        true,
    ),
    res("Deployment", "deployments", true, true),
    res("ReplicaSet", "replicasets", true, true),
    res("DaemonSet", "daemonsets", true, false),
    res("Job", "jobs", true, false),
];

/// The served group-versions, in the order of the OpenAPI root.
const GROUP_VERSIONS: [(&str, &str); 4] = [
    ("", "v1"),
    ("apps", "v1"),
    ("batch", "v1"),
    ("discovery.k8s.io", "v1"),
];

/// A definition and its package prefix, by short name.
fn lookup(name: &str) -> Option<(&'static str, &'static Def)> {
    PACKAGES
        .iter()
        .find_map(|(pkg, defs)| defs.iter().find(|d| d.name == name).map(|d| (*pkg, d)))
}

struct Document {
    path: String,
    body: Value,
    hash: String,
}

/// The documents are fixed, so they are built once.
fn documents() -> &'static [Document] {
    static DOCUMENTS: OnceLock<Vec<Document>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        GROUP_VERSIONS
            .iter()
            .map(|&(group, version)| {
                let body = group_version_document(group, version);
                let hash = format!(
                    "{:016X}",
                    crate::model::fnv1a(&[body.to_string().as_bytes()])
                );
                Document {
                    path: gv_path(group, version),
                    body,
                    hash,
                }
            })
            .collect()
    })
}

/// "api/v1" for the core group, "apis/<group>/<version>" for the others.
fn gv_path(group: &str, version: &str) -> String {
    match group {
        "" => format!("api/{version}"),
        _ => format!("apis/{group}/{version}"),
    }
}

fn group_version_document(group: &str, version: &str) -> Value {
    let prefix = gv_path(group, version);
    let mut paths = serde_json::Map::new();
    let mut roots = Vec::new();
    for res in RESOURCES {
        let Some((_, def)) = lookup(res.kind).filter(|(_, d)| d.gv == Some((group, version)))
        else {
            continue;
        };
        let scope = if res.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let item = format!("/{prefix}{scope}/{}/{{name}}", res.plural);
        paths.insert(item.clone(), path_item(def, res.namespaced));
        roots.push(def);
        if res.scale
            && let Some((_, scale)) = lookup("Scale")
        {
            paths.insert(format!("{item}/scale"), path_item(scale, res.namespaced));
            roots.push(scale);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "bramble" },
        "paths": paths,
        "components": { "schemas": component_schemas(&roots) },
    })
}

/// The path of one object. Both operations carry the group-version-kind:
/// `kubectl explain` finds the kind through `get`, and kubectl's check for
/// server-side field validation looks for the `fieldValidation` parameter of
/// `patch`. The patch operation declares no request body on purpose: kubectl
/// apply then computes strategic merge patches from its compiled-in types
/// instead of from these schemas.
fn path_item(def: &Def, namespaced: bool) -> Value {
    let (group, version) = def.gv.unwrap_or_default();
    let gvk = json!({ "group": group, "version": version, "kind": def.name });
    let responses = json!({ "200": { "description": "OK", "content": {
        "application/json": { "schema": schema_ref(def.name) }
    } } });
    let path_param = |name: &str| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } });
    let query =
        |name: &str, ty: &str| json!({ "name": name, "in": "query", "schema": { "type": ty } });
    let mut params = vec![path_param("name")];
    if namespaced {
        params.push(path_param("namespace"));
    }
    json!({
        "parameters": params,
        "get": {
            "description": format!("read the specified {}", def.name),
            "responses": responses,
            "x-kubernetes-action": "get",
            "x-kubernetes-group-version-kind": gvk,
        },
        "patch": {
            "description": format!("partially update the specified {}", def.name),
            "parameters": [
                query("dryRun", "string"),
                query("fieldManager", "string"),
                query("fieldValidation", "string"),
                query("force", "boolean"),
            ],
            "responses": responses,
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
        },
    })
}

/// The schemas reachable from `roots`, by full name.
fn component_schemas(roots: &[&'static Def]) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let mut todo: Vec<Ty> = roots.iter().map(|d| Ty::Ref(d.name)).collect();
    while let Some(ty) = todo.pop() {
        match ty {
            Ty::Map(item) | Ty::List(item) => todo.push(*item),
            Ty::Ref(name) => {
                let Some((pkg, def)) = lookup(name) else {
                    continue;
                };
                let full = format!("{pkg}.{name}");
                if !out.contains_key(&full) {
                    out.insert(full, def_schema(def));
                    todo.extend(def.all_fields().map(|f| f.ty));
                }
            }
            leaf => {
                if let Some((name, schema)) = leaf_schema(leaf) {
                    out.insert(name.to_string(), schema);
                }
            }
        }
    }
    out
}

fn schema_ref(name: &str) -> Value {
    match lookup(name) {
        Some((pkg, _)) => json!({ "$ref": format!("#/components/schemas/{pkg}.{name}") }),
        None => free_schema(),
    }
}

fn free_schema() -> Value {
    json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// Scalar types Kubernetes publishes as named schemas, as it publishes them
/// in OpenAPI v3.
fn leaf_schema(ty: Ty) -> Option<(&'static str, Value)> {
    let time = |doc: &str| json!({ "description": doc, "type": "string", "format": "date-time" });
    match ty {
        Ty::Time => Some((
            "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
            time(
                "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON (RFC 3339).",
            ),
        )),
        Ty::MicroTime => Some((
            "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
            time("MicroTime is version of Time with microsecond level precision."),
        )),
        Ty::Quantity => Some((
            "io.k8s.apimachinery.pkg.api.resource.Quantity",
            json!({
                "description": "Quantity is a fixed-point representation of a number, such as 100m, 1.5, 128Mi or 2Gi.",
                "oneOf": [{ "type": "string" }, { "type": "number" }],
            }),
        )),
        Ty::IntOrString => Some((
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
            json!({
                "description": "IntOrString is a type that can hold an int32 or a string.",
                "format": "int-or-string",
                "oneOf": [{ "type": "integer" }, { "type": "string" }],
                "x-kubernetes-int-or-string": true,
            }),
        )),
        _ => None,
    }
}

fn def_schema(def: &'static Def) -> Value {
    let properties: serde_json::Map<String, Value> = def
        .all_fields()
        .map(|f| (f.name.to_string(), field_schema(f)))
        .collect();
    let mut schema = json!({ "type": "object", "properties": properties });
    if !def.doc.is_empty() {
        schema["description"] = def.doc.into();
    }
    let required: Vec<&str> = def
        .all_fields()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    if !required.is_empty() {
        schema["required"] = required.into();
    }
    if let Some((group, version)) = def.gv {
        schema["x-kubernetes-group-version-kind"] =
            json!([{ "group": group, "kind": def.name, "version": version }]);
    }
    schema
}

fn field_schema(field: &Field) -> Value {
    let mut schema = ty_schema(field.ty);
    if field.doc.is_empty() && field.patch.is_none() {
        return schema;
    }
    // OpenAPI 3.0 ignores siblings of $ref, so Kubernetes wraps such refs in allOf.
    if schema.get("$ref").is_some() {
        schema = json!({ "allOf": [schema] });
    }
    if !field.doc.is_empty() {
        schema["description"] = field.doc.into();
    }
    if let Some((key, strategy)) = field.patch {
        if !key.is_empty() {
            schema["x-kubernetes-patch-merge-key"] = key.into();
        }
        schema["x-kubernetes-patch-strategy"] = strategy.into();
    }
    schema
}

fn ty_schema(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!({ "type": "string" }),
        Ty::Bytes => json!({ "type": "string", "format": "byte" }),
        Ty::Int32 => json!({ "type": "integer", "format": "int32" }),
        Ty::Int64 => json!({ "type": "integer", "format": "int64" }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Map(item) => json!({ "type": "object", "additionalProperties": ty_schema(*item) }),
        Ty::List(item) => json!({ "type": "array", "items": ty_schema(*item) }),
        Ty::Ref(name) => schema_ref(name),
        Ty::Free => free_schema(),
        leaf => match leaf_schema(leaf) {
            Some((name, _)) => json!({ "$ref": format!("#/components/schemas/{name}") }),
            None => free_schema(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_spec() -> Value {
        json!({
            "containers": [{
                "name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
                "command": ["nginx"], "args": ["-g", "daemon off;"], "workingDir": "/",
                "ports": [{ "name": "http", "containerPort": 80, "protocol": "TCP" }],
                "env": [
                    { "name": "A", "value": "1" },
                    { "name": "NODE", "valueFrom": { "fieldRef": { "apiVersion": "v1", "fieldPath": "spec.nodeName" } } },
                    { "name": "MEM", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Mi" } } },
                    { "name": "C", "valueFrom": { "configMapKeyRef": { "name": "cm", "key": "k", "optional": true } } },
                    { "name": "S", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } },
                ],
                "envFrom": [{ "prefix": "X_", "configMapRef": { "name": "cm" } }, { "secretRef": { "name": "s" } }],
                "resources": { "limits": { "cpu": "500m", "memory": "128Mi", "example.com/gpu": 1 }, "requests": { "cpu": 0.25 } },
                "volumeMounts": [{ "name": "data", "mountPath": "/data", "readOnly": true, "subPath": "x" }],
                "livenessProbe": {
                    "httpGet": { "path": "/healthz", "port": "http", "httpHeaders": [{ "name": "X", "value": "y" }] },
                    "initialDelaySeconds": 3, "periodSeconds": 5, "timeoutSeconds": 1, "failureThreshold": 3,
                },
                "readinessProbe": { "tcpSocket": { "port": 80 }, "successThreshold": 1 },
                "startupProbe": { "exec": { "command": ["true"] }, "terminationGracePeriodSeconds": 5 },
                "lifecycle": { "preStop": { "sleep": { "seconds": 5 } }, "postStart": { "exec": { "command": ["echo"] } } },
                "securityContext": {
                    "capabilities": { "add": ["NET_ADMIN"], "drop": ["ALL"] }, "runAsUser": 1000,
                    "runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                    "seccompProfile": { "type": "RuntimeDefault" },
                },
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "stdin": false, "tty": false,
            }],
            "initContainers": [{ "name": "init", "image": "busybox", "restartPolicy": "Always" }],
            "volumes": [
                { "name": "data", "emptyDir": { "medium": "Memory", "sizeLimit": "64Mi" } },
                { "name": "host", "hostPath": { "path": "/var/log", "type": "Directory" } },
                { "name": "cfg", "configMap": { "name": "cm", "items": [{ "key": "a", "path": "a.txt", "mode": 420 }], "defaultMode": 420 } },
                { "name": "sec", "secret": { "secretName": "s", "optional": true } },
                { "name": "pvc", "persistentVolumeClaim": { "claimName": "claim" } },
                { "name": "nfs", "nfs": { "server": "10.0.0.1", "path": "/export" } },
                { "name": "info", "downwardAPI": { "items": [{ "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } }] } },
                { "name": "proj", "projected": { "sources": [
                    { "serviceAccountToken": { "path": "token", "expirationSeconds": 3600 } },
                    { "configMap": { "name": "cm" } },
                ] } },
                { "name": "csi", "csi": { "driver": "x", "anything": { "goes": 1 } } },
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                        { "matchExpressions": [{ "key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"] }] },
                    ] },
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        { "weight": 1, "preference": { "matchFields": [{ "key": "metadata.name", "operator": "NotIn", "values": ["n1"] }] } },
                    ],
                },
                "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": { "topologyKey": "kubernetes.io/hostname", "labelSelector": { "matchLabels": { "app": "web" } } },
                }] },
                "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
                    { "topologyKey": "zone", "labelSelector": { "matchExpressions": [{ "key": "tier", "operator": "Exists" }] } },
                ] },
            },
            "nodeSelector": { "edge.example/anything": "yes" },
            "tolerations": [{ "key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30 }],
            "securityContext": { "fsGroup": 2000, "supplementalGroups": [1, 2], "sysctls": [{ "name": "net.ipv4.ip_forward", "value": "1" }] },
            "dnsConfig": { "nameservers": ["1.1.1.1"], "options": [{ "name": "ndots", "value": "2" }] },
            "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule" }],
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30,
            "serviceAccountName": "default", "hostNetwork": false, "imagePullSecrets": [{ "name": "reg" }],
            "hostAliases": [{ "ip": "127.0.0.1", "hostnames": ["foo"] }],
        })
    }

    #[test]
    fn valid_objects_have_no_unknown_fields() {
        let spec = pod_spec();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web", "namespace": "default", "labels": { "app": "web" },
                "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{}" },
                "creationTimestamp": null, "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true }],
                "managedFields": [{ "manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": { "f:metadata": {} } }],
            },
            "spec": spec.clone(),
            "status": {
                "phase": "Running", "podIP": "10.0.0.5", "podIPs": [{ "ip": "10.0.0.5" }], "qosClass": "Burstable",
                "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z" }],
                "containerStatuses": [{
                    "name": "web", "ready": true, "restartCount": 0, "image": "nginx", "imageID": "", "started": true,
                    "state": { "running": { "startedAt": "2026-01-01T00:00:00Z" } },
                    "lastState": { "terminated": { "exitCode": 1, "reason": "Error" } },
                }],
            },
        });
        assert_eq!(unknown_fields("Pod", &pod), Vec::<String>::new());

        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "labels": { "app": "web" } },
            "spec": {
                "replicas": 3, "revisionHistoryLimit": 5, "progressDeadlineSeconds": 600,
                "selector": { "matchLabels": { "app": "web" } },
                "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": 1 } },
                "template": { "metadata": { "labels": { "app": "web" } }, "spec": spec },
            },
            "status": { "replicas": 3, "conditions": [{ "type": "Available", "status": "True", "lastUpdateTime": "2026-01-01T00:00:00Z" }] },
        });
        assert_eq!(
            unknown_fields("Deployment", &deployment),
            Vec::<String>::new()
        );
    }

    #[test]
    fn typos_are_reported_with_kubernetes_paths() {
        let mut spec = pod_spec();
        spec["containers"][0]["imagePullPolcy"] = json!("Always");
        spec["containers"][0]["livenessProbe"]["httpGet"]["prot"] = json!(80);
        spec["initContainers"][0]["grpc"] = json!(null);
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpresions"] = json!([]);
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "specc": {},
            "metadata": { "name": "web", "labelz": { "a": "b" } },
            "spec": { "selector": { "matchLabels": {}, "matchLabel": {} }, "template": { "spec": spec } },
        });
        let mut found = unknown_fields("Deployment", &deployment);
        found.sort();
        assert_eq!(
            found,
            [
                "metadata.labelz",
                "spec.selector.matchLabel",
                "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpresions",
                "spec.template.spec.containers[0].imagePullPolcy",
                "spec.template.spec.containers[0].livenessProbe.httpGet.prot",
                "spec.template.spec.initContainers[0].grpc",
                "specc",
            ]
        );
    }

    #[test]
    fn free_key_maps_accept_anything() {
        let free = json!({ "any key/with.dots": "v", "x": "y" });
        let cases = [
            (
                "ConfigMap",
                json!({ "kind": "ConfigMap", "apiVersion": "v1", "data": free, "binaryData": free, "metadata": { "annotations": free } }),
            ),
            (
                "Secret",
                json!({ "data": free, "stringData": free, "type": "Opaque", "metadata": { "labels": free } }),
            ),
            (
                "Service",
                json!({ "spec": { "selector": free, "ports": [{ "port": 80, "targetPort": "http" }] } }),
            ),
            (
                "ReplicationController",
                json!({ "spec": { "selector": free, "template": { "spec": { "nodeSelector": free, "overhead": free } } } }),
            ),
            (
                "Node",
                json!({ "status": { "capacity": free, "allocatable": free, "nodeInfo": { "swap": { "capacity": 1 } } } }),
            ),
            (
                "Job",
                json!({ "spec": { "selector": { "matchLabels": free }, "template": { "spec": { "containers": [{ "resources": { "limits": free, "requests": free } }] } } } }),
            ),
        ];
        for (kind, obj) in cases {
            assert_eq!(unknown_fields(kind, &obj), Vec::<String>::new(), "{kind}");
        }
    }

    #[test]
    fn other_kinds_and_unknown_kinds() {
        let event = json!({
            "kind": "Event", "apiVersion": "v1", "metadata": { "name": "e" },
            "involvedObject": { "kind": "Pod", "name": "p", "namespace": "default", "uid": "u", "apiVersion": "v1" },
            "reason": "Started", "message": "m", "source": { "component": "kubelet", "host": "n" },
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z", "count": 1, "type": "Normal",
            "eventTime": null, "reportingComponent": "", "reportingInstance": "", "series": { "count": 2, "lastObservedTime": "x" },
        });
        assert!(unknown_fields("Event", &event).is_empty());
        let scale = json!({ "kind": "Scale", "apiVersion": "autoscaling/v1", "spec": { "replicas": 3, "replica": 2 } });
        assert_eq!(unknown_fields("Scale", &scale), ["spec.replica"]);
        assert_eq!(
            unknown_fields(
                "Namespace",
                &json!({ "spec": { "finalizers": ["kubernetes"] }, "status": { "phase": "Active" } })
            ),
            Vec::<String>::new()
        );
        assert!(unknown_fields("Widget", &json!({ "whatever": 1 })).is_empty());
        // Shared types are not kinds of their own.
        assert!(unknown_fields("PodSpec", &json!({ "whatever": 1 })).is_empty());
    }

    #[test]
    fn table_is_consistent() {
        let mut names: Vec<&str> = PACKAGES
            .iter()
            .flat_map(|(_, defs)| defs.iter().map(|d| d.name))
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "short names must be unique");
        fn refs(ty: Ty, out: &mut Vec<&'static str>) {
            match ty {
                Ty::Ref(name) => out.push(name),
                Ty::Map(item) | Ty::List(item) => refs(*item, out),
                _ => {}
            }
        }
        for (_, defs) in PACKAGES {
            for def in *defs {
                let mut fields: Vec<&str> = def.all_fields().map(|f| f.name).collect();
                let n = fields.len();
                fields.sort_unstable();
                fields.dedup();
                assert_eq!(fields.len(), n, "duplicate field in {}", def.name);
                let mut out = Vec::new();
                def.all_fields().for_each(|f| refs(f.ty, &mut out));
                for name in out {
                    assert!(lookup(name).is_some(), "{}: unresolved {name}", def.name);
                }
            }
        }
        for res in RESOURCES {
            assert!(
                lookup(res.kind).is_some_and(|(_, d)| d.gv.is_some()),
                "{}",
                res.kind
            );
        }
    }

    #[test]
    fn root_lists_the_served_group_versions_with_their_hash() {
        let root = openapi_root();
        let paths = root["paths"].as_object().expect("paths");
        assert_eq!(
            paths.keys().collect::<Vec<_>>(),
            [
                "api/v1",
                "apis/apps/v1",
                "apis/batch/v1",
                "apis/discovery.k8s.io/v1"
            ]
        );
        for (path, entry) in paths {
            let doc = openapi_group_version(path).expect("document");
            let hash = format!(
                "{:016X}",
                crate::model::fnv1a(&[doc.to_string().as_bytes()])
            );
            assert_eq!(
                entry["serverRelativeURL"],
                format!("/openapi/v3/{path}?hash={hash}")
            );
        }
        assert_eq!(openapi_root(), root, "stable");
        assert!(openapi_group_version("apis/autoscaling/v1").is_none());
    }

    fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| match (k.as_str(), v) {
                ("$ref", Value::String(r)) => out.push(r),
                _ => collect_refs(v, out),
            }),
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn group_version_documents_serve_each_kind() {
        let expect: [(&str, &[&str]); 3] = [
            (
                "api/v1",
                &[
                    "Pod",
                    "Service",
                    "Endpoints",
                    "ConfigMap",
                    "Secret",
                    "Namespace",
                    "Node",
                    "Event",
                    "ReplicationController",
                    "Scale",
                ],
            ),
            (
                "apis/apps/v1",
                &["Deployment", "ReplicaSet", "DaemonSet", "Scale"],
            ),
            ("apis/batch/v1", &["Job"]),
        ];
        for (path, kinds) in expect {
            let doc = openapi_group_version(path).expect("document");
            let schemas = doc["components"]["schemas"].as_object().expect("schemas");
            for kind in kinds {
                let (pkg, def) = lookup(kind).expect("kind");
                let (group, version) = def.gv.expect("gv");
                let gvk = json!({ "group": group, "version": version, "kind": kind });
                let patch = doc["paths"]
                    .as_object()
                    .expect("paths")
                    .values()
                    .find(|p| p["patch"]["x-kubernetes-group-version-kind"] == gvk);
                let patch = patch.unwrap_or_else(|| panic!("{path}: no patch path for {kind}"));
                assert!(
                    patch["patch"]["parameters"]
                        .as_array()
                        .expect("params")
                        .iter()
                        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
                );
                assert_eq!(patch["get"]["x-kubernetes-group-version-kind"], gvk);
                let schema = &schemas[&format!("{pkg}.{kind}")];
                assert_eq!(
                    schema["x-kubernetes-group-version-kind"],
                    json!([{ "group": group, "kind": kind, "version": version }])
                );
            }
            let mut refs = Vec::new();
            collect_refs(&doc, &mut refs);
            assert!(!refs.is_empty());
            for r in refs {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("bad ref {r}"));
                assert!(schemas.contains_key(name), "{path}: {r} does not resolve");
            }
        }
        let core = openapi_group_version("/api/v1").expect("leading slash is accepted");
        assert!(core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"].is_object());
        assert!(core["paths"]["/api/v1/nodes/{name}"]["get"].is_object());
        assert!(core["paths"]["/api/v1/namespaces/{namespace}/replicationcontrollers/{name}/scale"]["patch"].is_object());
    }

    #[test]
    fn schemas_follow_kubernetes_conventions() {
        let doc = openapi_group_version("api/v1").expect("document");
        let schemas = &doc["components"]["schemas"];
        let spec = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"];
        assert_eq!(
            spec["containers"]["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Container"
        );
        assert_eq!(spec["containers"]["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(spec["containers"]["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(
            spec["volumes"]["x-kubernetes-patch-strategy"],
            "merge,retainKeys"
        );
        assert_eq!(
            spec["nodeSelector"]["additionalProperties"],
            json!({ "type": "string" })
        );
        assert_eq!(
            spec["priority"],
            json!({ "type": "integer", "format": "int32" })
        );
        assert_eq!(
            spec["affinity"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Affinity"
        );
        assert!(spec["affinity"]["description"].is_string());
        let container = &schemas["io.k8s.api.core.v1.Container"];
        assert_eq!(container["required"], json!(["name"]));
        assert_eq!(
            container["properties"]["ports"]["x-kubernetes-patch-merge-key"],
            "containerPort"
        );
        assert_eq!(
            schemas["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]["additionalProperties"]
                ["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"
        );
        let ios = &schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(ios["x-kubernetes-int-or-string"], true);
        assert!(ios.get("type").is_none());
        assert_eq!(
            schemas["io.k8s.api.core.v1.Secret"]["properties"]["data"]["additionalProperties"]["format"],
            "byte"
        );
        assert_eq!(
            schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"]
                ["x-kubernetes-patch-strategy"],
            "merge"
        );
        assert_eq!(
            schemas["io.k8s.api.core.v1.Volume"]["properties"]["csi"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert!(schemas["io.k8s.api.core.v1.Pod"]["properties"]["apiVersion"].is_object());
    }
}
