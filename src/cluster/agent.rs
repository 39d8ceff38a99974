//! `bramble agent`: the kubelet of a board that is not the server.
//!
//! The agent has its own store (SQLite in its data dir) and runs the same
//! kubelet as the server's board, unchanged, over it. The link mirrors: the
//! server's pods for this node (and what they read) are kept in the local
//! store, with the uid the server gave them; the local kubelet's status and
//! Node go back. Because the pods are on local disk, the board keeps running
//! and restarting them while the server is away, and starts them again after
//! its own restart. On every (re)connect the server's full set replaces the
//! local one: pods it no longer lists (moved away meanwhile) are removed.

use serde_json::Value;
use smol::Async;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::join::{Identity, JoinError};
use super::protocol::{self, CLUSTER_KINDS, Message, NODE_KINDS};
use super::tls::{self, Link, LinkError, Token};
use crate::model::res;
use crate::net::Cidr;
use crate::server::{Board, ServerError};
use crate::store::{EventType, Store, StoreError};

/// How often the agent tells the server it is alive. About 40 bytes of TLS
/// record each: well under the 2 KiB per minute budget with TCP's headers.
const HEARTBEAT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const UNACKED_LIMIT: Duration = Duration::from_secs(30);

pub struct Config {
    /// HOST:PORT of the server's --cluster-listen.
    pub server: String,
    pub token: Token,
    pub data_dir: PathBuf,
    pub node_name: String,
    pub board: crate::config::Settings,
    pub registries: PathBuf,
    /// The pods' bridge (and nftables table) on this board.
    pub bridge: String,
    /// --node-ip: where other boards reach this one.
    pub node_ip: Option<std::net::IpAddr>,
}

#[derive(Debug)]
pub enum AgentError {
    Server(ServerError),
    Store(StoreError),
    Join(JoinError),
    Link(LinkError),
    Connect {
        server: String,
        source: std::io::Error,
    },
    /// The server ended the link with this reason.
    Refused(String),
    Protocol(String),
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentError::Server(e) => write!(f, "{e}"),
            AgentError::Store(e) => write!(f, "{e}"),
            AgentError::Join(e) => write!(f, "{e}"),
            AgentError::Link(e) => write!(f, "{e}"),
            AgentError::Connect { server, source } => write!(f, "connecting to {server}: {source}"),
            AgentError::Refused(why) => write!(f, "the server refused this board: {why}"),
            AgentError::Protocol(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for AgentError {}

impl From<LinkError> for AgentError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Refused(why) => AgentError::Refused(why),
            e => AgentError::Link(e),
        }
    }
}

impl From<JoinError> for AgentError {
    fn from(e: JoinError) -> Self {
        AgentError::Join(e)
    }
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        AgentError::Store(e)
    }
}

pub fn run(cfg: Config) -> Result<(), AgentError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| {
        AgentError::Server(ServerError::DataDir {
            path: cfg.data_dir.clone(),
            source,
        })
    })?;
    let _lock = crate::server::lock_data_dir(&cfg.data_dir).map_err(AgentError::Server)?;
    let store = Store::open_with(&cfg.data_dir, cfg.board.wal_autocheckpoint)?;
    let board = Board::start(
        &cfg.data_dir,
        &cfg.node_name,
        &cfg.board,
        &cfg.registries,
        &store,
        Some(cfg.bridge.clone()),
    )
    .map_err(AgentError::Server)?;
    let ex = Rc::new(async_executor::LocalExecutor::new());
    let mut signals =
        async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
            .map_err(|e| AgentError::Server(ServerError::Signals(e)))?;
    smol::block_on(ex.run(async {
        ex.spawn({
            let store = store.clone();
            async move { store.run_flusher().await }
        })
        .detach();
        ex.spawn({
            let store = store.clone();
            async move { crate::events::run_expiry(&store).await }
        })
        .detach();
        let node_ip = cfg.node_ip.or_else(|| towards(&cfg.server));
        let facts = crate::node::Facts::new(&cfg.node_name, &cfg.data_dir, &cfg.board, node_ip);
        crate::node::register(&store, crate::node::node_object(&facts))?;
        let kubelet = board.kubelet.clone();
        board.spawn(&ex, &store);
        log::info!(
            "bramble agent for node {} running (data {}); server {}",
            cfg.node_name,
            cfg.data_dir.display(),
            cfg.server
        );
        let (fatal_tx, fatal_rx) = smol::channel::bounded(1);
        ex.spawn({
            let board = Local {
                store: store.clone(),
                kubelet,
                ex: ex.clone(),
                node_name: cfg.node_name.clone(),
                bridge: cfg.bridge.clone(),
                cidr_file: cluster_cidr_file(&cfg.data_dir),
                cluster_cidr: Cell::new(None),
            };
            // After a restart the network runs before the server is back.
            if let Some(cidr) = std::fs::read_to_string(&board.cidr_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                board.network(cidr);
            }
            async move {
                let e = connect_loop(&cfg, &board).await;
                let _ = fatal_tx.send(e).await;
            }
        })
        .detach();
        crate::server::notify_systemd(&ex);
        use smol::stream::StreamExt;
        let outcome = smol::future::or(
            async {
                if let Some(Ok(sig)) = signals.next().await {
                    log::info!("{sig:?} received: shutting down");
                }
                Ok(())
            },
            async {
                match fatal_rx.recv().await {
                    Ok(e) => Err(e),
                    Err(_) => Ok(()),
                }
            },
        )
        .await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        store.close_watches();
        store.durable(store.resource_version()).await;
        store.save_snapshot().await;
        log::info!("bramble agent stopped");
        outcome
    }))
}

/// The address this board's traffic to the server leaves from: on a board
/// with several (Wi-Fi and Ethernet, a VPN), the one on the LAN it shares
/// with the others. Connecting a UDP socket only looks the route up; nothing
/// is sent. None when the server's name does not resolve yet (offline).
fn towards(server: &str) -> Option<std::net::IpAddr> {
    let to = server.to_socket_addrs().ok()?.next()?;
    let any: SocketAddr = if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect(to).ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback())
}

/// Connects, runs a session, and retries with back-off and jitter, until
/// the server refuses this board (wrong token, revoked, another protocol
/// version): trying again would not change its answer.
async fn connect_loop(cfg: &Config, board: &Local) -> AgentError {
    let mut delay = FIRST_RETRY;
    loop {
        let started = Instant::now();
        match connect(cfg, board).await {
            Err(e @ AgentError::Refused(_)) => return e,
            Err(e) => log::warn!("cluster link: {e}"),
            Ok(()) => log::info!("cluster link closed by the server"),
        }
        if started.elapsed() > MAX_RETRY {
            delay = FIRST_RETRY;
        }
        let jitter = delay.mul_f64(f64::from(crate::model::random_bytes::<1>()[0]) / 512.0);
        smol::Timer::after(delay + jitter).await;
        delay = (delay * 2).min(MAX_RETRY);
    }
}

async fn dial(cfg: &Config, identity: Option<&Identity>) -> Result<Link, AgentError> {
    let addrs: Vec<SocketAddr> = cfg
        .server
        .to_socket_addrs()
        .map_err(|source| AgentError::Connect {
            server: cfg.server.clone(),
            source,
        })?
        .collect();
    let addr = addrs.first().copied().ok_or_else(|| AgentError::Connect {
        server: cfg.server.clone(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
    })?;
    let tcp = smol::future::or(Async::<TcpStream>::connect(addr), async {
        smol::Timer::after(CONNECT_TIMEOUT).await;
        Err(std::io::ErrorKind::TimedOut.into())
    })
    .await
    .map_err(|source| AgentError::Connect {
        server: cfg.server.clone(),
        source,
    })?;
    let _ = tcp.get_ref().set_nodelay(true);
    // Heartbeats the server does not acknowledge within this end the link
    // (a partition), so the board notices and reconnects once it heals.
    let _ = nix::sys::socket::setsockopt(
        tcp.get_ref(),
        nix::sys::socket::sockopt::TcpUserTimeout,
        &(UNACKED_LIMIT.as_millis() as u32),
    );
    let identity = match identity {
        Some(id) => Some((
            tls::certs_from_pem(&id.cert_pem).map_err(JoinError::Tls)?,
            tls::key_from_pem(&id.key_pem).map_err(JoinError::Tls)?,
        )),
        None => None,
    };
    let tls_cfg = tls::client_config(&cfg.token.ca_hash, identity).map_err(JoinError::Tls)?;
    let conn = rustls::ClientConnection::new(tls_cfg, tls::server_name())
        .map_err(|e| AgentError::Link(LinkError::Tls(e)))?;
    let mut link = Link::handshake(tcp, conn).await?;
    link.send(&Message::Hello {
        version: protocol::VERSION,
        node: cfg.node_name.clone(),
    })
    .await?;
    Ok(link)
}

/// Joins with the token if this board has no certificate yet.
async fn identity(cfg: &Config) -> Result<Identity, AgentError> {
    if let Some(id) = Identity::load(&cfg.data_dir)? {
        return Ok(id);
    }
    let (key, public_key) = Identity::new_key()?;
    let mut link = dial(cfg, None).await?;
    link.send(&Message::Join {
        secret: cfg.token.secret.clone(),
        public_key,
    })
    .await?;
    match link.recv().await? {
        Message::Joined { certificate } => {
            log::info!("joined the cluster as node {}", cfg.node_name);
            Ok(Identity::save(&cfg.data_dir, &key, &certificate)?)
        }
        other => Err(AgentError::Protocol(format!(
            "expected Joined, got {}",
            other.name()
        ))),
    }
}

/// Where an agent keeps the server's cluster CIDR, for restarts while the
/// server is away and for `bramble network cleanup`.
pub fn cluster_cidr_file(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("cluster/cluster-cidr")
}

/// What the link serves on this board.
struct Local {
    store: Rc<Store>,
    kubelet: Rc<crate::kubelet::Kubelet>,
    ex: Rc<async_executor::LocalExecutor<'static>>,
    node_name: String,
    bridge: String,
    /// Where the server's cluster CIDR is kept for restarts while it is away.
    cidr_file: PathBuf,
    /// The cluster CIDR this board's network runs with, once known.
    cluster_cidr: Cell<Option<Cidr>>,
}

impl Local {
    /// Runs the pod network's rules, routes and DNS once the cluster CIDR
    /// is known, and keeps it for the next start.
    fn network(&self, cidr: Cidr) {
        match self.cluster_cidr.get() {
            Some(running) if running == cidr => {}
            Some(running) => log::warn!(
                "the server's cluster CIDR is now {cidr} but this board's network runs {running}: restart the agent to follow"
            ),
            None => {
                self.cluster_cidr.set(Some(cidr));
                let names = crate::net::Names {
                    bridge: self.bridge.clone(),
                    cluster_cidr: cidr,
                };
                crate::net::spawn(&self.ex, &self.store, &names, &self.node_name);
            }
        }
        let text = cidr.to_string();
        if std::fs::read_to_string(&self.cidr_file).ok().as_deref() != Some(text.as_str())
            && let Err(e) = crate::pki::write_secret(&self.cidr_file, &text)
        {
            log::warn!(
                "keeping the cluster CIDR in {}: {e}",
                self.cidr_file.display()
            );
        }
    }

    /// Starts streaming a container's log for the server; the first
    /// message to send back says whether it began.
    fn log(
        &self,
        id: u64,
        pod: (&str, &str),
        container: &str,
        previous: bool,
        query: &[(String, String)],
        out: &smol::channel::Sender<Message>,
    ) -> Result<Arc<AtomicBool>, String> {
        let pod = self
            .store
            .get(res("Pod"), pod.0, pod.1)
            .ok_or_else(|| format!("pod {} is not on this board", pod.1))?;
        let opts =
            crate::kubelet::logs::LogOptions::from_query(query, std::time::SystemTime::now())?;
        let (path, ended) = self.kubelet.log_file(&pod, container, previous)?;
        let cancelled = Arc::new(AtomicBool::new(false));
        let stop = {
            let c = cancelled.clone();
            move || ended() || c.load(Ordering::Relaxed)
        };
        let chunks = crate::kubelet::logs::stream(path, opts, stop)
            .map_err(|e| format!("starting a log stream: {e}"))?;
        let (out, c) = (out.clone(), cancelled.clone());
        self.ex
            .spawn(async move {
                while let Ok(data) = chunks.recv().await {
                    if c.load(Ordering::Relaxed)
                        || out.send(Message::StreamData { id, data }).await.is_err()
                    {
                        return; // dropping `chunks` ends the reading thread
                    }
                }
                let _ = out.send(Message::StreamEnd { id, error: None }).await;
            })
            .detach();
        Ok(cancelled)
    }
}

impl Local {
    /// Starts `command` in a container for the server; its output and exit
    /// follow as messages on `out`.
    async fn exec(
        &self,
        id: u64,
        pod: (&str, &str),
        container: &str,
        command: Vec<String>,
        out: &smol::channel::Sender<Message>,
    ) -> Result<(), String> {
        use crate::api::websocket::ExitStatus;
        let pod = self
            .store
            .get(res("Pod"), pod.0, pod.1)
            .ok_or_else(|| format!("pod {} is not on this board", pod.1))?;
        let (handle, exit) = self.kubelet.exec(&pod, container, command).await?;
        let (tx, rx) = smol::channel::bounded::<(bool, Vec<u8>)>(16);
        for (stderr, mut pipe) in [(false, handle.stdout), (true, handle.stderr)] {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name("agent-exec".into())
                .spawn(move || {
                    use std::io::Read;
                    let mut buf = [0u8; 8192];
                    while let Ok(n @ 1..) = pipe.read(&mut buf) {
                        if tx.send_blocking((stderr, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| format!("starting an exec relay: {e}"))?;
        }
        drop(tx);
        let out = out.clone();
        self.ex
            .spawn(async move {
                while let Ok((stderr, data)) = rx.recv().await {
                    let _ = out.send(Message::ExecOutput { id, stderr, data }).await;
                }
                let (code, signal) = match exit.recv().await {
                    Ok(ExitStatus::Code(c)) => (Some(c), None),
                    Ok(ExitStatus::Signal(s)) => (None, Some(s)),
                    _ => (None, None),
                };
                let _ = out.send(Message::ExecExit { id, code, signal }).await;
            })
            .detach();
        Ok(())
    }
}

enum Step {
    In(Result<Message, LinkError>),
    Local(Option<crate::store::WatchEvent>),
    Out(Option<Message>),
    Beat,
}

/// One connection: identity, Hello/Welcome, the full set, then changes.
async fn connect(cfg: &Config, board: &Local) -> Result<(), AgentError> {
    let store = &board.store;
    let id = identity(cfg).await?;
    let mut link = dial(cfg, Some(&id)).await?;
    match link.recv().await? {
        Message::Welcome { version } if version == protocol::VERSION => {}
        Message::Welcome { version } => {
            return Err(AgentError::Protocol(format!(
                "the server speaks cluster protocol version {version}, this agent {}: run the same bramble release on both",
                protocol::VERSION
            )));
        }
        other => {
            return Err(AgentError::Protocol(format!(
                "expected Welcome, got {}",
                other.name()
            )));
        }
    }
    log::info!("connected to the server {}", cfg.server);
    let mut mirror = Mirror {
        store: store.clone(),
        node: cfg.node_name.clone(),
        syncing: Some(HashSet::new()),
        removed_by_server: HashSet::new(),
        sent: HashMap::new(),
    };
    let local = store.watch_many(&[res("Pod"), res("Node")], None, store.resource_version())?;
    let mut beat = smol::Timer::interval(HEARTBEAT);
    // Log streams' messages, and how to cancel each.
    let (streams_tx, streams_rx) = smol::channel::unbounded();
    let mut streams: HashMap<u64, Arc<AtomicBool>> = HashMap::new();
    loop {
        let step = smol::future::or(
            smol::future::or(async { Step::In(link.recv().await) }, async {
                Step::Out(streams_rx.recv().await.ok())
            }),
            smol::future::or(async { Step::Local(local.recv().await.ok()) }, async {
                use smol::stream::StreamExt;
                beat.next().await;
                Step::Beat
            }),
        )
        .await;
        let out = match step {
            Step::In(Ok(Message::LogRequest {
                id,
                namespace,
                name,
                container,
                previous,
                query,
            })) => {
                let pod = (namespace.as_str(), name.as_str());
                match board.log(id, pod, &container, previous, &query, &streams_tx) {
                    Ok(cancel) => {
                        streams.insert(id, cancel);
                        vec![Message::StreamData {
                            id,
                            data: Vec::new(),
                        }]
                    }
                    Err(e) => vec![Message::StreamEnd { id, error: Some(e) }],
                }
            }
            Step::In(Ok(Message::ExecRequest {
                id,
                namespace,
                name,
                container,
                command,
            })) => {
                let pod = (namespace.as_str(), name.as_str());
                match board.exec(id, pod, &container, command, &streams_tx).await {
                    Ok(()) => vec![Message::StreamData {
                        id,
                        data: Vec::new(),
                    }],
                    Err(e) => vec![Message::StreamEnd { id, error: Some(e) }],
                }
            }
            Step::In(Ok(Message::ClusterNetwork { cluster_cidr })) => {
                let cidr = cluster_cidr
                    .parse()
                    .map_err(|e| AgentError::Protocol(format!("the server's cluster CIDR: {e}")))?;
                board.network(cidr);
                Vec::new()
            }
            Step::In(Ok(Message::StreamCancel { id })) => {
                if let Some(c) = streams.remove(&id) {
                    c.store(true, Ordering::Relaxed);
                }
                Vec::new()
            }
            Step::In(msg) => mirror.apply(msg?)?,
            Step::Out(Some(msg)) => {
                if let Message::StreamEnd { id, .. } = &msg {
                    streams.remove(id);
                }
                vec![msg]
            }
            Step::Out(None) => Vec::new(),
            Step::Local(Some(ev)) => mirror.local_change(&ev),
            Step::Local(None) => return Err(AgentError::Protocol("local store closed".into())),
            Step::Beat => vec![Message::Heartbeat],
        };
        for msg in out {
            link.send(&msg).await?;
        }
    }
}

/// The kind's static name if the server may send it.
fn mirrored(kind: &str) -> Option<&'static str> {
    NODE_KINDS
        .iter()
        .chain(CLUSTER_KINDS.iter())
        .find(|k| **k == kind)
        .copied()
}

/// The local copy of what the server assigned to this node.
struct Mirror {
    store: Rc<Store>,
    node: String,
    /// During the full set: what it held so far.
    syncing: Option<HashSet<(String, String, String)>>,
    /// Pods removed because the server said so: their deletion is not news to it.
    removed_by_server: HashSet<String>,
    /// The last pod status sent, per uid.
    sent: HashMap<String, String>,
}

impl Mirror {
    /// Applies a server message; returns what to send back.
    fn apply(&mut self, msg: Message) -> Result<Vec<Message>, AgentError> {
        match msg {
            Message::Upsert { kind, json } => {
                let Some(kind) = mirrored(&kind) else {
                    log::warn!("ignoring an object of kind {kind} from the server");
                    return Ok(Vec::new());
                };
                let mut v: Value = serde_json::from_str(&json)
                    .map_err(|e| AgentError::Protocol(format!("{kind} from the server: {e}")))?;
                if !v.is_object() {
                    return Err(AgentError::Protocol(format!(
                        "{kind} from the server is not an object"
                    )));
                }
                let (ns, name) = (
                    crate::model::namespace(&v).to_string(),
                    crate::model::name(&v).to_string(),
                );
                if let Some(seen) = &mut self.syncing {
                    seen.insert((kind.to_string(), ns.clone(), name.clone()));
                }
                if kind == "Node" && name == self.node {
                    self.take_pod_cidr(&v);
                    return Ok(Vec::new());
                }
                if kind == "Pod"
                    && let Some(local) = self.store.get(res("Pod"), &ns, &name)
                {
                    let uid = crate::model::meta_str(&v, "uid").unwrap_or_default();
                    if local.uid == uid {
                        // This board's kubelet is the only status writer.
                        v["status"] = local.value()["status"].take();
                    } else {
                        self.remove_local("Pod", &ns, &name);
                    }
                }
                if let Err(e) = self.store.put_mirror(res(kind), v) {
                    log::warn!("keeping {kind} {ns}/{name}: {e}");
                }
                Ok(Vec::new())
            }
            Message::Remove {
                kind,
                namespace,
                name,
            } => {
                if let Some(kind) = mirrored(&kind)
                    && !(kind == "Node" && name == self.node)
                {
                    self.remove_local(kind, &namespace, &name);
                }
                Ok(Vec::new())
            }
            Message::SyncEnd => {
                let seen = self.syncing.take().unwrap_or_default();
                for kind in NODE_KINDS.iter().chain(CLUSTER_KINDS.iter()) {
                    for o in self.store.list(res(kind), None) {
                        let key = (kind.to_string(), o.namespace.clone(), o.name.clone());
                        let ours = match *kind {
                            "Pod" => o.node_name == self.node,
                            "Node" => o.name != self.node,
                            _ => true,
                        };
                        if !seen.contains(&key) && ours {
                            log::info!(
                                "{kind} {}/{} is no longer the server's for this board: removing it",
                                o.namespace,
                                o.name
                            );
                            self.remove_local(kind, &o.namespace, &o.name);
                        }
                    }
                }
                // The server learns the current state of everything.
                let mine: Vec<_> = self
                    .store
                    .list(res("Pod"), None)
                    .into_iter()
                    .filter(|p| p.node_name == self.node)
                    .collect();
                let mut out: Vec<Message> =
                    mine.iter().filter_map(|p| self.status_message(p)).collect();
                if let Some(n) = self.store.get(res("Node"), "", &self.node) {
                    out.push(Message::NodeStatus {
                        json: n.raw.to_string(),
                    });
                }
                Ok(out)
            }
            Message::Refused { reason } => Err(AgentError::Refused(reason)),
            other => Err(AgentError::Protocol(format!(
                "unexpected {} from the server",
                other.name()
            ))),
        }
    }

    /// The pod CIDR the server gave this node, into the local Node (whose
    /// status this board writes): the kubelet and DNS wait for it.
    fn take_pod_cidr(&self, from_server: &Value) {
        let Some(mut local) = self
            .store
            .get(res("Node"), "", &self.node)
            .map(|n| n.value())
        else {
            return;
        };
        let spec = &from_server["spec"];
        if spec["podCIDR"].is_null() || local["spec"]["podCIDR"] == spec["podCIDR"] {
            return;
        }
        local["spec"]["podCIDR"] = spec["podCIDR"].clone();
        local["spec"]["podCIDRs"] = spec["podCIDRs"].clone();
        if let Err(e) = self.store.update(res("Node"), local) {
            log::warn!("taking the pod CIDR {}: {e}", spec["podCIDR"]);
        }
    }

    /// Removes an object the server no longer gives this board. A pod is
    /// deleted gracefully: the kubelet stops it as a `kubectl delete` would.
    fn remove_local(&mut self, kind: &str, ns: &str, name: &str) {
        if let Some(o) = self.store.get(res(kind), ns, name) {
            let result = if kind == "Pod" {
                self.removed_by_server.insert(o.uid.clone());
                self.store
                    .delete_gracefully(res(kind), ns, name, None)
                    .map(drop)
            } else {
                self.store.delete(res(kind), ns, name, None).map(drop)
            };
            if let Err(e) = result {
                log::warn!("removing {kind} {ns}/{name}: {e}");
            }
        }
    }

    /// The pod's status if it differs from what the server last got.
    fn status_message(&mut self, pod: &crate::store::Object) -> Option<Message> {
        let status = pod.value()["status"].to_string();
        if self.sent.get(&pod.uid) == Some(&status) {
            return None;
        }
        self.sent.insert(pod.uid.clone(), status.clone());
        Some(Message::PodStatus {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            status,
        })
    }

    /// What the local kubelet changed, for the server.
    fn local_change(&mut self, ev: &crate::store::WatchEvent) -> Vec<Message> {
        let o = &ev.object;
        // Until the full set is in, the server gets everything at SyncEnd.
        if self.syncing.is_some() {
            return Vec::new();
        }
        match o.resource.kind {
            "Node" if o.name == self.node && ev.kind != EventType::Deleted => {
                vec![Message::NodeStatus {
                    json: o.raw.to_string(),
                }]
            }
            "Pod" if o.node_name == self.node => match ev.kind {
                EventType::Deleted => {
                    self.sent.remove(&o.uid);
                    if self.removed_by_server.remove(&o.uid) {
                        return Vec::new();
                    }
                    vec![Message::PodGone {
                        namespace: o.namespace.clone(),
                        name: o.name.clone(),
                        uid: o.uid.clone(),
                    }]
                }
                _ => self.status_message(o).into_iter().collect(),
            },
            _ => Vec::new(),
        }
    }
}
