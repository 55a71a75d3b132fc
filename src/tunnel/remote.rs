//! One stream to a pod through the Kubernetes API: exec of `buildctl dial-stdio`, or
//! port-forward to buildkitd's TCP port, over a WebSocket that kube authenticates and
//! upgrades for us.
//!
//! We speak the channel protocol ourselves instead of using kube's AttachedProcess /
//! Portforwarder: those read our side in 4 KiB pieces and copy every message through
//! an extra pipe; here each WebSocket message carries up to [`FRAME`] bytes and
//! incoming payloads are handed on without a copy.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use kube::api::AttachParams;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::cluster::Cluster;

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Largest payload we put in one WebSocket message.
pub const FRAME: usize = 256 * 1024;
/// stderr we keep from an exec, for error messages.
const STDERR_KEEP: usize = 4096;

/// How to reach buildkitd inside a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// exec `buildctl dial-stdio` in the pod: in `container` when given (--container),
    /// else in the container a pod's default-container annotation names (`defaults`,
    /// pod -> container), else the server picks (a pod with one container).
    Exec {
        container: Option<String>,
        defaults: BTreeMap<String, String>,
    },
    /// port-forward to this port of the pod.
    PortForward { port: u16 },
}

impl Transport {
    pub fn describe(&self) -> String {
        match self {
            Transport::Exec {
                container: Some(c), ..
            } => format!("exec (container {c})"),
            Transport::Exec {
                container: None, ..
            } => "exec".to_string(),
            Transport::PortForward { port } => format!("port-forward to port {port}"),
        }
    }
}

/// Why a pod could not take a connection. `Display` is the user's message.
#[derive(Debug)]
pub struct DialError {
    pub pod: String,
    pub message: String,
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pod {}: {}", self.pod, self.message)
    }
}

/// Open a stream to `pod`. Fails when the API server refuses the upgrade.
pub async fn dial(
    cluster: &Cluster,
    pod: &str,
    transport: &Transport,
) -> Result<(RemoteTx, RemoteRx), DialError> {
    let base = kube::core::Request::new(format!("/api/v1/namespaces/{}/pods", cluster.namespace));
    let request = match transport {
        Transport::Exec {
            container,
            defaults,
        } => {
            let mut ap = AttachParams::default()
                .stdin(true)
                .stdout(true)
                .stderr(true);
            if let Some(c) = container.as_ref().or_else(|| defaults.get(pod)) {
                ap = ap.container(c.clone());
            }
            base.exec(pod, ["buildctl", "dial-stdio"], &ap)
        }
        Transport::PortForward { port } => base.portforward(pod, &[*port]),
    };
    let request = request.map_err(|e| DialError {
        pod: pod.into(),
        message: format!("bad request: {e}"),
    })?;
    let connect = cluster.client.connect(request);
    let limit = cluster
        .request_timeout
        .unwrap_or(std::time::Duration::from_secs(60));
    let conn = match tokio::time::timeout(limit, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(DialError {
                pod: pod.into(),
                message: explain_dial(cluster, pod, transport, e),
            })
        }
        Err(_) => {
            return Err(DialError {
                pod: pod.into(),
                message: format!(
                    "the API server did not open the {} stream within {}",
                    transport.describe(),
                    crate::cluster::humantime(limit)
                ),
            })
        }
    };
    let stream_close = conn.supports_stream_close();
    let (sink, stream) = conn.into_stream().split();
    let kind = match transport {
        Transport::Exec { .. } => Kind::Exec,
        Transport::PortForward { port } => Kind::PortForward {
            port: *port,
            seen_prefix: [false; 2],
        },
    };
    Ok((
        RemoteTx {
            sink,
            exec: matches!(transport, Transport::Exec { .. }),
            stream_close,
            closed: false,
        },
        RemoteRx {
            stream,
            kind,
            stderr: Vec::new(),
            pod: pod.to_string(),
            ended: false,
        },
    ))
}

fn explain_dial(cluster: &Cluster, pod: &str, transport: &Transport, e: kube::Error) -> String {
    let (resource, hint) = match transport {
        Transport::Exec { .. } => (
            "pods/exec",
            "grant `create` on pods/exec (see example/k8s_buildkitd/rbac.yaml), or use --tunnel port-forward",
        ),
        Transport::PortForward { .. } => (
            "pods/portforward",
            "grant `create` on pods/portforward (see example/k8s_buildkitd/rbac.yaml), or use --tunnel exec",
        ),
    };
    match &e {
        kube::Error::Api(s) if s.code == 403 => {
            format!(
                "{resource} is forbidden for this user in namespace {}: {hint} ({})",
                cluster.namespace, s.message
            )
        }
        kube::Error::Api(s) if s.code == 404 => {
            format!(
                "the pod is gone (deleted since it was listed?): {}",
                s.message
            )
        }
        kube::Error::Api(s)
            if s.code == 400
                && (s.message.contains("container name must be specified")
                    || s.message.contains("is not valid for pod")) =>
        {
            format!(
                "the API server refused the {} (400): {}; pass the buildkitd container with \
                 --container NAME",
                transport.describe(),
                s.message
            )
        }
        kube::Error::Api(s) => format!(
            "the API server refused the {} ({}): {}",
            transport.describe(),
            s.code,
            s.message
        ),
        _ => {
            let e = cluster.explain(&format!("opening {} to pod {pod}", transport.describe()), e);
            format!("{e:#}")
        }
    }
}

/// Our half that writes to the pod.
pub struct RemoteTx {
    sink: SplitSink<Ws, Message>,
    exec: bool,
    stream_close: bool,
    closed: bool,
}

impl RemoteTx {
    /// Send bytes to the pod: buildctl's stdin, or the forwarded port. `frame` holds
    /// the channel byte at [0] (0 = stdin for exec, 0 = data of the first forwarded
    /// port: the same byte either way) and the payload after it.
    pub async fn send_frame(&mut self, frame: Bytes) -> std::io::Result<()> {
        self.sink.send(Message::Binary(frame)).await.map_err(ws_io)
    }

    /// Our side is done sending. Exec v5: close stdin, the pod's buildctl sees EOF and
    /// the rest of its output still flows. Port-forward and exec v4 have no half-close:
    /// we keep the stream open and let the pod end it (see [`RemoteTx::close`]).
    pub async fn close_write(&mut self) -> std::io::Result<()> {
        if self.exec && self.stream_close && !self.closed {
            self.closed = true;
            self.sink
                .send(Message::Binary(Bytes::from_static(&[255, 0])))
                .await
                .map_err(ws_io)?;
        }
        Ok(())
    }

    /// Whether [`RemoteTx::close_write`] tells the pod we are done sending.
    pub fn has_half_close(&self) -> bool {
        self.exec && self.stream_close
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

fn ws_io(e: tokio_tungstenite::tungstenite::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, e)
}

enum Kind {
    Exec,
    /// seen_prefix: whether the data / error channel's 2-byte port prefix went by.
    PortForward {
        port: u16,
        seen_prefix: [bool; 2],
    },
}

/// What the pod sent.
#[derive(Debug)]
pub enum Event {
    /// Bytes for buildctl.
    Data(Bytes),
    /// The stream ended cleanly (exec: status Success; port-forward: closed).
    End,
    /// The stream failed; the message says why.
    Failed(String),
}

/// Our half that reads from the pod.
pub struct RemoteRx {
    stream: SplitStream<Ws>,
    kind: Kind,
    stderr: Vec<u8>,
    pod: String,
    ended: bool,
}

impl RemoteRx {
    /// The next thing the pod sent. After End or Failed, always End.
    pub async fn next(&mut self) -> Event {
        if self.ended {
            return Event::End;
        }
        let ev = self.next_inner().await;
        if !matches!(ev, Event::Data(_)) {
            self.ended = true;
        }
        ev
    }

    async fn next_inner(&mut self) -> Event {
        loop {
            let msg = match self.stream.next().await {
                None => return self.closed_without_status(),
                Some(Err(e)) => {
                    return Event::Failed(format!("stream to pod {} broke: {e}", self.pod))
                }
                Some(Ok(m)) => m,
            };
            let mut bin = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => return self.closed_without_status(),
                // Pings are answered by the WebSocket layer; text is not part of the protocol.
                _ => continue,
            };
            if bin.is_empty() {
                continue;
            }
            let channel = bin[0];
            let _ = bin.split_to(1);
            match &mut self.kind {
                Kind::Exec => match channel {
                    1 if !bin.is_empty() => return Event::Data(bin),
                    2 => {
                        let room = STDERR_KEEP.saturating_sub(self.stderr.len());
                        self.stderr.extend_from_slice(&bin[..bin.len().min(room)]);
                    }
                    3 => return self.status(&bin),
                    _ => {}
                },
                Kind::PortForward { port, seen_prefix } => {
                    let ch = channel as usize;
                    if ch > 1 {
                        continue;
                    }
                    if !seen_prefix[ch] {
                        // The first message of each channel is the port number.
                        seen_prefix[ch] = true;
                        let _ = bin.split_to(bin.len().min(2));
                    }
                    if bin.is_empty() {
                        continue;
                    }
                    if ch == 0 {
                        return Event::Data(bin);
                    }
                    let text = String::from_utf8_lossy(&bin).trim().to_string();
                    return Event::Failed(format!("port {port} of pod {}: {text}", self.pod));
                }
            }
        }
    }

    fn closed_without_status(&self) -> Event {
        match self.kind {
            Kind::Exec => Event::Failed(format!(
                "the exec stream to pod {} closed without an exit status{}",
                self.pod,
                self.stderr_suffix()
            )),
            Kind::PortForward { .. } => Event::End,
        }
    }

    fn stderr_suffix(&self) -> String {
        let s = String::from_utf8_lossy(&self.stderr);
        let s = s.trim();
        if s.is_empty() {
            String::new()
        } else {
            format!(" (stderr: {s})")
        }
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
        match code {
            Some(127) | Some(126) => Event::Failed(format!(
                "`buildctl dial-stdio` could not run in pod {} (exit {}): is buildctl installed in \
                 that container? pick the buildkitd container with --container{}",
                self.pod,
                code.unwrap_or_default(),
                self.stderr_suffix()
            )),
            Some(c) => Event::Failed(format!(
                "`buildctl dial-stdio` in pod {} exited with code {c}{}",
                self.pod,
                self.stderr_suffix()
            )),
            None => Event::Failed(format!(
                "exec in pod {} failed: {message}{}",
                self.pod,
                self.stderr_suffix()
            )),
        }
    }
}
