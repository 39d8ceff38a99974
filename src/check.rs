//! `bramble check`: a preflight of this machine, like `k3s check-config`.
//!
//! Each probe is a pure function of what it reads (the text of /proc/cgroups,
//! mountinfo, ...) and returns findings; `run` reads the real files under a
//! root that tests override with `BRAMBLE_CHECK_ROOT`, so a fake /proc can
//! stand in for this kernel.

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::image::Platform;

/// Prefixes /proc, /sys and /boot for tests (a fake /proc/cgroups).
pub const ROOT_ENV: &str = "BRAMBLE_CHECK_ROOT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Works, with something missing that a later step needs.
    Warn,
    /// Required: `bramble server` cannot run pods properly without it.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub text: String,
}

impl Finding {
    fn new(level: Level, text: impl Into<String>) -> Finding {
        Finding {
            level,
            text: text.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.level {
            Level::Ok => "OK  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        write!(f, "{tag} {}", self.text)
    }
}

/// What `bramble check` was asked about.
pub struct Options {
    pub data_dir: PathBuf,
    /// The `--board` name and its platform.
    pub board: Option<(String, Platform)>,
}

/// The namespaces a pod sandbox and its containers are made of, as named in
/// /proc/self/ns (mount is `mnt` there).
const NAMESPACES: [(&str, &str); 6] = [
    ("user", "user"),
    ("pid", "pid"),
    ("net", "net"),
    ("uts", "uts"),
    ("ipc", "ipc"),
    ("mnt", "mount"),
];

/// `present`: the entries of /proc/self/ns.
pub fn namespaces(present: &[String]) -> Finding {
    let missing: Vec<&str> = NAMESPACES
        .iter()
        .filter(|(file, _)| !present.iter().any(|p| p == file))
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Finding::new(Level::Ok, "namespaces: user, pid, net, uts, ipc, mount")
    } else {
        Finding::new(
            Level::Fail,
            format!(
                "namespaces: {} missing: use a kernel built with CONFIG_{{USER,PID,NET,UTS,IPC}}_NS",
                missing.join(", ")
            ),
        )
    }
}

/// `filesystems`: the text of /proc/filesystems.
pub fn overlayfs(filesystems: &str) -> Finding {
    if filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        Finding::new(Level::Ok, "overlayfs")
    } else {
        Finding::new(
            Level::Fail,
            "overlayfs: not in /proc/filesystems: run `modprobe overlay` and add `overlay` to \
             /etc/modules-load.d/bramble.conf (image layers are mounted as overlays)",
        )
    }
}

/// `status`: the text of /proc/self/status; `sysctl`: whether
/// /proc/sys/kernel/seccomp exists (kernels with seccomp filters have it).
pub fn seccomp(status: &str, sysctl: bool) -> Finding {
    let field = status.lines().any(|l| l.starts_with("Seccomp:"));
    if field || sysctl {
        Finding::new(Level::Ok, "seccomp")
    } else {
        Finding::new(
            Level::Warn,
            "seccomp: not in this kernel (CONFIG_SECCOMP_FILTER): containers run without \
             seccomp profiles",
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
    /// v1 controllers with a controller-less cgroup2 beside them (systemd's
    /// hybrid mode); bramble uses the v1 hierarchies.
    Hybrid,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::Hybrid => "hybrid (v1 controllers + cgroup2)",
        })
    }
}

/// The cgroup version from /proc/self/mountinfo, and the cgroup2 mount point.
pub fn cgroup_version(mountinfo: &str) -> Option<(CgroupVersion, Option<PathBuf>)> {
    let (mut v1, mut v2) = (false, None);
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        match right.split(' ').next() {
            Some("cgroup") => v1 = true,
            Some("cgroup2") => v2 = left.split(' ').nth(4).map(PathBuf::from),
            _ => {}
        }
    }
    match (v1, v2) {
        (true, None) => Some((CgroupVersion::V1, None)),
        (true, Some(m)) => Some((CgroupVersion::Hybrid, Some(m))),
        (false, Some(m)) => Some((CgroupVersion::V2, Some(m))),
        (false, None) => None,
    }
}

/// Controllers switched on in /proc/cgroups (the "enabled" column).
pub fn enabled_controllers(proc_cgroups: &str) -> Vec<String> {
    proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[3] == "1").then(|| f[0].to_string())
        })
        .collect()
}

/// Where the Raspberry Pi kernel command line lives: Raspberry Pi OS
/// Bookworm moved it to /boot/firmware.
pub fn cmdline_file(firmware_exists: bool, legacy_exists: bool) -> &'static str {
    match (firmware_exists, legacy_exists) {
        (false, true) => "/boot/cmdline.txt",
        _ => "/boot/firmware/cmdline.txt",
    }
}

/// `mountinfo`, `proc_cgroups`: file texts; `v2_controllers`: the text of
/// cgroup.controllers at the cgroup2 mount, when there is one; `cmdline`:
/// the file to name in the memory fix (see `cmdline_file`).
pub fn cgroups(
    mountinfo: &str,
    proc_cgroups: &str,
    v2_controllers: Option<&str>,
    cmdline: &str,
) -> Vec<Finding> {
    let Some((version, _)) = cgroup_version(mountinfo) else {
        return vec![Finding::new(
            Level::Fail,
            "cgroups: no cgroup filesystem mounted: mount cgroup2 on /sys/fs/cgroup",
        )];
    };
    // On v2 the controllers are those of the root's cgroup.controllers; on
    // v1 and hybrid, /proc/cgroups says which hierarchies the kernel enabled.
    let on: Vec<String> = match (version, v2_controllers) {
        (CgroupVersion::V2, Some(text)) => text.split_whitespace().map(str::to_string).collect(),
        _ => enabled_controllers(proc_cgroups),
    };
    let mut out = vec![Finding::new(
        Level::Ok,
        format!("cgroups: {version}; controllers on: {}", on.join(" ")),
    )];
    if !on.iter().any(|c| c == "memory") {
        out.push(Finding::new(
            Level::Fail,
            format!(
                "cgroups: memory controller is off (no memory limits, no OOM accounting): on a \
                 Raspberry Pi add `cgroup_memory=1 cgroup_enable=memory` to the single line in \
                 {cmdline} and reboot; elsewhere add them to the kernel command line"
            ),
        ));
    }
    for c in ["cpu", "pids"] {
        if !on.iter().any(|o| o == c) {
            out.push(Finding::new(
                Level::Warn,
                format!("cgroups: {c} controller is off: pod {c} limits are not enforced"),
            ));
        }
    }
    out
}

/// `found`: the CNI plugin directories that exist.
pub fn cni(found: &[&str]) -> Finding {
    match found {
        [] => Finding::new(
            Level::Warn,
            "CNI plugins: none in /usr/lib/cni or /opt/cni/bin: install containernetworking-plugins \
             (needed once pod networking lands; pods share the host network until then)",
        ),
        dirs => Finding::new(Level::Ok, format!("CNI plugins: {}", dirs.join(", "))),
    }
}

/// `taken`: the first bind error on `port`, if any.
pub fn port(port: u16, what: &str, taken: Option<&str>) -> Finding {
    match taken {
        None => Finding::new(Level::Ok, format!("port {port} free ({what})")),
        Some(e) => Finding::new(
            Level::Fail,
            format!(
                "port {port} ({what}): cannot bind: {e}: stop what listens there \
                 (`ss -ltnp 'sport = :{port}'`; an already running bramble?)"
            ),
        ),
    }
}

const GIB: u64 = 1 << 30;

pub fn disk(dir: &Path, free_bytes: u64) -> Finding {
    let gib = free_bytes as f64 / GIB as f64;
    if free_bytes < GIB {
        Finding::new(
            Level::Warn,
            format!(
                "disk: {gib:.2} GiB free for {}: images and logs need more than 1 GiB",
                dir.display()
            ),
        )
    } else {
        Finding::new(
            Level::Ok,
            format!("disk: {gib:.1} GiB free for {}", dir.display()),
        )
    }
}

/// `rfc3339`: the current time as humantime formats it.
pub fn clock(rfc3339: &str) -> Finding {
    let year: u32 = rfc3339.get(..4).and_then(|y| y.parse().ok()).unwrap_or(0);
    if year >= 2024 {
        Finding::new(Level::Ok, format!("clock: {rfc3339}"))
    } else {
        Finding::new(
            Level::Fail,
            format!(
                "clock: {rfc3339} is in the past: TLS certificates will not verify; set the \
                 time (`timedatectl set-ntp true`, or a real-time clock; boards without one \
                 start in the past)"
            ),
        )
    }
}

/// The binary's platform against the `--board` one.
pub fn architecture(binary: &Platform, board: Option<&(String, Platform)>) -> Finding {
    match board {
        None => Finding::new(
            Level::Ok,
            format!("architecture: binary {binary} (no --board to compare)"),
        ),
        Some((name, want)) if want.compatible().contains(binary) => Finding::new(
            Level::Ok,
            format!("architecture: binary {binary} runs on {name} ({want})"),
        ),
        Some((name, want)) => Finding::new(
            Level::Fail,
            format!(
                "architecture: this binary is {binary} but {name} is {want}: build for it \
                 (`make cross-aarch64` or `make cross-armv7`)"
            ),
        ),
    }
}

/// Runs every probe against this machine; returns the findings in order.
pub fn run(opts: &Options) -> Vec<Finding> {
    let root = PathBuf::from(std::env::var_os(ROOT_ENV).unwrap_or_else(|| "/".into()));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
    let exists = |p: &str| root.join(p).exists();
    let mut out = Vec::new();

    let ns: Vec<String> = std::fs::read_dir(root.join("proc/self/ns"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.push(namespaces(&ns));
    out.push(overlayfs(&read("proc/filesystems")));
    out.push(seccomp(
        &read("proc/self/status"),
        exists("proc/sys/kernel/seccomp"),
    ));

    let mountinfo = read("proc/self/mountinfo");
    let v2_controllers = cgroup_version(&mountinfo)
        .and_then(|(_, mount)| mount)
        .map(|m| {
            let rel = m.strip_prefix("/").unwrap_or(&m).join("cgroup.controllers");
            std::fs::read_to_string(root.join(rel)).unwrap_or_default()
        });
    let cmdline = cmdline_file(
        exists("boot/firmware/cmdline.txt"),
        exists("boot/cmdline.txt"),
    );
    out.extend(cgroups(
        &mountinfo,
        &read("proc/cgroups"),
        v2_controllers.as_deref(),
        cmdline,
    ));

    let cni_dirs: Vec<&str> = ["/usr/lib/cni", "/opt/cni/bin"]
        .into_iter()
        .filter(|d| Path::new(d).is_dir())
        .collect();
    out.push(cni(&cni_dirs));

    for (p, what) in [(6443, "the API"), (6444, "where agents join")] {
        // A local bind test only: nothing is sent, the sockets close at once.
        let taken = ["127.0.0.1", "0.0.0.0"]
            .iter()
            .find_map(|ip| TcpListener::bind((*ip, p)).err())
            .map(|e| e.to_string());
        out.push(port(p, what, taken.as_deref()));
    }

    // The data dir may not exist before the first start: measure the
    // nearest directory that does.
    let measured = opts.data_dir.ancestors().find(|d| d.exists());
    match measured.map(|d| (d, nix::sys::statvfs::statvfs(d))) {
        Some((d, Ok(s))) => out.push(disk(d, s.blocks_available() * s.fragment_size())),
        Some((d, Err(e))) => out.push(Finding::new(
            Level::Warn,
            format!("disk: cannot measure {}: {e}", d.display()),
        )),
        None => out.push(Finding::new(
            Level::Warn,
            format!("disk: {} has no existing parent", opts.data_dir.display()),
        )),
    }

    out.push(clock(
        &humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    ));
    // The compile target, not the CPU: what matters is what this file runs on.
    let binary = Platform::new(std::env::consts::OS, std::env::consts::ARCH, "");
    out.push(architecture(&binary, opts.board.as_ref()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    const V2: &str = "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate";

    const PROC_CGROUPS_NO_MEMORY: &str = "\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t0\t80\t1
cpu\t0\t80\t1
memory\t0\t80\t0
pids\t0\t80\t1";

    #[test]
    fn cgroup_version_tells_v1_v2_and_hybrid() {
        assert_eq!(
            cgroup_version(HYBRID),
            Some((
                CgroupVersion::Hybrid,
                Some(PathBuf::from("/sys/fs/cgroup/unified"))
            ))
        );
        assert_eq!(
            cgroup_version(V2),
            Some((CgroupVersion::V2, Some(PathBuf::from("/sys/fs/cgroup"))))
        );
        let v1: String = HYBRID.lines().take(3).collect::<Vec<_>>().join("\n");
        assert_eq!(cgroup_version(&v1), Some((CgroupVersion::V1, None)));
        assert_eq!(cgroup_version("1 0 0:1 / / rw - ext4 /dev/sda1 rw"), None);
    }

    #[test]
    fn memory_off_fails_with_the_cmdline_fix() {
        let f = cgroups(
            HYBRID,
            PROC_CGROUPS_NO_MEMORY,
            Some(""),
            "/boot/firmware/cmdline.txt",
        );
        assert_eq!(f[0].level, Level::Ok);
        assert!(f[0].text.contains("hybrid"), "{}", f[0]);
        assert!(f[0].text.contains("cpuset cpu pids"), "{}", f[0]);
        let fail = f.iter().find(|f| f.level == Level::Fail).unwrap();
        assert!(
            fail.text.contains(
                "add `cgroup_memory=1 cgroup_enable=memory` to the single line in /boot/firmware/cmdline.txt"
            ),
            "{fail}"
        );
    }

    #[test]
    fn v2_reads_cgroup_controllers_not_proc_cgroups() {
        let f = cgroups(
            V2,
            PROC_CGROUPS_NO_MEMORY,
            Some("cpuset cpu io memory pids\n"),
            "/boot/cmdline.txt",
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].text.starts_with("cgroups: v2;"), "{}", f[0]);
        let f = cgroups(V2, "", Some("cpu pids"), "/boot/cmdline.txt");
        assert!(f[1].text.contains("/boot/cmdline.txt"), "{}", f[1]);
    }

    #[test]
    fn cmdline_file_names_the_one_that_exists() {
        assert_eq!(cmdline_file(true, true), "/boot/firmware/cmdline.txt");
        assert_eq!(cmdline_file(false, true), "/boot/cmdline.txt");
        assert_eq!(cmdline_file(false, false), "/boot/firmware/cmdline.txt");
    }

    #[test]
    fn namespaces_overlay_and_seccomp() {
        let all: Vec<String> = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"]
            .map(String::from)
            .to_vec();
        assert_eq!(namespaces(&all).level, Level::Ok);
        let some: Vec<String> = ["mnt", "pid"].map(String::from).to_vec();
        let f = namespaces(&some);
        assert_eq!(f.level, Level::Fail);
        assert!(
            f.text
                .starts_with("namespaces: user, net, uts, ipc missing")
        );
        assert_eq!(overlayfs("nodev\tproc\nnodev\toverlay\n").level, Level::Ok);
        assert_eq!(overlayfs("nodev\tproc\n").level, Level::Fail);
        assert_eq!(seccomp("Name:\tx\nSeccomp:\t0\n", false).level, Level::Ok);
        assert_eq!(seccomp("Name:\tx\n", false).level, Level::Warn);
    }

    #[test]
    fn clock_disk_ports_cni_and_architecture() {
        assert_eq!(clock("2026-11-26T16:00:00Z").level, Level::Ok);
        let f = clock("1970-01-01T00:00:12Z");
        assert_eq!(f.level, Level::Fail);
        assert!(f.text.contains("TLS certificates will not verify"));
        assert_eq!(disk(Path::new("/d"), GIB - 1).level, Level::Warn);
        assert_eq!(disk(Path::new("/d"), 5 * GIB).level, Level::Ok);
        assert_eq!(port(6443, "api", None).level, Level::Ok);
        assert_eq!(port(6443, "api", Some("in use")).level, Level::Fail);
        assert_eq!(cni(&[]).level, Level::Warn);
        assert_eq!(cni(&["/usr/lib/cni"]).level, Level::Ok);

        let amd64 = Platform::new("linux", "x86_64", "");
        let arm64 = Platform::new("linux", "arm64", "v8");
        let armv7 = Platform::new("linux", "arm", "v7");
        let pi4 = ("raspberry-pi-4b".to_string(), arm64.clone());
        assert_eq!(architecture(&amd64, None).level, Level::Ok);
        assert_eq!(architecture(&arm64, Some(&pi4)).level, Level::Ok);
        // A 32-bit build runs on a 64-bit Pi.
        assert_eq!(architecture(&armv7, Some(&pi4)).level, Level::Ok);
        let f = architecture(&amd64, Some(&pi4));
        assert_eq!(f.level, Level::Fail);
        assert!(f.text.contains("raspberry-pi-4b is linux/arm64"), "{f}");
    }
}
