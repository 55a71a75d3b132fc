//! A tonic channel over one byte stream that already reaches buildkitd's gRPC port
//! (an exec `buildctl dial-stdio`, a port-forward, a unix socket, dockerd's upgraded
//! `/grpc`). HTTP/2 prior knowledge; the stream is used once: when the channel wants
//! to reconnect, the connector fails (a new tunnel is the caller's decision).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{Channel, Endpoint, Uri};

/// buildkitd's own limit for one gRPC message, both ways.
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// What buildkitd may send us on one stream, and on all, before our window updates.
/// Half the connection window is h2's budget for small unread DATA frames (~250
/// bytes each): 32 MiB lets about 130,000 such frames wait.
const STREAM_WINDOW: u32 = 16 << 20;
const CONNECTION_WINDOW: u32 = 64 << 20;

/// Why no channel could be made over the stream.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("HTTP/2 handshake with buildkitd failed: {0}")]
    Handshake(String),
}

/// Make a channel over `stream`. The HTTP/2 handshake runs here, so a peer that does
/// not speak HTTP/2 fails now or at the first call.
pub async fn connect<S>(stream: S) -> Result<Channel, ChannelError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    connect_watched(stream).await.map(|(ch, _)| ch)
}

/// Like `connect`, also keeping the first bytes the peer sent, so a failure can say
/// what the far end is when it is not an HTTP/2 server.
pub async fn connect_watched<S>(stream: S) -> Result<(Channel, PeerHello), ChannelError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let hello = PeerHello::default();
    let stream = Watched {
        inner: stream,
        hello: hello.clone(),
    };
    let connector = OneShotConnector {
        stream: Arc::new(Mutex::new(Some(stream))),
    };
    // The URI is never resolved: the connector hands out the stream we have.
    let endpoint = Endpoint::from_static("http://buildkitd")
        // No keep-alive pings: buildkitd answers frequent ones with GOAWAY; a dead
        // tunnel is detected by the exec / port-forward layer below us.
        //
        // Fixed, large receive windows rather than the adaptive ones: h2 (since
        // 0.4.16) closes a connection whose peer has more small DATA frames waiting
        // to be read than a budget of half the connection window allows, and the
        // session stream brings thousands of tiny frames in bursts (a REQ per file
        // of the context). With the adaptive window's 64 KiB start, ~130 unread
        // frames were enough: a moment's lag in our relay under load and the whole
        // control connection went (`too_many_data_frames`). See the test below.
        .http2_adaptive_window(false)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .tcp_nodelay(true);
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| ChannelError::Handshake(error_chain(&e)))?;
    Ok((channel, hello))
}

/// The first bytes a peer sent (up to 32).
#[derive(Debug, Clone, Default)]
pub struct PeerHello(Arc<Mutex<Vec<u8>>>);

/// An HTTP/2 server's first frame is SETTINGS: type 4 at byte 3, stream 0.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl PeerHello {
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().expect("hello lock").clone()
    }

    /// What the first bytes say about the peer, when they say it is not HTTP/2.
    pub fn diagnosis(&self) -> Option<String> {
        let b = self.bytes();
        if b.is_empty() {
            return Some("it sent nothing back".to_string());
        }
        if b.starts_with(H2_PREFACE) {
            return Some("it echoed our HTTP/2 preface back (not a gRPC server)".to_string());
        }
        if b.len() >= 4 && b[3] == 4 {
            return None; // a SETTINGS frame: HTTP/2 indeed
        }
        let shown: String = b
            .iter()
            .take(16)
            .map(|&c| {
                if (0x20..0x7f).contains(&c) {
                    c as char
                } else {
                    '.'
                }
            })
            .collect();
        Some(format!(
            "it answered with bytes that are not HTTP/2 ({shown:?})"
        ))
    }
}

/// A stream that keeps the first bytes read from it.
struct Watched<S> {
    inner: S,
    hello: PeerHello,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let mut kept = self.hello.0.lock().expect("hello lock");
            if kept.len() < 32 {
                let new = &buf.filled()[before..];
                let room = 32 - kept.len();
                kept.extend_from_slice(&new[..new.len().min(room)]);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Hands out its stream once; every later connect (a reconnect) fails.
#[derive(Clone)]
struct OneShotConnector<S> {
    stream: Arc<Mutex<Option<S>>>,
}

impl<S> tower::Service<Uri> for OneShotConnector<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Response = TokioIo<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let taken = self.stream.lock().expect("connector lock").take();
        Box::pin(async move {
            taken.map(TokioIo::new).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the connection to buildkitd was lost (a channel does not reconnect)",
                )
            })
        })
    }
}

/// An error and its sources on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    append_sources(&mut text, e.source());
    text
}

/// Append each cause from `source` down that `text` does not already say.
pub fn append_sources(text: &mut String, mut source: Option<&(dyn std::error::Error + 'static)>) {
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;
