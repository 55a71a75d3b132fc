//! Tunnels: a local endpoint whose every connection becomes one stream to a buildkitd
//! pod through the Kubernetes API (exec `buildctl dial-stdio` or port-forward).
//!
//! Transport never knows about hashing: it is handed the fallback order.

pub mod endpoint;
pub mod relay;
pub mod remote;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::task::JoinSet;

use crate::cluster::Cluster;
pub use endpoint::{parse_listen, Listen};
pub use remote::Transport;

/// State shared by a tunnel's connections: which pods to try, which failed.
pub struct TunnelShared {
    pub cluster: Cluster,
    pub transport: Transport,
    /// Pods we may use, first choice first (fallback order cut to --max-failover + 1).
    candidates: Vec<String>,
    bad: Mutex<HashSet<String>>,
    served: Mutex<Vec<String>>,
    failures: Mutex<Vec<String>>,
    /// Warn on stderr when a connection reaches no pod (else the caller reports).
    warn_unreachable: bool,
}

impl TunnelShared {
    /// The pod to try after `previous` (None: the first). Pods that already failed in
    /// this tunnel are skipped, unless nothing else is left for a first attempt.
    fn next_candidate(&self, previous: Option<&str>) -> Option<String> {
        let start = match previous {
            None => 0,
            Some(p) => self.candidates.iter().position(|c| c == p).map(|i| i + 1)?,
        };
        let rest = &self.candidates[start.min(self.candidates.len())..];
        let bad = self.bad.lock().expect("lock");
        rest.iter()
            .find(|p| !bad.contains(*p))
            .or(if previous.is_none() {
                rest.first()
            } else {
                None
            })
            .cloned()
    }

    fn mark_bad(&self, pod: &str) {
        self.bad.lock().expect("lock").insert(pod.to_string());
    }

    fn mark_served(&self, pod: &str) {
        let mut s = self.served.lock().expect("lock");
        if !s.iter().any(|p| p == pod) {
            s.push(pod.to_string());
        }
    }
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
    /// Bind the local endpoint and start accepting. `order` is the fallback order;
    /// at most `max_failover + 1` pods of it are used. `warn_unreachable`: print a
    /// warning when a connection reaches no pod (a caller that reports
    /// [`Tunnel::failures`] itself passes false).
    pub async fn start(
        cluster: Cluster,
        order: Vec<String>,
        transport: Transport,
        max_failover: usize,
        listen: &Listen,
        warn_unreachable: bool,
    ) -> Result<Tunnel> {
        let endpoint = Arc::new(endpoint::Endpoint::bind(listen).await?);
        let candidates: Vec<String> = order
            .into_iter()
            .take(max_failover.saturating_add(1))
            .collect();
        let shared = Arc::new(TunnelShared {
            cluster,
            transport,
            candidates,
            bad: Mutex::new(HashSet::new()),
            served: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            warn_unreachable,
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
        self.shared.served.lock().expect("lock").clone()
    }

    /// Why connections could not reach any pod (one line each).
    pub fn failures(&self) -> Vec<String> {
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
                crate::log::warn(format!("accepting a local connection failed: {e}"));
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
                    crate::log::debug(
                        2,
                        format!("connection {id}: pod {pod}: {up} bytes up, {down} down"),
                    );
                }
                relay::Outcome::Unreachable(why) => {
                    // A command that reports failures itself (build) asked for quiet.
                    if shared.warn_unreachable {
                        crate::log::warn(format!(
                            "no buildkitd pod could take a connection: {why}"
                        ));
                    } else {
                        crate::log::debug(
                            1,
                            format!("connection {id}: no pod could take it: {why}"),
                        );
                    }
                    shared.failures.lock().expect("lock").push(why);
                }
            }
        });
    }
}
