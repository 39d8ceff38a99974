//! The API types bramble serves: which resources exist, how their objects are
//! named, defaulted and validated. Objects stay `serde_json::Value` in the
//! Kubernetes JSON shape so that every field a client sends survives a round
//! trip; typed views are made where a decision needs them.

pub mod defaults;
pub mod json;
pub mod placement;
pub mod quantity;
pub mod schema;
pub mod selector;
pub mod validate;

use serde_json::{Map, Value};
use std::time::SystemTime;

/// One REST resource, as discovery describes it.
#[derive(Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// `all` puts a resource in `kubectl get all`.
    pub categories: &'static [&'static str],
    /// Subresources beside `status`, which every resource with a status has.
    pub subresources: &'static [Subresource],
}

/// Resources are statics: two are the same when they are the same entry.
impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Log,
    Exec,
    Binding,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Binding => "binding",
        }
    }
}

use Subresource::*;

const ALL: &[&str] = &["all"];

macro_rules! resource {
    ($group:expr, $kind:expr, $plural:expr, $singular:expr, $ns:expr, $short:expr, $cat:expr, $subs:expr) => {
        Resource {
            group: $group,
            version: "v1",
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: $short,
            categories: $cat,
            subresources: $subs,
        }
    };
}

/// Every resource bramble serves. The index of an entry is stable within one
/// binary only; the store keys rows by `Resource::key()`.
pub static RESOURCES: &[Resource] = &[
    resource!(
        "",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        &[],
        &[Status]
    ),
    resource!("", "Node", "nodes", "node", false, &["no"], &[], &[Status]),
    resource!(
        "",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        ALL,
        &[Status, Log, Exec, Binding]
    ),
    resource!("", "Event", "events", "event", true, &["ev"], &[], &[]),
    resource!(
        "",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        ALL,
        &[Status]
    ),
    resource!(
        "",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        &[],
        &[]
    ),
    resource!(
        "",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        &[],
        &[]
    ),
    resource!("", "Secret", "secrets", "secret", true, &[], &[], &[]),
    resource!(
        "",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        true,
        &["rc"],
        ALL,
        &[Status, Scale]
    ),
    resource!(
        "apps",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        ALL,
        &[Status, Scale]
    ),
    resource!(
        "apps",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        ALL,
        &[Status, Scale]
    ),
    resource!(
        "apps",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
        ALL,
        &[Status]
    ),
    resource!("batch", "Job", "jobs", "job", true, &[], ALL, &[Status]),
    resource!(
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        &[],
        &[],
        &[]
    ),
];

/// The API groups served besides the core group, in discovery order.
pub const GROUPS: &[&str] = &["apps", "batch", "discovery.k8s.io"];

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store's key for this resource: `pods`, `deployments.apps`.
    pub fn key(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }
}

pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn by_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

pub fn by_key(key: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.key() == key)
}

/// Well-known resources, for code that names one directly.
pub fn res(kind: &str) -> &'static Resource {
    by_kind(kind).unwrap_or_else(|| panic!("{kind} is not a served resource"))
}

// ---- metadata access -------------------------------------------------------

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.as_object()
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let map = obj.as_object_mut().expect("API objects are JSON objects");
    let m = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut().expect("just made an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

pub fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace").unwrap_or("")
}

pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    meta(obj)?.get("labels")?.as_object()
}

/// RFC 3339 with seconds, UTC, as Kubernetes writes timestamps.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// FNV-1a over the parts, each followed by a zero byte: a hash stable across
/// runs and releases, for names derived from content (events, slices).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.iter().copied().chain([0]))
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

pub fn now() -> String {
    timestamp(SystemTime::now())
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("the kernel's random source is available");
    b
}

/// A random (version 4) UUID, the shape Kubernetes uses for uids.
pub fn new_uid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The 5-character suffix Kubernetes appends for `generateName`.
pub fn random_suffix() -> String {
    // Kubernetes leaves out vowels and look-alikes so names spell no words.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>()
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_unique_by_key_and_kind() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert_ne!(a.key(), b.key());
                assert_ne!(a.kind, b.kind);
            }
        }
        assert_eq!(res("Deployment").key(), "deployments.apps");
        assert_eq!(res("Deployment").api_version(), "apps/v1");
        assert_eq!(res("Pod").api_version(), "v1");
    }

    #[test]
    fn uid_has_uuid_shape() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
    }

    #[test]
    fn timestamps_are_rfc3339_seconds() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(timestamp(t), "2026-11-18T11:06:40Z");
    }
}
