//! Replication and garbage collection with the real kubectl: controllers
//! keep the declared number of pods running, and deleting an owner takes its
//! pods with it unless they are orphaned.

use serde_json::Value;

use crate::support::{Server, server_with_busybox, wait_for};

/// A pod template labelled `app: APP` that runs until stopped; a short grace
/// period so that deleted pods go quickly (sh as PID 1 ignores SIGTERM).
fn template(app: &str, image: &str) -> String {
    format!(
        "  template:
    metadata: {{labels: {{app: {app}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {image}
        imagePullPolicy: Never
        command: [sh, -c, 'while true; do sleep 1; done']
"
    )
}

fn rc(name: &str, replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ReplicationController\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{app: {name}}}\n{}",
        template(name, image)
    )
}

fn create(s: &Server, manifest: &str) {
    let out = s.kubectl_stdin(&["create", "-f", "-"], manifest);
    assert!(
        out.status.success(),
        "kubectl create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every pod with label app=APP.
fn pods(s: &Server, app: &str) -> Vec<Value> {
    let out = s.kubectl_ok(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn name(p: &Value) -> String {
    p["metadata"]["name"].as_str().unwrap().to_string()
}

/// Waits until exactly `n` pods with app=APP exist and all are Running (none
/// left terminating); returns them.
#[track_caller]
fn wait_running(s: &Server, app: &str, n: usize, secs: u64) -> Vec<Value> {
    wait_for(secs, &format!("{n} Running pods app={app}"), || {
        let ps = pods(s, app);
        let settled = ps.len() == n
            && ps.iter().all(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            });
        settled.then_some(ps)
    })
}

fn object(s: &Server, kind: &str, name: &str) -> Value {
    serde_json::from_str(&s.kubectl_ok(&["get", kind, name, "-o", "json"])).unwrap()
}

#[test]
fn rc_of_three_stays_three_through_deletes_kills_and_scaling() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    create(&s, &rc("kubia", 3, &image));
    let first = wait_running(&s, "kubia", 3, 60);
    let owner = object(&s, "rc", "kubia");
    for p in &first {
        assert!(name(p).starts_with("kubia-"), "{}", name(p));
        let r = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&r["apiVersion"], &r["kind"], &r["name"], &r["uid"]),
            (
                &"v1".into(),
                &"ReplicationController".into(),
                &"kubia".into(),
                &owner["metadata"]["uid"]
            )
        );
        assert_eq!(
            (&r["controller"], &r["blockOwnerDeletion"]),
            (&true.into(), &true.into())
        );
    }
    wait_for(30, "rc status 3 ready", || {
        let st = object(&s, "rc", "kubia")["status"].clone();
        (st["readyReplicas"] == 3 && st["availableReplicas"] == 3 && st["replicas"] == 3)
            .then_some(())
    });

    // A deleted pod is replaced.
    let victim = name(&first[0]);
    s.kubectl_ok(&["delete", "pod", &victim]);
    let after = wait_running(&s, "kubia", 3, 60);
    assert!(after.iter().all(|p| name(p) != victim));

    // A container killed from outside is restarted by the kubelet; the rc
    // keeps the same three pods.
    let target = &after[0];
    let uid = target["metadata"]["uid"].as_str().unwrap();
    crate::support::unsafe_kill(s.container_pid(uid), "KILL");
    wait_for(30, "the killed container restarted", || {
        let p = s.pod(&name(target));
        (p["status"]["containerStatuses"][0]["restartCount"] == 1
            && p["status"]["phase"] == "Running")
            .then_some(())
    });
    let same = wait_running(&s, "kubia", 3, 10);
    let mut names: Vec<String> = same.iter().map(name).collect();
    let mut before: Vec<String> = after.iter().map(name).collect();
    names.sort();
    before.sort();
    assert_eq!(names, before, "no pod was replaced for a restart");

    s.kubectl_ok(&["scale", "rc", "kubia", "--replicas=5"]);
    wait_running(&s, "kubia", 5, 60);
    s.kubectl_ok(&["scale", "rc", "kubia", "--replicas=1"]);
    wait_running(&s, "kubia", 1, 60);
    wait_for(30, "rc status 1", || {
        let rc = object(&s, "rc", "kubia");
        (rc["status"]["replicas"] == 1
            && rc["status"]["readyReplicas"] == 1
            && rc["status"]["observedGeneration"] == rc["metadata"]["generation"])
            .then_some(())
    });
    // Settled: a pass over it writes nothing.
    let rv = |s: &Server| object(s, "rc", "kubia")["metadata"]["resourceVersion"].clone();
    let settled = rv(&s);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(rv(&s), settled, "nothing is written while idle");
}

#[test]
fn replica_set_with_match_expressions_adopts_releases_and_scales() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    // An orphan that matches is adopted rather than duplicated.
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: stray, labels: {{app: web}}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {image}\n    imagePullPolicy: Never\n    command: [sh, -c, 'while true; do sleep 1; done']\n"
    ));
    s.wait_phase("stray", "Running", 60);
    create(
        &s,
        &format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: web}}\nspec:\n  replicas: 2\n  selector:\n    matchExpressions:\n    - {{key: app, operator: In, values: [web, www]}}\n{}",
            template("web", &image)
        ),
    );
    let ps = wait_running(&s, "web", 2, 60);
    assert!(ps.iter().any(|p| name(p) == "stray"));
    let rs = object(&s, "rs", "web");
    assert_eq!(
        s.pod("stray")["metadata"]["ownerReferences"][0]["uid"],
        rs["metadata"]["uid"]
    );

    // A pod relabelled out of the selector is released and replaced.
    s.kubectl_ok(&["label", "pod", "stray", "app=gone", "--overwrite"]);
    wait_for(30, "stray released", || {
        s.pod("stray")["metadata"]["ownerReferences"]
            .is_null()
            .then_some(())
    });
    wait_running(&s, "web", 2, 60);

    s.kubectl_ok(&["scale", "rs", "web", "--replicas=3"]);
    wait_running(&s, "web", 3, 60);
    s.kubectl_ok(&["scale", "rs", "web", "--replicas=1"]);
    wait_running(&s, "web", 1, 60);
    assert_eq!(
        s.pod("stray")["status"]["phase"],
        "Running",
        "released pods stay"
    );
}

#[test]
fn deleting_an_rc_cascades_in_background_and_foreground_and_orphans_on_request() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    for n in ["bg", "fg", "orphans"] {
        create(&s, &rc(n, 2, &image));
    }
    for n in ["bg", "fg", "orphans"] {
        wait_running(&s, n, 2, 60);
    }

    s.kubectl_ok(&["delete", "rc", "bg"]);
    wait_running(&s, "bg", 0, 60);

    // Foreground: the rc waits, marked, until its pods are gone.
    s.kubectl_ok(&["delete", "rc", "fg", "--cascade=foreground", "--wait=false"]);
    let marked = object(&s, "rc", "fg");
    assert_eq!(
        marked["metadata"]["finalizers"],
        serde_json::json!(["foregroundDeletion"])
    );
    assert!(!marked["metadata"]["deletionTimestamp"].is_null());
    wait_running(&s, "fg", 0, 60);
    wait_for(30, "rc fg gone", || {
        (!s.kubectl(&["get", "rc", "fg"]).status.success()).then_some(())
    });

    s.kubectl_ok(&["delete", "rc", "orphans", "--cascade=orphan"]);
    let left = wait_running(&s, "orphans", 2, 10);
    // Given time to act, the collector still leaves them.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let left_after = wait_running(&s, "orphans", 2, 10);
    assert_eq!(
        left.iter().map(name).collect::<Vec<_>>(),
        left_after.iter().map(name).collect::<Vec<_>>()
    );
    for p in &left_after {
        assert!(p["metadata"]["ownerReferences"].is_null(), "{p}");
    }
}
