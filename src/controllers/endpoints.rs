//! The endpoints controller: beside every Service with a selector, an
//! Endpoints object of the same name lists the IPs of the pods it selects
//! (ready ones under `addresses`, the others under `notReadyAddresses`) with
//! the ports the Service targets. Services are load-balanced from these.
//!
//! The same addresses go into EndpointSlices (discovery.k8s.io/v1), which
//! current kubectl (`describe service`) and proxies read.
//!
//! Endpoints of a Service without a selector belong to the user and are
//! left alone; the ones this controller wrote carry the annotation
//! `endpoints.kubernetes.io/last-change-trigger-time`, as Kubernetes' do,
//! and are deleted when their Service goes.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use super::replicaset::{Retry, is_ready};
use crate::model::selector::LabelSelector;
use crate::model::{self, json as j, res};
use crate::store::{Object, Store, StoreError};

const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";

pub async fn run(store: &Store) {
    let watched = [res("Service"), res("Pod"), res("Endpoints")];
    let mut retry = Retry::default();
    super::level_loop(store, &watched, super::SETTLE, || retry.after(pass(store))).await
}

/// One pass over every Service; whether a write failed.
fn pass(store: &Store) -> bool {
    let mut failed = false;
    let services = store.list(res("Service"), None);
    for svc in &services {
        if let Err(e) = sync(store, svc) {
            log::warn!("endpoints of service {}/{}: {e}", svc.namespace, svc.name);
            failed = true;
        }
    }
    // Slices go with their Service through the garbage collector (they are
    // owned); Endpoints carry no owner, as in Kubernetes.
    for ep in store.list(res("Endpoints"), None) {
        let ours = ep
            .value()
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(TRIGGER_TIME))
            .is_some();
        let has_service = services
            .iter()
            .any(|s| s.namespace == ep.namespace && s.name == ep.name);
        if ours
            && !has_service
            && let Err(e) = store.delete(res("Endpoints"), &ep.namespace, &ep.name, None)
        {
            log::warn!("deleting endpoints {}/{}: {e}", ep.namespace, ep.name);
            failed = true;
        }
    }
    failed
}

/// Writes one Service's Endpoints and EndpointSlices where they differ from
/// its pods.
fn sync(store: &Store, svc: &Object) -> Result<(), StoreError> {
    let v = svc.value();
    let Some(selector) = selector(&v) else {
        return Ok(());
    };
    let pods: Vec<Value> = store
        .list(res("Pod"), Some(&svc.namespace))
        .iter()
        .filter(|p| selector.matches(&p.labels))
        .map(|p| p.value())
        .collect();
    let groups = groups(&v, &pods);

    let current = store.get(res("Endpoints"), &svc.namespace, &svc.name);
    if let Some(new) = desired(&v, &subsets(&v, &groups), current.as_deref()) {
        match current {
            Some(_) => store.update(res("Endpoints"), new)?,
            None => store.create(res("Endpoints"), new)?,
        };
    }

    let slice_res = res("EndpointSlice");
    let mut existing: BTreeMap<String, Value> = store
        .list(slice_res, Some(&svc.namespace))
        .iter()
        .filter(|s| {
            s.labels.get(SERVICE_NAME) == Some(&svc.name)
                && s.labels.get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER)
        })
        .map(|s| (s.name.clone(), s.value()))
        .collect();
    for mut want in slices(&v, &groups) {
        match existing.remove(model::name(&want)) {
            Some(have) if same_slice(&have, &want) => {}
            Some(have) => {
                want["metadata"]["resourceVersion"] = have["metadata"]["resourceVersion"].clone();
                want["metadata"]["uid"] = have["metadata"]["uid"].clone();
                store.update(slice_res, want)?;
            }
            None => {
                store.create(slice_res, want)?;
            }
        }
    }
    for name in existing.keys() {
        store.delete(slice_res, &svc.namespace, name, None)?;
    }
    Ok(())
}

fn same_slice(have: &Value, want: &Value) -> bool {
    ["endpoints", "ports"]
        .iter()
        .all(|f| have.get(*f) == want.get(*f))
        && have.pointer("/metadata/labels") == want.pointer("/metadata/labels")
}

/// The Service's pod selector; None for a Service whose endpoints the user
/// manages (no selector, or an empty one).
fn selector(svc: &Value) -> Option<LabelSelector> {
    let sel = svc.pointer("/spec/selector")?.as_object()?;
    (!sel.is_empty()).then(|| LabelSelector::from_map(sel))
}

/// The Endpoints object to write, or None when `current` already lists
/// `subsets` with the Service's labels.
fn desired(svc: &Value, subsets: &[Value], current: Option<&Object>) -> Option<Value> {
    let labels = svc
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let mut ep = match current {
        Some(c) => {
            let v = c.value();
            let same_subsets = j::list(&v, "subsets") == subsets;
            let same_labels = v.pointer("/metadata/labels").cloned().unwrap_or(json!({})) == labels;
            if same_subsets && same_labels {
                return None;
            }
            v
        }
        None => json!({"apiVersion": "v1", "kind": "Endpoints",
                       "metadata": {"name": model::name(svc), "namespace": model::namespace(svc)}}),
    };
    let meta = model::meta_mut(&mut ep);
    meta.insert("labels".into(), labels);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    annotations[TRIGGER_TIME] = model::now().into();
    if subsets.is_empty() {
        ep.as_object_mut()?.remove("subsets");
    } else {
        ep["subsets"] = subsets.into();
    }
    Some(ep)
}

/// Pods sharing one set of resolved ports.
#[derive(Debug)]
struct Group<'a> {
    ports: Vec<Value>,
    /// (sortable IP, IP, pod, ready), ordered by IP.
    members: BTreeMap<String, (&'a str, &'a Value, bool)>,
}

/// The Service's pods that have an IP and are neither finished nor being
/// deleted, grouped by the ports the Service targets on them (a named
/// targetPort may resolve differently per pod).
fn groups<'a>(svc: &Value, pods: &'a [Value]) -> Vec<Group<'a>> {
    let publish_not_ready = svc
        .pointer("/spec/publishNotReadyAddresses")
        .and_then(Value::as_bool)
        == Some(true);
    let svc_ports = j::list(j::at(svc, "spec"), "ports");
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods {
        let Some(ip) = pod
            .pointer("/status/podIP")
            .and_then(Value::as_str)
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        let finished = matches!(
            j::text(j::at(pod, "status"), "phase"),
            "Succeeded" | "Failed"
        );
        if finished || crate::store::is_deleting(pod) {
            continue;
        }
        let ports: Vec<Value> = svc_ports
            .iter()
            .filter_map(|p| endpoint_port(p, pod))
            .collect();
        if ports.is_empty() && !svc_ports.is_empty() {
            // The pod has none of the ports the Service targets by name.
            continue;
        }
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let group = groups.entry(key).or_insert_with(|| Group {
            ports,
            members: BTreeMap::new(),
        });
        let ready = publish_not_ready || is_ready(pod);
        group.members.insert(sortable(ip), (ip, pod, ready));
    }
    groups.into_values().collect()
}

/// The subsets of the Service's Endpoints: one per group, ready addresses
/// apart from the others, as Kubernetes repacks them.
fn subsets(svc: &Value, groups: &[Group]) -> Vec<Value> {
    groups
        .iter()
        .map(|g| {
            let (ready, not_ready): (Vec<_>, Vec<_>) =
                g.members.values().partition(|(_, _, ready)| *ready);
            let addresses = |members: Vec<&(&str, &Value, bool)>| -> Value {
                members
                    .into_iter()
                    .map(|(ip, pod, _)| address(ip, pod, svc))
                    .collect()
            };
            let mut s = Map::new();
            if !ready.is_empty() {
                s.insert("addresses".into(), addresses(ready));
            }
            if !not_ready.is_empty() {
                s.insert("notReadyAddresses".into(), addresses(not_ready));
            }
            if !g.ports.is_empty() {
                s.insert("ports".into(), g.ports.clone().into());
            }
            Value::Object(s)
        })
        .collect()
}

/// The Service's EndpointSlices (discovery.k8s.io/v1, what current kubectl
/// and proxies read): one per group, named after the Service and a hash of
/// its ports so that a pass finds its own slices again, owned by the Service.
fn slices(svc: &Value, groups: &[Group]) -> Vec<Value> {
    let svc_name = model::name(svc);
    let mut labels = svc
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    labels[SERVICE_NAME] = svc_name.into();
    labels[MANAGED_BY] = CONTROLLER.into();
    groups
        .iter()
        .map(|g| {
            let key = serde_json::to_string(&g.ports).unwrap_or_default();
            let hash = model::fnv1a(&[key.as_bytes()]) % 36u64.pow(5);
            let endpoints: Vec<Value> = g
                .members
                .values()
                .map(|(ip, pod, ready)| {
                    let a = address(ip, pod, svc);
                    let mut e = json!({"addresses": [ip],
                        "conditions": {"ready": ready, "serving": ready, "terminating": false},
                        "targetRef": a["targetRef"]});
                    for field in ["nodeName", "hostname"] {
                        if let Some(v) = a.get(field) {
                            e[field] = v.clone();
                        }
                    }
                    e
                })
                .collect();
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{svc_name}-{}", base36(hash)), "namespace": model::namespace(svc),
                             "labels": labels,
                             "ownerReferences": [super::replicaset::owner_ref(res("Service"), svc)]},
                "addressType": "IPv4", "endpoints": endpoints, "ports": slice_ports(&g.ports)})
        })
        .collect()
}

/// A slice's ports always carry a name, "" when the Service port has none
/// (clients such as kubectl dereference it).
fn slice_ports(ports: &[Value]) -> Vec<Value> {
    ports
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if p.get("name").is_none() {
                p["name"] = "".into();
            }
            p
        })
        .collect()
}

fn base36(mut n: u64) -> String {
    let mut out = [b'0'; 5];
    for c in out.iter_mut().rev() {
        *c = b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An IP as a key that sorts numerically (10.0.0.9 before 10.0.0.10).
fn sortable(ip: &str) -> String {
    match ip.parse::<std::net::Ipv4Addr>() {
        Ok(a) => format!("{:010}", u32::from(a)),
        Err(_) => ip.to_string(),
    }
}

fn address(ip: &str, pod: &Value, svc: &Value) -> Value {
    let mut a = json!({"ip": ip, "targetRef": {
        "kind": "Pod", "namespace": model::namespace(pod), "name": model::name(pod),
        "uid": model::meta_str(pod, "uid").unwrap_or_default()}});
    let node = j::text(j::at(pod, "spec"), "nodeName");
    if !node.is_empty() {
        a["nodeName"] = node.into();
    }
    // A pod with a hostname in the Service's subdomain gets a DNS record.
    let hostname = j::text(j::at(pod, "spec"), "hostname");
    if !hostname.is_empty() && j::text(j::at(pod, "spec"), "subdomain") == model::name(svc) {
        a["hostname"] = hostname.into();
    }
    a
}

/// The endpoint port for one Service port on one pod: targetPort as a
/// number, or as the name of a container port the pod declares (None when
/// it declares no such port).
fn endpoint_port(svc_port: &Value, pod: &Value) -> Option<Value> {
    let protocol = match j::text(svc_port, "protocol") {
        "" => "TCP",
        p => p,
    };
    let port = match svc_port.get("targetPort") {
        Some(Value::String(name)) => match name.parse::<i64>() {
            Ok(n) => n,
            Err(_) => named_port(pod, name, protocol)?,
        },
        Some(Value::Number(n)) => n.as_i64()?,
        _ => j::int(svc_port, "port")?,
    };
    let mut p = json!({"port": port, "protocol": protocol});
    let name = j::text(svc_port, "name");
    if !name.is_empty() {
        p["name"] = name.into();
    }
    Some(p)
}

fn named_port(pod: &Value, name: &str, protocol: &str) -> Option<i64> {
    j::list(j::at(pod, "spec"), "containers")
        .iter()
        .flat_map(|c| j::list(c, "ports"))
        .find(|p| {
            let p_protocol = match j::text(p, "protocol") {
                "" => "TCP",
                other => other,
            };
            j::text(p, "name") == name && p_protocol == protocol
        })
        .and_then(|p| j::int(p, "containerPort"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(svc: &Value, pods: &[Value]) -> Vec<Value> {
        subsets(svc, &groups(svc, pods))
    }

    fn svc(ports: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
               "spec": {"selector": {"app": "web"}, "ports": ports}})
    }

    fn pod(name: &str, ip: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
               "spec": {"nodeName": "board1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
               "status": {"phase": "Running", "podIP": ip,
                          "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[test]
    fn ready_and_not_ready_pods_are_listed_apart_in_ip_order() {
        let s = svc(json!([{"port": 80, "targetPort": 8080}]));
        let pods = [
            pod("a", "10.42.0.10", true),
            pod("b", "10.42.0.9", true),
            pod("c", "10.42.0.11", false),
        ];
        let got = of(&s, &pods);
        assert_eq!(got.len(), 1);
        let ips = |k: &str| -> Vec<&str> {
            j::list(&got[0], k)
                .iter()
                .map(|a| j::text(a, "ip"))
                .collect()
        };
        assert_eq!(ips("addresses"), ["10.42.0.9", "10.42.0.10"]);
        assert_eq!(ips("notReadyAddresses"), ["10.42.0.11"]);
        assert_eq!(got[0]["ports"], json!([{"port": 8080, "protocol": "TCP"}]));
        assert_eq!(got[0]["addresses"][0]["targetRef"]["name"], "b");
        assert_eq!(got[0]["addresses"][0]["nodeName"], "board1");
    }

    #[test]
    fn a_named_target_port_is_resolved_per_pod() {
        let s = svc(json!([{"name": "web", "port": 80, "targetPort": "http"}]));
        let mut other = pod("b", "10.42.0.3", true);
        other["spec"]["containers"][0]["ports"][0]["containerPort"] = 9090.into();
        let mut none = pod("c", "10.42.0.4", true);
        none["spec"]["containers"][0]["ports"] = json!([]);
        let got = of(&s, &[pod("a", "10.42.0.2", true), other, none]);
        // Two port sets, two subsets; the pod without the port is left out.
        assert_eq!(got.len(), 2);
        let ports: Vec<&Value> = got.iter().map(|s| &s["ports"][0]["port"]).collect();
        assert!(ports.contains(&&json!(8080)) && ports.contains(&&json!(9090)));
        assert_eq!(
            got.iter()
                .map(|s| j::list(s, "addresses").len())
                .sum::<usize>(),
            2
        );
        assert_eq!(got[0]["ports"][0]["name"], "web");
    }

    #[test]
    fn pods_without_ip_finished_or_terminating_are_left_out() {
        let s = svc(json!([{"port": 80}]));
        let mut done = pod("a", "10.42.0.2", true);
        done["status"]["phase"] = "Succeeded".into();
        let mut going = pod("b", "10.42.0.3", true);
        going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        let got = of(&s, &[done, going, pod("c", "", true)]);
        assert!(got.is_empty());
    }

    #[test]
    fn publish_not_ready_addresses_lists_every_pod_as_ready() {
        let mut s = svc(json!([{"port": 80}]));
        s["spec"]["publishNotReadyAddresses"] = true.into();
        let got = of(&s, &[pod("a", "10.42.0.2", false)]);
        assert_eq!(j::list(&got[0], "addresses").len(), 1);
        assert!(got[0].get("notReadyAddresses").is_none());
        // The target port defaults to the port.
        assert_eq!(got[0]["ports"][0]["port"], 80);
    }

    #[test]
    fn slices_carry_the_same_endpoints_with_conditions() {
        let s = svc(json!([{"name": "web", "port": 80, "targetPort": "http"}]));
        let pods = [pod("a", "10.42.0.3", true), pod("b", "10.42.0.2", false)];
        let got = slices(&s, &groups(&s, &pods));
        assert_eq!(got.len(), 1);
        let slice = &got[0];
        assert!(model::name(slice).starts_with("web-"), "{slice}");
        assert_eq!(slice["metadata"]["labels"][SERVICE_NAME], "web");
        assert_eq!(slice["metadata"]["labels"]["app"], "web");
        assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert_eq!(
            slice["ports"],
            json!([{"name": "web", "port": 8080, "protocol": "TCP"}])
        );
        let eps = j::list(slice, "endpoints");
        assert_eq!(eps[0]["addresses"], json!(["10.42.0.2"]));
        assert_eq!(eps[0]["conditions"]["ready"], false);
        assert_eq!(eps[1]["conditions"]["ready"], true);
        assert_eq!(eps[1]["targetRef"]["name"], "a");
        assert_eq!(eps[1]["nodeName"], "board1");
        // The name depends on the ports only: the same slice is found again.
        let again = slices(&s, &groups(&s, &pods[..1]));
        assert_eq!(model::name(&again[0]), model::name(slice));
        assert!(same_slice(slice, &got[0]) && !same_slice(slice, &again[0]));
    }

    #[test]
    fn only_changes_are_written() {
        let s = svc(json!([{"port": 80}]));
        let want = of(&s, &[pod("a", "10.42.0.2", true)]);
        let first = desired(&s, &want, None).expect("a new Endpoints");
        assert_eq!(first["metadata"]["labels"], json!({"app": "web"}));
        assert!(first["metadata"]["annotations"][TRIGGER_TIME].is_string());
        let stored = Object::from_value(res("Endpoints"), &first);
        assert_eq!(desired(&s, &want, Some(&stored)), None);
        let changed = desired(&s, &[], Some(&stored)).expect("pods went away");
        assert!(changed.get("subsets").is_none());
    }

    #[test]
    fn services_without_selector_are_the_users() {
        assert!(selector(&json!({"spec": {"ports": [{"port": 80}]}})).is_none());
        assert!(selector(&json!({"spec": {"selector": {}}})).is_none());
        assert!(selector(&svc(json!([]))).is_some());
    }
}
