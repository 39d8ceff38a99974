//! Real pods on this machine: kubectl drives a server whose kubelet runs
//! them through the runtime helper, from busybox images imported offline.

use crate::support::{Server, server_with_busybox, wait_for};

#[test]
fn kubectl_run_serves_logs_and_execs() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    let out = s.kubectl_ok(&[
        "run",
        "kubia",
        &format!("--image={image}"),
        "--port=8080",
        "--command",
        "--",
        "sh",
        "-c",
        "echo started on $(hostname); exec httpd -f -p 8080",
    ]);
    assert_eq!(out.trim(), "pod/kubia created");
    s.wait_phase("kubia", "Running", 30);
    let get = s.kubectl_ok(&["get", "pods"]);
    let row: Vec<&str> = get.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["kubia", "1/1", "Running", "0"], "{get}");
    let d = s.kubectl_ok(&["describe", "pod", "kubia"]);
    assert!(
        d.contains("Started container kubia")
            && d.contains("Successfully assigned default/kubia to test-node"),
        "{d}"
    );
    let logs = wait_for(10, "the container's output in kubectl logs", || {
        let l = s.kubectl_ok(&["logs", "kubia"]);
        (!l.is_empty()).then_some(l)
    });
    assert_eq!(logs, "started on kubia\n");
    assert_eq!(
        s.kubectl_ok(&["exec", "kubia", "--", "hostname"]),
        "kubia\n"
    );
    // The web server answers on the pod's own localhost.
    let page = s.kubectl(&[
        "exec",
        "kubia",
        "--",
        "wget",
        "-qO-",
        "http://127.0.0.1:8080/",
    ]);
    assert!(
        String::from_utf8_lossy(&page.stderr).contains("404 Not Found"),
        "httpd answered: {page:?}"
    );
    // The exit code of the command comes back.
    let failed = s.kubectl(&[
        "exec",
        "kubia",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(failed.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&failed.stdout), "out\n");
    assert!(String::from_utf8_lossy(&failed.stderr).starts_with("err\n"));
    // A command that cannot start says why (on the exec's error channel,
    // not as a refused upgrade that kubectl would retry over SPDY).
    let missing = s.kubectl(&["exec", "kubia", "--", "no-such-tool"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("executable 'no-such-tool' not found in $PATH") && !err.contains("WebSocket"),
        "{err}"
    );
}

#[test]
fn containers_of_a_pod_share_hostname_localhost_and_volumes() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: pair}}
spec:
  volumes: [{{name: shared, emptyDir: {{}}}}]
  containers:
  - name: web
    image: {image}
    command: [sh, -c, 'echo hello-from-web > /www/index.html; exec httpd -f -p 8080 -h /www']
    volumeMounts: [{{name: shared, mountPath: /www}}]
  - name: client
    image: {image}
    command: [sh, -c, 'sleep 3600']
    volumeMounts: [{{name: shared, mountPath: /data}}]
"
    );
    s.apply(&manifest);
    s.wait_phase("pair", "Running", 30);
    assert_eq!(
        s.kubectl_ok(&["exec", "pair", "-c", "web", "--", "hostname"]),
        "pair\n"
    );
    assert_eq!(
        s.kubectl_ok(&["exec", "pair", "-c", "client", "--", "hostname"]),
        "pair\n"
    );
    let page = wait_for(10, "web answering on localhost", || {
        let o = s.kubectl(&[
            "exec",
            "pair",
            "-c",
            "client",
            "--",
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/index.html",
        ]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).to_string())
    });
    assert_eq!(page, "hello-from-web\n");
    assert_eq!(
        s.kubectl_ok(&[
            "exec",
            "pair",
            "-c",
            "client",
            "--",
            "cat",
            "/data/index.html"
        ]),
        "hello-from-web\n"
    );
}

#[test]
fn restart_policies_are_honoured() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    let pod = |name: &str, policy: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {policy}\n  containers:\n  - name: c\n    image: {image}\n    command: [sh, -c, '{script}']\n"
        )
    };
    s.apply(&pod("always", "Always", "exit 1"));
    s.apply(&pod("onfailure", "OnFailure", "exit 0"));
    s.apply(&pod("never", "Never", "exit 3"));
    s.wait_phase("onfailure", "Succeeded", 30);
    let never = s.wait_phase("never", "Failed", 30);
    assert_eq!(
        never["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    assert_eq!(
        never["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Error"
    );
    // Always: restarted, then held in back-off.
    let crash = wait_for(40, "CrashLoopBackOff", || {
        let p = s.pod("always");
        let st = &p["status"]["containerStatuses"][0];
        (st["state"]["waiting"]["reason"] == "CrashLoopBackOff").then(|| st.clone())
    });
    assert!(crash["restartCount"].as_u64().unwrap() >= 1, "{crash}");
    assert_eq!(crash["lastState"]["terminated"]["exitCode"], 1);
    let get = s.kubectl_ok(&["get", "pod", "always"]);
    assert!(get.contains("CrashLoopBackOff"), "{get}");
}

#[test]
fn a_container_over_its_memory_limit_is_oomkilled() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: hog}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: {image}\n    resources: {{limits: {{memory: 32Mi}}}}\n    command: [sh, -c, 'x=a; while true; do x=$x$x; done']\n"
    ));
    let p = s.wait_phase("hog", "Failed", 60);
    let term = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["reason"], "OOMKilled", "{p}");
    assert_eq!(term["exitCode"], 137);
    let d = s.kubectl_ok(&["describe", "pod", "hog"]);
    assert!(d.contains("OOMKilling"), "{d}");
}

/// Mounts, cgroups, pinned namespaces and state of bramble's on this machine
/// for the server's data dir.
pub fn leftovers(s: &Server) -> Vec<String> {
    let data = s.data_dir().display().to_string();
    let mut found: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&data))
        .map(str::to_string)
        .collect();
    for dir in [
        "runtime/containers",
        "runtime/sandboxes",
        "runtime/state",
        "pods",
    ] {
        if let Ok(entries) = std::fs::read_dir(s.data_dir().join(dir)) {
            found.extend(entries.flatten().map(|e| e.path().display().to_string()));
        }
    }
    found
}

pub fn pod_cgroups(uid: &str) -> Vec<String> {
    std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|h| h.path().join("bramble").join(uid))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn graceful_delete_runs_prestop_then_sigterm_and_leaves_nothing() {
    let marks = crate::support::TempDir::new("term-marks");
    let mark = marks.0.display();
    // hostPath volumes are refused outside the board's allowed prefixes.
    let config = crate::support::host_paths_in_tmp_config();
    let Some((s, image)) = crate::support::server_with_busybox_and(&["--config", &config]) else {
        return;
    };
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: polite}}
spec:
  terminationGracePeriodSeconds: 30
  volumes: [{{name: out, hostPath: {{path: {mark}, type: Directory}}}}]
  containers:
  - name: c
    image: {image}
    command: [sh, -c, 'trap \"echo got-TERM > /out/mark; exit 0\" TERM; while true; do sleep 1; done']
    volumeMounts: [{{name: out, mountPath: /out}}]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, 'echo hooked > /started']}}}}
      preStop: {{exec: {{command: [sh, -c, 'echo before-TERM > /out/prestop']}}}}
"
    ));
    let p = s.wait_phase("polite", "Running", 30);
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let hooked = wait_for(10, "the postStart hook", || {
        let o = s.kubectl(&["exec", "polite", "--", "cat", "/started"]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).to_string())
    });
    assert_eq!(hooked, "hooked\n");
    assert!(
        !pod_cgroups(&uid).is_empty(),
        "the pod has cgroups while it runs"
    );
    let out = s.kubectl(&["delete", "pod", "polite"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(marks.0.join("mark")).unwrap(),
        "got-TERM\n"
    );
    assert!(!s.kubectl(&["get", "pod", "polite"]).status.success());
    assert_eq!(leftovers(&s), Vec::<String>::new());
    assert_eq!(pod_cgroups(&uid), Vec::<String>::new());
}

#[test]
fn kill_9_of_the_daemon_restarts_no_container() {
    let Some((mut s, image)) = server_with_busybox() else {
        return;
    };
    let names: Vec<String> = (0..5).map(|i| format!("steady-{i}")).collect();
    for n in &names {
        s.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {n}}}\nspec:\n  containers:\n  - name: c\n    image: {image}\n    command: [sh, -c, 'while true; do sleep 1; done']\n"
        ));
    }
    // The start time of each container's PID 1 identifies the process.
    let start = |s: &Server, n: &str| {
        s.kubectl_ok(&["exec", n, "--", "cat", "/proc/1/stat"])
            .split_whitespace()
            .nth(21)
            .unwrap()
            .to_string()
    };
    let before: Vec<String> = names
        .iter()
        .map(|n| {
            s.wait_phase(n, "Running", 30);
            start(&s, n)
        })
        .collect();
    s.kill9();
    s.spawn(&[]);
    for (n, b) in names.iter().zip(&before) {
        let p = s.wait_phase(n, "Running", 10);
        assert_eq!(
            p["status"]["containerStatuses"][0]["restartCount"], 0,
            "{n}"
        );
        assert_eq!(
            &start(&s, n),
            b,
            "{n} is the same process after the daemon restart"
        );
    }
    // Supervised again: a container killed from outside comes back.
    let uid = s.pod("steady-0")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    crate::support::unsafe_kill(s.container_pid(&uid), "KILL");
    let p = wait_for(30, "steady-0 restarted", || {
        let p = s.pod("steady-0");
        (p["status"]["containerStatuses"][0]["restartCount"] == 1
            && p["status"]["phase"] == "Running")
            .then_some(p)
    });
    assert_eq!(
        p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        137
    );
}

#[test]
fn logs_honour_tail_timestamps_and_previous() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: chatty}}\nspec:\n  containers:\n  - name: c\n    image: {image}\n    command: [sh, -c, 'echo one; echo two; echo three; echo oops >&2; sleep 2; exit 1']\n"
    ));
    // Wait for the first restart: the previous container's log stays.
    wait_for(40, "chatty restarted", || {
        let p = s.pod("chatty");
        (p["status"]["containerStatuses"][0]["restartCount"].as_u64() >= Some(1)).then_some(())
    });
    // stdout and stderr come through separate pipes, so only each stream's
    // own order is kept (as with any container runtime).
    let previous = s.kubectl_ok(&["logs", "chatty", "--previous"]);
    let stdout: Vec<&str> = previous.lines().filter(|l| *l != "oops").collect();
    assert_eq!(stdout, ["one", "two", "three"]);
    assert!(
        previous.lines().any(|l| l == "oops"),
        "stderr is in the log: {previous}"
    );
    let tail = wait_for(10, "the current container's output", || {
        let t = s.kubectl_ok(&["logs", "chatty", "--tail=4"]);
        (t.lines().count() == 4).then_some(t)
    });
    assert_eq!(
        s.kubectl_ok(&["logs", "chatty", "--tail=1"])
            .lines()
            .count(),
        1
    );
    assert!(
        tail.lines()
            .filter(|l| *l != "oops")
            .eq(["one", "two", "three"]),
        "{tail}"
    );
    let stamped = s.kubectl_ok(&["logs", "chatty", "--timestamps"]);
    for line in stamped.lines() {
        let (ts, _) = line.split_once(' ').unwrap();
        assert!(humantime::parse_rfc3339_weak(ts).is_ok(), "{line}");
    }
    let limited = s.kubectl_ok(&["logs", "chatty", "--limit-bytes=5"]);
    assert_eq!(limited, "one\nt");
}

#[test]
fn readiness_gates_ready_and_a_failing_liveness_probe_restarts() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: probed}}
spec:
  containers:
  - name: app
    image: {image}
    command: [sh, -c, 'while true; do sleep 1; done']
    readinessProbe:
      exec: {{command: [cat, /ready]}}
      periodSeconds: 1
  - name: doomed
    image: {image}
    command: [sh, -c, 'while true; do sleep 1; done']
    livenessProbe:
      httpGet: {{path: /healthz, port: 8080}}
      periodSeconds: 1
      failureThreshold: 2
"
    ));
    s.wait_phase("probed", "Running", 30);
    let status = |s: &Server, c: &str| {
        let p = s.pod("probed");
        p["status"]["containerStatuses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == c)
            .unwrap()
            .clone()
    };
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        status(&s, "app")["ready"],
        false,
        "not ready before the probe passes"
    );
    s.kubectl_ok(&[
        "exec",
        "probed",
        "-c",
        "app",
        "--",
        "sh",
        "-c",
        "echo yes > /ready",
    ]);
    wait_for(15, "app ready", || {
        (status(&s, "app")["ready"] == true).then_some(())
    });
    let restarted = wait_for(30, "doomed restarted by its liveness probe", || {
        let st = status(&s, "doomed");
        (st["restartCount"].as_u64() >= Some(1)).then_some(st)
    });
    assert_eq!(
        restarted["lastState"]["terminated"]["exitCode"], 137,
        "{restarted}"
    );
    let d = s.kubectl_ok(&["describe", "pod", "probed"]);
    assert!(
        d.contains("Liveness probe failed:") && d.contains("connection refused"),
        "{d}"
    );
    assert!(
        d.contains("Container doomed failed liveness probe, will be restarted"),
        "{d}"
    );
}

#[test]
fn logs_follow_streams_until_the_container_ends() {
    let Some((s, image)) = server_with_busybox() else {
        return;
    };
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: ticker}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: {image}\n    command: [sh, -c, 'sleep 1; for i in 1 2 3 4 5; do echo tick $i; sleep 1; done']\n"
    ));
    s.wait_phase("ticker", "Running", 30);
    // Follows while the container runs, then ends by itself.
    let out = s.kubectl(&["logs", "-f", "ticker", "--request-timeout=30s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n"
    );
    assert_eq!(s.pod("ticker")["status"]["phase"], "Succeeded");
}
