//! `pods/{name}/portforward`: WebSocket v4.channel.k8s.io (kube-rs, the kubelet's
//! framing), and kubectl's SPDY/3.1 in both its forms (WebSocket-tunnelled and the
//! classic POST upgrade), the SPDY protocol itself living in `crate::spdy`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::auth::{self, Attributes};
use crate::server::Ctx;
use crate::state::{PodView, State};
use crate::status::{bad_request, failure, not_found, Body, Resp};
use crate::stream::{BoxStream, PortConnector};
use crate::ws::{self, FrameTx};

/// The port a pod's buildkitd listens on.
pub const BUILDKITD_PORT: u16 = 1234;
pub const SPDY_WS_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
pub const PORTFORWARD_PROTOCOL: &str = "portforward.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const V5: &str = "v5.channel.k8s.io";
const CHUNK: usize = 64 * 1024;

/// Validate a port-forward request and answer it: a Status error, or 101 and a session.
pub fn handle(mut req: Request<Incoming>, ctx: &Ctx, ns: &str, name: &str) -> Resp {
    let a = Attributes {
        verb: "create",
        resource: "pods/portforward",
        namespace: Some(ns),
        name: Some(name),
    };
    if let Some(r) = auth::refusal(&ctx.user, &a) {
        return r;
    }
    // Server-wide, like RBAC: refused before the pod is looked up.
    if ctx.state.faults().portforward_forbidden {
        return auth::forbidden(&ctx.user.name, &a);
    }
    let Some(pod) = ctx.state.pod(ns, name).filter(|p| !p.cfg.faults.vanished) else {
        return not_found("pods", name);
    };
    if pod.cfg.faults.portforward_forbidden {
        return auth::forbidden(&ctx.user.name, &a);
    }
    if pod.cfg.phase != "Running" {
        return bad_request(&format!(
            "unable to forward port because pod is not running. Current status={}",
            pod.cfg.phase
        ));
    }
    let connect = connector(ctx.state.clone(), &pod);
    if ws::is_websocket(&req) {
        let offered = ws::offered_protocols(&req);
        if offered.iter().any(|p| p == SPDY_WS_PROTOCOL) {
            let resp = ws::switching_protocols(&req, SPDY_WS_PROTOCOL);
            if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
                return resp;
            }
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Some(ws) = ws::accept(on).await {
                    let _ = crate::spdy::serve_portforward_ws(ws, connect).await;
                }
            });
            return resp;
        }
        let ports = match ports(ctx) {
            Ok(p) => p,
            Err(message) => return bad_request(&message),
        };
        if !offered.iter().any(|p| p == V4 || p == V5) {
            return bad_request(&format!(
                "unable to upgrade connection: none of the offered subprotocols {offered:?} is supported; use {V4}"
            ));
        }
        let resp = ws::switching_protocols(&req, V4);
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return resp;
        }
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Some(ws) = ws::accept(on).await {
                ws_session(ws, ports, connect).await;
            }
        });
        return resp;
    }
    if ws::is_spdy(&req) {
        let versions = ws::header(&req, "x-stream-protocol-version").unwrap_or("");
        if !versions
            .split(',')
            .any(|v| v.trim() == PORTFORWARD_PROTOCOL)
        {
            return failure(
                403,
                "Forbidden",
                &format!(
                    "unable to upgrade: unable to negotiate protocol: client supports [{versions}], server supports [{PORTFORWARD_PROTOCOL}]"
                ),
                None,
            );
        }
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on.await {
                let _ = crate::spdy::serve_portforward(TokioIo::new(upgraded), connect).await;
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("Connection", "Upgrade")
            .header("Upgrade", "SPDY/3.1")
            .header("X-Stream-Protocol-Version", PORTFORWARD_PROTOCOL)
            .body(Body::default())
            .expect("valid 101");
    }
    bad_request("Upgrade request required")
}

/// The `ports` query: repeatable, each value possibly comma-separated.
fn ports(ctx: &Ctx) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for v in ctx.query_all("ports") {
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => out.push(n),
                _ => return Err(format!("invalid port \"{p}\"")),
            }
        }
    }
    if out.is_empty() {
        return Err("query parameter \"ports\" is required".into());
    }
    Ok(out)
}

/// Connects to a port of `pod`: 1234 is its buildkitd; anything else is refused with
/// the message the kubelet (containerd) gives.
pub fn connector(state: Arc<State>, pod: &PodView) -> PortConnector {
    let (ns, name) = (pod.cfg.namespace.clone(), pod.cfg.name.clone());
    let sandbox: String = Sha256::digest(pod.uid.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Arc::new(move |port: u16| {
        let (state, ns, name, sandbox) = (state.clone(), ns.clone(), name.clone(), sandbox.clone());
        Box::pin(async move {
            if state.pod(&ns, &name).is_none_or(|p| p.cfg.faults.vanished) {
                return Err(format!("pod {name} not found"));
            }
            if port == BUILDKITD_PORT {
                return Ok(Box::new(state.open_buildkitd(&ns, &name)) as BoxStream);
            }
            let netns = format!("/var/run/netns/cni-{}", &sandbox[..8]);
            Err(format!(
                "error forwarding port {port} to pod {sandbox}, uid : failed to execute portforward in network namespace \"{netns}\": failed to connect to localhost:{port} inside namespace \"{sandbox}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 [::1]:{port}: connect: connection refused "
            ))
        })
    })
}

/// One WebSocket v4 port-forward session (the kubelet's framing).
async fn ws_session(ws: ws::Ws, ports: Vec<u16>, connect: PortConnector) {
    let (sink, mut incoming) = ws.split();
    let (tx, writer) = ws::spawn_writer(sink);
    for (i, port) in ports.iter().enumerate() {
        let ch = (2 * i) as u8;
        let le = port.to_le_bytes();
        let _ = tx.send(ws::frame(ch, &le)).await;
        let _ = tx.send(ws::frame(ch + 1, &le)).await;
    }
    let mut to_pod = Vec::new();
    let mut tasks = JoinSet::new();
    for (i, port) in ports.iter().enumerate() {
        let (ptx, prx) = mpsc::channel::<Bytes>(16);
        to_pod.push(Some(ptx));
        tasks.spawn(forward_port(
            (2 * i) as u8,
            *port,
            connect.clone(),
            tx.clone(),
            prx,
        ));
    }
    let mut client_gone = false;
    loop {
        tokio::select! {
            done = tasks.join_next() => if done.is_none() { break },
            msg = incoming.next() => match msg {
                Some(Ok(Message::Binary(b))) if b.len() > 1 => {
                    let ch = b[0] as usize;
                    if ch.is_multiple_of(2) {
                        if let Some(slot) = to_pod.get_mut(ch / 2) {
                            if let Some(ptx) = slot {
                                if ptx.send(b.slice(1..)).await.is_err() {
                                    *slot = None;
                                }
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    client_gone = true;
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    drop(to_pod);
    if client_gone {
        tasks.abort_all();
    } else {
        let _ = tx.send(ws::close_normal()).await;
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = incoming.next().await {}
    })
    .await;
}

/// Forward one port: data on channel `ch`, errors on `ch + 1`. Ends when the pod side
/// closes (or could not be reached).
async fn forward_port(
    ch: u8,
    port: u16,
    connect: PortConnector,
    tx: FrameTx,
    mut from_client: mpsc::Receiver<Bytes>,
) {
    let stream = match connect(port).await {
        Ok(s) => s,
        Err(msg) => {
            let _ = tx.send(ws::frame(ch + 1, msg.as_bytes())).await;
            return;
        }
    };
    let (mut r, mut w) = tokio::io::split(stream);
    let up = async move {
        while let Some(b) = from_client.recv().await {
            if w.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
        // Keep the write half alive until the pod side is done.
        std::future::pending::<()>().await
    };
    let down = async move {
        loop {
            let mut buf = BytesMut::with_capacity(CHUNK + 1);
            buf.put_u8(ch);
            match r.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(Message::Binary(buf.freeze())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = down => {}
        _ = up => {}
    }
}
