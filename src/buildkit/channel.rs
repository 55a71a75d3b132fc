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
    let connector = OneShotConnector {
        stream: Arc::new(Mutex::new(Some(stream))),
    };
    // The URI is never resolved: the connector hands out the stream we have.
    let endpoint = Endpoint::from_static("http://buildkitd")
        // No keep-alive pings: buildkitd answers frequent ones with GOAWAY; a dead
        // tunnel is detected by the exec / port-forward layer below us.
        .http2_adaptive_window(true)
        .tcp_nodelay(true);
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| ChannelError::Handshake(error_chain(&e)))
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
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
