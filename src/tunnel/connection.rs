//! [`Connection`]: one owned byte stream to a pod's buildkitd, exec or port-forward
//! alike, as tokio `AsyncRead + AsyncWrite`. What a client that speaks BuildKit's gRPC
//! itself runs over; it only knows it has a byte stream.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::TunnelError;
use super::remote::{Event, RemoteRx, RemoteTx, FRAME};

/// One stream to buildkitd in one pod, from [`super::dial`].
///
/// - Reading yields what buildkitd sent; a clean end of the stream is EOF. A failure
///   (buildctl exited, the port refused, the WebSocket broke) is an `io::Error` whose
///   inner error is the [`TunnelError`] (see [`tunnel_error`]); after it, EOF.
/// - Writing sends to buildkitd in WebSocket messages of up to 256 KiB; call `flush`
///   (tonic and h2 do) for the bytes to leave.
/// - `shutdown` tells the pod we are done sending where the transport can (exec over
///   the v5 protocol closes buildctl's stdin; its output keeps flowing). Port-forward
///   and exec v4 have no half-close: the pod is told when the Connection is dropped.
/// - Dropping it closes the stream.
pub struct Connection {
    tx: RemoteTx,
    rx: RemoteRx,
    /// What the pod sent that the reader has not taken yet.
    pending: Bytes,
    write_shut: bool,
}

impl Connection {
    pub(super) fn new(tx: RemoteTx, rx: RemoteRx) -> Connection {
        Connection {
            tx,
            rx,
            pending: Bytes::new(),
            write_shut: false,
        }
    }

    /// The pod at the other end.
    pub fn pod(&self) -> &str {
        self.rx.pod()
    }

    /// The two halves, for a relay that moves whole WebSocket frames (no copy).
    pub fn into_parts(self) -> (RemoteTx, RemoteRx) {
        (self.tx, self.rx)
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("pod", &self.pod())
            .field("half_close", &self.tx.has_half_close())
            .finish_non_exhaustive()
    }
}

/// The tunnel failure inside an `io::Error` from a [`Connection`], if that is what it is.
pub fn tunnel_error(e: &io::Error) -> Option<&TunnelError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<TunnelError>())
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.pending.is_empty() {
            match ready!(this.rx.poll_next(cx)) {
                Event::Data(b) => this.pending = b,
                Event::End => return Poll::Ready(Ok(())),
                Event::Failed(e) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_shut {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.tx.poll_ready(cx))?;
        let n = data.len().min(FRAME);
        let mut frame = BytesMut::with_capacity(n + 1);
        // Channel 0: exec's stdin, or the forwarded port's data.
        frame.put_u8(0);
        frame.extend_from_slice(&data[..n]);
        this.tx.start_frame(frame.freeze())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().tx.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.tx.poll_close_write(cx))?;
        this.write_shut = true;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_stream<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>() {}

    #[test]
    fn a_connection_is_an_owned_byte_stream() {
        assert_stream::<Connection>();
    }

    #[test]
    fn the_tunnel_error_survives_io() {
        let e = io::Error::other(TunnelError::NoAnswer { pod: "p".into() });
        assert_eq!(tunnel_error(&e).map(TunnelError::pod), Some("p"));
        assert!(tunnel_error(&io::Error::other("x")).is_none());
    }
}
