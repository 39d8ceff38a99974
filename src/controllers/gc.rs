//! The garbage collector: deletes objects whose owners are gone (background
//! propagation) and finishes foreground deletions, whose owners wait under
//! the `foregroundDeletion` finalizer until their blocking dependents are
//! gone. Orphan propagation needs nothing here: the API strips the owner's
//! references from its dependents before deleting it.

use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

use crate::model::{self, RESOURCES, Resource};
use crate::store::{self, Object, Store, StoreError};

/// The finalizer of an owner deleted with `propagationPolicy: Foreground`.
pub const FOREGROUND: &str = "foregroundDeletion";

pub async fn run(store: &Store) {
    let watched: Vec<&'static Resource> = RESOURCES.iter().collect();
    let mut retry = super::replicaset::Retry::default();
    super::level_loop(store, &watched, super::SETTLE, || retry.after(pass(store))).await
}

/// The only fields the collector reads, decoded without building the rest
/// of the object's tree: every pass reads every dependent.
#[derive(Debug, Default, Deserialize)]
struct Head {
    #[serde(default)]
    metadata: HeadMeta,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct HeadMeta {
    owner_references: Vec<OwnerRef>,
    deletion_timestamp: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub block_owner_deletion: Option<bool>,
}

/// An object's owner references and whether it is being deleted. Stored
/// objects passed validation; one that still does not decode counts as
/// naming no owner, so the collector leaves it alone.
fn head(o: &Object) -> HeadMeta {
    serde_json::from_str::<Head>(&o.raw)
        .map(|h| h.metadata)
        .unwrap_or_default()
}

/// An object that names at least one owner, decoded once per pass.
struct Dependent {
    obj: Arc<Object>,
    refs: Vec<OwnerRef>,
    deleting: bool,
}

/// Whether the owner a reference names exists with that uid. Owners of kinds
/// bramble does not serve cannot be checked, so they count as present.
fn owner_exists(store: &Store, namespace: &str, r: &OwnerRef) -> bool {
    let Some(resource) = model::by_kind(&r.kind) else {
        return true;
    };
    store
        .get(resource, namespace, &r.name)
        .is_some_and(|o| o.uid == r.uid)
}

/// What to do with a dependent, given which of its owners exist.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Keep,
    /// Every owner is gone.
    Delete,
    /// Some owners are gone: drop the references to them (by uid).
    DropRefs(Vec<String>),
}

pub fn verdict(refs: &[OwnerRef], exists: impl Fn(&OwnerRef) -> bool) -> Verdict {
    let missing: Vec<String> = refs
        .iter()
        .filter(|r| !exists(r))
        .map(|r| r.uid.clone())
        .collect();
    if missing.is_empty() {
        Verdict::Keep
    } else if missing.len() == refs.len() {
        Verdict::Delete
    } else {
        Verdict::DropRefs(missing)
    }
}

/// Whether a dependent with these references holds up the foreground
/// deletion of owner `uid`.
pub fn blocks(refs: &[OwnerRef], uid: &str) -> bool {
    refs.iter()
        .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
}

/// One pass over every owner and dependent; whether anything failed.
fn pass(store: &Store) -> bool {
    // The text test skips parsing the many objects that name no owner.
    let dependents: Vec<Dependent> = RESOURCES
        .iter()
        .flat_map(|r| store.list(r, None))
        .filter(|o| o.raw.contains("\"ownerReferences\""))
        .map(|obj| {
            let h = head(&obj);
            Dependent {
                obj,
                refs: h.owner_references,
                deleting: h.deletion_timestamp.is_some(),
            }
        })
        .filter(|d| !d.refs.is_empty())
        .collect();
    let mut failed = false;
    for owner in RESOURCES
        .iter()
        .flat_map(|r| store.list(r, None))
        .filter(|o| o.raw.contains(FOREGROUND))
    {
        if let Err(e) = foreground(store, &owner, &dependents) {
            log::warn!(
                "foreground deletion of {} {}/{}: {e}",
                owner.resource.kind,
                owner.namespace,
                owner.name
            );
            failed = true;
        }
    }
    for d in &dependents {
        if let Err(e) = collect(store, d) {
            log::warn!(
                "collecting {} {}/{}: {e}",
                d.obj.resource.kind,
                d.obj.namespace,
                d.obj.name
            );
            failed = true;
        }
    }
    failed
}

/// Background propagation for one dependent. An object already being
/// deleted is left alone: an update to it could remove it before its
/// kubelet or finalizers are done.
fn collect(store: &Store, d: &Dependent) -> Result<(), StoreError> {
    if d.deleting {
        return Ok(());
    }
    let o = &d.obj;
    match verdict(&d.refs, |r| owner_exists(store, &o.namespace, r)) {
        Verdict::Keep => Ok(()),
        Verdict::Delete => {
            log::info!(
                "deleting {} {}/{}: its owners are gone",
                o.resource.kind,
                o.namespace,
                o.name
            );
            delete(store, o)
        }
        Verdict::DropRefs(uids) => {
            let mut v = o.value();
            if let Some(refs) = v
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| !uids.iter().any(|u| Some(u.as_str()) == r["uid"].as_str()));
            }
            ignore_gone(store.update(o.resource, v).map(drop))
        }
    }
}

/// The deletion the collector makes: the object's own dependents are
/// handled on later passes, once it is gone.
fn delete(store: &Store, o: &Object) -> Result<(), StoreError> {
    // The uid check avoids deleting a replacement made under the same name.
    if store
        .get(o.resource, &o.namespace, &o.name)
        .is_none_or(|now| now.uid != o.uid)
    {
        return Ok(());
    }
    ignore_gone(
        store
            .delete_gracefully(o.resource, &o.namespace, &o.name, None)
            .map(drop),
    )
}

fn ignore_gone(r: Result<(), StoreError>) -> Result<(), StoreError> {
    match r {
        Err(StoreError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// Foreground propagation for one owner: deletes its dependents (those with
/// dependents of their own in foreground too), and once no blocking
/// dependent is left, removes the finalizer so the owner goes.
fn foreground(store: &Store, owner: &Object, dependents: &[Dependent]) -> Result<(), StoreError> {
    let v = owner.value();
    if !store::is_deleting(&v) || !store::finalizers(&v).contains(&FOREGROUND) {
        return Ok(());
    }
    let mine: Vec<&Dependent> = dependents
        .iter()
        .filter(|d| d.refs.iter().any(|r| r.uid == owner.uid))
        .collect();
    for d in &mine {
        if !d.deleting {
            hold_for_dependents(store, &d.obj)?;
            delete(store, &d.obj)?;
        }
    }
    let blocked = mine.iter().any(|d| {
        blocks(&d.refs, &owner.uid)
            && store
                .get(d.obj.resource, &d.obj.namespace, &d.obj.name)
                .is_some_and(|now| now.uid == d.obj.uid)
    });
    if blocked {
        return Ok(());
    }
    let mut v = v;
    if let Some(f) = v
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        f.retain(|x| x.as_str() != Some(FOREGROUND));
    }
    ignore_gone(store.update(owner.resource, v).map(drop))
}

/// `propagationPolicy: Foreground`, before the deletion itself: an object
/// with dependents gets the `foregroundDeletion` finalizer, so its deletion
/// only marks it and the collector takes its dependents down first. An
/// object without dependents is deleted as usual.
pub fn hold_for_dependents(store: &Store, obj: &Object) -> Result<(), StoreError> {
    let r = obj.resource;
    let namespace = obj.resource.namespaced.then_some(obj.namespace.as_str());
    let has_dependents = RESOURCES.iter().any(|dr| {
        store
            .list(dr, namespace)
            .iter()
            .filter(|o| o.raw.contains(obj.uid.as_str()))
            .any(|o| head(o).owner_references.iter().any(|x| x.uid == obj.uid))
    });
    if !has_dependents {
        return Ok(());
    }
    let Some(now) = store.get(r, &obj.namespace, &obj.name) else {
        return Ok(());
    };
    let mut v = now.value();
    if store::finalizers(&v).contains(&FOREGROUND) {
        return Ok(());
    }
    let f = model::meta_mut(&mut v)
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    match f.as_array_mut() {
        Some(list) => list.push(FOREGROUND.into()),
        None => *f = serde_json::json!([FOREGROUND]),
    }
    store.update(r, v).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(uid: &str, block: bool) -> OwnerRef {
        OwnerRef {
            kind: "ReplicationController".into(),
            name: uid.into(),
            uid: uid.into(),
            block_owner_deletion: Some(block),
        }
    }

    fn pod_names(store: &Store) -> Vec<String> {
        let pods = store.list(crate::model::res("Pod"), Some("default"));
        pods.iter().map(|p| p.name.clone()).collect()
    }

    #[test]
    fn pods_of_a_deleted_rc_are_collected_in_background_and_foreground() {
        use crate::controllers::replicaset::tests::stored_rc;
        use crate::store::testing::temp_store_with_default_ns;
        let rc = crate::model::res("ReplicationController");
        let (store, dir) = temp_store_with_default_ns("gc");
        stored_rc(&store, "bg", 2);
        stored_rc(&store, "fg", 2);
        assert!(!crate::controllers::replicaset::pass(&store, std::time::SystemTime::now()).failed);
        assert_eq!(pod_names(&store).len(), 4);
        assert!(!pass(&store), "owners present: nothing to do");
        assert_eq!(pod_names(&store).len(), 4);

        store.delete(rc, "default", "bg", None).unwrap();
        assert!(!pass(&store));
        assert!(pod_names(&store).iter().all(|n| n.starts_with("fg-")));

        let owner = store.get(rc, "default", "fg").unwrap();
        hold_for_dependents(&store, &owner).unwrap();
        store.delete_gracefully(rc, "default", "fg", None).unwrap();
        let marked = store.get(rc, "default", "fg").unwrap().value();
        assert_eq!(store::finalizers(&marked), [FOREGROUND]);
        assert!(!pass(&store));
        assert!(pod_names(&store).is_empty());
        assert!(!pass(&store));
        assert!(store.get(rc, "default", "fg").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dependents_go_only_when_every_owner_is_gone() {
        let refs = [r("a", true), r("b", false)];
        assert_eq!(verdict(&refs, |_| true), Verdict::Keep);
        assert_eq!(verdict(&refs, |_| false), Verdict::Delete);
        assert_eq!(
            verdict(&refs, |x| x.uid == "a"),
            Verdict::DropRefs(vec!["b".into()])
        );
    }

    #[test]
    fn only_block_owner_deletion_holds_up_a_foreground_deletion() {
        let refs = [r("a", true), r("b", false)];
        assert!(blocks(&refs, "a"));
        assert!(!blocks(&refs, "b"));
        assert!(!blocks(&refs, "c"));
        assert!(!blocks(&[], "a"));
    }

    #[test]
    fn heads_decode_owner_references_and_deletion() {
        let raw = json!({"kind": "Pod", "metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicationController", "name": "a",
                                 "uid": "a", "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"containers": []}});
        let obj = Object::from_value(crate::model::res("Pod"), &raw);
        let h = head(&obj);
        assert_eq!(h.owner_references, [r("a", true)]);
        assert!(h.deletion_timestamp.is_some());
    }
}
