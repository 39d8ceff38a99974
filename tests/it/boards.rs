//! Board configs: every file in board-configs/ loads, and `bramble server
//! --board NAME` (with --config and flags over it) changes the node: labels,
//! allocatable memory, pod capacity, enforced by the scheduler. Pods here use
//! an image that is never pulled: no traffic leaves the machine.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;

use bramble::config;

use crate::support::{Server, TempDir, bramble, free_port, missing, wait_for};

fn board_configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("board-configs")
}

#[test]
fn every_board_config_loads_validates_and_sets_every_key() {
    let shape = serde_json::to_value(config::BoardConfig::default()).unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(board_configs()).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("toml"),
            "{} is not a board config",
            path.display()
        );
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let layer = config::read_file(&path).unwrap_or_else(|e| panic!("{e}"));
        // A board file documents every key, none left to defaults.
        for (table, keys) in shape.as_object().unwrap() {
            for key in keys.as_object().unwrap().keys() {
                assert!(
                    layer[table].get(key).is_some(),
                    "{name}.toml does not set {key} in [{table}]"
                );
            }
        }
        let s = config::load(&[layer]).unwrap_or_else(|e| panic!("{name}.toml: {e}"));
        assert_eq!(
            s.labels.get("bramble.io/board"),
            Some(&name),
            "{name}.toml: board label"
        );
        assert!(
            s.reserved_memory > 0 && s.max_pods > 0,
            "{name}.toml: {s:?}"
        );
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "generic-aarch64",
            "generic-armv7",
            "raspberry-pi-3b",
            "raspberry-pi-4b",
            "raspberry-pi-5",
            "raspberry-pi-cm4",
            "raspberry-pi-zero-2w"
        ]
    );
}

fn kibibytes(q: &Value) -> u64 {
    q.as_str()
        .and_then(|s| s.strip_suffix("Ki"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{q} is not in Ki"))
}

#[test]
fn raspberry_pi_4b_board_sets_node_labels_memory_and_pods() {
    if missing("curl") {
        return;
    }
    let s = Server::start_with(&["--board", "raspberry-pi-4b"]);
    let node = s.get_json("/api/v1/nodes/test-node");
    assert_eq!(
        node["metadata"]["labels"]["bramble.io/board"],
        "raspberry-pi-4b"
    );
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "test-node"
    );
    let status = &node["status"];
    assert_eq!(
        kibibytes(&status["capacity"]["memory"]) - kibibytes(&status["allocatable"]["memory"]),
        256 * 1024,
        "256Mi reserved"
    );
    assert_eq!(status["capacity"]["pods"], "32");
    assert_eq!(status["allocatable"]["pods"], "32");
}

fn pod(name: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "bramble.test/none:1", "imagePullPolicy": "Never"}]}})
    .to_string()
    .into_bytes()
}

fn node_name(s: &Server, pod: &str) -> Option<String> {
    let v = s.get_json(&format!("/api/v1/namespaces/default/pods/{pod}"));
    v["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

#[test]
fn config_file_and_flags_override_the_board_and_max_pods_is_enforced() {
    if missing("curl") {
        return;
    }
    let dir = TempDir::new("board-override");
    let file = dir.0.join("bramble.toml");
    std::fs::write(&file, "[node]\nreserved_memory = \"512Mi\"\nmax_pods = 3\n").unwrap();
    let file = file.to_str().unwrap();
    let s = Server::start_with(&[
        "--board",
        "raspberry-pi-4b",
        "--config",
        file,
        "--max-pods",
        "2",
        "--node-label",
        "rack=top",
    ]);
    let node = s.get_json("/api/v1/nodes/test-node");
    let labels = &node["metadata"]["labels"];
    assert_eq!(
        (labels["bramble.io/board"].as_str(), labels["rack"].as_str()),
        (Some("raspberry-pi-4b"), Some("top"))
    );
    let status = &node["status"];
    assert_eq!(
        kibibytes(&status["capacity"]["memory"]) - kibibytes(&status["allocatable"]["memory"]),
        512 * 1024,
        "--config wins over the board"
    );
    assert_eq!(
        status["capacity"]["pods"], "2",
        "--max-pods wins over --config"
    );

    for name in ["p1", "p2"] {
        let (code, v) = s.request(
            "POST",
            "/api/v1/namespaces/default/pods",
            Some("application/json"),
            &pod(name),
        );
        assert_eq!(code, 201, "{v}");
        wait_for(20, &format!("{name} bound"), || node_name(&s, name));
    }
    let (code, v) = s.request(
        "POST",
        "/api/v1/namespaces/default/pods",
        Some("application/json"),
        &pod("p3"),
    );
    assert_eq!(code, 201, "{v}");
    let event = wait_for(20, "FailedScheduling for p3", || {
        let events = s.get_json("/api/v1/namespaces/default/events");
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["involvedObject"]["name"] == "p3" && e["reason"] == "FailedScheduling")
            .cloned()
    });
    assert_eq!(event["type"], "Warning");
    assert_eq!(
        event["message"],
        "0/1 nodes are available: 1 Too many pods."
    );
    let p3 = s.get_json("/api/v1/namespaces/default/pods/p3");
    assert_eq!(p3["status"]["phase"], "Pending");
    assert_eq!(p3["spec"]["nodeName"].as_str().unwrap_or(""), "");
    let scheduled = p3["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .unwrap();
    assert_eq!(
        (scheduled["status"].as_str(), scheduled["reason"].as_str()),
        (Some("False"), Some("Unschedulable"))
    );

    // A freed place goes to the waiting pod.
    let (code, v) = s.request(
        "DELETE",
        "/api/v1/namespaces/default/pods/p1?gracePeriodSeconds=0",
        None,
        b"",
    );
    assert!(code == 200 || code == 202, "{code} {v}");
    wait_for(30, "p3 bound once p1 is gone", || node_name(&s, "p3"));
}

/// Runs `bramble server` expecting it to refuse to start; returns stderr.
fn server_refuses(args: &[&str]) -> String {
    let dir = TempDir::new("board-refused");
    let out = Command::new(bramble())
        .args(["server", "--data-dir"])
        .arg(dir.0.join("data"))
        .args([
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--node-name",
            "test-node",
        ])
        .args(args)
        .env(config::SEARCH_ENV, board_configs())
        .output()
        .unwrap();
    assert!(!out.status.success(), "bramble server {args:?} started");
    assert!(
        !dir.0.join("data/state.db").exists(),
        "nothing is opened before the config is valid"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unknown_key_in_a_config_file_stops_the_server_naming_it() {
    let dir = TempDir::new("board-unknown-key");
    let file = dir.0.join("bad.toml");
    std::fs::write(&file, "# a typo\n[node]\nmax_podz = 3\n").unwrap();
    let err = server_refuses(&[
        "--board",
        "raspberry-pi-4b",
        "--config",
        file.to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!(
            "{}:3: unknown key \"max_podz\" in [node]",
            file.display()
        )),
        "{err}"
    );

    let err = server_refuses(&["--board", "raspberry-pi-6"]);
    assert!(err.contains("no board config \"raspberry-pi-6\""), "{err}");
    let err = server_refuses(&["--max-pods", "0"]);
    assert!(
        err.contains("--max-pods: max_pods in [node]: must be between 1 and 250, not 0"),
        "{err}"
    );
}
