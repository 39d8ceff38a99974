//! The pod status the kubelet writes, computed from what it knows about the pod's containers,
//! as the kubelet's generateAPIPodStatus and status manager compute it.

use std::time::SystemTime;

use crate::model::json::{at, list, text};
use crate::model::timestamp;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: SystemTime,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        /// Completed, Error, OOMKilled, ContainerCannotRun or Unknown.
        reason: String,
        message: String,
        started_at: Option<SystemTime>,
        finished_at: SystemTime,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// `runtime://id`, or empty before the container exists.
    pub container_id: String,
    pub state: State,
    pub last_state: Option<State>,
    pub restart_count: u32,
    pub ready: bool,
    pub started: bool,
}

/// What the kubelet knows of a pod: one view per container in the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub init: Vec<ContainerView>,
    pub containers: Vec<ContainerView>,
    /// Set once the sandbox's network is up; then the pod is ready to start containers.
    pub pod_ip: Option<String>,
    /// The pod's namespaces exist (a pod without a pod network has no IP).
    pub sandbox_ready: bool,
    pub host_ip: String,
    pub start_time: Option<SystemTime>,
    /// Set by an eviction; otherwise the existing reason and message stay while the phase does.
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// Conditions only the kubelet writes; it regenerates them and keeps every other one.
const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

/// The whole `status` object for `pod`. Transition times, the start time and a scheduler-set
/// PodScheduled come from the pod's existing status, so an unchanged pod yields an identical
/// status and the store has nothing to write.
pub fn pod_status(pod: &Value, view: &PodView, now: SystemTime) -> Value {
    let spec = at(pod, "spec");
    let old = at(pod, "status");
    let old_conditions = list(old, "conditions");
    let now = timestamp(now);

    let old_phase = text(old, "phase");
    // A pod never leaves a terminal phase.
    let phase = match old_phase {
        "Succeeded" => "Succeeded",
        "Failed" => "Failed",
        _ => phase(text(spec, "restartPolicy"), &view.init, &view.containers),
    };

    let mut status = Map::new();
    status.insert("phase".into(), phase.into());
    // Reason and message belong to the phase they were set in.
    let same_phase = phase == old_phase;
    for (key, new) in [("reason", &view.reason), ("message", &view.message)] {
        let kept = || old.get(key).filter(|_| same_phase).cloned();
        let value = new.clone().map(Value::from).or_else(kept);
        status.extend(value.map(|v| (key.into(), v)));
    }

    let mut conditions: Vec<Value> = old_conditions
        .iter()
        .filter(|c| !KUBELET_CONDITIONS.contains(&text(c, "type")))
        .cloned()
        .collect();
    let host_network = spec.get("hostNetwork") == Some(&Value::Bool(true));
    let pod_ip = view
        .pod_ip
        .clone()
        .or_else(|| host_network.then(|| view.host_ip.clone()));
    let containers_ready = containers_ready(spec, view, phase);
    let generated = [
        Condition::new(
            "PodReadyToStartContainers",
            view.sandbox_ready || pod_ip.is_some(),
        ),
        initialized(spec, view, phase),
        ready(spec, &conditions, &containers_ready),
        containers_ready,
    ];
    let generated: Vec<Value> = generated
        .into_iter()
        .map(|c| c.to_json(old_conditions, &now))
        .collect();
    conditions.extend(generated);
    let scheduled = old_conditions
        .iter()
        .find(|c| text(c, "type") == "PodScheduled" && text(c, "status") == "True")
        .cloned();
    conditions
        .push(scheduled.unwrap_or_else(|| Condition::new("PodScheduled", true).to_json(&[], &now)));
    status.insert("conditions".into(), conditions.into());

    if !view.host_ip.is_empty() {
        status.insert("hostIP".into(), view.host_ip.clone().into());
        status.insert("hostIPs".into(), json!([{"ip": view.host_ip}]));
    }
    match pod_ip {
        Some(ip) => {
            status.insert("podIPs".into(), json!([{"ip": ip}]));
            status.insert("podIP".into(), ip.into());
        }
        // A torn-down sandbox leaves the pod its last address, as the kubelet does.
        None => {
            for key in ["podIP", "podIPs"] {
                status.extend(old.get(key).map(|v| (key.into(), v.clone())));
            }
        }
    }
    let start_time = match old.get("startTime").filter(|t| !t.is_null()) {
        Some(t) => t.clone(),
        None => view
            .start_time
            .map_or_else(|| now.clone(), timestamp)
            .into(),
    };
    status.insert("startTime".into(), start_time);

    if !view.init.is_empty() {
        let init = view.init.iter().map(container_status).collect();
        status.insert("initContainerStatuses".into(), Value::Array(init));
    }
    // The status manager sorts app containers by name so their order never makes a change.
    let mut containers: Vec<&ContainerView> = view.containers.iter().collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let containers = containers.into_iter().map(container_status).collect();
    status.insert("containerStatuses".into(), Value::Array(containers));
    status.extend(old.get("qosClass").map(|q| ("qosClass".into(), q.clone())));
    Value::Object(status)
}

/// The pod phase as the kubelet's getPhase computes it (for a pod not yet known to be
/// terminal): restarts under `Always` keep a pod Running even when every container has exited.
pub fn phase(
    restart_policy: &str,
    init: &[ContainerView],
    containers: &[ContainerView],
) -> &'static str {
    let last_exit = |c: &ContainerView| match c.last_state {
        Some(State::Terminated { exit_code, .. }) => Some(exit_code),
        _ => None,
    };
    let (mut init_pending, mut init_failed) = (false, false);
    for c in init {
        // An init container waiting after an exit is judged by that exit.
        let exit = match c.state {
            State::Terminated { exit_code, .. } => Some(exit_code),
            State::Waiting { .. } => last_exit(c),
            State::Running { .. } => None,
        };
        match exit {
            Some(code) => init_failed |= code != 0,
            None => init_pending = true,
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        match c.state {
            State::Running { .. } => running += 1,
            State::Terminated { exit_code, .. } => {
                stopped += 1;
                succeeded += usize::from(exit_code == 0);
            }
            // Waiting to restart counts as stopped, but not as succeeded.
            State::Waiting { .. } if last_exit(c).is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    if init_failed && restart_policy == "Never" {
        return "Failed";
    }
    if init_pending || waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped == 0 {
        "Pending"
    } else if restart_policy == "Always" {
        // Every container exited and each will be restarted.
        "Running"
    } else if stopped == succeeded {
        "Succeeded"
    } else if restart_policy == "Never" {
        "Failed"
    } else {
        // OnFailure: the failed containers are restarting.
        "Running"
    }
}

/// A kubelet-owned pod condition before its transition time is known.
struct Condition {
    kind: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

impl Condition {
    fn new(kind: &'static str, status: bool) -> Self {
        Self {
            kind,
            status,
            reason: "",
            message: String::new(),
        }
    }

    fn because(mut self, reason: &'static str, message: String) -> Self {
        self.reason = reason;
        self.message = message;
        self
    }

    /// The condition as JSON, keeping the old transition time when the status is unchanged.
    fn to_json(&self, old: &[Value], now: &str) -> Value {
        let status = if self.status { "True" } else { "False" };
        let since = old
            .iter()
            .find(|c| text(c, "type") == self.kind && text(c, "status") == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| now.into());
        let mut c = json!({
            "type": self.kind,
            "status": status,
            "lastProbeTime": null,
            "lastTransitionTime": since,
        });
        if !self.reason.is_empty() {
            c["reason"] = self.reason.into();
        }
        if !self.message.is_empty() {
            c["message"] = self.message.clone().into();
        }
        c
    }
}

/// Names formatted as Go prints a `[]string`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// Containers of the spec list `key` that `keep` picks out, and those without a view.
fn classify<'a>(
    spec: &'a Value,
    key: &str,
    views: &[ContainerView],
    keep: impl Fn(&ContainerView) -> bool,
) -> (Vec<&'a str>, Vec<&'a str>) {
    let (mut unknown, mut picked) = (vec![], vec![]);
    for name in list(spec, key).iter().map(|c| text(c, "name")) {
        match views.iter().find(|v| v.name == name) {
            None => unknown.push(name),
            Some(v) if keep(v) => picked.push(name),
            Some(_) => {}
        }
    }
    (unknown, picked)
}

fn not_all(unknown: &[&str], bad: &[&str], what: &str) -> String {
    let mut messages = vec![];
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(unknown)
        ));
    }
    if !bad.is_empty() {
        messages.push(format!("containers with {what} status: {}", go_list(bad)));
    }
    messages.join(", ")
}

fn initialized(spec: &Value, view: &PodView, phase: &str) -> Condition {
    let condition = Condition::new("Initialized", true);
    if list(spec, "initContainers").is_empty() {
        return condition;
    }
    let incomplete = |c: &ContainerView| !matches!(c.state, State::Terminated { exit_code: 0, .. });
    let (unknown, incomplete) = classify(spec, "initContainers", &view.init, incomplete);
    if phase == "Succeeded" && unknown.is_empty() {
        return condition.because("PodCompleted", String::new());
    }
    // Once an app container has started, the pod was initialized.
    let started = |c: &ContainerView| !matches!(c.state, State::Waiting { .. });
    if view.containers.iter().any(started) {
        return condition;
    }
    match not_all(&unknown, &incomplete, "incomplete") {
        message if message.is_empty() => condition,
        message => {
            Condition::new("Initialized", false).because("ContainersNotInitialized", message)
        }
    }
}

fn containers_ready(spec: &Value, view: &PodView, phase: &str) -> Condition {
    let (unknown, unready) = classify(spec, "containers", &view.containers, |c| !c.ready);
    let not_ready = Condition::new("ContainersReady", false);
    if phase == "Succeeded" && unknown.is_empty() {
        return not_ready.because("PodCompleted", String::new());
    }
    if phase == "Failed" {
        return not_ready.because("PodFailed", String::new());
    }
    match not_all(&unknown, &unready, "unready") {
        message if message.is_empty() => Condition::new("ContainersReady", true),
        message => not_ready.because("ContainersNotReady", message),
    }
}

/// Ready is ContainersReady, further gated by the spec's readiness gates over `conditions`.
fn ready(spec: &Value, conditions: &[Value], containers_ready: &Condition) -> Condition {
    if !containers_ready.status {
        let copy = Condition::new("Ready", false);
        return copy.because(containers_ready.reason, containers_ready.message.clone());
    }
    let mut messages = vec![];
    for gate in list(spec, "readinessGates")
        .iter()
        .map(|g| text(g, "conditionType"))
    {
        match conditions
            .iter()
            .find(|c| text(c, "type") == gate)
            .map(|c| text(c, "status"))
        {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate \"{gate}\" does not exist."
            )),
            Some("True") => {}
            Some(status) => messages.push(format!(
                "the status of pod readiness gate \"{gate}\" is not \"True\", but {status}"
            )),
        }
    }
    match messages.is_empty() {
        true => Condition::new("Ready", true),
        false => {
            Condition::new("Ready", false).because("ReadinessGatesNotReady", messages.join(", "))
        }
    }
}

fn container_status(c: &ContainerView) -> Value {
    let mut status = json!({
        "name": c.name,
        "image": c.image,
        "imageID": c.image_id,
        "state": state_json(&c.state, &c.container_id),
        // Go's encoding/json never omits a struct, so a missing last state is `{}`.
        "lastState": c.last_state.as_ref().map_or_else(|| json!({}), |s| state_json(s, "")),
        "ready": c.ready,
        "restartCount": c.restart_count,
        "started": c.started,
    });
    if !c.container_id.is_empty() {
        status["containerID"] = c.container_id.clone().into();
    }
    status
}

/// A container state in Kubernetes JSON, with Go's omitempty rules.
fn state_json(state: &State, container_id: &str) -> Value {
    let mut fields = Map::new();
    let mut put = |key: &str, value: &str| {
        if !value.is_empty() {
            fields.insert(key.into(), value.into());
        }
    };
    match state {
        State::Waiting { reason, message } => {
            put("reason", reason);
            put("message", message);
            json!({ "waiting": fields })
        }
        State::Running { started_at } => json!({"running": {"startedAt": timestamp(*started_at)}}),
        State::Terminated {
            exit_code,
            signal,
            reason,
            message,
            started_at,
            finished_at,
        } => {
            put("reason", reason);
            put("message", message);
            put("containerID", container_id);
            fields.insert("exitCode".into(), (*exit_code).into());
            fields.extend(
                signal
                    .filter(|s| *s != 0)
                    .map(|s| ("signal".into(), s.into())),
            );
            // A zero metav1.Time marshals as null.
            fields.insert("startedAt".into(), started_at.map(timestamp).into());
            fields.insert("finishedAt".into(), timestamp(*finished_at).into());
            json!({ "terminated": fields })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// 2026-01-01T00:00:00Z plus `secs`.
    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs)
    }

    fn view(name: &str, state: State) -> ContainerView {
        let running = matches!(state, State::Running { .. });
        ContainerView {
            name: name.into(),
            image: "nginx:1.27".into(),
            image_id: "docker.io/library/nginx@sha256:abc".into(),
            container_id: format!("bramble://{name}-1"),
            state,
            last_state: None,
            restart_count: 0,
            ready: running,
            started: running,
        }
    }

    fn running(name: &str) -> ContainerView {
        view(name, State::Running { started_at: t(5) })
    }

    fn exited(name: &str, exit_code: i32) -> ContainerView {
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        view(
            name,
            State::Terminated {
                exit_code,
                signal: None,
                reason: reason.into(),
                message: String::new(),
                started_at: Some(t(5)),
                finished_at: t(8),
            },
        )
    }

    fn waiting(name: &str, reason: &str) -> ContainerView {
        let mut c = view(
            name,
            State::Waiting {
                reason: reason.into(),
                message: String::new(),
            },
        );
        c.container_id.clear();
        c
    }

    /// Waiting to be restarted after exiting with `exit_code`.
    fn crash_looping(name: &str, exit_code: i32) -> ContainerView {
        let last_state = Some(exited(name, exit_code).state);
        ContainerView {
            last_state,
            restart_count: 1,
            ..waiting(name, CRASH)
        }
    }

    const CRASH: &str = "CrashLoopBackOff";

    #[test]
    fn phase_follows_the_kubelet() {
        let cases: [(&str, Vec<ContainerView>, Vec<ContainerView>, &str); 17] = [
            (
                "Always",
                vec![],
                vec![waiting("a", "ContainerCreating")],
                "Pending",
            ),
            (
                "Always",
                vec![],
                vec![running("a"), waiting("b", "ContainerCreating")],
                "Pending",
            ),
            (
                "Always",
                vec![],
                vec![running("a"), exited("b", 1)],
                "Running",
            ),
            (
                "Always",
                vec![],
                vec![exited("a", 0), exited("b", 1)],
                "Running",
            ),
            ("Always", vec![], vec![crash_looping("a", 0)], "Running"),
            (
                "OnFailure",
                vec![],
                vec![exited("a", 0), exited("b", 0)],
                "Succeeded",
            ),
            (
                "OnFailure",
                vec![],
                vec![exited("a", 0), exited("b", 1)],
                "Running",
            ),
            ("OnFailure", vec![], vec![crash_looping("a", 1)], "Running"),
            (
                "Never",
                vec![],
                vec![exited("a", 0), exited("b", 0)],
                "Succeeded",
            ),
            (
                "Never",
                vec![],
                vec![exited("a", 0), exited("b", 2)],
                "Failed",
            ),
            (
                "Always",
                vec![running("init")],
                vec![waiting("a", "PodInitializing")],
                "Pending",
            ),
            (
                "Always",
                vec![waiting("init", "PodInitializing")],
                vec![waiting("a", "x")],
                "Pending",
            ),
            (
                "Never",
                vec![exited("init", 1)],
                vec![waiting("a", "PodInitializing")],
                "Failed",
            ),
            (
                "Always",
                vec![crash_looping("init", 1)],
                vec![waiting("a", "PodInitializing")],
                "Pending",
            ),
            (
                "Always",
                vec![exited("init", 0)],
                vec![running("a")],
                "Running",
            ),
            (
                "Never",
                vec![exited("init", 0)],
                vec![exited("a", 0)],
                "Succeeded",
            ),
            ("Always", vec![], vec![], "Pending"),
        ];
        for (policy, init, containers, expected) in cases {
            assert_eq!(
                phase(policy, &init, &containers),
                expected,
                "{policy} {init:?} {containers:?}"
            );
        }
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "u-1"}, "spec": spec, "status": status})
    }

    fn spec() -> Value {
        json!({"restartPolicy": "Always", "containers": [{"name": "web"}, {"name": "sidecar"}]})
    }

    /// As the scheduler and the API server leave a new pod.
    fn scheduled() -> Value {
        json!({
            "phase": "Pending",
            "qosClass": "BestEffort",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2025-12-31T23:59:00Z"}],
        })
    }

    fn pod_view(containers: Vec<ContainerView>) -> PodView {
        PodView {
            init: vec![],
            containers,
            pod_ip: Some("10.42.0.5".into()),
            sandbox_ready: true,
            host_ip: "192.168.1.10".into(),
            start_time: Some(t(1)),
            reason: None,
            message: None,
        }
    }

    fn condition(status: &Value, kind: &str) -> Value {
        list(status, "conditions")
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn a_running_pod_has_the_whole_kubernetes_status() {
        let mut sidecar = crash_looping("sidecar", 1);
        sidecar.container_id = "bramble://sidecar-1".into();
        let view = pod_view(vec![running("web"), sidecar]);
        let status = pod_status(&pod(spec(), scheduled()), &view, t(10));
        let cond = |kind: &str, status: &str, extra: Value| {
            let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:10Z"});
            c.as_object_mut()
                .into_iter()
                .for_each(|c| c.extend(extra.as_object().cloned().unwrap_or_default()));
            c
        };
        let unready = json!({"reason": "ContainersNotReady", "message": "containers with unready status: [sidecar]"});
        assert_eq!(
            status,
            json!({
                "phase": "Running",
                "conditions": [
                    cond("PodReadyToStartContainers", "True", json!({})),
                    cond("Initialized", "True", json!({})),
                    cond("Ready", "False", unready.clone()),
                    cond("ContainersReady", "False", unready),
                    {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2025-12-31T23:59:00Z"},
                ],
                "hostIP": "192.168.1.10",
                "hostIPs": [{"ip": "192.168.1.10"}],
                "podIP": "10.42.0.5",
                "podIPs": [{"ip": "10.42.0.5"}],
                "startTime": "2026-01-01T00:00:01Z",
                "containerStatuses": [
                    {
                        "name": "sidecar",
                        "image": "nginx:1.27",
                        "imageID": "docker.io/library/nginx@sha256:abc",
                        "containerID": "bramble://sidecar-1",
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {
                            "exitCode": 1,
                            "reason": "Error",
                            "startedAt": "2026-01-01T00:00:05Z",
                            "finishedAt": "2026-01-01T00:00:08Z",
                        }},
                        "ready": false,
                        "restartCount": 1,
                        "started": false,
                    },
                    {
                        "name": "web",
                        "image": "nginx:1.27",
                        "imageID": "docker.io/library/nginx@sha256:abc",
                        "containerID": "bramble://web-1",
                        "state": {"running": {"startedAt": "2026-01-01T00:00:05Z"}},
                        "lastState": {},
                        "ready": true,
                        "restartCount": 0,
                        "started": true,
                    },
                ],
                "qosClass": "BestEffort",
            })
        );
    }

    #[test]
    fn an_unchanged_pod_yields_a_byte_identical_status() {
        let view = pod_view(vec![
            running("web"),
            waiting("sidecar", "ContainerCreating"),
        ]);
        let first = pod_status(&pod(spec(), scheduled()), &view, t(10));
        let second = pod_status(&pod(spec(), first.clone()), &view, t(70));
        assert_eq!(second.to_string(), first.to_string());
    }

    #[test]
    fn only_conditions_that_flip_get_a_new_transition_time() {
        let before = pod_view(vec![running("web"), running("sidecar")]);
        let first = pod_status(&pod(spec(), scheduled()), &before, t(10));
        assert_eq!(condition(&first, "Ready")["status"], "True");
        let mut after = before.clone();
        after.containers[1].ready = false;
        let second = pod_status(&pod(spec(), first), &after, t(70));
        let since = |kind| condition(&second, kind)["lastTransitionTime"].clone();
        assert_eq!(since("Ready"), "2026-01-01T00:01:10Z");
        assert_eq!(since("ContainersReady"), "2026-01-01T00:01:10Z");
        assert_eq!(since("Initialized"), "2026-01-01T00:00:10Z");
        assert_eq!(since("PodReadyToStartContainers"), "2026-01-01T00:00:10Z");
    }

    #[test]
    fn a_terminal_phase_is_never_left() {
        let old =
            json!({"phase": "Succeeded", "reason": "Done", "startTime": "2026-01-01T00:00:00Z"});
        let status = pod_status(
            &pod(spec(), old),
            &pod_view(vec![running("web"), running("sidecar")]),
            t(10),
        );
        assert_eq!(status["phase"], "Succeeded");
        assert_eq!(status["reason"], "Done");
        assert_eq!(status["startTime"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn reason_and_message_last_as_long_as_their_phase() {
        let old = json!({"phase": "Running", "reason": "R", "message": "M"});
        let running = pod_view(vec![running("web"), running("sidecar")]);
        let status = pod_status(&pod(spec(), old.clone()), &running, t(10));
        assert_eq!(
            (&status["reason"], &status["message"]),
            (&json!("R"), &json!("M"))
        );
        let pending = pod_view(vec![waiting("web", "x"), waiting("sidecar", "x")]);
        let status = pod_status(&pod(spec(), old.clone()), &pending, t(10));
        assert_eq!((status.get("reason"), status.get("message")), (None, None));
        let evicted = PodView {
            reason: Some("Evicted".into()),
            message: Some("low on memory".into()),
            ..running
        };
        let status = pod_status(&pod(spec(), old), &evicted, t(10));
        assert_eq!(
            (&status["reason"], &status["message"]),
            (&json!("Evicted"), &json!("low on memory"))
        );
    }

    #[test]
    fn init_containers_gate_initialized() {
        let spec = json!({
            "restartPolicy": "Always",
            "initContainers": [{"name": "migrate"}, {"name": "seed"}],
            "containers": [{"name": "web"}],
        });
        let with_init = |init: Vec<ContainerView>, app: ContainerView| {
            let view = PodView {
                init,
                ..pod_view(vec![app])
            };
            pod_status(&pod(spec.clone(), json!({})), &view, t(10))
        };
        let status = with_init(
            vec![exited("migrate", 0)],
            waiting("web", "PodInitializing"),
        );
        let init = condition(&status, "Initialized");
        assert_eq!(init["status"], "False");
        assert_eq!(init["reason"], "ContainersNotInitialized");
        assert_eq!(init["message"], "containers with unknown status: [seed]");
        let status = with_init(
            vec![crash_looping("migrate", 1), running("seed")],
            waiting("web", "PodInitializing"),
        );
        assert_eq!(
            condition(&status, "Initialized")["message"],
            "containers with incomplete status: [migrate seed]"
        );
        assert_eq!(status["initContainerStatuses"][0]["name"], "migrate");
        assert_eq!(status["initContainerStatuses"][1]["name"], "seed");
        let status = with_init(
            vec![exited("migrate", 0), exited("seed", 0)],
            running("web"),
        );
        assert_eq!(condition(&status, "Initialized")["status"], "True");
        assert_eq!(condition(&status, "Initialized").get("reason"), None);
        // A restarted app container means the pod was initialized before.
        let status = with_init(
            vec![waiting("migrate", "x"), waiting("seed", "x")],
            running("web"),
        );
        assert_eq!(condition(&status, "Initialized")["status"], "True");
    }

    #[test]
    fn terminal_pods_report_completed_or_failed_readiness() {
        let spec = json!({"restartPolicy": "Never", "initContainers": [{"name": "i"}], "containers": [{"name": "job"}]});
        let status = |code| {
            let view = PodView {
                init: vec![exited("i", 0)],
                ..pod_view(vec![exited("job", code)])
            };
            pod_status(&pod(spec.clone(), json!({})), &view, t(10))
        };
        let done = status(0);
        assert_eq!(done["phase"], "Succeeded");
        assert_eq!(condition(&done, "Initialized")["reason"], "PodCompleted");
        assert_eq!(condition(&done, "Initialized")["status"], "True");
        for kind in ["Ready", "ContainersReady"] {
            assert_eq!(condition(&done, kind)["status"], "False");
            assert_eq!(condition(&done, kind)["reason"], "PodCompleted");
        }
        let failed = status(3);
        assert_eq!(failed["phase"], "Failed");
        assert_eq!(condition(&failed, "Ready")["reason"], "PodFailed");
        assert_eq!(
            failed["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            3
        );
    }

    #[test]
    fn readiness_gates_hold_ready_back() {
        let mut spec = spec();
        spec["readinessGates"] =
            json!([{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]);
        let old = json!({"conditions": [{"type": "example.com/lb", "status": "False"}]});
        let view = pod_view(vec![running("web"), running("sidecar")]);
        let status = pod_status(&pod(spec, old), &view, t(10));
        let ready = condition(&status, "Ready");
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "ReadinessGatesNotReady");
        assert_eq!(
            ready["message"],
            "the status of pod readiness gate \"example.com/lb\" is not \"True\", but False, \
             corresponding condition of pod readiness gate \"example.com/dns\" does not exist."
        );
        assert_eq!(condition(&status, "ContainersReady")["status"], "True");
        // Conditions other writers own stay first and untouched.
        assert_eq!(
            status["conditions"][0],
            json!({"type": "example.com/lb", "status": "False"})
        );
    }

    #[test]
    fn kubelet_conditions_are_regenerated_and_others_kept() {
        let old = json!({"conditions": [
            {"type": "Ready", "status": "Unknown", "lastTransitionTime": "2025-01-01T00:00:00Z"},
            {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"},
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
        ]});
        let status = pod_status(
            &pod(spec(), old),
            &pod_view(vec![running("web"), running("sidecar")]),
            t(10),
        );
        let kinds: Vec<&str> = list(&status, "conditions")
            .iter()
            .map(|c| text(c, "type"))
            .collect();
        assert_eq!(
            kinds,
            [
                "DisruptionTarget",
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert_eq!(
            condition(&status, "PodScheduled"),
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:10Z"})
        );
        assert_eq!(
            condition(&status, "Ready")["lastTransitionTime"],
            "2026-01-01T00:00:10Z"
        );
    }

    #[test]
    fn terminated_states_carry_signal_container_id_and_null_start() {
        let mut c = view(
            "web",
            State::Terminated {
                exit_code: 137,
                signal: Some(9),
                reason: "OOMKilled".into(),
                message: "out of memory".into(),
                started_at: None,
                finished_at: t(8),
            },
        );
        c.last_state = Some(State::Waiting {
            reason: "x".into(),
            message: "y".into(),
        });
        assert_eq!(
            container_status(&c)["state"],
            json!({"terminated": {
                "exitCode": 137,
                "signal": 9,
                "reason": "OOMKilled",
                "message": "out of memory",
                "startedAt": null,
                "finishedAt": "2026-01-01T00:00:08Z",
                "containerID": "bramble://web-1",
            }})
        );
        assert_eq!(
            container_status(&c)["lastState"],
            json!({"waiting": {"reason": "x", "message": "y"}})
        );
        let fresh = waiting("web", "ContainerCreating");
        assert_eq!(container_status(&fresh).get("containerID"), None);
        assert_eq!(
            container_status(&fresh)["state"],
            json!({"waiting": {"reason": "ContainerCreating"}})
        );
    }

    #[test]
    fn addresses_survive_the_sandbox_and_host_network_uses_the_node() {
        let old = json!({"podIP": "10.42.0.9", "podIPs": [{"ip": "10.42.0.9"}]});
        let view = PodView {
            pod_ip: None,
            sandbox_ready: false,
            ..pod_view(vec![exited("web", 0), exited("sidecar", 0)])
        };
        let status = pod_status(&pod(spec(), old), &view, t(10));
        assert_eq!(status["podIP"], "10.42.0.9");
        assert_eq!(status["podIPs"], json!([{"ip": "10.42.0.9"}]));
        assert_eq!(
            condition(&status, "PodReadyToStartContainers")["status"],
            "False"
        );

        let mut spec = spec();
        spec["hostNetwork"] = true.into();
        let status = pod_status(&pod(spec, json!({})), &view, t(10));
        assert_eq!(status["podIP"], "192.168.1.10");
        assert_eq!(
            condition(&status, "PodReadyToStartContainers")["status"],
            "True"
        );
    }

    #[test]
    fn start_time_is_kept_then_taken_from_the_view_then_now() {
        let view = pod_view(vec![running("web"), running("sidecar")]);
        let kept = json!({"startTime": "2025-06-01T00:00:00Z"});
        assert_eq!(
            pod_status(&pod(spec(), kept), &view, t(10))["startTime"],
            "2025-06-01T00:00:00Z"
        );
        assert_eq!(
            pod_status(&pod(spec(), json!({})), &view, t(10))["startTime"],
            "2026-01-01T00:00:01Z"
        );
        let unknown = PodView {
            start_time: None,
            ..view
        };
        assert_eq!(
            pod_status(&pod(spec(), json!({})), &unknown, t(10))["startTime"],
            "2026-01-01T00:00:10Z"
        );
    }
}
