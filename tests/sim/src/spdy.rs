//! kubectl's port-forward over SPDY/3.1 (placeholder; being written).
use crate::stream::PortConnector;
use tokio::io::{AsyncRead, AsyncWrite};

/// Serve a port-forward SPDY/3.1 session on a raw upgraded connection.
pub async fn serve_portforward<IO>(_io: IO, _connect: PortConnector) -> std::io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Err(std::io::Error::other("SPDY port-forward not written yet"))
}
