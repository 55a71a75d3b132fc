//! The live cluster: pods (with their buildkitd listeners and counters), namespaces,
//! users, faults and the request log, shared by the server and the `Sim` handle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::SystemTime;

use sha1::{Digest, Sha1};
use tokio::io::DuplexStream;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use crate::buildkitd::{self, Counters, Identity};
use crate::config::{PodConfig, ServerFaults, SimConfig, UserConfig};

/// Buffer of the in-process pipe between a tunnel and a pod's buildkitd.
pub const DUPLEX_BUFFER: usize = 1 << 20;

/// One HTTP request the API server answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// None when the request was not authenticated.
    pub user: Option<String>,
    pub status: u16,
}

/// A pod as the API server sees it at one moment.
#[derive(Debug, Clone)]
pub struct PodView {
    pub cfg: PodConfig,
    pub uid: String,
    pub created: SystemTime,
}

struct PodEntry {
    view: PodView,
    addr: SocketAddr,
    listener: AbortHandle,
}

struct Inner {
    namespaces: BTreeSet<String>,
    pods: BTreeMap<(String, String), PodEntry>,
    faults: ServerFaults,
    next_ip: u32,
}

pub struct State {
    /// When the cluster started: every namespace's creationTimestamp.
    pub started: SystemTime,
    handle: Handle,
    inner: Mutex<Inner>,
    users: Vec<UserConfig>,
    counters: Mutex<HashMap<(String, String), Arc<Counters>>>,
    requests: Mutex<Vec<RequestRecord>>,
    /// StatefulSets, Services, ConfigMaps, claims, RBAC objects and their controller.
    pub workloads: crate::controller::Workloads,
    /// "METHOD PATH" of every request as it arrives, before any latency fault: what a
    /// test waits for to know a client is waiting on the server.
    arrivals: Mutex<Vec<String>>,
    me: Weak<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A random hex token (std's hasher keys are random per process and per instance).
pub fn random_token() -> String {
    let mut out = String::new();
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// A stable UUID-shaped uid for an object.
pub fn object_uid(namespace: &str, name: &str) -> String {
    let d = Sha1::digest(format!("{namespace}/{name}").as_bytes());
    let h: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-5{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

impl State {
    /// Build the state; users without a token get a random one.
    pub fn new(cfg: &SimConfig, handle: Handle) -> Arc<State> {
        let mut users = cfg.users.clone();
        if users.is_empty() {
            users.push(UserConfig::admin());
        }
        for u in &mut users {
            if u.token.is_empty() {
                u.token = random_token();
            }
        }
        let state = Arc::new_cyclic(|me| State {
            started: SystemTime::now(),
            handle,
            inner: Mutex::new(Inner {
                namespaces: cfg.namespaces.iter().cloned().collect(),
                pods: BTreeMap::new(),
                faults: cfg.faults.clone(),
                next_ip: 0,
            }),
            users,
            counters: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            workloads: crate::controller::Workloads::new(cfg.controller.clone()),
            arrivals: Mutex::new(Vec::new()),
            me: me.clone(),
        });
        for pod in &cfg.pods {
            state.upsert_pod(pod.clone());
        }
        state
    }

    pub fn users(&self) -> &[UserConfig] {
        &self.users
    }

    pub fn faults(&self) -> ServerFaults {
        lock(&self.inner).faults.clone()
    }

    pub fn set_faults(&self, f: ServerFaults) {
        lock(&self.inner).faults = f;
    }

    pub fn namespaces(&self) -> Vec<String> {
        lock(&self.inner).namespaces.iter().cloned().collect()
    }

    pub fn has_namespace(&self, ns: &str) -> bool {
        lock(&self.inner).namespaces.contains(ns)
    }

    /// Add a namespace; false when it existed.
    pub fn add_namespace(&self, ns: &str) -> bool {
        lock(&self.inner).namespaces.insert(ns.to_string())
    }

    pub fn remove_namespace(&self, ns: &str) {
        lock(&self.inner).namespaces.remove(ns);
    }

    /// The runtime the cluster's background work runs on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Pods in a namespace (None = all), in the apiserver's order (namespace, name).
    pub fn pods(&self, namespace: Option<&str>) -> Vec<PodView> {
        lock(&self.inner)
            .pods
            .values()
            .filter(|e| namespace.is_none_or(|ns| e.view.cfg.namespace == ns))
            .map(|e| e.view.clone())
            .collect()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodView> {
        lock(&self.inner)
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|e| e.view.clone())
    }

    pub fn buildkitd_addr(&self, namespace: &str, name: &str) -> Option<SocketAddr> {
        lock(&self.inner)
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|e| e.addr)
    }

    /// The pod's counters; they outlive updates and removal of the pod.
    pub fn counters(&self, namespace: &str, name: &str) -> Arc<Counters> {
        lock(&self.counters)
            .entry((namespace.to_string(), name.to_string()))
            .or_default()
            .clone()
    }

    fn fill_defaults(inner: &mut Inner, pod: &mut PodConfig) {
        if pod.namespace.is_empty() {
            pod.namespace = "default".into();
        }
        if pod.ip.is_none() {
            inner.next_ip += 1;
            let n = inner.next_ip;
            pod.ip = Some(format!("10.244.{}.{}", (n - 1) / 254, (n - 1) % 254 + 1));
        }
    }

    fn created_for(age_seconds: u64) -> SystemTime {
        SystemTime::now()
            .checked_sub(std::time::Duration::from_secs(age_seconds))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Add a pod, or replace its config (keeping its listener and counters).
    pub fn upsert_pod(&self, mut pod: PodConfig) {
        let mut inner = lock(&self.inner);
        let key = (pod.namespace.clone(), pod.name.clone());
        if let Some(e) = inner.pods.get_mut(&key) {
            if pod.ip.is_none() {
                pod.ip = e.view.cfg.ip.clone();
            }
            if pod.age_seconds != e.view.cfg.age_seconds {
                e.view.created = Self::created_for(pod.age_seconds);
            }
            e.view.cfg = pod;
            return;
        }
        Self::fill_defaults(&mut inner, &mut pod);
        inner.namespaces.insert(pod.namespace.clone());
        let (addr, listener) = self.listen(&pod.namespace, &pod.name);
        let view = PodView {
            uid: object_uid(&pod.namespace, &pod.name),
            created: Self::created_for(pod.age_seconds),
            cfg: pod,
        };
        inner.pods.insert(
            key,
            PodEntry {
                view,
                addr,
                listener,
            },
        );
    }

    pub fn remove_pod(&self, namespace: &str, name: &str) {
        let removed = lock(&self.inner)
            .pods
            .remove(&(namespace.to_string(), name.to_string()));
        if let Some(e) = removed {
            e.listener.abort();
        }
    }

    /// Change a pod's config in place; renaming it is not supported (name and
    /// namespace are restored).
    pub fn update_pod(&self, namespace: &str, name: &str, f: impl FnOnce(&mut PodConfig)) {
        let mut inner = lock(&self.inner);
        if let Some(e) = inner
            .pods
            .get_mut(&(namespace.to_string(), name.to_string()))
        {
            let age = e.view.cfg.age_seconds;
            f(&mut e.view.cfg);
            e.view.cfg.namespace = namespace.to_string();
            e.view.cfg.name = name.to_string();
            if e.view.cfg.age_seconds != age {
                e.view.created = Self::created_for(e.view.cfg.age_seconds);
            }
        }
    }

    /// Bind the pod's direct-TCP buildkitd port and serve it.
    fn listen(&self, namespace: &str, name: &str) -> (SocketAddr, AbortHandle) {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind a buildkitd port");
        std_listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = std_listener.local_addr().expect("local addr");
        let me = self.me.clone();
        let (ns, pod) = (namespace.to_string(), name.to_string());
        let task = self.handle.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(_) => return,
            };
            while let Ok((sock, _)) = listener.accept().await {
                let Some(state) = me.upgrade() else { return };
                let _ = sock.set_nodelay(true);
                drop(state.serve_buildkitd(&ns, &pod, sock));
            }
        });
        (addr, task.abort_handle())
    }

    /// Serve one connection to the pod's buildkitd in the background.
    pub fn serve_buildkitd<S>(
        &self,
        namespace: &str,
        name: &str,
        stream: S,
    ) -> tokio::task::JoinHandle<std::io::Result<()>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let pod = self.pod(namespace, name);
        let counters = self.counters(namespace, name);
        if let Some(socket) = pod.as_ref().and_then(|p| p.cfg.docker_socket.clone()) {
            return self
                .handle
                .spawn(crate::realkit::bridge::serve(stream, socket, counters));
        }
        let faults = pod.map(|p| p.cfg.faults).unwrap_or_default();
        if let Some(n) = faults.mute_drop_after_bytes {
            return self
                .handle
                .spawn(async move { buildkitd::serve_mute(stream, counters, n).await });
        }
        let drop_after = faults.drop_after_bytes;
        let who = Identity {
            pod: name.to_string(),
            namespace: namespace.to_string(),
        };
        self.handle
            .spawn(async move { buildkitd::serve(stream, &who, counters, drop_after).await })
    }

    /// An in-process connection to the pod's buildkitd.
    pub fn open_buildkitd(&self, namespace: &str, name: &str) -> DuplexStream {
        let (ours, theirs) = tokio::io::duplex(DUPLEX_BUFFER);
        self.serve_buildkitd(namespace, name, theirs);
        ours
    }

    pub fn record(&self, r: RequestRecord) {
        lock(&self.requests).push(r);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.requests).clone()
    }

    pub fn arrived(&self, method: &str, path: &str) {
        lock(&self.arrivals).push(format!("{method} {path}"));
    }

    pub fn arrivals(&self) -> Vec<String> {
        lock(&self.arrivals).clone()
    }
}
