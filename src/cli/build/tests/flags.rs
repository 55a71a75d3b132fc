//! Each build flag, to the exact argv of both clients.

use super::testkit::{self, strings, Tree};
use super::{pairs, skaffold_env, ADDR};
use kubectl_buildkit::build::{buildctl, csv, docker};

#[test]
fn dockerfile_outside_the_context() {
    let t = Tree::new();
    let spec = testkit::resolve(
        &["-f", "../other/Dockerfile", "-t", "a:1", "."],
        &[],
        &t.path("ctx"),
    )
    .unwrap();
    let argv = buildctl::argv(&spec, ADDR);
    let ctx = t.s("ctx");
    assert_eq!(
        argv[5..11],
        strings(&[
            "--local",
            &format!("context={ctx}"),
            "--local",
            &format!("dockerfile={}", t.s("other")),
            "--opt",
            "filename=Dockerfile",
        ])
    );
    assert_eq!(
        docker::build_argv(&spec)[..3],
        strings(&["build", "-f", &t.s("other/Dockerfile")])
    );
    assert_eq!(docker::build_argv(&spec).last(), Some(&ctx));
}

#[test]
fn build_args_secrets_ssh_and_caches() {
    let t = Tree::new();
    let npmrc = t.s("npmrc");
    let secret = format!("id=npm,src={npmrc}");
    let spec = testkit::resolve(
        &[
            "ctx",
            "-t",
            "a:1",
            "--build-arg",
            "A=1",
            "--build-arg",
            "HOME",
            "--build-arg",
            "UNSET",
            "--secret",
            &secret,
            "--secret",
            "id=tok,env=TOKEN",
            "--ssh",
            "default",
            "--export-cache",
            "type=registry,ref=r/a:cache,mode=max",
            "--cache-to",
            "type=inline",
            "--import-cache",
            "type=registry,ref=r/a:cache",
            "--cache-from",
            "r/a:old",
        ],
        &[("HOME", "/home/me")],
        &t.root,
    )
    .unwrap();
    assert_eq!(spec.notes.len(), 1, "{:?}", spec.notes);
    assert!(spec.notes[0].contains("UNSET"));
    let argv = buildctl::argv(&spec, ADDR);
    assert_eq!(
        argv[11..],
        strings(&[
            "--opt",
            "build-arg:A=1",
            "--opt",
            "build-arg:HOME=/home/me",
            "--secret",
            &secret,
            "--secret",
            "id=tok,env=TOKEN",
            "--ssh",
            "default",
            "--export-cache",
            "type=registry,ref=r/a:cache,mode=max",
            "--export-cache",
            "type=inline",
            "--import-cache",
            "type=registry,ref=r/a:cache",
            "--import-cache",
            "type=registry,ref=r/a:old",
            "--output",
            "type=docker,name=a:1",
        ])
    );
    let ctx = t.s("ctx");
    assert_eq!(
        docker::build_argv(&spec),
        strings(&[
            "build",
            "-f",
            &format!("{ctx}/Dockerfile"),
            "-t",
            "a:1",
            "--build-arg",
            "A=1",
            "--build-arg",
            "HOME=/home/me",
            "--secret",
            &secret,
            "--secret",
            "id=tok,env=TOKEN",
            "--ssh",
            "default",
            "--cache-from",
            "type=registry,ref=r/a:cache",
            "--cache-from",
            "r/a:old",
            "--cache-to",
            "type=registry,ref=r/a:cache,mode=max",
            "--cache-to",
            "type=inline",
            &ctx,
        ])
    );
}

#[test]
fn raw_outputs_replace_tags_push_and_load() {
    let t = Tree::new();
    let env = skaffold_env(&t, "true", "");
    let spec = testkit::resolve(
        &[
            "-o",
            "type=local,dest=out",
            "--output",
            "type=registry,name=r/x:1",
        ],
        &pairs(&env),
        &t.path("ctx"),
    )
    .unwrap();
    assert!(spec.notes[0].contains("reg/app:v1"));
    let argv = buildctl::argv(&spec, ADDR);
    assert_eq!(
        argv[argv.len() - 4..],
        strings(&[
            "--output",
            "type=local,dest=out",
            "--output",
            "type=image,name=r/x:1,push=true",
        ])
    );
    let argv = docker::build_argv(&spec);
    assert!(!argv.contains(&"-t".to_string()), "{argv:?}");
    assert_eq!(
        argv[argv.len() - 5..argv.len() - 1],
        strings(&[
            "--output",
            "type=local,dest=out",
            "--output",
            "type=registry,name=r/x:1"
        ])
    );
    assert!(docker::push_argvs(&spec).is_empty());
}

#[test]
fn extra_args_after_the_double_dash() {
    let t = Tree::new();
    let spec = testkit::resolve(
        &["ctx", "-t", "a:1", "--", "--allow", "network.host"],
        &[],
        &t.root,
    )
    .unwrap();
    let argv = buildctl::argv(&spec, ADDR);
    assert_eq!(
        argv[argv.len() - 4..],
        strings(&[
            "--output",
            "type=docker,name=a:1",
            "--allow",
            "network.host"
        ])
    );
    let argv = docker::build_argv(&spec);
    assert_eq!(
        argv[argv.len() - 3..],
        strings(&["--allow", "network.host", &t.s("ctx")])
    );
}

#[test]
fn several_tags_with_push_are_one_quoted_name_list() {
    let t = Tree::new();
    let spec = testkit::resolve(
        &["ctx", "-t", "r/a:1", "-t", "r/a:latest", "--push"],
        &[],
        &t.root,
    )
    .unwrap();
    let argv = buildctl::argv(&spec, ADDR);
    assert_eq!(
        argv[argv.len() - 2..],
        strings(&["--output", "type=image,\"name=r/a:1,r/a:latest\",push=true"])
    );
    assert_eq!(
        csv::split(&argv[argv.len() - 1]).unwrap(),
        ["type=image", "name=r/a:1,r/a:latest", "push=true"]
    );
    assert_eq!(
        docker::push_argvs(&spec),
        [
            strings(&["push", "r/a:1"]),
            strings(&["push", "r/a:latest"])
        ]
    );
    // Without push, docker load gets every name.
    let spec = testkit::resolve(&["ctx", "-t", "r/a:1", "-t", "r/a:latest"], &[], &t.root).unwrap();
    assert_eq!(
        buildctl::argv(&spec, ADDR).last().unwrap(),
        "type=docker,\"name=r/a:1,r/a:latest\""
    );
}

#[test]
fn every_flag_in_order() {
    let t = Tree::new();
    let spec = testkit::resolve(
        &[
            "ctx",
            "-t",
            "a:1",
            "--push",
            "--target",
            "prod",
            "--platform",
            "linux/arm64",
            "--build-arg",
            "A=1",
            "--label",
            "l=v",
            "--no-cache",
            "--progress",
            "plain",
            "--secret",
            "id=t,env=T",
            "--ssh",
            "default",
            "--cache-to",
            "type=inline",
            "--cache-from",
            "type=local,src=c",
            "--opt",
            "add-hosts=h=1.2.3.4",
            "--metadata-file",
            "meta.json",
            "--tlsservername",
            "bk",
            "--tlsdir",
            "tls",
            "--",
            "--debug-json-cache-metrics",
            "m.json",
        ],
        &[],
        &t.root,
    )
    .unwrap();
    let ctx = t.s("ctx");
    assert_eq!(
        buildctl::argv(&spec, "tcp://127.0.0.1:1234"),
        strings(&[
            "--addr",
            "tcp://127.0.0.1:1234",
            "--tlsservername",
            "bk",
            "--tlsdir",
            &t.s("tls"),
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
            "target=prod",
            "--opt",
            "platform=linux/arm64",
            "--opt",
            "build-arg:A=1",
            "--opt",
            "label:l=v",
            "--no-cache",
            "--progress",
            "plain",
            "--secret",
            "id=t,env=T",
            "--ssh",
            "default",
            "--export-cache",
            "type=inline",
            "--import-cache",
            "type=local,src=c",
            "--opt",
            "add-hosts=h=1.2.3.4",
            "--metadata-file",
            &t.s("meta.json"),
            "--output",
            "type=image,name=a:1,push=true",
            "--debug-json-cache-metrics",
            "m.json",
        ])
    );
    // docker refuses what only buildctl knows, naming the flag.
    let msg = docker::check(&spec).unwrap_err().to_string();
    assert!(
        msg.contains("--opt add-hosts") && msg.contains("--cli docker"),
        "{msg}"
    );
    let mut s = spec.clone();
    s.opts.clear();
    let msg = docker::check(&s).unwrap_err().to_string();
    assert!(msg.contains("--tlsdir"), "{msg}");
    s.tls = Default::default();
    docker::check(&s).unwrap();
    s.frontend = "gateway.v0".into();
    assert!(docker::check(&s)
        .unwrap_err()
        .to_string()
        .contains("--frontend gateway.v0"));
    s.frontend = "dockerfile.v0".into();
    s.addr = Some("tcp://bk:1234".into());
    assert!(docker::check(&s)
        .unwrap_err()
        .to_string()
        .contains("--addr tcp://bk:1234"));
    s.addr = None;
    assert_eq!(
        docker::build_argv(&s),
        strings(&[
            "build",
            "-f",
            &format!("{ctx}/Dockerfile"),
            "-t",
            "a:1",
            "--build-arg",
            "A=1",
            "--secret",
            "id=t,env=T",
            "--ssh",
            "default",
            "--target",
            "prod",
            "--platform",
            "linux/arm64",
            "--label",
            "l=v",
            "--no-cache",
            "--progress",
            "plain",
            "--cache-from",
            "type=local,src=c",
            "--cache-to",
            "type=inline",
            "--metadata-file",
            &t.s("meta.json"),
            "--debug-json-cache-metrics",
            "m.json",
            &ctx,
        ])
    );
}

#[test]
fn explicit_load_reaches_docker() {
    let t = Tree::new();
    let spec = testkit::resolve(&["ctx", "-t", "a:1", "--load"], &[], &t.root).unwrap();
    let argv = docker::build_argv(&spec);
    assert_eq!(argv[argv.len() - 2..], strings(&["--load", &t.s("ctx")]));
}
