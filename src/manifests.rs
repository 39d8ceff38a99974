//! The manifests folder, DATA_DIR/manifests: every `.yaml`, `.yml` or
//! `.json` file in it is applied at start and whenever it changes, through
//! the API like any client (server-side apply, so defaulting, validation
//! and admission are the same as for kubectl). Each object it creates is
//! annotated with the file's name; an object the file no longer declares,
//! or whose file is deleted, is deleted (unlike k3s, which leaves them).

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crate::api::http::{Method, Reply, Request};
use crate::api::{self, Ctx};
use crate::model::{self, RESOURCES, Resource};

/// The annotation naming the file an object came from.
pub const SOURCE: &str = "bramble.dev/manifest";
const FIELD_MANAGER: &str = "bramble-manifests";
const SCAN_PERIOD: Duration = Duration::from_secs(3);

/// What a file was when last looked at.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    modified: Option<SystemTime>,
    len: u64,
}

/// Watches `dir` until the daemon stops.
pub async fn run(ctx: Rc<Ctx>, dir: PathBuf) {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        log::warn!("manifests folder {}: {e}", dir.display());
        return;
    }
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    // The first pass also deletes what files removed while the daemon was
    // down had created.
    let mut first = true;
    loop {
        let now = listing(&dir);
        let changed: Vec<&String> = now
            .iter()
            .filter(|(name, s)| seen.get(*name) != Some(s))
            .map(|(name, _)| name)
            .collect();
        let gone = first || seen.keys().any(|name| !now.contains_key(name));
        for name in changed {
            apply_file(&ctx, &dir, name).await;
        }
        if gone {
            let files: BTreeSet<&str> = now.keys().map(String::as_str).collect();
            for (resource, ns, obj_name, file) in annotated(&ctx) {
                if !files.contains(file.as_str()) {
                    log::info!(
                        "manifests: {file} is gone: deleting {} {ns}/{obj_name}",
                        resource.kind
                    );
                    delete(&ctx, resource, &ns, &obj_name).await;
                }
            }
        }
        seen = now;
        first = false;
        smol::Timer::after(SCAN_PERIOD).await;
    }
}

/// The manifest files in `dir`, by name.
fn listing(dir: &Path) -> BTreeMap<String, Seen> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let manifest = [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x));
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            (manifest && !name.starts_with('.')).then(|| {
                let seen = Seen {
                    modified: meta.modified().ok(),
                    len: meta.len(),
                };
                (name, seen)
            })
        })
        .collect()
}

/// Applies every object of one file, then deletes the objects the file
/// created before and no longer declares.
async fn apply_file(ctx: &Rc<Ctx>, dir: &Path, file: &str) {
    let text = match std::fs::read_to_string(dir.join(file)) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("manifests: reading {file}: {e}");
            return;
        }
    };
    let objects = match parse(&text) {
        Ok(o) => o,
        Err(e) => {
            log::warn!("manifests: {file} is not valid YAML or JSON: {e}");
            return;
        }
    };
    let mut declared = BTreeSet::new();
    let mut complete = true;
    for (i, obj) in objects.into_iter().enumerate() {
        match target(&obj) {
            Ok((resource, ns, name)) => {
                let reply = apply(ctx, resource, &ns, &name, file, obj).await;
                if let Err(why) = reply {
                    log::warn!("manifests: {file}: {} {ns}/{name}: {why}", resource.kind);
                    complete = false;
                }
                declared.insert((resource.key(), ns, name));
            }
            Err(why) => {
                log::warn!("manifests: {file}: object {}: {why}", i + 1);
                complete = false;
            }
        }
    }
    // An object that failed to apply may still be declared: prune only
    // after a file that applied whole, so a typo deletes nothing.
    if !complete {
        return;
    }
    for (resource, ns, name, from) in annotated(ctx) {
        if from == file && !declared.contains(&(resource.key(), ns.clone(), name.clone())) {
            log::info!(
                "manifests: {file} no longer declares {} {ns}/{name}: deleting it",
                resource.kind
            );
            delete(ctx, resource, &ns, &name).await;
        }
    }
}

/// The objects of a manifest: YAML documents (or one JSON document); a
/// `kind: List` stands for its items; empty documents are skipped.
fn parse(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| e.to_string())?;
        match v {
            Value::Null => {}
            v if v.get("kind").and_then(Value::as_str) == Some("List") => out.extend(
                v.get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            ),
            v => out.push(v),
        }
    }
    Ok(out)
}

/// The resource, namespace and name an object is applied to.
fn target(obj: &Value) -> Result<(&'static Resource, String, String), String> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let resource = RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
        .ok_or_else(|| format!("no resource of kind {kind:?} in {api_version:?} is served"))?;
    let name = model::name(obj);
    if name.is_empty() {
        return Err(format!("the {kind} has no metadata.name"));
    }
    let ns = match (resource.namespaced, model::namespace(obj)) {
        (false, _) => "",
        (true, "") => "default",
        (true, ns) => ns,
    };
    Ok((resource, ns.to_string(), name.to_string()))
}

fn path(resource: &Resource, ns: &str, name: &str) -> String {
    let root = match resource.group {
        "" => format!("/api/{}", resource.version),
        g => format!("/apis/{g}/{}", resource.version),
    };
    let scope = if resource.namespaced {
        format!("/namespaces/{ns}")
    } else {
        String::new()
    };
    format!("{root}{scope}/{}/{name}", resource.plural)
}

async fn apply(
    ctx: &Rc<Ctx>,
    resource: &Resource,
    ns: &str,
    name: &str,
    file: &str,
    mut obj: Value,
) -> Result<(), String> {
    let meta = model::meta_mut(&mut obj);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    annotations[SOURCE] = file.into();
    let req = Request {
        method: Method::Patch,
        path: path(resource, ns, name),
        query: vec![
            ("fieldManager".into(), FIELD_MANAGER.into()),
            ("force".into(), "true".into()),
        ],
        accept: "application/json".into(),
        content_type: "application/apply-patch+yaml".into(),
        body: serde_json::to_vec(&obj).expect("JSON values serialize"),
        websocket: None,
    };
    outcome(api::call(ctx, &req).await)
}

async fn delete(ctx: &Rc<Ctx>, resource: &Resource, ns: &str, name: &str) {
    let req = Request {
        method: Method::Delete,
        path: path(resource, ns, name),
        query: Vec::new(),
        accept: "application/json".into(),
        content_type: String::new(),
        body: Vec::new(),
        websocket: None,
    };
    if let Err(why) = outcome(api::call(ctx, &req).await) {
        log::warn!("manifests: deleting {} {ns}/{name}: {why}", resource.kind);
    }
}

/// Ok for a 2xx reply, else the Status message.
fn outcome(reply: Reply) -> Result<(), String> {
    match reply {
        Reply::Full { status, body, .. } if !(200..300).contains(&status) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            Err(v
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| format!("HTTP {status}"), str::to_string))
        }
        _ => Ok(()),
    }
}

/// Every object that came from a manifest file: (resource, namespace, name, file).
fn annotated(ctx: &Ctx) -> Vec<(&'static Resource, String, String, String)> {
    let mut out = Vec::new();
    for r in RESOURCES {
        for o in ctx.store.list(r, None) {
            // Cheap test on the stored text before parsing.
            if !o.raw.contains(SOURCE) {
                continue;
            }
            let v = o.value();
            if let Some(file) = v
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(SOURCE))
                .and_then(Value::as_str)
            {
                out.push((r, o.namespace.clone(), o.name.clone(), file.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_lists_are_objects() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n";
        let objs = parse(text).unwrap();
        let names: Vec<&str> = objs.iter().map(model::name).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(parse("{\"kind\": \"ConfigMap\"}").is_ok());
        assert!(parse("a: [").unwrap_err().contains("line"));
    }

    #[test]
    fn targets_name_their_resource_and_namespace() {
        let (r, ns, name) = target(&json!({"apiVersion": "apps/v1", "kind": "Deployment",
                                            "metadata": {"name": "web"}}))
        .unwrap();
        assert_eq!(
            (r.kind, ns.as_str(), name.as_str()),
            ("Deployment", "default", "web")
        );
        assert_eq!(
            path(r, &ns, &name),
            "/apis/apps/v1/namespaces/default/deployments/web"
        );
        let (r, ns, _) = target(&json!({"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": "x", "namespace": "y"}}))
        .unwrap();
        assert_eq!(path(r, &ns, "x"), "/api/v1/namespaces/x");
        let err =
            target(&json!({"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "a"}}));
        assert_eq!(
            err.unwrap_err(),
            "no resource of kind \"Deployment\" in \"v1\" is served"
        );
        let err = target(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}}));
        assert_eq!(err.unwrap_err(), "the Pod has no metadata.name");
    }
}
