//! What the API server does to objects of particular kinds on their way into
//! the store, beyond defaulting and validation: namespace checks, Service IP
//! and port allocation, the board's pod security policy, resetting pod
//! status, namespace deletion, uids and Job selectors before validation.

use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;

use super::{Ctx, Status};
use crate::model::{self, Resource, res};
use crate::net;
use crate::store::Object;

/// Namespaces that cannot be deleted.
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub fn on_create(ctx: &Ctx, r: &'static Resource, v: &mut Value) -> Result<(), Status> {
    if r.namespaced {
        let ns = model::namespace(v).to_string();
        match ctx.store.get(res("Namespace"), "", &ns) {
            None => return Err(Status::not_found(res("Namespace"), &ns)),
            Some(n) if crate::store::is_deleting(&n.value()) => {
                return Err(Status::forbidden(format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    r.key(),
                    model::name(v)
                )));
            }
            Some(_) => {}
        }
        if ctx.store.count_in_namespace(&ns) >= ctx.objects_per_namespace {
            return Err(Status::forbidden(format!(
                "{} \"{}\" is forbidden: namespace {ns} already holds {} objects, the most this board allows in one namespace ([limits] objects_per_namespace in the board config)",
                r.key(),
                model::name(v),
                ctx.objects_per_namespace
            )));
        }
    }
    pod_security(ctx, r, v)?;
    match r.kind {
        "Pod" => {
            // Clients do not set a new pod's status.
            v["status"] = json!({"phase": "Pending", "qosClass": v.pointer("/status/qosClass").cloned().unwrap_or(Value::Null)});
            if v["status"]["qosClass"].is_null() {
                v["status"]
                    .as_object_mut()
                    .expect("object")
                    .remove("qosClass");
            }
        }
        "Service" => allocate_service(ctx, v, None)?,
        "Namespace" => v["status"] = json!({"phase": "Active"}),
        _ => {}
    }
    Ok(())
}

/// What the create strategies do before validation: the object gets its
/// uid here (a client cannot choose it), so that a Job's selector can be
/// generated from it, which validation requires.
pub fn before_validation(r: &Resource, v: &mut Value) {
    let uid = model::new_uid();
    model::meta_mut(v).insert("uid".into(), uid.clone().into());
    if r.kind == "Job" {
        crate::controllers::job::generate_selector(v, &uid);
    }
}

pub fn on_update(
    ctx: &Ctx,
    r: &'static Resource,
    old: &Value,
    new: &mut Value,
) -> Result<(), Status> {
    if r.kind == "Service" {
        allocate_service(ctx, new, Some(old))?;
    }
    if new.pointer("/spec/template") != old.pointer("/spec/template") {
        pod_security(ctx, r, new)?;
    }
    Ok(())
}

/// Refuses a pod, or a workload whose pod template, that the board's
/// policy does not allow: controllers create their pods without going
/// through the API, so their templates are checked here.
fn pod_security(ctx: &Ctx, r: &Resource, v: &Value) -> Result<(), Status> {
    let template;
    let pod = match r.kind {
        "Pod" => v,
        "ReplicationController" | "ReplicaSet" | "Deployment" | "DaemonSet" | "Job" => {
            template = v.pointer("/spec/template").cloned().unwrap_or_default();
            &template
        }
        _ => return Ok(()),
    };
    let refused = crate::security::violations(pod, &ctx.security);
    if refused.is_empty() {
        return Ok(());
    }
    Err(Status::forbidden(format!(
        "{} \"{}\" is forbidden: this board does not allow it: {}",
        r.key(),
        model::name(v),
        refused.join("; ")
    )))
}

/// Gives a Service its cluster IP and node ports, keeping those it has.
fn allocate_service(ctx: &Ctx, v: &mut Value, old: Option<&Value>) -> Result<(), Status> {
    let name = model::name(v).to_string();
    let ty = v
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let services = ctx.store.list(res("Service"), None);
    let others: Vec<Value> = services
        .iter()
        .filter(|o| !(o.name == name && o.namespace == model::namespace(v)))
        .map(|o| o.value())
        .collect();
    if ty != "ExternalName" {
        let kept = old
            .and_then(|o| o.pointer("/spec/clusterIP"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let asked = v
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let ip = match (asked, kept) {
            (Some(a), Some(k)) if a != k => {
                return Err(Status::unprocessable(format!(
                    "Service \"{name}\" is invalid: spec.clusterIPs[0]: Invalid value: []string{{\"{a}\"}}: may not change once set"
                )));
            }
            (Some(a), _) if a == "None" => a,
            (Some(a), None) => {
                let ip: std::net::Ipv4Addr = a
                    .parse()
                    .map_err(|_| Status::unprocessable(format!("Service \"{name}\" is invalid: spec.clusterIP: Invalid value: \"{a}\": must be a valid IP address")))?;
                if !ctx.service_cidr.contains(ip) {
                    return Err(Status::unprocessable(format!(
                        "Service \"{name}\" is invalid: spec.clusterIPs: Invalid value: \"{a}\": failed to allocate IP {a}: the provided IP ({a}) is not in the valid range. The range of valid IPs is {}",
                        ctx.service_cidr
                    )));
                }
                if others
                    .iter()
                    .any(|o| o.pointer("/spec/clusterIP") == Some(&Value::from(a.clone())))
                {
                    return Err(Status::unprocessable(format!(
                        "Service \"{name}\" is invalid: spec.clusterIPs: Invalid value: []string{{\"{a}\"}}: failed to allocate IP {a}: provided IP is already allocated"
                    )));
                }
                a
            }
            (_, Some(k)) => k,
            (None, None) => {
                let used: HashSet<std::net::Ipv4Addr> = others
                    .iter()
                    .filter_map(|o| o.pointer("/spec/clusterIP")?.as_str()?.parse().ok())
                    .collect();
                net::allocate_ip(&ctx.service_cidr, &used)
                    .ok_or_else(|| {
                        Status::internal(format!("no free cluster IP left in {}", ctx.service_cidr))
                    })?
                    .to_string()
            }
        };
        v["spec"]["clusterIP"] = ip.clone().into();
        v["spec"]["clusterIPs"] = json!([ip]);
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        let mut used: HashSet<u16> = others
            .iter()
            .flat_map(|o| {
                o.pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|p| p.get("nodePort")?.as_u64().map(|n| n as u16))
            .collect();
        let old_ports = old
            .and_then(|o| o.pointer("/spec/ports"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(ports) = v.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut() {
                if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                    if !used.insert(n as u16) {
                        return Err(Status::unprocessable(format!(
                            "Service \"{name}\" is invalid: spec.ports[0].nodePort: Invalid value: {n}: provided port is already allocated"
                        )));
                    }
                    continue;
                }
                let same = old_ports
                    .iter()
                    .find(|o| o.get("port") == p.get("port"))
                    .and_then(|o| o.get("nodePort"))
                    .and_then(Value::as_u64);
                let port = match same {
                    Some(n) => n as u16,
                    None => net::allocate_node_port(&used)
                        .ok_or_else(|| Status::internal("no free node port left in 30000-32767"))?,
                };
                used.insert(port);
                p["nodePort"] = port.into();
            }
        }
    }
    Ok(())
}

/// Starts a namespace's deletion; the namespace controller empties it and
/// then removes it.
pub fn delete_namespace(ctx: &Ctx, ns: &Object) -> Result<Arc<Object>, Status> {
    if PROTECTED_NAMESPACES.contains(&ns.name.as_str()) {
        return Err(Status::forbidden(format!(
            "namespaces \"{}\" is forbidden: this namespace may not be deleted",
            ns.name
        )));
    }
    let marked = match ctx
        .store
        .delete_gracefully(res("Namespace"), "", &ns.name, Some(0))?
    {
        crate::store::Deletion::Gone(o) => return Ok(o),
        crate::store::Deletion::Pending(o) => o,
    };
    let mut v = marked.value();
    v["status"] = json!({"phase": "Terminating"});
    Ok(ctx.store.update(res("Namespace"), v)?)
}

/// `propagationPolicy: Orphan`: dependents lose their owner reference to
/// `owner` before it goes, so the garbage collector leaves them alone.
pub fn orphan_dependents(ctx: &Ctx, owner: &Object) -> Result<(), Status> {
    for r in model::RESOURCES.iter().filter(|r| r.namespaced) {
        for o in ctx.store.list(r, Some(&owner.namespace)) {
            let mut v = o.value();
            let Some(refs) = v
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            let before = refs.len();
            refs.retain(|x| x.get("uid").and_then(Value::as_str) != Some(owner.uid.as_str()));
            if refs.len() != before {
                if refs.is_empty() {
                    model::meta_mut(&mut v).remove("ownerReferences");
                }
                ctx.store.update(r, v)?;
            }
        }
    }
    Ok(())
}
