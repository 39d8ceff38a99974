//! DaemonSets, Jobs and node failure with the real kubectl and real
//! containers. Other boards are simulated by Node objects created through
//! the API and kept alive by a thread that posts their status (as a kubelet
//! would), or left silent to die.

use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Server, server_with_busybox, wait_for};

fn create(s: &Server, manifest: &str) {
    let out = s.kubectl_stdin(&["create", "-f", "-"], manifest);
    assert!(
        out.status.success(),
        "kubectl create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn get(s: &Server, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend(["-o", "json"]);
    serde_json::from_str(&s.kubectl_ok(&args)).unwrap()
}

/// Pods matching a label selector.
fn pods(s: &Server, selector: &str) -> Vec<Value> {
    get(s, &["pods", "-l", selector])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn node_of(p: &Value) -> &str {
    p["spec"]["nodeName"].as_str().unwrap_or_default()
}

fn deleting(p: &Value) -> bool {
    !p["metadata"]["deletionTimestamp"].is_null()
}

/// Reasons of the events about one object.
fn event_reasons(s: &Server, name: &str) -> Vec<String> {
    get(
        s,
        &[
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
        ],
    )["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect()
}

/// A node of another board, simulated: a Node object whose status a thread
/// posts every second while it is alive, as that board's kubelet would.
struct SimNode {
    name: String,
    alive: Arc<AtomicBool>,
    beats: Option<std::thread::JoinHandle<()>>,
}

impl SimNode {
    fn start(s: &Server, name: &str, labels: Value) -> SimNode {
        let mut labels = labels;
        labels["kubernetes.io/hostname"] = name.into();
        let capacity = json!({"cpu": "4", "memory": "4Gi", "pods": "110"});
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "status": {"capacity": capacity, "allocatable": capacity, "conditions": [ready()]}});
        create(s, &node.to_string());
        let mut n = SimNode {
            name: name.into(),
            alive: Arc::new(AtomicBool::new(false)),
            beats: None,
        };
        n.resume(s);
        n
    }

    /// Starts posting the node's status (Ready) every second.
    fn resume(&mut self, s: &Server) {
        self.alive.store(true, Ordering::SeqCst);
        let (alive, url, ca, token) = (
            self.alive.clone(),
            format!("{}/api/v1/nodes/{}/status", s.url(), self.name),
            s.data_dir().join("tls/ca.crt"),
            s.token.clone(),
        );
        self.beats = Some(std::thread::spawn(move || {
            let body = json!({"status": {"conditions": [ready()]}}).to_string();
            while alive.load(Ordering::SeqCst) {
                let ok = Command::new("curl")
                    .args(["-sf", "-o", "/dev/null", "-X", "PATCH", "--cacert"])
                    .arg(&ca)
                    .args(["-H", &format!("Authorization: Bearer {token}")])
                    .args(["-H", "Content-Type: application/merge-patch+json"])
                    .args(["--data-binary", &body, &url])
                    .stdin(Stdio::null())
                    .status()
                    .is_ok_and(|st| st.success());
                if !ok {
                    eprintln!("posting the status of {url} failed");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }));
    }

    /// Stops posting status, as a board that lost power; returns when.
    fn die(&mut self) -> Instant {
        self.alive.store(false, Ordering::SeqCst);
        if let Some(t) = self.beats.take() {
            t.join().unwrap();
        }
        Instant::now()
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

/// The Ready condition a healthy kubelet posts; constant, so that a post
/// that changes nothing writes nothing.
fn ready() -> Value {
    json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
           "message": "kubelet is posting ready status",
           "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

fn condition<'a>(obj: &'a Value, ty: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == ty))
        .unwrap_or(&Value::Null)
}

/// A container that runs until stopped; a short grace period so that
/// deleted pods go quickly (sh as PID 1 ignores SIGTERM).
fn forever(image: &str) -> String {
    format!(
        "      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {image}
        imagePullPolicy: Never
        command: [sh, -c, 'while true; do sleep 1; done']
"
    )
}

fn daemon_set(name: &str, node_selector: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {node_selector}
{}",
        forever(image)
    )
}

/// The live (not terminating) pods of app=APP, by node.
fn pods_by_node(s: &Server, app: &str) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = pods(s, &format!("app={app}"))
        .into_iter()
        .filter(|p| !deleting(p))
        .map(|p| (node_of(&p).to_string(), p))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Waits until the live pods of app=APP are exactly one on each of `nodes`.
#[track_caller]
fn wait_daemon_pods_on(s: &Server, app: &str, nodes: &[&str]) -> Vec<(String, Value)> {
    wait_for(60, &format!("pods of {app} exactly on {nodes:?}"), || {
        let ps = pods_by_node(s, app);
        let on: Vec<&str> = ps.iter().map(|(n, _)| n.as_str()).collect();
        (on == nodes).then_some(ps)
    })
}

#[test]
fn a_daemon_set_follows_the_nodes_that_match_it() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    s.kubectl_ok(&["label", "node", "test-node", "daemons=on"]);
    let mut a = SimNode::start(&s, "sim-a", json!({"daemons": "on"}));
    let _b = SimNode::start(&s, "sim-b", json!({"daemons": "on"}));
    let _off = SimNode::start(&s, "sim-off", json!({"daemons": "off"}));
    create(&s, &daemon_set("agent", "{daemons: 'on'}", &image));

    let ps = wait_daemon_pods_on(&s, "agent", &["sim-a", "sim-b", "test-node"]);
    let ds = get(&s, &["ds", "agent"]);
    for (node, p) in &ps {
        let r = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&r["kind"], &r["uid"]),
            (&json!("DaemonSet"), &ds["metadata"]["uid"])
        );
        let term = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0];
        assert_eq!(
            term["matchFields"],
            json!([{"key": "metadata.name", "operator": "In", "values": [node]}])
        );
        assert!(p["metadata"]["labels"]["controller-revision-hash"].is_string());
    }
    let local = ps.iter().find(|(n, _)| n == "test-node").unwrap().1["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_phase(&local, "Running", 60);
    wait_for(30, "DaemonSet status", || {
        let st = get(&s, &["ds", "agent"])["status"].clone();
        (st["desiredNumberScheduled"] == 3
            && st["currentNumberScheduled"] == 3
            && st["numberMisscheduled"] == 0
            && st["updatedNumberScheduled"] == 3
            && st["numberReady"] == 1)
            .then_some(())
    });
    assert!(event_reasons(&s, "agent").contains(&"SuccessfulCreate".to_string()));

    // A new node gets a pod; a deleted one takes its pod along; a node
    // relabelled out of the selector loses its pod.
    let _c = SimNode::start(&s, "sim-c", json!({"daemons": "on"}));
    wait_daemon_pods_on(&s, "agent", &["sim-a", "sim-b", "sim-c", "test-node"]);
    a.die();
    s.kubectl_ok(&["delete", "node", "sim-a"]);
    wait_daemon_pods_on(&s, "agent", &["sim-b", "sim-c", "test-node"]);
    let on_a = |p: &Value| node_of(p) == "sim-a";
    wait_for(30, "no pod left bound to the deleted node", || {
        (!pods(&s, "app=agent").iter().any(on_a)).then_some(())
    });
    s.kubectl_ok(&["label", "node", "sim-b", "daemons=off", "--overwrite"]);
    wait_daemon_pods_on(&s, "agent", &["sim-c", "test-node"]);
    // Its pod is marked for deletion; only a kubelet on sim-b could finish it.
    let on_b: Vec<Value> = pods(&s, "app=agent")
        .into_iter()
        .filter(|p| node_of(p) == "sim-b")
        .collect();
    assert!(on_b.len() == 1 && deleting(&on_b[0]), "{on_b:?}");
    wait_for(30, "DaemonSet status after the changes", || {
        let st = get(&s, &["ds", "agent"])["status"].clone();
        (st["desiredNumberScheduled"] == 2 && st["currentNumberScheduled"] == 2).then_some(())
    });
}

#[test]
fn a_daemon_set_rolls_out_a_new_template_and_rollout_status_waits_for_it() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    create(
        &s,
        &daemon_set("logger", "{kubernetes.io/hostname: test-node}", &image),
    );
    let out = s.kubectl(&["rollout", "status", "ds/logger", "--timeout=60s"]);
    assert!(
        out.status.success(),
        "rollout status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("successfully rolled out"));
    let first = wait_daemon_pods_on(&s, "logger", &["test-node"]);
    let old_hash = first[0].1["metadata"]["labels"]["controller-revision-hash"].clone();

    s.kubectl_ok(&["set", "env", "ds/logger", "VERSION=2"]);
    let out = s.kubectl(&["rollout", "status", "ds/logger", "--timeout=60s"]);
    assert!(
        out.status.success(),
        "rollout status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = wait_daemon_pods_on(&s, "logger", &["test-node"]);
    let p = &now[0].1;
    assert_ne!(
        p["metadata"]["labels"]["controller-revision-hash"],
        old_hash
    );
    assert_eq!(p["spec"]["containers"][0]["env"][0]["value"], "2");
    assert_eq!(p["status"]["phase"], "Running");
    let ds = get(&s, &["ds", "logger"]);
    assert_eq!(
        ds["status"]["observedGeneration"],
        ds["metadata"]["generation"]
    );
    assert_eq!(ds["status"]["updatedNumberScheduled"], 1);
}

fn job(name: &str, spec: &str, restart: &str, image: &str, script: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
{spec}
  template:
    spec:
      restartPolicy: {restart}
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {image}
        imagePullPolicy: Never
        command: [sh, -c, '{script}']
"
    )
}

fn wait_condition(s: &Server, job: &str, condition: &str) {
    let out = s.kubectl(&[
        "wait",
        &format!("--for=condition={condition}"),
        &format!("job/{job}"),
        "--timeout=120s",
    ]);
    assert!(
        out.status.success(),
        "kubectl wait {condition} job/{job}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_job_runs_to_completion_with_bounded_parallelism() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    create(
        &s,
        &job(
            "pi",
            "  completions: 3\n  parallelism: 2",
            "Never",
            &image,
            "sleep 2; echo done",
        ),
    );
    // Never more than parallelism pods at work, while it runs.
    let mut most = 0;
    wait_for(120, "job pi complete", || {
        let active = pods(&s, "job-name=pi")
            .iter()
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .count();
        most = most.max(active);
        let j = get(&s, &["job", "pi"]);
        (condition(&j, "Complete")["status"] == "True").then_some(())
    });
    assert!(most <= 2, "{most} pods were active at once");
    wait_condition(&s, "pi", "complete");
    let j = get(&s, &["job", "pi"]);
    assert_eq!(j["status"]["succeeded"], 3);
    assert!(j["status"]["active"].is_null());
    assert!(j["status"]["startTime"].is_string() && j["status"]["completionTime"].is_string());
    let ps = pods(&s, "job-name=pi");
    assert_eq!(ps.len(), 3);
    let uid = &j["metadata"]["uid"];
    for p in &ps {
        assert_eq!(p["status"]["phase"], "Succeeded");
        let labels = &p["metadata"]["labels"];
        assert_eq!(&labels["controller-uid"], uid);
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        let name = p["metadata"]["name"].as_str().unwrap();
        assert_eq!(s.kubectl_ok(&["logs", name]).trim(), "done");
    }
    let reasons = event_reasons(&s, "pi");
    for r in ["SuccessfulCreate", "Completed"] {
        assert!(reasons.contains(&r.to_string()), "{reasons:?}");
    }
    // kubectl's table for it.
    let table = s.kubectl_ok(&["get", "job", "pi"]);
    assert!(table.contains("3/3"), "{table}");
}

#[test]
fn an_indexed_job_runs_each_index_once() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    create(
        &s,
        &job(
            "shards",
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed",
            "Never",
            &image,
            "echo shard $JOB_COMPLETION_INDEX of $(hostname)",
        ),
    );
    wait_condition(&s, "shards", "complete");
    let j = get(&s, &["job", "shards"]);
    assert_eq!(j["status"]["completedIndexes"], "0-2");
    assert_eq!(j["status"]["succeeded"], 3);
    let mut lines: Vec<String> = pods(&s, "job-name=shards")
        .iter()
        .map(|p| s.kubectl_ok(&["logs", p["metadata"]["name"].as_str().unwrap()]))
        .map(|l| l.trim().to_string())
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "shard 0 of shards-0",
            "shard 1 of shards-1",
            "shard 2 of shards-2"
        ]
    );
}

#[test]
fn jobs_fail_past_their_backoff_limit_and_deadline_and_expire_after_their_ttl() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    create(
        &s,
        &job("fails", "  backoffLimit: 1", "Never", &image, "exit 1"),
    );
    create(
        &s,
        &job(
            "sleeps",
            "  activeDeadlineSeconds: 3",
            "Never",
            &image,
            "sleep 300",
        ),
    );
    create(
        &s,
        &job(
            "brief",
            "  ttlSecondsAfterFinished: 2",
            "Never",
            &image,
            "true",
        ),
    );

    wait_condition(&s, "fails", "failed");
    let j = get(&s, &["job", "fails"]);
    let failed = condition(&j, "Failed");
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert_eq!(j["status"]["failed"], 2);
    let ps = pods(&s, "job-name=fails");
    assert_eq!(ps.len(), 2, "one pod and one retry");
    assert!(ps.iter().all(|p| p["status"]["phase"] == "Failed"));
    // The retry waited out the 10 s back-off after the first failure.
    let at = |v: &Value| humantime::parse_rfc3339_weak(v.as_str().unwrap()).unwrap();
    let mut ps = ps;
    ps.sort_by_key(|p| at(&p["metadata"]["creationTimestamp"]));
    let failed_at =
        at(&ps[0]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]);
    let retried_at = at(&ps[1]["metadata"]["creationTimestamp"]);
    let waited = retried_at.duration_since(failed_at).unwrap_or_default();
    assert!(waited >= Duration::from_secs(9), "retried after {waited:?}");
    assert!(event_reasons(&s, "fails").contains(&"BackoffLimitExceeded".to_string()));

    wait_condition(&s, "sleeps", "failed");
    let j = get(&s, &["job", "sleeps"]);
    assert_eq!(condition(&j, "Failed")["reason"], "DeadlineExceeded");
    wait_for(30, "the sleeping pod stopped", || {
        pods(&s, "job-name=sleeps").is_empty().then_some(())
    });
    assert!(event_reasons(&s, "sleeps").contains(&"DeadlineExceeded".to_string()));

    wait_for(60, "job brief deleted after its TTL", || {
        (!s.kubectl(&["get", "job", "brief"]).status.success()).then_some(())
    });
    wait_for(30, "its pod collected", || {
        pods(&s, "job-name=brief").is_empty().then_some(())
    });
}

/// The grace period and eviction timeout the node failure test runs with
/// (the shortest grace the board config allows).
const GRACE: u64 = 15;
const EVICTION: u64 = 4;

fn server_with_short_node_timings() -> Option<(Server, String)> {
    if crate::support::missing("kubectl") {
        return None;
    }
    let fx = crate::support::fixtures::busybox_image()?;
    let dir = crate::support::TempDir::new("node-failure-config");
    let config = dir.0.join("fast.toml");
    std::fs::write(
        &config,
        format!(
            "[node_failure]\nnode_monitor_grace = \"{GRACE}s\"\npod_eviction_timeout = \"{EVICTION}s\"\n"
        ),
    )
    .unwrap();
    let s = Server::start_with(&["--config", config.to_str().unwrap()]);
    s.import_image(&fx.oci_archive);
    Some((s, fx.reference.clone()))
}

#[test]
fn pods_of_a_silent_node_are_evicted_and_replaced_on_a_live_one() {
    let Some((s, image)) = server_with_short_node_timings() else {
        return;
    };
    let mut far = SimNode::start(&s, "sim-far", json!({"zone": "far"}));
    // Only the simulated node has zone=far: both pods go there.
    create(
        &s,
        &format!(
            "apiVersion: v1\nkind: ReplicationController\nmetadata: {{name: web}}\nspec:\n  replicas: 2\n  selector: {{app: web}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      nodeSelector: {{zone: far}}\n{}",
            forever(&image)
        ),
    );
    let first = wait_for(30, "both pods bound to sim-far", || {
        let ps = pods(&s, "app=web");
        (ps.len() == 2 && ps.iter().all(|p| node_of(p) == "sim-far")).then_some(ps)
    });
    for p in &first {
        // As sim-far's kubelet: the pod runs and is ready.
        let name = p["metadata"]["name"].as_str().unwrap();
        let running = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        let (code, body) = s.request(
            "PATCH",
            &format!("/api/v1/namespaces/default/pods/{name}/status"),
            Some("application/merge-patch+json"),
            running.to_string().as_bytes(),
        );
        assert_eq!(code, 200, "{body}");
        let tolerations = p["spec"]["tolerations"].as_array().unwrap();
        assert!(
            tolerations.contains(&json!({"key": "node.kubernetes.io/unreachable",
                "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": EVICTION})),
            "the board config's eviction timeout: {tolerations:?}"
        );
    }
    // While every node is healthy, heartbeats write nothing.
    let rv = || get(&s, &["pods"])["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_secs(1));
    let settled = rv();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        rv(),
        settled,
        "nothing is written while every node is healthy"
    );
    // The replacements may go to this board.
    s.kubectl_ok(&["label", "node", "test-node", "zone=far"]);

    let died = far.die();
    wait_for(
        GRACE + 5,
        "sim-far NotReady with the unreachable taint",
        || {
            let n = get(&s, &["node", "sim-far"]);
            let ready = condition(&n, "Ready");
            let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
            (ready["status"] == "Unknown"
                && ready["reason"] == "NodeStatusUnknown"
                && ready["message"] == "Kubelet stopped posting node status."
                && ["NoSchedule", "NoExecute"].iter().all(|e| {
                    taints.iter().any(|t| {
                        t["key"] == "node.kubernetes.io/unreachable"
                            && t["effect"] == *e
                            && t["timeAdded"].is_string()
                    })
                }))
            .then_some(())
        },
    );
    let table = s.kubectl_ok(&["get", "node", "sim-far"]);
    assert!(table.contains("NotReady"), "{table}");
    let replaced = wait_for(
        GRACE + EVICTION + 5,
        "two Running replacements on test-node",
        || {
            let live: Vec<Value> = pods(&s, "app=web")
                .into_iter()
                .filter(|p| !deleting(p))
                .collect();
            (live.len() == 2
                && live
                    .iter()
                    .all(|p| node_of(p) == "test-node" && p["status"]["phase"] == "Running"))
            .then_some(live)
        },
    );
    eprintln!("replaced {:?} after the node went silent", died.elapsed());
    for p in &first {
        let name = p["metadata"]["name"].as_str().unwrap();
        let now = s.pod(name);
        assert!(deleting(&now), "{name} was evicted");
        assert_eq!(
            condition(&now, "Ready")["status"],
            "False",
            "the pods of a lost node are not ready"
        );
        assert!(
            event_reasons(&s, name).contains(&"TaintManagerEviction".to_string()),
            "{name}"
        );
    }
    assert_eq!(replaced.len(), 2);

    // The board comes back: its taints go and it is Ready again.
    far.resume(&s);
    wait_for(10, "sim-far Ready without taints", || {
        let n = get(&s, &["node", "sim-far"]);
        (condition(&n, "Ready")["status"] == "True" && n["spec"]["taints"].is_null()).then_some(())
    });
    // A node deleted for good takes its pods (the evicted ones) with it.
    s.kubectl_ok(&["delete", "node", "sim-far"]);
    wait_for(10, "the evicted pods gone with their node", || {
        (pods(&s, "app=web").len() == 2).then_some(())
    });
}

#[test]
fn a_no_execute_taint_evicts_and_this_boards_kubelet_stops_the_pod() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    let pod = |name: &str, tolerations: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  tolerations: {tolerations}\n{}",
            forever(&image).replace("      ", "  ")
        )
    };
    create(&s, &pod("plain", "[]"));
    create(
        &s,
        &pod(
            "patient",
            "[{key: maintenance, operator: Exists, effect: NoExecute, tolerationSeconds: 3}]",
        ),
    );
    create(
        &s,
        &pod(
            "stays",
            "[{key: maintenance, operator: Exists, effect: NoExecute}]",
        ),
    );
    for p in ["plain", "patient", "stays"] {
        s.wait_phase(p, "Running", 60);
    }
    s.kubectl_ok(&["taint", "node", "test-node", "maintenance=now:NoExecute"]);
    wait_for(20, "plain evicted and stopped", || {
        (!s.kubectl(&["get", "pod", "plain"]).status.success()).then_some(())
    });
    assert!(
        !deleting(&s.pod("patient")),
        "it tolerates the taint for 3 s"
    );
    wait_for(20, "patient evicted after its toleration", || {
        (!s.kubectl(&["get", "pod", "patient"]).status.success()).then_some(())
    });
    let stays = s.pod("stays");
    assert!(!deleting(&stays) && stays["status"]["phase"] == "Running");
    s.kubectl_ok(&["taint", "node", "test-node", "maintenance-"]);
}
