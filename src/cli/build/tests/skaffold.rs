//! skaffold's custom builder contract, and the original wrapper's command lines.

use super::testkit::{self, strings, Tree};
use super::{pairs, skaffold_env, ADDR};
use kubectl_buildkit::build::spec::Export;
use kubectl_buildkit::build::{buildctl, docker};

#[test]
fn skaffold_push() {
    let t = Tree::new();
    let env = skaffold_env(&t, "true", "linux/amd64,linux/arm64");
    let spec = testkit::resolve(&[], &pairs(&env), &t.path("ctx")).unwrap();
    assert!(spec.notes.is_empty(), "{:?}", spec.notes);
    let ctx = t.s("ctx");
    assert_eq!(
        buildctl::argv(&spec, ADDR),
        strings(&[
            "--addr",
            ADDR,
            "build",
            "--frontend",
            "dockerfile.v0",
            "--local",
            &format!("context={ctx}"),
            "--local",
            &format!("dockerfile={ctx}"),
            "--opt",
            "filename=Dockerfile",
            "--opt",
            "platform=linux/amd64,linux/arm64",
            "--output",
            "type=image,name=reg/app:v1,push=true",
        ])
    );
    docker::check(&spec).unwrap();
    assert_eq!(
        docker::build_argv(&spec),
        strings(&[
            "build",
            "-f",
            &format!("{ctx}/Dockerfile"),
            "-t",
            "reg/app:v1",
            "--platform",
            "linux/amd64,linux/arm64",
            &ctx,
        ])
    );
    assert_eq!(
        docker::push_argvs(&spec),
        [strings(&["push", "reg/app:v1"])]
    );
    assert_eq!(docker::BUILD_ENV, [("DOCKER_BUILDKIT", "1")]);
}

#[test]
fn skaffold_no_push_loads_into_docker() {
    let t = Tree::new();
    let env = skaffold_env(&t, "false", "");
    let spec = testkit::resolve(&[], &pairs(&env), &t.path("ctx")).unwrap();
    assert_eq!(
        spec.export,
        Export::DockerLoad {
            names: vec!["reg/app:v1".into()]
        }
    );
    let ctx = t.s("ctx");
    assert_eq!(
        buildctl::argv(&spec, ADDR),
        strings(&[
            "--addr",
            ADDR,
            "build",
            "--frontend",
            "dockerfile.v0",
            "--local",
            &format!("context={ctx}"),
            "--local",
            &format!("dockerfile={ctx}"),
            "--opt",
            "filename=Dockerfile",
            "--output",
            "type=docker,name=reg/app:v1",
        ])
    );
    assert_eq!(
        docker::build_argv(&spec),
        strings(&[
            "build",
            "-f",
            &format!("{ctx}/Dockerfile"),
            "-t",
            "reg/app:v1",
            &ctx
        ])
    );
    assert!(docker::push_argvs(&spec).is_empty());
}

#[test]
fn skaffold_errors() {
    let t = Tree::new();
    let env = skaffold_env(&t, "false", "linux/amd64,linux/arm64");
    let e = testkit::resolve(&[], &pairs(&env), &t.path("ctx")).unwrap_err();
    assert!(e.to_string().contains("use --push"), "{e}");
    let env = skaffold_env(&t, "yes", "");
    let e = testkit::resolve(&[], &pairs(&env), &t.path("ctx")).unwrap_err();
    assert!(e.to_string().contains("PUSH_IMAGE=\"yes\""), "{e}");
}

#[test]
fn no_tag_builds_only() {
    let t = Tree::new();
    let spec = testkit::resolve(&["ctx"], &[], &t.root).unwrap();
    assert_eq!(spec.export, Export::BuildOnly);
    assert_eq!(spec.notes.len(), 1);
    let argv = buildctl::argv(&spec, ADDR);
    assert!(!argv.contains(&"--output".to_string()), "{argv:?}");
    let argv = docker::build_argv(&spec);
    assert!(!argv.contains(&"-t".to_string()), "{argv:?}");
}

/// The command lines of daisaru11/skaffold-buildkit-wrapper's README and examples, as
/// skaffold runs them: in the context directory, with skaffold's environment.
#[test]
fn the_original_wrapper_command_lines() {
    let t = Tree::new();
    let env = skaffold_env(&t, "false", "");
    let ctx = t.s("ctx");
    let args =
        |line: &str| -> Vec<String> { line.split_whitespace().skip(2).map(String::from).collect() };

    let line = args(
        "skaffold-buildkit-wrapper build --cli docker --secret id=gitconfig,src=.gitconfig \
         --build-arg TEST=test1 --file sample.Dockerfile",
    );
    let line: Vec<&str> = line.iter().map(String::as_str).collect();
    let spec = testkit::resolve(&line, &pairs(&env), &t.path("ctx")).unwrap();
    docker::check(&spec).unwrap();
    assert_eq!(
        docker::build_argv(&spec),
        strings(&[
            "build",
            "-f",
            &format!("{ctx}/sample.Dockerfile"),
            "-t",
            "reg/app:v1",
            "--build-arg",
            "TEST=test1",
            "--secret",
            "id=gitconfig,src=.gitconfig",
            &ctx,
        ])
    );

    for line in [
        "skaffold-buildkit-wrapper build --cli buildctl --kube-pod-selector app=buildkitd \
         --kube-pod-balancing-hash-key daisaru11/skaffold-buildkit-wrapper-example \
         --secret id=gitconfig,src=.gitconfig --build-arg TEST=test1 --file sample.Dockerfile",
        "skaffold-buildkit-wrapper build --cli buildctl --addr=kube-pod://buildkitd-0 \
         --secret id=gitconfig,src=.gitconfig --build-arg TEST=test1 --file sample.Dockerfile",
    ] {
        // The selection flags are the lead's; here only the build flags are parsed.
        let line: Vec<String> = args(line)
            .into_iter()
            .filter(|a| !a.starts_with("app=") && !a.starts_with("daisaru11/"))
            .filter(|a| !a.starts_with("--kube-pod"))
            .collect();
        let line: Vec<&str> = line.iter().map(String::as_str).collect();
        let spec = testkit::resolve(&line, &pairs(&env), &t.path("ctx")).unwrap();
        let addr = spec.addr.clone().unwrap_or_else(|| ADDR.to_string());
        assert_eq!(
            buildctl::argv(&spec, &addr),
            strings(&[
                "--addr",
                &addr,
                "build",
                "--frontend",
                "dockerfile.v0",
                "--local",
                &format!("context={ctx}"),
                "--local",
                &format!("dockerfile={ctx}"),
                "--opt",
                "filename=sample.Dockerfile",
                "--opt",
                "build-arg:TEST=test1",
                "--secret",
                "id=gitconfig,src=.gitconfig",
                "--output",
                "type=docker,name=reg/app:v1",
            ])
        );
    }
}
