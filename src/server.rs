//! `bramble server`: the control-plane board. Opens the store, starts the API
//! and runs every loop on one single-threaded executor until SIGTERM/SIGINT.

use async_executor::LocalExecutor;
use serde_json::Value;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::api::{self, http};
use crate::model::{self, res};
use crate::store::{Store, StoreError};
use crate::{kubelet, net, node, pki};

/// One of the daemon's loops over the store, as a task.
type LoopFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub node_name: String,
    pub tls_sans: Vec<String>,
    pub service_cidr: net::Cidr,
    /// The pod network: bridge/table name and cluster CIDR.
    pub network: net::Names,
    /// --node-ip: this board's address for other boards.
    pub node_ip: Option<std::net::IpAddr>,
    /// What --board, --config and the flags resolved to.
    pub board: crate::config::Settings,
    /// k3s-style registries.yaml; a missing file means no mirrors or credentials.
    pub registries: PathBuf,
    /// Where boards (`bramble agent`) connect.
    pub cluster_listen: SocketAddr,
    /// Taint this board's node so that only pods tolerating it run here.
    pub control_plane_only: bool,
}

#[derive(Debug)]
pub enum ServerError {
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    Locked {
        path: PathBuf,
        holder: String,
    },
    Store(StoreError),
    Pki(pki::PkiError),
    Listen(String),
    Signals(std::io::Error),
    Images(crate::image::ImageError),
    Runtime(crate::runtime::ClientError),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::DataDir { path, source } => {
                write!(f, "data directory {}: {source}", path.display())
            }
            ServerError::Locked { path, holder } => write!(
                f,
                "another bramble is already using this data directory ({holder} holds the lock {}); stop it first or pass another --data-dir",
                path.display()
            ),
            ServerError::Store(e) => write!(f, "{e}"),
            ServerError::Pki(e) => write!(f, "{e}"),
            ServerError::Listen(e) => write!(f, "{e}"),
            ServerError::Signals(e) => write!(f, "installing signal handlers: {e}"),
            ServerError::Images(e) => write!(f, "{e}"),
            ServerError::Runtime(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ServerError {}

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        ServerError::Store(e)
    }
}

impl From<pki::PkiError> for ServerError {
    fn from(e: pki::PkiError) -> Self {
        ServerError::Pki(e)
    }
}

/// Holds DATA_DIR/bramble.lock for the life of the process: the kernel drops
/// the lock when the process dies, so a crash never leaves it stale.
pub fn lock_data_dir(data_dir: &Path) -> Result<File, ServerError> {
    let path = data_dir.join("bramble.lock");
    let err = |source| ServerError::DataDir {
        path: path.clone(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(err)?;
    match f.try_lock() {
        Ok(()) => {
            use std::io::{Seek, Write};
            f.set_len(0).map_err(err)?;
            f.seek(std::io::SeekFrom::Start(0)).map_err(err)?;
            write!(f, "{}", std::process::id()).map_err(err)?;
            Ok(f)
        }
        Err(fs::TryLockError::WouldBlock) => {
            let pid = fs::read_to_string(&path).unwrap_or_default();
            Err(ServerError::Locked {
                path,
                holder: format!("process {}", pid.trim()),
            })
        }
        Err(fs::TryLockError::Error(e)) => Err(err(e)),
    }
}

pub fn run(cfg: Config) -> Result<(), ServerError> {
    let started = Instant::now();
    fs::create_dir_all(&cfg.data_dir).map_err(|source| ServerError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let _lock = lock_data_dir(&cfg.data_dir)?;
    let creds = pki::ensure(&cfg.data_dir)?;
    let mut names = vec![
        node::hostname(),
        cfg.node_name.clone(),
        "localhost".into(),
        "127.0.0.1".into(),
    ];
    names.extend(node::addresses().iter().map(|a| a.to_string()));
    names.extend(cfg.tls_sans.iter().cloned());
    if !cfg.listen.ip().is_unspecified() {
        names.push(cfg.listen.ip().to_string());
    }
    names.sort();
    names.dedup();
    let serving = pki::serving_cert(&cfg.data_dir, &names)?;
    let store = Store::open_with(&cfg.data_dir, cfg.board.wal_autocheckpoint)?;
    model::defaults::set_default_toleration_seconds(cfg.board.pod_eviction_timeout.as_secs());
    let board = Board::start(
        &cfg.data_dir,
        &cfg.node_name,
        &cfg.board,
        &cfg.registries,
        &store,
        Some(cfg.network.bridge.clone()),
    )?;
    let kl = board.kubelet.clone();
    let cluster = crate::cluster::server::Cluster::start(
        &cfg.data_dir,
        cfg.cluster_listen,
        store.clone(),
        &cfg.node_name,
        cfg.network.cluster_cidr,
    )
    .map_err(|e| ServerError::Listen(e.to_string()))?;
    let ex = Rc::new(LocalExecutor::new());
    let ctx = Rc::new(api::Ctx {
        store: store.clone(),
        ex: ex.clone(),
        ready: false.into(),
        service_cidr: cfg.service_cidr,
        kubelet: Some(kl.clone()),
        data_dir: cfg.data_dir.clone(),
        node_name: cfg.node_name.clone(),
        images: board.images.clone(),
        cgroups: crate::runtime::cgroups::CgroupLayout::detect().ok(),
        api_counters: Default::default(),
        security: cfg.board.security.clone(),
        objects_per_namespace: cfg.board.objects_per_namespace as usize,
        cluster: Some(cluster.proxy()),
    });
    let mut signals =
        async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
            .map_err(ServerError::Signals)?;

    smol::block_on(ex.run(async {
        ex.spawn({
            let store = store.clone();
            async move { store.run_flusher().await }
        })
        .detach();
        first_start(&store)?;
        // The loops that only need the store, each its own task.
        let loops: &[fn(Rc<Store>) -> LoopFuture] = &[
            |s| Box::pin(async move { crate::controllers::namespace::run(&s).await }),
            |s| Box::pin(async move { crate::controllers::replicaset::run(&s).await }),
            |s| Box::pin(async move { crate::controllers::deployment::run(&s).await }),
            |s| Box::pin(async move { crate::controllers::daemonset::run(&s).await }),
            |s| Box::pin(async move { crate::controllers::job::run(&s).await }),
            |s| Box::pin(async move { crate::controllers::gc::run(&s).await }),
            |s| Box::pin(async move { crate::controllers::endpoints::run(&s).await }),
            |s| Box::pin(async move { crate::scheduler::run(&s).await }),
            |s| Box::pin(async move { crate::events::run_expiry(&s).await }),
        ];
        for run in loops {
            ex.spawn(run(store.clone())).detach();
        }
        let grace = cfg.board.node_monitor_grace;
        let s = store.clone();
        ex.spawn(async move { crate::controllers::node_lifecycle::run(&s, grace).await })
            .detach();
        register_node(&store, &cfg)?;
        ex.spawn(net::assign_pod_cidrs(
            store.clone(),
            cfg.network.cluster_cidr,
        ))
        .detach();
        net::spawn(&ex, &store, &cfg.network, &cfg.node_name);
        board.spawn(&ex, &store);
        ex.spawn(cluster.run(ex.clone())).detach();
        let (calls_tx, calls_rx) = smol::channel::bounded(64);
        let listener = http::Listener::start(
            cfg.listen,
            http::TlsConfig {
                cert_pem: serving.cert_pem.into_bytes(),
                key_pem: serving.key_pem.into_bytes(),
            },
            creds.token.clone(),
            calls_tx,
            cfg.board.max_watches as usize,
            cfg.board.max_connections as usize,
        )
        .map_err(ServerError::Listen)?;
        ex.spawn(api::serve(ctx.clone(), calls_rx)).detach();
        ex.spawn(crate::manifests::run(
            ctx.clone(),
            cfg.data_dir.join("manifests"),
        ))
        .detach();
        store.durable(store.resource_version()).await;
        ctx.ready.set(true);
        notify_systemd(&ex);
        log::info!(
            "bramble server ready on https://{} (node {}, data {}) in {:?}",
            listener.addr,
            cfg.node_name,
            cfg.data_dir.display(),
            started.elapsed()
        );

        use smol::stream::StreamExt;
        if let Some(Ok(sig)) = signals.next().await {
            log::info!("{sig:?} received: shutting down");
        }
        ctx.ready.set(false);
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        store.close_watches();
        // Joining the HTTP threads blocks; the executor keeps answering the
        // requests they are still waiting on meanwhile.
        smol::unblock(move || listener.stop()).await;
        store.durable(store.resource_version()).await;
        store.save_snapshot().await;
        log::info!("bramble server stopped");
        Ok(())
    }))
}

/// The namespaces every cluster has.
fn first_start(store: &Store) -> Result<(), StoreError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        if store.get(res("Namespace"), "", ns).is_none() {
            let mut v = serde_json::json!({"metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}});
            model::defaults::apply_defaults("Namespace", &mut v);
            v["status"] = serde_json::json!({"phase": "Active"});
            store.create(res("Namespace"), v)?;
        }
    }
    Ok(())
}

/// Registers this board as a Node, or refreshes what it reports about itself
/// while keeping what users set (labels, taints, unschedulable).
fn register_node(store: &Store, cfg: &Config) -> Result<(), StoreError> {
    // Boards reach the server at the address it listens on for them: the
    // routes to its pods go there too.
    let listen = Some(cfg.cluster_listen.ip()).filter(|ip| !ip.is_unspecified());
    let node_ip = cfg.node_ip.or(listen);
    let facts = node::Facts::new(&cfg.node_name, &cfg.data_dir, &cfg.board, node_ip);
    let mut fresh = node::node_object(&facts);
    if cfg.control_plane_only {
        fresh["spec"]["taints"] = serde_json::json!([node::control_plane_taint()]);
    }
    node::register(store, fresh)
}

/// This board's kubelet and what it needs: the image store and the link to
/// the runtime helper. Both `bramble server` and `bramble agent` run one.
pub struct Board {
    pub kubelet: Rc<kubelet::Kubelet>,
    runtime_events: smol::channel::Receiver<crate::runtime::protocol::Event>,
    images: Arc<crate::image::ImageStore>,
    data_dir: PathBuf,
    image_gc_high_percent: u8,
    image_gc_low_percent: u8,
}

impl Board {
    /// Opens the image store and starts (or reconnects to) the runtime
    /// helper: containers of an earlier run are still there and get
    /// reattached.
    pub fn start(
        data_dir: &Path,
        node_name: &str,
        settings: &crate::config::Settings,
        registries: &Path,
        store: &Rc<Store>,
        pod_bridge: Option<String>,
    ) -> Result<Board, ServerError> {
        let registries = match registries.exists() {
            true => crate::image::Registries::load(registries).map_err(ServerError::Images)?,
            false => crate::image::Registries::default(),
        };
        let credentials =
            crate::image::Credentials::from_registries(&registries).map_err(ServerError::Images)?;
        let images = Arc::new(
            crate::image::ImageStore::open(data_dir)
                .map_err(ServerError::Images)?
                .with_registries(registries)
                .with_platform(settings.platform.clone())
                .with_max_image_size(settings.max_image_bytes),
        );
        if !crate::image::Platform::host()
            .compatible()
            .contains(&settings.platform)
        {
            log::warn!(
                "the board config is for {} but this machine runs {}: imported images will not run here",
                settings.platform,
                crate::image::Platform::host()
            );
        }
        let (link, runtime_events) =
            kubelet::Link::start(&data_dir.join("runtime")).map_err(ServerError::Runtime)?;
        let kubelet_cfg = kubelet::Config {
            node_name: node_name.to_string(),
            data_dir: data_dir.to_path_buf(),
            pids_limit: 4096,
            log_max_bytes: settings.log_max_bytes,
            log_max_files: settings.log_max_files,
            credentials,
            pod_bridge,
        };
        let kubelet = kubelet::Kubelet::new(store.clone(), kubelet_cfg, link, images.clone());
        Ok(Board {
            kubelet,
            runtime_events,
            images,
            data_dir: data_dir.to_path_buf(),
            image_gc_high_percent: settings.image_gc_high_percent,
            image_gc_low_percent: settings.image_gc_low_percent,
        })
    }

    /// Runs the kubelet, image GC and the import folder on the executor.
    pub fn spawn(self, ex: &Rc<LocalExecutor<'static>>, store: &Rc<Store>) {
        ex.spawn(image_gc(
            store.clone(),
            self.images.clone(),
            self.image_gc_high_percent,
            self.image_gc_low_percent,
        ))
        .detach();
        ex.spawn(self.kubelet.clone().run(ex.clone(), self.runtime_events))
            .detach();
        ex.spawn(import_folder(
            self.images,
            self.data_dir.join("images/import"),
        ))
        .detach();
    }
}

/// Archives dropped into DATA_DIR/images/import are imported at start and
/// when files appear: a readdir every IMPORT_SCAN_PERIOD, and an import only
/// when the listing changed (so a bad archive is tried again only once it is
/// replaced) and has settled (so a file still being copied in is not tried
/// half-written).
async fn import_folder(images: Arc<crate::image::ImageStore>, folder: PathBuf) {
    const IMPORT_SCAN_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);
    const IMPORT_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);
    // (name, size, mtime) of the archives, hidden names (copies in
    // progress, by convention) left out, as import_folder does.
    fn import_listing(folder: &Path) -> Vec<(std::ffi::OsString, u64, std::time::SystemTime)> {
        let mut listing: Vec<_> = std::fs::read_dir(folder)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((e.file_name(), meta.len(), meta.modified().ok()?))
            })
            .collect();
        listing.sort();
        listing
    }
    let mut imported_listing = None;
    loop {
        let (images, folder, previous) = (images.clone(), folder.clone(), imported_listing.take());
        let (listing, result) = smol::unblock(move || {
            let listing = import_listing(&folder);
            // (A clock that went back makes an mtime "future": settled.)
            let settled = !listing
                .iter()
                .any(|(_, _, mtime)| matches!(mtime.elapsed(), Ok(age) if age < IMPORT_SETTLE));
            match (previous, settled) {
                (Some(p), _) if p == listing => (Some(p), None),
                (previous, false) => (previous, None),
                (_, true) => (Some(listing), Some(images.import_folder())),
            }
        })
        .await;
        imported_listing = listing;
        match result {
            Some(Ok(imported)) => imported
                .iter()
                .for_each(|i| log::info!("imported image {}", i.reference)),
            Some(Err(e)) => {
                log::warn!("importing DATA_DIR/images/import: {e}");
                imported_listing = None;
            }
            None => {}
        }
        smol::Timer::after(IMPORT_SCAN_PERIOD).await;
    }
}

/// The kubelet's image GC period.
const IMAGE_GC_PERIOD: std::time::Duration = std::time::Duration::from_secs(300);

/// Frees disk between the board's thresholds, as the kubelet's image GC does,
/// keeping every image a pod in the store names or runs.
async fn image_gc(store: Rc<Store>, images: Arc<crate::image::ImageStore>, high: u8, low: u8) {
    loop {
        smol::Timer::after(IMAGE_GC_PERIOD).await;
        let in_use: std::collections::HashSet<String> = store
            .list(res("Pod"), None)
            .iter()
            .flat_map(|p| pod_images(&p.value()))
            .collect();
        let images = images.clone();
        match smol::unblock(move || images.gc(&in_use, high, low)).await {
            Ok(r) if !r.images_removed.is_empty() => log::info!(
                "image GC: disk at {}% (over {high}%), removed {}; now {}%",
                r.usage_before,
                r.images_removed.join(", "),
                r.usage_after
            ),
            Ok(_) => {}
            Err(e) => log::warn!("image GC: {e}"),
        }
    }
}

/// The images a pod's containers name, and the image ids they run.
fn pod_images(pod: &Value) -> Vec<String> {
    let named = ["/spec/initContainers", "/spec/containers"]
        .iter()
        .flat_map(|p| {
            pod.pointer(p)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|c| c["image"].as_str());
    let running = ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .flat_map(|p| {
            pod.pointer(p)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .flat_map(|c| {
            let id = c["imageID"].as_str();
            // "name@sha256:…": the GC knows images by digest.
            let digest = id.and_then(|i| i.split_once('@')).map(|(_, d)| d);
            [c["image"].as_str(), id, digest].into_iter().flatten()
        });
    named
        .chain(running)
        .filter(|i| !i.is_empty())
        .map(str::to_string)
        .collect()
}

/// Tells systemd (Type=notify) that we are up, and feeds its watchdog from a
/// task on the executor itself, so a wedged executor gets the daemon restarted.
/// Without NOTIFY_SOCKET both are no-ops.
pub fn notify_systemd(ex: &LocalExecutor<'static>) {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        log::warn!("telling systemd we are ready: {e}");
    }
    if let Some(period) = sd_notify::watchdog_enabled() {
        ex.spawn(async move {
            loop {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                smol::Timer::after(period / 2).await;
            }
        })
        .detach();
    }
    // Test hook: BRAMBLE_TEST_WEDGE_AFTER_MS=N blocks the executor thread
    // after N ms, as a wedged loop would, so tests see WATCHDOG=1 stop.
    if let Some(ms) = std::env::var("BRAMBLE_TEST_WEDGE_AFTER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        ex.spawn(async move {
            smol::Timer::after(std::time::Duration::from_millis(ms)).await;
            log::warn!("BRAMBLE_TEST_WEDGE_AFTER_MS: wedging the executor");
            std::thread::sleep(std::time::Duration::from_secs(24 * 3600));
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_gc_keeps_what_pods_name_and_run() {
        let pod = serde_json::json!({
            "spec": {"initContainers": [{"image": "init:1"}], "containers": [{"image": "busybox"}]},
            "status": {"containerStatuses": [{"image": "docker.io/library/busybox:latest",
                                              "imageID": "docker.io/library/busybox@sha256:abc"}]}
        });
        assert_eq!(
            pod_images(&pod),
            [
                "init:1",
                "busybox",
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox@sha256:abc",
                "sha256:abc"
            ]
        );
    }
}
