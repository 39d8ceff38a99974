//! `kubectl logs` and `kubectl exec`: the pod's containers, through this
//! board's kubelet.

use serde_json::Value;

use super::http::{Reply, Request};
use super::objects::existing;
use super::router::Target;
use super::{Ctx, Status, websocket};
use crate::kubelet::logs;

/// The container a request names, or the only one.
fn container_name(req: &Request, pod: &Value, name: &str) -> Result<String, Status> {
    let names: Vec<&str> = ["/spec/containers", "/spec/initContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match req.param("container") {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(Status::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() == 1) =>
        {
            Ok(names[0].to_string())
        }
        None => Err(Status::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

fn kubelet(ctx: &Ctx) -> Result<&crate::kubelet::Kubelet, Status> {
    ctx.kubelet
        .as_deref()
        .ok_or_else(|| Status::unavailable("this server runs no kubelet"))
}

pub async fn log(ctx: &Ctx, req: &Request, t: &Target, name: &str) -> Result<Reply, Status> {
    let pod = existing(ctx, t, name)?;
    let container = container_name(req, &pod.value(), name)?;
    let opts = logs::LogOptions::from_query(&req.query, std::time::SystemTime::now())
        .map_err(Status::bad_request)?;
    let previous = matches!(req.param("previous"), Some("true" | "1"));
    if let Some(proxy) = &ctx.cluster
        && let Some(stream) = proxy.log(&pod, &container, previous, &req.query)
    {
        return board_log(ctx, stream, opts.follow).await;
    }
    let (path, ended) = kubelet(ctx)?
        .log_file(&pod, &container, previous)
        .map_err(Status::bad_request)?;
    if !opts.follow {
        let body = smol::unblock(move || {
            let mut out = Vec::new();
            logs::read_logs(&path, &opts, &mut out).map(|_| out)
        })
        .await
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(Vec::new()),
            _ => Err(Status::internal(format!("reading the log: {e}"))),
        })?;
        return Ok(Reply::Full {
            status: 200,
            content_type: "text/plain",
            body,
        });
    }
    let chunks = logs::stream(path, opts, ended)
        .map_err(|e| Status::internal(format!("starting a log stream: {e}")))?;
    Ok(Reply::Stream {
        content_type: "text/plain",
        chunks,
    })
}

/// The log of a pod on another board, as its agent streams it.
async fn board_log(
    ctx: &Ctx,
    stream: Result<crate::cluster::server::BoardStream, String>,
    follow: bool,
) -> Result<Reply, Status> {
    let stream = stream.map_err(Status::unavailable)?;
    // The first message says whether the board could open the log.
    stream.started().await.map_err(Status::bad_request)?;
    if !follow {
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            body.extend(chunk.map_err(Status::bad_request)?);
        }
        return Ok(Reply::Full {
            status: 200,
            content_type: "text/plain",
            body,
        });
    }
    let (tx, chunks) = smol::channel::bounded(16);
    ctx.ex
        .spawn(async move {
            while let Some(Ok(chunk)) = stream.next().await {
                if tx.send(chunk).await.is_err() {
                    break; // the client went away; dropping the stream cancels it
                }
            }
        })
        .detach();
    Ok(Reply::Stream {
        content_type: "text/plain",
        chunks,
    })
}

pub async fn exec(ctx: &Ctx, req: &Request, t: &Target, name: &str) -> Result<Reply, Status> {
    let Some((key, offered)) = req.websocket.clone() else {
        return Err(Status::bad_request(
            "exec needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io)",
        ));
    };
    let handshake = websocket::handshake(&key, &offered).map_err(Status::bad_request)?;
    // Past the handshake every failure goes on the error channel (see
    // `websocket::serve_failure`).
    let started = start_exec(ctx, req, t, name).await;
    let protocol = handshake.protocol;
    let headers = handshake.headers().into_iter().collect();
    let session: super::http::Session = Box::new(move |stream| {
        let ended = match started {
            Ok((stdout, stderr, exit)) => {
                let io = websocket::ExecIo {
                    stdout: Some(stdout),
                    stderr: Some(stderr),
                    stdin: None,
                };
                websocket::serve_exec(stream, protocol, io, || {
                    exit.recv_blocking()
                        .unwrap_or(websocket::ExitStatus::Unknown)
                })
            }
            Err(status) => websocket::serve_failure(stream, &status.to_json()),
        };
        if let Err(e) = ended {
            log::debug!("exec session ended: {e}");
        }
    });
    Ok(Reply::Upgrade { headers, session })
}

type ExecOutput = (
    std::fs::File,
    std::fs::File,
    smol::channel::Receiver<websocket::ExitStatus>,
);

/// Starts the command of an exec request here or on the pod's board.
async fn start_exec(
    ctx: &Ctx,
    req: &Request,
    t: &Target,
    name: &str,
) -> Result<ExecOutput, Status> {
    let pod = existing(ctx, t, name)?;
    let container = container_name(req, &pod.value(), name)?;
    let args: Vec<String> = req
        .query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if args.is_empty() {
        return Err(Status::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    if matches!(req.param("tty"), Some("true" | "1")) {
        return Err(Status::bad_request(
            "exec with a TTY (-t) is not supported yet; run without -t",
        ));
    }
    match ctx
        .cluster
        .as_ref()
        .and_then(|c| c.exec(&pod, &container, args.clone()))
    {
        // A pod on another board: its agent runs the command.
        Some(stream) => {
            let stream = stream.map_err(Status::unavailable)?;
            stream.started().await.map_err(Status::bad_request)?;
            stream
                .exec_io()
                .map_err(|e| Status::internal(format!("starting an exec relay: {e}")))
        }
        None => {
            let (handle, exit) = kubelet(ctx)?
                .exec(&pod, &container, args)
                .await
                .map_err(Status::bad_request)?;
            Ok((handle.stdout, handle.stderr, exit))
        }
    }
}
