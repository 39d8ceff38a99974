//! `bramble export`: every user-created object as one multi-document YAML
//! that `kubectl apply -f` accepts on any Kubernetes (k3s included).
//!
//! It reads through the running server's API with the admin credentials,
//! since only `store/disk.rs` may open the cluster's SQLite; `strip` drops
//! what the source cluster made up (status, uids, allocated IPs...).

use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The namespaces every cluster makes itself.
const BUILT_IN_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// What is exported, in the order `kubectl apply` needs: namespaces before
/// what lives in them, config before the workloads that read it.
const LISTS: [(&str, &str, &str); 10] = [
    ("/api/v1/namespaces", "v1", "Namespace"),
    ("/api/v1/configmaps", "v1", "ConfigMap"),
    ("/api/v1/secrets", "v1", "Secret"),
    ("/api/v1/services", "v1", "Service"),
    ("/apis/apps/v1/deployments", "apps/v1", "Deployment"),
    ("/apis/apps/v1/daemonsets", "apps/v1", "DaemonSet"),
    ("/apis/apps/v1/replicasets", "apps/v1", "ReplicaSet"),
    (
        "/api/v1/replicationcontrollers",
        "v1",
        "ReplicationController",
    ),
    ("/apis/batch/v1/jobs", "batch/v1", "Job"),
    ("/api/v1/pods", "v1", "Pod"),
];

#[derive(Debug)]
pub enum ExportError {
    Credentials {
        path: PathBuf,
        source: std::io::Error,
    },
    Request {
        url: String,
        reason: String,
    },
    Yaml(serde_yaml_ng::Error),
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Credentials { path, source } => write!(
                f,
                "cannot read {}: {source} (is --data-dir the server's data dir?)",
                path.display()
            ),
            Self::Request { url, reason } => write!(
                f,
                "GET {url}: {reason} (is `bramble server` running there? see --server)"
            ),
            Self::Yaml(e) => write!(f, "writing YAML: {e}"),
        }
    }
}

impl std::error::Error for ExportError {}

/// Lists every user object from the server at `server` (e.g.
/// https://127.0.0.1:6443) and returns them as multi-document YAML.
pub fn export(data_dir: &Path, server: &str) -> Result<String, ExportError> {
    let tls = data_dir.join("tls");
    let read = |name: &str| {
        let path = tls.join(name);
        std::fs::read(&path).map_err(|source| ExportError::Credentials { path, source })
    };
    let token = String::from_utf8_lossy(&read("token")?).trim().to_string();
    let certs: Vec<_> = ureq::tls::parse_pem(&read("ca.crt")?)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        )
        .build()
        .into();

    let mut docs = Vec::new();
    for (path, api_version, kind) in LISTS {
        let url = format!("{}{path}", server.trim_end_matches('/'));
        let fail = |reason: String| ExportError::Request {
            url: url.clone(),
            reason,
        };
        let mut resp = agent
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .header("Accept", "application/json")
            .call()
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("{status}: {}", body.trim())));
        }
        let list: Value = serde_json::from_str(&body).map_err(|e| fail(e.to_string()))?;
        for item in list["items"].as_array().into_iter().flatten() {
            if !user_created(kind, item) {
                continue;
            }
            let mut obj = item.clone();
            // Items of a list need not carry their type; apply needs it first.
            let mut typed = Map::new();
            typed.insert("apiVersion".into(), Value::from(api_version));
            typed.insert("kind".into(), Value::from(kind));
            strip(kind, &mut obj);
            if let Value::Object(fields) = obj {
                typed.extend(
                    fields
                        .into_iter()
                        .filter(|(k, _)| k != "apiVersion" && k != "kind"),
                );
            }
            docs.push(serde_yaml_ng::to_string(&Value::Object(typed)).map_err(ExportError::Yaml)?);
        }
    }
    Ok(docs.iter().map(|d| format!("---\n{d}")).collect::<String>())
}

/// Whether `obj` was made by a user rather than by the cluster: not a
/// built-in namespace, not what a controller owns, not what Kubernetes
/// clusters make for themselves (so the export applies cleanly on them).
pub fn user_created(kind: &str, obj: &Value) -> bool {
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or("");
    let owned = meta["ownerReferences"]
        .as_array()
        .is_some_and(|o| !o.is_empty());
    match kind {
        "Namespace" => !BUILT_IN_NAMESPACES.contains(&name),
        "Pod" | "ReplicaSet" => !owned,
        "ConfigMap" => name != "kube-root-ca.crt",
        "Secret" => obj["type"] != "kubernetes.io/service-account-token",
        "Service" => !(name == "kubernetes" && meta["namespace"] == "default"),
        _ => true,
    }
}

/// Removes what the source cluster set, so the object applies to another
/// cluster as new: server-set metadata, status, and what is allocated there
/// (a Service's cluster IP, a Pod's node). Node ports are kept: users choose them.
pub fn strip(kind: &str, obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "ownerReferences",
        ] {
            meta.remove(field);
        }
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            ann.remove("kubectl.kubernetes.io/last-applied-configuration");
            if ann.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    match kind {
        // "None" makes a headless service: that is the user's choice.
        "Service" if spec.get("clusterIP").and_then(Value::as_str) != Some("None") => {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        "Pod" => {
            spec.remove("nodeName");
        }
        "Job" => crate::controllers::job::strip_generated_selector(obj),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn server_meta() -> Value {
        json!({
            "name": "x", "namespace": "apps", "uid": "u-1", "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 3,
            "managedFields": [{"manager": "kubectl"}], "selfLink": "/api/v1/x",
            "deletionTimestamp": "2026-01-02T00:00:00Z", "deletionGracePeriodSeconds": 30,
            "ownerReferences": [{"kind": "ReplicaSet", "name": "r", "uid": "u-2"}],
            "labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"}
        })
    }

    #[test]
    fn strip_drops_server_metadata_and_status_and_keeps_the_users() {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": server_meta(),
                            "data": {"k": "v"}, "status": {"x": 1}});
        strip("ConfigMap", &mut cm);
        assert_eq!(
            cm,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "x", "namespace": "apps", "labels": {"app": "web"},
                                "annotations": {"team": "a"}},
                   "data": {"k": "v"}})
        );
    }

    #[test]
    fn strip_removes_an_empty_annotation_map() {
        let mut ns = json!({"metadata": {"name": "apps",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        strip("Namespace", &mut ns);
        assert_eq!(
            ns,
            json!({"metadata": {"name": "apps"}, "spec": {"finalizers": ["kubernetes"]}})
        );
    }

    #[test]
    fn services_lose_cluster_ips_but_keep_node_ports_and_headless() {
        let mut svc = json!({"metadata": {"name": "web"}, "spec": {
            "type": "NodePort", "clusterIP": "10.43.0.12", "clusterIPs": ["10.43.0.12"],
            "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]}});
        strip("Service", &mut svc);
        assert_eq!(
            svc["spec"],
            json!({"type": "NodePort",
                   "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]})
        );
        let mut headless = json!({"metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        strip("Service", &mut headless);
        assert_eq!(headless["spec"]["clusterIP"], "None");
    }

    #[test]
    fn pods_lose_their_node() {
        let mut pod = json!({"metadata": {"name": "p"},
            "spec": {"nodeName": "board-1", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running"}});
        strip("Pod", &mut pod);
        assert_eq!(
            pod,
            json!({"metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        );
    }

    #[test]
    fn only_user_created_objects_are_exported() {
        let named = |name: &str| json!({"metadata": {"name": name}});
        assert!(!user_created("Namespace", &named("kube-system")));
        assert!(user_created("Namespace", &named("apps")));
        let owned = json!({"metadata": {"name": "p", "ownerReferences": [{"uid": "u"}]}});
        assert!(!user_created("Pod", &owned));
        assert!(!user_created("ReplicaSet", &owned));
        assert!(user_created("Pod", &named("p")));
        assert!(user_created("Deployment", &owned));
        assert!(!user_created("ConfigMap", &named("kube-root-ca.crt")));
        assert!(!user_created(
            "Secret",
            &json!({"metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token"})
        ));
        assert!(!user_created(
            "Service",
            &json!({"metadata": {"name": "kubernetes", "namespace": "default"}})
        ));
    }
}
