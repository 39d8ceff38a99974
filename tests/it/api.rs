//! The API as other clients meet it: bad requests, auth, restarts, the
//! Python client, a second server on the same data dir.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::{Server, bramble, missing};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "Never"}]}})
    .to_string()
    .into_bytes()
}

#[test]
fn bad_requests_get_the_right_status_and_nothing_breaks() {
    if missing("curl") {
        return;
    }
    let s = Server::start();
    let (code, _) = s.request("POST", PODS, Some("application/json"), &pod("keep"));
    assert_eq!(code, 201);
    let big = vec![b' '; 3 * 1024 * 1024 + 10];
    let mut unknown = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "strict"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolcy": "Always"}]}});
    let unknown_body = unknown.to_string().into_bytes();
    unknown["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("imagePullPolcy");
    // (method, path, content type, body, expected code, expected reason)
    type Case<'a> = (&'a str, String, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", PODS.into(), Some("application/json"), b"{not json".to_vec(), 400, "BadRequest"),
        ("POST", PODS.into(), Some("application/yaml"), b"a: [1, 2".to_vec(), 400, "BadRequest"),
        ("POST", PODS.into(), Some("application/json"), b"[1,2]".to_vec(), 400, "BadRequest"),
        ("POST", PODS.into(), Some("application/json"), json!({"apiVersion": "apps/v1", "kind": "Pod", "metadata": {"name": "x"}}).to_string().into_bytes(), 400, "BadRequest"),
        ("POST", PODS.into(), Some("application/json"), json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}).to_string().into_bytes(), 400, "BadRequest"),
        ("POST", format!("{PODS}?fieldValidation=Strict"), Some("application/json"), unknown_body, 400, "BadRequest"),
        ("POST", PODS.into(), Some("application/vnd.kubernetes.protobuf"), b"k8s\0\x01".to_vec(), 415, "UnsupportedMediaType"),
        ("POST", PODS.into(), Some("application/json"), big, 413, "RequestEntityTooLarge"),
        ("POST", PODS.into(), Some("application/json"), pod("keep"), 409, "AlreadyExists"),
        ("POST", PODS.into(), Some("application/json"), pod("Bad_Name"), 422, "Invalid"),
        ("POST", PODS.into(), Some("application/json"), json!({"metadata": {"name": "nocontainers"}, "spec": {"containers": []}}).to_string().into_bytes(), 422, "Invalid"),
        ("POST", "/api/v1/namespaces/nosuch/pods".into(), Some("application/json"), pod("x"), 404, "NotFound"),
        ("GET", format!("{PODS}/nosuch"), None, vec![], 404, "NotFound"),
        ("GET", format!("{PODS}?labelSelector=a%20in%20(b"), None, vec![], 400, "BadRequest"),
        ("GET", format!("{PODS}?fieldSelector=spec.bogus%3Dx"), None, vec![], 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/default/widgets".into(), None, vec![], 404, "NotFound"),
        ("PATCH", format!("{PODS}/keep"), Some("application/json-patch+json"), b"{\"op\":1}".to_vec(), 422, "Invalid"),
        ("PATCH", format!("{PODS}/keep"), Some("text/plain"), b"x".to_vec(), 415, "UnsupportedMediaType"),
        ("PUT", format!("{PODS}/keep"), Some("application/json"), json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "keep", "resourceVersion": "1"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}).to_string().into_bytes(), 409, "Conflict"),
        ("DELETE", format!("{PODS}/keep"), Some("application/json"), json!({"propagationPolicy": "Sideways"}).to_string().into_bytes(), 422, "Invalid"),
        ("DELETE", "/api/v1/namespaces/default".into(), None, vec![], 403, "Forbidden"),
    ];
    for (method, path, ct, body, want, reason) in cases {
        let (code, v) = s.request(method, &path, ct, &body);
        assert_eq!(code, want, "{method} {path}: {v}");
        assert_eq!(v["kind"], "Status", "{method} {path}: {v}");
        assert_eq!(v["reason"], reason, "{method} {path}: {v}");
        assert_eq!(v["code"], want);
        assert!(
            !v["message"].as_str().unwrap_or("").is_empty(),
            "{method} {path}: no message"
        );
    }
    // The message names the bad field.
    let (_, v) = s.request("POST", PODS, Some("application/json"), &pod("Bad_Name"));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{v}"
    );
    let (_, v) = s.request("POST", &format!("{PODS}?fieldValidation=Strict"), Some("application/json"), &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "strict"}, "spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolcy": "Always"}]}}).to_string().into_bytes());
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"spec.containers[0].imagePullPolcy\""),
        "{v}"
    );
    // Still serving, nothing lost or half-written.
    let list = s.get_json(PODS);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep"]);
    let (code, _) = s.request(
        "POST",
        PODS,
        Some("application/json"),
        &unknown.to_string().into_bytes(),
    );
    assert_eq!(code, 201);
}

#[test]
fn requests_without_the_token_are_refused() {
    if missing("curl") || missing("kubectl") {
        return;
    }
    let s = Server::start();
    let (code, v) = s.request_as(None, "GET", PODS, None, b"");
    assert_eq!((code, v["reason"].as_str()), (401, Some("Unauthorized")));
    let (code, _) = s.request_as(Some("wrong-token"), "GET", PODS, None, b"");
    assert_eq!(code, 401);
    let (code, _) = s.request_as(Some(&s.token[..s.token.len() - 1]), "GET", PODS, None, b"");
    assert_eq!(code, 401);
    // Health is public, as in Kubernetes.
    let (code, text) = s.request_text(None, "GET", "/readyz", None, b"");
    assert_eq!((code, text.as_str()), (200, "ok"));
    // The kubeconfig from `bramble kubeconfig` works as is.
    let out = s.kubectl(&["get", "pods"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No resources found in default namespace.")
    );
}

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}).to_string().into_bytes()
}

#[test]
fn everything_survives_kill_9_and_watches_resume() {
    if missing("curl") {
        return;
    }
    // ConfigMaps: objects no loop on the server changes by itself.
    let mut s = Server::start();
    for i in 0..20 {
        let (code, _) = s.request(
            "POST",
            CONFIGMAPS,
            Some("application/json"),
            &configmap(&format!("c{i}")),
        );
        assert_eq!(code, 201);
    }
    let (code, _) = s.request("DELETE", &format!("{CONFIGMAPS}/c3"), None, b"");
    assert_eq!(code, 200);
    let before = s.get_json(CONFIGMAPS);
    let rv: u64 = before["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    s.kill9();
    let port = s.port;
    s.spawn(&[]);
    assert_eq!(s.port, port);
    let after = s.get_json(CONFIGMAPS);
    assert_eq!(
        after["items"], before["items"],
        "every object and resourceVersion survives kill -9"
    );
    assert_eq!(after["items"].as_array().unwrap().len(), 19);
    let after_rv: u64 = after["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        after_rv >= rv,
        "resourceVersion never goes back ({after_rv} < {rv})"
    );
    let rv = after_rv.to_string();

    // A watch from the last resourceVersion resumes and sees new writes.
    let mut watch = Command::new("curl")
        .args(["-sN", "--cacert"])
        .arg(s.data_dir().join("tls/ca.crt"))
        .args(["-H", &format!("Authorization: Bearer {}", s.token)])
        .arg(format!(
            "{}{CONFIGMAPS}?watch=true&resourceVersion={rv}",
            s.url()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let (code, created) = s.request(
        "POST",
        CONFIGMAPS,
        Some("application/json"),
        &configmap("after-restart"),
    );
    assert_eq!(code, 201);
    let ev: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["metadata"]["name"], "after-restart");
    assert!(
        ev["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > rv.parse().unwrap()
    );
    assert_eq!(ev["object"]["metadata"]["uid"], created["metadata"]["uid"]);
    let _ = watch.kill();
    let _ = watch.wait();
    // A resourceVersion from before the restart's log is too old: 410 Gone.
    let (code, v) = s.request(
        "GET",
        &format!("{CONFIGMAPS}?watch=true&resourceVersion=2"),
        None,
        b"",
    );
    assert_eq!(code, 410, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("too old resource version")
    );

    // SIGTERM ends open watches and exits cleanly.
    assert_eq!(s.terminate(), Some(0));
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let s = Server::start();
    let out = Command::new(bramble())
        .args(["server", "--data-dir"])
        .arg(s.data_dir())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another bramble is already using this data directory"),
        "{err}"
    );
    assert!(err.contains(&format!("process {}", s.pid())), "{err}");
}

#[test]
fn python_client_lists_creates_watches_and_deletes() {
    if missing("python3") {
        return;
    }
    let have = Command::new("python3")
        .args(["-c", "import kubernetes"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "the Python kubernetes client is required in CI"
        );
        eprintln!("skipping: python kubernetes client not installed");
        return;
    }
    let s = Server::start();
    let script = r#"
import sys, threading
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
names = [p.metadata.name for p in v1.list_namespaced_pod("default").items]
assert names == [], names
body = client.V1Pod(metadata=client.V1ObjectMeta(name="py"), spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox", image_pull_policy="Never")]))
created = v1.create_namespaced_pod("default", body)
assert created.metadata.uid and created.status.phase == "Pending"
rv = v1.list_namespaced_pod("default").metadata.resource_version
seen = []
def deleter():
    import time; time.sleep(0.5)
    v1.delete_namespaced_pod("py", "default")
threading.Thread(target=deleter).start()
for ev in watch.Watch().stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=10):
    seen.append((ev["type"], ev["object"].metadata.name))
    if ev["type"] == "DELETED":
        break
assert ("DELETED", "py") in seen, seen
assert [p.metadata.name for p in v1.list_namespaced_pod("default").items] == []
print("ok")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&s.kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
