//! A simulated pod backed by a real BuildKit: one connection to the pod's buildkitd
//! (from `buildctl dial-stdio` under exec, port-forward to 1234, or the pod's own TCP
//! listener) bridged to a dockerd's BuildKit (`POST /grpc`, h2c), bytes moved as they
//! come, with the pod's usual counters so a test can tell which pod served a real
//! build and how many bytes crossed.
//!
//! Like `buildctl dial-stdio`: the client's EOF half-closes the daemon side; the
//! daemon's end (it closed, or failed) ends the connection.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::buildkitd::Counters;

const CHUNK: usize = 256 * 1024;

/// Serve one pod connection by bridging it to the BuildKit of the dockerd at `socket`.
pub async fn serve<S>(stream: S, socket: PathBuf, counters: Arc<Counters>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    counters.connections.fetch_add(1, Ordering::SeqCst);
    counters.active.fetch_add(1, Ordering::SeqCst);
    let result = bridge(stream, &socket, &counters).await;
    counters.active.fetch_sub(1, Ordering::SeqCst);
    result
}

async fn bridge<S>(stream: S, socket: &std::path::Path, counters: &Counters) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let daemon = super::dial_buildkit_at(socket).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("real buildkitd (dockerd at {}): {e}", socket.display()),
        )
    })?;
    let (mut client_r, mut client_w) = tokio::io::split(stream);
    let (mut daemon_r, mut daemon_w) = daemon.into_split();
    let up = pump(&mut client_r, &mut daemon_w, &counters.bytes_in);
    let down = pump(&mut daemon_r, &mut client_w, &counters.bytes_out);
    tokio::pin!(up, down);
    tokio::select! {
        r = &mut down => r,
        r = &mut up => {
            r?;
            down.await
        }
    }
}

/// Copy until EOF, counting, then half-close the writer.
async fn pump<R, W>(r: &mut R, w: &mut W, counter: &AtomicU64) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            let _ = w.shutdown().await;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
}
