//! Pod security: what a container's securityContext asks for (read by the
//! kubelet), and which pods a board refuses (checked on admission).
//!
//! Containers are hardened by default, beyond Kubernetes' own defaults:
//! no new privileges unless allowPrivilegeEscalation is true, and the
//! default seccomp profile unless seccompProfile says Unconfined. Privileged
//! pods, host networking and hostPath volumes outside the allowed prefixes
//! are refused unless the board config's [security] table allows them; host
//! devices listed in its [devices] table can be asked for with the
//! `bramble.dev/devices` annotation without being privileged.

use serde_json::Value;
use std::path::{Component, Path, PathBuf};

use crate::model::json as j;
use crate::runtime::protocol::Security;

/// The annotation listing the host devices a pod's containers get,
/// comma-separated ("/dev/gpiomem,/dev/i2c-1").
pub const DEVICES_ANNOTATION: &str = "bramble.dev/devices";

/// What a board lets pods do (the board config's [security] and [devices]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub allow_privileged: bool,
    pub allow_host_network: bool,
    /// hostPath volumes must lie under one of these.
    pub host_path_prefixes: Vec<PathBuf>,
    pub allowed_devices: Vec<PathBuf>,
}

/// How one container is to be confined, from its pod's spec: what the
/// runtime applies (its `devices` left for the kubelet to fill from the
/// host), and what the kubelet checks itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Confinement {
    pub runtime: Security,
    pub run_as_non_root: bool,
    /// Host device paths the pod asked for.
    pub devices: Vec<PathBuf>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    j::list(v, key)
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The pod's requested devices, from its annotation.
pub fn requested_devices(pod: &Value) -> Vec<PathBuf> {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(DEVICES_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// The confinement of `container` in `pod`: the container's securityContext
/// wins over the pod's where both can say something.
pub fn confinement(pod: &Value, container: &Value) -> Confinement {
    let pod_ctx = j::at(j::at(pod, "spec"), "securityContext");
    let ctx = j::at(container, "securityContext");
    let caps = j::at(ctx, "capabilities");
    let either = |key: &str| ctx.get(key).or_else(|| pod_ctx.get(key));
    let seccomp = either("seccompProfile")
        .map(|p| j::text(p, "type"))
        .is_none_or(|t| t != "Unconfined");
    Confinement {
        runtime: Security {
            privileged: j::flag(ctx, "privileged"),
            add_capabilities: strings(caps, "add"),
            drop_capabilities: strings(caps, "drop"),
            read_only_root: j::flag(ctx, "readOnlyRootFilesystem"),
            no_new_privileges: ctx.get("allowPrivilegeEscalation").and_then(Value::as_bool)
                != Some(true),
            seccomp,
            devices: Vec::new(),
        },
        run_as_non_root: either("runAsNonRoot").and_then(Value::as_bool) == Some(true),
        devices: requested_devices(pod),
    }
}

/// Every container of a pod, init and ephemeral ones included.
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| j::list(spec, k))
}

/// Why `pod` may not run on a board with `policy`, one reason per line as
/// it names the field; empty when it may.
pub fn violations(pod: &Value, policy: &Policy) -> Vec<String> {
    let spec = j::at(pod, "spec");
    let mut out = Vec::new();
    if !policy.allow_privileged {
        for c in containers(spec) {
            if j::flag(j::at(c, "securityContext"), "privileged") {
                out.push(format!(
                    "container {:?} sets securityContext.privileged=true (allow_privileged in the board config's [security] table allows it)",
                    j::text(c, "name")
                ));
            }
        }
    }
    if !policy.allow_host_network && j::flag(spec, "hostNetwork") {
        out.push("spec.hostNetwork=true (allow_host_network in the board config's [security] table allows it)".into());
    }
    for v in j::list(spec, "volumes") {
        let Some(path) = v.pointer("/hostPath/path").and_then(Value::as_str) else {
            continue;
        };
        let allowed = plain(Path::new(path))
            && policy
                .host_path_prefixes
                .iter()
                .any(|p| Path::new(path).starts_with(p));
        if !allowed {
            let prefixes: Vec<String> = policy
                .host_path_prefixes
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            out.push(format!(
                "volume {:?} uses hostPath {path:?}, outside the allowed prefixes [{}] (host_path_prefixes in the board config's [security] table)",
                j::text(v, "name"),
                prefixes.join(", ")
            ));
        }
    }
    for d in requested_devices(pod) {
        if !policy.allowed_devices.contains(&d) {
            out.push(format!(
                "annotation {DEVICES_ANNOTATION} asks for {}, which the board config's [devices] allowed list does not name",
                d.display()
            ));
        }
    }
    for c in containers(spec) {
        let ctx = j::at(c, "securityContext");
        let profile = ctx
            .get("seccompProfile")
            .or_else(|| spec.pointer("/securityContext/seccompProfile"));
        if profile.is_some_and(|p| j::text(p, "type") == "Localhost") {
            out.push(format!(
                "container {:?}: seccompProfile type Localhost is not supported (use RuntimeDefault or Unconfined)",
                j::text(c, "name")
            ));
        }
    }
    out
}

/// An absolute path without `..` (which could climb out of a prefix).
fn plain(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_hardened() {
        let pod = json!({"spec": {"containers": [{"name": "c"}]}});
        let c = confinement(&pod, &pod["spec"]["containers"][0]);
        assert_eq!(c.runtime, Security::default());
        assert!(!c.run_as_non_root && c.devices.is_empty());
    }

    #[test]
    fn the_container_context_wins_over_the_pod() {
        let pod = json!({"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}, "runAsNonRoot": true},
            "containers": [{"name": "c", "securityContext": {
                "seccompProfile": {"type": "RuntimeDefault"}, "allowPrivilegeEscalation": true,
                "readOnlyRootFilesystem": true, "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}]},
            "metadata": {"annotations": {DEVICES_ANNOTATION: "/dev/gpiomem, /dev/i2c-1"}}});
        let c = confinement(&pod, &pod["spec"]["containers"][0]);
        let r = &c.runtime;
        assert!(r.seccomp && !r.no_new_privileges && r.read_only_root && c.run_as_non_root);
        assert_eq!(r.add_capabilities, ["NET_ADMIN"]);
        assert_eq!(r.drop_capabilities, ["ALL"]);
        assert_eq!(
            c.devices,
            [PathBuf::from("/dev/gpiomem"), PathBuf::from("/dev/i2c-1")]
        );
        let pod_only = json!({"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}, "containers": [{}]}});
        assert!(
            !confinement(&pod_only, &pod_only["spec"]["containers"][0])
                .runtime
                .seccomp
        );
    }

    #[test]
    fn a_strict_board_refuses_what_it_does_not_allow() {
        let policy = Policy {
            host_path_prefixes: vec!["/srv/data".into()],
            allowed_devices: vec!["/dev/gpiomem".into()],
            ..Policy::default()
        };
        let pod = json!({"metadata": {"annotations": {DEVICES_ANNOTATION: "/dev/gpiomem,/dev/mem"}},
            "spec": {"hostNetwork": true,
            "volumes": [{"name": "ok", "hostPath": {"path": "/srv/data/x"}},
                        {"name": "etc", "hostPath": {"path": "/etc"}},
                        {"name": "climb", "hostPath": {"path": "/srv/data/../../etc"}}],
            "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
            "containers": [{"name": "c", "securityContext": {"seccompProfile": {"type": "Localhost"}}}]}});
        let v = violations(&pod, &policy);
        assert_eq!(v.len(), 6, "{v:#?}");
        assert!(v[0].starts_with("container \"i\" sets securityContext.privileged=true"));
        assert!(v[1].starts_with("spec.hostNetwork=true"));
        assert!(
            v[2].contains(
                "\"etc\" uses hostPath \"/etc\", outside the allowed prefixes [/srv/data]"
            )
        );
        assert!(v[3].contains("\"climb\""));
        assert!(v[4].contains("/dev/mem"));
        assert!(v[5].contains("Localhost is not supported"));
        let open = Policy {
            allow_privileged: true,
            allow_host_network: true,
            host_path_prefixes: vec!["/".into()],
            allowed_devices: vec!["/dev/gpiomem".into(), "/dev/mem".into()],
        };
        assert_eq!(
            violations(&pod, &open).len(),
            2,
            "the climbing path and Localhost stay refused"
        );
    }
}
