//! The scheduler seen through kubectl: simulated nodes are Node objects
//! created through the API with allocatable resources and a Ready
//! condition (no kubelet runs there, so pods bound to them never start;
//! the tests look at spec.nodeName). The server's own node is cordoned so
//! that every pod goes to a simulated node.

use serde_json::Value;

use crate::support::{Server, missing, wait_for};

/// A server with its own node cordoned and `names` as simulated nodes.
fn cluster(names: &[&str]) -> Server {
    let s = Server::start();
    s.kubectl_ok(&["cordon", "test-node"]);
    for name in names {
        s.apply(&format!(
            "apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels:
    kubernetes.io/hostname: {name}
status:
  capacity: {{cpu: '2', memory: 2Gi, pods: '110'}}
  allocatable: {{cpu: '2', memory: 2Gi, pods: '110'}}
  conditions:
  - {{type: Ready, status: 'True', reason: KubeletReady}}
"
        ));
    }
    s
}

/// A pod that is never run (its node has no kubelet); `extra` is YAML
/// indented under `spec:`.
fn pod(name: &str, labels: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{{labels}}}
spec:
  containers:
  - name: c
    image: busybox:1.36
    imagePullPolicy: Never
{extra}"
    )
}

fn node_of(s: &Server, name: &str) -> Option<String> {
    let p = s.pod(name);
    p["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// The message of the pod's FailedScheduling event, once there is one.
fn failed_scheduling(s: &Server, name: &str) -> String {
    wait_for(20, &format!("FailedScheduling for {name}"), || {
        let events: Value = serde_json::from_str(&s.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name},reason=FailedScheduling"),
            "-o",
            "json",
        ]))
        .unwrap();
        events["items"]
            .as_array()
            .and_then(|items| items.last())
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
    })
}

#[test]
fn a_pod_waits_for_a_matching_node_label_and_one_too_big_is_refused() {
    if missing("kubectl") {
        return;
    }
    let s = cluster(&["sim-1", "sim-2"]);
    s.apply(&pod(
        "picky",
        "app: picky",
        "  nodeSelector:\n    disk: ssd\n",
    ));
    let message = failed_scheduling(&s, "picky");
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector."
    );
    let describe = s.kubectl_ok(&["describe", "pod", "picky"]);
    assert!(
        describe.contains("FailedScheduling") && describe.contains(&message),
        "{describe}"
    );
    let p = s.pod("picky");
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(node_of(&s, "picky"), None);

    s.kubectl_ok(&["label", "node", "sim-2", "disk=ssd"]);
    let node = wait_for(20, "picky bound", || node_of(&s, "picky"));
    assert_eq!(node, "sim-2");
    let events = s.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=picky",
    ]);
    assert!(
        events.contains("Successfully assigned default/picky to sim-2"),
        "{events}"
    );

    s.apply(&pod(
        "huge",
        "app: huge",
        "    resources:\n      requests:\n        memory: 64Gi\n",
    ));
    assert_eq!(
        failed_scheduling(&s, "huge"),
        "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient memory."
    );
    assert_eq!(node_of(&s, "huge"), None);
}

#[test]
fn pods_with_required_pod_affinity_run_together_on_one_node() {
    if missing("kubectl") {
        return;
    }
    let s = cluster(&["sim-1", "sim-2", "sim-3", "sim-4"]);
    let together = "  affinity:
    podAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector:
          matchLabels: {group: shop}
        topologyKey: kubernetes.io/hostname
";
    // Without the rule the scheduler would put the second pod on an empty
    // node (least allocated), so sharing one shows the rule at work.
    s.apply(&pod("web", "app: web, group: shop", together));
    let first = wait_for(20, "web bound", || node_of(&s, "web"));
    s.apply(&pod("cache", "app: cache, group: shop", together));
    let second = wait_for(20, "cache bound", || node_of(&s, "cache"));
    assert_eq!(second, first);
    s.apply(&pod("alone", "app: alone", ""));
    let other = wait_for(20, "alone bound", || node_of(&s, "alone"));
    assert_ne!(
        other, first,
        "a pod without the rule goes to an emptier node"
    );
}

#[test]
fn replicas_with_required_anti_affinity_spread_over_distinct_nodes() {
    if missing("kubectl") {
        return;
    }
    let s = cluster(&["sim-1", "sim-2", "sim-3"]);
    s.apply(
        "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: db
spec:
  replicas: 3
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels: {app: db}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: c
        image: busybox:1.36
        imagePullPolicy: Never
",
    );
    let nodes = |s: &Server| -> Vec<(String, String)> {
        let list: Value =
            serde_json::from_str(&s.kubectl_ok(&["get", "pods", "-l", "app=db", "-o", "json"]))
                .unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    p["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    };
    let mut placed = wait_for(20, "3 db pods bound", || {
        let n = nodes(&s);
        (n.len() == 3 && n.iter().all(|(_, node)| !node.is_empty())).then_some(n)
    });
    let mut on: Vec<String> = placed.drain(..).map(|(_, node)| node).collect();
    on.sort();
    assert_eq!(on, ["sim-1", "sim-2", "sim-3"]);

    s.kubectl_ok(&["scale", "rs", "db", "--replicas=4"]);
    let waiting = wait_for(20, "a 4th db pod", || {
        nodes(&s)
            .into_iter()
            .find(|(_, node)| node.is_empty())
            .map(|(name, _)| name)
    });
    assert_eq!(
        failed_scheduling(&s, &waiting),
        "0/4 nodes are available: 1 node(s) were unschedulable, 3 node(s) didn't match pod anti-affinity rules."
    );
}
