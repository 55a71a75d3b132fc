//! One stream to a pod through the Kubernetes API: exec of `buildctl dial-stdio`, or
//! port-forward to buildkitd's TCP port, over a WebSocket that kube authenticates and
//! upgrades for us.
//!
//! We speak the channel protocol ourselves instead of using kube's AttachedProcess /
//! Portforwarder: those read our side in 4 KiB pieces and copy every message through
//! an extra pipe; here each WebSocket message carries up to [`FRAME`] bytes and
//! incoming payloads are handed on without a copy.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{Sink, SinkExt, Stream, StreamExt};
use hyper_util::rt::TokioIo;
use kube::api::AttachParams;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::connection::Connection;
use super::error::TunnelError;
use super::transport::{Transport, TransportKind};
use crate::cluster::Cluster;

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Largest payload we put in one WebSocket message.
pub const FRAME: usize = 256 * 1024;
/// stderr we keep from an exec, for error messages.
const STDERR_KEEP: usize = 4096;
/// How long the API server may take to open a stream when no --request-timeout is set.
const DEFAULT_OPEN_LIMIT: Duration = Duration::from_secs(60);

/// Open a stream to buildkitd in `pod`. Fails when the API server refuses the upgrade
/// or does not open it within --request-timeout (60 s without one).
pub async fn dial(
    cluster: &Cluster,
    pod: &str,
    transport: &Transport,
) -> Result<Connection, TunnelError> {
    let base = kube::core::Request::new(format!("/api/v1/namespaces/{}/pods", cluster.namespace));
    let request = match transport.kind {
        TransportKind::Exec => {
            let mut ap = AttachParams::default()
                .stdin(true)
                .stdout(true)
                .stderr(true);
            if let Some(c) = transport.container_for(pod) {
                ap = ap.container(c.clone());
            }
            base.exec(pod, ["buildctl", "dial-stdio"], &ap)
        }
        TransportKind::PortForward => base.portforward(pod, &[transport.port]),
    };
    let request = request.map_err(|e| TunnelError::Api {
        pod: pod.into(),
        message: format!(
            "pod {pod}: cannot build the {} request: {e}",
            transport.describe()
        ),
    })?;
    let connect = cluster.client.connect(request);
    let limit = cluster.request_timeout.unwrap_or(DEFAULT_OPEN_LIMIT);
    let conn = match tokio::time::timeout(limit, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(explain_dial(cluster, pod, transport, e)),
        Err(_) => {
            return Err(TunnelError::Timeout {
                pod: pod.into(),
                transport: transport.describe(),
                after: limit,
            })
        }
    };
    let stream_close = conn.supports_stream_close();
    let (sink, stream) = conn.into_stream().split();
    Ok(Connection::new(
        RemoteTx {
            sink,
            half_close: transport.kind == TransportKind::Exec && stream_close,
            closed: false,
        },
        RemoteRx {
            stream,
            kind: transport.kind,
            port: transport.port,
            seen_prefix: [false; 2],
            stderr: Vec::new(),
            pod: pod.to_string(),
            ended: false,
        },
    ))
}

fn explain_dial(
    cluster: &Cluster,
    pod: &str,
    transport: &Transport,
    e: kube::Error,
) -> TunnelError {
    let (resource, hint) = match transport.kind {
        TransportKind::Exec => (
            "pods/exec",
            "grant `create` on pods/exec (see example/k8s_buildkitd/rbac.yaml), or use --tunnel port-forward",
        ),
        TransportKind::PortForward => (
            "pods/portforward",
            "grant `create` on pods/portforward (see example/k8s_buildkitd/rbac.yaml), or use --tunnel exec",
        ),
    };
    let pod = pod.to_string();
    match e {
        kube::Error::Api(s) if s.code == 403 => TunnelError::Forbidden {
            pod,
            resource,
            namespace: cluster.namespace.clone(),
            hint,
            message: s.message,
        },
        kube::Error::Api(s) if s.code == 404 => TunnelError::PodGone {
            pod,
            message: s.message,
        },
        kube::Error::Api(s)
            if s.code == 400
                && (s.message.contains("container name must be specified")
                    || s.message.contains("is not valid for pod")) =>
        {
            TunnelError::ContainerRequired {
                pod,
                transport: transport.describe(),
                message: s.message,
            }
        }
        kube::Error::Api(s) => TunnelError::ApiStatus {
            pod,
            transport: transport.describe(),
            code: s.code,
            message: s.message,
        },
        e => {
            let what = format!("opening {} to pod {pod}", transport.describe());
            TunnelError::Api {
                message: format!("{:#}", cluster.explain(&what, e)),
                pod,
            }
        }
    }
}

/// Our half that writes to the pod.
pub struct RemoteTx {
    sink: SplitSink<Ws, Message>,
    /// exec v5: closing stdin tells buildctl we are done and its output still flows.
    half_close: bool,
    closed: bool,
}

impl RemoteTx {
    /// Send bytes to the pod: buildctl's stdin, or the forwarded port. `frame` holds
    /// the channel byte at [0] (0 = stdin for exec, 0 = data of the first forwarded
    /// port: the same byte either way) and the payload after it.
    pub async fn send_frame(&mut self, frame: Bytes) -> std::io::Result<()> {
        self.sink.send(Message::Binary(frame)).await.map_err(ws_io)
    }

    /// Ready to take one frame ([`RemoteTx::start_frame`]).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.sink).poll_ready(cx).map_err(ws_io)
    }

    /// Queue one frame (after [`RemoteTx::poll_ready`] said yes).
    pub fn start_frame(&mut self, frame: Bytes) -> std::io::Result<()> {
        Pin::new(&mut self.sink)
            .start_send(Message::Binary(frame))
            .map_err(ws_io)
    }

    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.sink).poll_flush(cx).map_err(ws_io)
    }

    /// Our side is done sending. Exec v5: close stdin, the pod's buildctl sees EOF and
    /// the rest of its output still flows. Port-forward and exec v4 have no half-close:
    /// we keep the stream open and let the pod end it (see [`RemoteTx::close`]).
    pub async fn close_write(&mut self) -> std::io::Result<()> {
        if self.half_close && !self.closed {
            self.closed = true;
            self.sink
                .send(Message::Binary(close_stdin()))
                .await
                .map_err(ws_io)?;
        }
        Ok(())
    }

    /// [`RemoteTx::close_write`], polled: Ready once the stdin close is queued and
    /// flushed (at once when the transport has no half-close).
    pub fn poll_close_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.half_close && !self.closed {
            ready!(self.poll_ready(cx))?;
            self.closed = true;
            self.start_frame(close_stdin())?;
        }
        self.poll_flush(cx)
    }

    /// Whether [`RemoteTx::close_write`] tells the pod we are done sending.
    pub fn has_half_close(&self) -> bool {
        self.half_close
    }

    /// Close the whole stream.
    pub async fn close(&mut self) {
        let _ = self
            .sink
            .send(Message::Close(Some(
                tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                },
            )))
            .await;
        let _ = self.sink.close().await;
    }
}

/// The exec v5 message that closes the pod's stdin (channel 255, stream 0).
fn close_stdin() -> Bytes {
    Bytes::from_static(&[255, 0])
}

fn ws_io(e: tokio_tungstenite::tungstenite::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, e)
}

/// What the pod sent.
#[derive(Debug)]
pub enum Event {
    /// Bytes for buildctl.
    Data(Bytes),
    /// The stream ended cleanly (exec: status Success; port-forward: closed).
    End,
    /// The stream failed; the error says why.
    Failed(TunnelError),
}

/// Our half that reads from the pod.
pub struct RemoteRx {
    stream: SplitStream<Ws>,
    kind: TransportKind,
    /// port-forward: the port, and whether the data / error channel's 2-byte port
    /// prefix went by.
    port: u16,
    seen_prefix: [bool; 2],
    stderr: Vec<u8>,
    pod: String,
    ended: bool,
}

impl RemoteRx {
    /// The next thing the pod sent. After End or Failed, always End.
    pub async fn next(&mut self) -> Event {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`RemoteRx::next`], polled.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if self.ended {
            return Poll::Ready(Event::End);
        }
        let ev = ready!(self.poll_next_inner(cx));
        if !matches!(ev, Event::Data(_)) {
            self.ended = true;
        }
        Poll::Ready(ev)
    }

    /// The pod this stream goes to.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    fn poll_next_inner(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            let msg = match ready!(Pin::new(&mut self.stream).poll_next(cx)) {
                None => return Poll::Ready(self.closed_without_status()),
                Some(Err(e)) => {
                    return Poll::Ready(Event::Failed(TunnelError::StreamBroken {
                        pod: self.pod.clone(),
                        reason: e.to_string(),
                    }))
                }
                Some(Ok(m)) => m,
            };
            let mut bin = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => return Poll::Ready(self.closed_without_status()),
                // Pings are answered by the WebSocket layer; text is not part of the protocol.
                _ => continue,
            };
            if bin.is_empty() {
                continue;
            }
            let channel = bin[0];
            let _ = bin.split_to(1);
            match self.kind {
                TransportKind::Exec => match channel {
                    1 if !bin.is_empty() => return Poll::Ready(Event::Data(bin)),
                    2 => {
                        let room = STDERR_KEEP.saturating_sub(self.stderr.len());
                        self.stderr.extend_from_slice(&bin[..bin.len().min(room)]);
                    }
                    3 => return Poll::Ready(self.status(&bin)),
                    _ => {}
                },
                TransportKind::PortForward => {
                    let ch = channel as usize;
                    if ch > 1 {
                        continue;
                    }
                    if !self.seen_prefix[ch] {
                        // The first message of each channel is the port number.
                        self.seen_prefix[ch] = true;
                        let _ = bin.split_to(bin.len().min(2));
                    }
                    if bin.is_empty() {
                        continue;
                    }
                    if ch == 0 {
                        return Poll::Ready(Event::Data(bin));
                    }
                    let text = String::from_utf8_lossy(&bin).trim().to_string();
                    return Poll::Ready(Event::Failed(TunnelError::PortForward {
                        pod: self.pod.clone(),
                        port: self.port,
                        message: text,
                    }));
                }
            }
        }
    }

    fn closed_without_status(&self) -> Event {
        match self.kind {
            TransportKind::Exec => Event::Failed(TunnelError::ClosedWithoutStatus {
                pod: self.pod.clone(),
                stderr: self.stderr_text(),
            }),
            TransportKind::PortForward => Event::End,
        }
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }

    fn status(&self, json: &[u8]) -> Event {
        let status: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
        if status["status"] == "Success" {
            return Event::End;
        }
        let code = status["details"]["causes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["reason"] == "ExitCode"))
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse::<i32>().ok());
        let message = status["message"].as_str().unwrap_or("unknown failure");
        let pod = self.pod.clone();
        let stderr = self.stderr_text();
        Event::Failed(match code {
            Some(code @ (126 | 127)) => TunnelError::BuildctlMissing { pod, code, stderr },
            Some(code) => TunnelError::Exited { pod, code, stderr },
            None => TunnelError::ExecFailed {
                pod,
                message: message.to_string(),
                stderr,
            },
        })
    }
}
