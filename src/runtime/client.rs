//! The daemon's side: connects to (or starts) the runtime helper and speaks to it.
//!
//! Requests block until their response. Events arriving meanwhile are queued and handed out by
//! [`RuntimeClient::next_event`] and [`RuntimeClient::events`]. The socket is exposed with
//! [`AsFd`] so that the daemon can wait for readability on its executor and then call `events`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{self, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

use super::frame::{self, FrameError};
use super::protocol::{
    ClientHello, ContainerInfo, ContainerSpec, Event, HelperHello, HelperMessage, Op,
    PROTOCOL_VERSION, RemoteError, Reply, Request,
};

/// How long a freshly started helper may take to listen.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum ClientError {
    Spawn {
        program: PathBuf,
        source: io::Error,
    },
    /// The helper did not come up; its log says why.
    NotListening {
        socket: PathBuf,
        log: PathBuf,
    },
    Io {
        what: &'static str,
        source: io::Error,
    },
    Frame(FrameError),
    VersionMismatch {
        helper: u32,
        client: u32,
    },
    /// The helper closed the connection (it died, or another client replaced this one).
    Disconnected,
    /// The helper answered something else than the request calls for.
    UnexpectedReply {
        op: &'static str,
        reply: String,
    },
    Remote(RemoteError),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Spawn { program, source } => {
                write!(
                    f,
                    "cannot start the runtime helper {}: {source}",
                    program.display()
                )
            }
            Self::NotListening { socket, log } => write!(
                f,
                "the runtime helper did not listen on {} in time; see {}",
                socket.display(),
                log.display()
            ),
            Self::Io { what, source } => {
                write!(f, "runtime helper socket: cannot {what}: {source}")
            }
            Self::Frame(e) => write!(f, "runtime helper socket: {e}"),
            Self::VersionMismatch { helper, client } => write!(
                f,
                "the runtime helper speaks protocol {helper}, this daemon {client}, and it did not hand over"
            ),
            Self::Disconnected => write!(
                f,
                "the runtime helper closed the connection (died or replaced)"
            ),
            Self::UnexpectedReply { op, reply } => write!(f, "unexpected reply to {op}: {reply}"),
            Self::Remote(e) => write!(f, "runtime helper: {}", e.message),
        }
    }
}

impl std::error::Error for ClientError {}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> ClientError {
    move |source| ClientError::Io { what, source }
}

/// How to start a helper: a program and its full argument list.
#[derive(Debug, Clone)]
pub struct HelperCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl HelperCommand {
    /// `<this executable> runtime-helper --root ROOT`: what the bramble binary wires up.
    pub fn bramble(root: &Path) -> io::Result<Self> {
        Ok(Self {
            program: std::env::current_exe()?,
            args: vec![
                "runtime-helper".into(),
                "--root".into(),
                root.as_os_str().to_owned(),
            ],
        })
    }
}

/// A started exec: read its output from `stdout` and `stderr` until EOF; an
/// `Event::ExecExited` with `exec_id` gives its exit code.
#[derive(Debug)]
pub struct ExecHandle {
    pub exec_id: u64,
    pub pid: u32,
    pub stdout: fs::File,
    pub stderr: fs::File,
}

pub struct RuntimeClient {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Fds received with SCM_RIGHTS, in arrival order, waiting for their Exec reply.
    fds: VecDeque<OwnedFd>,
    events: VecDeque<Event>,
    next_id: u64,
    helper_pid: u32,
}

impl RuntimeClient {
    /// Connects to the helper of `root`, starting `<this executable> runtime-helper` if none
    /// answers.
    pub fn connect(root: &Path) -> Result<Self, ClientError> {
        let cmd = HelperCommand::bramble(root).map_err(|source| ClientError::Spawn {
            program: "".into(),
            source,
        })?;
        Self::connect_with(root, &cmd)
    }

    /// Connects to the helper of `root`, starting `helper` if none answers. A helper of another
    /// protocol version is asked to exit (its containers keep running) and replaced.
    pub fn connect_with(root: &Path, helper: &HelperCommand) -> Result<Self, ClientError> {
        let socket = root.join("runtime.sock");
        let deadline = Instant::now() + SPAWN_TIMEOUT;
        let mut spawned = false;
        loop {
            match UnixStream::connect(&socket) {
                Ok(stream) => match Self::greet(stream) {
                    Ok(Ok(client)) => return Ok(client),
                    Ok(Err(old)) => {
                        wait_gone(old.helper_pid, deadline);
                        spawned = false;
                    }
                    // A dying helper closes its connections before its listening socket.
                    Err(ClientError::Disconnected) => {}
                    Err(e) => return Err(e),
                },
                Err(e)
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    return Err(io_err("connect")(e));
                }
                Err(_) => {}
            }
            if !spawned {
                spawn(root, helper)?;
                spawned = true;
            }
            if Instant::now() > deadline {
                return Err(ClientError::NotListening {
                    socket,
                    log: root.join("helper.log"),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Says hello. `Ok(Err(hello))`: the helper is of another version and is exiting.
    fn greet(stream: UnixStream) -> Result<Result<Self, HelperHello>, ClientError> {
        let mut client = Self {
            stream,
            buf: Vec::new(),
            fds: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            helper_pid: 0,
        };
        let hello = ClientHello {
            version: PROTOCOL_VERSION,
            replace_if_different: true,
        };
        client.write(&hello)?;
        let reply: HelperHello = loop {
            if let Some(h) = frame::parse(&mut client.buf).map_err(ClientError::Frame)? {
                break h;
            }
            // A helper that accepts but never answers is as good as none.
            if !client.fill(Some(SPAWN_TIMEOUT))? {
                return Err(ClientError::Disconnected);
            }
        };
        if !reply.accepted {
            return Ok(Err(reply));
        }
        client.helper_pid = reply.helper_pid;
        Ok(Ok(client))
    }

    pub fn helper_pid(&self) -> u32 {
        self.helper_pid
    }

    /// Writes one frame. Works on a blocking socket and on one the daemon made non-blocking
    /// (e.g. by wrapping it in `smol::Async`).
    fn write<T: serde::Serialize>(&mut self, msg: &T) -> Result<(), ClientError> {
        let bytes = frame::encode(msg).map_err(ClientError::Frame)?;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            match self.stream.write(rest) {
                Ok(0) => return Err(ClientError::Disconnected),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut pfd = [PollFd::new(self.stream.as_fd(), PollFlags::POLLOUT)];
                    poll(&mut pfd, PollTimeout::NONE).map_err(|e| io_err("poll")(e.into()))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    return Err(ClientError::Disconnected);
                }
                Err(e) => return Err(io_err("send")(e)),
            }
        }
        Ok(())
    }

    /// Reads more bytes (and fds), waiting at most `timeout` (`None`: forever). Returns false on
    /// timeout.
    fn fill(&mut self, timeout: Option<Duration>) -> Result<bool, ClientError> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
        };
        let mut pfd = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
        match poll(&mut pfd, timeout) {
            Ok(0) => return Ok(false),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io_err("poll")(e.into())),
        }
        let mut chunk = [0u8; 16 * 1024];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut chunk)];
        let msg = match recvmsg::<()>(
            self.stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(true),
            Err(nix::errno::Errno::ECONNRESET) => return Err(ClientError::Disconnected),
            Err(e) => return Err(io_err("receive")(e.into())),
        };
        let n = msg.bytes;
        for c in msg.cmsgs().map_err(|e| io_err("receive fds")(e.into()))? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: SCM_RIGHTS just installed these fds in this process; nothing else owns them.
                self.fds.extend(
                    fds.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        if n == 0 {
            return Err(ClientError::Disconnected);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    /// Sends `op` and waits for its response, queueing events that arrive first.
    pub fn request(&mut self, op: Op) -> Result<Reply, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.write(&Request { id, op })?;
        loop {
            while let Some(msg) =
                frame::parse::<HelperMessage>(&mut self.buf).map_err(ClientError::Frame)?
            {
                match msg {
                    HelperMessage::Event(e) => self.events.push_back(e),
                    HelperMessage::Response { id: got, result } if got == id => {
                        return result.map_err(ClientError::Remote);
                    }
                    HelperMessage::Response { id: got, .. } => {
                        log::warn!("dropping stale response {got}")
                    }
                }
            }
            self.fill(None)?;
        }
    }

    /// The next event, waiting at most `timeout` (`None`: forever).
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<Event>, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            while let Some(msg) =
                frame::parse::<HelperMessage>(&mut self.buf).map_err(ClientError::Frame)?
            {
                match msg {
                    HelperMessage::Event(e) => self.events.push_back(e),
                    HelperMessage::Response { id, .. } => {
                        log::warn!("dropping stale response {id}")
                    }
                }
            }
            if !self.events.is_empty() {
                continue;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) || !self.fill(left)? {
                return Ok(None);
            }
        }
    }

    /// Every event available now, without waiting.
    pub fn events(&mut self) -> Result<Vec<Event>, ClientError> {
        let mut out = Vec::new();
        while let Some(e) = self.next_event(Some(Duration::ZERO))? {
            out.push(e);
        }
        Ok(out)
    }

    fn expect_done(&mut self, op: Op, name: &'static str) -> Result<(), ClientError> {
        match self.request(op)? {
            Reply::Done => Ok(()),
            other => Err(ClientError::UnexpectedReply {
                op: name,
                reply: format!("{other:?}"),
            }),
        }
    }

    fn expect_container(
        &mut self,
        op: Op,
        name: &'static str,
    ) -> Result<ContainerInfo, ClientError> {
        match self.request(op)? {
            Reply::Container(c) => Ok(c),
            other => Err(ClientError::UnexpectedReply {
                op: name,
                reply: format!("{other:?}"),
            }),
        }
    }

    pub fn create_sandbox(
        &mut self,
        pod_uid: &str,
        hostname: &str,
        host_network: bool,
    ) -> Result<(), ClientError> {
        let op = Op::CreateSandbox {
            pod_uid: pod_uid.into(),
            hostname: hostname.into(),
            host_network,
        };
        self.expect_done(op, "CreateSandbox")
    }

    pub fn remove_sandbox(&mut self, pod_uid: &str) -> Result<(), ClientError> {
        self.expect_done(
            Op::RemoveSandbox {
                pod_uid: pod_uid.into(),
            },
            "RemoveSandbox",
        )
    }

    pub fn create_container(
        &mut self,
        id: &str,
        pod_uid: &str,
        spec: ContainerSpec,
    ) -> Result<ContainerInfo, ClientError> {
        let op = Op::CreateContainer {
            id: id.into(),
            pod_uid: pod_uid.into(),
            spec: Box::new(spec),
        };
        self.expect_container(op, "CreateContainer")
    }

    pub fn start(&mut self, id: &str) -> Result<ContainerInfo, ClientError> {
        self.expect_container(Op::Start { id: id.into() }, "Start")
    }

    pub fn kill(&mut self, id: &str, signal: nix::sys::signal::Signal) -> Result<(), ClientError> {
        self.expect_done(
            Op::Kill {
                id: id.into(),
                signal: signal as i32,
            },
            "Kill",
        )
    }

    pub fn delete(&mut self, id: &str) -> Result<(), ClientError> {
        self.expect_done(Op::Delete { id: id.into() }, "Delete")
    }

    pub fn state(&mut self, id: &str) -> Result<ContainerInfo, ClientError> {
        self.expect_container(Op::State { id: id.into() }, "State")
    }

    pub fn list(&mut self) -> Result<Vec<ContainerInfo>, ClientError> {
        match self.request(Op::List)? {
            Reply::Containers(c) => Ok(c),
            other => Err(ClientError::UnexpectedReply {
                op: "List",
                reply: format!("{other:?}"),
            }),
        }
    }

    pub fn exec(
        &mut self,
        id: &str,
        args: Vec<String>,
        env: Vec<String>,
    ) -> Result<ExecHandle, ClientError> {
        match self.request(Op::Exec {
            id: id.into(),
            args,
            env,
            tty: false,
        })? {
            Reply::Exec { exec_id, pid } => {
                let (Some(stdout), Some(stderr)) = (self.fds.pop_front(), self.fds.pop_front())
                else {
                    return Err(ClientError::UnexpectedReply {
                        op: "Exec",
                        reply: "no file descriptors".into(),
                    });
                };
                Ok(ExecHandle {
                    exec_id,
                    pid,
                    stdout: stdout.into(),
                    stderr: stderr.into(),
                })
            }
            other => Err(ClientError::UnexpectedReply {
                op: "Exec",
                reply: format!("{other:?}"),
            }),
        }
    }
}

impl AsFd for RuntimeClient {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// Starts a helper, its stderr appended to ROOT/helper.log. The helper detaches (forks, and the
/// process we started exits at once), so the daemon never has to reap it.
fn spawn(root: &Path, helper: &HelperCommand) -> Result<(), ClientError> {
    let spawn_err = |source| ClientError::Spawn {
        program: helper.program.clone(),
        source,
    };
    fs::create_dir_all(root).map_err(spawn_err)?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("helper.log"))
        .map_err(spawn_err)?;
    Command::new(&helper.program)
        .args(&helper.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .map_err(spawn_err)?;
    Ok(())
}

/// Waits until a helper that is handing over has exited.
fn wait_gone(pid: u32, deadline: Instant) {
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}
