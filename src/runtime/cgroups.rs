//! Cgroups as bramble lays them out: `/bramble/<pod_uid>/<container_name>` in every hierarchy.
//!
//! libcontainer creates and fills the leaf (from the resources `spec.rs` puts in the OCI spec) and
//! removes it on delete; it never removes parents, so the pod directory is ours to remove. The
//! OOM counter is ours to read. Which files those are depends on the cgroup version, decided
//! from `/proc/self/mountinfo` like libcontainer does: any v1 controller mount (legacy or
//! hybrid) means v1, otherwise the cgroup2 mount.

use std::io;
use std::path::{Path, PathBuf};

use super::protocol::Resources;

/// Where the cgroup hierarchies are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Mount points of the v1 hierarchies (and of the controller-less cgroup2 on hybrid hosts),
    /// plus the memory hierarchy's, where the OOM counter lives.
    V1 {
        hierarchies: Vec<PathBuf>,
        memory: Option<PathBuf>,
    },
    /// `memory`: whether the memory controller is enabled (Raspberry Pi OS needs
    /// `cgroup_enable=memory cgroup_memory=1` on the kernel command line).
    V2 { mount: PathBuf, memory: bool },
}

#[derive(Debug)]
pub enum CgroupError {
    ReadMountinfo(io::Error),
    NoCgroupFs,
    Remove { path: PathBuf, source: io::Error },
}

impl std::fmt::Display for CgroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ReadMountinfo(e) => write!(f, "cannot read /proc/self/mountinfo: {e}"),
            Self::NoCgroupFs => write!(
                f,
                "no cgroup filesystem is mounted (mount cgroup2 on /sys/fs/cgroup; on Raspberry Pi \
                 OS add cgroup_enable=memory cgroup_memory=1 to cmdline.txt for memory limits)"
            ),
            Self::Remove { path, source } => write!(
                f,
                "cannot remove cgroup {}: {source} (a process still in it? see its cgroup.procs)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CgroupError {}

/// The cgroupsPath of a container, relative to each hierarchy's root.
pub fn cgroups_path(pod_uid: &str, container_name: &str) -> PathBuf {
    Path::new("/bramble").join(pod_uid).join(container_name)
}

impl CgroupLayout {
    pub fn detect() -> Result<Self, CgroupError> {
        let text =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::ReadMountinfo)?;
        let layout = Self::from_mountinfo(&text)?;
        Ok(match layout {
            Self::V2 { mount, .. } => {
                let controllers =
                    std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
                let memory = controllers.split_whitespace().any(|c| c == "memory");
                Self::V2 { mount, memory }
            }
            v1 => v1,
        })
    }

    /// Decides the layout from mountinfo text. A v2 layout is assumed to have memory accounting
    /// until `detect` reads its `cgroup.controllers`.
    pub fn from_mountinfo(text: &str) -> Result<Self, CgroupError> {
        let mut v1 = Vec::new();
        let mut memory = None;
        let mut v2 = None;
        for line in text.lines() {
            // "<id> <parent> <dev> <root> <mountpoint> <opts> [optional...] - <fstype> <src> <super>"
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let (fstype, superopts) = (right.next(), right.nth(1).unwrap_or(""));
            let mount = PathBuf::from(unescape_mountinfo(mount));
            match fstype {
                Some("cgroup") => {
                    if superopts.split(',').any(|o| o == "memory") {
                        memory = Some(mount.clone());
                    }
                    v1.push(mount);
                }
                Some("cgroup2") => v2 = Some(mount),
                _ => {}
            }
        }
        match (v1.is_empty(), v2) {
            (false, unified) => {
                v1.extend(unified);
                Ok(Self::V1 {
                    hierarchies: v1,
                    memory,
                })
            }
            (true, Some(mount)) => Ok(Self::V2 {
                mount,
                memory: true,
            }),
            (true, None) => Err(CgroupError::NoCgroupFs),
        }
    }

    fn hierarchies(&self) -> &[PathBuf] {
        match self {
            Self::V1 { hierarchies, .. } => hierarchies,
            Self::V2 { mount, .. } => std::slice::from_ref(mount),
        }
    }

    /// Whether memory limits can be set and OOM kills counted.
    pub fn memory_accounted(&self) -> bool {
        match self {
            Self::V1 { memory, .. } => memory.is_some(),
            Self::V2 { memory, .. } => *memory,
        }
    }

    /// The pod's directory in every hierarchy (parent of its containers' cgroups).
    pub fn pod_dirs(&self, pod_uid: &str) -> Vec<PathBuf> {
        self.hierarchies()
            .iter()
            .map(|h| h.join("bramble").join(pod_uid))
            .collect()
    }

    /// Caps the number of processes of the whole pod (its parent cgroup),
    /// on top of each container's own cap.
    pub fn set_pod_pids_limit(&self, pod_uid: &str, limit: u64) -> io::Result<()> {
        let dir = match self {
            Self::V1 { hierarchies, .. } => hierarchies
                .iter()
                .find(|h| h.file_name().is_some_and(|n| n == "pids"))
                .map(|h| h.join("bramble").join(pod_uid)),
            Self::V2 { mount, .. } => Some(mount.join("bramble").join(pod_uid)),
        };
        match dir.map(|d| d.join("pids.max")).filter(|f| f.exists()) {
            Some(file) => std::fs::write(file, limit.to_string()),
            None => Ok(()),
        }
    }

    /// What the pod's cgroup has used: memory now (v2 memory.current, v1
    /// memory.usage_in_bytes) and CPU time so far (v2 cpu.stat usage_usec,
    /// v1 cpuacct.usage in ns). None where the controller is off.
    pub fn pod_usage(&self, pod_uid: &str) -> Usage {
        let read = |p: PathBuf| std::fs::read_to_string(p).ok();
        let number = |t: Option<String>| t.and_then(|t| t.trim().parse::<u64>().ok());
        let pod = Path::new("bramble").join(pod_uid);
        match self {
            Self::V2 { mount, .. } => Usage {
                memory_bytes: number(read(mount.join(&pod).join("memory.current"))),
                cpu_usec: read(mount.join(&pod).join("cpu.stat")).and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|v| v.trim().parse().ok())
                }),
            },
            Self::V1 {
                hierarchies,
                memory,
            } => Usage {
                memory_bytes: memory
                    .as_ref()
                    .and_then(|m| number(read(m.join(&pod).join("memory.usage_in_bytes")))),
                cpu_usec: hierarchies
                    .iter()
                    .find(|h| {
                        h.file_name()
                            .is_some_and(|n| n.to_string_lossy().contains("cpuacct"))
                    })
                    .and_then(|h| number(read(h.join(&pod).join("cpuacct.usage"))))
                    .map(|ns| ns / 1000),
            },
        }
    }

    /// The container's directory in every hierarchy.
    pub fn container_dirs(&self, pod_uid: &str, name: &str) -> Vec<PathBuf> {
        self.pod_dirs(pod_uid)
            .into_iter()
            .map(|d| d.join(name))
            .collect()
    }

    /// The file holding the container's count of OOM kills, if memory is accounted.
    pub fn oom_file(&self, pod_uid: &str, name: &str) -> Option<PathBuf> {
        let rel = cgroups_path(pod_uid, name);
        let rel = rel.strip_prefix("/").unwrap_or(&rel);
        match self {
            Self::V1 { memory, .. } => memory
                .as_ref()
                .map(|m| m.join(rel).join("memory.oom_control")),
            Self::V2 { mount, memory } => memory.then(|| mount.join(rel).join("memory.events")),
        }
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Usage {
    pub memory_bytes: Option<u64>,
    pub cpu_usec: Option<u64>,
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The `oom_kill N` line of v1 `memory.oom_control` or v2 `memory.events`.
pub fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// Reads the OOM kill counter; 0 when the file is absent (memory controller off).
pub fn read_oom_kills(file: Option<&Path>) -> u64 {
    file.and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| parse_oom_kills(&t))
        .unwrap_or(0)
}

/// Removes cgroup directories that exist, children before parents. Missing ones are fine
/// (idempotent); a busy one is an error.
pub fn remove_dirs(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    for dir in dirs {
        // Leftover children (a container deleted while its cgroup was busy) go first.
        if let Ok(entries) = std::fs::read_dir(dir) {
            let children: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.path())
                .collect();
            remove_dirs(&children)?;
        }
        match std::fs::remove_dir(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(CgroupError::Remove {
                    path: dir.clone(),
                    source: e,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Cgroup values of a container, as the kubelet computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupValues {
    pub cpu_shares: u64,
    pub cpu_quota: Option<i64>,
    pub cpu_period: u64,
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
}

const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
const CFS_PERIOD_US: u64 = 100_000;
const MIN_QUOTA_US: i64 = 1_000;

/// kubelet's `MilliCPUToShares` and `MilliCPUToQuota`. A missing request falls back to the limit,
/// as API defaulting does; neither means BestEffort (the minimum shares).
pub fn cgroup_values(r: &Resources) -> CgroupValues {
    let shares = match r.cpu_request_millis.or(r.cpu_limit_millis) {
        Some(m) => (m.saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES),
        None => MIN_SHARES,
    };
    let quota = r.cpu_limit_millis.map(|m| {
        let q = m.saturating_mul(CFS_PERIOD_US) / 1000;
        i64::try_from(q).unwrap_or(i64::MAX).max(MIN_QUOTA_US)
    });
    CgroupValues {
        cpu_shares: shares,
        cpu_quota: quota,
        cpu_period: CFS_PERIOD_US,
        memory_limit: r
            .memory_limit_bytes
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
        pids_limit: r.pids_limit.map(|p| i64::try_from(p).unwrap_or(i64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const UNIFIED: &str = "\
22 1 179:2 / / rw,noatime shared:1 - ext4 /dev/root rw
27 21 0:25 / /sys/fs/cgroup rw,nosuid,nodev shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn hybrid_host_uses_v1_files() {
        let l = CgroupLayout::from_mountinfo(HYBRID).unwrap();
        assert_eq!(
            l.oom_file("p1", "app"),
            Some("/sys/fs/cgroup/memory/bramble/p1/app/memory.oom_control".into())
        );
        assert_eq!(
            l.pod_dirs("p1"),
            ["cpu", "memory", "pids", "unified"]
                .map(|c| PathBuf::from(format!("/sys/fs/cgroup/{c}/bramble/p1")))
        );
    }

    #[test]
    fn unified_host_uses_v2_files() {
        let l = CgroupLayout::from_mountinfo(UNIFIED).unwrap();
        assert_eq!(
            l.oom_file("p1", "app"),
            Some("/sys/fs/cgroup/bramble/p1/app/memory.events".into())
        );
        assert_eq!(
            l.container_dirs("p1", "app"),
            [PathBuf::from("/sys/fs/cgroup/bramble/p1/app")]
        );
    }

    #[test]
    fn v2_without_the_memory_controller_counts_no_ooms() {
        let l = CgroupLayout::V2 {
            mount: "/sys/fs/cgroup".into(),
            memory: false,
        };
        assert!(!l.memory_accounted());
        assert_eq!(l.oom_file("p1", "app"), None);
        assert!(
            CgroupLayout::from_mountinfo(HYBRID)
                .unwrap()
                .memory_accounted()
        );
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        assert!(CgroupLayout::from_mountinfo("22 1 179:2 / / rw - ext4 /dev/root rw").is_err());
    }

    #[test]
    fn oom_kill_counter_is_parsed_from_both_versions() {
        assert_eq!(
            parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            Some(2)
        );
        assert_eq!(
            parse_oom_kills("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0"),
            Some(1)
        );
        assert_eq!(parse_oom_kills("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn cpu_and_memory_values_follow_the_kubelet() {
        let v = cgroup_values(&Resources {
            cpu_request_millis: Some(250),
            cpu_limit_millis: Some(500),
            memory_limit_bytes: Some(64 << 20),
            pids_limit: Some(100),
        });
        assert_eq!(v.cpu_shares, 256);
        assert_eq!(v.cpu_quota, Some(50_000));
        assert_eq!(v.cpu_period, 100_000);
        assert_eq!(v.memory_limit, Some(64 << 20));
        assert_eq!(v.pids_limit, Some(100));
    }

    #[test]
    fn best_effort_and_tiny_values_are_clamped() {
        assert_eq!(cgroup_values(&Resources::default()).cpu_shares, 2);
        assert_eq!(cgroup_values(&Resources::default()).cpu_quota, None);
        let tiny = cgroup_values(&Resources {
            cpu_limit_millis: Some(1),
            ..Default::default()
        });
        assert_eq!((tiny.cpu_shares, tiny.cpu_quota), (2, Some(1_000)));
        let huge = cgroup_values(&Resources {
            cpu_request_millis: Some(1 << 40),
            ..Default::default()
        });
        assert_eq!(huge.cpu_shares, 262_144);
    }
}
