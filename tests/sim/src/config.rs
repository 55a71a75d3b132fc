//! What a simulated cluster contains: namespaces, pods, users and their rules, faults.
//! Read from YAML by the `kube-sim` binary (snake_case keys, every field optional).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole simulated cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Namespaces that exist; every pod's namespace is added automatically.
    pub namespaces: Vec<String>,
    pub pods: Vec<PodConfig>,
    /// Users (bearer tokens). Empty means one user `admin` allowed everything.
    pub users: Vec<UserConfig>,
    /// Namespace of every kubeconfig context; "default" when unset.
    pub context_namespace: Option<String>,
    pub faults: ServerFaults,
    /// How the StatefulSet controller's pods behave (src/controller.rs).
    pub controller: crate::controller::ControllerConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            namespaces: vec!["default".into()],
            pods: Vec::new(),
            users: vec![UserConfig::admin()],
            context_namespace: None,
            faults: ServerFaults::default(),
            controller: crate::controller::ControllerConfig::default(),
        }
    }
}

/// One pod running a simulated buildkitd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PodConfig {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// metadata.annotations (e.g. `kubectl.kubernetes.io/default-container`); the API
    /// server gives them no meaning, as the real one does not.
    pub annotations: BTreeMap<String, String>,
    /// Pending, Running, Succeeded, Failed, Unknown.
    pub phase: String,
    /// The Ready condition and every container's `ready`.
    pub ready: bool,
    /// Sets metadata.deletionTimestamp.
    pub terminating: bool,
    pub node: String,
    /// Pod IP (data only); assigned 10.244.0.N when unset.
    pub ip: Option<String>,
    pub containers: Vec<String>,
    pub restarts: i32,
    /// Age, turned into creationTimestamp.
    pub age_seconds: u64,
    pub faults: PodFaults,
    /// Back this pod with a REAL BuildKit: the index of a daemon of the real-BuildKit
    /// fixture that the `kube-sim` binary starts for the config (see realkit). The
    /// binary turns it into `docker_socket`.
    pub real_buildkit_daemon: Option<usize>,
    /// Back this pod with the BuildKit of the dockerd on this unix socket: its exec of
    /// `buildctl dial-stdio` and its port 1234 are bridged to `POST /grpc` (h2c) there.
    pub docker_socket: Option<std::path::PathBuf>,
}

impl Default for PodConfig {
    fn default() -> Self {
        PodConfig {
            name: String::new(),
            namespace: "default".into(),
            labels: BTreeMap::from([("app".to_string(), "buildkitd".to_string())]),
            annotations: BTreeMap::new(),
            phase: "Running".into(),
            ready: true,
            terminating: false,
            node: "node-1".into(),
            ip: None,
            containers: vec!["buildkitd".into()],
            restarts: 0,
            age_seconds: 3600,
            faults: PodFaults::default(),
            real_buildkit_daemon: None,
            docker_socket: None,
        }
    }
}

impl PodConfig {
    /// A ready, running buildkitd pod (label app=buildkitd) with every default.
    pub fn new(namespace: &str, name: &str) -> Self {
        PodConfig {
            name: name.into(),
            namespace: namespace.into(),
            ..PodConfig::default()
        }
    }

    /// Builder: back this pod with a real dockerd's BuildKit (see [`crate::realkit`]).
    pub fn backed_by(mut self, daemon: &crate::realkit::Dockerd) -> Self {
        self.docker_socket = Some(daemon.socket().to_path_buf());
        self
    }

    /// Builder: replace the labels.
    pub fn with_labels(mut self, labels: &[(&str, &str)]) -> Self {
        self.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }
}

/// Faults of one pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PodFaults {
    /// Exec into this pod answers 403 (shaped like RBAC's).
    pub exec_forbidden: bool,
    /// Port-forward to this pod answers 403 (shaped like RBAC's).
    pub portforward_forbidden: bool,
    /// buildctl is not in the image: any buildctl command exits 127.
    pub buildctl_missing: bool,
    /// Still listed, but get/exec/port-forward answer 404 (deleted between list and exec).
    pub vanished: bool,
    /// The pod's buildkitd cuts each connection after this many bytes.
    pub drop_after_bytes: Option<u64>,
    /// The pod's buildkitd never speaks (no greeting) and cuts each connection once it
    /// has received this many bytes: a pod that fails before its first byte after
    /// the client already sent something (what a tunnel must replay elsewhere).
    pub mute_drop_after_bytes: Option<u64>,
}

/// Faults of the API server as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerFaults {
    /// Delay every HTTP request by this much before answering.
    pub api_latency_ms: u64,
    /// Pod lists answer a Status with this HTTP code.
    pub list_error: Option<u16>,
    /// Pod lists answer 200 with malformed JSON.
    pub list_garbage: bool,
    /// Exec into every pod answers 403 (the same Status as the per-pod fault).
    pub exec_forbidden: bool,
    /// Port-forward to every pod answers 403 (the same Status as the per-pod fault).
    pub portforward_forbidden: bool,
    /// The exec subprotocols the server accepts, e.g. `[v4.channel.k8s.io]` for an
    /// older apiserver that only knows v4. Empty: both v5.channel.k8s.io (preferred)
    /// and v4.channel.k8s.io. Names the sim does not speak are ignored.
    pub exec_protocols: Vec<String>,
}

/// A user, known by its bearer token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// Bearer token; a random one is made when empty.
    pub token: String,
    /// What the user may do. When the key is absent from YAML: everything.
    pub rules: Vec<Rule>,
}

impl Default for UserConfig {
    fn default() -> Self {
        UserConfig {
            name: String::new(),
            token: String::new(),
            rules: vec![Rule::all()],
        }
    }
}

impl UserConfig {
    /// The default user: `admin`, random token, allowed everything.
    pub fn admin() -> Self {
        UserConfig::new("admin", vec![Rule::all()])
    }

    /// A user with a random token (made at start) and these rules.
    pub fn new(name: &str, rules: Vec<Rule>) -> Self {
        UserConfig {
            name: name.into(),
            token: String::new(),
            rules,
        }
    }
}

/// One RBAC-like rule: allows `verbs` on `resources` in `namespaces`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rule {
    /// get, list, watch, create, or "*".
    pub verbs: Vec<String>,
    /// pods, pods/exec, pods/portforward, namespaces, "pods/*", or "*".
    pub resources: Vec<String>,
    /// Empty = every namespace and cluster-scoped requests (a ClusterRoleBinding);
    /// otherwise only requests in these namespaces (RoleBindings).
    pub namespaces: Vec<String>,
}

impl Rule {
    /// Every verb on every resource everywhere.
    pub fn all() -> Self {
        Rule::new(&["*"], &["*"])
    }

    /// These verbs on these resources in every namespace.
    pub fn new(verbs: &[&str], resources: &[&str]) -> Self {
        Rule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            namespaces: Vec::new(),
        }
    }

    /// Builder: restrict the rule to these namespaces.
    pub fn in_namespaces(mut self, namespaces: &[&str]) -> Self {
        self.namespaces = namespaces.iter().map(|s| s.to_string()).collect();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_defaults() {
        let cfg: SimConfig = serde_yaml::from_str(
            "pods:\n  - name: a\n  - name: b\n    namespace: ns1\n    ready: false\n",
        )
        .unwrap();
        assert_eq!(cfg.namespaces, vec!["default"]);
        assert_eq!(cfg.users.len(), 1);
        assert_eq!(cfg.users[0].name, "admin");
        let a = &cfg.pods[0];
        assert_eq!(a.namespace, "default");
        assert_eq!(a.labels.get("app").map(String::as_str), Some("buildkitd"));
        assert_eq!(a.phase, "Running");
        assert!(a.ready);
        assert_eq!(a.containers, vec!["buildkitd"]);
        assert!(!cfg.pods[1].ready);
        assert_eq!(cfg.faults, ServerFaults::default());
        assert!(cfg.faults.exec_protocols.is_empty());
        assert_eq!(a.faults.mute_drop_after_bytes, None);
    }

    #[test]
    fn yaml_faults() {
        let cfg: SimConfig = serde_yaml::from_str(
            "faults:\n  exec_protocols: [v4.channel.k8s.io]\n  exec_forbidden: true\n  portforward_forbidden: true\npods:\n  - name: a\n    faults: {mute_drop_after_bytes: 12}\n",
        )
        .unwrap();
        assert_eq!(cfg.faults.exec_protocols, vec!["v4.channel.k8s.io"]);
        assert!(cfg.faults.exec_forbidden && cfg.faults.portforward_forbidden);
        assert_eq!(cfg.pods[0].faults.mute_drop_after_bytes, Some(12));
        assert!(serde_yaml::from_str::<SimConfig>("faults: {exec_protocol: []}\n").is_err());
    }

    #[test]
    fn example_config_parses() {
        let cfg: SimConfig = serde_yaml::from_str(include_str!("../example-config.yaml")).unwrap();
        assert_eq!(cfg.pods.len(), 5);
        assert_eq!(cfg.users[1].name, "noexec");
        assert_eq!(cfg.context_namespace.as_deref(), Some("buildkit"));
    }

    #[test]
    fn user_without_rules_key_may_do_everything() {
        let u: UserConfig = serde_yaml::from_str("name: x\n").unwrap();
        assert_eq!(u.rules, vec![Rule::all()]);
        let u: UserConfig = serde_yaml::from_str("name: x\nrules: []\n").unwrap();
        assert!(u.rules.is_empty());
    }
}
