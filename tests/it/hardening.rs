//! Hardened containers, checked from inside them: Docker's capability set,
//! no new privileges, the default seccomp profile, masked /proc paths,
//! read-only /sys; securityContext honoured; what a board does not allow is
//! refused on admission with the reason.

use crate::support::{Server, TempDir, server_with_busybox_and, wait_for};

/// Docker's (and containerd's) default capability set as /proc shows it.
const DEFAULT_CAP_EFF: &str = "00000000a80425fb";

/// What the container runs: it tries to make a user namespace (which needs
/// no capability: only the seccomp profile stops it), notes the outcome in
/// /dev/shm (writable even with a read-only root), and sleeps.
const TRY_UNSHARE: &str =
    "unshare -U true 2>/dev/shm/unshare.err; echo $? > /dev/shm/unshare.rc; sleep 3600";

/// The outcome of TRY_UNSHARE: its exit code and error text.
fn unshare_outcome(s: &Server, pod: &str) -> String {
    wait_for(10, "the unshare outcome", || {
        let (ok, text) = sh(s, pod, "cat /dev/shm/unshare.rc /dev/shm/unshare.err");
        ok.then_some(text)
    })
}

/// A pod with one container `c` running TRY_UNSHARE, with `extra` appended
/// to the container and `pod_extra` to the pod spec.
fn pod(name: &str, image: &str, extra: &str, pod_extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
{pod_extra}
  containers:
  - name: c
    image: {image}
    imagePullPolicy: Never
    command: [sh, -c, '{TRY_UNSHARE}']
{extra}"
    )
}

fn sh(s: &Server, pod: &str, script: &str) -> (bool, String) {
    let out = s.kubectl(&["exec", pod, "--", "sh", "-c", script]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The value of a field of /proc/1/status in the pod.
fn status_field(s: &Server, pod: &str, field: &str) -> String {
    let (ok, text) = sh(s, pod, &format!("grep '^{field}:' /proc/1/status"));
    assert!(ok, "{text}");
    text.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// A board config allowing privileged pods and /dev/kmsg.
fn permissive_board(dir: &TempDir) -> String {
    let path = dir.0.join("board.toml");
    std::fs::write(
        &path,
        "[security]\nallow_privileged = true\n[devices]\nallowed = [\"/dev/kmsg\"]\n",
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn containers_are_hardened_by_default() {
    let dir = TempDir::new("hardening");
    let board = permissive_board(&dir);
    let Some((s, image)) = server_with_busybox_and(&["--config", &board]) else {
        return;
    };
    s.apply(&pod("plain", &image, "", ""));
    s.wait_phase("plain", "Running", 30);
    assert_eq!(status_field(&s, "plain", "CapEff"), DEFAULT_CAP_EFF);
    assert_eq!(status_field(&s, "plain", "NoNewPrivs"), "1");
    assert_eq!(status_field(&s, "plain", "Seccomp"), "2");
    let text = unshare_outcome(&s, "plain");
    assert!(
        text.starts_with("1\n") && text.contains("Operation not permitted"),
        "{text}"
    );
    // Exec'd processes get the container's capabilities and no new privileges.
    let (ok, text) = sh(
        &s,
        "plain",
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
    );
    assert!(
        ok && text.contains(DEFAULT_CAP_EFF) && text.contains("NoNewPrivs:\t1"),
        "{text}"
    );
    let (ok, text) = sh(&s, "plain", "touch /sys/kernel/x");
    assert!(!ok && text.contains("Read-only file system"), "{text}");
    // Masked: empty where the host shows plenty.
    let (ok, text) = sh(
        &s,
        "plain",
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l",
    );
    assert!(
        ok && text.split_whitespace().eq(["0", "0"]),
        "masked paths: {text}"
    );
    let (ok, text) = sh(&s, "plain", "echo 1 > /proc/sys/kernel/panic");
    assert!(!ok && text.contains("Read-only file system"), "{text}");
    let (ok, _) = sh(&s, "plain", "test -e /dev/kmsg");
    assert!(!ok, "no host device without asking");

    // securityContext: capabilities, read-only root, Unconfined seccomp,
    // allowPrivilegeEscalation; a device from the board's allow-list.
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: tuned
  annotations: {{bramble.dev/devices: /dev/kmsg}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    imagePullPolicy: Never
    command: [sh, -c, '{TRY_UNSHARE}']
    securityContext:
      capabilities: {{drop: [ALL], add: [NET_ADMIN]}}
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: true
      seccompProfile: {{type: Unconfined}}
"
    ));
    std::thread::sleep(std::time::Duration::from_secs(5));
    eprintln!("DEBUG {}", s.pod("tuned")["status"]);
    eprintln!(
        "DEBUG {}",
        s.log()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    s.wait_phase("tuned", "Running", 30);
    assert_eq!(status_field(&s, "tuned", "CapEff"), "0000000000001000");
    assert_eq!(status_field(&s, "tuned", "NoNewPrivs"), "0");
    assert_eq!(status_field(&s, "tuned", "Seccomp"), "0");
    let (ok, text) = sh(&s, "tuned", "touch /x");
    assert!(!ok && text.contains("Read-only file system"), "{text}");
    let text = unshare_outcome(&s, "tuned");
    assert!(
        text.trim() == "0",
        "Unconfined lets unshare through: {text}"
    );
    let (ok, text) = sh(&s, "tuned", "stat -c '%F %t:%T' /dev/kmsg");
    assert!(ok && text.trim() == "character special file 1:b", "{text}");

    // Privileged: every capability, no seccomp, /sys writable.
    s.apply(&pod(
        "root",
        &image,
        "    securityContext: {privileged: true}\n",
        "",
    ));
    s.wait_phase("root", "Running", 30);
    // Every capability bramble itself may hold (its bounding set, the same
    // as this test's).
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = own
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(status_field(&s, "root", "CapEff"), bounding);
    assert_eq!(status_field(&s, "root", "Seccomp"), "0");
    let (ok, text) = sh(&s, "root", "grep ' /sys sysfs ' /proc/mounts");
    assert!(ok && text.contains(" rw,"), "{text}");

    // runAsNonRoot with an image that runs as root is not started.
    s.apply(&pod(
        "nonroot",
        &image,
        "    securityContext: {runAsNonRoot: true}\n",
        "",
    ));
    wait_for(30, "the runAsNonRoot refusal", || {
        let p = s.pod("nonroot");
        let waiting = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        waiting["message"]
            .as_str()
            .filter(|m| m.contains("container has runAsNonRoot and image will run as root"))
            .map(|_| ())
    });
}

#[test]
fn a_board_refuses_what_it_does_not_allow() {
    let Some((s, image)) = crate::support::server_with_busybox() else {
        return;
    };
    let refused = |manifest: &str, reason: &str| {
        let out = s.kubectl_stdin(&["apply", "-f", "-"], manifest);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{manifest}");
        assert!(
            err.contains("is forbidden: this board does not allow it"),
            "{err}"
        );
        assert!(err.contains(reason), "{err}");
    };
    refused(
        &pod("p", &image, "    securityContext: {privileged: true}\n", ""),
        "container \"c\" sets securityContext.privileged=true",
    );
    refused(
        &pod("h", &image, "", "  hostNetwork: true"),
        "spec.hostNetwork=true",
    );
    refused(
        &pod(
            "v",
            &image,
            "",
            "  volumes: [{name: etc, hostPath: {path: /etc}}]",
        ),
        "volume \"etc\" uses hostPath \"/etc\"",
    );
    let devices = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: d\n  annotations: {{bramble.dev/devices: /dev/mem}}\nspec:\n  containers: [{{name: c, image: {image}}}]\n"
    );
    refused(&devices, "asks for /dev/mem");
    // Controllers make their pods without the API: templates are checked.
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: dp}}\nspec:\n  selector: {{matchLabels: {{app: dp}}}}\n  template:\n    metadata: {{labels: {{app: dp}}}}\n    spec:\n      containers: [{{name: c, image: {image}, securityContext: {{privileged: true}}}}]\n"
    );
    refused(&deployment, "deployments.apps \"dp\" is forbidden");
    // Nothing was stored.
    let listed = s.kubectl_ok(&["get", "pods,deployments", "-o", "name"]);
    assert!(listed.trim().is_empty(), "{listed}");
}
