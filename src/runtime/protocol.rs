//! The messages between the daemon (`RuntimeClient`) and the runtime helper.
//!
//! Plain serde data in postcard frames (see `frame.rs`). Postcard is not self-describing, so the
//! rules for evolving it are: append enum variants at the end, never reorder or change existing
//! ones, and bump [`PROTOCOL_VERSION`] on any change. The first frame each way is a
//! [`ClientHello`] / [`HelperHello`], whose layout never changes, so that a daemon can always tell
//! an old helper to hand over (see `ClientHello::replace_if_different`).

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Bumped on every change of a message below.
pub const PROTOCOL_VERSION: u32 = 3;

/// First frame from the client. Its layout is frozen across versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    pub version: u32,
    /// When the helper speaks another version: ask it to exit (its containers keep running) so
    /// that the client can start a helper of its own version, which reattaches them.
    pub replace_if_different: bool,
}

/// First frame from the helper. Its layout is frozen across versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperHello {
    pub version: u32,
    pub helper_pid: u32,
    /// False when the versions differ; the helper then closes the connection (and exits if
    /// asked to).
    pub accepted: bool,
}

/// A request from the client, tagged so that the response can be matched among events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub op: Op,
}

/// One variant per operation of the helper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Creates the pod's shared namespaces, /dev/shm and /etc files. Idempotent.
    CreateSandbox {
        pod_uid: String,
        hostname: String,
        host_network: bool,
    },
    /// Force-deletes the pod's remaining containers, then unmounts and removes everything of the
    /// pod (namespaces, shm, files, cgroup parents). Idempotent.
    RemoveSandbox {
        pod_uid: String,
    },
    /// Mounts the root filesystem and creates the container (status Created).
    CreateContainer {
        id: String,
        pod_uid: String,
        spec: Box<ContainerSpec>,
    },
    Start {
        id: String,
    },
    /// Sends a signal to the container's processes. SIGTERM, grace, SIGKILL is the caller's policy.
    Kill {
        id: String,
        signal: i32,
    },
    /// Removes the container (SIGKILL if still running), its cgroup, root filesystem and state.
    Delete {
        id: String,
    },
    State {
        id: String,
    },
    List,
    /// Runs a process in a running container. The response carries two file descriptors (the
    /// read ends of stdout and stderr) over SCM_RIGHTS; an `ExecExited` event follows.
    Exec {
        id: String,
        args: Vec<String>,
        env: Vec<String>,
        tty: bool,
    },
}

/// What the kubelet asks for one container. Paths are host paths.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The container's name in its pod: the leaf of its cgroup path.
    pub name: String,
    /// The image's unpacked layer directories, bottom layer first.
    pub layers: Vec<PathBuf>,
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Working directory inside the container; empty means `/`.
    pub cwd: String,
    pub user: User,
    pub mounts: Vec<VolumeMount>,
    pub resources: Resources,
    /// Where the helper logs stdout and stderr, in the CRI format of `crate::kubelet::logs`,
    /// rotating it to `PATH.1`, `PATH.2`... (higher is older).
    pub log_path: PathBuf,
    /// Size at which the log file is rotated; 0 means 1 MiB.
    pub log_max_bytes: u64,
    /// Log files kept, `log_path` included; 0 means 2.
    pub log_max_files: u32,
    pub security: Security,
}

/// How a container is confined. The default is the hardened one: Docker's
/// capability set, no new privileges, the default seccomp profile, masked
/// and read-only /proc paths, read-only /sys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// All capabilities, no seccomp, nothing masked, /sys writable, every
    /// host device.
    pub privileged: bool,
    /// Capability names as Kubernetes writes them ("NET_ADMIN"); "ALL" in
    /// `drop` drops every default one.
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    pub read_only_root: bool,
    pub no_new_privileges: bool,
    /// The default seccomp profile (Kubernetes' RuntimeDefault); false is
    /// Unconfined.
    pub seccomp: bool,
    /// Host devices made available in the container.
    pub devices: Vec<Device>,
}

impl Default for Security {
    fn default() -> Security {
        Security {
            privileged: false,
            add_capabilities: Vec::new(),
            drop_capabilities: Vec::new(),
            read_only_root: false,
            no_new_privileges: true,
            seccomp: true,
            devices: Vec::new(),
        }
    }
}

/// A host device node, as found on the host by the kubelet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub path: PathBuf,
    /// 'c' or 'b'.
    pub kind: char,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// A host directory or file bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub read_only: bool,
}

/// Kubernetes-style resources: CPU in millicores, memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_request_millis: Option<u64>,
    pub cpu_limit_millis: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub pids_limit: Option<u64>,
}

/// Everything the helper sends after the hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HelperMessage {
    Response {
        id: u64,
        result: Result<Reply, RemoteError>,
    },
    Event(Event),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Done,
    Container(ContainerInfo),
    Containers(Vec<ContainerInfo>),
    /// Sent with two fds (stdout, stderr read ends) attached to the frame.
    Exec {
        exec_id: u64,
        pid: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A container's init process ended. `exit_code` and `signal` are both `None` when the code
    /// was lost: the process was not the helper's child (it was reattached after a helper
    /// restart) or it ended while no helper ran.
    Exited {
        id: String,
        exit_code: Option<i32>,
        signal: Option<i32>,
        oom_killed: bool,
        finished_at: SystemTime,
    },
    ExecExited {
        exec_id: u64,
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub pod_uid: String,
    pub name: String,
    pub status: Status,
    pub pid: Option<u32>,
    pub started_at: Option<SystemTime>,
    /// Set once the container has exited.
    pub exit: Option<ExitInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub finished_at: SystemTime,
}

/// An operation's failure as the client sees it: a kind to branch on and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidState,
    InvalidArgument,
    Internal,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}
