//! The flags of `kubectl buildkit build` that describe the build itself. The lead
//! flattens them into the `build` subcommand next to the selection and tunnel flags.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Which client runs the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuildClient {
    /// buildctl, through a tunnel to a buildkitd pod (or to --addr)
    Buildctl,
    /// docker build with BuildKit on the local docker daemon
    Docker,
}

/// Progress output style, as buildctl and docker name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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

#[derive(Debug, Clone, Args)]
pub struct BuildFlags {
    /// Build context directory (default: $BUILD_CONTEXT, else the current directory)
    // The id keeps clear of the global --context (the kubeconfig context).
    #[arg(id = "build_context", value_name = "CONTEXT")]
    pub context: Option<PathBuf>,

    /// Client that runs the build
    #[arg(long, value_enum, default_value_t = BuildClient::Buildctl)]
    pub cli: BuildClient,
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
    pub progress: Option<Progress>,
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
    #[arg(long, value_name = "NAME", default_value = "dockerfile.v0")]
    pub frontend: String,

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::spec::resolve;
    use crate::build::testkit::{self, Tree};
    use crate::build::{buildctl, docker};
    use crate::cli::{KubeFlags, SelectionFlags, TunnelFlags};
    use clap::{CommandFactory, Parser, Subcommand};
    use proptest::prelude::*;

    /// The shape of the `build` subcommand: global kube flags, then selection, tunnel
    /// and build flags side by side.
    #[derive(Debug, Parser)]
    #[command(name = "kubectl-buildkit")]
    struct TestCli {
        #[command(flatten)]
        kube: KubeFlags,
        #[command(subcommand)]
        command: TestCommand,
    }

    #[derive(Debug, Subcommand)]
    enum TestCommand {
        Build(TestBuild),
    }

    #[derive(Debug, Args)]
    struct TestBuild {
        #[command(flatten)]
        select: SelectionFlags,
        #[command(flatten)]
        tunnel: TunnelFlags,
        #[command(flatten)]
        build: BuildFlags,
    }

    fn parse(line: &str) -> Result<(KubeFlags, SelectionFlags, BuildFlags), clap::Error> {
        let cli = TestCli::try_parse_from(line.split_whitespace())?;
        let TestCommand::Build(b) = cli.command;
        Ok((cli.kube, b.select, b.build))
    }

    #[test]
    fn clap_is_consistent_next_to_the_other_flags() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let (_, _, b) = parse("kubectl-buildkit build").unwrap();
        assert_eq!(b.cli, BuildClient::Buildctl);
        assert_eq!(b.buildctl, PathBuf::from("buildctl"));
        assert_eq!(b.docker, PathBuf::from("docker"));
        assert_eq!(b.frontend, "dockerfile.v0");
        assert!(b.context.is_none() && b.file.is_none() && b.tags.is_empty());
        assert!(!b.push && !b.no_push && !b.load && !b.no_load);
    }

    #[test]
    fn the_original_wrapper_readme_command_lines_parse() {
        // README.md of daisaru11/skaffold-buildkit-wrapper, local docker daemon:
        let (_, _, b) = parse(
            "kubectl-buildkit build --cli docker --secret id=gitconfig,src=.gitconfig \
             --build-arg TEST=test1 --file sample.Dockerfile",
        )
        .unwrap();
        assert_eq!(b.cli, BuildClient::Docker);
        assert_eq!(b.secrets, ["id=gitconfig,src=.gitconfig"]);
        assert_eq!(b.build_args, ["TEST=test1"]);
        assert_eq!(b.file, Some(PathBuf::from("sample.Dockerfile")));

        // README.md, buildkitd cluster in Kubernetes:
        let (_, s, b) = parse(
            "kubectl-buildkit build --cli buildctl --kube-pod-selector app=buildkitd \
             --kube-pod-balancing-hash-key daisaru11/skaffold-buildkit-wrapper-example \
             --secret id=gitconfig,src=.gitconfig --build-arg TEST=test1 --file sample.Dockerfile",
        )
        .unwrap();
        assert_eq!(b.cli, BuildClient::Buildctl);
        assert_eq!(s.selector, "app=buildkitd");
        assert_eq!(
            s.hash_key.as_deref(),
            Some("daisaru11/skaffold-buildkit-wrapper-example")
        );
        assert_eq!(b.secrets, ["id=gitconfig,src=.gitconfig"]);

        // example/k8s_buildkitd/skaffold.yaml:
        let (_, _, b) = parse(
            "kubectl-buildkit build --cli buildctl --addr=kube-pod://buildkitd-0 \
             --secret id=gitconfig,src=.gitconfig --build-arg TEST=test1 --file sample.Dockerfile",
        )
        .unwrap();
        assert_eq!(b.addr.as_deref(), Some("kube-pod://buildkitd-0"));
    }

    #[test]
    fn repeatable_and_aliased_flags() {
        let (k, _, b) = parse(
            "kubectl-buildkit build ctx -t a:1 --tag b:2 --platform linux/amd64,linux/arm64 \
             --platform linux/s390x --cache-to type=inline --export-cache type=local,dest=/c \
             --cache-from r:cache --import-cache type=local,src=/c -o type=local,dest=/o \
             --output type=tar,dest=/t --opt a=b --opt c=d --progress plain --context kctx \
             -- --allow network.host",
        )
        .unwrap();
        assert_eq!(b.context, Some(PathBuf::from("ctx")));
        assert_eq!(k.context.as_deref(), Some("kctx"));
        assert_eq!(b.tags, ["a:1", "b:2"]);
        assert_eq!(b.platforms, ["linux/amd64", "linux/arm64", "linux/s390x"]);
        assert_eq!(b.export_cache, ["type=inline", "type=local,dest=/c"]);
        assert_eq!(b.import_cache, ["r:cache", "type=local,src=/c"]);
        assert_eq!(b.outputs, ["type=local,dest=/o", "type=tar,dest=/t"]);
        assert_eq!(b.opts, ["a=b", "c=d"]);
        assert_eq!(b.progress, Some(Progress::Plain));
        assert_eq!(b.extra, ["--allow", "network.host"]);
    }

    /// The values that follow each `flag` in an argv.
    fn values_of(argv: &[String], flag: &str) -> Vec<String> {
        argv.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    /// A valid --ssh value, as buildctl and docker take it: default|ID[=SOCKET|KEY[,KEY]].
    fn ssh_spec() -> impl Strategy<Value = String> {
        let id = "default|[a-z][a-z0-9_-]{0,10}";
        let path = "/?[A-Za-z0-9._-]{1,8}(/[A-Za-z0-9._-]{1,8}){0,3}";
        (id, prop::collection::vec(path, 0..4)).prop_map(|(id, paths)| {
            if paths.is_empty() {
                id
            } else {
                format!("{id}={}", paths.join(","))
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Valid --ssh values, repeated, in both spellings (`--ssh V`, `--ssh=V`): clap
        /// reads them back unchanged, resolve accepts them, and buildctl and docker get
        /// them verbatim, in order.
        #[test]
        fn valid_ssh_specs_round_trip(specs in prop::collection::vec(ssh_spec(), 1..4), joined in any::<bool>()) {
            let mut line = vec!["kubectl-buildkit".to_string(), "build".to_string(), "ctx".to_string()];
            for spec in &specs {
                if joined {
                    line.push(format!("--ssh={spec}"));
                } else {
                    line.push("--ssh".to_string());
                    line.push(spec.clone());
                }
            }
            let cli = TestCli::try_parse_from(&line).unwrap();
            let TestCommand::Build(b) = cli.command;
            prop_assert_eq!(&b.build.ssh, &specs);
            let t = Tree::new();
            let spec = resolve(&b.build, &testkit::env(&[]), &t.root).unwrap();
            prop_assert_eq!(&spec.ssh, &specs);
            prop_assert_eq!(values_of(&buildctl::argv(&spec, "unix:///s"), "--ssh"), specs.clone());
            prop_assert_eq!(values_of(&docker::build_argv(&spec), "--ssh"), specs);
        }

        /// Arbitrary --ssh values: no panic; a blank one is an error naming --ssh, any
        /// other reaches buildctl exactly as given.
        #[test]
        fn any_ssh_value_is_refused_when_blank_and_passed_verbatim_otherwise(raw in "\\PC{0,40}|[ \t]{0,3}") {
            let t = Tree::new();
            let mut flags = testkit::flags(&["ctx"]);
            flags.ssh = vec![raw.clone()];
            match resolve(&flags, &testkit::env(&[]), &t.root) {
                Ok(spec) => {
                    prop_assert!(!raw.trim().is_empty(), "{:?} accepted", raw);
                    prop_assert_eq!(values_of(&buildctl::argv(&spec, "unix:///s"), "--ssh"), vec![raw]);
                }
                Err(e) => {
                    prop_assert!(raw.trim().is_empty(), "{:?}: {}", raw, e);
                    prop_assert!(e.to_string().contains("--ssh"), "{}", e);
                }
            }
        }
    }

    #[test]
    fn conflicting_flags_are_usage_errors() {
        for line in [
            "kubectl-buildkit build --push --no-push",
            "kubectl-buildkit build --load --no-load",
            "kubectl-buildkit build --tlsdir d --tlscert c",
            "kubectl-buildkit build --tlsdir d --tlskey k",
            "kubectl-buildkit build --tlsdir d --tlscacert c",
            "kubectl-buildkit build --progress fancy",
            "kubectl-buildkit build --cli podman",
        ] {
            let err = parse(line).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{line}");
        }
    }
}
