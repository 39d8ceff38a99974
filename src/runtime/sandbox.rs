//! Pod sandboxes: the network, UTS and IPC namespaces a pod's containers share, kept alive by
//! bind mounts under `ROOT/sandboxes/<pod_uid>/` (like `ip netns add`, no pause process), plus
//! the pod's /dev/shm tmpfs and its /etc/{hostname,hosts,resolv.conf}.

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use super::cgroups::{CgroupError, CgroupLayout, remove_dirs};
use super::mounts::{MountRequest, Mounter};

/// Docker's and containerd's default /dev/shm size.
const SHM_OPTIONS: &str = "mode=1777,size=65536k";
/// Written last by `create`: a sandbox without it is a leftover of a crash, to be redone.
const READY: &str = "ready";

/// Where one pod's sandbox lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPaths {
    pub dir: PathBuf,
    pub net: PathBuf,
    pub uts: PathBuf,
    pub ipc: PathBuf,
    pub shm: PathBuf,
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv: PathBuf,
}

impl SandboxPaths {
    pub fn new(root: &Path, pod_uid: &str) -> Self {
        let dir = root.join("sandboxes").join(pod_uid);
        Self {
            net: dir.join("net"),
            uts: dir.join("uts"),
            ipc: dir.join("ipc"),
            shm: dir.join("shm"),
            hostname: dir.join("hostname"),
            hosts: dir.join("hosts"),
            resolv: dir.join("resolv.conf"),
            dir,
        }
    }

    /// Made, and its namespaces still pinned: after a reboot the directory
    /// is still there but the pins are plain files again.
    pub fn exists(&self) -> bool {
        self.dir.join(READY).exists()
            && nix::sys::statfs::statfs(&self.ipc)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
    }

    /// A hostNetwork pod has no network namespace pin of its own.
    pub fn host_network(&self) -> bool {
        !self.net.exists()
    }

    /// Mount points, in teardown order.
    fn mount_points(&self) -> [&Path; 4] {
        [&self.shm, &self.net, &self.uts, &self.ipc]
    }
}

#[derive(Debug)]
pub enum SandboxError {
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The short-lived child that creates the namespaces failed.
    Namespaces {
        step: &'static str,
        source: io::Error,
    },
    Cgroups(CgroupError),
}

impl std::fmt::Display for SandboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            Self::Namespaces { step, source } => write!(
                f,
                "cannot create the pod's namespaces ({step}): {source} (the helper must run as root)"
            ),
            Self::Cgroups(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SandboxError {}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SandboxError {
    let path = path.to_owned();
    move |source| SandboxError::Io { what, path, source }
}

/// Creates the pod's sandbox. Idempotent: a ready sandbox is kept, a half-made one redone.
pub fn create(
    m: &dyn Mounter,
    layout: &CgroupLayout,
    root: &Path,
    pod_uid: &str,
    hostname: &str,
    host_network: bool,
) -> Result<(), SandboxError> {
    let paths = SandboxPaths::new(root, pod_uid);
    if paths.exists() {
        return Ok(());
    }
    remove(m, layout, root, pod_uid)?;
    let result = build(m, &paths, hostname, host_network);
    if result.is_err() {
        // Leave nothing half-made; the first error is the one worth reporting.
        let _ = remove(m, layout, root, pod_uid);
    }
    result
}

fn build(
    m: &dyn Mounter,
    p: &SandboxPaths,
    hostname: &str,
    host_network: bool,
) -> Result<(), SandboxError> {
    fs::create_dir_all(&p.shm).map_err(io_err("create", &p.shm))?;
    let pins: &[&Path] = if host_network {
        &[&p.ipc]
    } else {
        &[&p.ipc, &p.net, &p.uts]
    };
    for pin in pins {
        fs::File::create(pin).map_err(io_err("create", pin))?;
    }
    let hostname = if host_network {
        nix::unistd::gethostname()
            .map_err(|e| io_err("read the host name for", &p.hostname)(e.into()))?
            .to_string_lossy()
            .into_owned()
    } else {
        hostname.to_owned()
    };
    fs::write(&p.hostname, format!("{hostname}\n")).map_err(io_err("write", &p.hostname))?;
    // hostNetwork pods see the host's names, as with the kubelet.
    let hosts = match host_network {
        true => fs::read("/etc/hosts").unwrap_or_default(),
        false => hosts_file(&hostname).into_bytes(),
    };
    fs::write(&p.hosts, hosts).map_err(io_err("write", &p.hosts))?;
    // The pod network module will write cluster DNS here; until then the host's resolvers.
    let resolv = fs::read("/etc/resolv.conf").unwrap_or_default();
    fs::write(&p.resolv, resolv).map_err(io_err("write", &p.resolv))?;
    m.mount(&MountRequest::Tmpfs {
        target: p.shm.clone(),
        options: SHM_OPTIONS.into(),
    })
    .map_err(io_err("mount tmpfs on", &p.shm))?;
    pin_namespaces(m, p, &hostname, host_network)?;
    fs::write(p.dir.join(READY), b"").map_err(io_err("write", &p.dir))
}

/// The /etc/hosts of a pod, as the kubelet writes it before the pod has an IP.
pub fn hosts_file(hostname: &str) -> String {
    format!(
        "# Kubernetes-managed hosts file (bramble).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost \
         ip6-loopback\nfe00::0\tip6-localnet\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
         127.0.1.1\t{hostname}\n"
    )
}

/// Forks a child that unshares the namespaces, sets the hostname and raises loopback; the parent
/// bind-mounts the child's namespaces onto the pin files, then lets it exit and reaps it.
fn pin_namespaces(
    m: &dyn Mounter,
    p: &SandboxPaths,
    hostname: &str,
    host_network: bool,
) -> Result<(), SandboxError> {
    let ns_err = |step| {
        move |e: nix::Error| SandboxError::Namespaces {
            step,
            source: e.into(),
        }
    };
    let mut flags = CloneFlags::CLONE_NEWIPC;
    if !host_network {
        flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    }
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(ns_err("pipe"))?;
    let (done_r, done_w) = nix::unistd::pipe().map_err(ns_err("pipe"))?;
    // SAFETY: the helper is single-threaded (no lock can be held by another thread), and the
    // child only makes raw syscalls on data prepared before the fork, then calls _exit.
    match unsafe { nix::unistd::fork() }.map_err(ns_err("fork"))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(done_w);
            let ok = nix::sched::unshare(flags).is_ok()
                && (host_network
                    || (nix::unistd::sethostname(hostname).is_ok() && loopback_up().is_ok()));
            let _ = nix::unistd::write(&ready_w, &[u8::from(ok)]);
            // Wait for the parent to pin the namespaces (EOF when it closes its end).
            let mut buf = [0u8; 1];
            let _ = nix::unistd::read(done_r.as_raw_fd(), &mut buf);
            // SAFETY: _exit skips atexit handlers and destructors that belong to the parent.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(done_r);
            let result = pin_from_child(m, p, child, ready_r, host_network);
            drop(done_w);
            let reaped = waitpid(child, None).map_err(ns_err("waitpid"));
            result?;
            match reaped? {
                WaitStatus::Exited(_, 0) => Ok(()),
                other => Err(SandboxError::Namespaces {
                    step: "namespace child",
                    source: io::Error::other(format!("ended with {other:?}")),
                }),
            }
        }
    }
}

fn pin_from_child(
    m: &dyn Mounter,
    p: &SandboxPaths,
    child: Pid,
    ready: std::os::fd::OwnedFd,
    host_network: bool,
) -> Result<(), SandboxError> {
    let mut ok = [0u8; 1];
    fs::File::from(ready)
        .read_exact(&mut ok)
        .map_err(|source| SandboxError::Namespaces {
            step: "wait for the child",
            source,
        })?;
    if ok[0] != 1 {
        return Err(SandboxError::Namespaces {
            step: "unshare, sethostname or loopback up in the child",
            source: io::Error::other("the child reported failure"),
        });
    }
    let ns_dir = PathBuf::from(format!("/proc/{child}/ns"));
    let mut pins = vec![("ipc", &p.ipc)];
    if !host_network {
        pins.extend([("net", &p.net), ("uts", &p.uts)]);
    }
    for (ns, target) in pins {
        let source = ns_dir.join(ns);
        m.mount(&MountRequest::Bind {
            source,
            target: target.clone(),
        })
        .map_err(io_err("pin namespace on", target))?;
    }
    Ok(())
}

/// Sets IFF_UP on `lo` in the current network namespace.
#[allow(
    clippy::cast_possible_truncation,
    reason = "IFF_UP (0x1) fits the c_short ifru_flags"
)]
fn loopback_up() -> io::Result<()> {
    use nix::libc;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the union holds ifru_flags.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts and removes everything of the pod's sandbox, and the pod's cgroup parents (its
/// containers must have been deleted). Idempotent.
pub fn remove(
    m: &dyn Mounter,
    layout: &CgroupLayout,
    root: &Path,
    pod_uid: &str,
) -> Result<(), SandboxError> {
    let paths = SandboxPaths::new(root, pod_uid);
    for target in paths.mount_points() {
        m.unmount(target).map_err(io_err("unmount", target))?;
    }
    match fs::remove_dir_all(&paths.dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_err("remove", &paths.dir)(e));
        }
        _ => {}
    }
    remove_dirs(&layout.pod_dirs(pod_uid)).map_err(SandboxError::Cgroups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::mounts::fake::RecordingMounter;

    #[test]
    fn remove_unmounts_shm_before_namespaces_and_is_idempotent() {
        let dir = std::env::temp_dir().join(format!("bramble-sandbox-test-{}", std::process::id()));
        let m = RecordingMounter::default();
        let layout = CgroupLayout::V2 {
            mount: dir.join("cg"),
            memory: true,
        };
        let paths = SandboxPaths::new(&dir, "p1");
        fs::create_dir_all(&paths.shm).unwrap();
        m.mounted
            .borrow_mut()
            .extend([paths.shm.clone(), paths.net.clone()]);
        remove(&m, &layout, &dir, "p1").unwrap();
        remove(&m, &layout, &dir, "p1").unwrap();
        let calls = m.calls.borrow();
        assert_eq!(calls[0], format!("unmount {}", paths.shm.display()));
        assert_eq!(calls[1], format!("unmount {}", paths.net.display()));
        assert_eq!(calls.len(), 8);
        assert!(!paths.dir.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hosts_file_maps_localhost_and_the_pod_hostname() {
        let hosts = hosts_file("web-0");
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"));
        assert!(hosts.ends_with("127.0.1.1\tweb-0\n"));
    }
}
