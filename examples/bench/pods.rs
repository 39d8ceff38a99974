//! Pods: start latency beside `runc run` of the same root filesystem, and
//! the memory of the daemon plus the runtime helper with 0, 10 and 110
//! sleeping pods.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Daemon, ms, percentile, proc_field};

const IMAGE: &str = "bramble.local/kubia:1";

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The example image, built once for the run.
pub fn example_image(dir: &Path) -> std::path::PathBuf {
    let archive = dir.join("kubia.tar");
    let built = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/build-example-image.sh"
    ))
    .arg(&archive)
    .stdout(Stdio::null())
    .status()
    .is_ok_and(|s| s.success());
    assert!(
        built,
        "building the example image failed (umoci, skopeo, busybox-static needed)"
    );
    archive
}

pub fn pod(name: &str, cmd: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"c","image":"{IMAGE}","command":["sh","-c","{cmd}"]}}]}}}}"#
    )
}

/// Creates `n` pods one after another and measures, with a watch open
/// before the first POST, the time from each POST to the watch event that
/// shows it Running.
fn start_latencies(d: &Daemon, n: usize) -> Vec<Duration> {
    let ca = d.dir.join("data/tls/ca.crt");
    let mut watch = Command::new("curl")
        .args(["-sN", "--cacert"])
        .arg(&ca)
        .args(["-H", &format!("Authorization: Bearer {}", d.token)])
        .arg(format!(
            "{}/api/v1/namespaces/default/pods?watch=true&resourceVersion=0",
            d.url
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs");
    let (tx, rx) = std::sync::mpsc::channel::<(String, Instant)>();
    let stdout = watch.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(ev) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if ev["object"]["status"]["phase"] == "Running" {
                let name = ev["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if tx.send((name, Instant::now())).is_err() {
                    return;
                }
            }
        }
    });
    let mut out = Vec::new();
    for i in 0..n {
        let name = format!("start-{i}");
        let t0 = Instant::now();
        let r = d
            .agent
            .post(format!("{}/api/v1/namespaces/default/pods", d.url))
            .header("Authorization", &format!("Bearer {}", d.token))
            .header("Content-Type", "application/json")
            .send(pod(&name, "sleep 3600").as_bytes())
            .expect("POST");
        assert_eq!(r.status(), 201);
        let running = loop {
            let (n, at) = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("pod Running within 30 s");
            if n == name {
                break at;
            }
        };
        out.push(running - t0);
        d.delete_pod(&name);
    }
    let _ = watch.kill();
    let _ = watch.wait();
    out
}

/// The pods of the `scaler` Deployment: (Running and not being deleted, all).
fn scaler_pods(d: &Daemon) -> (usize, usize) {
    let (_, list) = d.call(
        "GET",
        "/api/v1/namespaces/default/pods?labelSelector=app%3Dscaler",
        None,
    );
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let running = items
        .iter()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .count();
    (running, items.len())
}

/// What `kubectl scale deployment --replicas=N` costs: from the PATCH of
/// the scale subresource (1 -> `to`) to every pod bound and Running, polled
/// every 20 ms; scaled back to 1 between runs.
fn scale_latencies(d: &Daemon, to: usize, runs: usize) -> Vec<Duration> {
    let deployment = format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"scaler"}},"spec":{{"replicas":1,"selector":{{"matchLabels":{{"app":"scaler"}}}},"template":{{"metadata":{{"labels":{{"app":"scaler"}}}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"c","image":"{IMAGE}","command":["sh","-c","sleep 3600"]}}]}}}}}}}}"#
    );
    let base = "/apis/apps/v1/namespaces/default/deployments";
    let (code, v) = d.call("POST", base, Some(&deployment));
    assert_eq!(code, 201, "{v}");
    let wait = |want: (usize, usize), what: &str| {
        let t0 = Instant::now();
        while scaler_pods(d) != want {
            assert!(t0.elapsed() < Duration::from_secs(120), "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait((1, 1), "the first replica");
    let scale = |n: usize| {
        let body = format!(r#"{{"spec":{{"replicas":{n}}}}}"#);
        let (code, v) = d.call("PATCH", &format!("{base}/scaler/scale"), Some(&body));
        assert_eq!(code, 200, "{v}");
    };
    let mut out = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        scale(to);
        wait((to, to), "the scaled-up replicas");
        out.push(t0.elapsed());
        scale(1);
        wait((1, 1), "the scale-down");
    }
    d.call("DELETE", &format!("{base}/scaler"), None);
    wait((0, 0), "the Deployment's pods gone");
    out
}

/// `runc run` of the image's root filesystem: the same work without
/// Kubernetes around it.
fn runc_latencies(dir: &Path, archive: &Path, n: usize) -> Option<Vec<Duration>> {
    if !have("runc") || !have("umoci") || !have("skopeo") {
        println!("- runc baseline skipped: runc, umoci or skopeo missing");
        return None;
    }
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let ok = Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("oci:{}:kubia", layout.display()))
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:kubia", layout.display()))
            .arg(&bundle)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        println!("- runc baseline skipped: unpacking the image failed");
        return None;
    }
    // Same as the pod's: a shell that exits at once once started.
    let config = bundle.join("config.json");
    let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(&config).ok()?).ok()?;
    spec["process"]["args"] = serde_json::json!(["sh", "-c", "true"]);
    spec["process"]["terminal"] = false.into();
    std::fs::write(&config, spec.to_string()).ok()?;
    let mut out = Vec::new();
    for i in 0..n {
        let t0 = Instant::now();
        let ok = Command::new("runc")
            .args(["--root"])
            .arg(dir.join("runc-state"))
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("bench-{}-{i}", std::process::id()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("- runc baseline skipped: `runc run` failed");
            return None;
        }
        out.push(t0.elapsed());
    }
    Some(out)
}

/// RSS of the daemon plus its runtime helper, in KiB.
fn rss_with_helper(d: &Daemon) -> u64 {
    let helper = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("runtime-helper") && c.contains(&d.dir.display().to_string())
                })
                .unwrap_or(false)
        });
    proc_field(d.pid(), "status", "VmRSS") + helper.map_or(0, |p| proc_field(p, "status", "VmRSS"))
}

/// Processes per pod beyond the containers' own: every process on the
/// machine whose parent is the helper and that is not a container's init.
fn extra_processes(d: &Daemon) -> usize {
    let data = d.dir.display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    (c.contains("shim") || c.contains("pause") || c.contains("conmon"))
                        && c.contains(&data)
                })
                .unwrap_or(false)
        })
        .count()
}

pub fn run() {
    println!("## Pods (release build, real containers through the runtime helper)\n");
    let (d, _) = Daemon::start("pods");
    let archive = example_image(&d.dir);
    d.import(&archive);
    let n = 50;
    let mut ours = start_latencies(&d, n);
    ours.sort();
    println!(
        "- pod start, API POST to Running seen by a watch, {n} pods one after another (image present): p50 {}, p99 {}",
        ms(percentile(&ours, 0.5)),
        ms(percentile(&ours, 0.99))
    );
    if let Some(mut runc) = runc_latencies(&d.dir, &archive, n) {
        runc.sort();
        let ratio = percentile(&ours, 0.5).as_secs_f64() / percentile(&runc, 0.5).as_secs_f64();
        println!(
            "- baseline `runc run` of the same root filesystem (sh -c true), {n} runs: p50 {}, p99 {}; bramble p50 / runc p50 = {ratio:.2}",
            ms(percentile(&runc, 0.5)),
            ms(percentile(&runc, 0.99))
        );
    }
    let (to, runs) = (10, 5);
    let mut scaled = scale_latencies(&d, to, runs);
    scaled.sort();
    println!(
        "- `kubectl scale` of a Deployment from 1 to {to} replicas, PATCH of /scale to all {to} pods Running, {runs} runs: median {}, max {}",
        ms(percentile(&scaled, 0.5)),
        ms(percentile(&scaled, 1.0))
    );
    for count in [0usize, 10, 110] {
        let have = d.pod_count();
        for i in have..count {
            d.create(&pod(&format!("sleeper-{i}"), "sleep 3600"));
        }
        d.wait_running(count, Duration::from_secs(300));
        std::thread::sleep(Duration::from_secs(2));
        println!(
            "- RSS of the daemon plus the runtime helper with {count} sleeping pods: {:.1} MiB",
            rss_with_helper(&d) as f64 / 1024.0
        );
    }
    println!(
        "- processes per pod beyond the containers' own (shims, pause, conmon): {}",
        extra_processes(&d)
    );
    println!();
}
