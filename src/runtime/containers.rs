//! The helper's table of containers and every libcontainer call. Runs only inside the
//! single-threaded helper process.
//!
//! On disk, under ROOT:
//! - `state/<id>/`: libcontainer's state (state.json, notify socket).
//! - `containers/<id>/`: `upper/`, `work/`, `rootfs/` (the overlay), `bundle/config.json`,
//!   `stdout.fifo` and `stderr.fifo` (see `output.rs`), `meta.json` (ours: pod, name, pid and its
//!   start time, OOM baseline, log file) and `exit.json` (the exit once reaped, so that a
//!   restarted helper still knows it).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::cgroups::{CgroupLayout, read_oom_kills, remove_dirs};
use super::error::RuntimeError;
use super::mounts::{self, HostMounter, Mounter};
use super::output::{LogTarget, Output, create_fifos};
use super::process::{pidfd_open, start_time};
use super::protocol::{ContainerInfo, ContainerSpec, Event, ExitInfo, Status};
use super::sandbox::{self, SandboxPaths};
use super::spec::container_spec;
use crate::kubelet::logs::Stream;

/// What the helper records about a container beside libcontainer's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    id: String,
    pod_uid: String,
    name: String,
    pid: i32,
    /// Start time of `pid` in clock ticks: a pid with another start time is not ours.
    pid_start_time: u64,
    started_at: Option<SystemTime>,
    /// The cgroup's OOM kill count at creation: a restarted container may reuse the cgroup path.
    oom_kills_at_create: u64,
    /// `None` for containers created by a helper that gave them the log file itself.
    #[serde(default)]
    log: Option<LogTarget>,
}

struct Managed {
    meta: Meta,
    /// Open while the process runs; readable when it exits.
    pidfd: Option<OwnedFd>,
    /// Whether the helper is the process's parent, so that its exit code can be reaped.
    reapable: bool,
    exit: Option<ExitInfo>,
    /// Open while the process runs.
    output: Option<Output>,
}

struct ExecProcess {
    pid: Pid,
    pidfd: OwnedFd,
}

/// What the poll loop waits for: a process to exit, or a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watch {
    Container(String),
    Exec(u64),
    Output(String, Stream),
    /// A child left by a failed libcontainer build (see `adopt_strays`).
    Stray(i32),
}

/// A started exec: the read ends of its stdout and stderr.
pub struct ExecStarted {
    pub exec_id: u64,
    pub pid: u32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

pub struct Containers {
    root: PathBuf,
    layout: CgroupLayout,
    mounter: HostMounter,
    table: BTreeMap<String, Managed>,
    execs: BTreeMap<u64, ExecProcess>,
    next_exec: u64,
    /// Pidfds of children to reap that are neither containers nor execs.
    strays: BTreeMap<i32, OwnedFd>,
}

fn validate_name(field: &'static str, s: &str) -> Result<(), RuntimeError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with('.');
    if ok {
        Ok(())
    } else {
        let reason = format!("{s:?} must be 1-128 of [A-Za-z0-9._-], not starting with '.'");
        Err(RuntimeError::InvalidArgument { field, reason })
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RuntimeError> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|e| RuntimeError::io("encode", path)(e.into()))?;
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(RuntimeError::io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(RuntimeError::io("rename into", path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

impl Containers {
    /// Loads the containers a previous helper left, reattaching to the ones still running.
    pub fn open(root: &Path) -> Result<Self, RuntimeError> {
        let layout = CgroupLayout::detect().map_err(RuntimeError::Cgroups)?;
        let mut me = Self {
            root: root.to_owned(),
            layout,
            mounter: HostMounter,
            table: BTreeMap::new(),
            execs: BTreeMap::new(),
            next_exec: 1,
            strays: BTreeMap::new(),
        };
        for dir in [
            me.state_root(),
            root.join("containers"),
            root.join("sandboxes"),
        ] {
            fs::create_dir_all(&dir).map_err(RuntimeError::io("create", &dir))?;
        }
        let mut ids: Vec<String> = Vec::new();
        for dir in [me.state_root(), root.join("containers")] {
            let entries = fs::read_dir(&dir).map_err(RuntimeError::io("list", &dir))?;
            ids.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok()),
            );
        }
        ids.sort();
        ids.dedup();
        for id in ids {
            me.reattach(&id);
        }
        Ok(me)
    }

    fn state_root(&self) -> PathBuf {
        self.root.join("state")
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    fn reattach(&mut self, id: &str) {
        let Some(meta) = read_json::<Meta>(&self.dir(id).join("meta.json")) else {
            // Crashed between libcontainer's create and our meta: nothing runs that we know of.
            log::warn!("removing container {id}: no meta.json (helper crashed while creating it)");
            if let Err(e) = self.remove_leftovers(id) {
                log::error!("{e}");
            }
            return;
        };
        let mut m = Managed {
            meta,
            pidfd: None,
            reapable: false,
            exit: None,
            output: None,
        };
        m.exit = read_json::<ExitInfo>(&self.dir(id).join("exit.json"));
        if m.exit.is_none() {
            m.pidfd = open_if_same(m.meta.pid, m.meta.pid_start_time);
            if m.pidfd.is_none() {
                // It ended while no helper was its parent: the code is lost.
                let exit = self.exit_info(&m.meta, None, None);
                log::warn!("container {id} ended while no helper ran; its exit code is lost");
                if let Err(e) = write_json(&self.dir(id).join("exit.json"), &exit) {
                    log::error!("{e}");
                }
                m.exit = Some(exit);
            } else if let Some(target) = &m.meta.log {
                // What the container wrote while no helper ran waits in the FIFOs.
                match Output::open(&self.dir(id), target) {
                    Ok(output) => m.output = Some(output),
                    Err(e) => log::error!("container {id}: its output is not logged: {e}"),
                }
            }
        }
        log::info!("reattached container {id} (running: {})", m.pidfd.is_some());
        self.table.insert(id.to_owned(), m);
    }

    /// What to poll for reading: pidfds and output FIFOs.
    pub fn watches(&self) -> Vec<(Watch, BorrowedFd<'_>)> {
        let containers = self
            .table
            .iter()
            .filter_map(|(id, m)| Some((Watch::Container(id.clone()), m.pidfd.as_ref()?.as_fd())));
        let execs = self
            .execs
            .iter()
            .map(|(n, e)| (Watch::Exec(*n), e.pidfd.as_fd()));
        let outputs = self.table.iter().flat_map(|(id, m)| {
            m.output
                .iter()
                .flat_map(|o| o.fds())
                .map(|(stream, fd)| (Watch::Output(id.clone(), stream), fd))
        });
        let strays = self
            .strays
            .iter()
            .map(|(pid, fd)| (Watch::Stray(*pid), fd.as_fd()));
        containers
            .chain(execs)
            .chain(outputs)
            .chain(strays)
            .collect()
    }

    /// When the poll loop must wake up without an fd ready: to log a line left unfinished.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.table
            .values()
            .filter_map(|m| m.output.as_ref()?.flush_due())
            .min()
    }

    /// Handles what is due at `now` (see `next_deadline`).
    pub fn on_deadline(&mut self, now: Instant) {
        for output in self.table.values_mut().filter_map(|m| m.output.as_mut()) {
            output.flush_if_due(now);
        }
    }

    /// Handles a ready watch: logs output, or reaps an exited process and says how it ended.
    pub fn on_ready(&mut self, watch: &Watch) -> Option<Event> {
        match watch {
            Watch::Output(id, stream) => {
                self.table.get_mut(id)?.output.as_mut()?.read(*stream);
                None
            }
            Watch::Stray(pid) => {
                self.strays.remove(pid);
                let _ = waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG));
                None
            }
            Watch::Exec(n) => {
                let e = self.execs.remove(n)?;
                let (exit_code, signal) = reap(e.pid);
                Some(Event::ExecExited {
                    exec_id: *n,
                    exit_code,
                    signal,
                })
            }
            Watch::Container(id) => {
                let m = self.table.get_mut(id)?;
                m.pidfd = None;
                // Its last lines are in the log before anyone hears of the exit.
                if let Some(output) = m.output.take() {
                    output.finish();
                }
                let (code, signal) = if m.reapable {
                    reap(Pid::from_raw(m.meta.pid))
                } else {
                    (None, None)
                };
                let meta = m.meta.clone();
                let exit = self.exit_info(&meta, code, signal);
                if let Err(e) = write_json(&self.dir(id).join("exit.json"), &exit) {
                    log::error!("{e}");
                }
                let event = Event::Exited {
                    id: id.clone(),
                    exit_code: exit.exit_code,
                    signal: exit.signal,
                    oom_killed: exit.oom_killed,
                    finished_at: exit.finished_at,
                };
                if let Some(m) = self.table.get_mut(id) {
                    m.exit = Some(exit);
                }
                Some(event)
            }
        }
    }

    fn exit_info(&self, meta: &Meta, exit_code: Option<i32>, signal: Option<i32>) -> ExitInfo {
        let oom_file = self.layout.oom_file(&meta.pod_uid, &meta.name);
        ExitInfo {
            exit_code,
            signal,
            oom_killed: read_oom_kills(oom_file.as_deref()) > meta.oom_kills_at_create,
            finished_at: SystemTime::now(),
        }
    }

    pub fn create_sandbox(
        &mut self,
        pod_uid: &str,
        hostname: &str,
        host_network: bool,
    ) -> Result<(), RuntimeError> {
        validate_name("pod_uid", pod_uid)?;
        sandbox::create(
            &self.mounter,
            &self.layout,
            &self.root,
            pod_uid,
            hostname,
            host_network,
        )
        .map_err(|source| RuntimeError::Sandbox {
            pod_uid: pod_uid.to_owned(),
            source,
        })
    }

    pub fn remove_sandbox(&mut self, pod_uid: &str) -> Result<(), RuntimeError> {
        validate_name("pod_uid", pod_uid)?;
        let ids: Vec<String> = self
            .table
            .iter()
            .filter(|(_, m)| m.meta.pod_uid == pod_uid)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.delete(&id)?;
        }
        sandbox::remove(&self.mounter, &self.layout, &self.root, pod_uid).map_err(|source| {
            RuntimeError::Sandbox {
                pod_uid: pod_uid.to_owned(),
                source,
            }
        })
    }

    pub fn create(
        &mut self,
        id: &str,
        pod_uid: &str,
        spec: &ContainerSpec,
    ) -> Result<ContainerInfo, RuntimeError> {
        validate_name("container id", id)?;
        validate_name("container name", &spec.name)?;
        validate_name("pod_uid", pod_uid)?;
        if self.table.contains_key(id) {
            return Err(RuntimeError::AlreadyExists { id: id.to_owned() });
        }
        let sandbox = SandboxPaths::new(&self.root, pod_uid);
        if !sandbox.exists() {
            return Err(RuntimeError::NotFound {
                what: "pod sandbox",
                id: pod_uid.to_owned(),
            });
        }
        // A crash may have left state behind; libcontainer refuses to create over it.
        self.remove_leftovers(id)?;
        let result = self.create_new(id, pod_uid, spec, &sandbox);
        if result.is_err() {
            let _ = self.remove_leftovers(id);
        }
        result
    }

    fn create_new(
        &mut self,
        id: &str,
        pod_uid: &str,
        spec: &ContainerSpec,
        sandbox: &SandboxPaths,
    ) -> Result<ContainerInfo, RuntimeError> {
        let dir = self.dir(id);
        let (upper, work, rootfs, bundle) = (
            dir.join("upper"),
            dir.join("work"),
            dir.join("rootfs"),
            dir.join("bundle"),
        );
        for d in [&upper, &work, &rootfs, &bundle] {
            fs::create_dir_all(d).map_err(RuntimeError::io("create", d))?;
        }
        let overlay = mounts::overlay(&spec.layers, &upper, &work, &rootfs).map_err(|reason| {
            RuntimeError::InvalidArgument {
                field: "layers",
                reason,
            }
        })?;
        self.mounter
            .mount(&overlay)
            .map_err(RuntimeError::io("mount overlay on", &rootfs))?;

        let mut spec = spec.clone();
        if spec.resources.memory_limit_bytes.is_some() && !self.layout.memory_accounted() {
            // Failing every pod with a limit would make the board useless; the limit is the
            // scheduler's business too. Say so loudly instead.
            log::warn!("container {id}: memory limit ignored, the memory cgroup controller is off");
            spec.resources.memory_limit_bytes = None;
        }
        let spec = &spec;
        let oci = container_spec(
            spec,
            pod_uid,
            &rootfs,
            sandbox,
            sandbox.host_network(),
            &host_caps(),
        )
        .map_err(|source| RuntimeError::Spec {
            id: id.to_owned(),
            source,
        })?;
        let config = bundle.join("config.json");
        oci.save(&config).map_err(|source| RuntimeError::Spec {
            id: id.to_owned(),
            source,
        })?;

        let [stdout, stderr] = create_fifos(&dir)?;
        let log = LogTarget::of(spec);
        let output = Output::open(&dir, &log)?;
        let null = fs::File::open("/dev/null").map_err(RuntimeError::io("open", "/dev/null"))?;
        let container = ContainerBuilder::new(id.to_owned(), SyscallType::default())
            .with_root_path(self.state_root())
            .map_err(RuntimeError::libcontainer("set the state root of", id))?
            .with_stdin(null)
            .with_stdout(stdout)
            .with_stderr(stderr)
            .as_init(&bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(|e| {
                self.adopt_strays();
                RuntimeError::libcontainer("create", id)(e)
            })?;
        let pid = container.pid().ok_or_else(|| RuntimeError::InvalidState {
            id: id.to_owned(),
            op: "create",
            status: "without a pid after create",
        })?;
        if let Some(limit) = spec.resources.pids_limit {
            // The pod's parent cgroup holds the pod-wide cap; libcontainer
            // made it while creating this container's cgroup.
            if let Err(e) = self.layout.set_pod_pids_limit(pod_uid, limit) {
                log::warn!("pod {pod_uid}: setting its pids limit: {e}");
            }
        }
        let pidfd = pidfd_open(pid.as_raw())
            .map_err(RuntimeError::io("pidfd_open", format!("/proc/{pid}")))?;
        let meta = Meta {
            id: id.to_owned(),
            pod_uid: pod_uid.to_owned(),
            name: spec.name.clone(),
            pid: pid.as_raw(),
            pid_start_time: start_time(pid.as_raw()).unwrap_or(0),
            started_at: None,
            oom_kills_at_create: read_oom_kills(
                self.layout.oom_file(pod_uid, &spec.name).as_deref(),
            ),
            log: Some(log),
        };
        write_json(&dir.join("meta.json"), &meta)?;
        let m = Managed {
            meta,
            pidfd: Some(pidfd),
            reapable: true,
            exit: None,
            output: Some(output),
        };
        let info = info(&m);
        self.table.insert(id.to_owned(), m);
        Ok(info)
    }

    fn managed(&mut self, id: &str) -> Result<&mut Managed, RuntimeError> {
        self.table
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound {
                what: "container",
                id: id.to_owned(),
            })
    }

    fn load(&self, id: &str) -> Result<Container, RuntimeError> {
        Container::load(self.state_root().join(id)).map_err(RuntimeError::libcontainer("load", id))
    }

    pub fn start(&mut self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let status = info(self.managed(id)?).status;
        if status != Status::Created {
            let status = if status == Status::Running {
                "running"
            } else {
                "exited"
            };
            return Err(RuntimeError::InvalidState {
                id: id.to_owned(),
                op: "start",
                status,
            });
        }
        self.load(id)?
            .start()
            .map_err(RuntimeError::libcontainer("start", id))?;
        let dir = self.dir(id);
        let m = self.managed(id)?;
        m.meta.started_at = Some(SystemTime::now());
        write_json(&dir.join("meta.json"), &m.meta)?;
        Ok(info(m))
    }

    /// Signals the container's init (every process of it for SIGKILL). A container that has
    /// already exited is left alone: the caller's stop policy may race with the exit.
    pub fn kill(&mut self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        let signal = Signal::try_from(signal).map_err(|e| RuntimeError::InvalidArgument {
            field: "signal",
            reason: format!("{signal}: {e}"),
        })?;
        if self.managed(id)?.pidfd.is_none() {
            return Ok(());
        }
        let mut c = self.load(id)?;
        c.kill(signal, signal == Signal::SIGKILL)
            .map_err(RuntimeError::libcontainer("kill", id))?;
        // kill() marks the state Stopped even if the signal was ignored.
        c.refresh_status()
            .map_err(RuntimeError::libcontainer("refresh the status of", id))
    }

    /// Kills (if needed) and removes the container: libcontainer state and cgroup, overlay,
    /// directories. Its log file stays, with everything the container wrote: it belongs to the
    /// caller.
    pub fn delete(&mut self, id: &str) -> Result<(), RuntimeError> {
        let m = self.managed(id)?;
        if let Some(pidfd) = m.pidfd.take() {
            let (pid, reapable) = (Pid::from_raw(m.meta.pid), m.reapable);
            if let Ok(mut c) = self.load(id) {
                let _ = c.kill(Signal::SIGKILL, true);
            }
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            // Bounded: a process stuck in the kernel (D state) must not wedge the helper.
            if !wait_readable(&pidfd) {
                self.managed(id)?.pidfd = Some(pidfd);
                let status = "still running 5 s after SIGKILL (stuck in the kernel?); retry";
                return Err(RuntimeError::InvalidState {
                    id: id.to_owned(),
                    op: "delete",
                    status,
                });
            }
            if reapable {
                reap(pid);
            }
        }
        if let Some(output) = self.managed(id)?.output.take() {
            output.finish();
        }
        self.remove_leftovers(id)?;
        self.table.remove(id);
        Ok(())
    }

    /// Removes whatever exists of a container on disk and in the kernel. Idempotent.
    fn remove_leftovers(&self, id: &str) -> Result<(), RuntimeError> {
        let state = self.state_root().join(id);
        let meta = read_json::<Meta>(&self.dir(id).join("meta.json"));
        if state.exists() {
            match Container::load(state.clone()) {
                Ok(mut c) => c
                    .delete(true)
                    .map_err(RuntimeError::libcontainer("delete", id))?,
                Err(e) => {
                    log::warn!("container {id}: unreadable state ({e}); removing it by hand");
                    fs::remove_dir_all(&state).map_err(RuntimeError::io("remove", &state))?;
                }
            }
        }
        // libcontainer removes the cgroup unless its state was lost; make sure.
        if let Some(meta) = meta {
            remove_dirs(&self.layout.container_dirs(&meta.pod_uid, &meta.name))
                .map_err(RuntimeError::Cgroups)?;
        }
        let dir = self.dir(id);
        let rootfs = dir.join("rootfs");
        self.mounter
            .unmount(&rootfs)
            .map_err(RuntimeError::io("unmount", &rootfs))?;
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(RuntimeError::io("remove", &dir)(e))
            }
            _ => Ok(()),
        }
    }

    pub fn state(&mut self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        Ok(info(self.managed(id)?))
    }

    pub fn list(&self) -> Vec<ContainerInfo> {
        self.table.values().map(info).collect()
    }

    /// Runs `args` inside a running container with stdout and stderr to new pipes.
    pub fn exec(
        &mut self,
        id: &str,
        args: Vec<String>,
        env: &[String],
    ) -> Result<ExecStarted, RuntimeError> {
        if args.is_empty() {
            let reason = "at least the program is needed".to_owned();
            return Err(RuntimeError::InvalidArgument {
                field: "args",
                reason,
            });
        }
        if info(self.managed(id)?).status != Status::Running {
            return Err(RuntimeError::InvalidState {
                id: id.to_owned(),
                op: "exec in",
                status: "not running",
            });
        }
        let env: HashMap<String, String> = env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let pipe_err = |e: nix::Error| RuntimeError::io("create a pipe for exec in", id)(e.into());
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(pipe_err)?;
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(pipe_err)?;
        let null = fs::File::open("/dev/null").map_err(RuntimeError::io("open", "/dev/null"))?;
        // Exec'd processes run as the container's user, with its
        // no-new-privileges (libcontainer's tenants default to root).
        let config = self.dir(id).join("bundle/config.json");
        let oci = Spec::load(&config).map_err(|source| RuntimeError::Spec {
            id: id.to_owned(),
            source,
        })?;
        let process = oci.process().clone().unwrap_or_default();
        let user = process.user();
        let pid = ContainerBuilder::new(id.to_owned(), SyscallType::default())
            .with_root_path(self.state_root())
            .map_err(RuntimeError::libcontainer("set the state root of", id))?
            .with_stdin(null)
            .with_stdout(out_w)
            .with_stderr(err_w)
            .as_tenant()
            .with_container_args(args)
            .with_env(env)
            .with_user(Some(user.uid()))
            .with_group(Some(user.gid()))
            .with_additional_gids(user.additional_gids().clone().unwrap_or_default())
            .with_no_new_privs(process.no_new_privileges().unwrap_or(false))
            .build()
            .map_err(|e| {
                self.adopt_strays();
                RuntimeError::libcontainer("exec in", id)(e)
            })?;
        let pidfd = pidfd_open(pid.as_raw())
            .map_err(RuntimeError::io("pidfd_open", format!("/proc/{pid}")))?;
        let exec_id = self.next_exec;
        self.next_exec += 1;
        self.execs.insert(exec_id, ExecProcess { pid, pidfd });
        let pid = u32::try_from(pid.as_raw()).unwrap_or_default();
        Ok(ExecStarted {
            exec_id,
            pid,
            stdout: out_r,
            stderr: err_r,
        })
    }

    /// Watches every child that is not a known container or exec, to reap it once it exits. A
    /// failed build leaves libcontainer's intermediate and init processes behind, unreaped; one
    /// in a container's pid namespace keeps that container's init from ever finishing its exit.
    fn adopt_strays(&mut self) {
        let me = std::process::id();
        let path = format!("/proc/{me}/task/{me}/children");
        let children = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                log::warn!("cannot list the helper's children to reap ({path}: {e})");
                return;
            }
        };
        let known: Vec<i32> = self
            .table
            .values()
            .filter(|m| m.reapable && m.pidfd.is_some())
            .map(|m| m.meta.pid)
            .chain(self.execs.values().map(|e| e.pid.as_raw()))
            .collect();
        for pid in children.split_whitespace().filter_map(|p| p.parse().ok()) {
            if !known.contains(&pid) && !self.strays.contains_key(&pid) {
                match pidfd_open(pid) {
                    Ok(fd) => {
                        self.strays.insert(pid, fd);
                    }
                    Err(e) => log::warn!("cannot watch stray child {pid}: {e}"),
                }
            }
        }
    }
}

fn info(m: &Managed) -> ContainerInfo {
    let status = match (&m.exit, m.meta.started_at) {
        (Some(_), _) => Status::Exited,
        (None, Some(_)) => Status::Running,
        (None, None) => Status::Created,
    };
    ContainerInfo {
        id: m.meta.id.clone(),
        pod_uid: m.meta.pod_uid.clone(),
        name: m.meta.name.clone(),
        status,
        pid: u32::try_from(m.meta.pid).ok(),
        started_at: m.meta.started_at,
        exit: m.exit.clone(),
    }
}

/// Opens a pidfd on `pid` if it is still the process that had `start` as start time. The check
/// is repeated after opening: the pidfd then pins the right process even if the pid was reused.
fn open_if_same(pid: i32, start: u64) -> Option<OwnedFd> {
    if start_time(pid)? != start {
        return None;
    }
    let fd = pidfd_open(pid).ok()?;
    (start_time(pid)? == start).then_some(fd)
}

/// Reaps our child `pid`: (exit code, signal).
fn reap(pid: Pid) -> (Option<i32>, Option<i32>) {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => (Some(code), None),
        Ok(WaitStatus::Signaled(_, sig, _)) => (None, Some(sig as i32)),
        other => {
            log::warn!("reaping {pid}: unexpected {other:?}; exit code unknown");
            (None, None)
        }
    }
}

/// Waits up to 5 s for a pidfd to become readable. True when the process has exited.
fn wait_readable(pidfd: &OwnedFd) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(5_000u16)), Ok(n) if n > 0)
}

/// The helper's own bounding set: all a privileged container can get (a
/// sandbox may run bramble without some, e.g. CAP_SYS_RESOURCE).
fn host_caps() -> caps::CapsHashSet {
    caps::read(None, caps::CapSet::Bounding).unwrap_or_else(|_| caps::all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_a_directory_are_refused() {
        assert!(validate_name("id", "web-1.a_b").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_name("id", bad).is_err(), "{bad:?}");
        }
    }
}
