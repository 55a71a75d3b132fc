//! The build flags as clap parses them, next to the other flags of `build`.

use super::super::*;
use super::testkit::{self, Tree};
use crate::cli::{KubeFlags, SelectionFlags, TunnelFlags};
use clap::{CommandFactory, Parser, Subcommand};
use kubectl_buildkit::build::spec::resolve;
use kubectl_buildkit::build::{buildctl, docker};
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
    assert_eq!(b.cli, ClientArg::Builtin);
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
    assert_eq!(b.cli, ClientArg::Docker);
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
    assert_eq!(b.cli, ClientArg::Buildctl);
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
    assert_eq!(b.progress, Some(ProgressArg::Plain));
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
        let spec = resolve(&b.build.options(), &testkit::env(&[]), &t.root).unwrap();
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
        match resolve(&flags.options(), &testkit::env(&[]), &t.root) {
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
