//! How a tunnel reaches buildkitd in a pod: exec of `buildctl dial-stdio`, or
//! port-forward to its TCP port. Plain data; [`super::remote`] does the talking.

use std::collections::BTreeMap;

/// The two ways through the API server to buildkitd: the one kind enum of the tunnel
/// layer (the command line's `--tunnel` maps onto it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// exec `buildctl dial-stdio` in the pod (needs `create` on pods/exec).
    Exec,
    /// port-forward to buildkitd's TCP port (needs `create` on pods/portforward).
    PortForward,
}

impl TransportKind {
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Exec => "exec",
            TransportKind::PortForward => "port-forward",
        }
    }
}

/// How to reach buildkitd inside a pod: the kind and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    pub kind: TransportKind,
    /// exec: the container to run in (--container); when None, the container a pod's
    /// default-container annotation names (`defaults`, pod -> container), else the
    /// server picks (a pod with one container).
    pub container: Option<String>,
    pub defaults: BTreeMap<String, String>,
    /// port-forward: buildkitd's TCP port in the pod.
    pub port: u16,
}

impl Transport {
    /// exec in `container` (None: each pod's default, see [`Transport::defaults`]).
    pub fn exec(container: Option<String>) -> Transport {
        Transport {
            kind: TransportKind::Exec,
            container,
            defaults: BTreeMap::new(),
            port: 0,
        }
    }

    /// port-forward to `port`.
    pub fn port_forward(port: u16) -> Transport {
        Transport {
            kind: TransportKind::PortForward,
            container: None,
            defaults: BTreeMap::new(),
            port,
        }
    }

    pub fn describe(&self) -> String {
        match (self.kind, &self.container) {
            (TransportKind::Exec, Some(c)) => format!("exec (container {c})"),
            (TransportKind::Exec, None) => "exec".to_string(),
            (TransportKind::PortForward, _) => format!("port-forward to port {}", self.port),
        }
    }

    /// The container an exec into `pod` runs in, if we name one.
    pub fn container_for(&self, pod: &str) -> Option<&String> {
        self.container.as_ref().or_else(|| self.defaults.get(pod))
    }
}
