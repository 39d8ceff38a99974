//! metav1.Status: the only shape errors leave the API in. kubectl acts on the
//! code, users read the message.

use serde_json::{Value, json};

use super::http::Reply;
use crate::model::Resource;
use crate::store::StoreError;

#[derive(Debug)]
pub struct Status {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// How long a reply with this code asks the client to wait before trying
/// again: a limit reached (429) or a board busy or away (503) passes soon,
/// and kubectl, told by Retry-After, tries again as with the API server's
/// max-in-flight refusals.
pub fn retry_after_secs(code: u16) -> Option<u64> {
    matches!(code, 429 | 503).then_some(1)
}

impl Status {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Status {
        Status {
            code,
            reason,
            message: message.into(),
            details: retry_after_secs(code).map(|s| json!({"retryAfterSeconds": s})),
        }
    }
    fn with_details(mut self, resource: &Resource, name: &str) -> Status {
        let mut d = json!({"name": name, "kind": resource.plural});
        if !resource.group.is_empty() {
            d["group"] = resource.group.into();
        }
        self.details = Some(d);
        self
    }

    pub fn bad_request(msg: impl Into<String>) -> Status {
        Status::new(400, "BadRequest", msg)
    }
    pub fn unauthorized() -> Status {
        Status::new(401, "Unauthorized", "Unauthorized")
    }
    pub fn forbidden(msg: impl Into<String>) -> Status {
        Status::new(403, "Forbidden", msg)
    }
    pub fn not_found(resource: &Resource, name: &str) -> Status {
        Status::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(resource)),
        )
        .with_details(resource, name)
    }
    pub fn no_route(path: &str) -> Status {
        Status::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }
    pub fn method_not_allowed(msg: impl Into<String>) -> Status {
        Status::new(405, "MethodNotAllowed", msg)
    }
    pub fn already_exists(resource: &Resource, name: &str) -> Status {
        Status::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(resource)),
        )
        .with_details(resource, name)
    }
    pub fn conflict(resource: &Resource, name: &str, msg: impl Into<String>) -> Status {
        Status::new(409, "Conflict", msg).with_details(resource, name)
    }
    pub fn gone(msg: impl Into<String>) -> Status {
        Status::new(410, "Expired", msg)
    }
    pub fn too_large(limit: usize) -> Status {
        Status::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than {} bytes", limit),
        )
    }
    pub fn unsupported_media(msg: impl Into<String>) -> Status {
        Status::new(415, "UnsupportedMediaType", msg)
    }
    pub fn invalid(
        resource: &Resource,
        name: &str,
        msg: impl Into<String>,
        causes: Vec<Value>,
    ) -> Status {
        let mut s = Status::new(422, "Invalid", msg).with_details(resource, name);
        if let Some(d) = s.details.as_mut() {
            d["kind"] = resource.kind.into();
            d["causes"] = causes.into();
        }
        s
    }
    pub fn unprocessable(msg: impl Into<String>) -> Status {
        Status::new(422, "Invalid", msg)
    }
    pub fn too_many_requests(msg: impl Into<String>) -> Status {
        Status::new(429, "TooManyRequests", msg)
    }
    pub fn internal(msg: impl Into<String>) -> Status {
        Status::new(500, "InternalError", msg)
    }
    pub fn unavailable(msg: impl Into<String>) -> Status {
        Status::new(503, "ServiceUnavailable", msg)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

fn qualified(r: &Resource) -> String {
    crate::store::qualified(r)
}

pub fn reply(s: &Status) -> Reply {
    Reply::json(
        s.code,
        serde_json::to_vec(&s.to_json()).expect("JSON values serialize"),
    )
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        match &e {
            StoreError::NotFound { resource, name } => Status::not_found(resource, name),
            StoreError::AlreadyExists { resource, name } => Status::already_exists(resource, name),
            StoreError::Conflict { resource, name } => {
                Status::conflict(resource, name, e.to_string())
            }
            StoreError::Gone { .. } | StoreError::TooNew { .. } => Status::gone(e.to_string()),
            StoreError::Invalid {
                resource,
                name,
                detail,
            } => Status::invalid(
                resource,
                name,
                format!("{} \"{name}\" is invalid: {detail}", resource.kind),
                vec![],
            ),
            StoreError::Sqlite { .. } | StoreError::Corrupt { .. } | StoreError::Io { .. } => {
                Status::internal(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::res;

    #[test]
    fn not_found_matches_kubernetes_shape() {
        let s = Status::not_found(res("Pod"), "nosuch").to_json();
        let want: Value =
            serde_json::from_str(include_str!("../../tests/data/status_404.json")).unwrap();
        assert_eq!(s, want);
        let d = Status::not_found(res("Deployment"), "web").to_json();
        assert_eq!(d["message"], "deployments.apps \"web\" not found");
        assert_eq!(d["details"]["group"], "apps");
    }
}
