//! What describes a build, as plain values: the binary fills [`BuildOptions`] from
//! `kubectl buildkit build`'s flags; [`super::spec::resolve`] adds skaffold's
//! environment and checks it all.

use std::path::PathBuf;

/// Which client runs the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildClient {
    /// Our own BuildKit client, straight into the tunnel (no buildctl needed)
    Builtin,
    /// buildctl, through a tunnel to a buildkitd pod (or to --addr)
    Buildctl,
    /// docker build with BuildKit on the local docker daemon
    Docker,
}

/// Progress output style, as buildctl and docker name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Auto,
    Plain,
    Tty,
    Rawjson,
    Quiet,
}

impl Progress {
    pub fn as_str(self) -> &'static str {
        match self {
            Progress::Auto => "auto",
            Progress::Plain => "plain",
            Progress::Tty => "tty",
            Progress::Rawjson => "rawjson",
            Progress::Quiet => "quiet",
        }
    }
}

/// Everything a build is asked for, before skaffold's environment fills the gaps.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Build context directory (default: $BUILD_CONTEXT, else the current directory)
    pub context: Option<PathBuf>,

    /// Client that runs the build
    pub cli: BuildClient,
    /// The buildctl program to run
    pub buildctl: PathBuf,
    /// The docker program to run (for --cli docker, and `docker load` without push)
    pub docker: PathBuf,

    /// The Dockerfile, relative to the current directory as with docker
    /// (default: CONTEXT/Dockerfile)
    pub file: Option<PathBuf>,
    /// Image name and tag (repeatable; default: $IMAGE)
    pub tags: Vec<String>,
    /// Push the image to its registry (default: $PUSH_IMAGE, else no push)
    pub push: bool,
    /// Don't push, whatever $PUSH_IMAGE says
    pub no_push: bool,
    /// Load the image into the local docker daemon (the default when not pushing)
    pub load: bool,
    /// Don't load the image into the local docker daemon when not pushing: build only
    pub no_load: bool,

    /// Build argument (repeatable); a bare KEY takes its value from the environment
    /// and is left out when unset, as with docker
    pub build_args: Vec<String>,
    /// Secret for RUN --mount=type=secret, as buildctl and docker take it (repeatable):
    /// id=ID[,src=PATH|,env=VAR][,type=file|env]
    pub secrets: Vec<String>,
    /// SSH agent socket or keys for RUN --mount=type=ssh (repeatable):
    /// default|ID[=SOCKET|KEY[,KEY]]
    pub ssh: Vec<String>,
    /// Dockerfile stage to build
    pub target: Option<String>,
    /// Target platform (repeatable or comma-separated; default: $PLATFORMS)
    pub platforms: Vec<String>,
    /// Image label (repeatable)
    pub labels: Vec<String>,
    /// Don't use the build cache
    pub no_cache: bool,
    /// Progress output style
    pub progress: Option<Progress>,
    /// Cache export, e.g. type=registry,ref=REPO:cache,mode=max (repeatable)
    pub export_cache: Vec<String>,
    /// Cache import, e.g. type=registry,ref=REPO:cache (repeatable)
    pub import_cache: Vec<String>,
    /// Output, as buildctl takes it, e.g. type=local,dest=DIR (repeatable); replaces the
    /// output chosen from the tags, --push and --load
    pub outputs: Vec<String>,
    /// Frontend option passed to buildctl as --opt (repeatable)
    pub opts: Vec<String>,
    /// Write the build result metadata (image digest...) to this JSON file
    pub metadata_file: Option<PathBuf>,
    /// Frontend to use (buildctl)
    pub frontend: String,
    /// Network for RUN steps: default, none or host (docker's --network)
    pub network: Option<String>,
    /// Extra /etc/hosts entries for RUN steps, HOST:IP (repeatable)
    pub add_hosts: Vec<String>,
    /// Extra privileges: network.host, security.insecure (repeatable)
    pub allow: Vec<String>,
    /// A named local context, NAME=DIR (repeatable): `FROM NAME` / `COPY --from=NAME`
    pub build_contexts: Vec<String>,

    /// Address of a buildkitd to use directly, as buildctl takes it
    /// (tcp://HOST:PORT, unix://PATH, kube-pod://POD...): no pod selection, no tunnel
    pub addr: Option<String>,
    /// Server name for buildkitd's TLS certificate
    pub tlsservername: Option<String>,
    /// CA certificate for buildkitd's TLS
    pub tlscacert: Option<PathBuf>,
    /// Client certificate for buildkitd's TLS
    pub tlscert: Option<PathBuf>,
    /// Client key for buildkitd's TLS
    pub tlskey: Option<PathBuf>,
    /// Directory holding ca.pem, cert.pem and key.pem (instead of the three files)
    pub tlsdir: Option<PathBuf>,

    /// Further arguments for `buildctl build` or `docker build`, after `--`
    pub extra: Vec<String>,
}

impl Default for BuildOptions {
    /// What `build` with no flags means.
    fn default() -> Self {
        BuildOptions {
            context: None,
            cli: BuildClient::Builtin,
            buildctl: PathBuf::from("buildctl"),
            docker: PathBuf::from("docker"),
            file: None,
            tags: Vec::new(),
            push: false,
            no_push: false,
            load: false,
            no_load: false,
            build_args: Vec::new(),
            secrets: Vec::new(),
            ssh: Vec::new(),
            target: None,
            platforms: Vec::new(),
            labels: Vec::new(),
            no_cache: false,
            progress: None,
            export_cache: Vec::new(),
            import_cache: Vec::new(),
            outputs: Vec::new(),
            opts: Vec::new(),
            metadata_file: None,
            frontend: super::spec::DEFAULT_FRONTEND.to_string(),
            network: None,
            add_hosts: Vec::new(),
            allow: Vec::new(),
            build_contexts: Vec::new(),
            addr: None,
            tlsservername: None,
            tlscacert: None,
            tlscert: None,
            tlskey: None,
            tlsdir: None,
            extra: Vec::new(),
        }
    }
}
