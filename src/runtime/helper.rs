//! The runtime helper process: one thread, one poll loop over the listening socket, the client,
//! a pidfd per process it waits for and the output FIFOs of running containers. Requests are
//! handled one at a time, in order.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

use super::containers::{Containers, Watch};
use super::error::RuntimeError;
use super::frame;
use super::protocol::{
    ClientHello, HelperHello, HelperMessage, Op, PROTOCOL_VERSION, Reply, Request,
};

/// A client that does not read its socket for this long is dropped, so it cannot wedge the helper.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Entry point of `bramble runtime-helper --root ROOT`. Never returns. Must be called in a fresh,
/// single-threaded process, and starts no thread.
pub fn helper_main(root: &Path) -> ! {
    detach();
    let _ = log::set_logger(&StderrLogger).map(|()| log::set_max_level(log::LevelFilter::Info));
    match run(root) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            log::error!("runtime helper: {e}");
            std::process::exit(1)
        }
    }
}

/// Forks: the parent (the daemon's child) exits at once, the child leads a new session. The
/// helper is then nobody's child but init's, so a daemon never reaps it and a stop of the
/// daemon's session or process group does not reach it.
fn detach() {
    // SAFETY: helper_main runs at the start of a freshly exec'd process: one thread, no locks held.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(nix::unistd::ForkResult::Child) => {
            let _ = nix::unistd::setsid();
        }
        Err(e) => {
            eprintln!("runtime helper: cannot fork to detach: {e}");
            std::process::exit(1)
        }
    }
}

/// Logs to stderr (the helper's log file) without a thread.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let _ = writeln!(
                io::stderr(),
                "{}.{:03} {} {}",
                now.as_secs(),
                now.subsec_millis(),
                r.level(),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

struct Connection {
    stream: UnixStream,
    buf: Vec<u8>,
    greeted: bool,
}

enum Flow {
    Continue,
    /// Drop the client.
    Close,
    /// A client of another version asked this helper to hand over.
    Exit,
}

fn run(root: &Path) -> Result<(), RuntimeError> {
    fs::create_dir_all(root).map_err(RuntimeError::io("create", root))?;
    // libcontainer changes the working directory: every path must be absolute.
    let root = fs::canonicalize(root).map_err(RuntimeError::io("resolve", root))?;
    let lock_path = root.join("runtime.lock");
    let _lock = lock(&lock_path)?;
    default_signal_dispositions();

    let mut containers = Containers::open(&root)?;
    let sock = root.join("runtime.sock");
    let _ = fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).map_err(RuntimeError::io("listen on", &sock))?;
    log::info!(
        "runtime helper {} listening on {}",
        std::process::id(),
        sock.display()
    );
    let mut client: Option<Connection> = None;

    loop {
        let watches = containers.watches();
        let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if let Some(c) = &client {
            fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
        }
        let first_watch = fds.len();
        fds.extend(
            watches
                .iter()
                .map(|(_, fd)| PollFd::new(*fd, PollFlags::POLLIN)),
        );
        // Rounded up: woken a little early, the loop would spin until the deadline.
        let timeout = containers.next_deadline().map_or(PollTimeout::NONE, |at| {
            let left = at.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
        });
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RuntimeError::io("poll in", &root)(e.into())),
            Ok(_) => {}
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let accept = ready(&fds[0]);
        let client_ready = client.is_some() && ready(&fds[1]);
        let ready_watches: Vec<Watch> = fds[first_watch..]
            .iter()
            .zip(&watches)
            .filter(|(fd, _)| ready(fd))
            .map(|(_, (w, _))| w.clone())
            .collect();
        drop(fds);
        drop(watches);

        containers.on_deadline(Instant::now());
        for watch in ready_watches {
            if let Some(event) = containers.on_ready(&watch) {
                log::info!("{event:?}");
                if let Some(c) = client.as_mut().filter(|c| c.greeted)
                    && send(c, &HelperMessage::Event(event), None).is_err()
                {
                    client = None;
                }
            }
        }
        if client_ready {
            let flow = client
                .as_mut()
                .map_or(Flow::Close, |c| serve(c, &mut containers));
            match flow {
                Flow::Continue => {}
                Flow::Close => client = None,
                Flow::Exit => {
                    log::info!("handing over to a helper of another protocol version");
                    let _ = fs::remove_file(&sock);
                    return Ok(());
                }
            }
        }
        if accept {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_ok() {
                        // A new connection replaces the old one: the daemon restarted.
                        client = Some(Connection {
                            stream,
                            buf: Vec::new(),
                            greeted: false,
                        });
                    }
                }
                Err(e) => log::warn!("accept: {e}"),
            }
        }
    }
}

/// Takes the helper lock of this root. A helper that was just killed may hold it for a moment
/// while the kernel closes its files, so wait a little before giving up.
fn lock(path: &Path) -> Result<Flock<fs::File>, RuntimeError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut file = fs::File::create(path).map_err(RuntimeError::io("create", path))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, _)) if std::time::Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => {
                return Err(RuntimeError::AlreadyRunning {
                    lock: path.to_owned(),
                });
            }
        }
    }
}

/// Reads what the client sent and handles every complete frame.
fn serve(c: &mut Connection, containers: &mut Containers) -> Flow {
    let mut chunk = [0u8; 16 * 1024];
    match nix::sys::socket::recv(c.stream.as_raw_fd(), &mut chunk, MsgFlags::MSG_DONTWAIT) {
        Ok(0) => return Flow::Close,
        Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Flow::Continue,
        Err(_) => return Flow::Close,
    }
    loop {
        if !c.greeted {
            match frame::parse::<ClientHello>(&mut c.buf) {
                Ok(None) => return Flow::Continue,
                Ok(Some(hello)) => {
                    let accepted = hello.version == PROTOCOL_VERSION;
                    let reply = HelperHello {
                        version: PROTOCOL_VERSION,
                        helper_pid: std::process::id(),
                        accepted,
                    };
                    if send(c, &reply, None).is_err() || !accepted {
                        return if !accepted && hello.replace_if_different {
                            Flow::Exit
                        } else {
                            Flow::Close
                        };
                    }
                    c.greeted = true;
                }
                Err(e) => {
                    log::warn!("client hello: {e}");
                    return Flow::Close;
                }
            }
        }
        let req = match frame::parse::<Request>(&mut c.buf) {
            Ok(None) => return Flow::Continue,
            Ok(Some(req)) => req,
            Err(e) => {
                log::warn!("dropping client: {e}");
                return Flow::Close;
            }
        };
        let (result, fds) = handle(containers, req.op);
        let msg = HelperMessage::Response {
            id: req.id,
            result: result.map_err(|e| e.to_remote()),
        };
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        if send(c, &msg, Some(&raw)).is_err() {
            return Flow::Close;
        }
    }
}

/// Runs one operation. Exec also returns the fds to pass along with the reply.
fn handle(
    containers: &mut Containers,
    op: Op,
) -> (Result<Reply, RuntimeError>, Vec<std::os::fd::OwnedFd>) {
    let done = |r: Result<(), RuntimeError>| r.map(|()| Reply::Done);
    let result = match op {
        Op::CreateSandbox {
            pod_uid,
            hostname,
            host_network,
        } => done(containers.create_sandbox(&pod_uid, &hostname, host_network)),
        Op::RemoveSandbox { pod_uid } => done(containers.remove_sandbox(&pod_uid)),
        Op::CreateContainer { id, pod_uid, spec } => containers
            .create(&id, &pod_uid, &spec)
            .map(Reply::Container),
        Op::Start { id } => containers.start(&id).map(Reply::Container),
        Op::Kill { id, signal } => done(containers.kill(&id, signal)),
        Op::Delete { id } => done(containers.delete(&id)),
        Op::State { id } => containers.state(&id).map(Reply::Container),
        Op::List => Ok(Reply::Containers(containers.list())),
        Op::Exec { id, args, env, tty } => {
            if tty {
                let reason = "tty exec is not supported yet".to_owned();
                return (
                    Err(RuntimeError::InvalidArgument {
                        field: "tty",
                        reason,
                    }),
                    Vec::new(),
                );
            }
            match containers.exec(&id, args, &env) {
                Ok(x) => {
                    return (
                        Ok(Reply::Exec {
                            exec_id: x.exec_id,
                            pid: x.pid,
                        }),
                        vec![x.stdout, x.stderr],
                    );
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = &result {
        log::warn!("{e}");
    }
    (result, Vec::new())
}

/// Writes one frame, with `fds` attached to its first byte (SCM_RIGHTS).
fn send<T: serde::Serialize>(c: &mut Connection, msg: &T, fds: Option<&[i32]>) -> io::Result<()> {
    let bytes = frame::encode(msg).map_err(io::Error::other)?;
    let rights = fds.filter(|f| !f.is_empty()).map(ControlMessage::ScmRights);
    let mut sent = 0;
    while sent < bytes.len() {
        let iov = [io::IoSlice::new(&bytes[sent..])];
        let cmsgs = if sent == 0 { rights.as_slice() } else { &[] };
        // MSG_NOSIGNAL: a client gone mid-write costs an EPIPE, not the helper.
        match sendmsg::<()>(
            c.stream.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Containers inherit ignored signals across exec, and Rust's runtime ignores SIGPIPE before
/// `main`: put every ignored signal back to its default so that workloads start clean.
fn default_signal_dispositions() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: installing SIG_DFL runs no code of ours in signal context.
        let _ = unsafe { sigaction(sig, &default) };
    }
    for sig in nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX() {
        // SAFETY: as above, SIG_DFL for a real-time signal the C library lets us set.
        unsafe { nix::libc::signal(sig, nix::libc::SIG_DFL) };
    }
}
