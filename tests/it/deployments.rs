//! Deployments with the real kubectl and real containers: rolling updates
//! that keep enough pods Ready, `kubectl rollout` status, history, undo,
//! restart, pause and resume, scaling, Recreate, and cascading deletes.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::support::{Server, fixtures, server_with_busybox, wait_for};

/// A server with two images: the busybox fixture as v1 and the app fixture
/// (busybox plus a file) as v2.
fn server_with_two_images() -> Option<(Server, String, String)> {
    let (s, v1) = server_with_busybox()?;
    let app = fixtures::app_image()?;
    s.import_image(&app.oci_archive);
    Some((s, v1, app.reference.clone()))
}

/// A Deployment of `replicas` pods labelled app=NAME whose containers turn
/// Ready two seconds after they start (an exec readiness probe every
/// second), so that a rollout that did not wait for readiness would show.
fn deployment(name: &str, replicas: u32, image: &str, strategy: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  annotations: {{kubernetes.io/change-cause: first}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {strategy}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {image}
        imagePullPolicy: Never
        command: [sh, -c, 'sleep 2; touch /ready; while true; do sleep 1; done']
        readinessProbe:
          exec: {{command: [cat, /ready]}}
          periodSeconds: 1
"
    )
}

const ROLLING: &str = "{type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn is_ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn terminating(p: &Value) -> bool {
    !p["metadata"]["deletionTimestamp"].is_null()
}

fn image(p: &Value) -> &str {
    p["spec"]["containers"][0]["image"].as_str().unwrap_or("")
}

fn name(p: &Value) -> String {
    p["metadata"]["name"].as_str().unwrap_or("").to_string()
}

fn pods(s: &Server, app: &str) -> Vec<Value> {
    let out = s.kubectl_ok(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
    json(&out)["items"].as_array().cloned().unwrap_or_default()
}

/// Waits until exactly `n` pods app=APP exist, none terminating, all Ready
/// and running `image`; returns them.
#[track_caller]
fn wait_ready(s: &Server, app: &str, n: usize, image_ref: &str, secs: u64) -> Vec<Value> {
    wait_for(
        secs,
        &format!("{n} Ready pods app={app} on {image_ref}"),
        || {
            let ps = pods(s, app);
            let settled = ps.len() == n
                && ps
                    .iter()
                    .all(|p| is_ready(p) && !terminating(p) && image(p) == image_ref);
            settled.then_some(ps)
        },
    )
}

fn object(s: &Server, kind: &str, name: &str) -> Value {
    json(&s.kubectl_ok(&["get", kind, name, "-o", "json"]))
}

#[track_caller]
fn rollout_status(s: &Server, deploy: &str) -> String {
    s.kubectl_ok(&[
        "rollout",
        "status",
        &format!("deployment/{deploy}"),
        "--timeout=60s",
    ])
}

/// `kubectl rollout history` as (revision, change-cause) rows.
fn history(s: &Server, deploy: &str) -> Vec<(u32, String)> {
    s.kubectl_ok(&["rollout", "history", &format!("deployment/{deploy}")])
        .lines()
        .filter_map(|l| {
            let (rev, cause) = l.trim().split_once(char::is_whitespace)?;
            Some((rev.parse().ok()?, cause.trim().to_string()))
        })
        .collect()
}

/// The pods of app=APP as the API streams their changes: a `watch` from
/// the current list, every state after each change recorded.
struct Watcher {
    curl: Child,
    thread: JoinHandle<()>,
    states: Arc<Mutex<Vec<Vec<Value>>>>,
}

impl Watcher {
    fn start(s: &Server, app: &str) -> Watcher {
        let list = s.get_json(&format!(
            "/api/v1/namespaces/default/pods?labelSelector=app%3D{app}"
        ));
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let mut pods: BTreeMap<String, Value> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (name(p), p.clone()))
            .collect();
        let mut curl = Command::new("curl")
            .args(["-sN", "--cacert"])
            .arg(s.data_dir().join("tls/ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {}", s.token)])
            .arg(format!(
                "{}/api/v1/namespaces/default/pods?watch=true&labelSelector=app%3D{app}&resourceVersion={rv}",
                s.url()
            ))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = curl.stdout.take().unwrap();
        let states = Arc::new(Mutex::new(vec![pods.values().cloned().collect()]));
        let recorded = states.clone();
        let thread = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let Ok(ev) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let p = &ev["object"];
                match ev["type"].as_str() {
                    Some("ADDED" | "MODIFIED") => {
                        pods.insert(name(p), p.clone());
                    }
                    Some("DELETED") => {
                        pods.remove(&name(p));
                    }
                    _ => continue,
                }
                recorded
                    .lock()
                    .unwrap()
                    .push(pods.values().cloned().collect());
            }
        });
        Watcher {
            curl,
            thread,
            states,
        }
    }

    /// Stops watching; every state seen, the first one being the list.
    fn stop(mut self) -> Vec<Vec<Value>> {
        let _ = self.curl.kill();
        let _ = self.curl.wait();
        self.thread.join().unwrap();
        Arc::try_unwrap(self.states).unwrap().into_inner().unwrap()
    }
}

#[test]
fn rolling_update_keeps_pods_ready_and_rollout_history_undo_and_restart_work() {
    let Some((s, v1, v2)) = server_with_two_images() else {
        return;
    };
    s.apply(&deployment("web", 3, &v1, ROLLING));
    let out = rollout_status(&s, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_ready(&s, "web", 3, &v1, 30);
    let d = object(&s, "deploy", "web");
    assert_eq!(d["status"]["availableReplicas"], 3);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );

    // v1 -> v2 with maxUnavailable 1: never fewer than 2 Ready pods.
    let watcher = Watcher::start(&s, "web");
    s.kubectl_ok(&["set", "image", "deployment/web", &format!("c={v2}")]);
    s.kubectl_ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=second",
        "--overwrite",
    ]);
    let out = rollout_status(&s, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_ready(&s, "web", 3, &v2, 30);
    let states = watcher.stop();
    let ready = |st: &Vec<Value>| st.iter().filter(|p| is_ready(p) && !terminating(p)).count();
    let min = states.iter().map(ready).min().unwrap();
    assert!(
        min >= 2,
        "at least replicas - maxUnavailable = 2 pods Ready throughout; saw {min}"
    );
    assert!(
        states.iter().any(|st| st.iter().any(|p| image(p) == v2)),
        "the watcher saw the rollout"
    );
    assert_eq!(
        history(&s, "web"),
        [(1, "first".to_string()), (2, "second".to_string())]
    );
    let rev1 = s.kubectl_ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(rev1.contains(&v1), "{rev1}");
    let events = s.kubectl_ok(&["describe", "deployment", "web"]);
    assert!(
        events.contains("ScalingReplicaSet") && events.contains("Scaled down replica set web-"),
        "{events}"
    );

    // Undo returns to v1: the revision 1 template becomes revision 3.
    s.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    rollout_status(&s, "web");
    wait_ready(&s, "web", 3, &v1, 30);
    assert_eq!(
        history(&s, "web"),
        [(2, "second".to_string()), (3, "first".to_string())]
    );
    let rss = json(&s.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "json"]));
    assert_eq!(
        rss["items"].as_array().unwrap().len(),
        2,
        "one ReplicaSet per template"
    );

    // Restart: the same template, new pods.
    let before: Vec<String> = pods(&s, "web").iter().map(name).collect();
    s.kubectl_ok(&["rollout", "restart", "deployment/web"]);
    rollout_status(&s, "web");
    let after = wait_ready(&s, "web", 3, &v1, 30);
    assert!(
        after.iter().all(|p| !before.contains(&name(p))),
        "{before:?}"
    );
    let d = object(&s, "deploy", "web");
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "4"
    );

    // Back to a chosen revision: 2 was v2.
    s.kubectl_ok(&["rollout", "undo", "deployment/web", "--to-revision=2"]);
    rollout_status(&s, "web");
    wait_ready(&s, "web", 3, &v2, 30);
    let revisions: Vec<u32> = history(&s, "web").iter().map(|r| r.0).collect();
    assert_eq!(revisions, [3, 4, 5]);
}

#[test]
fn scale_follows_and_a_paused_deployment_does_not_roll_until_resumed() {
    let Some((s, v1, v2)) = server_with_two_images() else {
        return;
    };
    s.apply(&deployment("web", 2, &v1, ROLLING));
    wait_ready(&s, "web", 2, &v1, 30);
    s.kubectl_ok(&["scale", "deployment", "web", "--replicas=4"]);
    wait_ready(&s, "web", 4, &v1, 30);
    rollout_status(&s, "web");
    s.kubectl_ok(&["scale", "deployment/web", "--replicas=1"]);
    wait_ready(&s, "web", 1, &v1, 30);
    wait_for(30, "status of 1 replica", || {
        let d = object(&s, "deploy", "web");
        let st = &d["status"];
        (st["replicas"] == 1 && st["availableReplicas"] == 1 && st["updatedReplicas"] == 1)
            .then_some(())
    });
    let rs = json(&s.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "json"]));
    let ann = &rs["items"][0]["metadata"]["annotations"];
    assert_eq!(ann["deployment.kubernetes.io/desired-replicas"], "1");
    assert_eq!(ann["deployment.kubernetes.io/max-replicas"], "2");

    // Paused: a new image makes no new ReplicaSet until resumed.
    s.kubectl_ok(&["rollout", "pause", "deployment/web"]);
    s.kubectl_ok(&["set", "image", "deployment/web", &format!("c={v2}")]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let rs = json(&s.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "json"]));
    assert_eq!(
        rs["items"].as_array().unwrap().len(),
        1,
        "no rollout while paused"
    );
    let d = object(&s, "deploy", "web");
    let progressing = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned()
        .unwrap();
    assert_eq!(progressing["reason"], "DeploymentPaused");
    // Scaling still works while paused.
    s.kubectl_ok(&["scale", "deployment/web", "--replicas=2"]);
    wait_ready(&s, "web", 2, &v1, 30);
    s.kubectl_ok(&["rollout", "resume", "deployment/web"]);
    rollout_status(&s, "web");
    wait_ready(&s, "web", 2, &v2, 30);
}

#[test]
fn deleting_a_deployment_cascades_unless_orphaned() {
    let Some((s, v1, _)) = server_with_two_images() else {
        return;
    };
    s.apply(&deployment("gone", 2, &v1, ROLLING));
    s.apply(&deployment("fg", 1, &v1, ROLLING));
    s.apply(&deployment("kept", 2, &v1, ROLLING));
    wait_ready(&s, "gone", 2, &v1, 30);
    wait_ready(&s, "fg", 1, &v1, 30);
    let kept = wait_ready(&s, "kept", 2, &v1, 30);

    s.kubectl_ok(&["delete", "deployment", "gone"]);
    wait_for(30, "the ReplicaSet and pods of gone removed", || {
        let rs = json(&s.kubectl_ok(&["get", "rs", "-l", "app=gone", "-o", "json"]));
        (rs["items"].as_array().unwrap().is_empty() && pods(&s, "gone").is_empty()).then_some(())
    });

    // Foreground: kubectl waits until the pods and the ReplicaSet are gone.
    s.kubectl_ok(&["delete", "deployment", "fg", "--cascade=foreground"]);
    let rs = json(&s.kubectl_ok(&["get", "rs", "-l", "app=fg", "-o", "json"]));
    assert!(rs["items"].as_array().unwrap().is_empty());
    assert!(pods(&s, "fg").is_empty());

    s.kubectl_ok(&["delete", "deployment", "kept", "--cascade=orphan"]);
    // Given time to act, the collector leaves them.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let rs = json(&s.kubectl_ok(&["get", "rs", "-l", "app=kept", "-o", "json"]));
    let items = rs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(
        items[0]["metadata"]["ownerReferences"].is_null(),
        "{}",
        items[0]
    );
    let left = wait_ready(&s, "kept", 2, &v1, 10);
    let mut names: Vec<String> = left.iter().map(name).collect();
    let mut before: Vec<String> = kept.iter().map(name).collect();
    names.sort();
    before.sort();
    assert_eq!(names, before, "the same pods stay");
}

#[test]
fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let Some((s, v1, v2)) = server_with_two_images() else {
        return;
    };
    s.apply(&deployment("rec", 2, &v1, "{type: Recreate}"));
    rollout_status(&s, "rec");
    wait_ready(&s, "rec", 2, &v1, 30);
    let watcher = Watcher::start(&s, "rec");
    s.kubectl_ok(&["set", "image", "deployment/rec", &format!("c={v2}")]);
    rollout_status(&s, "rec");
    wait_ready(&s, "rec", 2, &v2, 30);
    let states = watcher.stop();
    let running = |st: &Vec<Value>, img: &str| {
        st.iter()
            .any(|p| image(p) == img && p["status"]["phase"] == "Running")
    };
    assert!(
        states
            .iter()
            .all(|st| !(running(st, &v1) && running(st, &v2))),
        "an old pod ran beside a new one"
    );
    assert!(
        states.iter().any(|st| st.is_empty()),
        "every old pod was gone before the new ones were made"
    );
}

#[test]
fn pods_count_as_available_only_after_min_ready_seconds() {
    let Some((s, v1, _)) = server_with_two_images() else {
        return;
    };
    let manifest = deployment("slow", 2, &v1, ROLLING)
        .replace("  replicas: 2\n", "  replicas: 2\n  minReadySeconds: 4\n");
    s.apply(&manifest);
    // Ready but not yet available: nothing else changes after the pods
    // turn Ready, so availability comes from the controllers' own timers.
    let early = wait_for(30, "2 ready replicas", || {
        let st = object(&s, "deploy", "slow")["status"].clone();
        (st["readyReplicas"] == 2).then_some(st)
    });
    assert_ne!(early["availableReplicas"], 2, "{early}");
    let out = rollout_status(&s, "slow");
    assert!(out.contains("successfully rolled out"), "{out}");
    let rs = json(&s.kubectl_ok(&["get", "rs", "-l", "app=slow", "-o", "json"]));
    assert_eq!(rs["items"][0]["spec"]["minReadySeconds"], 4);
    assert_eq!(rs["items"][0]["status"]["availableReplicas"], 2);
    // Settled: nothing is written while idle.
    let rvs = |s: &Server| {
        let list = |path: &str| s.get_json(path)["items"].clone();
        (
            list("/apis/apps/v1/namespaces/default/deployments"),
            list("/apis/apps/v1/namespaces/default/replicasets"),
        )
    };
    let settled = rvs(&s);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(rvs(&s), settled, "nothing is written while idle");
}
