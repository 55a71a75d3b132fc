//! `pods/{name}/exec` over WebSocket (v5.channel.k8s.io, v4.channel.k8s.io), as the
//! apiserver and kubelet answer it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::Request;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::auth::{self, Attributes};
use crate::programs::{self, Program};
use crate::server::Ctx;
use crate::state::{PodView, State, DUPLEX_BUFFER};
use crate::status::{bad_request, exit_status, not_found, Resp};
use crate::ws::{self, FrameTx};

/// Largest stdout/stderr payload per frame.
const CHUNK: usize = 64 * 1024;

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

struct ExecRequest {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    v5: bool,
    pod: PodView,
}

fn flag(ctx: &Ctx, name: &str) -> bool {
    ctx.query_all(name)
        .last()
        .is_some_and(|v| v == "true" || v == "1")
}

/// Validate an exec request and answer it: a Status error, or 101 and a session.
pub fn handle(mut req: Request<Incoming>, ctx: &Ctx, ns: &str, name: &str) -> Resp {
    let a = Attributes {
        verb: "create",
        resource: "pods/exec",
        namespace: Some(ns),
        name: Some(name),
    };
    if let Some(r) = auth::refusal(&ctx.user, &a) {
        return r;
    }
    let faults = ctx.state.faults();
    // Server-wide, like RBAC: refused before the pod is looked up.
    if faults.exec_forbidden {
        return auth::forbidden(&ctx.user.name, &a);
    }
    let Some(pod) = ctx.state.pod(ns, name).filter(|p| !p.cfg.faults.vanished) else {
        return not_found("pods", name);
    };
    if pod.cfg.faults.exec_forbidden {
        return auth::forbidden(&ctx.user.name, &a);
    }
    let command = ctx.query_all("command");
    if command.is_empty() {
        return bad_request("you must specify at least 1 command");
    }
    let (stdin, stdout, stderr) = (flag(ctx, "stdin"), flag(ctx, "stdout"), flag(ctx, "stderr"));
    if !(stdin || stdout || stderr) {
        return bad_request("you must specify at least one of stdin, stdout, stderr");
    }
    if let Some(message) = container_error(ctx, &pod) {
        return bad_request(&message);
    }
    match pod.cfg.phase.as_str() {
        "Running" => {}
        "Succeeded" | "Failed" => {
            return bad_request(&format!(
                "cannot exec into a container in a completed pod; current phase is {}",
                pod.cfg.phase
            ))
        }
        other => {
            return bad_request(&format!(
                "unable to upgrade connection: pod {name} is not running; current phase is {other}"
            ))
        }
    }
    if ws::is_spdy(&req) && !ws::is_websocket(&req) {
        return bad_request(
            "SPDY/3.1 exec is not served by the simulated cluster: use the WebSocket protocol v5.channel.k8s.io",
        );
    }
    if !ws::is_websocket(&req) {
        return bad_request("Upgrade request required");
    }
    let offered = ws::offered_protocols(&req);
    let served = served_protocols(&faults.exec_protocols);
    let Some(protocol) = served
        .iter()
        .copied()
        .find(|s| offered.iter().any(|p| p == s))
    else {
        return bad_request(&format!(
            "unable to upgrade connection: none of the offered subprotocols {offered:?} is supported; the server supports {served:?}"
        ));
    };
    let resp = ws::switching_protocols(&req, protocol);
    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return resp;
    }
    let exec = ExecRequest {
        command,
        stdin,
        stdout,
        stderr,
        v5: protocol == V5,
        pod,
    };
    let on = hyper::upgrade::on(&mut req);
    let state = ctx.state.clone();
    tokio::spawn(async move {
        if let Some(ws) = ws::accept(on).await {
            session(ws, exec, state).await;
        }
    });
    resp
}

/// The exec subprotocols served, preferred first: v5 then v4, limited to `only` (the
/// `exec_protocols` fault) when that is not empty.
fn served_protocols(only: &[String]) -> Vec<&'static str> {
    [V5, V4]
        .into_iter()
        .filter(|p| only.is_empty() || only.iter().any(|o| o.trim() == *p))
        .collect()
}

/// Why the `container` parameter does not fit the pod, if it does not.
fn container_error(ctx: &Ctx, pod: &PodView) -> Option<String> {
    let name = pod.cfg.name.as_str();
    match ctx.query_all("container").last() {
        Some(c) if !c.is_empty() => (!pod.cfg.containers.iter().any(|x| x == c))
            .then(|| format!("container {c} is not valid for pod {name}")),
        _ if pod.cfg.containers.len() > 1 => Some(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            pod.cfg.containers.join(" ")
        )),
        _ if pod.cfg.containers.is_empty() => Some(format!("pod {name} has no containers")),
        _ => None,
    }
}

/// Where the session sends one output channel.
#[derive(Clone)]
struct Out {
    tx: FrameTx,
    channel: u8,
    enabled: bool,
}

impl Out {
    async fn write(&self, data: &[u8]) {
        if self.enabled && !data.is_empty() {
            let _ = self.tx.send(ws::frame(self.channel, data)).await;
        }
    }

    /// Copy `r` to this channel until EOF, one frame per read, without extra copies.
    async fn pump<R: AsyncRead + Unpin>(&self, mut r: R) -> std::io::Result<()> {
        loop {
            let mut buf = BytesMut::with_capacity(CHUNK + 1);
            buf.put_u8(self.channel);
            if r.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
            if self.enabled && self.tx.send(Message::Binary(buf.freeze())).await.is_err() {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
        }
    }
}

type StdinWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Start the program: its stdin (if it reads one) and the task yielding its exit code.
fn launch(
    req: &ExecRequest,
    state: &Arc<State>,
    stdout: Out,
    stderr: Out,
) -> (Option<StdinWriter>, JoinHandle<i32>) {
    let cfg = &req.pod.cfg;
    match programs::resolve(&req.command, cfg, &req.pod.uid) {
        Program::DialStdio => {
            let (ours, theirs) = tokio::io::duplex(DUPLEX_BUFFER);
            let served = state.serve_buildkitd(&cfg.namespace, &cfg.name, theirs);
            let (r, w) = tokio::io::split(ours);
            let task = tokio::spawn(async move {
                let pumped = stdout.pump(r).await;
                match served.await {
                    Ok(Err(e)) => {
                        let msg =
                            format!("buildctl: dial-stdio: connection to buildkitd lost: {e}\n");
                        stderr.write(msg.as_bytes()).await;
                        1
                    }
                    _ if pumped.is_err() => 1,
                    _ => 0,
                }
            });
            (Some(Box::new(w)), task)
        }
        Program::Cat => {
            let (w, r) = tokio::io::duplex(DUPLEX_BUFFER);
            let task = tokio::spawn(async move {
                let _ = stdout.pump(r).await;
                0
            });
            (Some(Box::new(w)), task)
        }
        Program::Fixed {
            stdout: out,
            stderr: err,
            code,
        } => {
            let task = tokio::spawn(async move {
                stdout.write(out.as_bytes()).await;
                stderr.write(err.as_bytes()).await;
                code
            });
            (None, task)
        }
    }
}

/// Run one exec session on an upgraded WebSocket.
async fn session(ws: ws::Ws, req: ExecRequest, state: Arc<State>) {
    let (sink, mut incoming) = ws.split();
    let (tx, writer) = ws::spawn_writer(sink);
    // Like the apiserver: an empty stdout frame right after the upgrade.
    let _ = tx.send(Message::binary(vec![1u8])).await;
    let stdout = Out {
        tx: tx.clone(),
        channel: 1,
        enabled: req.stdout,
    };
    let stderr = Out {
        tx: tx.clone(),
        channel: 2,
        enabled: req.stderr,
    };
    let (stdin, mut task) = launch(&req, &state, stdout, stderr);
    let mut stdin = if req.stdin { stdin } else { None };
    let code = loop {
        tokio::select! {
            done = &mut task => break Some(done.unwrap_or(1)),
            msg = incoming.next() => match msg {
                Some(Ok(Message::Binary(b))) => match b.first() {
                    Some(0) => {
                        if let Some(w) = stdin.as_mut() {
                            if w.write_all(&b[1..]).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    Some(255) if req.v5 && b.get(1) == Some(&0) => {
                        if let Some(mut w) = stdin.take() {
                            let _ = w.shutdown().await;
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                Some(Ok(_)) => {}
            }
        }
    };
    drop(stdin);
    match code {
        Some(code) => {
            let mut status = vec![3u8];
            status.extend(serde_json::to_vec(&exit_status(&req.command, code)).expect("json"));
            let _ = tx.send(Message::binary(status)).await;
            let _ = tx.send(ws::close_normal()).await;
        }
        None => task.abort(),
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    // Read until the client answers the close (bounded).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = incoming.next().await {}
    })
    .await;
}
