//! Discovery documents, all derived from `model::RESOURCES`, so a resource is
//! added in one place.

use serde_json::{Value, json};

use crate::model::{GROUPS, RESOURCES, Resource, Subresource};

/// The Kubernetes version bramble speaks; kubectl warns beyond one minor of skew.
pub const KUBE_MINOR: u32 = 37;

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR.to_string(),
        "gitVersion": format!("v1.{KUBE_MINOR}.0-bramble.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": env!("BRAMBLE_GIT_REVISION"),
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("linux/{}", crate::node::go_arch()),
    })
}

pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = GROUPS.iter().map(|g| group(g)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(name: &str) -> Option<Value> {
    GROUPS.contains(&name).then(|| {
        let mut g = group(name);
        g["kind"] = "APIGroup".into();
        g["apiVersion"] = "v1".into();
        g
    })
}

fn group(name: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
    json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `/api/v1` or `/apis/<group>/v1`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let in_group: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if in_group.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in in_group {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            resources.push(subresource(r, *sub));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn subresource(r: &Resource, sub: Subresource) -> Value {
    let name = format!("{}/{}", r.plural, sub.name());
    let (kind, verbs): (&str, &[&str]) = match sub {
        Subresource::Status => (r.kind, &["get", "patch", "update"]),
        Subresource::Scale => ("Scale", &["get", "patch", "update"]),
        Subresource::Log => (r.kind, &["get"]),
        Subresource::Exec => ("PodExecOptions", &["create", "get"]),
        Subresource::Binding => ("Binding", &["create"]),
    };
    let mut v = json!({"name": name, "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
    if sub == Subresource::Scale {
        v["group"] = "autoscaling".into();
        v["version"] = "v1".into();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_list_has_pods_with_category_all_and_subresources() {
        let v = resource_list("", "v1").unwrap();
        let names: Vec<&str> = v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for n in [
            "pods",
            "pods/log",
            "pods/exec",
            "pods/status",
            "services",
            "nodes",
            "namespaces",
            "replicationcontrollers/scale",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let pods = &v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["shortNames"], json!(["po"]));
    }

    #[test]
    fn apps_scale_is_autoscaling_v1() {
        let v = resource_list("apps", "v1").unwrap();
        let scale = v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
        assert!(resource_list("apps", "v2").is_none());
        assert!(resource_list("nosuch", "v1").is_none());
    }

    #[test]
    fn group_list_names_every_group() {
        let v = api_group_list();
        let names: Vec<&str> = v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, GROUPS);
    }
}
