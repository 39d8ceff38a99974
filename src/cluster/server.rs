//! The server side of the cluster link: accepts boards, admits them (join or
//! mutual TLS), sends each its pods (and the ConfigMaps and Secrets they
//! read) in full on connect and then as they change, and writes back what
//! its kubelet reports: pod status, the Node, heartbeats (memory only).
//!
//! Everything runs on the executor: one task per board connection, one task
//! routing store changes to the connected boards.

use serde_json::Value;
use smol::Async;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::join::{JoinError, Registry};
use super::protocol::{self, CLUSTER_KINDS, Message, NODE_KINDS};
use super::tls::{self, Link, LinkError, TlsError};
use crate::model::{self, res};
use crate::store::{EventType, Object, Store, WatchEvent};

/// More boards than this at once are refused (a board is a connection).
const MAX_CONNECTIONS: usize = 512;
/// A peer that has not finished its handshake and Hello by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for a board that reads too slowly; past it the link is
/// dropped and the board resyncs when it reconnects.
const OUTBOX: usize = 4096;
/// A board heard from for this long is gone (a partition or a dead board
/// that TCP has not noticed): it beats every 10 s.
pub const SILENCE: Duration = Duration::from_secs(35);

#[derive(Debug)]
pub enum ClusterError {
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    Join(JoinError),
    Tls(TlsError),
    Pki(crate::pki::PkiError),
}

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterError::Listen { addr, source } => write!(
                f,
                "cannot listen for boards on {addr}: {source} (choose another --cluster-listen)"
            ),
            ClusterError::Join(e) => write!(f, "{e}"),
            ClusterError::Tls(e) => write!(f, "{e}"),
            ClusterError::Pki(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ClusterError {}

/// The cluster listener, bound and ready to run.
pub struct Cluster {
    listener: Async<TcpListener>,
    tls: Arc<rustls::ServerConfig>,
    hub: Rc<Hub>,
}

impl Cluster {
    /// Binds `listen` and loads the credentials (a serving certificate for
    /// [`tls::SERVER_NAME`] made for this run, the CA, admitted nodes).
    pub fn start(
        data_dir: &Path,
        listen: SocketAddr,
        store: Rc<Store>,
        own_node: &str,
        cluster_cidr: crate::net::Cidr,
    ) -> Result<Cluster, ClusterError> {
        let creds = crate::pki::ensure(data_dir).map_err(ClusterError::Pki)?;
        let serving = crate::pki::serving_cert(data_dir, &[tls::SERVER_NAME.to_string()])
            .map_err(ClusterError::Pki)?;
        let mut chain = tls::certs_from_pem(&serving.cert_pem).map_err(ClusterError::Tls)?;
        chain.extend(tls::certs_from_pem(&creds.ca_pem).map_err(ClusterError::Tls)?);
        let key = tls::key_from_pem(&serving.key_pem).map_err(ClusterError::Tls)?;
        let tls = tls::server_config(&creds.ca_pem, chain, key).map_err(ClusterError::Tls)?;
        let registry = Registry::open(data_dir).map_err(ClusterError::Join)?;
        let listener =
            Async::<TcpListener>::bind(listen).map_err(|source| ClusterError::Listen {
                addr: listen,
                source,
            })?;
        let hub = Rc::new(Hub {
            store,
            own_node: own_node.to_string(),
            cluster_cidr,
            registry: RefCell::new(registry),
            links: RefCell::default(),
            next_id: Default::default(),
            open: Default::default(),
            streams: RefCell::default(),
        });
        Ok(Cluster { listener, tls, hub })
    }

    /// What the API uses to reach pods on other boards.
    pub fn proxy(&self) -> Proxy {
        Proxy {
            hub: self.hub.clone(),
        }
    }

    /// Accepts boards and routes store changes to them, for the life of the daemon.
    pub async fn run(self, ex: Rc<async_executor::LocalExecutor<'static>>) {
        if let Ok(addr) = self.listener.get_ref().local_addr() {
            log::info!("listening for boards on {addr}");
        }
        let hub = self.hub;
        ex.spawn(route_changes(hub.clone())).detach();
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("accepting a board: {e}");
                    smol::Timer::after(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if hub.open.get() >= MAX_CONNECTIONS {
                log::warn!("board {peer}: refused, {MAX_CONNECTIONS} boards are connected");
                continue;
            }
            let _ = tcp.get_ref().set_nodelay(true);
            let (hub, tls) = (hub.clone(), self.tls.clone());
            ex.spawn(async move {
                hub.open.set(hub.open.get() + 1);
                if let Err(e) = connection(&hub, tcp, tls).await {
                    log::warn!("board {peer}: {e}");
                }
                hub.open.set(hub.open.get() - 1);
            })
            .detach();
        }
    }
}

/// What the connections share.
struct Hub {
    store: Rc<Store>,
    /// The server's own board, which no agent may claim to be.
    own_node: String,
    cluster_cidr: crate::net::Cidr,
    registry: RefCell<Registry>,
    /// Connected nodes: connection id and its outbox.
    links: RefCell<HashMap<String, (u64, smol::channel::Sender<Message>)>>,
    /// Connection ids, and stream ids of proxied logs.
    next_id: std::cell::Cell<u64>,
    open: std::cell::Cell<usize>,
    /// Open log streams: id -> (board, where its data goes).
    streams: RefCell<HashMap<u64, (String, StreamTx)>>,
}

/// A board's messages of one stream (log or exec), as they came.
type StreamTx = smol::channel::Sender<Message>;

impl Hub {
    fn next_id(&self) -> u64 {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        id
    }
}

/// The API's way to pods on other boards.
pub struct Proxy {
    hub: Rc<Hub>,
}

impl Proxy {
    /// (open connections, boards linked): what /metrics reports.
    pub fn connections(&self) -> (usize, usize) {
        (self.hub.open.get(), self.hub.links.borrow().len())
    }

    /// The board that runs `pod`: None when it is not a board of the
    /// cluster (the server's own kubelet runs it), an error when that board
    /// is not connected.
    fn board(&self, pod: &Object) -> Option<Result<String, String>> {
        let node = pod.node_name.as_str();
        if node.is_empty() || !self.hub.registry.borrow().admitted(node) {
            return None;
        }
        Some(match self.hub.connected(node) {
            true => Ok(node.to_string()),
            false => Err(format!(
                "the board {node} running pod {} is not connected to the server",
                pod.name
            )),
        })
    }

    /// Opens a stream on `node` with the request `ask(id)`.
    fn open(&self, node: String, ask: impl FnOnce(u64) -> Message) -> BoardStream {
        let id = self.hub.next_id();
        let (tx, rx) = smol::channel::unbounded();
        self.hub.streams.borrow_mut().insert(id, (node.clone(), tx));
        self.hub.send(&node, ask(id));
        BoardStream {
            id,
            node,
            rx,
            hub: self.hub.clone(),
            owned: true,
        }
    }

    /// Asks the board running `pod` for a container's log.
    pub fn log(
        &self,
        pod: &Object,
        container: &str,
        previous: bool,
        query: &[(String, String)],
    ) -> Option<Result<BoardStream, String>> {
        Some(self.board(pod)?.map(|node| {
            self.open(node, |id| Message::LogRequest {
                id,
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                container: container.to_string(),
                previous,
                query: query.to_vec(),
            })
        }))
    }

    /// Runs `command` in a container of `pod` on its board.
    pub fn exec(
        &self,
        pod: &Object,
        container: &str,
        command: Vec<String>,
    ) -> Option<Result<BoardStream, String>> {
        Some(self.board(pod)?.map(|node| {
            self.open(node, |id| Message::ExecRequest {
                id,
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                container: container.to_string(),
                command,
            })
        }))
    }
}

/// A log or exec streamed from a board; dropping it before the end
/// cancels it there.
pub struct BoardStream {
    id: u64,
    node: String,
    rx: smol::channel::Receiver<Message>,
    hub: Rc<Hub>,
    /// Cleared when a relay thread takes the stream over to its end.
    owned: bool,
}

impl BoardStream {
    /// Waits for the board's first answer: it began, or why not.
    pub async fn started(&self) -> Result<(), String> {
        match self.rx.recv().await {
            Ok(Message::StreamData { .. }) => Ok(()),
            Ok(Message::StreamEnd { error: Some(e), .. }) => Err(e),
            _ => Err(format!("board {} ended the stream", self.node)),
        }
    }

    /// The next bytes of a log; None at its end.
    pub async fn next(&self) -> Option<Result<Vec<u8>, String>> {
        match self.rx.recv().await.ok()? {
            Message::StreamData { data, .. } => Some(Ok(data)),
            Message::StreamEnd { error: Some(e), .. } => Some(Err(e)),
            _ => None,
        }
    }

    /// An exec's output as the two pipes `serve_exec` reads, fed from a
    /// thread, and its exit status.
    pub fn exec_io(
        mut self,
    ) -> std::io::Result<(
        std::fs::File,
        std::fs::File,
        smol::channel::Receiver<crate::api::websocket::ExitStatus>,
    )> {
        use crate::api::websocket::ExitStatus;
        use std::io::Write;
        let (out_r, out_w) = nix::unistd::pipe()?;
        let (err_r, err_w) = nix::unistd::pipe()?;
        let (exit_tx, exit_rx) = smol::channel::bounded(1);
        let rx = self.rx.clone();
        // The board ends the stream with ExecExit; until then it is the thread's.
        self.owned = false;
        let mut writers = [std::fs::File::from(out_w), std::fs::File::from(err_w)];
        std::thread::Builder::new()
            .name("api-exec".into())
            .spawn(move || {
                let mut status = ExitStatus::Unknown;
                while let Ok(msg) = rx.recv_blocking() {
                    match msg {
                        // A client gone is not a reason to stop draining.
                        Message::ExecOutput { stderr, data, .. } => {
                            let _ = writers[usize::from(stderr)].write_all(&data);
                        }
                        Message::ExecExit { code, signal, .. } => {
                            status = match (code, signal) {
                                (Some(c), _) => ExitStatus::Code(c),
                                (None, Some(s)) => ExitStatus::Signal(s),
                                (None, None) => ExitStatus::Unknown,
                            };
                            break;
                        }
                        _ => break,
                    }
                }
                drop(writers);
                let _ = exit_tx.send_blocking(status);
            })?;
        Ok((out_r.into(), err_r.into(), exit_rx))
    }
}

impl Drop for BoardStream {
    fn drop(&mut self) {
        if self.owned && self.hub.streams.borrow_mut().remove(&self.id).is_some() {
            self.hub
                .send(&self.node, Message::StreamCancel { id: self.id });
        }
    }
}

impl Hub {
    fn send(&self, node: &str, msg: Message) {
        let mut links = self.links.borrow_mut();
        // Unbounded so that an idle board's queue costs nothing (a bounded
        // queue allocates all its slots up front); the limit is counted.
        if let Some((_, tx)) = links.get(node)
            && (tx.len() >= OUTBOX || tx.try_send(msg).is_err())
        {
            log::warn!(
                "board {node} reads too slowly: dropping its link (it resyncs on reconnect)"
            );
            links.remove(node);
        }
    }

    fn connected(&self, node: &str) -> bool {
        self.links.borrow().contains_key(node)
    }
}

#[derive(Debug)]
enum ConnError {
    Link(LinkError),
    Timeout,
    Silent,
    Refused(String),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Link(e) => write!(f, "{e}"),
            ConnError::Timeout => write!(f, "no handshake within {HANDSHAKE_TIMEOUT:?}"),
            ConnError::Silent => write!(f, "nothing heard for {SILENCE:?}: dropping the link"),
            ConnError::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl From<LinkError> for ConnError {
    fn from(e: LinkError) -> Self {
        ConnError::Link(e)
    }
}

async fn timeout<T>(f: impl Future<Output = Result<T, LinkError>>) -> Result<T, ConnError> {
    smol::future::or(async { f.await.map_err(ConnError::Link) }, async {
        smol::Timer::after(HANDSHAKE_TIMEOUT).await;
        Err(ConnError::Timeout)
    })
    .await
}

/// One board connection: handshake, Hello, then a join or a session.
async fn connection(
    hub: &Rc<Hub>,
    tcp: Async<TcpStream>,
    tls: Arc<rustls::ServerConfig>,
) -> Result<(), ConnError> {
    let conn =
        rustls::ServerConnection::new(tls).map_err(|e| ConnError::Link(LinkError::Tls(e)))?;
    let mut link = timeout(Link::handshake(tcp, conn)).await?;
    let (version, node) = match timeout(link.recv()).await? {
        Message::Hello { version, node } => (version, node),
        other => {
            return Err(refuse(&mut link, &format!("expected Hello, got {}", other.name())).await);
        }
    };
    if let Some(why) = protocol::check_version(version) {
        return Err(refuse(&mut link, &why).await);
    }
    let Some(cert) = link.peer_certificate().cloned() else {
        return join(hub, link, &node).await;
    };
    let known = hub.registry.borrow().node_of(&cert).map(str::to_string);
    match known {
        Some(n) if n == node => session(hub, link, node).await,
        Some(n) => Err(refuse(&mut link, &format!("this certificate belongs to node {n}, not {node}")).await),
        None => Err(refuse(
            &mut link,
            &format!("the credential of node {node} is revoked (its Node was deleted); remove DATA_DIR/cluster/node.* on the board and restart it to join again"),
        )
        .await),
    }
}

async fn refuse(link: &mut Link, why: &str) -> ConnError {
    link.refuse(why).await;
    ConnError::Refused(why.to_string())
}

/// A board without a certificate shows the token's secret and gets one.
async fn join(hub: &Hub, mut link: Link, node: &str) -> Result<(), ConnError> {
    let (secret, public_key) = match timeout(link.recv()).await? {
        Message::Join { secret, public_key } => (secret, public_key),
        other => {
            return Err(refuse(&mut link, &format!("expected Join, got {}", other.name())).await);
        }
    };
    if !hub.registry.borrow().secret_matches(&secret) {
        return Err(refuse(&mut link, "wrong join token").await);
    }
    if node == hub.own_node {
        let why =
            format!("{node} is the server's own node name; give this board another --node-name");
        return Err(refuse(&mut link, &why).await);
    }
    let issued = hub.registry.borrow_mut().issue(node, &public_key);
    match issued {
        Ok(certificate) => {
            log::info!("board {node} joined the cluster");
            link.send(&Message::Joined { certificate }).await?;
            Ok(())
        }
        Err(e) => Err(refuse(&mut link, &e.to_string()).await),
    }
}

enum Step {
    In(Result<Message, LinkError>),
    Out(Option<Message>),
    Silent,
}

/// An admitted board: its full set, then changes both ways until either side goes.
async fn session(hub: &Rc<Hub>, mut link: Link, node: String) -> Result<(), ConnError> {
    let id = hub.next_id();
    let (tx, rx) = smol::channel::unbounded();
    // A board that reconnects replaces its older connection.
    hub.links.borrow_mut().insert(node.clone(), (id, tx));
    hub.store.heartbeat(&node);
    log::info!("board {node} connected");
    let snapshot = full_set(&hub.store, &node);
    let connected = std::time::Instant::now();
    let result = async {
        link.send(&Message::Welcome {
            version: protocol::VERSION,
        })
        .await?;
        link.send(&Message::ClusterNetwork {
            cluster_cidr: hub.cluster_cidr.to_string(),
        })
        .await?;
        for msg in snapshot {
            link.send(&msg).await?;
        }
        link.send(&Message::SyncEnd).await?;
        let mut heard = std::time::Instant::now();
        loop {
            let step = smol::future::or(
                smol::future::or(async { Step::In(link.recv().await) }, async {
                    Step::Out(rx.recv().await.ok())
                }),
                async {
                    smol::Timer::at(heard + SILENCE).await;
                    Step::Silent
                },
            )
            .await;
            match step {
                Step::Silent => return Err(ConnError::Silent),
                Step::In(Ok(msg)) => {
                    heard = std::time::Instant::now();
                    if let Err(why) = handle(hub, &node, msg) {
                        return Err(refuse(&mut link, &why).await);
                    }
                }
                Step::In(Err(e)) => return Err(ConnError::Link(e)),
                Step::Out(Some(msg @ Message::Refused { .. })) => {
                    let _ = link.send(&msg).await;
                    return Ok(());
                }
                Step::Out(Some(msg)) => link.send(&msg).await?,
                // Replaced by a newer connection, or dropped as too slow.
                Step::Out(None) => return Ok(()),
            }
        }
    }
    .await;
    let mut links = hub.links.borrow_mut();
    if links.get(&node).is_some_and(|(i, _)| *i == id) {
        links.remove(&node);
        // Its log streams end with it.
        hub.streams.borrow_mut().retain(|_, (n, _)| *n != node);
    }
    let t = link.traffic;
    log::info!(
        "board {node} disconnected after {:?} ({} bytes in, {} out)",
        connected.elapsed(),
        t.received,
        t.sent
    );
    result
}

/// What a board reports. An error ends its link.
fn handle(hub: &Hub, node: &str, msg: Message) -> Result<(), String> {
    let store = &hub.store;
    match msg {
        Message::Heartbeat => store.heartbeat(node),
        Message::PodStatus {
            namespace,
            name,
            uid,
            status,
        } => {
            let status: Value = serde_json::from_str(&status)
                .ok()
                .filter(Value::is_object)
                .ok_or("a pod status must be a JSON object")?;
            // A board writes the status of its own pods only.
            if let Some(pod) = store
                .get(res("Pod"), &namespace, &name)
                .filter(|p| p.uid == uid && p.node_name == node)
            {
                let mut v = pod.value();
                if v["status"] != status {
                    v["status"] = status;
                    if let Err(e) = store.update(res("Pod"), v) {
                        log::warn!("status of pod {namespace}/{name} from {node}: {e}");
                    }
                }
            }
        }
        Message::PodGone {
            namespace,
            name,
            uid,
        } => {
            // Only a deletion the server asked for is confirmed this way.
            if store
                .get(res("Pod"), &namespace, &name)
                .is_some_and(|p| p.uid == uid && p.node_name == node && p.deleting)
                && let Err(e) = store.delete(res("Pod"), &namespace, &name, Some(&uid))
            {
                log::warn!("deleting pod {namespace}/{name} for {node}: {e}");
            }
        }
        Message::NodeStatus { json } => {
            let v: Value =
                serde_json::from_str(&json).map_err(|e| format!("node status is not JSON: {e}"))?;
            if !v.is_object() || model::name(&v) != node {
                return Err(format!("a board may report only its own node {node}"));
            }
            let fresh = serde_json::json!({
                "metadata": {"name": node, "labels": v.pointer("/metadata/labels").cloned().unwrap_or_default()},
                "spec": {},
                "status": v["status"].clone(),
            });
            store.heartbeat(node);
            if let Err(e) = crate::node::register(store, fresh) {
                log::warn!("registering node {node}: {e}");
            }
        }
        Message::StreamData { id, .. }
        | Message::ExecOutput { id, .. }
        | Message::StreamEnd { id, .. }
        | Message::ExecExit { id, .. } => {
            let last = matches!(msg, Message::StreamEnd { .. } | Message::ExecExit { .. });
            let mut streams = hub.streams.borrow_mut();
            if let Some((n, tx)) = streams.get(&id)
                && n == node
                && (tx.try_send(msg).is_err() || last)
            {
                streams.remove(&id);
            }
        }
        other => return Err(format!("unexpected {} from a board", other.name())),
    }
    Ok(())
}

/// The ConfigMaps and Secrets (namespace, kind, name) a pod's volumes, env,
/// envFrom and imagePullSecrets read.
pub fn references(pod: &Value) -> BTreeSet<(&'static str, String)> {
    let mut out = BTreeSet::new();
    let spec = &pod["spec"];
    let arr = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let mut add = |kind: &'static str, name: Option<&str>| {
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            out.insert((kind, n.to_string()));
        }
    };
    for vol in arr(&spec["volumes"]) {
        add(
            "ConfigMap",
            vol.pointer("/configMap/name").and_then(Value::as_str),
        );
        add(
            "Secret",
            vol.pointer("/secret/secretName").and_then(Value::as_str),
        );
        for src in arr(&vol
            .pointer("/projected/sources")
            .cloned()
            .unwrap_or_default())
        {
            add(
                "ConfigMap",
                src.pointer("/configMap/name").and_then(Value::as_str),
            );
            add(
                "Secret",
                src.pointer("/secret/name").and_then(Value::as_str),
            );
        }
    }
    for list in ["initContainers", "containers"] {
        for c in arr(&spec[list]) {
            for e in arr(&c["env"]) {
                add(
                    "ConfigMap",
                    e.pointer("/valueFrom/configMapKeyRef/name")
                        .and_then(Value::as_str),
                );
                add(
                    "Secret",
                    e.pointer("/valueFrom/secretKeyRef/name")
                        .and_then(Value::as_str),
                );
            }
            for e in arr(&c["envFrom"]) {
                add(
                    "ConfigMap",
                    e.pointer("/configMapRef/name").and_then(Value::as_str),
                );
                add(
                    "Secret",
                    e.pointer("/secretRef/name").and_then(Value::as_str),
                );
            }
        }
    }
    for s in arr(&spec["imagePullSecrets"]) {
        add("Secret", s["name"].as_str());
    }
    out
}

fn upsert(obj: &Object) -> Message {
    let json = match obj.resource.kind {
        "Node" => protocol::network_view(&obj.value()).to_string(),
        _ => obj.raw.to_string(),
    };
    Message::Upsert {
        kind: obj.resource.kind.to_string(),
        json,
    }
}

/// What the agent of `node` holds: the cluster-wide network objects, then
/// every pod bound to it and everything they read, referenced objects first.
fn full_set(store: &Store, node: &str) -> Vec<Message> {
    let mut out: Vec<Message> = CLUSTER_KINDS
        .iter()
        .flat_map(|kind| store.list(res(kind), None))
        .map(|o| upsert(&o))
        .collect();
    let pods: Vec<_> = store
        .list(res("Pod"), None)
        .into_iter()
        .filter(|p| p.node_name == node)
        .collect();
    let mut refs = BTreeSet::new();
    for p in &pods {
        for (kind, name) in references(&p.value()) {
            refs.insert((kind, p.namespace.clone(), name));
        }
    }
    out.extend(
        refs.iter()
            .filter_map(|(kind, ns, name)| store.get(res(kind), ns, name))
            .map(|o| upsert(&o)),
    );
    out.extend(pods.iter().map(|p| upsert(p)));
    out
}

/// The object without what changes on every write (status, resourceVersion).
fn desired(obj: &Object) -> Value {
    let mut v = obj.value();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    model::meta_mut(&mut v).remove("resourceVersion");
    v
}

/// Sends each store change to the boards it concerns.
async fn route_changes(hub: Rc<Hub>) {
    let kinds: Vec<_> = NODE_KINDS
        .iter()
        .chain(CLUSTER_KINDS.iter())
        .map(|k| res(k))
        .collect();
    loop {
        let Ok(rx) = hub
            .store
            .watch_many(&kinds, None, hub.store.resource_version())
        else {
            continue;
        };
        while let Ok(ev) = rx.recv().await {
            route(&hub, &ev);
        }
    }
}

fn route(hub: &Hub, ev: &WatchEvent) {
    let obj = &ev.object;
    let removed = || Message::Remove {
        kind: obj.resource.kind.to_string(),
        namespace: obj.namespace.clone(),
        name: obj.name.clone(),
    };
    let remove = |node: &str| hub.send(node, removed());
    let broadcast = |msg: Message| {
        let nodes: Vec<String> = hub.links.borrow().keys().cloned().collect();
        for node in nodes {
            hub.send(&node, msg.clone());
        }
    };
    match obj.resource.kind {
        "Node" if ev.kind == EventType::Deleted => {
            revoke(hub, &obj.name);
            broadcast(removed());
        }
        // Heartbeats and conditions are not news to other boards.
        "Node" => {
            let view = |o: &Object| protocol::network_view(&o.value());
            if ev.prev.as_deref().map(view) != Some(view(obj)) {
                broadcast(upsert(obj));
            }
        }
        "Service" | "EndpointSlice" => match ev.kind {
            EventType::Deleted => broadcast(removed()),
            _ => broadcast(upsert(obj)),
        },
        "Pod" => {
            let before = ev.prev.as_ref().map(|p| p.node_name.as_str()).unwrap_or("");
            if !before.is_empty() && before != obj.node_name {
                remove(before);
            }
            let node = obj.node_name.as_str();
            if node.is_empty() || !hub.connected(node) {
                return;
            }
            if ev.kind == EventType::Deleted {
                return remove(node);
            }
            // The status came from the board itself: nothing to tell it.
            if before == node && ev.prev.as_ref().is_some_and(|p| desired(p) == desired(obj)) {
                return;
            }
            if before != node {
                let v = obj.value();
                for (kind, name) in references(&v) {
                    if let Some(o) = hub.store.get(res(kind), &obj.namespace, &name) {
                        hub.send(node, upsert(&o));
                    }
                }
            }
            hub.send(node, upsert(obj));
        }
        kind => {
            // A ConfigMap or Secret: to the connected boards whose pods read it.
            let nodes: BTreeSet<String> = hub
                .store
                .list(res("Pod"), Some(&obj.namespace))
                .iter()
                .filter(|p| !p.node_name.is_empty() && hub.connected(&p.node_name))
                .filter(|p| references(&p.value()).contains(&(kind_name(kind), obj.name.clone())))
                .map(|p| p.node_name.clone())
                .collect();
            for node in nodes {
                match ev.kind {
                    EventType::Deleted => remove(&node),
                    _ => hub.send(&node, upsert(obj)),
                }
            }
        }
    }
}

fn kind_name(kind: &str) -> &'static str {
    match kind {
        "ConfigMap" => "ConfigMap",
        _ => "Secret",
    }
}

/// `kubectl delete node X`: X's credential stops working, and its link ends.
fn revoke(hub: &Hub, node: &str) {
    match hub.registry.borrow_mut().revoke(node) {
        Ok(true) => log::info!("node {node} deleted: its cluster credential is revoked"),
        Ok(false) => {}
        Err(e) => log::error!("revoking the credential of node {node}: {e}"),
    }
    hub.send(
        node,
        Message::Refused {
            reason: format!("node {node} was deleted from the cluster; its credential is revoked"),
        },
    );
    hub.links.borrow_mut().remove(node);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_cover_volumes_env_and_pull_secrets() {
        let pod = json!({"spec": {
            "volumes": [{"configMap": {"name": "cm1"}}, {"secret": {"secretName": "s1"}},
                        {"projected": {"sources": [{"configMap": {"name": "cm2"}}, {"secret": {"name": "s2"}}]}},
                        {"emptyDir": {}}],
            "initContainers": [{"envFrom": [{"configMapRef": {"name": "cm3"}}]}],
            "containers": [{"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}},
                                    {"name": "B", "value": "x"}],
                            "envFrom": [{"secretRef": {"name": "s4"}}]}],
            "imagePullSecrets": [{"name": "pull"}],
        }});
        let got: Vec<String> = references(&pod)
            .into_iter()
            .map(|(k, n)| format!("{k}/{n}"))
            .collect();
        assert_eq!(
            got,
            [
                "ConfigMap/cm1",
                "ConfigMap/cm2",
                "ConfigMap/cm3",
                "Secret/pull",
                "Secret/s1",
                "Secret/s2",
                "Secret/s3",
                "Secret/s4"
            ]
        );
    }
}
