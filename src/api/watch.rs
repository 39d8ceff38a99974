//! Watch streams: one JSON event per line, full objects or Table rows.
//!
//! A watch is a task on the executor that reads the store's events, filters
//! them and sends lines to the HTTP thread that writes the stream. Watch-list
//! (`sendInitialEvents=true`) is served: the current objects as ADDED, then a
//! BOOKMARK marked `k8s.io/initial-events-end`, then changes.

use serde_json::json;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::http::{Reply, Request};
use super::objects::Filter;
use super::router::Target;
use super::{Ctx, Status, body, table};
use crate::store::{EventType, Object, WatchEvent};

/// How often an idle watch checks whether its client is still there.
const IDLE_CHECK: Duration = Duration::from_secs(15);
/// Kubernetes caps watches at about this long; kubectl re-watches after.
const MAX_TIMEOUT: Duration = Duration::from_secs(1800);

enum Format {
    Object,
    Table {
        include: table::IncludeObject,
        sent_columns: bool,
    },
}

pub fn start(ctx: &Rc<Ctx>, req: &Request, t: &Target) -> Result<Reply, Status> {
    let filter = Filter::from_request(req, t.resource)?;
    let name = t.name.clone();
    let send_initial = req.param("sendInitialEvents") == Some("true");
    if send_initial && req.param("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(Status::unprocessable(
            "sendInitialEvents requires resourceVersionMatch=NotOlderThan",
        ));
    }
    let since =
        match req
            .param("resourceVersion")
            .filter(|s| !s.is_empty() && *s != "0")
        {
            Some(s) if !send_initial => Some(s.parse::<u64>().map_err(|_| {
                Status::bad_request(format!("resourceVersion: invalid value \"{s}\""))
            })?),
            _ => None,
        };
    let current = ctx.store.resource_version();
    let events = ctx
        .store
        .watch(t.resource, t.namespace.as_deref(), since.unwrap_or(current))?;
    // Without a resourceVersion the watch starts with the current state.
    let initial: Vec<Arc<Object>> = if since.is_none() {
        ctx.store
            .list(t.resource, t.namespace.as_deref())
            .into_iter()
            .filter(|o| name.as_ref().is_none_or(|n| *n == o.name) && filter.matches(o))
            .collect()
    } else {
        Vec::new()
    };
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(MAX_TIMEOUT)
        .min(MAX_TIMEOUT);
    let mut format = if body::wants_table(req) {
        Format::Table {
            include: super::objects::include_object(req)?,
            sent_columns: false,
        }
    } else {
        Format::Object
    };
    let kind = t.resource.kind;
    let bookmark_kind = (t.resource.api_version(), kind);
    let (tx, rx) = smol::channel::bounded::<Vec<u8>>(64);
    ctx.ex
        .spawn(async move {
            let deadline = smol::Timer::after(timeout);
            let mut deadline = std::pin::pin!(deadline);
            for o in &initial {
                if tx.send(line(kind, "ADDED", o, &mut format)).await.is_err() {
                    return;
                }
            }
            if send_initial {
                let b = json!({"type": "BOOKMARK", "object": {
                    "kind": bookmark_kind.1, "apiVersion": bookmark_kind.0,
                    "metadata": {"resourceVersion": current.to_string(),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}});
                let mut l = serde_json::to_vec(&b).expect("JSON values serialize");
                l.push(b'\n');
                if tx.send(l).await.is_err() {
                    return;
                }
            }
            loop {
                let next = async { Some(events.recv().await) };
                let idle = async {
                    smol::Timer::after(IDLE_CHECK).await;
                    None
                };
                let ended = async {
                    (&mut deadline).await;
                    Some(Err(smol::channel::RecvError))
                };
                match smol::future::or(next, smol::future::or(idle, ended)).await {
                    // The store closed the watch (shutdown, or this watcher fell behind).
                    Some(Err(_)) => return,
                    Some(Ok(ev)) => {
                        let Some(ty) = translate(&ev, name.as_deref(), &filter) else {
                            continue;
                        };
                        if tx
                            .send(line(kind, ty, &ev.object, &mut format))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    None if tx.is_closed() => return,
                    None => {}
                }
            }
        })
        .detach();
    let content_type = "application/json";
    Ok(Reply::Stream {
        content_type,
        chunks: rx,
    })
}

/// What a filtered watcher sees of an event: an object that starts matching
/// is ADDED, one that stops matching is DELETED, as Kubernetes does.
fn translate(ev: &WatchEvent, name: Option<&str>, filter: &Filter) -> Option<&'static str> {
    let matches = |o: &Object| name.is_none_or(|n| n == o.name) && filter.matches(o);
    let now = matches(&ev.object);
    let before = ev.prev.as_deref().is_some_and(matches);
    match (ev.kind, before, now) {
        (EventType::Added, _, true) => Some("ADDED"),
        (EventType::Modified, true, true) => Some("MODIFIED"),
        (EventType::Modified, false, true) => Some("ADDED"),
        (EventType::Modified, true, false) => Some("DELETED"),
        (EventType::Deleted, _, true) => Some("DELETED"),
        _ => None,
    }
}

fn line(kind: &str, ty: &str, o: &Object, format: &mut Format) -> Vec<u8> {
    let mut out = match format {
        Format::Object => {
            let mut v = Vec::with_capacity(o.raw.len() + 32);
            v.extend_from_slice(format!(r#"{{"type":"{ty}","object":"#).as_bytes());
            v.extend_from_slice(o.raw.as_bytes());
            v.push(b'}');
            v
        }
        Format::Table {
            include,
            sent_columns,
        } => {
            let rv = o.rv.to_string();
            let value = o.value();
            // The first event carries the column definitions, later ones null.
            let t = if *sent_columns {
                table::watch_table(kind, &value, &rv, *include, SystemTime::now())
            } else {
                *sent_columns = true;
                table::table(kind, &[value], &rv, *include, SystemTime::now())
            };
            serde_json::to_vec(&json!({"type": ty, "object": t})).expect("JSON values serialize")
        }
    };
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::http::{Method, Request};
    use crate::model::res;
    use std::collections::BTreeMap;

    fn obj(labels: &[(&str, &str)]) -> Arc<Object> {
        Arc::new(Object {
            resource: res("Pod"),
            namespace: "default".into(),
            name: "p".into(),
            uid: "u".into(),
            rv: 1,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            node_name: String::new(),
            finished: false,
            deleting: false,
            raw: r#"{"metadata":{"name":"p"}}"#.into(),
        })
    }

    fn filter(sel: &str) -> Filter {
        let req = Request {
            method: Method::Get,
            path: "/".into(),
            query: vec![("labelSelector".into(), sel.into())],
            accept: String::new(),
            content_type: String::new(),
            body: vec![],
            websocket: None,
        };
        Filter::from_request(&req, res("Pod")).unwrap()
    }

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let f = filter("app=web");
        let web = obj(&[("app", "web")]);
        let db = obj(&[("app", "db")]);
        let ev = |kind, object: &Arc<Object>, prev: Option<&Arc<Object>>| WatchEvent {
            kind,
            object: object.clone(),
            prev: prev.cloned(),
        };
        assert_eq!(
            translate(&ev(EventType::Added, &web, None), None, &f),
            Some("ADDED")
        );
        assert_eq!(translate(&ev(EventType::Added, &db, None), None, &f), None);
        assert_eq!(
            translate(&ev(EventType::Modified, &web, Some(&db)), None, &f),
            Some("ADDED")
        );
        assert_eq!(
            translate(&ev(EventType::Modified, &db, Some(&web)), None, &f),
            Some("DELETED")
        );
        assert_eq!(
            translate(&ev(EventType::Modified, &web, Some(&web)), None, &f),
            Some("MODIFIED")
        );
        assert_eq!(
            translate(&ev(EventType::Deleted, &web, Some(&web)), None, &f),
            Some("DELETED")
        );
        assert_eq!(
            translate(&ev(EventType::Added, &web, None), Some("other"), &f),
            None
        );
    }

    #[test]
    fn object_lines_splice_the_stored_json() {
        let l = line("Pod", "ADDED", &obj(&[]), &mut Format::Object);
        assert_eq!(
            String::from_utf8(l).unwrap(),
            "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"p\"}}}\n"
        );
    }
}
