//! WebSocket plumbing shared by exec and port-forward: the handshake answer, the
//! upgraded stream, and a writer task that batches frames before flushing.

use futures::stream::SplitSink;
use futures::SinkExt;
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::status::{bad_request, Body, Resp};

pub type Ws = WebSocketStream<TokioIo<Upgraded>>;

pub fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// An RFC 6455 upgrade request.
pub fn is_websocket(req: &Request<Incoming>) -> bool {
    has_token(header(req, "upgrade"), "websocket")
        && has_token(header(req, "connection"), "upgrade")
}

/// An SPDY/3.1 upgrade request (kubectl's fallback).
pub fn is_spdy(req: &Request<Incoming>) -> bool {
    header(req, "upgrade").is_some_and(|v| v.trim().to_ascii_uppercase().starts_with("SPDY/3.1"))
}

/// The subprotocols the client offered, in its order.
pub fn offered_protocols(req: &Request<Incoming>) -> Vec<String> {
    req.headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The 101 answer to a WebSocket upgrade choosing `protocol` (a 400 without a key).
pub fn switching_protocols(req: &Request<Incoming>, protocol: &str) -> Resp {
    let Some(key) = header(req, "sec-websocket-key") else {
        return bad_request("missing Sec-WebSocket-Key header");
    };
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header(
            "Sec-WebSocket-Accept",
            derive_accept_key(key.trim().as_bytes()),
        )
        .header("Sec-WebSocket-Protocol", protocol)
        .body(Body::default())
        .expect("valid 101")
}

/// Wait for hyper to hand over the upgraded connection, as a server WebSocket.
pub async fn accept(on: OnUpgrade) -> Option<Ws> {
    let upgraded = on.await.ok()?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(64 << 20));
    Some(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await)
}

/// Sends frames for a session; many senders, one writer task.
pub type FrameTx = mpsc::Sender<Message>;

/// Spawn the writer task: it feeds frames and flushes when none are waiting.
/// Finishes when every sender is gone or the connection fails.
pub fn spawn_writer(mut sink: SplitSink<Ws, Message>) -> (FrameTx, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Message>(32);
    let task = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    (tx, task)
}

/// A binary frame `[channel, data...]`.
pub fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::binary(v)
}

/// The normal closure (code 1000) kubectl and kube-rs expect at the end.
pub fn close_normal() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}
