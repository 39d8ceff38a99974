//! URL paths to routes. Pure: no store, no I/O.

use crate::model::{self, Resource, Subresource};

#[derive(Debug, PartialEq)]
pub enum Route {
    Version,
    Health,
    ApiVersions,
    ApiGroupList,
    ApiGroup(String),
    ResourceList { group: String, version: String },
    OpenApiRoot,
    OpenApiDoc(String),
    Metrics,
    Object(Target),
}

/// A resource URL: a collection (no name) or one object, maybe a subresource.
#[derive(Debug, PartialEq)]
pub struct Target {
    pub resource: &'static Resource,
    /// The namespace from the URL; None for cluster-scoped resources and for
    /// lists across all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<Subresource>,
}

pub fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    Some(match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["metrics"] => Route::Metrics,
        ["api"] => Route::ApiVersions,
        ["apis"] => Route::ApiGroupList,
        ["apis", g] => Route::ApiGroup(g.to_string()),
        ["api", v] => Route::ResourceList {
            group: String::new(),
            version: v.to_string(),
        },
        ["apis", g, v] => Route::ResourceList {
            group: g.to_string(),
            version: v.to_string(),
        },
        ["openapi", "v3"] => Route::OpenApiRoot,
        ["openapi", "v3", rest @ ..] => Route::OpenApiDoc(rest.join("/")),
        ["api", v, rest @ ..] => Route::Object(target("", v, rest)?),
        ["apis", g, v, rest @ ..] => Route::Object(target(g, v, rest)?),
        _ => return None,
    })
}

fn target(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let lookup = |plural: &str| model::by_plural(group, version, plural);
    let sub = |s: &str| -> Option<Subresource> {
        [
            Subresource::Status,
            Subresource::Scale,
            Subresource::Log,
            Subresource::Exec,
            Subresource::Binding,
        ]
        .into_iter()
        .find(|x| x.name() == s)
    };
    let t = |resource: &'static Resource,
             namespace: Option<&str>,
             name: Option<&str>,
             s: Option<Subresource>| {
        // A subresource the resource lacks, or a namespace on a
        // cluster-scoped resource, is no route at all.
        if s.is_some_and(|s| !resource.has(s)) || (namespace.is_some() && !resource.namespaced) {
            return None;
        }
        Some(Target {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            sub: s,
        })
    };
    match rest {
        // Namespaces are both a resource and the scope of others.
        ["namespaces", ns, plural] => {
            if group.is_empty() && *plural == "status" {
                return t(
                    lookup("namespaces")?,
                    None,
                    Some(ns),
                    Some(Subresource::Status),
                );
            }
            t(lookup(plural)?, Some(ns), None, None)
        }
        ["namespaces", ns, plural, name] => t(lookup(plural)?, Some(ns), Some(name), None),
        ["namespaces", ns, plural, name, s] => {
            t(lookup(plural)?, Some(ns), Some(name), Some(sub(s)?))
        }
        [plural] => t(lookup(plural)?, None, None, None),
        [plural, name] => t(lookup(plural)?, None, Some(name), None),
        [plural, name, s] => t(lookup(plural)?, None, Some(name), Some(sub(s)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::res;

    fn obj(path: &str) -> Target {
        match route(path) {
            Some(Route::Object(t)) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_collections_items_and_subresources() {
        let t = obj("/api/v1/namespaces/default/pods");
        assert_eq!(
            (
                t.resource.kind,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub
            ),
            ("Pod", Some("default"), None, None)
        );
        let t = obj("/api/v1/namespaces/default/pods/kubia/log");
        assert_eq!(
            (t.name.as_deref(), t.sub),
            (Some("kubia"), Some(Subresource::Log))
        );
        let t = obj("/apis/apps/v1/namespaces/ns1/deployments/web/scale");
        assert_eq!(
            (t.resource.kind, t.sub),
            ("Deployment", Some(Subresource::Scale))
        );
    }

    #[test]
    fn namespaces_themselves() {
        let t = obj("/api/v1/namespaces");
        assert!(std::ptr::eq(t.resource, res("Namespace")) && t.name.is_none());
        let t = obj("/api/v1/namespaces/default");
        assert_eq!(
            (t.resource.kind, t.name.as_deref(), t.namespace),
            ("Namespace", Some("default"), None)
        );
        let t = obj("/api/v1/namespaces/default/status");
        assert_eq!(
            (t.resource.kind, t.sub),
            ("Namespace", Some(Subresource::Status))
        );
    }

    #[test]
    fn cluster_wide_lists_and_cluster_scoped() {
        let t = obj("/api/v1/pods");
        assert_eq!((t.resource.kind, t.namespace), ("Pod", None));
        let t = obj("/api/v1/nodes/board-1/status");
        assert_eq!(
            (t.resource.kind, t.sub),
            ("Node", Some(Subresource::Status))
        );
    }

    #[test]
    fn unknown_paths_and_subresources_have_no_route() {
        for p in [
            "/api/v2/pods",
            "/apis/apps/v1/pods",
            "/api/v1/namespaces/default/configmaps/x/scale",
            "/api/v1/namespaces/default/nodes",
            "/api/v1/namespaces/default/pods/x/bogus",
            "/nope",
        ] {
            assert!(!matches!(route(p), Some(Route::Object(_))), "{p}");
        }
        assert_eq!(route("/api"), Some(Route::ApiVersions));
        assert_eq!(
            route("/apis/apps/v1"),
            Some(Route::ResourceList {
                group: "apps".into(),
                version: "v1".into()
            })
        );
        assert_eq!(
            route("/openapi/v3/apis/apps/v1"),
            Some(Route::OpenApiDoc("apis/apps/v1".into()))
        );
        assert_eq!(route("/readyz"), Some(Route::Health));
    }
}
