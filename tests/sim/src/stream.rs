//! Byte-stream types shared by the simulated API server's tunnels.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

/// Any bidirectional byte stream (a pod's buildkitd connection, an upgraded socket).
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

pub type BoxStream = Box<dyn ByteStream>;

/// Opens a connection to a port of the pod a port-forward session is for.
/// `Err(message)` is what the kubelet would report on the port's error stream
/// (for example a closed port).
pub type PortConnector = Arc<
    dyn Fn(u16) -> Pin<Box<dyn Future<Output = Result<BoxStream, String>> + Send>> + Send + Sync,
>;
