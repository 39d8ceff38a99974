//! Network: request latency and throughput from a client pod to a server pod
//! through a Service's ClusterIP beside the same to the pod's IP directly
//! (same board, same run), and the time from an EndpointSlice change to the
//! nftables rules carrying it.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{Daemon, bin, ms};

const IMAGE: &str = "bramble.local/kubia:1";

fn pod(name: &str, labels: &str, cmd: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{{labels}}}}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"c","image":"{IMAGE}","command":["sh","-c","{cmd}"]}}]}}}}"#
    )
}

/// Wall-clock time of `script` run by sh in pod `client` through kubectl exec.
fn timed_exec(kubeconfig: &std::path::Path, script: &str) -> Duration {
    let t0 = Instant::now();
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["exec", "client", "--", "sh", "-c", script])
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t0.elapsed()
}

fn pod_ip(d: &Daemon, name: &str) -> String {
    loop {
        let (_, v) = d.call(
            "GET",
            &format!("/api/v1/namespaces/default/pods/{name}"),
            None,
        );
        let ready = v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if let (true, Some(ip)) = (ready, v["status"]["podIP"].as_str()) {
            return ip.to_string();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run() {
    println!("## Network (one board: client pod -> server pod, busybox wget and httpd)\n");
    let (d, _) = Daemon::start("network");
    let archive = super::pods::example_image(&d.dir);
    d.import(&archive);
    let kubeconfig = d.dir.join("kubeconfig");
    let kc = Command::new(bin())
        .args(["kubeconfig", "--data-dir"])
        .arg(d.dir.join("data"))
        .args(["--server", &d.url])
        .output()
        .unwrap();
    std::fs::write(&kubeconfig, kc.stdout).unwrap();
    let (code, v) = d.call(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"selector":{"app":"web"},"ports":[{"port":80,"targetPort":8080}]}}"#),
    );
    assert_eq!(code, 201, "{v}");
    let cluster_ip = v["spec"]["clusterIP"].as_str().unwrap().to_string();
    d.create(&pod(
        "server",
        r#""app":"web""#,
        "mkdir -p /www && hostname > /www/index.html && busybox dd if=/dev/zero of=/www/big bs=1M count=256 2>/dev/null && exec httpd -f -p 8080 -h /www",
    ));
    d.create(&pod("client", "", "sleep 3600"));
    let server_ip = pod_ip(&d, "server");
    pod_ip(&d, "client");
    // Until the rules carry the endpoint, the ClusterIP rejects.
    while !Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "exec",
            "client",
            "--",
            "wget",
            "-qO-",
            &format!("http://{cluster_ip}/"),
        ])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        std::thread::sleep(Duration::from_millis(100));
    }

    let n = 500;
    let lp = |body: &str| format!("i=0; while [ $i -lt {n} ]; do {body}; i=$((i+1)); done");
    let base = timed_exec(&kubeconfig, &lp("true"));
    let per = |url: &str| {
        let t = timed_exec(&kubeconfig, &lp(&format!("wget -qO- {url} >/dev/null")));
        t.saturating_sub(base) / n
    };
    let direct = per(&format!("http://{server_ip}:8080/"));
    let service = per(&format!("http://{cluster_ip}/"));
    println!(
        "- request latency, mean of {n} sequential HTTP GETs (a new wget process and TCP connection each): pod -> pod {}, pod -> Service -> pod {} ({:.2}x)",
        ms(direct),
        ms(service),
        service.as_secs_f64() / direct.as_secs_f64()
    );
    let one = timed_exec(&kubeconfig, "true");
    let mbps = |url: &str| {
        let t = timed_exec(&kubeconfig, &format!("wget -qO /dev/null {url}")).saturating_sub(one);
        256.0 / t.as_secs_f64()
    };
    let direct = mbps(&format!("http://{server_ip}:8080/big"));
    let service = mbps(&format!("http://{cluster_ip}/big"));
    println!(
        "- throughput, one 256 MiB download: pod -> pod {direct:.0} MiB/s, pod -> Service -> pod {service:.0} MiB/s ({:.2}x)",
        service / direct
    );

    // Endpoint change -> rules: a second server; the slice shows it ready,
    // then the table has its DNAT. Both polled in one loop.
    d.create(&pod(
        "server2",
        r#""app":"web""#,
        "exec httpd -f -p 8080 -h /",
    ));
    let ip2 = pod_ip(&d, "server2");
    let (mut in_slice, mut in_rules) = (None, None);
    let (t0, mut polls) = (Instant::now(), 0u32);
    while (in_slice.is_none() || in_rules.is_none()) && t0.elapsed() < Duration::from_secs(30) {
        polls += 1;
        if in_slice.is_none() {
            let (_, v) = d.call(
                "GET",
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb",
                None,
            );
            if v.to_string().contains(&format!("\"{ip2}\"")) {
                in_slice = Some(Instant::now());
            }
        }
        if in_rules.is_none() {
            let out = Command::new("nft")
                .args(["list", "table", "ip", "bramble0"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains(&format!("dnat to {ip2}:")) {
                in_rules = Some(Instant::now());
            }
        }
    }
    match (in_slice, in_rules) {
        (Some(a), Some(b)) => println!(
            "- endpoint change to rules: the new endpoint in the EndpointSlice (API polled) then in the nft table (`nft list` polled): {} (one poll round: {})",
            ms(b.saturating_duration_since(a)),
            ms(t0.elapsed() / polls.max(1))
        ),
        _ => println!("- endpoint change to rules: not seen within 30 s"),
    }
    println!();
    // The kubelet tears pods down after they leave the store: wait for it,
    // so that stopping the daemon leaves no container, veth or address.
    d.clear_pods();
    let sandboxes = d.dir.join("data/runtime/sandboxes");
    let t0 = Instant::now();
    while std::fs::read_dir(&sandboxes).is_ok_and(|mut e| e.next().is_some())
        && t0.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
}
