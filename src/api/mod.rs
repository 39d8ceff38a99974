//! The Kubernetes REST API. Only this module knows HTTP.
//!
//! Entry point: [`serve`], which the server runs on the executor. Requests
//! arrive from [`http::Listener`]'s threads as [`http::Call`]s; each is
//! handled in a task of its own, so a write waiting for its group commit
//! holds up nobody.

mod admission;
mod body;
mod conn;
pub mod discovery;
pub mod http;
mod objects;
mod patch;
mod pods;
mod router;
mod status;
mod table;
mod watch;
pub mod websocket;

use serde_json::Value;
use std::rc::Rc;

use crate::store::Store;
use http::{Call, Method, Reply, Request};
use router::Route;
pub use status::Status;

/// What every handler may use.
pub struct Ctx {
    pub store: Rc<Store>,
    pub ex: Rc<async_executor::LocalExecutor<'static>>,
    /// Set once the server has finished starting; /readyz answers 503 before.
    pub ready: std::cell::Cell<bool>,
    pub service_cidr: crate::net::Cidr,
    /// This board's kubelet: logs and exec of its pods.
    pub kubelet: Option<Rc<crate::kubelet::Kubelet>>,
    pub data_dir: std::path::PathBuf,
    pub node_name: String,
    pub images: std::sync::Arc<crate::image::ImageStore>,
    pub cgroups: Option<crate::runtime::cgroups::CgroupLayout>,
    pub api_counters: crate::metrics::ApiCounters,
    /// What pods may do on this board (admission refuses the rest).
    pub security: crate::security::Policy,
    /// Objects one namespace may hold.
    pub objects_per_namespace: usize,
    /// The cluster link: logs of pods on other boards.
    pub cluster: Option<crate::cluster::server::Proxy>,
}

/// Handles calls until the listener's channel closes.
pub async fn serve(ctx: Rc<Ctx>, calls: smol::channel::Receiver<Call>) {
    while let Ok(incoming) = calls.recv().await {
        let ctx2 = ctx.clone();
        ctx.ex
            .spawn(async move {
                let started = std::time::Instant::now();
                let reply = call(&ctx2, &incoming.request).await;
                let code = match &reply {
                    Reply::Full { status, .. } => *status,
                    _ => 200,
                };
                ctx2.api_counters
                    .record(incoming.request.method.verb(), code, started.elapsed());
                let _ = incoming.reply.send(reply).await;
            })
            .detach();
    }
}

/// Answers a request made inside the daemon (the manifests folder), exactly
/// as one from the network.
pub async fn call(ctx: &Rc<Ctx>, req: &Request) -> Reply {
    handle(ctx, req).await.unwrap_or_else(|s| status::reply(&s))
}

async fn handle(ctx: &Rc<Ctx>, req: &Request) -> Result<Reply, Status> {
    let Some(route) = router::route(&req.path) else {
        return Err(Status::no_route(&req.path));
    };
    if req.method != Method::Get && !matches!(route, Route::Object(_)) {
        return Err(Status::method_not_allowed(format!(
            "{:?} is not supported on {}",
            req.method, req.path
        )));
    }
    match route {
        Route::Version => Ok(json(discovery::version())),
        Route::Health => Ok(
            if ctx.ready.get() || req.path.starts_with("/livez") || req.path.starts_with("/healthz")
            {
                Reply::Full {
                    status: 200,
                    content_type: "text/plain",
                    body: b"ok".to_vec(),
                }
            } else {
                Reply::Full {
                    status: 503,
                    content_type: "text/plain",
                    body: b"not ready: starting".to_vec(),
                }
            },
        ),
        Route::ApiVersions => Ok(json(discovery::api_versions())),
        Route::ApiGroupList => Ok(json(discovery::api_group_list())),
        Route::ApiGroup(g) => discovery::api_group(&g)
            .map(json)
            .ok_or_else(|| Status::no_route(&req.path)),
        Route::ResourceList { group, version } => discovery::resource_list(&group, &version)
            .map(json)
            .ok_or_else(|| Status::no_route(&req.path)),
        Route::OpenApiRoot => Ok(json(crate::model::schema::openapi_root())),
        Route::OpenApiDoc(p) => crate::model::schema::openapi_group_version(&p)
            .map(json)
            .ok_or_else(|| Status::no_route(&req.path)),
        Route::Metrics => Ok(Reply::Full {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: crate::metrics::render(
                &ctx.api_counters,
                &crate::metrics::Sources {
                    store: &ctx.store,
                    data_dir: &ctx.data_dir,
                    node_name: &ctx.node_name,
                    pulls: ctx.images.pull_counts(),
                    cgroups: ctx.cgroups.as_ref(),
                    cluster: ctx.cluster.as_ref().map(|c| c.connections()),
                },
            )
            .into_bytes(),
        }),
        Route::Object(target) => objects::handle(ctx, req, &target).await,
    }
}

pub fn json(v: Value) -> Reply {
    Reply::json(200, serde_json::to_vec(&v).expect("JSON values serialize"))
}
