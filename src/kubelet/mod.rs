//! The kubelet: makes this board run the pods bound to it.
//!
//! Entry point: [`Kubelet::run`]. One loop, level-triggered: any change (a
//! pod event, a container exit, a finished image pull, a timer) wakes it, and
//! it syncs every pod of this node against what is running. Each pod's status
//! has one writer: this loop.

mod backoff;
mod link;
pub mod logs;
mod network;
mod node_status;
mod plan;
mod probes;
mod status;
mod volumes;

use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::events::{self, Type};
use crate::image::{ImageRecord, ImageStore};
use crate::model::res;
use crate::runtime::protocol::{self as rt, ContainerInfo, Event};
use crate::store::{self, Object, Store};
pub use link::Link;

const COMPONENT: &str = "kubelet";

pub struct Config {
    pub node_name: String,
    pub data_dir: PathBuf,
    /// Pids a pod's cgroup may hold.
    pub pids_limit: u64,
    /// Size cap of a container's log file, and how many rotated files stay.
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// From the registries file; pods' pull secrets are added per pull.
    pub credentials: crate::image::Credentials,
    /// The pods' bridge; None: pods get loopback only.
    pub pod_bridge: Option<String>,
}

/// What the kubelet knows of one container beyond the runtime.
struct Container {
    /// Runtime id of the current incarnation: `<pod uid>-<name>-<attempt>`.
    id: Option<String>,
    /// Incarnations started so far minus one: the restartCount.
    restarts: u32,
    started: bool,
    state: status::State,
    last_state: Option<status::State>,
    backoff: backoff::Backoff,
    /// Not restarted before this.
    not_before: Option<Instant>,
    started_at: Option<SystemTime>,
    image_id: String,
    /// The probes of the running incarnation.
    probes: Option<probes::Probes>,
}

impl Container {
    fn new() -> Container {
        Container {
            id: None,
            restarts: 0,
            started: false,
            state: status::State::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last_state: None,
            backoff: backoff::Backoff::new(),
            not_before: None,
            started_at: None,
            image_id: String::new(),
            probes: None,
        }
    }

    fn running(&self) -> bool {
        matches!(self.state, status::State::Running { .. })
    }

    fn exited_ok(&self) -> bool {
        matches!(self.state, status::State::Terminated { exit_code: 0, .. })
    }
}

struct Pod {
    sandbox: bool,
    /// From CNI ADD; None for hostNetwork pods and before the network is up.
    ip: Option<std::net::Ipv4Addr>,
    volumes: Option<BTreeMap<String, PathBuf>>,
    containers: HashMap<String, Container>,
    start_time: SystemTime,
    /// SIGTERM sent; SIGKILL at this instant.
    kill_at: Option<Instant>,
    failure: Option<(String, String)>,
}

enum Pull {
    Running,
    Done,
    Failed {
        message: String,
        retry_at: Instant,
        delay: Duration,
        shown: bool,
    },
}

pub struct Kubelet {
    store: Rc<Store>,
    cfg: Config,
    link: Link,
    images: Arc<ImageStore>,
    pods: RefCell<HashMap<String, Pod>>,
    pulls: RefCell<HashMap<String, Pull>>,
    wake: smol::channel::Sender<()>,
    woken: smol::channel::Receiver<()>,
    /// Exec sessions waiting for their process's exit, and exits that came
    /// before their session asked.
    exec_waiters: RefCell<HashMap<u64, smol::channel::Sender<ExitStatus>>>,
    exec_exits: RefCell<HashMap<u64, ExitStatus>>,
    /// Runtime ids of running containers, for log streams on other threads.
    running: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    network: Option<network::PodNetwork>,
}

pub use crate::api::websocket::ExitStatus;

impl Kubelet {
    pub fn new(store: Rc<Store>, cfg: Config, link: Link, images: Arc<ImageStore>) -> Rc<Kubelet> {
        let (wake, woken) = smol::channel::bounded(1);
        let network = cfg
            .pod_bridge
            .clone()
            .map(|bridge| network::PodNetwork::new(bridge, &cfg.data_dir));
        Rc::new(Kubelet {
            network,
            store,
            cfg,
            link,
            images,
            pods: RefCell::new(HashMap::new()),
            pulls: RefCell::new(HashMap::new()),
            wake,
            woken,
            exec_waiters: RefCell::new(HashMap::new()),
            exec_exits: RefCell::new(HashMap::new()),
            running: Arc::default(),
        })
    }

    /// The log file of a container of `pod` (the one before the current, for
    /// `previous`), and a check that tells a follower when it has ended.
    pub fn log_file(
        &self,
        pod: &Object,
        container: &str,
        previous: bool,
    ) -> Result<(PathBuf, impl Fn() -> bool + Send + 'static), String> {
        let pods = self.pods.borrow();
        let c = pods
            .get(&pod.uid)
            .and_then(|p| p.containers.get(container))
            .filter(|c| c.id.is_some())
            .ok_or_else(|| format!("container \"{container}\" in pod \"{}\" is waiting to start: ContainerCreating", pod.name))?;
        let attempt = match previous {
            false => attempt_of(c.id.as_deref().unwrap_or_default()),
            true if c.restarts == 0 => {
                return Err(format!(
                    "previous terminated container \"{container}\" in pod \"{}\" not found",
                    pod.name
                ));
            }
            true => attempt_of(c.id.as_deref().unwrap_or_default()).saturating_sub(1),
        };
        let id = format!("{}-{container}-{attempt}", pod.uid);
        let running = self.running.clone();
        let ended = move || !running.lock().is_ok_and(|r| r.contains(&id));
        Ok((
            log_path(&self.cfg.data_dir, &pod.uid, container, attempt),
            ended,
        ))
    }

    /// Starts `args` in a running container of `pod`; the receiver yields its
    /// exit status.
    pub async fn exec(
        &self,
        pod: &Object,
        container: &str,
        args: Vec<String>,
    ) -> Result<
        (
            crate::runtime::ExecHandle,
            smol::channel::Receiver<ExitStatus>,
        ),
        String,
    > {
        let id = self
            .pods
            .borrow()
            .get(&pod.uid)
            .and_then(|p| p.containers.get(container))
            .filter(|c| c.running())
            .and_then(|c| c.id.clone())
            .ok_or_else(|| format!("container {container} is not running in pod {}", pod.name))?;
        let handle = self.link.exec(&id, args, Vec::new()).await?;
        let (tx, rx) = smol::channel::bounded(1);
        match self.exec_exits.borrow_mut().remove(&handle.exec_id) {
            Some(status) => {
                let _ = tx.try_send(status);
            }
            None => {
                self.exec_waiters.borrow_mut().insert(handle.exec_id, tx);
            }
        }
        Ok((handle, rx))
    }

    fn poke(&self) {
        let _ = self.wake.try_send(());
    }

    /// Runs for the life of the daemon.
    pub async fn run(
        self: Rc<Self>,
        ex: Rc<async_executor::LocalExecutor<'static>>,
        events: smol::channel::Receiver<Event>,
    ) {
        if let Err(e) = self.reattach().await {
            log::error!("reattaching running containers: {e}");
        }
        // Addresses of pods deleted while the daemon was away (or half torn
        // down by a crash) go back; this also brings the bridge up.
        if let Some(n) = &self.network {
            let keep: Vec<String> = self
                .store
                .list(res("Pod"), None)
                .iter()
                .filter(|p| p.node_name == self.cfg.node_name)
                .map(|p| p.uid.clone())
                .collect();
            if let Err(e) = n
                .release_stale(&self.store, &self.cfg.node_name, &keep)
                .await
            {
                log::warn!("releasing the addresses of gone pods: {e}");
            }
        }
        let me = self.clone();
        ex.spawn(
            async move { node_status::run(&me.store, &me.cfg.node_name, &me.cfg.data_dir).await },
        )
        .detach();
        // Pod changes wake the loop. The first watch starts here, before the
        // first pass lists the pods, so no change falls between the two.
        let me = self.clone();
        let mut watch = self
            .store
            .watch(res("Pod"), None, self.store.resource_version());
        ex.spawn(async move {
            loop {
                if let Ok(w) = watch {
                    while w.recv().await.is_ok() {
                        me.poke();
                    }
                }
                // Dropped (a slow watcher): a pass catches up on what it missed.
                me.poke();
                watch = me
                    .store
                    .watch(res("Pod"), None, me.store.resource_version());
            }
        })
        .detach();
        // Container exits update what we know, then wake the loop.
        let me = self.clone();
        ex.spawn(async move {
            while let Ok(ev) = events.recv().await {
                me.on_runtime_event(ev);
                me.poke();
            }
            log::error!("the runtime helper link closed; containers are no longer supervised");
        })
        .detach();
        loop {
            let next = self.sync_all(&ex).await;
            let timer = async {
                match next {
                    Some(at) => {
                        smol::Timer::at(at).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            smol::future::or(
                async {
                    let _ = self.woken.recv().await;
                },
                timer,
            )
            .await;
        }
    }

    /// Rebuilds what we know from the runtime after a daemon restart: the
    /// containers kept running; restart counts come from the pods' status.
    async fn reattach(&self) -> Result<(), String> {
        let mut running = self.link.list().await?;
        let by_uid = || -> HashMap<String, Arc<Object>> {
            self.store
                .list(res("Pod"), None)
                .into_iter()
                .map(|p| (p.uid.clone(), p))
                .collect()
        };
        // The last daemon died between creating and starting these: finish
        // the start, or the next sync would replace them and count a
        // restart for a container that never ran.
        let known = by_uid();
        for c in running.iter_mut().filter(|c| {
            c.status == rt::Status::Created && c.exit.is_none() && known.contains_key(&c.pod_uid)
        }) {
            match self.link.start_container(&c.id).await {
                Ok(info) => {
                    log::info!("started container {}, created before the restart", c.id);
                    *c = info;
                }
                Err(e) => log::warn!(
                    "starting container {}, created before the restart: {e}",
                    c.id
                ),
            }
        }
        // Listed again: the starts above let other tasks change the store.
        let known = by_uid();
        let mut pods = self.pods.borrow_mut();
        for c in running {
            let Some(pod) = known.get(&c.pod_uid) else {
                // Its pod was deleted while the daemon was away, or lost with
                // a damaged database: the first pass removes what it left.
                if !pods.contains_key(&c.pod_uid) {
                    log::info!("container {} belongs to no known pod: removing it", c.id);
                }
                pods.entry(c.pod_uid.clone())
                    .or_insert_with(|| new_pod(&Value::Null));
                continue;
            };
            let v = pod.value();
            let p = pods.entry(pod.uid.clone()).or_insert_with(|| new_pod(&v));
            // Only a running container proves the sandbox outlived us (after
            // a reboot every container has exited and the sandbox is gone);
            // otherwise sync_pod asks for it, which is a no-op if it is there.
            p.sandbox |= c.exit.is_none() && c.status == rt::Status::Running;
            // With its sandbox, the pod keeps the address CNI gave it.
            if p.sandbox && p.ip.is_none() {
                p.ip = v
                    .pointer("/status/podIP")
                    .and_then(Value::as_str)
                    .and_then(|ip| ip.parse().ok());
            }
            let restarts = container_status(&v, &c.name)
                .and_then(|s| s["restartCount"].as_u64())
                .unwrap_or(0) as u32;
            let cont = p
                .containers
                .entry(c.name.clone())
                .or_insert_with(Container::new);
            // Several incarnations may be listed: keep the newest.
            let attempt = attempt_of(&c.id);
            if cont
                .id
                .as_deref()
                .is_some_and(|id| attempt_of(id) > attempt)
            {
                continue;
            }
            cont.id = Some(c.id.clone());
            cont.restarts = restarts.max(attempt);
            cont.started = true;
            apply_info(cont, &c, &self.running);
        }
        log::info!("reattached {} pods with running containers", pods.len());
        Ok(())
    }

    fn on_runtime_event(&self, ev: Event) {
        let (id, exit_code, signal, oom_killed, finished_at) = match ev {
            Event::Exited {
                id,
                exit_code,
                signal,
                oom_killed,
                finished_at,
            } => (id, exit_code, signal, oom_killed, finished_at),
            Event::ExecExited {
                exec_id,
                exit_code,
                signal,
            } => {
                log::debug!("exec {exec_id} exited: code {exit_code:?}, signal {signal:?}");
                let status = match (exit_code, signal) {
                    (Some(c), _) => ExitStatus::Code(c),
                    (None, Some(s)) => ExitStatus::Signal(s),
                    (None, None) => ExitStatus::Unknown,
                };
                match self.exec_waiters.borrow_mut().remove(&exec_id) {
                    Some(tx) => {
                        let _ = tx.try_send(status);
                    }
                    None => {
                        self.exec_exits.borrow_mut().insert(exec_id, status);
                    }
                }
                return;
            }
        };
        if let Ok(mut r) = self.running.lock() {
            r.remove(&id);
        }
        let mut pods = self.pods.borrow_mut();
        for p in pods.values_mut() {
            for c in p.containers.values_mut() {
                if c.id.as_deref() == Some(id.as_str()) {
                    c.probes = None;
                    c.state = terminated(exit_code, signal, oom_killed, c.started_at, finished_at);
                }
            }
        }
        drop(pods);
        if oom_killed {
            // `<pod uid>-<container>-<attempt>`: the pod is found by uid.
            let pod = self
                .store
                .list(res("Pod"), None)
                .into_iter()
                .find(|p| id.starts_with(&format!("{}-", p.uid)));
            if let Some(pod) = pod {
                let msg = format!("Memory cgroup out of memory: container {id} was killed");
                events::record(
                    &self.store,
                    &pod,
                    Type::Warning,
                    "OOMKilling",
                    &msg,
                    COMPONENT,
                    &self.cfg.node_name,
                );
            }
        }
    }

    /// One pass over every pod of this node. Returns when to look again.
    async fn sync_all(
        self: &Rc<Self>,
        ex: &Rc<async_executor::LocalExecutor<'static>>,
    ) -> Option<Instant> {
        let mine: Vec<Arc<Object>> = self
            .store
            .list(res("Pod"), None)
            .into_iter()
            .filter(|p| p.node_name == self.cfg.node_name)
            .collect();
        let mut next: Option<Instant> = None;
        let mut at = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for pod in &mine {
            match self.sync_pod(pod, ex).await {
                Ok(t) => at(t),
                Err(e) => {
                    log::warn!("pod {}/{}: {e}", pod.namespace, pod.name);
                    // A failed step (a CNI plugin, the runtime) is tried again.
                    at(Some(Instant::now() + Duration::from_secs(2)));
                }
            }
        }
        // Pods removed from the store (force delete) still hold containers.
        let gone: Vec<String> = self
            .pods
            .borrow()
            .keys()
            .filter(|uid| !mine.iter().any(|p| &p.uid == *uid))
            .cloned()
            .collect();
        for uid in gone {
            if let Err(e) = self.teardown(&uid).await {
                log::warn!("cleaning up pod {uid}: {e}");
                at(Some(Instant::now() + Duration::from_secs(2)));
            }
        }
        at(self
            .pulls
            .borrow()
            .values()
            .filter_map(|p| match p {
                Pull::Failed { retry_at, .. } => Some(*retry_at),
                _ => None,
            })
            .min());
        next
    }

    async fn sync_pod(
        self: &Rc<Self>,
        pod: &Arc<Object>,
        ex: &Rc<async_executor::LocalExecutor<'static>>,
    ) -> Result<Option<Instant>, String> {
        let v = pod.value();
        self.pods
            .borrow_mut()
            .entry(pod.uid.clone())
            .or_insert_with(|| new_pod(&v));
        if store::is_deleting(&v) {
            return self.terminate(pod, &v, ex).await;
        }
        let phase = v
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Pending");
        if phase == "Succeeded" || phase == "Failed" {
            return Ok(None);
        }
        if !self.pods.borrow()[&pod.uid].sandbox {
            let hostname = v
                .pointer("/spec/hostname")
                .and_then(Value::as_str)
                .unwrap_or(&pod.name)
                .to_string();
            let host_network = v
                .pointer("/spec/hostNetwork")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            self.link
                .create_sandbox(&pod.uid, &hostname, host_network)
                .await?;
            self.pods
                .borrow_mut()
                .get_mut(&pod.uid)
                .expect("inserted above")
                .sandbox = true;
        }
        let host_network = v.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true);
        if !host_network
            && self.pods.borrow()[&pod.uid].ip.is_none()
            && let Some(n) = &self.network
            && let Some(ip) = n
                .add(&self.store, &self.cfg.node_name, &v, &pod.uid)
                .await?
        {
            self.pods
                .borrow_mut()
                .get_mut(&pod.uid)
                .expect("inserted above")
                .ip = Some(ip);
            self.write_status(pod, &v);
        }
        if self.pods.borrow()[&pod.uid].volumes.is_none() {
            let cm = |name: &str| {
                self.store
                    .get(res("ConfigMap"), &pod.namespace, name)
                    .map(|o| o.value())
            };
            let secret = |name: &str| {
                self.store
                    .get(res("Secret"), &pod.namespace, name)
                    .map(|o| o.value())
            };
            match volumes::prepare(
                &self.cfg.data_dir,
                &v,
                &volumes::Sources {
                    config_map: &cm,
                    secret: &secret,
                },
            ) {
                Ok(vols) => {
                    self.pods
                        .borrow_mut()
                        .get_mut(&pod.uid)
                        .expect("present")
                        .volumes = Some(vols)
                }
                Err(e) => {
                    events::record(
                        &self.store,
                        pod,
                        Type::Warning,
                        "FailedMount",
                        &e,
                        COMPONENT,
                        &self.cfg.node_name,
                    );
                    self.write_status(pod, &v);
                    return Ok(Some(Instant::now() + Duration::from_secs(10)));
                }
            }
        }
        let mut next = None;
        let policy = v
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always")
            .to_string();
        // Init containers, one at a time, each to success.
        let inits: Vec<Value> = v
            .pointer("/spec/initContainers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut initialized = true;
        for c in &inits {
            let name = c["name"].as_str().unwrap_or_default();
            let done = self.pods.borrow()[&pod.uid]
                .containers
                .get(name)
                .is_some_and(Container::exited_ok);
            if done {
                continue;
            }
            initialized = false;
            // An init container that fails restarts unless the pod never restarts.
            let init_policy = if policy == "Never" {
                "Never"
            } else {
                "OnFailure"
            };
            next = self.sync_container(pod, &v, c, init_policy, ex).await?;
            break;
        }
        if initialized {
            let containers: Vec<Value> = v
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for c in &containers {
                if let Some(t) = self.sync_container(pod, &v, c, &policy, ex).await? {
                    next = Some(next.map_or(t, |n: Instant| n.min(t)));
                }
            }
        }
        self.write_status(pod, &v);
        Ok(next)
    }

    /// Starts, restarts or leaves one container. Returns when to look again.
    async fn sync_container(
        self: &Rc<Self>,
        pod: &Arc<Object>,
        v: &Value,
        c: &Value,
        policy: &str,
        ex: &Rc<async_executor::LocalExecutor<'static>>,
    ) -> Result<Option<Instant>, String> {
        let name = c["name"].as_str().unwrap_or_default().to_string();
        let now = Instant::now();
        let (needs_start, wait_until) = {
            let mut pods = self.pods.borrow_mut();
            let p = pods.get_mut(&pod.uid).expect("present");
            let cont = p
                .containers
                .entry(name.clone())
                .or_insert_with(Container::new);
            match &cont.state {
                status::State::Running { .. } => {
                    if cont.probes.is_none() {
                        match probes::Probes::new(c, now) {
                            Ok(p) => cont.probes = Some(p),
                            Err(e) => log::warn!(
                                "pod {}/{} container {name}: {e}",
                                pod.namespace,
                                pod.name
                            ),
                        }
                    }
                    let due = match cont.probes.as_mut() {
                        Some(p) => p.take_due(now),
                        None => Vec::new(),
                    };
                    let next = cont.probes.as_ref().and_then(|p| p.due(now));
                    let id = cont.id.clone().unwrap_or_default();
                    drop(pods);
                    for kind in due {
                        self.spawn_probe(ex, pod, c, &id, kind);
                    }
                    return Ok(next);
                }
                status::State::Waiting { .. } => {
                    (cont.not_before.is_none_or(|t| t <= now), cont.not_before)
                }
                status::State::Terminated { exit_code, .. } => {
                    if !backoff::should_restart(policy, *exit_code) {
                        (false, None)
                    } else {
                        let ran = cont
                            .started_at
                            .map(|s| SystemTime::now().duration_since(s).unwrap_or_default())
                            .unwrap_or_default();
                        let delay = match cont.not_before {
                            Some(t) => t.saturating_duration_since(now),
                            None => {
                                let d = cont.backoff.next_delay(ran);
                                cont.not_before = Some(now + d);
                                if !d.is_zero() {
                                    let msg = backoff::crash_loop_message(
                                        d,
                                        &name,
                                        &pod.namespace,
                                        &pod.name,
                                        &pod.uid,
                                    );
                                    cont.last_state = Some(cont.state.clone());
                                    cont.state = status::State::Waiting {
                                        reason: "CrashLoopBackOff".into(),
                                        message: msg.clone(),
                                    };
                                    drop(pods);
                                    events::record(
                                        &self.store,
                                        pod,
                                        Type::Warning,
                                        "BackOff",
                                        "Back-off restarting failed container",
                                        COMPONENT,
                                        &self.cfg.node_name,
                                    );
                                    return Ok(Some(now + d));
                                }
                                d
                            }
                        };
                        (delay.is_zero(), Some(now + delay))
                    }
                }
            }
        };
        if !needs_start {
            return Ok(wait_until);
        }
        let image = c["image"].as_str().unwrap_or_default().to_string();
        let record = match self.ensure_image(pod, c, &image, ex) {
            ImageState::Ready(r) => r,
            ImageState::Waiting => return Ok(None),
            ImageState::Failed {
                reason,
                message,
                retry_at,
            } => {
                self.set_waiting(&pod.uid, &name, &reason, &message);
                return Ok(retry_at);
            }
        };
        match self.start_container(ex, pod, v, c, &record).await {
            Ok(()) => Ok(None),
            Err(e) => {
                events::record(
                    &self.store,
                    pod,
                    Type::Warning,
                    "Failed",
                    &e,
                    COMPONENT,
                    &self.cfg.node_name,
                );
                self.set_waiting(&pod.uid, &name, "CreateContainerError", &e);
                let mut pods = self.pods.borrow_mut();
                let cont = pods
                    .get_mut(&pod.uid)
                    .and_then(|p| p.containers.get_mut(&name))
                    .expect("present");
                let d = cont
                    .backoff
                    .next_delay(Duration::ZERO)
                    .max(Duration::from_secs(1));
                cont.not_before = Some(Instant::now() + d);
                Ok(cont.not_before)
            }
        }
    }

    fn set_waiting(&self, uid: &str, name: &str, reason: &str, message: &str) {
        if let Some(c) = self
            .pods
            .borrow_mut()
            .get_mut(uid)
            .and_then(|p| p.containers.get_mut(name))
            && !c.running()
        {
            c.state = status::State::Waiting {
                reason: reason.into(),
                message: message.into(),
            };
        }
    }

    async fn start_container(
        self: &Rc<Self>,
        ex: &Rc<async_executor::LocalExecutor<'static>>,
        pod: &Arc<Object>,
        v: &Value,
        c: &Value,
        img: &ImageRecord,
    ) -> Result<(), String> {
        let name = c["name"].as_str().unwrap_or_default().to_string();
        let images = self.images.clone();
        let img2 = img.clone();
        let (layers, config) = smol::unblock(move || {
            Ok::<_, String>((
                images.layers(&img2).map_err(|e| e.to_string())?,
                images.config(&img2).map_err(|e| e.to_string())?,
            ))
        })
        .await?;
        let cm = |n: &str| {
            self.store
                .get(res("ConfigMap"), &pod.namespace, n)
                .map(|o| o.value())
        };
        let secret = |n: &str| {
            self.store
                .get(res("Secret"), &pod.namespace, n)
                .map(|o| o.value())
        };
        let allocatable = self
            .store
            .get(res("Node"), "", &self.cfg.node_name)
            .map(|n| n.value()["status"]["allocatable"].take())
            .unwrap_or_default();
        let services: Vec<Value> = self
            .store
            .list(res("Service"), Some(&pod.namespace))
            .iter()
            .map(|o| o.value())
            .collect();
        let service_env = crate::net::service_env::variables(v, &services);
        let pod_ip = self.pods.borrow()[&pod.uid].ip.map(|ip| ip.to_string());
        let passwd = || read_from_layers(&layers, "etc/passwd");
        let group = || read_from_layers(&layers, "etc/group");
        let sources = plan::Sources {
            config_map: &cm,
            secret: &secret,
            passwd: &passwd,
            group: &group,
            node_name: &self.cfg.node_name,
            pod_ip: pod_ip.as_deref().unwrap_or_else(|| {
                v.pointer("/status/podIP")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            }),
            host_ip: v
                .pointer("/status/hostIP")
                .and_then(Value::as_str)
                .unwrap_or(""),
            node_allocatable: &allocatable,
            service_env: &service_env,
        };
        let plan = plan::plan_container(v, c, &config, &sources).map_err(|e| e.to_string())?;
        let vols = self.pods.borrow()[&pod.uid]
            .volumes
            .clone()
            .unwrap_or_default();
        let mounts = plan
            .mounts
            .iter()
            .map(|m| {
                let host = vols
                    .get(&m.volume)
                    .ok_or_else(|| format!("volume {:?} is not defined in the pod", m.volume))?;
                Ok(rt::VolumeMount {
                    host_path: if m.sub_path.is_empty() {
                        host.clone()
                    } else {
                        host.join(&m.sub_path)
                    },
                    container_path: m.container_path.clone().into(),
                    read_only: m.read_only,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let attempt = {
            let pods = self.pods.borrow();
            let cont = &pods[&pod.uid].containers[&name];
            if cont.id.is_some() {
                cont.restarts + 1
            } else {
                0
            }
        };
        let confinement = crate::security::confinement(v, c);
        if confinement.run_as_non_root && plan.uid == 0 {
            return Err(format!(
                "container has runAsNonRoot and image will run as root (pod: \"{}_{}({})\", container: {name})",
                pod.name, pod.namespace, pod.uid
            ));
        }
        let security = rt::Security {
            devices: confinement
                .devices
                .iter()
                .map(|d| host_device(d))
                .collect::<Result<_, _>>()?,
            ..confinement.runtime
        };
        let id = format!("{}-{name}-{attempt}", pod.uid);
        let id_for_hook = id.clone();
        let spec = rt::ContainerSpec {
            name: name.clone(),
            layers,
            args: plan.args,
            env: plan.env,
            cwd: plan.cwd,
            user: rt::User {
                uid: plan.uid,
                gid: plan.gid,
                additional_gids: plan.additional_gids,
            },
            mounts,
            resources: rt::Resources {
                cpu_request_millis: plan.cpu_request_millis,
                cpu_limit_millis: plan.cpu_limit_millis,
                memory_limit_bytes: plan.memory_limit_bytes,
                pids_limit: Some(self.cfg.pids_limit),
            },
            log_path: log_path(&self.cfg.data_dir, &pod.uid, &name, attempt),
            log_max_bytes: self.cfg.log_max_bytes,
            log_max_files: self.cfg.log_max_files,
            security,
        };
        std::fs::create_dir_all(spec.log_path.parent().expect("log paths have a parent"))
            .map_err(|e| e.to_string())?;
        // The previous incarnation goes first (its log file stays for --previous).
        let previous = self.pods.borrow()[&pod.uid].containers[&name].id.clone();
        if let Some(old) = previous {
            let _ = self.link.delete(&old).await;
        }
        let info = self.link.run_container(&id, &pod.uid, spec).await?;
        {
            let mut pods = self.pods.borrow_mut();
            let cont = pods
                .get_mut(&pod.uid)
                .and_then(|p| p.containers.get_mut(&name))
                .expect("present");
            if cont.id.is_some() {
                cont.restarts += 1;
                if !matches!(cont.state, status::State::Waiting { .. }) || cont.last_state.is_none()
                {
                    cont.last_state = Some(cont.state.clone());
                }
            }
            cont.id = Some(id);
            cont.started = true;
            cont.not_before = None;
            cont.image_id = img.digest.to_string();
            apply_info(cont, &info, &self.running);
        }
        events::record(
            &self.store,
            pod,
            Type::Normal,
            "Created",
            &format!("Created container {name}"),
            COMPONENT,
            &self.cfg.node_name,
        );
        events::record(
            &self.store,
            pod,
            Type::Normal,
            "Started",
            &format!("Started container {name}"),
            COMPONENT,
            &self.cfg.node_name,
        );
        if let Some(cmd) = hook_command(v, &name, "postStart") {
            let (me, pod, id) = (self.clone(), pod.clone(), id_for_hook);
            ex.spawn(async move {
                if let probes::Outcome::Failure(e) =
                    me.run_exec(&pod, &name, cmd, Duration::from_secs(30)).await
                {
                    let msg = format!("PostStartHook failed: {e}");
                    events::record(
                        &me.store,
                        &pod,
                        Type::Warning,
                        "FailedPostStartHook",
                        &msg,
                        COMPONENT,
                        &me.cfg.node_name,
                    );
                    // Kubernetes kills a container whose postStart hook fails.
                    let _ = me
                        .link
                        .kill(&id, libc_signal(nix::sys::signal::Signal::SIGKILL))
                        .await;
                }
            })
            .detach();
        }
        Ok(())
    }

    /// The image for a container per its pull policy; pulls run off the
    /// executor and wake the loop when done.
    fn ensure_image(
        self: &Rc<Self>,
        pod: &Arc<Object>,
        c: &Value,
        image: &str,
        ex: &Rc<async_executor::LocalExecutor<'static>>,
    ) -> ImageState {
        let policy = c["imagePullPolicy"].as_str().unwrap_or("IfNotPresent");
        let present = self.images.get(image).ok().flatten();
        let mut pulls = self.pulls.borrow_mut();
        match pulls.get_mut(image) {
            Some(Pull::Running) => return ImageState::Waiting,
            Some(Pull::Failed {
                message,
                retry_at,
                shown,
                ..
            }) if *retry_at > Instant::now() => {
                // Kubernetes shows ErrImagePull once, then ImagePullBackOff.
                let reason = if std::mem::replace(shown, true) {
                    "ImagePullBackOff"
                } else {
                    "ErrImagePull"
                };
                let message = match reason {
                    "ErrImagePull" => message.clone(),
                    _ => format!("Back-off pulling image \"{image}\": {message}"),
                };
                return ImageState::Failed {
                    reason: reason.into(),
                    message,
                    retry_at: Some(*retry_at),
                };
            }
            Some(Pull::Done) if present.is_some() => {
                return ImageState::Ready(present.expect("checked"));
            }
            _ => {}
        }
        if policy != "Always" {
            if let Some(r) = present {
                return ImageState::Ready(r);
            }
            if policy == "Never" {
                return ImageState::Failed {
                    reason: "ErrImageNeverPull".into(),
                    message: format!(
                        "Container image \"{image}\" is not present with pull policy of Never"
                    ),
                    retry_at: None,
                };
            }
        }
        let delay = match pulls.get(image) {
            Some(Pull::Failed { delay, .. }) => (*delay * 2).min(Duration::from_secs(300)),
            _ => Duration::from_secs(10),
        };
        pulls.insert(image.to_string(), Pull::Running);
        drop(pulls);
        events::record(
            &self.store,
            pod,
            Type::Normal,
            "Pulling",
            &format!("Pulling image \"{image}\""),
            COMPONENT,
            &self.cfg.node_name,
        );
        let me = self.clone();
        let pod = pod.clone();
        let image = image.to_string();
        let creds = self.pull_credentials(&pod);
        ex.spawn(async move {
            let started = Instant::now();
            let (images, img) = (me.images.clone(), image.clone());
            // Progress as pod events: at most one per PROGRESS_EVERY, the first
            // after that long (a quick pull shows only Pulling and Pulled), and
            // a last one at 100% when any was shown. The message varies only in
            // the bytes, so a stalled pull bumps one event's count.
            const PROGRESS_EVERY: Duration = Duration::from_secs(5);
            let (progress_tx, progress_rx) = smol::channel::unbounded::<String>();
            let pull = smol::unblock(move || {
                let mut tally = crate::image::cli::Tally::default();
                let mut last = (started, String::new());
                let line = |tally: &crate::image::cli::Tally| {
                    format!(
                        "Pulling image \"{img}\": {} of {}",
                        crate::image::cli::human_size(tally.done()),
                        crate::image::cli::human_size(tally.total())
                    )
                };
                let result = images.pull(&img, images.platform(), &creds, &mut |p| {
                    tally.update(&p);
                    if last.0.elapsed() >= PROGRESS_EVERY {
                        let msg = line(&tally);
                        if msg != last.1 {
                            let _ = progress_tx.try_send(msg.clone());
                        }
                        last = (Instant::now(), msg);
                    }
                });
                if result.is_ok() && !last.1.is_empty() {
                    let done = line(&tally);
                    if done != last.1 {
                        let _ = progress_tx.try_send(done);
                    }
                }
                result.map_err(|e| e.to_string())
            });
            let report = async {
                while let Ok(msg) = progress_rx.recv().await {
                    events::record(
                        &me.store,
                        &pod,
                        Type::Normal,
                        "Pulling",
                        &msg,
                        COMPONENT,
                        &me.cfg.node_name,
                    );
                }
            };
            // The channel closes when the pull ends, so every progress event
            // is recorded before Pulled or Failed.
            let (result, ()) = smol::future::zip(pull, report).await;
            let state = match result {
                Ok(_) => {
                    let msg = format!(
                        "Successfully pulled image \"{image}\" in {:.3}s",
                        started.elapsed().as_secs_f64()
                    );
                    events::record(
                        &me.store,
                        &pod,
                        Type::Normal,
                        "Pulled",
                        &msg,
                        COMPONENT,
                        &me.cfg.node_name,
                    );
                    Pull::Done
                }
                Err(e) => {
                    let msg = format!("Failed to pull image \"{image}\": {e}");
                    events::record(
                        &me.store,
                        &pod,
                        Type::Warning,
                        "Failed",
                        &msg,
                        COMPONENT,
                        &me.cfg.node_name,
                    );
                    Pull::Failed {
                        message: msg,
                        retry_at: Instant::now() + delay,
                        delay,
                        shown: false,
                    }
                }
            };
            me.pulls.borrow_mut().insert(image, state);
            me.poke();
        })
        .detach();
        ImageState::Waiting
    }

    /// Registry credentials: the pod's imagePullSecrets, then the board's
    /// registries file. A malformed secret is skipped with a warning.
    fn pull_credentials(&self, pod: &Object) -> crate::image::Credentials {
        let v = pod.value();
        let mut creds = self.cfg.credentials.clone();
        for s in v
            .pointer("/spec/imagePullSecrets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(secret) = s["name"]
                .as_str()
                .and_then(|n| self.store.get(res("Secret"), &pod.namespace, n))
            else {
                continue;
            };
            let data = secret.value()["data"][".dockerconfigjson"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match creds.clone().with_pull_secret(&data) {
                Ok(c) => creds = c,
                Err(e) => log::warn!(
                    "pod {}/{}: image pull secret {}: {e}",
                    pod.namespace,
                    pod.name,
                    secret.name
                ),
            }
        }
        creds
    }

    /// Runs one probe off the loop; its result may restart the container
    /// (liveness, startup) or change its readiness.
    fn spawn_probe(
        self: &Rc<Self>,
        ex: &Rc<async_executor::LocalExecutor<'static>>,
        pod: &Arc<Object>,
        c: &Value,
        id: &str,
        kind: probes::Kind,
    ) {
        let name = c["name"].as_str().unwrap_or_default().to_string();
        let spec = self
            .pods
            .borrow()
            .get(&pod.uid)
            .and_then(|p| p.containers.get(&name))
            .and_then(|k| k.probes.as_ref())
            .and_then(|p| p.spec(kind).cloned());
        let Some(spec) = spec else { return };
        let action = spec.action(c);
        let netns = match pod
            .value()
            .pointer("/spec/hostNetwork")
            .and_then(Value::as_bool)
        {
            Some(true) => PathBuf::from("/proc/self/ns/net"),
            _ => self
                .cfg
                .data_dir
                .join("runtime/sandboxes")
                .join(&pod.uid)
                .join("net"),
        };
        let (me, pod, id) = (self.clone(), pod.clone(), id.to_string());
        ex.spawn(async move {
            let outcome = match action {
                Err(e) => probes::Outcome::Failure(e),
                Ok(probes::Action::Exec(args)) => {
                    me.run_exec(&pod, &name, args, spec.timeout).await
                }
                Ok(action) => {
                    smol::unblock(move || probes::run_network(&netns, &action, spec.timeout)).await
                }
            };
            let transition = {
                let mut pods = me.pods.borrow_mut();
                let Some(cont) = pods
                    .get_mut(&pod.uid)
                    .and_then(|p| p.containers.get_mut(&name))
                else {
                    return;
                };
                // The container may have been restarted meanwhile.
                if cont.id.as_deref() != Some(id.as_str()) {
                    return;
                }
                let ok = matches!(outcome, probes::Outcome::Success);
                cont.probes
                    .as_mut()
                    .map(|p| p.record(kind, ok, Instant::now()))
            };
            if let probes::Outcome::Failure(detail) = &outcome {
                events::record(
                    &me.store,
                    &pod,
                    Type::Warning,
                    "Unhealthy",
                    &kind.failure_message(detail),
                    COMPONENT,
                    &me.cfg.node_name,
                );
            }
            if let Some(probes::Transition::Failed) = transition {
                let msg = format!(
                    "Container {name} failed {} probe, will be restarted",
                    kind.to_string().to_lowercase()
                );
                events::record(
                    &me.store,
                    &pod,
                    Type::Normal,
                    "Killing",
                    &msg,
                    COMPONENT,
                    &me.cfg.node_name,
                );
                if let Err(e) = me
                    .link
                    .kill(&id, nix::sys::signal::Signal::SIGKILL as i32)
                    .await
                {
                    log::warn!("killing {id} after a failed {kind} probe: {e}");
                }
            }
            me.poke();
        })
        .detach();
    }

    /// A command in a running container (exec probes and hooks): its exit
    /// code within `timeout`.
    async fn run_exec(
        &self,
        pod: &Object,
        container: &str,
        args: Vec<String>,
        timeout: Duration,
    ) -> probes::Outcome {
        let (handle, exit) = match self.exec(pod, container, args).await {
            Ok(x) => x,
            Err(e) => return probes::Outcome::Failure(e),
        };
        let read = smol::unblock(move || {
            let mut out = Vec::new();
            let (mut o, mut e) = (handle.stdout, handle.stderr);
            let _ = std::io::Read::read_to_end(&mut o, &mut out);
            let _ = std::io::Read::read_to_end(&mut e, &mut out);
            out
        });
        let result = smol::future::or(
            async { Some((read.await, exit.recv().await.ok())) },
            async {
                smol::Timer::after(timeout).await;
                None
            },
        )
        .await;
        match result {
            Some((out, status)) => {
                let code = match status {
                    Some(ExitStatus::Code(c)) => Some(c),
                    Some(ExitStatus::Signal(s)) => Some(128 + s),
                    _ => None,
                };
                probes::exec_outcome(code, &out, false)
            }
            None => probes::exec_outcome(None, &[], true),
        }
    }

    /// Graceful deletion: SIGTERM, the grace period, SIGKILL; the pod object
    /// goes only when its containers, sandbox and volumes are gone.
    async fn terminate(
        self: &Rc<Self>,
        pod: &Arc<Object>,
        v: &Value,
        ex: &Rc<async_executor::LocalExecutor<'static>>,
    ) -> Result<Option<Instant>, String> {
        let grace = v
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(30);
        let (running, kill_at): (Vec<String>, Option<Instant>) = {
            let pods = self.pods.borrow();
            let p = &pods[&pod.uid];
            (
                p.containers
                    .values()
                    .filter(|c| c.running())
                    .filter_map(|c| c.id.clone())
                    .collect(),
                p.kill_at,
            )
        };
        if !running.is_empty() {
            let now = Instant::now();
            match kill_at {
                None => {
                    // preStop hooks run first; SIGTERM follows each one.
                    let hooks: Vec<(String, String, Option<Vec<String>>)> = {
                        let pods = self.pods.borrow();
                        pods[&pod.uid]
                            .containers
                            .iter()
                            .filter(|(_, c)| c.running())
                            .filter_map(|(n, c)| {
                                Some((n.clone(), c.id.clone()?, hook_command(v, n, "preStop")))
                            })
                            .collect()
                    };
                    for (name, id, hook) in hooks {
                        let (me, pod) = (self.clone(), pod.clone());
                        ex.spawn(async move {
                            if let Some(cmd) = hook
                                && let probes::Outcome::Failure(e) = me
                                    .run_exec(&pod, &name, cmd, Duration::from_secs(grace))
                                    .await
                            {
                                let msg = format!("PreStopHook failed: {e}");
                                events::record(
                                    &me.store,
                                    &pod,
                                    Type::Warning,
                                    "FailedPreStopHook",
                                    &msg,
                                    COMPONENT,
                                    &me.cfg.node_name,
                                );
                            }
                            if let Err(e) = me
                                .link
                                .kill(&id, libc_signal(nix::sys::signal::Signal::SIGTERM))
                                .await
                            {
                                log::warn!("stopping {id}: {e}");
                            }
                        })
                        .detach();
                    }
                    let at = now + Duration::from_secs(grace);
                    self.pods
                        .borrow_mut()
                        .get_mut(&pod.uid)
                        .expect("present")
                        .kill_at = Some(at);
                    let names: Vec<String> = self.pods.borrow()[&pod.uid]
                        .containers
                        .iter()
                        .filter(|(_, c)| c.running())
                        .map(|(n, _)| n.clone())
                        .collect();
                    for n in names {
                        events::record(
                            &self.store,
                            pod,
                            Type::Normal,
                            "Killing",
                            &format!("Stopping container {n}"),
                            COMPONENT,
                            &self.cfg.node_name,
                        );
                    }
                    return Ok(Some(at));
                }
                Some(at) if at > now => return Ok(Some(at)),
                Some(_) => {
                    for id in &running {
                        self.link
                            .kill(id, libc_signal(nix::sys::signal::Signal::SIGKILL))
                            .await?;
                    }
                    return Ok(Some(now + Duration::from_millis(200)));
                }
            }
        }
        self.teardown(&pod.uid).await?;
        match self
            .store
            .delete(res("Pod"), &pod.namespace, &pod.name, Some(&pod.uid))
        {
            Ok(_) | Err(store::StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Removes everything of a pod from the board: containers, sandbox
    /// (namespaces, cgroups), volumes, logs.
    async fn teardown(&self, uid: &str) -> Result<(), String> {
        if let Some(n) = &self.network {
            n.del(&self.store, &self.cfg.node_name, uid).await?;
        }
        self.link.remove_sandbox(uid).await?;
        volumes::cleanup(&self.cfg.data_dir, uid)?;
        self.pods.borrow_mut().remove(uid);
        Ok(())
    }

    /// Writes the pod's status when it changed. The only pod status writer.
    fn write_status(&self, pod: &Arc<Object>, v: &Value) {
        let Some(view) = self.view(pod, v) else {
            return;
        };
        let new_status = status::pod_status(v, &view, SystemTime::now());
        // Re-read: our own earlier writes this pass may have moved the pod on.
        let Some(latest) = self
            .store
            .get(res("Pod"), &pod.namespace, &pod.name)
            .filter(|o| o.uid == pod.uid)
        else {
            return;
        };
        let mut latest = latest.value();
        if latest["status"] == new_status {
            return;
        }
        latest["status"] = new_status;
        if let Err(e) = self.store.update(res("Pod"), latest) {
            log::warn!("writing status of pod {}/{}: {e}", pod.namespace, pod.name);
        }
    }

    fn view(&self, pod: &Object, v: &Value) -> Option<status::PodView> {
        let pods = self.pods.borrow();
        let p = pods.get(&pod.uid)?;
        let views = |list: &str| -> Vec<status::ContainerView> {
            v.pointer(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| {
                    let name = c["name"].as_str().unwrap_or_default();
                    let image = c["image"].as_str().unwrap_or_default().to_string();
                    match p.containers.get(name) {
                        Some(k) => status::ContainerView {
                            name: name.into(),
                            image,
                            image_id: k.image_id.clone(),
                            container_id: k
                                .id
                                .as_ref()
                                .map(|id| format!("bramble://{id}"))
                                .unwrap_or_default(),
                            state: k.state.clone(),
                            last_state: k.last_state.clone(),
                            restart_count: k.restarts,
                            ready: k.running()
                                && k.probes.as_ref().is_none_or(probes::Probes::ready),
                            started: k.running()
                                && k.probes.as_ref().is_none_or(probes::Probes::started),
                        },
                        None => status::ContainerView {
                            name: name.into(),
                            image,
                            image_id: String::new(),
                            container_id: String::new(),
                            state: status::State::Waiting {
                                reason: "PodInitializing".into(),
                                message: String::new(),
                            },
                            last_state: None,
                            restart_count: 0,
                            ready: false,
                            started: false,
                        },
                    }
                })
                .collect()
        };
        Some(status::PodView {
            init: views("/spec/initContainers"),
            containers: views("/spec/containers"),
            pod_ip: p.ip.map(|ip| ip.to_string()),
            sandbox_ready: p.sandbox,
            host_ip: crate::node::addresses()
                .first()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            start_time: Some(p.start_time),
            reason: p.failure.as_ref().map(|f| f.0.clone()),
            message: p.failure.as_ref().map(|f| f.1.clone()),
        })
    }
}

enum ImageState {
    Ready(ImageRecord),
    Waiting,
    Failed {
        reason: String,
        message: String,
        retry_at: Option<Instant>,
    },
}

fn new_pod(v: &Value) -> Pod {
    let start_time = v
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .unwrap_or_else(SystemTime::now);
    Pod {
        sandbox: false,
        ip: None,
        volumes: None,
        containers: HashMap::new(),
        start_time,
        kill_at: None,
        failure: None,
    }
}

fn container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["/status/containerStatuses", "/status/initContainerStatuses"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .find(|s| s["name"] == name)
}

/// `<uid>-<name>-<attempt>` -> attempt.
fn attempt_of(id: &str) -> u32 {
    id.rsplit('-')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

fn apply_info(
    c: &mut Container,
    info: &ContainerInfo,
    running: &std::sync::Mutex<std::collections::HashSet<String>>,
) {
    c.started_at = info.started_at.or(c.started_at);
    if let Ok(mut r) = running.lock() {
        match (&info.status, &info.exit) {
            (rt::Status::Running, None) => r.insert(info.id.clone()),
            _ => r.remove(&info.id),
        };
    }
    c.state = match (&info.status, &info.exit) {
        (_, Some(e)) => terminated(
            e.exit_code,
            e.signal,
            e.oom_killed,
            info.started_at,
            e.finished_at,
        ),
        (rt::Status::Running, None) => status::State::Running {
            started_at: info.started_at.unwrap_or_else(SystemTime::now),
        },
        (_, None) => status::State::Waiting {
            reason: "ContainerCreating".into(),
            message: String::new(),
        },
    };
}

/// How Kubernetes reports an ended container.
fn terminated(
    exit_code: Option<i32>,
    signal: Option<i32>,
    oom: bool,
    started: Option<SystemTime>,
    finished: SystemTime,
) -> status::State {
    let code = match (exit_code, signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        // Lost while no helper ran: Kubernetes reports such containers as 137/Unknown? It uses Unknown with 137 only
        // for kills; say what we know.
        (None, None) => 255,
    };
    let reason = if oom {
        "OOMKilled"
    } else if exit_code.is_none() && signal.is_none() {
        "Unknown"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    status::State::Terminated {
        exit_code: code,
        signal,
        reason: reason.into(),
        message: String::new(),
        started_at: started,
        finished_at: finished,
    }
}

fn libc_signal(s: nix::sys::signal::Signal) -> i32 {
    s as i32
}

pub fn log_path(data_dir: &Path, uid: &str, container: &str, attempt: u32) -> PathBuf {
    volumes::pod_dir(data_dir, uid)
        .join("logs")
        .join(container)
        .join(format!("{attempt}.log"))
}

/// A file from the image's layers, top layer first (no whiteout handling:
/// for /etc/passwd and /etc/group, which images rarely delete).
fn read_from_layers(layers: &[PathBuf], rel: &str) -> Option<String> {
    layers
        .iter()
        .rev()
        .find_map(|l| std::fs::read_to_string(l.join(rel)).ok())
}

/// The exec command of a container's lifecycle hook (`postStart`, `preStop`).
fn hook_command(pod: &Value, container: &str, hook: &str) -> Option<Vec<String>> {
    pod.pointer("/spec/containers")?
        .as_array()?
        .iter()
        .find(|c| c["name"] == container)?
        .pointer(&format!("/lifecycle/{hook}/exec/command"))?
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
}

/// A host device node as the runtime creates it in a container.
fn host_device(path: &std::path::Path) -> Result<rt::Device, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta =
        std::fs::metadata(path).map_err(|e| format!("host device {}: {e}", path.display()))?;
    let kind = match meta.file_type() {
        t if t.is_char_device() => 'c',
        t if t.is_block_device() => 'b',
        _ => return Err(format!("{} is not a device node", path.display())),
    };
    let rdev = meta.rdev();
    Ok(rt::Device {
        path: path.to_path_buf(),
        kind,
        major: nix::sys::stat::major(rdev) as i64,
        minor: nix::sys::stat::minor(rdev) as i64,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
    })
}
