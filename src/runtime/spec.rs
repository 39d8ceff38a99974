//! The OCI runtime spec of a container: a pure function of what the kubelet asked for and where
//! the pod's sandbox lives.

use std::path::{Path, PathBuf};

use libcontainer::oci_spec::OciSpecError;
use libcontainer::oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};

use super::cgroups::{cgroup_values, cgroups_path};
use super::protocol::ContainerSpec;
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

/// Builds the spec of a container whose root filesystem is mounted at `rootfs`, in the pod whose
/// sandbox is `sandbox` (`host_network`: the pod shares the host's network and UTS namespaces).
pub fn container_spec(
    c: &ContainerSpec,
    pod_uid: &str,
    rootfs: &Path,
    sandbox: &SandboxPaths,
    host_network: bool,
) -> Result<Spec, OciSpecError> {
    let caps: Capabilities = DEFAULT_CAPS.into_iter().collect();
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
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()?,
        )
        // Kubernetes' default (allowPrivilegeEscalation unset) allows setuid binaries.
        .no_new_privileges(false)
        .build()?;

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

    let linux = LinuxBuilder::default()
        .namespaces(namespaces(sandbox, host_network)?)
        .cgroups_path(cgroups_path(pod_uid, &c.name))
        .resources(resources.build()?)
        .build()?;

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(false)
                .build()?,
        )
        .process(process)
        .mounts(mounts(c, sandbox)?)
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

fn mounts(c: &ContainerSpec, sandbox: &SandboxPaths) -> Result<Vec<Mount>, OciSpecError> {
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
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
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
}
