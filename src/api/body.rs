//! Request bodies in, by Content-Type; what the client accepts, out.

use serde_json::Value;

use super::Status;
use super::http::Request;

/// The media type without parameters, lower-cased.
fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn parse_json_or_yaml(bytes: &[u8], yaml: bool) -> Result<Value, Status> {
    let v: Value = if yaml {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Status::bad_request(format!("the body is not UTF-8: {e}")))?;
        serde_yaml_ng::from_str(text)
            .map_err(|e| Status::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| Status::bad_request(format!("error decoding JSON: {e}")))?
    };
    Ok(v)
}

fn refuse_protobuf(ct: &str) -> Result<(), Status> {
    if ct == "application/vnd.kubernetes.protobuf" {
        return Err(Status::unsupported_media(
            "bramble speaks JSON and YAML, not protobuf; this `kubectl create <kind>` form sends protobuf: write the object to a file and use `kubectl create -f` or `kubectl apply -f` instead",
        ));
    }
    Ok(())
}

/// An object body for POST and PUT. No Content-Type means JSON (kubectl's
/// `PUT .../scale` and the Python client send none).
pub fn object(req: &Request) -> Result<Value, Status> {
    let ct = media_type(&req.content_type);
    refuse_protobuf(&ct)?;
    let v = match ct.as_str() {
        "" | "application/json" | "*/*" => parse_json_or_yaml(&req.body, false)?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            parse_json_or_yaml(&req.body, true)?
        }
        other => {
            return Err(Status::unsupported_media(format!(
                "the body's media type \"{other}\" is not supported; send application/json or application/yaml"
            )));
        }
    };
    if !v.is_object() {
        return Err(Status::bad_request("the body must be a JSON object"));
    }
    Ok(v)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

/// A PATCH body and its kind, from the Content-Type.
pub fn patch(req: &Request) -> Result<(PatchType, Value), Status> {
    let ct = media_type(&req.content_type);
    refuse_protobuf(&ct)?;
    let kind = match ct.as_str() {
        "application/json-patch+json" => PatchType::Json,
        "application/merge-patch+json" => PatchType::Merge,
        "application/strategic-merge-patch+json" => PatchType::Strategic,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchType::Apply,
        other => {
            return Err(Status::unsupported_media(format!(
                "the body of a PATCH request must be one of application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json or application/apply-patch+yaml, not \"{other}\""
            )));
        }
    };
    let v = parse_json_or_yaml(&req.body, kind == PatchType::Apply)?;
    Ok((kind, v))
}

/// DeleteOptions from the body (optional) and the query.
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Propagation,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

pub fn delete_options(req: &Request) -> Result<DeleteOptions, Status> {
    let body = if req.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        object(req)?
    };
    let grace_period = match req.param("gracePeriodSeconds") {
        Some(s) => Some(s.parse::<i64>().map_err(|_| {
            Status::bad_request(format!("gracePeriodSeconds: invalid value \"{s}\""))
        })?),
        None => body.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    let orphan = req
        .param("orphanDependents")
        .map(|s| s == "true")
        .or_else(|| body.get("orphanDependents").and_then(Value::as_bool));
    let policy = req
        .param("propagationPolicy")
        .map(str::to_string)
        .or_else(|| {
            body.get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let propagation = match (policy.as_deref(), orphan) {
        (Some("Background") | None, None | Some(false)) => Propagation::Background,
        (Some("Foreground"), _) => Propagation::Foreground,
        (Some("Orphan"), _) | (None, Some(true)) => Propagation::Orphan,
        (Some("Background"), Some(true)) => {
            return Err(Status::unprocessable(
                "orphanDependents and propagationPolicy cannot both be set",
            ));
        }
        (Some(other), _) => {
            return Err(Status::unprocessable(format!(
                "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    };
    let pre = body.get("preconditions");
    Ok(DeleteOptions {
        grace_period,
        propagation,
        uid: pre
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: pre
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run: dry_run(req, &body),
    })
}

pub fn dry_run(req: &Request, body: &Value) -> bool {
    req.param("dryRun") == Some("All")
        || body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"))
}

/// Does the client want a server-printed Table?
pub fn wants_table(req: &Request) -> bool {
    req.accept.split(',').next().is_some_and(|first| {
        let params: Vec<&str> = first.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    })
}

/// `?watch=true|1|True`.
pub fn is_watch(req: &Request) -> bool {
    matches!(req.param("watch"), Some("true" | "1" | "True"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::http::Method;

    fn req(ct: &str, body: &str, query: &[(&str, &str)]) -> Request {
        Request {
            method: Method::Post,
            path: "/".into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            accept: String::new(),
            content_type: ct.into(),
            body: body.as_bytes().to_vec(),
            websocket: None,
        }
    }

    #[test]
    fn objects_decode_from_json_yaml_and_no_content_type() {
        assert_eq!(object(&req("", r#"{"a":1}"#, &[])).unwrap()["a"], 1);
        assert_eq!(
            object(&req("application/json; charset=utf-8", r#"{"a":1}"#, &[])).unwrap()["a"],
            1
        );
        assert_eq!(
            object(&req("application/yaml", "a: 1\n", &[])).unwrap()["a"],
            1
        );
        assert_eq!(object(&req("", "{bad", &[])).unwrap_err().code, 400);
        assert_eq!(object(&req("", "[1]", &[])).unwrap_err().code, 400);
        assert_eq!(
            object(&req("application/vnd.kubernetes.protobuf", "k8s\0", &[]))
                .unwrap_err()
                .code,
            415
        );
        assert_eq!(object(&req("text/html", "<p>", &[])).unwrap_err().code, 415);
    }

    #[test]
    fn patch_types_follow_content_type() {
        assert_eq!(
            patch(&req("application/merge-patch+json", "{}", &[]))
                .unwrap()
                .0,
            PatchType::Merge
        );
        assert_eq!(
            patch(&req("application/apply-patch+yaml", "a: 1", &[]))
                .unwrap()
                .0,
            PatchType::Apply
        );
        assert_eq!(
            patch(&req("application/json", "{}", &[])).unwrap_err().code,
            415
        );
    }

    #[test]
    fn delete_options_from_body_and_query() {
        let o = delete_options(&req(
            "",
            r#"{"propagationPolicy":"Foreground","gracePeriodSeconds":5}"#,
            &[],
        ))
        .unwrap();
        assert_eq!(
            (o.propagation, o.grace_period),
            (Propagation::Foreground, Some(5))
        );
        let o = delete_options(&req(
            "",
            "",
            &[("gracePeriodSeconds", "0"), ("propagationPolicy", "Orphan")],
        ))
        .unwrap();
        assert_eq!(
            (o.propagation, o.grace_period),
            (Propagation::Orphan, Some(0))
        );
        assert_eq!(
            delete_options(&req("", r#"{"propagationPolicy":"Sideways"}"#, &[]))
                .err()
                .unwrap()
                .code,
            422
        );
        assert_eq!(
            delete_options(&req("", "", &[])).unwrap().propagation,
            Propagation::Background
        );
    }

    #[test]
    fn table_is_wanted_only_when_asked_first() {
        let mut r = req("", "", &[]);
        r.accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json".into();
        assert!(wants_table(&r));
        r.accept = "application/json".into();
        assert!(!wants_table(&r));
    }

    #[test]
    fn mutated_manifests_decode_or_fail_cleanly() {
        let json: &[u8] = br#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"containers": [{"name": "c", "image": "busybox", "args": ["-c", "echo \u00e9"]}]}}"#;
        let yaml: &[u8] = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations: {k: 'v'}\ndata:\n  key: |\n    multi\n    line\n---\n- &x [1, 2]\n- *x\n";
        for (seed, yaml_mode) in [(1, false), (2, true)] {
            crate::mutate::each_mutation(seed, 20_000, &[json, yaml], |input| {
                if let Err(s) = parse_json_or_yaml(input, yaml_mode) {
                    assert_eq!(s.code, 400);
                }
            });
        }
    }
}
