//! The OCI runtime spec of a container: a pure function of what the kubelet asked for and where
//! the pod's sandbox lives.

use std::path::{Path, PathBuf};

use libcontainer::oci_spec::OciSpecError;
use libcontainer::oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscallBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder, get_default_maskedpaths,
    get_default_readonly_paths,
};

use super::cgroups::{cgroup_values, cgroups_path};
use super::protocol::{ContainerSpec, Security};
use super::sandbox::SandboxPaths;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capability set, which Kubernetes workloads expect.
const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Syscalls the default seccomp profile refuses with EPERM: what Docker's
/// default profile leaves out for a container without CAP_SYS_ADMIN and
/// friends (kernel modules and keyrings, mounts and namespaces, clocks,
/// tracing other processes, reboot, swap, BPF and perf).
const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// clone(2) flags that make new namespaces, refused as unshare(2) is.
const CLONE_NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The default seccomp profile (Kubernetes' RuntimeDefault): everything
/// allowed but the syscalls above; clone3 answers ENOSYS, so that libc
/// falls back to clone, whose flags can be inspected.
fn default_seccomp() -> Result<LinuxSeccomp, OciSpecError> {
    let mut syscalls = vec![
        LinuxSyscallBuilder::default()
            .names(
                DENIED_SYSCALLS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(EPERM)
            .build()?,
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(ENOSYS)
            .build()?,
    ];
    // One rule per flag: rules for one syscall are alternatives.
    for flag in CLONE_NAMESPACE_FLAGS {
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(flag)
            .value_two(flag)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()?;
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(EPERM)
                .args(vec![arg])
                .build()?,
        );
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchAarch64,
            Arch::ScmpArchArm,
        ])
        .syscalls(syscalls)
        .build()
}

/// The capabilities a container gets: Docker's default set, minus `drop`
/// ("ALL" drops them all) plus `add`; every capability of `host` (the
/// runtime's own bounding set: a container cannot get more) when
/// privileged. Names are Kubernetes' ("NET_ADMIN"), with or without the
/// "CAP_" prefix; an unknown name is an error naming it.
pub fn capabilities(sec: &Security, host: &caps::CapsHashSet) -> Result<Capabilities, String> {
    let parse = |name: &str| -> Result<Capability, String> {
        let plain = name.strip_prefix("CAP_").unwrap_or(name);
        plain
            .parse::<Capability>()
            .map_err(|_| format!("unknown capability {name:?}"))
    };
    if sec.privileged {
        return Ok(host
            .iter()
            .filter_map(|c| parse(&c.to_string()).ok())
            .collect());
    }
    let mut set: Capabilities = if sec.drop_capabilities.iter().any(|d| d == "ALL") {
        Capabilities::new()
    } else {
        DEFAULT_CAPS.into_iter().collect()
    };
    for d in sec.drop_capabilities.iter().filter(|d| *d != "ALL") {
        set.remove(&parse(d)?);
    }
    for a in &sec.add_capabilities {
        if a == "ALL" {
            return capabilities(
                &Security {
                    privileged: true,
                    ..sec.clone()
                },
                host,
            );
        }
        set.insert(parse(a)?);
    }
    Ok(set)
}

fn devices(sec: &Security) -> Result<Vec<LinuxDevice>, OciSpecError> {
    sec.devices
        .iter()
        .map(|d| {
            LinuxDeviceBuilder::default()
                .path(&d.path)
                .typ(if d.kind == 'b' {
                    LinuxDeviceType::B
                } else {
                    LinuxDeviceType::C
                })
                .major(d.major)
                .minor(d.minor)
                .file_mode(d.mode & 0o7777)
                .uid(d.uid)
                .gid(d.gid)
                .build()
        })
        .collect()
}

/// Builds the spec of a container whose root filesystem is mounted at `rootfs`, in the pod whose
/// sandbox is `sandbox` (`host_network`: the pod shares the host's network and UTS namespaces;
/// `host_caps`: the runtime's bounding set).
pub fn container_spec(
    c: &ContainerSpec,
    pod_uid: &str,
    rootfs: &Path,
    sandbox: &SandboxPaths,
    host_network: bool,
    host_caps: &caps::CapsHashSet,
) -> Result<Spec, OciSpecError> {
    let sec = &c.security;
    let caps = capabilities(sec, host_caps).map_err(OciSpecError::Other)?;
    let env = if c.env.iter().any(|e| e.starts_with("PATH=")) {
        c.env.clone()
    } else {
        std::iter::once(DEFAULT_PATH.to_owned())
            .chain(c.env.iter().cloned())
            .collect()
    };
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(c.args.clone())
        .env(env)
        .cwd(if c.cwd.is_empty() {
            "/"
        } else {
            c.cwd.as_str()
        })
        .user(
            UserBuilder::default()
                .uid(c.user.uid)
                .gid(c.user.gid)
                .additional_gids(c.user.additional_gids.clone())
                .build()?,
        )
        .capabilities(
            // Inheritable and ambient stay empty, as containerd leaves them
            // (the builder's default would fill them with OCI's defaults,
            // which cannot be set once those are out of the bounding set).
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .inheritable(Capabilities::new())
                .ambient(Capabilities::new())
                .build()?,
        )
        .build()?;
    // Unset rather than false: libcontainer then loads the seccomp filter
    // while it still has CAP_SYS_ADMIN, which a filter without
    // no-new-privileges needs.
    let mut process = process;
    process.set_no_new_privileges((sec.no_new_privileges && !sec.privileged).then_some(true));

    let values = cgroup_values(&c.resources);
    let mut cpu = LinuxCpuBuilder::default()
        .shares(values.cpu_shares)
        .period(values.cpu_period);
    if let Some(quota) = values.cpu_quota {
        cpu = cpu.quota(quota);
    }
    let mut resources = LinuxResourcesBuilder::default().cpu(cpu.build()?);
    if let Some(limit) = values.memory_limit {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if let Some(limit) = values.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }

    let devices = devices(sec)?;
    let allowed: Vec<LinuxDeviceCgroup> = devices.iter().map(LinuxDeviceCgroup::from).collect();
    if !allowed.is_empty() {
        resources = resources.devices(allowed);
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(sandbox, host_network)?)
        .cgroups_path(cgroups_path(pod_uid, &c.name))
        .resources(resources.build()?)
        .devices(devices)
        .build()?;
    if sec.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        linux.set_masked_paths(Some(get_default_maskedpaths()));
        linux.set_readonly_paths(Some(get_default_readonly_paths()));
        if sec.seccomp {
            linux.set_seccomp(Some(default_seccomp()?));
        }
    }

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(sec.read_only_root)
                .build()?,
        )
        .process(process)
        .mounts(mounts(c, sandbox, sec.privileged)?)
        .linux(linux)
        .build()?;
    // The hostname belongs to the sandbox's UTS namespace; libcontainer rejects a hostname
    // without a UTS namespace of the container's own.
    spec.set_hostname(None);
    Ok(spec)
}

/// New pid and mount namespaces; the pod's IPC, and its network and UTS unless it uses the host's.
fn namespaces(
    sandbox: &SandboxPaths,
    host_network: bool,
) -> Result<Vec<LinuxNamespace>, OciSpecError> {
    let mut joined = vec![(LinuxNamespaceType::Ipc, &sandbox.ipc)];
    if !host_network {
        joined.push((LinuxNamespaceType::Network, &sandbox.net));
        joined.push((LinuxNamespaceType::Uts, &sandbox.uts));
    }
    let mut out = vec![
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Pid)
            .build()?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()?,
    ];
    for (typ, path) in joined {
        out.push(
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .path(path)
                .build()?,
        );
    }
    Ok(out)
}

fn mount(
    dest: &str,
    typ: &str,
    source: impl Into<PathBuf>,
    opts: &[&str],
) -> Result<Mount, OciSpecError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(opts.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
}

fn bind(dest: impl Into<PathBuf>, source: &Path, read_only: bool) -> Result<Mount, OciSpecError> {
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(vec![
            "rbind".to_owned(),
            if read_only { "ro" } else { "rw" }.to_owned(),
        ])
        .build()
}

/// A privileged container's /sys and cgroup mounts are writable.
fn mounts(
    c: &ContainerSpec,
    sandbox: &SandboxPaths,
    privileged: bool,
) -> Result<Vec<Mount>, OciSpecError> {
    let sys = if privileged { "rw" } else { "ro" };
    let mut out = vec![
        mount("/proc", "proc", "proc", &[])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "bind",
            &sandbox.shm,
            &["rbind", "nosuid", "noexec", "nodev", "rw"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys],
        )?,
        bind("/etc/hostname", &sandbox.hostname, false)?,
        bind("/etc/hosts", &sandbox.hosts, false)?,
        bind("/etc/resolv.conf", &sandbox.resolv, false)?,
    ];
    for v in &c.mounts {
        out.push(bind(&v.container_path, &v.host_path, v.read_only)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::protocol::{Resources, User, VolumeMount};

    fn example() -> ContainerSpec {
        ContainerSpec {
            name: "web".into(),
            layers: vec!["/layers/a".into()],
            args: vec!["httpd".into(), "-f".into()],
            env: vec!["A=1".into()],
            cwd: String::new(),
            user: User {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![5],
            },
            mounts: vec![VolumeMount {
                host_path: "/data/vol".into(),
                container_path: "/shared".into(),
                read_only: true,
            }],
            resources: Resources {
                cpu_request_millis: Some(100),
                cpu_limit_millis: Some(200),
                memory_limit_bytes: Some(32 << 20),
                pids_limit: Some(64),
            },
            log_path: "/logs/web.log".into(),
            ..Default::default()
        }
    }

    fn build(host_network: bool) -> Spec {
        let sandbox = SandboxPaths::new(Path::new("/rt"), "pod1");
        container_spec(
            &example(),
            "pod1",
            Path::new("/rt/containers/c1/rootfs"),
            &sandbox,
            host_network,
            &caps::all(),
        )
        .unwrap()
    }

    fn ns(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        let linux = spec.linux().as_ref().unwrap();
        linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect()
    }

    #[test]
    fn pod_namespaces_are_joined_by_path() {
        let spec = build(false);
        assert_eq!(
            ns(&spec),
            vec![
                (LinuxNamespaceType::Pid, None),
                (LinuxNamespaceType::Mount, None),
                (
                    LinuxNamespaceType::Ipc,
                    Some("/rt/sandboxes/pod1/ipc".into())
                ),
                (
                    LinuxNamespaceType::Network,
                    Some("/rt/sandboxes/pod1/net".into())
                ),
                (
                    LinuxNamespaceType::Uts,
                    Some("/rt/sandboxes/pod1/uts".into())
                ),
            ]
        );
        assert_eq!(spec.hostname(), &None);
    }

    #[test]
    fn host_network_keeps_the_hosts_network_and_hostname() {
        let kinds: Vec<_> = ns(&build(true)).into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            kinds,
            [
                LinuxNamespaceType::Pid,
                LinuxNamespaceType::Mount,
                LinuxNamespaceType::Ipc
            ]
        );
    }

    #[test]
    fn process_gets_args_env_with_path_user_and_no_terminal() {
        let spec = build(false);
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["httpd", "-f"]);
        assert_eq!(p.env().as_ref().unwrap(), &[DEFAULT_PATH, "A=1"]);
        assert_eq!(p.cwd(), Path::new("/"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &[5]);
        assert_eq!(p.terminal(), Some(false));
    }

    #[test]
    fn mounts_include_pod_files_shm_and_volumes() {
        let spec = build(false);
        let mounts = spec.mounts().as_ref().unwrap();
        let find = |d: &str| {
            mounts
                .iter()
                .find(|m| m.destination() == Path::new(d))
                .unwrap()
        };
        assert_eq!(
            find("/dev/shm").source().as_deref(),
            Some(Path::new("/rt/sandboxes/pod1/shm"))
        );
        assert_eq!(
            find("/etc/hosts").source().as_deref(),
            Some(Path::new("/rt/sandboxes/pod1/hosts"))
        );
        let vol = find("/shared");
        assert_eq!(vol.source().as_deref(), Some(Path::new("/data/vol")));
        assert!(vol.options().as_ref().unwrap().contains(&"ro".to_owned()));
    }

    #[test]
    fn resources_and_cgroup_path_are_set() {
        let spec = build(false);
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/bramble/pod1/web"))
        );
        let r = linux.resources().as_ref().unwrap();
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (Some(102), Some(20_000), Some(100_000))
        );
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(32 << 20));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 64);
    }

    fn spec_of(c: &ContainerSpec) -> Spec {
        let sandbox = SandboxPaths::new(Path::new("/rt"), "pod1");
        container_spec(
            c,
            "pod1",
            Path::new("/rootfs"),
            &sandbox,
            false,
            &caps::all(),
        )
        .unwrap()
    }

    fn sys_options(spec: &Spec) -> Vec<String> {
        let mounts = spec.mounts().as_ref().unwrap();
        let sys = mounts.iter().find(|m| m.destination() == Path::new("/sys"));
        sys.unwrap().options().clone().unwrap_or_default()
    }

    fn caps(sec: &Security) -> Vec<String> {
        let mut v: Vec<String> = capabilities(sec, &caps::all())
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn capabilities_start_from_dockers_set() {
        let default = Security::default();
        assert_eq!(caps(&default).len(), 14);
        let mut sec = Security {
            drop_capabilities: vec!["ALL".into()],
            add_capabilities: vec!["NET_ADMIN".into(), "CAP_SYS_TIME".into()],
            ..Security::default()
        };
        assert_eq!(caps(&sec), ["NET_ADMIN", "SYS_TIME"]);
        sec.drop_capabilities = vec!["KILL".into(), "NET_RAW".into()];
        sec.add_capabilities.clear();
        assert_eq!(caps(&sec).len(), 12);
        assert!(!caps(&sec).contains(&"KILL".to_string()));
        sec.add_capabilities = vec!["NOT_A_CAP".into()];
        assert_eq!(
            capabilities(&sec, &caps::all()).unwrap_err(),
            "unknown capability \"NOT_A_CAP\""
        );
        let privileged = Security {
            privileged: true,
            ..Security::default()
        };
        assert_eq!(caps(&privileged).len(), caps::all().len());
        let mut host = caps::all();
        host.remove(&caps::Capability::CAP_SYS_RESOURCE);
        let got = capabilities(&privileged, &host).unwrap();
        assert_eq!(got.len(), caps::all().len() - 1);
        assert!(!got.contains(&Capability::SysResource));
    }

    #[test]
    fn containers_are_confined_unless_privileged() {
        let spec = build(false);
        let linux = spec.linux().as_ref().unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.no_new_privileges(), Some(true));
        let seccomp = linux.seccomp().as_ref().expect("the default profile");
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
        let denied: Vec<&String> = seccomp
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names())
            .collect();
        for name in [
            "mount",
            "unshare",
            "setns",
            "ptrace",
            "kexec_load",
            "clone3",
            "clone",
        ] {
            assert!(denied.iter().any(|d| *d == name), "{name}");
        }
        assert!(
            linux
                .masked_paths()
                .as_ref()
                .unwrap()
                .contains(&"/proc/kcore".to_string())
        );
        assert!(
            linux
                .readonly_paths()
                .as_ref()
                .unwrap()
                .contains(&"/proc/sys".to_string())
        );
        assert!(sys_options(&spec).contains(&"ro".to_string()));

        let mut c = example();
        c.security = Security {
            privileged: true,
            read_only_root: true,
            ..Security::default()
        };
        let spec = spec_of(&c);
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none() && linux.masked_paths().is_none());
        assert_eq!(spec.process().as_ref().unwrap().no_new_privileges(), None);
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert!(sys_options(&spec).contains(&"rw".to_string()));
    }

    #[test]
    fn unconfined_drops_only_seccomp() {
        let mut c = example();
        c.security.seccomp = false;
        let spec = spec_of(&c);
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none());
        assert!(linux.masked_paths().is_some());
    }
}
