//! The flags of `kubectl buildkit build` that describe the build itself, flattened
//! into the `build` subcommand next to the selection and tunnel flags. They become
//! the library's plain [`BuildOptions`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use kubectl_buildkit::build::options::{BuildClient, BuildOptions, Progress};

#[cfg(test)]
mod tests;

/// Which client runs the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientArg {
    /// our own BuildKit client, straight into the tunnel (no buildctl needed)
    Builtin,
    /// buildctl, through a tunnel to a buildkitd pod (or to --addr)
    Buildctl,
    /// docker build with BuildKit on the local docker daemon
    Docker,
}

/// Progress output style, as buildctl and docker name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    Auto,
    Plain,
    Tty,
    Rawjson,
    Quiet,
}

impl From<ClientArg> for BuildClient {
    fn from(c: ClientArg) -> Self {
        match c {
            ClientArg::Builtin => BuildClient::Builtin,
            ClientArg::Buildctl => BuildClient::Buildctl,
            ClientArg::Docker => BuildClient::Docker,
        }
    }
}

impl From<ProgressArg> for Progress {
    fn from(p: ProgressArg) -> Self {
        match p {
            ProgressArg::Auto => Progress::Auto,
            ProgressArg::Plain => Progress::Plain,
            ProgressArg::Tty => Progress::Tty,
            ProgressArg::Rawjson => Progress::Rawjson,
            ProgressArg::Quiet => Progress::Quiet,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct BuildFlags {
    /// Build context directory (default: $BUILD_CONTEXT, else the current directory)
    // The id keeps clear of the global --context (the kubeconfig context).
    #[arg(id = "build_context", value_name = "CONTEXT")]
    pub context: Option<PathBuf>,

    /// Client that runs the build
    #[arg(long, value_enum, default_value_t = ClientArg::Builtin, env = "KUBECTL_BUILDKIT_CLI")]
    pub cli: ClientArg,
    /// The buildctl program to run
    #[arg(long, value_name = "PATH", default_value = "buildctl")]
    pub buildctl: PathBuf,
    /// The docker program to run (for --cli docker, and `docker load` without push)
    #[arg(long, value_name = "PATH", default_value = "docker")]
    pub docker: PathBuf,

    /// The Dockerfile, relative to the current directory as with docker
    /// (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Image name and tag (repeatable; default: $IMAGE)
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Push the image to its registry (default: $PUSH_IMAGE, else no push)
    #[arg(long, conflicts_with = "no_push")]
    pub push: bool,
    /// Don't push, whatever $PUSH_IMAGE says
    #[arg(long)]
    pub no_push: bool,
    /// Load the image into the local docker daemon (the default when not pushing)
    #[arg(long, conflicts_with = "no_load")]
    pub load: bool,
    /// Don't load the image into the local docker daemon when not pushing: build only
    #[arg(long)]
    pub no_load: bool,

    /// Build argument (repeatable); a bare KEY takes its value from the environment
    /// and is left out when unset, as with docker
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Secret for RUN --mount=type=secret, as buildctl and docker take it (repeatable):
    /// id=ID[,src=PATH|,env=VAR][,type=file|env]
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// SSH agent socket or keys for RUN --mount=type=ssh (repeatable):
    /// default|ID[=SOCKET|KEY[,KEY]]
    #[arg(long, value_name = "SPEC")]
    pub ssh: Vec<String>,
    /// Dockerfile stage to build
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Target platform (repeatable or comma-separated; default: $PLATFORMS)
    #[arg(long = "platform", value_name = "OS/ARCH", value_delimiter = ',')]
    pub platforms: Vec<String>,
    /// Image label (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Don't use the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// Progress output style
    #[arg(long, value_enum, value_name = "STYLE")]
    pub progress: Option<ProgressArg>,
    /// Cache export, e.g. type=registry,ref=REPO:cache,mode=max (repeatable)
    #[arg(long = "export-cache", visible_alias = "cache-to", value_name = "SPEC")]
    pub export_cache: Vec<String>,
    /// Cache import, e.g. type=registry,ref=REPO:cache (repeatable)
    #[arg(
        long = "import-cache",
        visible_alias = "cache-from",
        value_name = "SPEC"
    )]
    pub import_cache: Vec<String>,
    /// Output, as buildctl takes it, e.g. type=local,dest=DIR (repeatable); replaces the
    /// output chosen from the tags, --push and --load
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Frontend option passed to buildctl as --opt (repeatable)
    #[arg(long = "opt", value_name = "KEY=VALUE")]
    pub opts: Vec<String>,
    /// Write the build result metadata (image digest...) to this JSON file
    #[arg(long, value_name = "PATH")]
    pub metadata_file: Option<PathBuf>,
    /// Frontend to use (buildctl)
    #[arg(long, value_name = "NAME", default_value = kubectl_buildkit::build::spec::DEFAULT_FRONTEND)]
    pub frontend: String,

    /// Network for RUN steps: default, none, or host (needs --allow network.host on
    /// the daemon's side)
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Extra /etc/hosts entry for RUN steps (repeatable)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    /// Extra privileged entitlement: network.host, security.insecure (repeatable)
    #[arg(long, value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// A named local context for `FROM NAME` / `COPY --from=NAME` (repeatable)
    #[arg(long = "build-context", value_name = "NAME=DIR")]
    pub build_contexts: Vec<String>,

    /// Address of a buildkitd to use directly, as buildctl takes it
    /// (tcp://HOST:PORT, unix://PATH, kube-pod://POD...): no pod selection, no tunnel
    #[arg(long, value_name = "ADDR")]
    pub addr: Option<String>,
    /// Server name for buildkitd's TLS certificate
    #[arg(long, value_name = "NAME")]
    pub tlsservername: Option<String>,
    /// CA certificate for buildkitd's TLS
    #[arg(long, value_name = "PATH", conflicts_with = "tlsdir")]
    pub tlscacert: Option<PathBuf>,
    /// Client certificate for buildkitd's TLS
    #[arg(long, value_name = "PATH", conflicts_with = "tlsdir")]
    pub tlscert: Option<PathBuf>,
    /// Client key for buildkitd's TLS
    #[arg(long, value_name = "PATH", conflicts_with = "tlsdir")]
    pub tlskey: Option<PathBuf>,
    /// Directory holding ca.pem, cert.pem and key.pem (instead of the three files)
    #[arg(long, value_name = "DIR")]
    pub tlsdir: Option<PathBuf>,

    /// Further arguments for `buildctl build` or `docker build`, after `--`
    #[arg(last = true, value_name = "ARGS")]
    pub extra: Vec<String>,
}

impl BuildFlags {
    /// The library's view of these flags.
    pub fn options(&self) -> BuildOptions {
        let f = self.clone();
        BuildOptions {
            context: f.context,
            cli: f.cli.into(),
            buildctl: f.buildctl,
            docker: f.docker,
            file: f.file,
            tags: f.tags,
            push: f.push,
            no_push: f.no_push,
            load: f.load,
            no_load: f.no_load,
            build_args: f.build_args,
            secrets: f.secrets,
            ssh: f.ssh,
            target: f.target,
            platforms: f.platforms,
            labels: f.labels,
            no_cache: f.no_cache,
            progress: f.progress.map(Into::into),
            export_cache: f.export_cache,
            import_cache: f.import_cache,
            outputs: f.outputs,
            opts: f.opts,
            metadata_file: f.metadata_file,
            frontend: f.frontend,
            network: f.network,
            add_hosts: f.add_hosts,
            allow: f.allow,
            build_contexts: f.build_contexts,
            addr: f.addr,
            tlsservername: f.tlsservername,
            tlscacert: f.tlscacert,
            tlscert: f.tlscert,
            tlskey: f.tlskey,
            tlsdir: f.tlsdir,
            extra: f.extra,
        }
    }
}
