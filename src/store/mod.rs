//! The object store: every cluster object in memory for reads, in SQLite for
//! durability, and a bounded log of recent changes for watches.
//!
//! The store lives on the executor thread (`Rc<Store>`). Writes change the
//! in-memory state at once and give each change the next resourceVersion; a
//! flusher task then commits everything written since its last commit in one
//! SQLite transaction (group commit) and only after that publishes the events
//! to watchers and wakes the writers waiting in [`Store::durable`]. So a
//! watcher never sees a change that could still be lost, and the durable state
//! is always a prefix of the sequence of writes.

mod disk;
pub use disk::{SNAPSHOT_EVERY, db_path};

use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::{self, RESOURCES, Resource};

/// How many recent changes a watch can resume from.
const LOG_CAPACITY: usize = 4096;
/// Events a slow watcher may have queued before it is dropped (it re-lists).
const WATCH_QUEUE: usize = 1024;

#[derive(Debug)]
pub enum StoreError {
    NotFound {
        resource: &'static Resource,
        name: String,
    },
    AlreadyExists {
        resource: &'static Resource,
        name: String,
    },
    /// The update named a resourceVersion or uid other than the stored one.
    Conflict {
        resource: &'static Resource,
        name: String,
    },
    /// A watch asked for changes older than the log keeps.
    Gone {
        requested: u64,
        oldest: u64,
    },
    /// A watch named a resourceVersion this store has not reached: one
    /// handed out before a restore from an older snapshot (or one that was
    /// never durable). The client must list again, as for `Gone`.
    TooNew {
        requested: u64,
        current: u64,
    },
    Invalid {
        resource: &'static Resource,
        name: String,
        detail: String,
    },
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    Corrupt {
        path: PathBuf,
        detail: String,
    },
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound { resource, name } => {
                write!(f, "{} \"{name}\" not found", qualified(resource))
            }
            StoreError::AlreadyExists { resource, name } => {
                write!(f, "{} \"{name}\" already exists", qualified(resource))
            }
            StoreError::Conflict { resource, name } => write!(
                f,
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(resource)
            ),
            StoreError::Gone { requested, oldest } => {
                write!(f, "too old resource version: {requested} ({oldest})")
            }
            StoreError::TooNew { requested, current } => {
                write!(
                    f,
                    "too large resource version: {requested}, current: {current}"
                )
            }
            StoreError::Invalid { detail, .. } => write!(f, "{detail}"),
            StoreError::Sqlite { path, source } => {
                write!(f, "state database {}: {source}", path.display())
            }
            StoreError::Corrupt { path, detail } => write!(
                f,
                "state database {} failed its integrity check: {detail}",
                path.display()
            ),
            StoreError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// `pods` or `deployments.apps`, as Kubernetes names resources in messages.
pub fn qualified(r: &Resource) -> String {
    r.key()
}

/// One stored object. The JSON text is kept rather than a parsed tree: it is
/// a third of the memory, lists and watches send it as is, and the few fields
/// reads filter on are extracted once here.
#[derive(Debug)]
pub struct Object {
    pub resource: &'static Resource,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub rv: u64,
    pub labels: BTreeMap<String, String>,
    /// spec.nodeName (pods): what the scheduler and kubelets filter on.
    pub node_name: String,
    /// status.phase is Succeeded or Failed (pods).
    pub finished: bool,
    /// metadata.deletionTimestamp is set.
    pub deleting: bool,
    pub raw: Arc<str>,
}

impl Object {
    fn new(resource: &'static Resource, value: &Value, raw: Arc<str>) -> Object {
        let labels = model::labels(value)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Object {
            resource,
            namespace: model::namespace(value).to_string(),
            name: model::name(value).to_string(),
            uid: model::meta_str(value, "uid")
                .unwrap_or_default()
                .to_string(),
            rv: model::meta_str(value, "resourceVersion")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            labels,
            node_name: value
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            finished: matches!(
                value.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            ),
            deleting: is_deleting(value),
            raw,
        }
    }

    /// An object outside the store, as the store would hold it (for tests
    /// of code that reads objects).
    pub fn from_value(resource: &'static Resource, value: &Value) -> Object {
        let raw: Arc<str> = serde_json::to_string(value)
            .expect("JSON values serialize")
            .into();
        Object::new(resource, value, raw)
    }

    /// The object as a JSON tree (parsed on each call; callers keep it).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.raw).expect("the store holds only JSON it wrote")
    }
}

/// What a delete did.
pub enum Deletion {
    /// The object is gone; this is its last state.
    Gone(Arc<Object>),
    /// The object is marked for deletion and waits (finalizers, a kubelet).
    Pending(Arc<Object>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: EventType,
    /// The new state; for Deleted, the last state with the deletion's rv.
    pub object: Arc<Object>,
    /// The state before, so selector watches can tell when an object stops matching.
    pub prev: Option<Arc<Object>>,
}

struct Watcher {
    resources: Vec<&'static Resource>,
    namespace: Option<String>,
    since: u64,
    tx: smol::channel::Sender<WatchEvent>,
}

struct State {
    /// Per resource (same index as `RESOURCES`): (namespace, name) -> object.
    objects: Vec<BTreeMap<(String, String), Arc<Object>>>,
    rv: u64,
    pending_ops: Vec<disk::Op>,
    pending_events: Vec<WatchEvent>,
    log: VecDeque<WatchEvent>,
    /// Every change with rv <= this is gone from the log.
    compacted: u64,
    watchers: Vec<Watcher>,
    durable_waiters: Vec<(u64, smol::channel::Sender<()>)>,
}

pub struct Store {
    state: RefCell<State>,
    durable_rv: Cell<u64>,
    writer: disk::Writer,
    dirty_tx: smol::channel::Sender<()>,
    dirty_rx: smol::channel::Receiver<()>,
    /// When each node's kubelet was last heard from. Memory only: a
    /// heartbeat every few seconds must not wear the SD card.
    heartbeats: RefCell<HashMap<String, Instant>>,
}

/// The namespace an object of `resource` is stored under: its own, or ""
/// for cluster-scoped kinds.
fn namespace_of(resource: &Resource, value: &Value) -> String {
    match resource.namespaced {
        true => model::namespace(value).to_string(),
        false => String::new(),
    }
}

fn index(r: &'static Resource) -> usize {
    RESOURCES
        .iter()
        .position(|x| std::ptr::eq(x, r))
        .expect("resources come from RESOURCES")
}

impl Store {
    /// Opens the store in `data_dir`, loading every object.
    pub fn open(data_dir: &Path) -> Result<Rc<Store>, StoreError> {
        Store::open_with(data_dir, disk::DEFAULT_WAL_AUTOCHECKPOINT)
    }

    /// `open`, checkpointing the SQLite WAL every `wal_autocheckpoint` pages.
    pub fn open_with(data_dir: &Path, wal_autocheckpoint: u32) -> Result<Rc<Store>, StoreError> {
        let (loaded, writer) = disk::start(data_dir, wal_autocheckpoint)?;
        let mut objects: Vec<BTreeMap<_, _>> = RESOURCES.iter().map(|_| BTreeMap::new()).collect();
        let mut max_rv = loaded.last_rv;
        for row in loaded.rows {
            let Some(resource) = model::by_key(&row.resource) else {
                log::warn!(
                    "skipping a stored object of unknown resource {}",
                    row.resource
                );
                continue;
            };
            // A row SQLite's checks pass but whose text is damaged loses
            // that one object, not the board's start.
            let value: Value = match serde_json::from_str(&row.body) {
                Ok(v) => v,
                Err(e) => {
                    log::error!(
                        "skipping a stored {} that is not JSON ({e}) in {}",
                        row.resource,
                        disk::db_path(data_dir).display()
                    );
                    continue;
                }
            };
            let obj = Object::new(resource, &value, row.body.into());
            max_rv = max_rv.max(obj.rv);
            objects[index(resource)]
                .insert((obj.namespace.clone(), obj.name.clone()), Arc::new(obj));
        }
        let (dirty_tx, dirty_rx) = smol::channel::bounded(1);
        Ok(Rc::new(Store {
            state: RefCell::new(State {
                objects,
                rv: max_rv,
                pending_ops: Vec::new(),
                pending_events: Vec::new(),
                log: VecDeque::new(),
                compacted: max_rv,
                watchers: Vec::new(),
                durable_waiters: Vec::new(),
            }),
            durable_rv: Cell::new(max_rv),
            writer,
            dirty_tx,
            dirty_rx,
            heartbeats: RefCell::default(),
        }))
    }

    /// Records that `node`'s kubelet is alive now.
    pub fn heartbeat(&self, node: &str) {
        self.heartbeats
            .borrow_mut()
            .insert(node.to_string(), Instant::now());
    }

    /// When `node`'s kubelet was last heard from since this daemon started.
    pub fn last_heartbeat(&self, node: &str) -> Option<Instant> {
        self.heartbeats.borrow().get(node).copied()
    }

    /// The resourceVersion of the latest write (lists report it).
    pub fn resource_version(&self) -> u64 {
        self.state.borrow().rv
    }

    pub fn get(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Object>> {
        let ns = if resource.namespaced { namespace } else { "" };
        self.state.borrow().objects[index(resource)]
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of one resource, in one namespace or all, ordered by namespace and name.
    pub fn list(&self, resource: &'static Resource, namespace: Option<&str>) -> Vec<Arc<Object>> {
        let st = self.state.borrow();
        let map = &st.objects[index(resource)];
        match namespace.filter(|_| resource.namespaced) {
            None => map.values().cloned().collect(),
            Some(ns) => map
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, o)| o.clone())
                .collect(),
        }
    }

    /// How many objects of every namespaced resource `namespace` holds.
    pub fn count_in_namespace(&self, namespace: &str) -> usize {
        let st = self.state.borrow();
        RESOURCES
            .iter()
            .filter(|r| r.namespaced)
            .map(|r| {
                st.objects[index(r)]
                    .range((namespace.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == namespace)
                    .count()
            })
            .sum()
    }

    /// Stores a new object. Sets uid (unless given), creationTimestamp, generation and
    /// resourceVersion; resolves generateName.
    pub fn create(
        &self,
        resource: &'static Resource,
        mut value: Value,
    ) -> Result<Arc<Object>, StoreError> {
        let mut st = self.state.borrow_mut();
        let ns = namespace_of(resource, &value);
        let map = &st.objects[index(resource)];
        let mut name = model::name(&value).to_string();
        if name.is_empty() {
            let prefix = model::meta_str(&value, "generateName")
                .unwrap_or_default()
                .to_string();
            if prefix.is_empty() {
                return Err(StoreError::Invalid {
                    resource,
                    name,
                    detail: "name or generateName is required".into(),
                });
            }
            name = loop {
                let candidate = format!("{prefix}{}", model::random_suffix());
                if !map.contains_key(&(ns.clone(), candidate.clone())) {
                    break candidate;
                }
            };
        } else if map.contains_key(&(ns.clone(), name.clone())) {
            return Err(StoreError::AlreadyExists { resource, name });
        }
        let rv = st.rv + 1;
        {
            let m = model::meta_mut(&mut value);
            m.insert("name".into(), name.into());
            if resource.namespaced {
                m.insert("namespace".into(), ns.clone().into());
            } else {
                m.remove("namespace");
            }
            // The API assigns uids before validation (a Job's selector
            // names it); everything else gets one here.
            if m.get("uid")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                m.insert("uid".into(), model::new_uid().into());
            }
            m.insert("creationTimestamp".into(), model::now().into());
            m.insert("generation".into(), 1.into());
            m.insert("resourceVersion".into(), rv.to_string().into());
            m.remove("deletionTimestamp");
        }
        set_type_meta(resource, &mut value);
        Ok(st.commit_put(resource, value, rv, None, self))
    }

    /// Replaces a stored object. A resourceVersion in the new body must match
    /// the stored one. uid and creationTimestamp are kept; generation grows
    /// when anything outside metadata and status changed. An update that
    /// changes nothing writes nothing. An object being deleted whose last
    /// finalizer is removed is deleted, unless it is in a grace period.
    pub fn update(
        &self,
        resource: &'static Resource,
        mut value: Value,
    ) -> Result<Arc<Object>, StoreError> {
        let mut st = self.state.borrow_mut();
        let ns = namespace_of(resource, &value);
        let name = model::name(&value).to_string();
        let Some(old) = st.objects[index(resource)]
            .get(&(ns.clone(), name.clone()))
            .cloned()
        else {
            return Err(StoreError::NotFound { resource, name });
        };
        let old_value = old.value();
        if let Some(rv) = model::meta_str(&value, "resourceVersion").filter(|s| !s.is_empty())
            && rv != old.rv.to_string()
        {
            return Err(StoreError::Conflict { resource, name });
        }
        if let Some(uid) = model::meta_str(&value, "uid").filter(|s| !s.is_empty())
            && uid != old.uid
        {
            return Err(StoreError::Conflict { resource, name });
        }
        {
            let old_meta = model::meta(&old_value).expect("stored objects have metadata");
            let m = model::meta_mut(&mut value);
            for key in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match old_meta.get(key) {
                    Some(v) => m.insert(key.into(), v.clone()),
                    None => m.remove(key),
                };
            }
            if resource.namespaced {
                m.insert("namespace".into(), ns.clone().into());
            }
            m.insert(
                "generation".into(),
                old_meta.get("generation").cloned().unwrap_or(1.into()),
            );
            m.insert("resourceVersion".into(), old.rv.to_string().into());
        }
        set_type_meta(resource, &mut value);
        if value == old_value {
            return Ok(old);
        }
        if spec_changed(&old_value, &value) {
            let g = model::meta(&old_value)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            model::meta_mut(&mut value).insert("generation".into(), (g + 1).into());
        }
        let rv = st.rv + 1;
        model::meta_mut(&mut value).insert("resourceVersion".into(), rv.to_string().into());
        // As the API server: an update ends a deletion only when nothing
        // holds it any more. A pod in its grace period is held by its
        // kubelet, which deletes it itself; a status write must not.
        let graceful = model::meta(&value)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0);
        if is_deleting(&value) && finalizers(&value).is_empty() && !graceful {
            return Ok(st.commit_delete(resource, &old, Some(value), rv, self));
        }
        Ok(st.commit_put(resource, value, rv, Some(old), self))
    }

    /// Stores an object as another store holds it (a cluster agent keeping
    /// its server's pods): uid, timestamps and generation are kept as given,
    /// only the resourceVersion is this store's. Writes nothing when only
    /// the resourceVersion differs.
    pub fn put_mirror(
        &self,
        resource: &'static Resource,
        mut value: Value,
    ) -> Result<Arc<Object>, StoreError> {
        let mut st = self.state.borrow_mut();
        let ns = namespace_of(resource, &value);
        let name = model::name(&value).to_string();
        if name.is_empty() {
            return Err(StoreError::Invalid {
                resource,
                name,
                detail: "a mirrored object needs a name".into(),
            });
        }
        let old = st.objects[index(resource)].get(&(ns, name)).cloned();
        set_type_meta(resource, &mut value);
        if let Some(old) = &old {
            model::meta_mut(&mut value).insert("resourceVersion".into(), old.rv.to_string().into());
            if value == old.value() {
                return Ok(old.clone());
            }
        }
        let rv = st.rv + 1;
        model::meta_mut(&mut value).insert("resourceVersion".into(), rv.to_string().into());
        Ok(st.commit_put(resource, value, rv, old, self))
    }

    /// Removes an object at once. `uid`, when given, must match (a
    /// precondition, so a replacement with the same name is not removed).
    pub fn delete(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<Arc<Object>, StoreError> {
        let mut st = self.state.borrow_mut();
        let ns = if resource.namespaced { namespace } else { "" };
        let Some(old) = st.objects[index(resource)]
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
        else {
            return Err(StoreError::NotFound {
                resource,
                name: name.to_string(),
            });
        };
        if uid.is_some_and(|u| u != old.uid) {
            return Err(StoreError::Conflict {
                resource,
                name: name.to_string(),
            });
        }
        let rv = st.rv + 1;
        let mut last = old.value();
        model::meta_mut(&mut last).insert("resourceVersion".into(), rv.to_string().into());
        Ok(st.commit_delete(resource, &old, Some(last), rv, self))
    }

    /// Deletes the way Kubernetes does: an object with finalizers, or a pod
    /// bound to a node with a grace period, is marked (deletionTimestamp)
    /// and goes when its finalizers are removed or its kubelet confirms the
    /// containers are gone; anything else goes at once. `grace` overrides the
    /// pod's terminationGracePeriodSeconds.
    pub fn delete_gracefully(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        grace: Option<i64>,
    ) -> Result<Deletion, StoreError> {
        let Some(old) = self.get(resource, namespace, name) else {
            return Err(StoreError::NotFound {
                resource,
                name: name.to_string(),
            });
        };
        let mut v = old.value();
        let is_pod = std::ptr::eq(resource, model::res("Pod"));
        let bound = is_pod
            && v.pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
        // No kubelet runs an unbound pod, so none would end its grace period.
        let grace = if is_pod && !bound {
            0
        } else {
            grace
                .or_else(|| {
                    v.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(if is_pod { 30 } else { 0 })
                .max(0)
        };
        let waits = !finalizers(&v).is_empty() || (bound && grace > 0);
        if !waits {
            return self
                .delete(resource, namespace, name, None)
                .map(Deletion::Gone);
        }
        let m = model::meta_mut(&mut v);
        let shorter = m
            .get("deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_none_or(|g| grace < g);
        if m.contains_key("deletionTimestamp") && !shorter {
            return Ok(Deletion::Pending(old));
        }
        let at = std::time::SystemTime::now() + Duration::from_secs(grace as u64);
        m.insert("deletionTimestamp".into(), model::timestamp(at).into());
        m.insert("deletionGracePeriodSeconds".into(), grace.into());
        let mut st = self.state.borrow_mut();
        let rv = st.rv + 1;
        model::meta_mut(&mut v).insert("resourceVersion".into(), rv.to_string().into());
        Ok(Deletion::Pending(st.commit_put(
            resource,
            v,
            rv,
            Some(old),
            self,
        )))
    }

    /// Registers a watch on one resource (one namespace or all) for every
    /// change after `since`. Changes the log no longer holds give `Gone`.
    pub fn watch(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        since: u64,
    ) -> Result<smol::channel::Receiver<WatchEvent>, StoreError> {
        self.watch_many(&[resource], namespace, since)
    }

    /// One watch over several resources, for loops that react to any of them.
    pub fn watch_many(
        &self,
        resources: &[&'static Resource],
        namespace: Option<&str>,
        since: u64,
    ) -> Result<smol::channel::Receiver<WatchEvent>, StoreError> {
        let mut st = self.state.borrow_mut();
        if since < st.compacted {
            return Err(StoreError::Gone {
                requested: since,
                oldest: st.compacted,
            });
        }
        if since > st.rv {
            return Err(StoreError::TooNew {
                requested: since,
                current: st.rv,
            });
        }
        let (tx, rx) = smol::channel::bounded(WATCH_QUEUE);
        let w = Watcher {
            resources: resources.to_vec(),
            namespace: namespace.map(str::to_string),
            since,
            tx,
        };
        for ev in st.log.iter().filter(|e| e.object.rv > since && w.wants(e)) {
            if w.tx.try_send(ev.clone()).is_err() {
                break;
            }
        }
        st.watchers.push(w);
        Ok(rx)
    }

    /// Resolves once every write up to `rv` is on disk.
    pub async fn durable(&self, rv: u64) {
        if self.durable_rv.get() >= rv {
            return;
        }
        let (tx, rx) = smol::channel::bounded(1);
        self.state.borrow_mut().durable_waiters.push((rv, tx));
        let _ = rx.recv().await;
    }

    /// Copies the database to its snapshot now if anything changed since
    /// the last copy (at shutdown; the writer also does it every
    /// [`SNAPSHOT_EVERY`] while writes come in).
    pub async fn save_snapshot(&self) {
        self.writer.snapshot().await;
    }

    /// Ends every watch (their streams close cleanly), for shutdown.
    pub fn close_watches(&self) {
        self.state.borrow_mut().watchers.clear();
    }

    /// The group-commit loop; runs for the life of the store.
    pub async fn run_flusher(&self) {
        let mut backoff = Duration::from_millis(100);
        while self.dirty_rx.recv().await.is_ok() {
            let (ops, events, last_rv) = {
                let mut st = self.state.borrow_mut();
                (
                    std::mem::take(&mut st.pending_ops),
                    std::mem::take(&mut st.pending_events),
                    st.rv,
                )
            };
            if ops.is_empty() {
                continue;
            }
            let mut batch = disk::Batch { ops, last_rv };
            // A failed commit (disk full, I/O error) is retried with the same
            // batch: nobody has been told of these writes yet, and writes made
            // meanwhile wait for the next batch, so the order on disk holds.
            let rv = loop {
                match self.writer.commit(batch).await {
                    Ok(rv) => break rv,
                    Err((back, e)) => {
                        log::error!(
                            "committing to the state database failed, retrying in {backoff:?}: {e}"
                        );
                        smol::Timer::after(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        batch = back;
                    }
                }
            };
            backoff = Duration::from_millis(100);
            self.durable_rv.set(rv);
            self.state.borrow_mut().publish(events, rv);
        }
    }
}

impl Watcher {
    fn wants(&self, ev: &WatchEvent) -> bool {
        self.resources.contains(&ev.object.resource)
            && (!ev.object.resource.namespaced
                || self
                    .namespace
                    .as_ref()
                    .is_none_or(|ns| *ns == ev.object.namespace))
    }
}

impl State {
    fn commit_put(
        &mut self,
        resource: &'static Resource,
        value: Value,
        rv: u64,
        prev: Option<Arc<Object>>,
        store: &Store,
    ) -> Arc<Object> {
        let raw: Arc<str> = serde_json::to_string(&value)
            .expect("JSON values serialize")
            .into();
        let obj = Arc::new(Object::new(resource, &value, raw.clone()));
        self.rv = rv;
        self.objects[index(resource)]
            .insert((obj.namespace.clone(), obj.name.clone()), obj.clone());
        self.pending_ops.push(disk::Op::Put {
            resource: resource.key(),
            namespace: obj.namespace.clone(),
            name: obj.name.clone(),
            uid: obj.uid.clone(),
            rv,
            body: raw,
        });
        let kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.pending_events.push(WatchEvent {
            kind,
            object: obj.clone(),
            prev,
        });
        let _ = store.dirty_tx.try_send(());
        obj
    }

    fn commit_delete(
        &mut self,
        resource: &'static Resource,
        old: &Arc<Object>,
        last: Option<Value>,
        rv: u64,
        store: &Store,
    ) -> Arc<Object> {
        self.rv = rv;
        self.objects[index(resource)].remove(&(old.namespace.clone(), old.name.clone()));
        self.pending_ops.push(disk::Op::Delete {
            resource: resource.key(),
            namespace: old.namespace.clone(),
            name: old.name.clone(),
        });
        let last = last.unwrap_or_else(|| old.value());
        let raw: Arc<str> = serde_json::to_string(&last)
            .expect("JSON values serialize")
            .into();
        let obj = Arc::new(Object::new(resource, &last, raw));
        self.pending_events.push(WatchEvent {
            kind: EventType::Deleted,
            object: obj.clone(),
            prev: Some(old.clone()),
        });
        let _ = store.dirty_tx.try_send(());
        obj
    }

    /// Hands durable events to watchers and the log, and wakes writers.
    fn publish(&mut self, events: Vec<WatchEvent>, durable: u64) {
        for ev in events {
            // A watcher whose queue is full or whose reader is gone is dropped;
            // its client sees the stream end and lists again.
            self.watchers.retain(|w| {
                !w.wants(&ev) || ev.object.rv <= w.since || w.tx.try_send(ev.clone()).is_ok()
            });
            if self.log.len() == LOG_CAPACITY
                && let Some(old) = self.log.pop_front()
            {
                self.compacted = old.object.rv;
            }
            self.log.push_back(ev);
        }
        self.durable_waiters.retain(|(rv, tx)| {
            if *rv <= durable {
                let _ = tx.try_send(());
                false
            } else {
                true
            }
        });
    }
}

fn set_type_meta(resource: &Resource, value: &mut Value) {
    let map = value.as_object_mut().expect("API objects are JSON objects");
    map.insert("apiVersion".into(), resource.api_version().into());
    map.insert("kind".into(), resource.kind.into());
}

/// Whether anything outside metadata and status differs: what makes
/// Kubernetes bump metadata.generation.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

pub fn is_deleting(value: &Value) -> bool {
    model::meta(value).is_some_and(|m| m.contains_key("deletionTimestamp"))
}

/// What must happen before a deleted object goes: metadata.finalizers, and
/// for a Namespace also spec.finalizers (emptied by the namespace controller).
pub fn finalizers(value: &Value) -> Vec<&str> {
    fn list(v: Option<&Value>) -> impl Iterator<Item = &str> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }
    let spec = match value.get("kind").and_then(Value::as_str) {
        Some("Namespace") => value.pointer("/spec/finalizers"),
        _ => None,
    };
    list(model::meta(value).and_then(|m| m.get("finalizers")))
        .chain(list(spec))
        .collect()
}

/// Stores for unit tests anywhere in the crate.
#[cfg(test)]
pub(crate) mod testing {
    use super::Store;
    use std::path::PathBuf;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store in a fresh directory of its own: `tag` names it for a human,
    /// a counter keeps tests with the same tag apart.
    pub fn temp_store(tag: &str) -> (Rc<Store>, PathBuf) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("bramble-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open(&dir).unwrap(), dir)
    }

    /// [`temp_store`] with the default namespace, as a server's store has it.
    pub fn temp_store_with_default_ns(tag: &str) -> (Rc<Store>, PathBuf) {
        let (store, dir) = temp_store(tag);
        store
            .create(
                crate::model::res("Namespace"),
                serde_json::json!({"metadata": {"name": "default"}}),
            )
            .unwrap();
        (store, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::temp_store;
    use super::*;
    use crate::model::res;
    use serde_json::json;

    fn cm(name: &str, data: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "data": {"k": data}})
    }

    /// Runs the flusher until every write so far is durable.
    fn flush(store: &Rc<Store>) {
        let ex = async_executor::LocalExecutor::new();
        let s = store.clone();
        ex.spawn(async move { s.run_flusher().await }).detach();
        smol::block_on(ex.run(store.durable(store.resource_version())));
    }

    #[test]
    fn writes_get_metadata_and_survive_reopen() {
        let (store, dir) = temp_store("reopen");
        let a = store.create(res("ConfigMap"), cm("a", "1")).unwrap();
        let v = a.value();
        assert_eq!(a.rv, 1);
        assert_eq!(v["kind"], "ConfigMap");
        assert_eq!(v["metadata"]["generation"], 1);
        assert_eq!(v["metadata"]["resourceVersion"], "1");
        assert!(matches!(
            store.create(res("ConfigMap"), cm("a", "2")),
            Err(StoreError::AlreadyExists { .. })
        ));
        let b = store.update(res("ConfigMap"), cm("a", "2")).unwrap();
        assert_eq!((b.rv, b.uid.as_str()), (2, a.uid.as_str()));
        assert_eq!(
            b.value()["metadata"]["generation"],
            2,
            "data is outside metadata and status"
        );
        flush(&store);
        drop(store);
        let again = Store::open(&dir).unwrap();
        assert_eq!(again.resource_version(), 2);
        assert_eq!(
            again.get(res("ConfigMap"), "default", "a").unwrap().value()["data"]["k"],
            "2"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_resource_versions_conflict_and_no_op_updates_write_nothing() {
        let (store, dir) = temp_store("conflict");
        store.create(res("ConfigMap"), cm("a", "1")).unwrap();
        let mut stale = cm("a", "x");
        stale["metadata"]["resourceVersion"] = "7".into();
        assert!(matches!(
            store.update(res("ConfigMap"), stale),
            Err(StoreError::Conflict { .. })
        ));
        let same = store.update(res("ConfigMap"), cm("a", "1")).unwrap();
        assert_eq!((same.rv, store.resource_version()), (1, 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finalizers_hold_a_deletion_until_removed() {
        let (store, dir) = temp_store("finalizers");
        let mut v = cm("a", "1");
        v["metadata"]["finalizers"] = json!(["example.com/wait"]);
        store.create(res("ConfigMap"), v).unwrap();
        let d = store
            .delete_gracefully(res("ConfigMap"), "default", "a", None)
            .unwrap();
        let Deletion::Pending(marked) = d else {
            panic!("a finalizer must hold the object")
        };
        let mut v = marked.value();
        assert!(is_deleting(&v));
        v["metadata"]["finalizers"] = json!([]);
        store.update(res("ConfigMap"), v).unwrap();
        assert!(store.get(res("ConfigMap"), "default", "a").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unbound_pods_go_at_once_bound_pods_wait_for_their_kubelet() {
        let (store, dir) = temp_store("pods");
        let pod = |name: &str, node: &str| json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}});
        store.create(res("Pod"), pod("free", "")).unwrap();
        store.create(res("Pod"), pod("bound", "board")).unwrap();
        assert!(matches!(
            store.delete_gracefully(res("Pod"), "default", "free", None),
            Ok(Deletion::Gone(_))
        ));
        let Ok(Deletion::Pending(p)) =
            store.delete_gracefully(res("Pod"), "default", "bound", None)
        else {
            panic!()
        };
        assert_eq!(p.value()["metadata"]["deletionGracePeriodSeconds"], 30);
        // Its kubelet reporting the containers stopping does not end it.
        let mut v = p.value();
        v["status"] = json!({"phase": "Running"});
        store.update(res("Pod"), v).unwrap();
        assert!(store.get(res("Pod"), "default", "bound").is_some());
        assert!(matches!(
            store.delete_gracefully(res("Pod"), "default", "bound", Some(0)),
            Ok(Deletion::Gone(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn watches_see_durable_changes_in_order_and_old_versions_are_gone() {
        let (store, dir) = temp_store("watch");
        let w = store.watch(res("ConfigMap"), Some("default"), 0).unwrap();
        store.create(res("ConfigMap"), cm("a", "1")).unwrap();
        store.update(res("ConfigMap"), cm("a", "2")).unwrap();
        store
            .delete(res("ConfigMap"), "default", "a", None)
            .unwrap();
        assert!(
            w.try_recv().is_err(),
            "nothing is published before it is durable"
        );
        flush(&store);
        let kinds: Vec<_> = std::iter::from_fn(|| w.try_recv().ok())
            .map(|e| (e.kind, e.object.rv))
            .collect();
        assert_eq!(
            kinds,
            [
                (EventType::Added, 1),
                (EventType::Modified, 2),
                (EventType::Deleted, 3)
            ]
        );
        // A watch from rv 1 replays what came after it.
        let w2 = store.watch(res("ConfigMap"), None, 1).unwrap();
        assert_eq!(w2.try_recv().unwrap().object.rv, 2);
        drop(store);
        let again = Store::open(&dir).unwrap();
        assert!(matches!(
            again.watch(res("ConfigMap"), None, 1),
            Err(StoreError::Gone {
                requested: 1,
                oldest: 3
            })
        ));
        assert!(again.watch(res("ConfigMap"), None, 3).is_ok());
        // One this store has not reached (handed out before a restore from
        // an older snapshot): the client must list again.
        assert!(matches!(
            again.watch(res("ConfigMap"), None, 4),
            Err(StoreError::TooNew {
                requested: 4,
                current: 3
            })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
