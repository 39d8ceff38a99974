//! This board as a Node object: identity, capacity and addresses read from
//! the machine.

use serde_json::{Value, json};
use std::net::IpAddr;

/// The architecture as Kubernetes (Go) names it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        other => other,
    }
}

/// This machine's hostname, lower-cased as Kubernetes node names are.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
        .to_lowercase()
}

/// Non-loopback addresses of the machine, IPv4 first.
pub fn addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map(|it| {
            it.filter_map(|a| {
                let addr = a.address?;
                if let Some(v4) = addr.as_sockaddr_in() {
                    Some(IpAddr::V4(v4.ip()))
                } else {
                    addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                }
            })
            .filter(|ip| {
                !ip.is_loopback()
                    && !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|ip| ip.is_ipv6());
    out.dedup();
    out
}

fn meminfo_bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn disk_bytes(path: &std::path::Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.blocks() * s.fragment_size())
        .unwrap_or(0)
}

/// What the node reports about itself.
pub struct Facts {
    pub name: String,
    pub data_dir: std::path::PathBuf,
    pub max_pods: u32,
    pub reserved_memory: u64,
    /// From the board config and --node-label; the well-known labels win.
    pub labels: std::collections::BTreeMap<String, String>,
    /// --node-ip: the address other boards reach this one at; by default
    /// the machine's first non-loopback address.
    pub node_ip: Option<IpAddr>,
}

impl Facts {
    /// The facts a daemon (server or agent) knows from its flags and board.
    pub fn new(
        name: &str,
        data_dir: &std::path::Path,
        board: &crate::config::Settings,
        node_ip: Option<IpAddr>,
    ) -> Facts {
        Facts {
            name: name.to_string(),
            data_dir: data_dir.to_path_buf(),
            max_pods: board.max_pods,
            reserved_memory: board.reserved_memory,
            labels: board.labels.clone(),
            node_ip,
        }
    }
}

/// The Node object for this board, Ready.
pub fn node_object(f: &Facts) -> Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let memory = meminfo_bytes("MemTotal").unwrap_or(0);
    let storage = disk_bytes(&f.data_dir);
    let now = crate::model::now();
    let mut addresses: Vec<Value> = f
        .node_ip
        .into_iter()
        .chain(addresses())
        .take(1)
        .map(|ip| json!({"type": "InternalIP", "address": ip.to_string()}))
        .collect();
    addresses.push(json!({"type": "Hostname", "address": f.name}));
    let condition = |t: &str, status: &str, reason: &str, message: &str| {
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let mut labels: serde_json::Map<String, Value> = f
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().into()))
        .collect();
    labels.extend([
        ("kubernetes.io/arch".to_string(), go_arch().into()),
        ("kubernetes.io/os".to_string(), "linux".into()),
        ("kubernetes.io/hostname".to_string(), f.name.as_str().into()),
        ("beta.kubernetes.io/arch".to_string(), go_arch().into()),
        ("beta.kubernetes.io/os".to_string(), "linux".into()),
    ]);
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": f.name,
            "labels": labels,
        },
        "spec": {},
        "status": {
            "capacity": {
                "cpu": cpus.to_string(),
                "memory": format!("{}Ki", memory / 1024),
                "pods": f.max_pods.to_string(),
                "ephemeral-storage": format!("{}Ki", storage / 1024),
            },
            "allocatable": {
                "cpu": cpus.to_string(),
                "memory": format!("{}Ki", memory.saturating_sub(f.reserved_memory) / 1024),
                "pods": f.max_pods.to_string(),
                "ephemeral-storage": format!("{}Ki", storage / 1024),
            },
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim(),
                "systemUUID": "",
                "bootID": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim(),
                "kernelVersion": kernel_version(),
                "osImage": os_image(),
                "containerRuntimeVersion": "libcontainer://0.7",
                "kubeletVersion": format!("v1.{}.0-bramble", crate::api::discovery::KUBE_MINOR),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": go_arch(),
            },
        },
    })
}

/// The taint `--control-plane-only` puts on the server's own node.
pub fn control_plane_taint() -> Value {
    json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
}

/// A stored Node refreshed with what its kubelet reports now (`fresh`):
/// labels added, taints it asks for added, status replaced; what users set
/// (other labels and taints, unschedulable) kept, and condition timestamps
/// kept when nothing changed, so a restart writes nothing it need not.
pub fn refresh(old: &Value, fresh: &Value) -> Value {
    let mut v = old.clone();
    if let Some(new) = fresh.pointer("/metadata/labels").and_then(Value::as_object) {
        let labels = &mut crate::model::meta_mut(&mut v)
            .entry("labels")
            .or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.extend(new.clone());
        }
    }
    if let Some(wanted) = fresh.pointer("/spec/taints").and_then(Value::as_array) {
        let taints = v["spec"]
            .as_object_mut()
            .map(|s| s.entry("taints").or_insert_with(|| json!([])));
        if let Some(taints) = taints.and_then(Value::as_array_mut) {
            for t in wanted {
                if !taints
                    .iter()
                    .any(|o| o["key"] == t["key"] && o["effect"] == t["effect"])
                {
                    taints.push(t.clone());
                }
            }
        }
    }
    let mut status = fresh["status"].clone();
    if let Some(old_conds) = old.pointer("/status/conditions").and_then(Value::as_array) {
        let same = |a: &Value, b: &Value| {
            a["type"] == b["type"] && a["status"] == b["status"] && a["reason"] == b["reason"]
        };
        if let Some(conds) = status
            .pointer_mut("/conditions")
            .and_then(Value::as_array_mut)
        {
            for c in conds.iter_mut() {
                if let Some(o) = old_conds.iter().find(|o| same(o, c)) {
                    *c = o.clone();
                }
            }
        }
    }
    v["status"] = status;
    v
}

/// Creates the Node `fresh` describes, or refreshes the stored one.
pub fn register(
    store: &crate::store::Store,
    mut fresh: Value,
) -> Result<(), crate::store::StoreError> {
    let nodes = crate::model::res("Node");
    let name = crate::model::name(&fresh).to_string();
    match store.get(nodes, "", &name) {
        None => {
            // What another store gave it (an agent's Node) is not ours.
            let m = crate::model::meta_mut(&mut fresh);
            for k in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
                m.remove(k);
            }
            store.create(nodes, fresh)?;
        }
        Some(old) => {
            store.update(nodes, refresh(&old.value(), &fresh))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_keeps_what_users_set_and_unchanged_condition_times() {
        let old = json!({
            "metadata": {"name": "pi", "labels": {"team": "a", "kubernetes.io/arch": "arm"}},
            "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoExecute"}]},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": "t0"},
                {"type": "DiskPressure", "status": "False", "reason": "R", "lastTransitionTime": "t0"}]},
        });
        let fresh = json!({
            "metadata": {"name": "pi", "labels": {"kubernetes.io/arch": "arm64"}},
            "spec": {"taints": [control_plane_taint()]},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": "t1"},
                {"type": "DiskPressure", "status": "True", "reason": "R2", "lastTransitionTime": "t1"}]},
        });
        let v = refresh(&old, &fresh);
        assert_eq!(
            v["metadata"]["labels"],
            json!({"team": "a", "kubernetes.io/arch": "arm64"})
        );
        assert_eq!(v["spec"]["unschedulable"], true);
        assert_eq!(v["spec"]["taints"].as_array().unwrap().len(), 2);
        assert_eq!(v["status"]["conditions"][0]["lastTransitionTime"], "t0");
        assert_eq!(v["status"]["conditions"][1]["lastTransitionTime"], "t1");
        assert_eq!(
            refresh(&v, &fresh)["spec"]["taints"],
            v["spec"]["taints"],
            "idempotent"
        );
    }

    #[test]
    fn node_reports_machine_capacity_and_labels() {
        let f = Facts {
            name: "board-1".into(),
            data_dir: "/".into(),
            max_pods: 42,
            reserved_memory: 1 << 20,
            labels: [("bramble.io/board", "pi"), ("kubernetes.io/os", "windows")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            node_ip: Some("192.168.7.9".parse().unwrap()),
        };
        let n = node_object(&f);
        assert_eq!(
            n["status"]["addresses"][0],
            json!({"type": "InternalIP", "address": "192.168.7.9"})
        );
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "board-1");
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/arch"], go_arch());
        assert_eq!(n["metadata"]["labels"]["bramble.io/board"], "pi");
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/os"], "linux");
        assert_eq!(n["status"]["capacity"]["pods"], "42");
        let cap: u64 = n["status"]["capacity"]["memory"]
            .as_str()
            .unwrap()
            .trim_end_matches("Ki")
            .parse()
            .unwrap();
        let alloc: u64 = n["status"]["allocatable"]["memory"]
            .as_str()
            .unwrap()
            .trim_end_matches("Ki")
            .parse()
            .unwrap();
        assert!(cap > 0);
        assert_eq!(cap - alloc, 1024);
        assert_eq!(n["status"]["nodeInfo"]["operatingSystem"], "linux");
    }
}
