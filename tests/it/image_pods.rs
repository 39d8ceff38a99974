//! Pods from images as a user gets them onto a board: archives imported
//! offline (with the CLI or the import folder) and pulls from a registry on
//! loopback, with what `kubectl` shows when a pull fails. No traffic leaves
//! 127.0.0.1: imported images run with `imagePullPolicy: Never`, pulled ones
//! name the loopback registry.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::registry::{Auth, Registry};
use crate::support::{Server, bramble, fixtures, missing, wait_for};

fn run_pod(s: &Server, name: &str, image: &str, policy: &str) {
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: {image}
    imagePullPolicy: {policy}
    command: [sh, -c, 'sleep 3600']
"
    ));
}

/// The container's waiting state once its reason is one of `reasons`.
#[track_caller]
fn wait_waiting(s: &Server, name: &str, reasons: &[&str], secs: u64) -> Value {
    wait_for(
        secs,
        &format!("pod {name} waiting with {reasons:?}"),
        || {
            let p = s.pod(name);
            let waiting = p
                .pointer("/status/containerStatuses/0/state/waiting")
                .cloned()?;
            reasons
                .iter()
                .any(|r| waiting["reason"] == *r)
                .then_some(waiting)
        },
    )
}

/// (reason, message) of the events about pod `name`, oldest first.
fn events(s: &Server, name: &str) -> Vec<(String, String)> {
    let list = s.get_json("/api/v1/namespaces/default/events");
    let mut items: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["involvedObject"]["name"] == name)
        .collect();
    items.sort_by_key(|e| {
        e["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .parse::<u64>()
            .unwrap_or(0)
    });
    items
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn pods_run_from_imported_oci_multi_arch_and_docker_archives() {
    if missing("kubectl") {
        return;
    }
    let (Some(busybox), Some(multi), Some(app)) = (
        fixtures::busybox_image(),
        fixtures::multi_arch_image(),
        fixtures::app_image(),
    ) else {
        return;
    };
    let s = Server::start();
    let docker_archive = app.docker_archive.as_ref().unwrap();
    for (archive, reference) in [
        (&busybox.oci_archive, &busybox.reference),
        (&multi.oci_archive, &multi.reference),
        (docker_archive, &app.reference),
    ] {
        let out = s.import_image(archive);
        assert_eq!(
            out,
            format!("imported {reference} (linux/{})\n", fixtures::native_arch())
        );
    }
    for (pod, fx) in [
        ("from-oci", busybox),
        ("from-multi", multi),
        ("from-docker", app),
    ] {
        run_pod(&s, pod, &fx.reference, "Never");
    }
    for pod in ["from-oci", "from-multi", "from-docker"] {
        s.wait_phase(pod, "Running", 60);
        assert_eq!(
            s.kubectl_ok(&["exec", pod, "--", "hostname"]),
            format!("{pod}\n")
        );
    }
    // The docker-archive's second layer is there, over the shared base.
    assert_eq!(
        s.kubectl_ok(&["exec", "from-docker", "--", "cat", "/etc/app.txt"]),
        "app\n"
    );
    let get = s.kubectl_ok(&["get", "pods", "--no-headers"]);
    let running = get.lines().filter(|l| l.contains(" Running ")).count();
    assert_eq!(running, 3, "{get}");
}

/// A TCP relay to `upstream` that sends replies at about `bytes_per_sec`:
/// a slow link, so a pull lasts long enough to report progress.
fn slow_relay(upstream: String, bytes_per_sec: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let chunk = bytes_per_sec / 10;
                let mut buf = vec![0u8; chunk];
                while let Ok(n) = s_read.read(&mut buf) {
                    if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = c_write.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    addr
}

#[test]
fn pod_with_pull_policy_always_is_pulled_from_a_local_registry_with_progress() {
    if missing("kubectl") {
        return;
    }
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    reg.push(fx, "busybox:1");
    // About 1.1 MB at 150 kB/s: a pull of 7 s or so, past the 5 s between
    // progress events.
    let relay = slow_relay(reg.host.clone(), 150_000);
    let image = format!("{relay}/busybox:1");
    let s = Server::start();
    let started = Instant::now();
    run_pod(&s, "pulled", &image, "Always");
    let pod = s.wait_phase("pulled", "Running", 90);
    let took = started.elapsed();
    assert_eq!(
        s.kubectl_ok(&["exec", "pulled", "--", "hostname"]),
        "pulled\n"
    );
    assert_eq!(
        pod["status"]["containerStatuses"][0]["image"],
        image.as_str()
    );
    let events = events(&s, "pulled");
    let reasons: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
    let first = |reason: &str, prefix: &str| {
        events
            .iter()
            .position(|(r, m)| r == reason && m.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {reason} event starting {prefix:?} in {events:?}"))
    };
    let pulling = first("Pulling", &format!("Pulling image \"{image}\""));
    assert_eq!(events[pulling].1, format!("Pulling image \"{image}\""));
    let progress: Vec<&str> = events
        .iter()
        .filter(|(r, m)| r == "Pulling" && m.starts_with(&format!("Pulling image \"{image}\": ")))
        .map(|(_, m)| m.as_str())
        .collect();
    // At most one per 5 s, and a last one when done.
    assert!(
        !progress.is_empty() && progress.len() as u64 <= took.as_secs() / 5 + 1,
        "{took:?}: {progress:?}"
    );
    let last = progress.last().unwrap();
    let (done, total) = last
        .rsplit_once(": ")
        .and_then(|(_, sizes)| sizes.split_once(" of "))
        .unwrap();
    assert_eq!(done, total, "the last progress event is at 100%: {last}");
    assert!(total.ends_with(" MB"), "{last}");
    let pulled = first(
        "Pulled",
        &format!("Successfully pulled image \"{image}\" in "),
    );
    assert!(pulling < pulled, "{reasons:?}");
    assert!(reasons.contains(&"Started"), "{reasons:?}");
}

#[test]
fn unknown_image_shows_err_image_pull_then_image_pull_back_off() {
    if missing("kubectl") {
        return;
    }
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    reg.push(fx, "busybox:1");
    let image = format!("{}/busybox:404", reg.host);
    let s = Server::start();
    // What `kubectl get pods -w` prints, line by line.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(["get", "pods", "-w", "--no-headers"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    run_pod(&s, "missing", &image, "IfNotPresent");
    let mut statuses: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !statuses.iter().any(|st| st == "ImagePullBackOff") && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.first() == Some(&"missing")
                && statuses.last().map(String::as_str) != cols.get(2).copied()
            {
                statuses.push(cols[2].to_string());
            }
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let err = statuses.iter().position(|st| st == "ErrImagePull");
    let back_off = statuses.iter().position(|st| st == "ImagePullBackOff");
    assert!(
        matches!((err, back_off), (Some(e), Some(b)) if e < b),
        "STATUS column went {statuses:?}"
    );
    let waiting = wait_waiting(&s, "missing", &["ErrImagePull", "ImagePullBackOff"], 10);
    let message = waiting["message"].as_str().unwrap();
    assert!(
        message.contains(&image) && message.contains("manifest unknown"),
        "{message}"
    );
    assert_eq!(s.pod("missing")["status"]["phase"], "Pending");
    let failed = events(&s, "missing");
    assert!(
        failed
            .iter()
            .any(|(r, m)| r == "Failed" && m.contains("manifest unknown")),
        "{failed:?}"
    );
}

#[test]
fn archive_dropped_into_the_import_folder_while_running_gets_imported() {
    if missing("kubectl") {
        return;
    }
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let s = Server::start();
    let list = || {
        let out = Command::new(bramble())
            .args(["image", "ls", "--data-dir"])
            .arg(s.data_dir())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(!list().contains(&fx.reference), "{}", list());
    // A plain copy, as a user would do it (not the hidden-name-then-rename
    // dance): the daemon must wait for it to be complete.
    std::fs::copy(
        &fx.oci_archive,
        s.data_dir().join("images/import/busybox.tar"),
    )
    .unwrap();
    wait_for(40, "the daemon to import the dropped archive", || {
        s.log()
            .contains(&format!("imported image {}", fx.reference))
            .then_some(())
    });
    assert!(list().contains(&fx.reference), "{}", list());
    run_pod(&s, "dropped", &fx.reference, "Never");
    s.wait_phase("dropped", "Running", 60);
    assert_eq!(
        s.kubectl_ok(&["exec", "dropped", "--", "hostname"]),
        "dropped\n"
    );
    assert!(
        !s.log().contains("importing DATA_DIR/images/import")
            && !s.log().contains("import folder:"),
        "no failed import attempt:\n{}",
        s.log()
    );
}

#[test]
fn arm64_only_image_fails_with_the_platform_message_on_this_amd64_board() {
    if missing("kubectl") {
        return;
    }
    if fixtures::native_arch() != "amd64" {
        fixtures::skip("this test needs an amd64 board");
        return;
    }
    let Some(arm64) = fixtures::busybox_arm64_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    let image = reg.push(arm64, "busybox-arm64:1");
    let s = Server::start();
    run_pod(&s, "arm", &image, "IfNotPresent");
    let waiting = wait_waiting(&s, "arm", &["ErrImagePull", "ImagePullBackOff"], 30);
    let message = waiting["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "image {image} offers linux/arm64 only; this board is linux/amd64"
        )),
        "{message}"
    );
    let described = s.kubectl_ok(&["describe", "pod", "arm"]);
    assert!(
        described.contains("offers linux/arm64 only; this board is linux/amd64"),
        "{described}"
    );
    assert!(!described.contains("exec format error"), "{described}");
    let p = s.pod("arm");
    assert_eq!(p["status"]["phase"], "Pending");
    assert!(
        p.pointer("/status/containerStatuses/0/state/running")
            .is_none()
            && p.pointer("/status/containerStatuses/0/lastState/terminated")
                .is_none(),
        "never started: {p}"
    );
}

#[test]
fn image_pull_draws_a_progress_bar_on_a_terminal_only() {
    if missing("script") {
        return;
    }
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    let image = reg.push(fx, "busybox:1");
    let data = crate::support::TempDir::new("pull-bar");
    let pull = format!(
        "{} image pull {image} --data-dir {}",
        bramble(),
        data.0.join("tty").display()
    );
    // `script` gives the command a terminal and copies what it draws.
    let out = Command::new("script")
        .args(["-qec", &pull, "/dev/null"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let screen = String::from_utf8_lossy(&out.stdout);
    // Drawn from empty to full, on one line redrawn with \r.
    assert!(
        screen.starts_with("\r[..............................] 0 B / "),
        "{screen:?}"
    );
    let (bar, _) = screen.split_once("\r\n").unwrap();
    let last = bar.rsplit('\r').next().unwrap();
    let (done, total) = last
        .strip_prefix("[##############################] ")
        .and_then(|sizes| sizes.split_once(" / "))
        .unwrap_or_else(|| panic!("{screen:?}"));
    assert_eq!(done, total, "{screen:?}");
    assert!(screen.contains(&format!("{image} sha256:")), "{screen:?}");
    // Without a terminal (logs, CI) only the result is printed.
    let out = Command::new(bramble())
        .args(["image", "pull", &image, "--data-dir"])
        .arg(data.0.join("pipe"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("{image} sha256:")));
}
