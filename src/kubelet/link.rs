//! The kubelet's line to the runtime helper: a thread that owns the blocking
//! `RuntimeClient`, takes requests from the executor over a channel, and
//! forwards the helper's events (container exits) as they arrive.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::runtime::protocol::{ContainerInfo, ContainerSpec, Event, Op, Reply};
use crate::runtime::{ClientError, ExecHandle, RuntimeClient};

enum Call {
    Op(Op, smol::channel::Sender<Result<Reply, String>>),
    Exec {
        id: String,
        args: Vec<String>,
        env: Vec<String>,
        reply: smol::channel::Sender<Result<ExecHandle, String>>,
    },
}

/// Cheap to clone; every clone talks to the same thread.
#[derive(Clone)]
pub struct Link {
    calls: smol::channel::Sender<Call>,
    wake: std::sync::Arc<UnixStream>,
}

impl Link {
    /// Connects to (or starts) the helper of `root` and starts the link
    /// thread. Returns the link and the stream of helper events.
    pub fn start(root: &Path) -> Result<(Link, smol::channel::Receiver<Event>), ClientError> {
        let client = RuntimeClient::connect(root)?;
        let (calls_tx, calls_rx) = smol::channel::unbounded();
        let (events_tx, events_rx) = smol::channel::unbounded();
        let (wake_tx, wake_rx) = UnixStream::pair().map_err(|e| ClientError::Io {
            what: "create a socketpair",
            source: e,
        })?;
        thread::Builder::new()
            .name("runtime-link".into())
            .spawn(move || serve(client, &calls_rx, &events_tx, wake_rx))
            .map_err(|e| ClientError::Io {
                what: "start the runtime link thread",
                source: e,
            })?;
        Ok((
            Link {
                calls: calls_tx,
                wake: std::sync::Arc::new(wake_tx),
            },
            events_rx,
        ))
    }

    fn send(&self, call: Call) {
        // The thread stops only when every Link is gone; a send cannot fail
        // while we hold one.
        let _ = self.calls.try_send(call);
        let _ = (&*self.wake).write(&[1]);
    }

    pub async fn request(&self, op: Op) -> Result<Reply, String> {
        let (tx, rx) = smol::channel::bounded(1);
        self.send(Call::Op(op, tx));
        rx.recv()
            .await
            .map_err(|_| "the runtime link stopped".to_string())?
    }

    pub async fn create_sandbox(
        &self,
        pod_uid: &str,
        hostname: &str,
        host_network: bool,
    ) -> Result<(), String> {
        self.request(Op::CreateSandbox {
            pod_uid: pod_uid.into(),
            hostname: hostname.into(),
            host_network,
        })
        .await
        .map(drop)
    }

    pub async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), String> {
        self.request(Op::RemoveSandbox {
            pod_uid: pod_uid.into(),
        })
        .await
        .map(drop)
    }

    pub async fn run_container(
        &self,
        id: &str,
        pod_uid: &str,
        spec: ContainerSpec,
    ) -> Result<ContainerInfo, String> {
        self.request(Op::CreateContainer {
            id: id.into(),
            pod_uid: pod_uid.into(),
            spec: Box::new(spec),
        })
        .await?;
        self.start_container(id).await
    }

    /// Starts a created container.
    pub async fn start_container(&self, id: &str) -> Result<ContainerInfo, String> {
        match self.request(Op::Start { id: id.into() }).await? {
            Reply::Container(info) => Ok(info),
            other => Err(format!("unexpected reply to start: {other:?}")),
        }
    }

    pub async fn kill(&self, id: &str, signal: i32) -> Result<(), String> {
        self.request(Op::Kill {
            id: id.into(),
            signal,
        })
        .await
        .map(drop)
    }

    pub async fn delete(&self, id: &str) -> Result<(), String> {
        self.request(Op::Delete { id: id.into() }).await.map(drop)
    }

    pub async fn list(&self) -> Result<Vec<ContainerInfo>, String> {
        match self.request(Op::List).await? {
            Reply::Containers(c) => Ok(c),
            other => Err(format!("unexpected reply to list: {other:?}")),
        }
    }

    pub async fn exec(
        &self,
        id: &str,
        args: Vec<String>,
        env: Vec<String>,
    ) -> Result<ExecHandle, String> {
        let (tx, rx) = smol::channel::bounded(1);
        self.send(Call::Exec {
            id: id.into(),
            args,
            env,
            reply: tx,
        });
        rx.recv()
            .await
            .map_err(|_| "the runtime link stopped".to_string())?
    }
}

/// The link thread: waits for a call or for the helper to say something.
fn serve(
    mut client: RuntimeClient,
    calls: &smol::channel::Receiver<Call>,
    events: &smol::channel::Sender<Event>,
    mut wake: UnixStream,
) {
    loop {
        let ready = {
            let mut fds = [
                PollFd::new(client.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
            ];
            poll(&mut fds, PollTimeout::NONE)
                .map(|_| fds[1].revents().is_some_and(|r| !r.is_empty()))
        };
        if ready.unwrap_or(false) {
            let mut buf = [0u8; 64];
            let _ = wake.read(&mut buf);
        }
        while let Ok(call) = calls.try_recv() {
            match call {
                Call::Op(op, reply) => {
                    let _ = reply.send_blocking(client.request(op).map_err(|e| e.to_string()));
                }
                Call::Exec {
                    id,
                    args,
                    env,
                    reply,
                } => {
                    let _ =
                        reply.send_blocking(client.exec(&id, args, env).map_err(|e| e.to_string()));
                }
            }
        }
        // A short wait rather than none: `events()` only parses what earlier
        // reads buffered, and the socket may hold new frames.
        loop {
            match client.next_event(Some(std::time::Duration::from_millis(1))) {
                Ok(Some(ev)) => {
                    if events.send_blocking(ev).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log::error!("lost the runtime helper: {e}");
                    return;
                }
            }
        }
        if calls.is_closed() && calls.is_empty() {
            return;
        }
    }
}
