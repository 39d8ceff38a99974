//! Services with the real kubectl: the Endpoints and EndpointSlices beside a
//! Service follow the pods its selector picks, ready or not, and go with the
//! Service.

use serde_json::Value;

use crate::support::{Server, wait_for};

/// A Node that no kubelet runs, so that the test can write its pods' status
/// (podIP, Ready) as a kubelet would.
const SIMULATED_NODE: &str = "apiVersion: v1
kind: Node
metadata: {name: sim-1}
";

fn pod(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: web}}}}
spec:
  nodeName: sim-1
  containers:
  - name: c
    image: busybox
    ports: [{{name: http, containerPort: 8080}}]
"
    )
}

/// Writes the status a kubelet would for a running pod at `ip`.
fn report(s: &Server, name: &str, ip: &str, ready: bool) {
    let status = format!(
        r#"{{"status": {{"phase": "Running", "podIP": "{ip}", "podIPs": [{{"ip": "{ip}"}}],
            "conditions": [{{"type": "Ready", "status": "{}"}}]}}}}"#,
        if ready { "True" } else { "False" }
    );
    s.kubectl_ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
}

fn endpoints(s: &Server) -> Option<Value> {
    let out = s.kubectl(&["get", "endpoints", "web", "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// The IPs under `key` (addresses or notReadyAddresses) of every subset.
fn ips(ep: &Value, key: &str) -> Vec<String> {
    let mut ips: Vec<String> = ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s[key].as_array().cloned().unwrap_or_default())
        .map(|a| a["ip"].as_str().unwrap().to_string())
        .collect();
    ips.sort();
    ips
}

#[test]
fn endpoints_follow_the_pods_a_service_selects() {
    let s = Server::start();
    s.apply(SIMULATED_NODE);
    s.apply(
        "apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
",
    );
    // A Service with no pods yet has an empty Endpoints object.
    let ep = wait_for(10, "the Endpoints object", || endpoints(&s));
    assert!(ep.get("subsets").is_none(), "{ep}");

    s.apply(&pod("web-a"));
    s.apply(&pod("web-b"));
    report(&s, "web-a", "10.42.0.7", true);
    report(&s, "web-b", "10.42.0.8", false);
    let ep = wait_for(10, "both pods listed", || {
        endpoints(&s)
            .filter(|ep| ips(ep, "addresses").len() + ips(ep, "notReadyAddresses").len() == 2)
    });
    assert_eq!(ips(&ep, "addresses"), ["10.42.0.7"]);
    assert_eq!(ips(&ep, "notReadyAddresses"), ["10.42.0.8"]);
    // The named targetPort resolved to the container's port.
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 8080);
    assert_eq!(
        ep["subsets"][0]["addresses"][0]["targetRef"]["name"],
        "web-a"
    );
    // kubectl describe reads the EndpointSlices.
    let described = s.kubectl_ok(&["describe", "service", "web"]);
    assert!(described.contains("10.42.0.7:8080"), "{described}");
    let slices: Value = serde_json::from_str(&s.kubectl_ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "json",
    ]))
    .unwrap();
    let listed = &slices["items"][0]["endpoints"];
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{slices}");
    assert_eq!(listed[0]["addresses"][0], "10.42.0.7");
    assert_eq!(listed[0]["conditions"]["ready"], true);

    // Readiness moves an address; a deleted pod leaves.
    report(&s, "web-b", "10.42.0.8", true);
    wait_for(10, "web-b ready", || {
        endpoints(&s).filter(|ep| ips(ep, "addresses") == ["10.42.0.7", "10.42.0.8"])
    });
    s.kubectl_ok(&["delete", "pod", "web-a", "--grace-period=0", "--force"]);
    wait_for(10, "web-a gone", || {
        endpoints(&s).filter(|ep| ips(ep, "addresses") == ["10.42.0.8"])
    });

    // A Service without selector keeps the Endpoints its user wrote.
    s.apply(
        "apiVersion: v1
kind: Service
metadata: {name: outside}
spec:
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: outside}
subsets: [{addresses: [{ip: 192.0.2.10}], ports: [{port: 5432}]}]
",
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let outside: Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "endpoints", "outside", "-o", "json"]))
            .unwrap();
    assert_eq!(ips(&outside, "addresses"), ["192.0.2.10"]);

    s.kubectl_ok(&["delete", "service", "web"]);
    wait_for(
        10,
        "the Endpoints and slices deleted with the Service",
        || {
            let slices = s.kubectl_ok(&["get", "endpointslices", "-o", "name"]);
            (endpoints(&s).is_none() && !slices.contains("web-")).then_some(())
        },
    );
}
