//! Command-line declarations (clap), and their translation into the library's plain
//! option structs. No behaviour here: commands live in src/commands. The only module
//! (with completion) that knows clap. Near 400 lines because every flag carries its
//! help text here; the build flags live in cli/build.rs.

mod build;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use anyhow::Context as _;
use kubectl_buildkit::builder::spec::{self, BuilderSpec, Subject};
use kubectl_buildkit::cluster::ClusterOptions;
use kubectl_buildkit::duration::parse_request_timeout;
use kubectl_buildkit::ring::Algorithm;
use kubectl_buildkit::selection::{SelectionOptions, DEFAULT_SELECTOR};
use kubectl_buildkit::tunnel::{TransportKind, TunnelOptions};

pub use build::BuildFlags;

/// Environment variables every subcommand that talks to the cluster reads (as kubectl
/// does), for the end of each one's help.
macro_rules! cluster_env {
    () => {
        "
  KUBECONFIG     kubeconfig files to merge (':'-separated); default ~/.kube/config
  HOME           where ~/.kube/config is
  KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT
                 in a pod with no kubeconfig: use the pod's service account"
    };
}

/// TMPDIR, for the subcommands that make a private socket directory.
macro_rules! tmpdir_env {
    () => {
        "
  TMPDIR         where the private (0700) socket directory is made (default /tmp)"
    };
}

const AFTER_HELP: &str = concat!(
    "\
Examples:
  kubectl buildkit pods -n buildkit
  kubectl buildkit build -t reg.example.com/app:dev --push .
  kubectl buildkit tunnel -- buildctl du
  kubectl buildkit completion kubectl --help

Environment:
  IMAGE          skaffold's image: the default tag, and (without its tag) the hash key
  PUSH_IMAGE     skaffold: push (true) or load into the local docker daemon (false)
  BUILD_CONTEXT  skaffold: the default build context
  PLATFORMS      skaffold: the default --platform list
  BUILDKIT_HOST  set for the command run by `kubectl buildkit tunnel -- COMMAND`
  KUBECTL_BUILDKIT_CLI  build's default --cli (builtin, buildctl or docker)
  BUILDKIT_PROGRESS     build's default --progress (auto, tty, plain, rawjson, quiet)
  NO_COLOR       no colour in build's tty progress
  DOCKER_CONFIG  where the registry credentials' config.json is (default ~/.docker)
  SSH_AUTH_SOCK  the agent `build --ssh default` forwards
  PATH           where buildctl, docker and docker-credential-* helpers are found",
    cluster_env!(),
    tmpdir_env!()
);

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-buildkit",
    bin_name = "kubectl buildkit",
    version,
    about = "Build container images on your cluster's buildkitd pods, landing each image on the pod that has its cache.",
    after_help = AFTER_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub kube: KubeFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// kubectl's connection flags, accepted before or after the subcommand.
#[derive(Debug, Clone, Default, Args)]
pub struct KubeFlags {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The kubeconfig cluster to use (overrides the context's)
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,
    /// The kubeconfig user to use (overrides the context's)
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// Namespace of the buildkitd pods (default: the context's, else "default")
    #[arg(short = 'n', long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,
    /// How long to wait for each API request: 0 (no limit), a number of seconds, or a
    /// duration as kubectl takes it (5s, 1m30s, 1.5h, 300ms)
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_request_timeout)]
    pub request_timeout: Option<Duration>,
    /// More detail on stderr (repeat for more: -v, -vv, -vvv)
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress or notes on stderr: only warnings and errors
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
}

/// How pods are chosen: shared by every subcommand that picks a pod.
#[derive(Debug, Clone, Args)]
pub struct SelectionFlags {
    /// Label selector of the buildkitd pods
    #[arg(
        short = 'l',
        long = "selector",
        visible_alias = "kube-pod-selector",
        default_value = DEFAULT_SELECTOR,
        value_name = "SELECTOR"
    )]
    pub selector: String,
    /// The pods of the builder `create` made with this name (the selector
    /// buildkit.kubectl.io/builder=NAME)
    #[arg(long, value_name = "NAME", conflicts_with = "selector")]
    pub builder: Option<String>,
    /// Key hashed to pick a pod (default: $IMAGE without its tag or digest, else the
    /// absolute build context path)
    #[arg(
        long = "hash-key",
        visible_alias = "kube-pod-balancing-hash-key",
        value_name = "KEY"
    )]
    pub hash_key: Option<String>,
    /// How keys map to pods
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Classic)]
    pub algorithm: AlgorithmArg,
    /// Use this pod; no hashing
    #[arg(long, value_name = "NAME")]
    pub pod: Option<String>,
    /// Container of the pod to exec into (default: the one the pod's
    /// kubectl.kubernetes.io/default-container annotation names, as kubectl exec; needed
    /// for a pod with several containers and no such annotation)
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,
    /// Also use Running pods that are not Ready (never terminating ones)
    #[arg(long)]
    pub include_unready: bool,
}

/// How the tunnel reaches buildkitd: shared by `build` and `tunnel`.
#[derive(Debug, Clone, Args)]
pub struct TunnelFlags {
    /// exec `buildctl dial-stdio` in the pod (needs pods/exec), or port-forward to
    /// buildkitd's TCP port (needs pods/portforward)
    #[arg(long = "tunnel", value_enum, default_value_t = TunnelKind::Exec)]
    pub kind: TunnelKind,
    /// buildkitd's TCP port in the pod, for --tunnel port-forward
    #[arg(long, default_value_t = 1234, value_name = "PORT")]
    pub remote_port: u16,
    /// How many other pods (in fallback order) a connection may move to when its pod
    /// cannot be reached; 0 disables failover
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub max_failover: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TunnelKind {
    Exec,
    PortForward,
}

/// `--algorithm`: the ring's algorithms, as the command line names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    /// The original wrapper's ring (serialx/hashring 2019): 120 points per pod.
    Classic,
    /// docker buildx's sticky ring (serialx/hashring 2020): one point per pod.
    Buildx,
    /// Rendezvous (highest random weight) hashing: no ring, minimal movement.
    Rendezvous,
}

impl From<AlgorithmArg> for Algorithm {
    fn from(a: AlgorithmArg) -> Self {
        match a {
            AlgorithmArg::Classic => Algorithm::Classic,
            AlgorithmArg::Buildx => Algorithm::Buildx,
            AlgorithmArg::Rendezvous => Algorithm::Rendezvous,
        }
    }
}

impl KubeFlags {
    /// How to reach the cluster, for the library.
    pub fn options(&self) -> ClusterOptions {
        ClusterOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            cluster: self.cluster.clone(),
            user: self.user.clone(),
            namespace: self.namespace.clone(),
            request_timeout: self.request_timeout,
        }
    }
}

impl SelectionFlags {
    /// How to choose pods, for the library (the hash key is the command's to find).
    pub fn options(&self) -> SelectionOptions {
        SelectionOptions {
            selector: self.selector.clone(),
            algorithm: self.algorithm.into(),
            pod: self.pod.clone(),
            include_unready: self.include_unready,
        }
    }
}

impl TunnelFlags {
    /// How to reach the chosen pod, for the library; `container` comes with the
    /// selection flags.
    pub fn options(&self, container: Option<String>) -> TunnelOptions {
        TunnelOptions {
            kind: match self.kind {
                TunnelKind::Exec => TransportKind::Exec,
                TunnelKind::PortForward => TransportKind::PortForward,
            },
            remote_port: self.remote_port,
            container,
            max_failover: self.max_failover,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image on the buildkitd pod chosen for it (skaffold's custom buildCommand)
    #[command(after_help = concat!("Examples:
  # as skaffold's buildCommand (reads IMAGE, PUSH_IMAGE, BUILD_CONTEXT, PLATFORMS):
  kubectl buildkit build -n buildkit -l app=buildkitd
  kubectl buildkit build -t reg.example.com/app:dev --push .
  kubectl buildkit build -f docker/Dockerfile --build-arg VERSION=1.2 --secret id=npm,src=$HOME/.npmrc .
  kubectl buildkit build --tunnel port-forward --hash-key my-team -- --trace trace.json
  kubectl buildkit build --cli docker -t app:dev .

Environment (skaffold's custom builder sets these):
  IMAGE          default --tag, and (without its tag) the default --hash-key
  PUSH_IMAGE     true: push the image; false: load it into the local docker daemon
  BUILD_CONTEXT  default CONTEXT
  PLATFORMS      default --platform (comma-separated)
Environment (also read):
  KUBECTL_BUILDKIT_CLI  default --cli
  BUILDKIT_PROGRESS     default --progress
  DOCKER_CONFIG  registry credentials (config.json; default ~/.docker)
  SSH_AUTH_SOCK  the agent --ssh default forwards", cluster_env!(), tmpdir_env!()))]
    Build(Box<BuildArgs>),
    /// List the buildkitd pods: eligibility, ring share, and which one a key picks
    #[command(after_help = concat!("Examples:
  kubectl buildkit pods
  kubectl buildkit pods -n buildkit -l app=buildkitd --hash-key gcr.io/me/app
  kubectl buildkit pods -o json

Environment:
  IMAGE          when set and --hash-key is not, its name (without tag) is the key", cluster_env!()))]
    Pods(PodsArgs),
    /// Show how keys map to pods, each pod's share, and what a scale change moves
    #[command(after_help = concat!("Examples:
  kubectl buildkit ring gcr.io/me/app gcr.io/me/api
  kubectl buildkit ring --pods buildkitd-0,buildkitd-1,buildkitd-2 my/image
  kubectl buildkit ring --pods-file pods.txt --add buildkitd-3 -o json my/image
  kubectl get pods -l app=buildkitd -o name | cut -d/ -f2 | kubectl buildkit ring --pods-file - key

Environment (when the pods come from the cluster, not --pods or --pods-file):", cluster_env!()))]
    Ring(RingArgs),
    /// Open a tunnel to the chosen buildkitd pod; run COMMAND with BUILDKIT_HOST set, or
    /// print BUILDKIT_HOST and serve until interrupted
    #[command(after_help = concat!("Examples:
  kubectl buildkit tunnel -- buildctl du
  kubectl buildkit tunnel --hash-key gcr.io/me/app -- buildctl build ...
  kubectl buildkit tunnel --tunnel port-forward --listen tcp://127.0.0.1:1234

Environment:
  BUILDKIT_HOST  set for COMMAND to the tunnel's address
  IMAGE          when set and --hash-key is not, its name (without tag) is the key", cluster_env!(), tmpdir_env!()))]
    Tunnel(TunnelArgs),
    /// Create or update a builder: a StatefulSet of buildkitd pods, its Service and RBAC
    #[command(after_help = concat!("Examples:
  kubectl buildkit create -n buildkit
  kubectl buildkit create -n buildkit --replicas 3 --cache-size 50Gi --bind-group devs
  kubectl buildkit create fast --rootful --node-selector pool=build --toleration dedicated=build:NoSchedule
  kubectl buildkit create --config buildkitd.toml --requests cpu=2,memory=4Gi
  kubectl buildkit create -n buildkit --dry-run=client -o yaml > builder.yaml
  kubectl buildkit build --builder fast -t reg.example.com/app:dev --push .

Environment:", cluster_env!()))]
    Create(Box<CreateArgs>),
    /// Remove a builder made by `create` (its cache volumes stay unless --delete-cache)
    #[command(after_help = concat!("Examples:
  kubectl buildkit rm -n buildkit
  kubectl buildkit rm fast --delete-cache

Environment:", cluster_env!()))]
    Rm(RmArgs),
    /// Print the version, git commit and target
    #[command(after_help = "Examples:
  kubectl buildkit version
  kubectl buildkit version -o json")]
    Version(VersionArgs),
    /// Print a shell completion script: for the kubectl-buildkit binary (bash, zsh,
    /// fish, powershell), or kubectl's kubectl_complete-buildkit helper (kubectl)
    #[command(after_help = concat!("Examples:
  # `kubectl buildkit <TAB>` (kubectl 1.26+ runs kubectl_complete-buildkit from PATH):
  kubectl buildkit completion kubectl > ~/.local/bin/kubectl_complete-buildkit
  chmod +x ~/.local/bin/kubectl_complete-buildkit
  # `kubectl-buildkit <TAB>`, run directly:
  source <(kubectl buildkit completion bash)
  kubectl buildkit completion zsh > \"${fpath[1]}/_kubectl-buildkit\"
  kubectl buildkit completion fish > ~/.config/fish/completions/kubectl-buildkit.fish
  kubectl buildkit completion powershell | Out-String | Invoke-Expression

The kubectl helper must be named kubectl_complete-buildkit, be executable, and sit in a
directory on PATH (any one: krew's ~/.krew/bin works too). It answers from your
kubeconfig (contexts) and cluster (namespaces, buildkitd pods), waiting at most 2s.

Environment (kubeconfig contexts, and the cluster to ask):", cluster_env!()))]
    Completion(CompletionArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Powershell,
    /// the kubectl_complete-buildkit helper for `kubectl buildkit <TAB>`
    Kubectl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PodsOutput {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RingOutput {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VersionOutput {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct PodsArgs {
    #[command(flatten)]
    pub select: SelectionFlags,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = PodsOutput::Table)]
    pub output: PodsOutput,
}

#[derive(Debug, Args)]
pub struct RingArgs {
    /// Keys to look up (image names without tags, or context paths)
    #[arg(value_name = "KEY")]
    pub keys: Vec<String>,
    #[command(flatten)]
    pub select: SelectionFlags,
    /// Pods to build the ring from, comma-separated, instead of asking the cluster
    #[arg(long, value_name = "A,B,C", conflicts_with = "pods_file")]
    pub pods: Option<String>,
    /// File with one pod name a line ('-' for stdin), instead of asking the cluster
    #[arg(long, value_name = "FILE")]
    pub pods_file: Option<PathBuf>,
    /// Show what adding this pod would move (repeatable)
    #[arg(long, value_name = "POD")]
    pub add: Vec<String>,
    /// Show what removing this pod would move (repeatable)
    #[arg(long, value_name = "POD")]
    pub remove: Vec<String>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = RingOutput::Table)]
    pub output: RingOutput,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub select: SelectionFlags,
    #[command(flatten)]
    pub tunnel: TunnelFlags,
    #[command(flatten)]
    pub build: BuildFlags,
}

#[derive(Debug, Args)]
pub struct TunnelArgs {
    #[command(flatten)]
    pub select: SelectionFlags,
    #[command(flatten)]
    pub tunnel: TunnelFlags,
    /// Where buildctl connects: unix:///PATH or tcp://127.0.0.1:PORT (default: a
    /// private unix socket, removed on exit)
    #[arg(long, value_name = "ADDRESS")]
    pub listen: Option<String>,
    /// Command to run with BUILDKIT_HOST set (after --)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// Which script to print
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: CompletionShell,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = VersionOutput::Text)]
    pub output: VersionOutput,
}

impl Command {
    /// `--builder NAME` becomes the selector it stands for.
    pub fn resolve_builder(&mut self) {
        let select = match self {
            Command::Build(a) => &mut a.select,
            Command::Pods(a) => &mut a.select,
            Command::Ring(a) => &mut a.select,
            Command::Tunnel(a) => &mut a.select,
            _ => return,
        };
        if let Some(name) = &select.builder {
            select.selector = kubectl_buildkit::builder::spec::builder_selector(name);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    /// apply for real
    None,
    /// print the objects; no cluster needed
    Client,
    /// ask the API server what it would store; nothing is written
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectOutput {
    Yaml,
    Json,
    Name,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The builder's name: its StatefulSet, Service and pods NAME-0..N-1
    #[arg(value_name = "NAME", default_value = "buildkitd")]
    pub name: String,
    /// How many buildkitd pods
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(i32).range(0..=1000))]
    pub replicas: i32,
    /// buildkitd image (default: moby/buildkit:<pinned>-rootless, or without
    /// -rootless with --rootful)
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Privileged buildkitd instead of rootless (needs a namespace that allows
    /// privileged pods)
    #[arg(long)]
    pub rootful: bool,
    /// Run only on nodes with this label (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub node_selector: Vec<String>,
    /// Tolerate a taint: KEY[=VALUE][:EFFECT] (repeatable)
    #[arg(long, value_name = "TAINT")]
    pub toleration: Vec<String>,
    /// Resource requests of each pod, e.g. cpu=1,memory=2Gi
    #[arg(long, value_name = "LIST")]
    pub requests: Option<String>,
    /// Resource limits of each pod, e.g. cpu=4,memory=8Gi
    #[arg(long, value_name = "LIST")]
    pub limits: Option<String>,
    /// A persistent cache volume of this size per pod (e.g. 50Gi); 0: an emptyDir,
    /// lost with the pod
    #[arg(long, default_value = "0", value_name = "SIZE")]
    pub cache_size: String,
    /// Storage class of the cache volumes (default: the cluster's default)
    #[arg(long, value_name = "NAME")]
    pub storage_class: Option<String>,
    /// buildkitd also listens on 127.0.0.1:PORT in the pod, for --tunnel port-forward
    #[arg(long, default_value_t = 1234, value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port_forward_port: u16,
    /// A buildkitd.toml (registry mirrors, GC, ...) for the pods, in a ConfigMap
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Make no Role or RoleBinding
    #[arg(long)]
    pub no_rbac: bool,
    /// Create the namespace first when it does not exist (`rm` never deletes it)
    #[arg(long)]
    pub create_namespace: bool,
    /// Let this user build (a RoleBinding subject; repeatable)
    #[arg(long, value_name = "NAME")]
    pub bind_user: Vec<String>,
    /// Let this group build (repeatable)
    #[arg(long, value_name = "NAME")]
    pub bind_group: Vec<String>,
    /// Let this service account build: NAMESPACE:NAME, or NAME in the builder's
    /// namespace (repeatable)
    #[arg(long, value_name = "NAMESPACE:NAME")]
    pub bind_serviceaccount: Vec<String>,
    /// Wait until every pod is Ready (--wait=false: don't)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub wait: bool,
    /// How long to wait for the pods
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// client: print the objects without a cluster; server: ask the API server
    #[arg(long, value_enum, default_value_t = DryRun::None, num_args = 0..=1,
          require_equals = true, default_missing_value = "client", value_name = "MODE")]
    pub dry_run: DryRun,
    /// Print the objects (yaml, json) or their names
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<ObjectOutput>,
}

impl CreateArgs {
    /// The builder the flags describe, in `namespace` (reads --config's file).
    pub fn spec(&self, namespace: &str) -> anyhow::Result<BuilderSpec> {
        spec::check_name(&self.name)?;
        let mut s = BuilderSpec::new(&self.name, namespace);
        s.replicas = self.replicas;
        s.rootless = !self.rootful;
        s.image = self
            .image
            .clone()
            .unwrap_or_else(|| spec::default_image(s.rootless));
        for kv in &self.node_selector {
            let (k, v) = spec::parse_key_value("--node-selector", kv)?;
            s.node_selector.insert(k, v);
        }
        s.tolerations = self
            .toleration
            .iter()
            .map(|t| spec::parse_toleration(t))
            .collect::<anyhow::Result<_>>()?;
        if let Some(r) = &self.requests {
            s.requests = spec::parse_resources("--requests", r)?;
        }
        if let Some(l) = &self.limits {
            s.limits = spec::parse_resources("--limits", l)?;
        }
        if self.cache_size != "0" {
            spec::check_quantity("--cache-size", &self.cache_size)?;
            s.cache_size = Some(self.cache_size.clone());
        } else if self.storage_class.is_some() {
            anyhow::bail!(
                "--storage-class needs --cache-size SIZE (a cache volume to put in that class)"
            );
        }
        s.storage_class = self.storage_class.clone();
        s.port_forward_port = self.port_forward_port;
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read --config {}: give a buildkitd.toml file",
                    path.display()
                )
            })?;
            s.config = Some(text);
        }
        s.rbac = !self.no_rbac;
        s.subjects
            .extend(self.bind_user.iter().map(|u| Subject::User(u.clone())));
        s.subjects
            .extend(self.bind_group.iter().map(|g| Subject::Group(g.clone())));
        for sa in &self.bind_serviceaccount {
            s.subjects.push(spec::parse_service_account(sa, namespace)?);
        }
        if self.no_rbac && !s.subjects.is_empty() {
            anyhow::bail!("--bind-user/--bind-group/--bind-serviceaccount need the RoleBinding that --no-rbac turns off: drop one of them");
        }
        Ok(s)
    }
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// The builder's name
    #[arg(value_name = "NAME", default_value = "buildkitd")]
    pub name: String,
    /// Also delete the pods' cache volumes (PersistentVolumeClaims)
    #[arg(long)]
    pub delete_cache: bool,
    /// Wait until the pods are gone (--wait=false: don't)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub wait: bool,
    /// How long to wait for the pods to go
    #[arg(long, default_value = "2m", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// No error when there is no such builder
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// kubectl's duration syntax: a bare number is seconds; else a sequence of
/// number+unit with units h, m, s, ms. "0" means no limit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || {
        format!("invalid duration {s:?}: use a number of seconds or a duration like 30s, 2m, 1h")
    };
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = Duration::try_from_secs_f64(value * unit)
            .ok()
            .and_then(|d| total.checked_add(d))
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Box<CreateArgs> {
        let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
        match cli.command {
            Command::Create(a) => a,
            _ => panic!("create"),
        }
    }

    #[test]
    fn flags_become_the_spec() {
        let a = args("kubectl-buildkit create fast --replicas 3 --rootful --node-selector pool=build \
                      --toleration gpu:NoSchedule --requests cpu=1 --limits memory=2Gi \
                      --cache-size 10Gi --storage-class ssd --port-forward-port 9999 \
                      --bind-user alice --bind-group devs --bind-serviceaccount ci:runner --dry-run=client -o yaml");
        let s = a.spec("bk").unwrap();
        assert_eq!(
            (s.name.as_str(), s.namespace.as_str(), s.replicas),
            ("fast", "bk", 3)
        );
        assert!(!s.rootless);
        assert_eq!(s.image, "moby/buildkit:v0.23.2");
        assert_eq!(s.node_selector["pool"], "build");
        assert_eq!(s.cache_size.as_deref(), Some("10Gi"));
        assert_eq!(s.subjects.len(), 3);
        assert_eq!(s.port_forward_port, 9999);
        assert_eq!(a.dry_run, DryRun::Client);
    }

    #[test]
    fn defaults_and_refusals() {
        let s = args("kubectl-buildkit create").spec("default").unwrap();
        assert_eq!(s.name, "buildkitd");
        assert_eq!(s.replicas, 1);
        assert!(s.cache_size.is_none());
        assert!(args("kubectl-buildkit create Bad").spec("d").is_err());
        assert!(args("kubectl-buildkit create --storage-class x")
            .spec("d")
            .is_err());
        assert!(args("kubectl-buildkit create --no-rbac --bind-user a")
            .spec("d")
            .is_err());
        assert!(args("kubectl-buildkit create --cache-size lots")
            .spec("d")
            .is_err());
        assert!(Cli::try_parse_from(["kubectl-buildkit", "create", "--replicas", "-1"]).is_err());
        assert!(Cli::try_parse_from(["kubectl-buildkit", "create", "--dry-run=maybe"]).is_err());
        let a = args("kubectl-buildkit create --wait=false --dry-run");
        assert!(!a.wait);
        assert_eq!(a.dry_run, DryRun::Client);
    }

    #[test]
    fn global_flags_before_or_after_the_subcommand() {
        let a = Cli::try_parse_from(["kubectl-buildkit", "-n", "ns1", "--context", "c", "pods"])
            .unwrap();
        let b = Cli::try_parse_from(["kubectl-buildkit", "pods", "-n", "ns1", "--context", "c"])
            .unwrap();
        for cli in [a, b] {
            assert_eq!(cli.kube.namespace.as_deref(), Some("ns1"));
            assert_eq!(cli.kube.context.as_deref(), Some("c"));
        }
    }

    #[test]
    fn original_wrapper_flag_names_still_work() {
        let cli = Cli::try_parse_from([
            "kubectl-buildkit",
            "pods",
            "--kube-pod-selector",
            "app=bk",
            "--kube-pod-balancing-hash-key",
            "k",
        ])
        .unwrap();
        let Command::Pods(p) = cli.command else {
            panic!("pods")
        };
        assert_eq!(p.select.selector, "app=bk");
        assert_eq!(p.select.hash_key.as_deref(), Some("k"));
    }

    #[test]
    fn verbosity_counts_and_clap_is_consistent() {
        let cli = Cli::try_parse_from(["kubectl-buildkit", "-vvv", "version"]).unwrap();
        assert_eq!(cli.kube.verbose, 3);
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
