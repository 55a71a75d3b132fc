//! Tunnels: a local endpoint whose every connection becomes one stream to a buildkitd
//! pod through the Kubernetes API (exec `buildctl dial-stdio` or port-forward).
//!
//! Transport never knows about hashing: it is handed the fallback order.

//! Tunnels: byte streams to a buildkitd pod through the Kubernetes API (exec of
//! `buildctl dial-stdio`, or port-forward to buildkitd's TCP port).
//!
//! Transport never knows about hashing: it is handed the fallback order.
//!
//! Three ways in, from the lowest:
//!
//! - [`dial`]`(cluster, pod, transport)`: one stream to ONE named pod, as a
//!   [`Connection`] (tokio `AsyncRead + AsyncWrite + Unpin + Send + 'static`), or a
//!   typed [`TunnelError`] naming the pod and the fix.
//! - [`Failover`]: the walk over a selection's fallback order (cut to
//!   `max_failover + 1`, failed pods passed over). [`Failover::connect`] dials each
//!   candidate in turn and hands the stream to the caller's probe; the first pod whose
//!   probe succeeds wins, every pod passed over is recorded as an [`AttemptFailure`]
//!   (pod + reason). A client that speaks BuildKit's gRPC itself does:
//!
//!   ```text
//!   let failover = tunnel::failover_for(&cluster, &selection, &options)?;
//!   let reached = failover
//!       .connect(|pod, conn| async move { grpc_handshake(conn).await }, |_, _| {})
//!       .await?; // Unreachable<E>: every (pod, reason)
//!   ```
//! - [`open`]: a local endpoint (private unix socket, or 127.0.0.1:PORT) for a tool
//!   that needs a BUILDKIT_HOST (buildctl, `tunnel -- COMMAND`): each connection to it
//!   is relayed to a pod of the same walk, failing over until the pod has answered.

pub mod connection;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod failover;
mod relay;
pub mod remote;
pub mod transport;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use tokio::task::JoinSet;

use crate::cluster::Cluster;
use crate::selection::Selection;
pub use connection::{tunnel_error, Connection};
pub use endpoint::{parse_listen, Listen};
pub use error::TunnelError;
pub use events::{Reporter, TunnelEvent};
pub use failover::{AttemptFailure, Failover, Reached, Unreachable};
pub use remote::dial;
pub use transport::{Transport, TransportKind};

/// How to reach the chosen pod: the tunnel flags as plain values.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    pub kind: TransportKind,
    /// buildkitd's TCP port in the pod, for port-forward.
    pub remote_port: u16,
    /// The container to exec in; None: each pod's default-container annotation, else
    /// the server's choice.
    pub container: Option<String>,
    /// How many pods after the first choice a connection may move to.
    pub max_failover: usize,
}

/// The transport for a selection's pods: `--container`, else each pod's
/// default-container annotation (the `DEFAULT_CONTAINER_ANNOTATION`), as kubectl exec
/// reads it (sidecar injectors set it on pods with several containers).
pub fn transport_for(sel: &Selection, options: &TunnelOptions) -> Result<Transport> {
    if let Some(c) = &options.container {
        crate::names::check_container(c)?;
    }
    match options.kind {
        TransportKind::Exec => {
            let mut transport = Transport::exec(options.container.clone());
            if options.container.is_none() {
                transport.defaults = sel
                    .pods
                    .iter()
                    .filter(|p| p.containers.len() > 1)
                    .filter_map(|p| Some((p.name.clone(), p.default_container.clone()?)))
                    .collect();
            }
            Ok(transport)
        }
        TransportKind::PortForward => {
            if options.remote_port == 0 {
                bail!("--remote-port 0 is not a port: give buildkitd's TCP port in the pod (default 1234)");
            }
            Ok(Transport::port_forward(options.remote_port))
        }
    }
}

/// The failover walk over a selection's fallback order, for a client that dials.
pub fn failover_for(
    cluster: &Cluster,
    sel: &Selection,
    options: &TunnelOptions,
) -> Result<Failover> {
    let transport = transport_for(sel, options)?;
    Ok(Failover::new(
        cluster.clone(),
        transport,
        sel.order.clone(),
        options.max_failover,
    ))
}

/// A local endpoint relaying to the selection's pods: what `build` (buildctl) and
/// `tunnel` share. What happens in it goes to `report`.
pub async fn open(
    cluster: &Cluster,
    sel: &Selection,
    options: &TunnelOptions,
    listen: &Listen,
    report: Reporter,
) -> Result<Tunnel> {
    let failover = failover_for(cluster, sel, options)?;
    Tunnel::start(failover, listen, report).await
}

/// State shared by a tunnel's connections: the walk, and what failed.
struct TunnelShared {
    failover: Failover,
    failures: Mutex<Vec<Unreachable>>,
    report: Reporter,
}

/// A running tunnel. `close` (or drop) stops it and removes the local endpoint.
pub struct Tunnel {
    address: String,
    shared: Arc<TunnelShared>,
    accept: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<JoinSet<()>>>,
    _endpoint_guard: Arc<endpoint::Endpoint>,
}

impl Tunnel {
    /// Bind the local endpoint and start accepting; each connection walks `failover`.
    pub async fn start(failover: Failover, listen: &Listen, report: Reporter) -> Result<Tunnel> {
        let endpoint = Arc::new(endpoint::Endpoint::bind(listen).await?);
        let shared = Arc::new(TunnelShared {
            failover,
            failures: Mutex::new(Vec::new()),
            report,
        });
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let accept = tokio::spawn(accept_loop(
            endpoint.clone(),
            shared.clone(),
            connections.clone(),
        ));
        Ok(Tunnel {
            address: endpoint.address.clone(),
            shared,
            accept,
            connections,
            _endpoint_guard: endpoint,
        })
    }

    /// The address for buildctl: unix:///... or tcp://127.0.0.1:PORT.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Pods that served at least one connection, in first-served order.
    pub fn served(&self) -> Vec<String> {
        self.shared.failover.served()
    }

    /// Why connections could not reach any pod (one each).
    pub fn failures(&self) -> Vec<Unreachable> {
        self.shared.failures.lock().expect("lock").clone()
    }

    /// Stop accepting, end every connection, remove the endpoint.
    pub async fn close(mut self) {
        self.accept.abort();
        let _ = (&mut self.accept).await;
        let mut set = std::mem::take(&mut *self.connections.lock().expect("lock"));
        set.shutdown().await;
        // The endpoint guard drops here (the accept loop's clone is gone): socket removed.
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut set) = self.connections.lock() {
            set.abort_all();
        }
    }
}

async fn accept_loop(
    endpoint: Arc<endpoint::Endpoint>,
    shared: Arc<TunnelShared>,
    connections: Arc<Mutex<JoinSet<()>>>,
) {
    let ids = AtomicU64::new(0);
    loop {
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let accepted = match &endpoint.listener {
            #[cfg(unix)]
            endpoint::Listener::Unix(l) => l.accept().await.map(|(s, _)| {
                let fut: std::pin::Pin<
                    Box<dyn std::future::Future<Output = relay::Outcome> + Send>,
                > = Box::pin(relay::serve(s, shared.clone(), id));
                fut
            }),
            endpoint::Listener::Tcp(l) => l.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                let fut: std::pin::Pin<
                    Box<dyn std::future::Future<Output = relay::Outcome> + Send>,
                > = Box::pin(relay::serve(s, shared.clone(), id));
                fut
            }),
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) => {
                (shared.report)(TunnelEvent::AcceptFailed {
                    error: e.to_string(),
                });
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut set = connections.lock().expect("lock");
        // Reap finished connections so the set does not grow with a long-lived tunnel.
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            match conn.await {
                relay::Outcome::Served { pod, up, down } => {
                    (shared.report)(TunnelEvent::Served {
                        conn: id,
                        pod,
                        up,
                        down,
                    });
                }
                relay::Outcome::Unreachable(why) => {
                    (shared.report)(TunnelEvent::Unreachable {
                        conn: id,
                        why: why.clone(),
                    });
                    shared.failures.lock().expect("lock").push(why);
                }
            }
        });
    }
}
