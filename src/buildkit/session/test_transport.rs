//! Tests only: run session services on a real tonic server over an in-memory duplex
//! stream and hand back a channel for the generated clients (the daemon's side).

use std::convert::Infallible;

use hyper_util::rt::TokioIo;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint, Server, Uri};

/// A running in-memory server; dropping it stops the server.
pub struct Served {
    pub channel: Channel,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve `svc` over a duplex pipe; the channel speaks to it.
pub async fn serve<S>(svc: S) -> Served
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::once(Ok::<_, std::io::Error>(theirs));
        let _ = Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await;
    });
    let slot = std::sync::Mutex::new(Some(ours));
    let channel = Endpoint::from_static("http://session.test")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let io = slot.lock().expect("slot").take();
            async move {
                io.map(TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("the in-memory stream was used already"))
            }
        }))
        .await
        .expect("connect over the duplex stream");
    Served { channel, task }
}
