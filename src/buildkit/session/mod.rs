//! The session: inside `Control.Session` the daemon is the HTTP/2 client and we serve
//! gRPC to it (filesync, filesend, secrets, ssh, auth, health).
//!
//! `Control.Session` is a bidi stream of BytesMessage whose payloads, chunked
//! arbitrarily, carry a raw HTTP/2 connection. We pump those bytes both ways through
//! an in-memory duplex and run a tonic server (prior-knowledge h2c) on its far end.
//! The services we serve are announced in the call's metadata, one
//! `x-docker-expose-session-grpc-method` per method, fixed when the stream starts.

pub mod auth;
mod export_sink;
pub mod filesend;
pub mod filesync;
pub mod health;
pub mod secrets;
pub mod ssh;
#[cfg(test)]
pub mod test_transport;

use std::convert::Infallible;

use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::BytesMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::Channel;

use super::channel::MAX_MESSAGE_SIZE;

/// Bytes per BytesMessage we send (the daemon accepts up to its message limit);
/// small, like fsutil's chunks, so what waits in the queues stays small.
const SESSION_CHUNK: usize = 64 * 1024;
/// What the daemon may send us on one session stream, and on all of them, before
/// waiting for our window updates.
const SESSION_STREAM_WINDOW: u32 = 16 << 20;
const SESSION_CONNECTION_WINDOW: u32 = 32 << 20;

/// The methods each service we may serve exposes, as the daemon looks them up.
/// Like the Go client, every method of a registered service is announced.
pub fn methods_of(service: &str) -> &'static [&'static str] {
    match service {
        "moby.filesync.v1.FileSync" => &["DiffCopy", "TarStream"],
        "moby.filesync.v1.FileSend" => &["DiffCopy"],
        "moby.filesync.v1.Auth" => &[
            "Credentials",
            "FetchToken",
            "GetTokenAuthority",
            "VerifyTokenAuthority",
        ],
        "moby.buildkit.secrets.v1.Secrets" => &["GetSecret"],
        "moby.sshforward.v1.SSH" => &["CheckAgent", "ForwardAgent"],
        "grpc.health.v1.Health" => &["Check", "List", "Watch"],
        "moby.upload.v1.Upload" => &["Pull"],
        _ => &[],
    }
}

/// The services of one session and the method list announcing them. Health is
/// always there.
#[derive(Clone)]
pub struct SessionRoutes {
    routes: Routes,
    methods: Vec<String>,
}

impl Default for SessionRoutes {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionRoutes {
    pub fn new() -> SessionRoutes {
        SessionRoutes {
            routes: Routes::default(),
            methods: Vec::new(),
        }
        .with_service(
            bollard_buildkit_proto::health::health_server::HealthServer::new(health::HealthService),
        )
    }

    /// Serve one generated tonic server (e.g. `FileSyncServer::new(svc)`).
    pub fn with_service<S>(mut self, svc: S) -> SessionRoutes
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        for m in methods_of(S::NAME) {
            let full = format!("/{}/{m}", S::NAME);
            if !self.methods.contains(&full) {
                self.methods.push(full);
            }
        }
        self.routes = self.routes.add_service(svc);
        self
    }

    /// The method list, in the order services were added.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }
}

/// Aborts a service's task when the daemon drops the response stream it feeds
/// (the task would otherwise go on copying for nobody).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How the session introduces itself.
#[derive(Debug, Clone)]
pub struct SessionIdentity {
    /// = the SolveRequest's `session`.
    pub id: String,
    /// Keys the daemon's kept copy of our directories: stable per context and machine.
    pub shared_key: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the daemon refused the session: {0}")]
    Refused(tonic::Status),
    #[error("bad session metadata: {0}")]
    Metadata(String),
}

/// A running session; dropping it (or `close`) ends the stream and its tasks.
pub struct Session {
    tasks: Vec<JoinHandle<()>>,
}

impl Session {
    /// Open `Control.Session` on `channel` and serve `routes` inside it. Returns once
    /// the call is started; the daemon may take a moment to answer it.
    pub async fn start(
        channel: Channel,
        identity: &SessionIdentity,
        routes: SessionRoutes,
    ) -> Result<Session, SessionError> {
        let (out_tx, out_rx) = mpsc::channel::<BytesMessage>(8);
        let mut request = tonic::Request::new(ReceiverStream::new(out_rx));
        let md = request.metadata_mut();
        let value = |s: &str| {
            s.parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
                .map_err(|_| SessionError::Metadata(format!("{s:?} is not a header value")))
        };
        md.insert("x-docker-expose-session-uuid", value(&identity.id)?);
        md.insert(
            "x-docker-expose-session-sharedkey",
            value(&identity.shared_key)?,
        );
        md.insert("x-docker-expose-session-name", value(&identity.name)?);
        for m in routes.methods() {
            md.append("x-docker-expose-session-grpc-method", value(m)?);
        }

        let (ours, mut theirs) = tokio::io::duplex(4 * SESSION_CHUNK);
        let server = tokio::spawn(async move {
            let incoming = tokio_stream::once(Ok::<_, std::io::Error>(ours));
            // Windows far above h2's 64 KiB default: with the default, a context of
            // thousands of files had BuildKit v0.8 queue REQs for them faster than the
            // window let through, and its session connection broke mid-transfer
            // (`walker is closed: context canceled`).
            let result = tonic::transport::Server::builder()
                .initial_stream_window_size(Some(SESSION_STREAM_WINDOW))
                .initial_connection_window_size(Some(SESSION_CONNECTION_WINDOW))
                .add_routes(routes.routes.prepare())
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = result {
                crate::log::debug(1, format!("session server ended: {e}"));
            }
        });

        let mut control = ControlClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let call = tokio::spawn(async move {
            let mut inbound = match control.session(request).await {
                Ok(resp) => resp.into_inner(),
                Err(status) => {
                    crate::log::debug(1, format!("Control.Session failed: {status}"));
                    return;
                }
            };
            let (mut read_half, mut write_half) = tokio::io::split(&mut theirs);
            let to_server = async {
                while let Some(msg) = inbound.next().await {
                    match msg {
                        Ok(m) => {
                            if write_half.write_all(&m.data).await.is_err() {
                                break;
                            }
                        }
                        Err(status) => {
                            crate::log::debug(2, format!("session stream ended: {status}"));
                            break;
                        }
                    }
                }
                let _ = write_half.shutdown().await;
            };
            let from_server = async {
                let mut buf = vec![0u8; SESSION_CHUNK];
                loop {
                    match read_half.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let msg = BytesMessage {
                                data: buf[..n].to_vec(),
                            };
                            if out_tx.send(msg).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            };
            // Either direction ending ends the session.
            tokio::select! {
                _ = to_server => {}
                _ = from_server => {}
            }
        });
        Ok(Session {
            tasks: vec![call, server],
        })
    }

    /// End the session: our half of the stream closes and the tasks stop.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}
