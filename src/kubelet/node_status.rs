//! The node's pressure conditions from real readings. Readings are taken
//! every few seconds and kept in memory; the Node object is written only when
//! a condition changes (an SD card should not pay for heartbeats).

use serde_json::Value;
use std::path::Path;
use std::time::Duration;

use crate::model::{self, res};
use crate::store::Store;

const PERIOD: Duration = Duration::from_secs(10);

/// What the board has left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Readings {
    pub memory_available: u64,
    pub disk_available: u64,
    pub disk_total: u64,
    pub pids_used: u64,
    pub pids_max: u64,
}

/// The kubelet's default eviction thresholds.
const MEMORY_AVAILABLE_MIN: u64 = 100 << 20;
const DISK_AVAILABLE_MIN_PERCENT: u64 = 10;
const PIDS_AVAILABLE_MIN_PERCENT: u64 = 5;

/// (type, under pressure, reason, message) as the kubelet words them.
pub fn pressures(r: &Readings) -> [(&'static str, bool, &'static str, &'static str); 3] {
    let memory = r.memory_available < MEMORY_AVAILABLE_MIN;
    let disk =
        r.disk_total > 0 && r.disk_available * 100 < r.disk_total * DISK_AVAILABLE_MIN_PERCENT;
    let pids = r.pids_max > 0
        && (r.pids_max - r.pids_used.min(r.pids_max)) * 100
            < r.pids_max * PIDS_AVAILABLE_MIN_PERCENT;
    [
        if memory {
            (
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            (
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if disk {
            (
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            )
        } else {
            (
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            )
        },
        if pids {
            (
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            )
        } else {
            (
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            )
        },
    ]
}

fn read(data_dir: &Path) -> Readings {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_available = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(u64::MAX, |kb| kb * 1024);
    let (disk_available, disk_total) = nix::sys::statvfs::statvfs(data_dir)
        .map(|s| {
            (
                s.blocks_available() * s.fragment_size(),
                s.blocks() * s.fragment_size(),
            )
        })
        .unwrap_or((0, 0));
    let pids_used = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count() as u64
        })
        .unwrap_or(0);
    let pids_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Readings {
        memory_available,
        disk_available,
        disk_total,
        pids_used,
        pids_max,
    }
}

/// The node's conditions updated from `r`; None when nothing changed (so
/// nothing is written). Transition times change only with the status.
pub fn updated(node: &Value, r: &Readings, now: &str) -> Option<Value> {
    let mut node = node.clone();
    let conds = node
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)?;
    let mut changed = false;
    for (ty, pressure, reason, message) in pressures(r) {
        let status = if pressure { "True" } else { "False" };
        match conds.iter_mut().find(|c| c["type"] == ty) {
            Some(c) if c["status"] == status => {}
            Some(c) => {
                c["status"] = status.into();
                c["reason"] = reason.into();
                c["message"] = message.into();
                c["lastTransitionTime"] = now.into();
                c["lastHeartbeatTime"] = now.into();
                changed = true;
            }
            None => {
                conds.push(serde_json::json!({"type": ty, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": now}));
                changed = true;
            }
        }
    }
    // The kubelet reports Ready; the node lifecycle controller sets it
    // Unknown while no heartbeat comes.
    match conds.iter_mut().find(|c| c["type"] == "Ready") {
        Some(c) if c["status"] == "True" => {}
        Some(c) => {
            *c = serde_json::json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now});
            changed = true;
        }
        None => {}
    }
    changed.then_some(node)
}

/// Keeps this node's pressure conditions current, and beats its heart.
pub async fn run(store: &Store, node_name: &str, data_dir: &Path) {
    loop {
        store.heartbeat(node_name);
        let readings = smol::unblock({
            let d = data_dir.to_path_buf();
            move || read(&d)
        })
        .await;
        if let Some(node) = store.get(res("Node"), "", node_name)
            && let Some(new) = updated(&node.value(), &readings, &model::now())
            && let Err(e) = store.update(res("Node"), new)
        {
            log::warn!("updating node {node_name} conditions: {e}");
        }
        smol::Timer::after(PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PLENTY: Readings = Readings {
        memory_available: 1 << 30,
        disk_available: 50,
        disk_total: 100,
        pids_used: 100,
        pids_max: 32768,
    };

    #[test]
    fn thresholds_follow_the_kubelet_defaults() {
        assert!(pressures(&PLENTY).iter().all(|p| !p.1));
        let low_mem = Readings {
            memory_available: 99 << 20,
            ..PLENTY
        };
        assert!(pressures(&low_mem)[0].1);
        assert_eq!(pressures(&low_mem)[0].2, "KubeletHasInsufficientMemory");
        let low_disk = Readings {
            disk_available: 9,
            ..PLENTY
        };
        assert!(pressures(&low_disk)[1].1);
        let many_pids = Readings {
            pids_used: 32000,
            ..PLENTY
        };
        assert!(pressures(&many_pids)[2].1);
    }

    #[test]
    fn only_a_change_of_status_is_written() {
        let node = json!({"status": {"conditions": [
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastTransitionTime": "t0", "lastHeartbeatTime": "t0"},
            {"type": "DiskPressure", "status": "False", "lastTransitionTime": "t0"},
            {"type": "PIDPressure", "status": "False", "lastTransitionTime": "t0"},
            {"type": "Ready", "status": "True"}]}});
        assert_eq!(updated(&node, &PLENTY, "t1"), None);
        let low = Readings {
            memory_available: 1,
            ..PLENTY
        };
        let new = updated(&node, &low, "t1").unwrap();
        let mem = &new["status"]["conditions"][0];
        assert_eq!(
            (mem["status"].as_str(), mem["lastTransitionTime"].as_str()),
            (Some("True"), Some("t1"))
        );
        assert_eq!(new["status"]["conditions"][1]["lastTransitionTime"], "t0");
        assert_eq!(new["status"]["conditions"][3]["type"], "Ready");
        let mut lost = node.clone();
        lost["status"]["conditions"][3] =
            json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"});
        let back = updated(&lost, &PLENTY, "t2").unwrap();
        assert_eq!(back["status"]["conditions"][3]["status"], "True");
        assert_eq!(back["status"]["conditions"][3]["reason"], "KubeletReady");
    }
}
