//! The real kubectl against a fresh `bramble server`, as a user drives it.
//! Images here are never pulled (imagePullPolicy: Never): tests send no
//! traffic off this machine.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::{Server, missing, wait_for};

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: web
    image: busybox:1.36
    imagePullPolicy: Never
    ports: [{containerPort: 8080}]
";

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: kubia
  labels: {app: kubia}
spec:
  replicas: 1
  selector: {matchLabels: {app: kubia}}
  template:
    metadata: {labels: {app: kubia}}
    spec:
      containers:
      - name: kubia
        image: busybox:1.36
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
";

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: kubia
spec:
  type: NodePort
  selector: {app: kubia}
  ports: [{port: 80, targetPort: 8080}]
";

const RC: &str = "apiVersion: v1
kind: ReplicationController
metadata:
  name: kubia-rc
spec:
  replicas: 1
  selector: {app: kubia-rc}
  template:
    metadata: {labels: {app: kubia-rc}}
    spec:
      containers:
      - name: kubia
        image: busybox:1.36
        imagePullPolicy: Never
";

fn header(out: &str) -> Vec<&str> {
    out.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

#[test]
fn version_api_resources_and_nodes() {
    if missing("kubectl") {
        return;
    }
    let s = Server::start();
    let v = s.kubectl_ok(&["version", "-o", "json"]);
    let v: Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "37");

    let r = s.kubectl_ok(&["api-resources"]);
    for line in [
        "pods ",
        "deployments ",
        "replicationcontrollers ",
        "jobs ",
        "daemonsets ",
        "services ",
    ] {
        assert!(
            r.lines().any(|l| l.starts_with(line)),
            "api-resources lacks {line}:\n{r}"
        );
    }
    assert!(
        r.lines()
            .any(|l| l.starts_with("deployments") && l.contains("apps/v1") && l.contains("deploy"))
    );

    let n = s.kubectl_ok(&["get", "nodes"]);
    assert_eq!(header(&n), ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    let row: Vec<&str> = n.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[0], "test-node");
    assert_eq!(row[1], "Ready");
    let wide = s.kubectl_ok(&["get", "nodes", "-o", "wide"]);
    assert!(header(&wide).contains(&"INTERNAL-IP") && header(&wide).contains(&"KERNEL-VERSION"));
    let labels = s.kubectl_ok(&[
        "get",
        "node",
        "test-node",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    let labels: Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "test-node");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels["kubernetes.io/arch"].is_string());
    let ns = s.kubectl_ok(&["get", "namespaces"]);
    for n in ["default", "kube-system", "kube-public"] {
        assert!(
            ns.lines().any(|l| l.starts_with(n) && l.contains("Active")),
            "{ns}"
        );
    }
}

#[test]
fn run_get_describe_and_delete_a_pod() {
    if missing("kubectl") {
        return;
    }
    let s = Server::start();
    // An image that is not on the board, with pull policy Never: the kubelet
    // says so, deterministically and without a network.
    let out = s.kubectl_ok(&[
        "run",
        "kubia",
        "--image=busybox",
        "--port=8080",
        "--image-pull-policy=Never",
    ]);
    assert_eq!(out.trim(), "pod/kubia created");

    let get = wait_for(20, "ErrImageNeverPull", || {
        let g = s.kubectl_ok(&["get", "pods"]);
        g.contains("ErrImageNeverPull").then_some(g)
    });
    assert_eq!(header(&get), ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let row: Vec<&str> = get.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["kubia", "0/1", "ErrImageNeverPull", "0"]);

    let wide = s.kubectl_ok(&["get", "pods", "-o", "wide"]);
    assert_eq!(
        header(&wide),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );

    let yaml = s.kubectl_ok(&["get", "pod", "kubia", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Pod")
            && yaml.contains("run: kubia")
            && yaml.contains("restartPolicy: Always")
    );
    assert!(
        yaml.contains("imagePullPolicy: Never") && yaml.contains("nodeName: test-node"),
        "{yaml}"
    );
    let json: Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "pod", "kubia", "-o", "json"])).unwrap();
    assert_eq!(
        json["spec"]["containers"][0]["ports"][0]["containerPort"],
        8080
    );
    assert_eq!(json["status"]["phase"], "Pending");
    assert_eq!(
        json["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
        "Container image \"busybox\" is not present with pull policy of Never"
    );
    assert_eq!(json["metadata"]["uid"].as_str().unwrap().len(), 36);
    let jp = s.kubectl_ok(&["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert_eq!(jp, "kubia");

    // The scheduler's event shows in describe.
    let d = s.kubectl_ok(&["describe", "pod", "kubia"]);
    assert!(
        d.contains("Name:") && d.contains("kubia") && d.contains("Status:       Pending"),
        "{d}"
    );
    assert!(
        d.contains("Scheduled") && d.contains("Successfully assigned default/kubia to test-node"),
        "{d}"
    );

    // get -w sees the deletion.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(["get", "pods", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("EVENT"), "{first}");
    let added = lines.next().unwrap().unwrap();
    assert!(
        added.starts_with("ADDED") && added.contains("kubia"),
        "{added}"
    );
    let del = s.kubectl_ok(&["delete", "pod", "kubia"]);
    assert_eq!(del.trim(), "pod \"kubia\" deleted from default namespace");
    let deleted = wait_for(10, "DELETED in kubectl get -w", || {
        lines
            .next()
            .and_then(Result::ok)
            .filter(|l| l.starts_with("DELETED"))
    });
    assert!(deleted.contains("kubia"));
    let _ = watch.kill();
    let _ = watch.wait();
    let gone = s.kubectl(&["get", "pod", "kubia"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("pods \"kubia\" not found"));
}

#[test]
fn apply_create_unchanged_configured_and_server_side() {
    if missing("kubectl") {
        return;
    }
    let s = Server::start();
    let all = format!("{POD}---\n{DEPLOYMENT}---\n{SERVICE}");
    let out = s.apply(&all);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "pod/web created",
            "deployment.apps/kubia created",
            "service/kubia created"
        ]
    );
    let out = s.apply(&all);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "pod/web unchanged",
            "deployment.apps/kubia unchanged",
            "service/kubia unchanged"
        ]
    );
    let changed = DEPLOYMENT.replace(
        "labels: {app: kubia}\nspec:\n  replicas",
        "labels: {app: kubia, tier: web}\nspec:\n  replicas",
    );
    assert_ne!(changed, DEPLOYMENT);
    assert_eq!(s.apply(&changed).trim(), "deployment.apps/kubia configured");
    let tier = s.kubectl_ok(&[
        "get",
        "deploy",
        "kubia",
        "-o",
        "jsonpath={.metadata.labels.tier}",
    ]);
    assert_eq!(tier, "web");
    // The container kept its port through the strategic merge.
    let port = s.kubectl_ok(&[
        "get",
        "deploy",
        "kubia",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].ports[0].containerPort}",
    ]);
    assert_eq!(port, "8080");

    let svc: Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "svc", "kubia", "-o", "json"])).unwrap();
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.43.")
    );
    let np = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&np));
    let table = s.kubectl_ok(&["get", "svc", "kubia"]);
    assert_eq!(
        header(&table),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert!(table.contains(&format!("80:{np}/TCP")), "{table}");

    // Server-side apply creates, then merges without wiping fields.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: \"1\"}\n";
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], cm);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/settings serverside-applied"
    );
    s.kubectl_ok(&["label", "configmap", "settings", "owner=ops"]);
    let cm2 = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {b: \"2\"}\n";
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], cm2);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "cm", "settings", "-o", "json"])).unwrap();
    assert_eq!(got["data"]["b"], "2");
    assert_eq!(
        got["metadata"]["labels"]["owner"], "ops",
        "server-side apply must not replace the object"
    );

    let all = s.kubectl_ok(&["get", "all"]);
    assert!(all.contains("pod/web"), "{all}");
    assert!(all.contains("service/kubia"), "{all}");
    assert!(all.contains("deployment.apps/kubia"), "{all}");

    let del = s.kubectl_stdin(&["delete", "-f", "-"], &format!("{POD}---\n{SERVICE}"));
    assert!(
        del.status.success(),
        "{}",
        String::from_utf8_lossy(&del.stderr)
    );
    assert!(String::from_utf8_lossy(&del.stdout).contains("pod \"web\" deleted"));
    assert!(!s.kubectl(&["get", "svc", "kubia"]).status.success());
}

#[test]
fn scale_label_annotate_patch_and_replace() {
    if missing("kubectl") {
        return;
    }
    let s = Server::start();
    s.apply(&format!("{DEPLOYMENT}---\n{RC}"));
    assert_eq!(
        s.kubectl_ok(&["scale", "deployment/kubia", "--replicas=3"])
            .trim(),
        "deployment.apps/kubia scaled"
    );
    assert_eq!(
        s.kubectl_ok(&["get", "deploy", "kubia", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    assert_eq!(
        s.kubectl_ok(&["scale", "rc/kubia-rc", "--replicas=2"])
            .trim(),
        "replicationcontroller/kubia-rc scaled"
    );
    assert_eq!(
        s.kubectl_ok(&[
            "scale",
            "rc/kubia-rc",
            "--current-replicas=2",
            "--replicas=4"
        ])
        .trim(),
        "replicationcontroller/kubia-rc scaled"
    );
    assert_eq!(
        s.kubectl_ok(&["get", "rc", "kubia-rc", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );
    let wrong = s.kubectl(&[
        "scale",
        "rc/kubia-rc",
        "--current-replicas=9",
        "--replicas=1",
    ]);
    assert!(
        !wrong.status.success(),
        "a wrong --current-replicas must fail"
    );

    s.kubectl_ok(&["label", "deploy", "kubia", "env=prod"]);
    s.kubectl_ok(&["annotate", "deploy", "kubia", "team=edge"]);
    let meta: Value = serde_json::from_str(&s.kubectl_ok(&[
        "get",
        "deploy",
        "kubia",
        "-o",
        "jsonpath={.metadata}",
    ]))
    .unwrap();
    assert_eq!(meta["labels"]["env"], "prod");
    assert_eq!(meta["annotations"]["team"], "edge");
    let by_label = s.kubectl_ok(&["get", "deploy", "-l", "env=prod", "-o", "name"]);
    assert_eq!(by_label.trim(), "deployment.apps/kubia");
    assert_eq!(
        s.kubectl_ok(&["get", "deploy", "-l", "env notin (prod)", "-o", "name"])
            .trim(),
        ""
    );

    // Strategic merge: containers merge by name, the port stays.
    s.kubectl_ok(&["patch", "deploy", "kubia", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"kubia","image":"busybox:1.37"}]}}}}"#]);
    let c: Value = serde_json::from_str(&s.kubectl_ok(&[
        "get",
        "deploy",
        "kubia",
        "-o",
        "jsonpath={.spec.template.spec.containers[0]}",
    ]))
    .unwrap();
    assert_eq!(c["image"], "busybox:1.37");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    // Merge patch replaces the list.
    s.kubectl_ok(&[
        "patch",
        "rc",
        "kubia-rc",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"patched":"merge"}}}"#,
    ]);
    assert_eq!(
        s.kubectl_ok(&[
            "get",
            "rc",
            "kubia-rc",
            "-o",
            "jsonpath={.metadata.labels.patched}"
        ]),
        "merge"
    );
    // JSON patch.
    s.kubectl_ok(&[
        "patch",
        "rc",
        "kubia-rc",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":1}]"#,
    ]);
    assert_eq!(
        s.kubectl_ok(&["get", "rc", "kubia-rc", "-o", "jsonpath={.spec.replicas}"]),
        "1"
    );
    let bad = s.kubectl(&[
        "patch",
        "rc",
        "kubia-rc",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":7}]"#,
    ]);
    assert!(!bad.status.success());

    // replace: GET, edit, PUT with the resourceVersion.
    let mut rc: Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "rc", "kubia-rc", "-o", "json"])).unwrap();
    rc["metadata"]["labels"]["replaced"] = "yes".into();
    let out = s.kubectl_stdin(&["replace", "-f", "-"], &rc.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.kubectl_ok(&[
            "get",
            "rc",
            "kubia-rc",
            "-o",
            "jsonpath={.metadata.labels.replaced}"
        ]),
        "yes"
    );
    // The old resourceVersion now conflicts.
    let stale = s.kubectl_stdin(&["replace", "-f", "-"], &rc.to_string());
    assert!(!stale.status.success());
    assert!(String::from_utf8_lossy(&stale.stderr).contains("the object has been modified"));

    let info = s.kubectl_ok(&["cluster-info"]);
    assert!(
        info.contains("is running at") && info.contains(&s.url()),
        "{info}"
    );
}

#[test]
fn deleting_a_namespace_deletes_what_is_in_it() {
    if missing("kubectl") {
        return;
    }
    let s = Server::start();
    s.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n");
    s.apply(&format!("{POD}---\n{SERVICE}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\ndata: {{a: b}}\n").replace("metadata:\n  name:", "metadata:\n  namespace: team\n  name:").replace("metadata: {name: cfg}", "metadata: {name: cfg, namespace: team}"));
    let before = s.kubectl_ok(&["get", "pods,svc,cm", "-n", "team", "-o", "name"]);
    assert!(
        before.contains("pod/web")
            && before.contains("service/kubia")
            && before.contains("configmap/cfg"),
        "{before}"
    );
    // Creating in a terminating namespace is forbidden; kubectl waits for the deletion.
    let out = s.kubectl(&["delete", "namespace", "team", "--timeout=20s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!s.kubectl(&["get", "namespace", "team"]).status.success());
    let (_, left) = s.request("GET", "/api/v1/namespaces/team/configmaps", None, b"");
    assert_eq!(left["items"].as_array().map(Vec::len), Some(0), "{left}");
    let (code, _) = s.request(
        "GET",
        "/api/v1/pods?fieldSelector=metadata.namespace%3Dteam",
        None,
        b"",
    );
    assert_eq!(code, 200);
    let pods = s.get_json("/api/v1/pods?fieldSelector=metadata.namespace%3Dteam");
    assert_eq!(pods["items"].as_array().unwrap().len(), 0);
    let protected = s.kubectl(&["delete", "namespace", "default"]);
    assert!(!protected.status.success());
    assert!(String::from_utf8_lossy(&protected.stderr).contains("may not be deleted"));
}
