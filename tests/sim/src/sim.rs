//! `Sim`: a running simulated cluster, owned by a test or the `kube-sim` binary.
//! It runs its own multi-thread tokio runtime on a background thread, so it works the
//! same from plain `#[test]`s and from inside `#[tokio::test]`s.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::buildkitd::PodStats;
use crate::config::{PodConfig, ServerFaults, SimConfig};
use crate::state::{RequestRecord, State};
use crate::{kubeconfig, server, tls};

pub struct Sim {
    state: Arc<State>,
    url: String,
    kubeconfig: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Sim {
    /// Start serving on 127.0.0.1 (a free port) and write the kubeconfig.
    pub fn start(cfg: SimConfig) -> anyhow::Result<Sim> {
        crate::realkit::check_attached(&cfg)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kube-sim")
            .enable_all()
            .build()
            .context("starting the simulated cluster's runtime")?;
        let identity = tls::server_identity()?;
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding the API server")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let url = format!("https://{addr}");
        let state = State::new(&cfg, rt.handle().clone());

        let dir = tempfile::Builder::new()
            .prefix("kube-sim-")
            .tempdir()
            .context("creating the kubeconfig directory")?;
        let kubeconfig = dir.path().join("kubeconfig");
        let namespace = cfg.context_namespace.as_deref().unwrap_or("default");
        let yaml = kubeconfig::render(&url, &identity.cert_pem, state.users(), namespace);
        std::fs::write(&kubeconfig, yaml)
            .with_context(|| format!("writing {}", kubeconfig.display()))?;

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("kube-sim".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => {
                            tokio::spawn(server::serve(l, identity.config, serve_state));
                        }
                        Err(e) => eprintln!("kube-sim: cannot listen: {e}"),
                    }
                    let _ = stopped.await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .context("starting the simulated cluster's thread")?;
        Ok(Sim {
            state,
            url,
            kubeconfig,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// The kubeconfig file (removed when the Sim is dropped).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The bearer token of a user.
    pub fn token(&self, user: &str) -> Option<String> {
        self.state
            .users()
            .iter()
            .find(|u| u.name == user)
            .map(|u| u.token.clone())
    }

    /// Counters of a pod's buildkitd (they survive updates and removal of the pod).
    pub fn stats(&self, namespace: &str, pod: &str) -> PodStats {
        self.state.counters(namespace, pod).snapshot()
    }

    /// The pod's buildkitd on a real TCP port of 127.0.0.1 (for direct benchmarks).
    pub fn buildkitd_addr(&self, namespace: &str, pod: &str) -> Option<SocketAddr> {
        self.state.buildkitd_addr(namespace, pod)
    }

    /// Add a pod or replace one's config.
    pub fn upsert_pod(&self, pod: PodConfig) {
        self.state.upsert_pod(pod);
    }

    pub fn remove_pod(&self, namespace: &str, name: &str) {
        self.state.remove_pod(namespace, name);
    }

    /// Change a pod in place (its name and namespace cannot change).
    pub fn update_pod(&self, namespace: &str, name: &str, f: impl FnOnce(&mut PodConfig)) {
        self.state.update_pod(namespace, name, f);
    }

    pub fn set_faults(&self, f: ServerFaults) {
        self.state.set_faults(f);
    }

    /// Change how the StatefulSet controller's new pods behave.
    pub fn set_controller(&self, c: crate::controller::ControllerConfig) {
        self.state.workloads.set_config(c);
    }

    /// Every HTTP request answered so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.requests()
    }

    /// "METHOD PATH" of every HTTP request as it arrived, answered or not (a request
    /// held by `api_latency_ms` is here before it is in [`Sim::requests`]).
    pub fn arrivals(&self) -> Vec<String> {
        self.state.arrivals()
    }

    /// Stop serving and remove the kubeconfig (also done on drop).
    pub fn shutdown(self) {}

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}
