//! The verbs on resources: get, list, create, update, patch, delete,
//! deletecollection, and the status and scale subresources.

use serde_json::{Map, Value, json};
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use super::body::{self, PatchType, Propagation};
use super::http::{Method, Reply, Request};
use super::router::Target;
use super::{Ctx, Status, admission, patch, table, watch};
use crate::model::selector::{FieldSelector, LabelSelector};
use crate::model::{self, Resource, Subresource, defaults, schema, validate};
use crate::store::{Deletion, Object};

pub async fn handle(ctx: &Rc<Ctx>, req: &Request, t: &Target) -> Result<Reply, Status> {
    use Method::*;
    use Subresource as S;
    match (req.method, t.name.as_deref(), t.sub) {
        (Get, _, None) if body::is_watch(req) => watch::start(ctx, req, t),
        (Get, None, None) => list(ctx, req, t),
        (Post, None, None) => create(ctx, req, t).await,
        (Delete, None, None) => delete_collection(ctx, req, t).await,
        (Get, Some(name), None | Some(S::Status)) => get(ctx, req, t, name),
        (Put, Some(name), None | Some(S::Status)) => replace(ctx, req, t, name).await,
        (Patch, Some(name), None | Some(S::Status)) => patch(ctx, req, t, name).await,
        (Delete, Some(name), None) => delete(ctx, req, t, name).await,
        (Get | Put | Patch, Some(name), Some(S::Scale)) => scale(ctx, req, t, name).await,
        (Post, Some(name), Some(S::Binding)) => bind(ctx, req, t, name).await,
        (Get, Some(name), Some(S::Log)) => super::pods::log(ctx, req, t, name).await,
        (Get | Post, Some(name), Some(S::Exec)) => super::pods::exec(ctx, req, t, name).await,
        _ => Err(Status::method_not_allowed(format!(
            "{:?} is not supported on {}",
            req.method, req.path
        ))),
    }
}

fn namespace_of(t: &Target) -> &str {
    t.namespace.as_deref().unwrap_or("")
}

fn raw_reply(code: u16, obj: &Object) -> Reply {
    Reply::json(code, obj.raw.as_bytes().to_vec())
}

fn value_reply(code: u16, v: &Value) -> Reply {
    Reply::json(code, serde_json::to_vec(v).expect("JSON values serialize"))
}

pub fn include_object(req: &Request) -> Result<table::IncludeObject, Status> {
    req.param("includeObject")
        .unwrap_or("")
        .parse()
        .map_err(Status::bad_request)
}

pub fn existing(ctx: &Ctx, t: &Target, name: &str) -> Result<Arc<Object>, Status> {
    ctx.store
        .get(t.resource, namespace_of(t), name)
        .ok_or_else(|| Status::not_found(t.resource, name))
}

fn get(ctx: &Ctx, req: &Request, t: &Target, name: &str) -> Result<Reply, Status> {
    let obj = existing(ctx, t, name)?;
    if body::wants_table(req) {
        let v = obj.value();
        let rv = obj.rv.to_string();
        return Ok(value_reply(
            200,
            &table::table(
                t.resource.kind,
                &[v],
                &rv,
                include_object(req)?,
                SystemTime::now(),
            ),
        ));
    }
    Ok(raw_reply(200, &obj))
}

/// Label, field and name selection shared by list and watch.
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl Filter {
    pub fn from_request(req: &Request, resource: &Resource) -> Result<Filter, Status> {
        let labels = match req.param("labelSelector").filter(|s| !s.is_empty()) {
            Some(s) => Some(
                LabelSelector::parse(s)
                    .map_err(|e| Status::bad_request(format!("labelSelector: {e}")))?,
            ),
            None => None,
        };
        let fields = match req.param("fieldSelector").filter(|s| !s.is_empty()) {
            Some(s) => {
                let f = FieldSelector::parse(s)
                    .map_err(|e| Status::bad_request(format!("fieldSelector: {e}")))?;
                f.check_supported(resource.kind)
                    .map_err(|e| Status::bad_request(e.to_string()))?;
                Some(f)
            }
            None => None,
        };
        Ok(Filter { labels, fields })
    }

    pub fn matches(&self, o: &Object) -> bool {
        self.labels.as_ref().is_none_or(|l| l.matches(&o.labels))
            && self.fields.as_ref().is_none_or(|f| f.matches(&o.value()))
    }
}

fn list(ctx: &Ctx, req: &Request, t: &Target) -> Result<Reply, Status> {
    let filter = Filter::from_request(req, t.resource)?;
    let rv = ctx.store.resource_version();
    let mut items: Vec<Arc<Object>> = ctx
        .store
        .list(t.resource, t.namespace.as_deref())
        .into_iter()
        .filter(|o| filter.matches(o))
        .collect();
    // `continue` is the last key returned, so paging survives writes.
    if let Some(token) = req.param("continue").filter(|s| !s.is_empty()) {
        let (ns, name) = token.split_once('/').unwrap_or(("", token));
        items.retain(|o| (o.namespace.as_str(), o.name.as_str()) > (ns, name));
    }
    let mut next = None;
    if let Some(limit) = req
        .param("limit")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| *n > 0)
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = items.last().expect("limit > 0");
        next = Some((format!("{}/{}", last.namespace, last.name), remaining));
    }
    let rv = rv.to_string();
    if body::wants_table(req) {
        let values: Vec<Value> = items.iter().map(|o| o.value()).collect();
        let mut tbl = table::table(
            t.resource.kind,
            &values,
            &rv,
            include_object(req)?,
            SystemTime::now(),
        );
        if let Some((token, remaining)) = next {
            tbl["metadata"]["continue"] = token.into();
            tbl["metadata"]["remainingItemCount"] = remaining.into();
        }
        return Ok(value_reply(200, &tbl));
    }
    // Splice the stored JSON: no parse, no re-serialize.
    let mut meta = json!({"resourceVersion": rv});
    if let Some((token, remaining)) = next {
        meta["continue"] = token.into();
        meta["remainingItemCount"] = remaining.into();
    }
    let mut out = Vec::with_capacity(64 + items.iter().map(|o| o.raw.len() + 1).sum::<usize>());
    out.extend_from_slice(
        format!(
            r#"{{"kind":"{}","apiVersion":"{}","metadata":{},"items":["#,
            t.resource.list_kind(),
            t.resource.api_version(),
            meta
        )
        .as_bytes(),
    );
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(o.raw.as_bytes());
    }
    out.extend_from_slice(b"]}");
    Ok(Reply::json(200, out))
}

/// Checks kind, apiVersion, namespace and name of a body against the URL,
/// fills what is missing, checks unknown fields if asked, and defaults it.
fn admit_body(
    req: &Request,
    t: &Target,
    mut v: Value,
    url_name: Option<&str>,
) -> Result<Value, Status> {
    let r = t.resource;
    let api_version = r.api_version();
    let map = v.as_object_mut().expect("bodies are checked to be objects");
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != api_version => {
            return Err(Status::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({api_version})"
            )));
        }
        _ => {
            map.insert("apiVersion".into(), api_version.into());
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if k != r.kind => {
            return Err(Status::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({}) for {}",
                r.kind, req.path
            )));
        }
        _ => {
            map.insert("kind".into(), r.kind.into());
        }
    }
    if !map.get("metadata").is_none_or(Value::is_object) {
        return Err(Status::bad_request("metadata must be an object"));
    }
    let meta = model::meta_mut(&mut v);
    if r.namespaced {
        let url_ns = namespace_of(t);
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(Status::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), url_ns.into());
            }
        }
    }
    if let Some(url_name) = url_name {
        match meta.get("name").and_then(Value::as_str) {
            Some(n) if n != url_name => {
                return Err(Status::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({url_name})"
                )));
            }
            _ => {
                meta.insert("name".into(), url_name.into());
            }
        }
    }
    if req.param("fieldValidation") == Some("Strict") {
        let unknown = schema::unknown_fields(r.kind, &v);
        if !unknown.is_empty() {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            return Err(Status::bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            )));
        }
    }
    defaults::apply_defaults(r.kind, &mut v);
    Ok(v)
}

fn invalid(r: &Resource, v: &Value, errs: Vec<validate::FieldError>) -> Status {
    let name = model::name(v);
    let causes = errs
        .iter()
        .map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.field}))
        .collect();
    Status::invalid(
        r,
        name,
        validate::invalid_message(r.kind, name, &errs),
        causes,
    )
}

async fn create(ctx: &Ctx, req: &Request, t: &Target) -> Result<Reply, Status> {
    if t.resource.namespaced && t.namespace.is_none() {
        return Err(Status::method_not_allowed(format!(
            "create {} in a namespace: POST to /api/v1/namespaces/<namespace>/{}",
            t.resource.plural, t.resource.plural
        )));
    }
    let v = admit_body(req, t, body::object(req)?, None)?;
    create_value(ctx, req, t, v).await
}

async fn create_value(ctx: &Ctx, req: &Request, t: &Target, mut v: Value) -> Result<Reply, Status> {
    admission::before_validation(t.resource, &mut v);
    validate::validate(t.resource.kind, &v).map_err(|e| invalid(t.resource, &v, e))?;
    admission::on_create(ctx, t.resource, &mut v)?;
    if body::dry_run(req, &Value::Null) {
        return Ok(value_reply(201, &v));
    }
    let obj = ctx.store.create(t.resource, v)?;
    ctx.store.durable(obj.rv).await;
    Ok(raw_reply(201, &obj))
}

/// Writes `new` over `old`: the main resource keeps the stored status, the
/// status subresource keeps everything but the status.
async fn write_update(
    ctx: &Ctx,
    t: &Target,
    old: &Object,
    mut new: Value,
) -> Result<Reply, Status> {
    let r = t.resource;
    // A stale resourceVersion is a conflict, whatever else is wrong (as in
    // Kubernetes, which checks it before validating).
    if model::meta_str(&new, "resourceVersion")
        .is_some_and(|rv| !rv.is_empty() && rv != old.rv.to_string())
    {
        return Err(crate::store::StoreError::Conflict {
            resource: r,
            name: old.name.clone(),
        }
        .into());
    }
    let old_v = old.value();
    if r.has(Subresource::Status) {
        if t.sub == Some(Subresource::Status) {
            let status = new.get("status").cloned();
            let rv = model::meta_str(&new, "resourceVersion").map(str::to_string);
            new = old_v.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    new.as_object_mut().expect("objects").remove("status");
                }
            }
            if let Some(rv) = rv {
                model::meta_mut(&mut new).insert("resourceVersion".into(), rv.into());
            }
        } else {
            let map = new.as_object_mut().expect("objects");
            match old_v.get("status") {
                Some(s) => map.insert("status".into(), s.clone()),
                None => map.remove("status"),
            };
        }
    }
    admission::on_update(ctx, r, &old_v, &mut new)?;
    validate::validate_update(r.kind, &old_v, &new).map_err(|e| invalid(r, &new, e))?;
    let obj = ctx.store.update(r, new)?;
    // A kubelet posting its node's status (even unchanged) is alive.
    if r.kind == "Node" && t.sub == Some(Subresource::Status) {
        ctx.store.heartbeat(&obj.name);
    }
    ctx.store.durable(obj.rv).await;
    Ok(raw_reply(200, &obj))
}

async fn replace(ctx: &Ctx, req: &Request, t: &Target, name: &str) -> Result<Reply, Status> {
    let v = admit_body(req, t, body::object(req)?, Some(name))?;
    let old = existing(ctx, t, name)?;
    if model::meta_str(&v, "resourceVersion").is_none_or(str::is_empty) && t.sub.is_none() {
        // Kubernetes requires a resourceVersion on update for most kinds.
        return Err(Status::invalid(
            t.resource,
            name,
            format!(
                "{} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                t.resource.kind
            ),
            vec![],
        ));
    }
    if body::dry_run(req, &v) {
        return Ok(value_reply(200, &v));
    }
    write_update(ctx, t, &old, v).await
}

async fn patch(ctx: &Ctx, req: &Request, t: &Target, name: &str) -> Result<Reply, Status> {
    let (kind, p) = body::patch(req)?;
    let Some(old) = ctx.store.get(t.resource, namespace_of(t), name) else {
        // Server-side apply creates what is missing.
        if kind == PatchType::Apply && t.sub.is_none() {
            if !p.is_object() {
                return Err(Status::bad_request("an apply patch must be an object"));
            }
            let v = admit_body(req, t, p, Some(name))?;
            return create_value(ctx, req, t, v).await;
        }
        return Err(Status::not_found(t.resource, name));
    };
    let mut v = old.value();
    let res = match kind {
        PatchType::Json => patch::json_patch(&mut v, &p),
        PatchType::Merge => {
            patch::merge_patch(&mut v, &p);
            Ok(())
        }
        PatchType::Strategic => patch::strategic_merge_patch(&mut v, &p),
        PatchType::Apply => patch::apply_patch(&mut v, &p),
    };
    res.map_err(|e| Status::unprocessable(format!("the patch could not be applied: {e}")))?;
    if !v.is_object() {
        return Err(Status::unprocessable("the patch must leave an object"));
    }
    let v = admit_body(req, t, v, Some(name))?;
    if body::dry_run(req, &Value::Null) {
        return Ok(value_reply(200, &v));
    }
    write_update(ctx, t, &old, v).await
}

async fn delete(ctx: &Ctx, req: &Request, t: &Target, name: &str) -> Result<Reply, Status> {
    let opts = body::delete_options(req)?;
    let obj = existing(ctx, t, name)?;
    if let Some(uid) = &opts.uid
        && *uid != obj.uid
    {
        return Err(Status::conflict(
            t.resource,
            name,
            format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                obj.uid
            ),
        ));
    }
    if let Some(rv) = &opts.resource_version
        && *rv != obj.rv.to_string()
    {
        return Err(Status::conflict(
            t.resource,
            name,
            format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                obj.rv
            ),
        ));
    }
    if opts.dry_run {
        return Ok(raw_reply(200, &obj));
    }
    let result = delete_one(ctx, t.resource, &obj, opts.grace_period, opts.propagation)?;
    ctx.store.durable(result.rv).await;
    Ok(raw_reply(200, &result))
}

fn delete_one(
    ctx: &Ctx,
    r: &'static Resource,
    obj: &Object,
    grace: Option<i64>,
    propagation: Propagation,
) -> Result<Arc<Object>, Status> {
    if std::ptr::eq(r, model::res("Namespace")) {
        return admission::delete_namespace(ctx, obj);
    }
    match propagation {
        Propagation::Orphan => admission::orphan_dependents(ctx, obj)?,
        Propagation::Foreground => crate::controllers::gc::hold_for_dependents(&ctx.store, obj)?,
        Propagation::Background => {}
    }
    let d = ctx
        .store
        .delete_gracefully(r, &obj.namespace, &obj.name, grace)?;
    Ok(match d {
        Deletion::Gone(o) | Deletion::Pending(o) => o,
    })
}

async fn delete_collection(ctx: &Ctx, req: &Request, t: &Target) -> Result<Reply, Status> {
    let filter = Filter::from_request(req, t.resource)?;
    let opts = body::delete_options(req)?;
    let items: Vec<Arc<Object>> = ctx
        .store
        .list(t.resource, t.namespace.as_deref())
        .into_iter()
        .filter(|o| filter.matches(o))
        .collect();
    let mut out = Vec::new();
    let mut last_rv = 0;
    for o in items {
        if opts.dry_run {
            out.push(o.value());
            continue;
        }
        let d = delete_one(ctx, t.resource, &o, opts.grace_period, opts.propagation)?;
        last_rv = last_rv.max(d.rv);
        out.push(d.value());
    }
    ctx.store.durable(last_rv).await;
    Ok(value_reply(
        200,
        &json!({
            "kind": t.resource.list_kind(),
            "apiVersion": t.resource.api_version(),
            "metadata": {"resourceVersion": ctx.store.resource_version().to_string()},
            "items": out,
        }),
    ))
}

/// The selector of a scalable object, as a string for Scale.status.selector.
fn selector_string(v: &Value) -> String {
    match v.pointer("/spec/selector") {
        Some(Value::Object(m))
            if m.contains_key("matchLabels") || m.contains_key("matchExpressions") =>
        {
            LabelSelector::from_object(&Value::Object(m.clone()))
                .map(|s| s.to_string())
                .unwrap_or_default()
        }
        Some(Value::Object(m)) => LabelSelector::from_map(m).to_string(),
        _ => String::new(),
    }
}

fn scale_object(r: &Resource, v: &Value) -> Value {
    let m = model::meta(v).cloned().unwrap_or_default();
    let keep: Map<String, Value> = [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ]
    .iter()
    .filter_map(|k| m.get(*k).map(|x| (k.to_string(), x.clone())))
    .collect();
    let _ = r;
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": keep,
        "spec": {"replicas": v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": v.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(v),
        },
    })
}

async fn scale(ctx: &Ctx, req: &Request, t: &Target, name: &str) -> Result<Reply, Status> {
    let old = existing(ctx, t, name)?;
    let old_v = old.value();
    let current = scale_object(t.resource, &old_v);
    let wanted = match req.method {
        Method::Get => return Ok(value_reply(200, &current)),
        Method::Put => body::object(req)?,
        _ => {
            let (kind, p) = body::patch(req)?;
            let mut s = current.clone();
            let res = match kind {
                PatchType::Json => patch::json_patch(&mut s, &p),
                PatchType::Merge => {
                    patch::merge_patch(&mut s, &p);
                    Ok(())
                }
                PatchType::Strategic => patch::strategic_merge_patch(&mut s, &p),
                PatchType::Apply => patch::apply_patch(&mut s, &p),
            };
            res.map_err(|e| Status::unprocessable(format!("the patch could not be applied: {e}")))?;
            s
        }
    };
    let Some(replicas) = wanted.pointer("/spec/replicas").and_then(Value::as_i64) else {
        return Err(Status::invalid(
            t.resource,
            name,
            format!("Scale \"{name}\" is invalid: spec.replicas: Required value"),
            vec![],
        ));
    };
    if replicas < 0 {
        return Err(Status::invalid(
            t.resource,
            name,
            format!(
                "Scale \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
            ),
            vec![],
        ));
    }
    let mut new = old_v;
    new["spec"]["replicas"] = replicas.into();
    if let Some(rv) = model::meta_str(&wanted, "resourceVersion").filter(|s| !s.is_empty()) {
        model::meta_mut(&mut new).insert("resourceVersion".into(), rv.into());
    }
    let obj = ctx.store.update(t.resource, new)?;
    ctx.store.durable(obj.rv).await;
    Ok(value_reply(200, &scale_object(t.resource, &obj.value())))
}

/// POST pods/NAME/binding: what a scheduler writes.
async fn bind(ctx: &Ctx, req: &Request, t: &Target, name: &str) -> Result<Reply, Status> {
    let b = body::object(req)?;
    let Some(node) = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Err(Status::unprocessable("target.name: Required value"));
    };
    let obj = crate::scheduler::bind(&ctx.store, namespace_of(t), name, node)?;
    ctx.store.durable(obj.rv).await;
    Ok(value_reply(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}
