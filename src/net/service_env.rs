//! Kubernetes' service environment variables (docker-links style), as the
//! kubelet's `getServiceEnvVarMap` makes them: for every Service with a
//! cluster IP in the pod's namespace, `WEB_SERVICE_HOST`, `WEB_SERVICE_PORT`,
//! `WEB_SERVICE_PORT_<NAME>`, `WEB_PORT`, `WEB_PORT_80_TCP{,_PROTO,_PORT,_ADDR}`.
//! Pure.

use serde_json::Value;

use crate::model::json::{at, int, list, text};

/// The variables for a pod with `enableServiceLinks` (the default) in
/// `namespace`, from the Services of the cluster, sorted by Service name.
pub fn variables(pod: &Value, services: &[Value]) -> Vec<(String, String)> {
    if at(pod, "spec")["enableServiceLinks"] == Value::Bool(false) {
        return Vec::new();
    }
    let namespace = text(at(pod, "metadata"), "namespace");
    let mut svcs: Vec<&Value> = services
        .iter()
        .filter(|s| text(at(s, "metadata"), "namespace") == namespace)
        .filter(|s| {
            text(at(s, "spec"), "clusterIP")
                .parse::<std::net::Ipv4Addr>()
                .is_ok()
        })
        .collect();
    svcs.sort_by_key(|s| text(at(s, "metadata"), "name"));
    let mut env = Vec::new();
    for s in svcs {
        let prefix = text(at(s, "metadata"), "name")
            .to_uppercase()
            .replace('-', "_");
        let ip = text(at(s, "spec"), "clusterIP");
        let ports = list(at(s, "spec"), "ports");
        let Some(first) = ports.first() else { continue };
        let first_port = int(first, "port").unwrap_or(0);
        env.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        env.push((format!("{prefix}_SERVICE_PORT"), first_port.to_string()));
        for p in ports {
            let name = text(p, "name");
            if !name.is_empty() {
                let n = name.to_uppercase().replace('-', "_");
                env.push((
                    format!("{prefix}_SERVICE_PORT_{n}"),
                    int(p, "port").unwrap_or(0).to_string(),
                ));
            }
        }
        let proto = |p: &Value| match text(p, "protocol") {
            "" => "tcp".to_string(),
            other => other.to_lowercase(),
        };
        env.push((
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{first_port}", proto(first)),
        ));
        for p in ports {
            let (port, proto) = (int(p, "port").unwrap_or(0), proto(p));
            let var = format!("{prefix}_PORT_{port}_{}", proto.to_uppercase());
            env.push((var.clone(), format!("{proto}://{ip}:{port}")));
            env.push((format!("{var}_PROTO"), proto));
            env.push((format!("{var}_PORT"), port.to_string()));
            env.push((format!("{var}_ADDR"), ip.to_string()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn variables_follow_the_kubelet() {
        let svcs = [
            json!({"metadata": {"namespace": "default", "name": "my-web"},
                   "spec": {"clusterIP": "10.43.0.7", "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                                                 {"port": 53, "protocol": "UDP"}]}}),
            json!({"metadata": {"namespace": "default", "name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}}),
            json!({"metadata": {"namespace": "other", "name": "db"}, "spec": {"clusterIP": "10.43.0.8", "ports": [{"port": 5432}]}}),
        ];
        let pod = json!({"metadata": {"namespace": "default"}, "spec": {}});
        let env: Vec<String> = variables(&pod, &svcs)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            env,
            [
                "MY_WEB_SERVICE_HOST=10.43.0.7",
                "MY_WEB_SERVICE_PORT=80",
                "MY_WEB_SERVICE_PORT_HTTP=80",
                "MY_WEB_PORT=tcp://10.43.0.7:80",
                "MY_WEB_PORT_80_TCP=tcp://10.43.0.7:80",
                "MY_WEB_PORT_80_TCP_PROTO=tcp",
                "MY_WEB_PORT_80_TCP_PORT=80",
                "MY_WEB_PORT_80_TCP_ADDR=10.43.0.7",
                "MY_WEB_PORT_53_UDP=udp://10.43.0.7:53",
                "MY_WEB_PORT_53_UDP_PROTO=udp",
                "MY_WEB_PORT_53_UDP_PORT=53",
                "MY_WEB_PORT_53_UDP_ADDR=10.43.0.7",
            ]
        );
        let off =
            json!({"metadata": {"namespace": "default"}, "spec": {"enableServiceLinks": false}});
        assert!(variables(&off, &svcs).is_empty());
    }
}
