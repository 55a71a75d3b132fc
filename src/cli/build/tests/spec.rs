use super::testkit::{self, Tree};
use kubectl_buildkit::build::spec::*;
use proptest::prelude::*;
use std::path::Path;

fn err(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> String {
    match testkit::resolve(args, env, cwd) {
        Ok(spec) => panic!("{args:?} {env:?} resolved: {spec:?}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn context_from_argument_then_build_context_then_cwd() {
    let t = Tree::new();
    let env = [("BUILD_CONTEXT", t.s("other"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = testkit::resolve(&["ctx"], &env, &t.root).unwrap();
    assert_eq!(s.context, t.path("ctx"));
    let s = testkit::resolve(&[], &env, &t.root).unwrap();
    assert_eq!(s.context, t.path("other"));
    assert_eq!(s.dockerfile.path, t.path("other/Dockerfile"));
    let s = testkit::resolve(&[], &[], &t.path("ctx")).unwrap();
    assert_eq!(s.context, t.path("ctx"));
    // An empty BUILD_CONTEXT counts as unset.
    let s = testkit::resolve(&[], &[("BUILD_CONTEXT", "")], &t.path("ctx")).unwrap();
    assert_eq!(s.context, t.path("ctx"));
}

#[test]
fn a_missing_context_says_which_and_where_it_came_from() {
    let t = Tree::new();
    let msg = err(&["nope"], &[], &t.root);
    assert!(
        msg.contains(&t.s("nope")) && msg.contains("CONTEXT"),
        "{msg}"
    );
    let msg = err(&[], &[("BUILD_CONTEXT", "/does/not/exist")], &t.root);
    assert!(
        msg.contains("$BUILD_CONTEXT") && msg.contains("/does/not/exist"),
        "{msg}"
    );
    let msg = err(&["npmrc"], &[], &t.root);
    assert!(msg.contains("not a directory"), "{msg}");
    for remote in ["-", "https://github.com/a/b.git", "git@github.com:a/b.git"] {
        let msg = err(&[remote], &[], &t.root);
        assert!(msg.contains("only a local directory"), "{msg}");
    }
}

#[test]
fn dockerfile_is_relative_to_the_current_directory() {
    let t = Tree::new();
    let s = testkit::resolve(&["-f", "../other/Dockerfile", "."], &[], &t.path("ctx")).unwrap();
    assert_eq!(s.context, t.path("ctx"));
    assert_eq!(
        s.dockerfile,
        Dockerfile {
            path: t.path("other/Dockerfile"),
            dir: t.path("other"),
            name: "Dockerfile".into(),
        }
    );
    // Not relative to the context: from the root, ctx/sample.Dockerfile is the path.
    let s = testkit::resolve(&["-f", "ctx/sample.Dockerfile", "ctx"], &[], &t.root).unwrap();
    assert_eq!(s.dockerfile.path, t.path("ctx/sample.Dockerfile"));
    assert_eq!(s.dockerfile.name, "sample.Dockerfile");
    let msg = err(&["-f", "sample.Dockerfile", "ctx"], &[], &t.root);
    assert!(
        msg.contains(&t.s("sample.Dockerfile"))
            && msg.contains("relative to the current directory"),
        "{msg}"
    );
}

#[test]
fn a_missing_dockerfile_says_where_it_looked() {
    let t = Tree::new();
    std::fs::remove_file(t.path("ctx/Dockerfile")).unwrap();
    let msg = err(&["ctx"], &[], &t.root);
    assert!(
        msg.contains(&t.s("ctx/Dockerfile")) && msg.contains("-f/--file"),
        "{msg}"
    );
    let msg = err(&["-f", "other", "ctx"], &[], &t.root);
    assert!(msg.contains("is a directory"), "{msg}");
    let msg = err(&["-f", "-", "ctx"], &[], &t.root);
    assert!(msg.contains("stdin"), "{msg}");
}

#[test]
fn tags_default_to_image_and_flags_replace_it() {
    let t = Tree::new();
    let env = [("IMAGE", " reg/app:v1 ")];
    let s = testkit::resolve(&["ctx"], &env, &t.root).unwrap();
    assert_eq!(s.tags, ["reg/app:v1"]);
    assert_eq!(s.image(), Some("reg/app:v1"));
    let s = testkit::resolve(&["ctx", "-t", "a:1", "-t", "b:2"], &env, &t.root).unwrap();
    assert_eq!(s.tags, ["a:1", "b:2"]);
    for bad in ["a:1,b:2", "", "a b", "a\"b"] {
        let msg = err(&["ctx", "-t", bad], &[], &t.root);
        assert!(msg.contains("-t"), "{msg}");
    }
}

#[test]
fn push_comes_from_flags_then_push_image() {
    let t = Tree::new();
    let img = ("IMAGE", "r/a:1");
    let push = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["ctx"];
        all.extend_from_slice(args);
        testkit::resolve(&all, env, &t.root).unwrap().pushes()
    };
    assert!(push(&[], &[img, ("PUSH_IMAGE", "true")]));
    assert!(!push(&[], &[img, ("PUSH_IMAGE", "false")]));
    assert!(!push(&[], &[img]));
    assert!(!push(&[], &[img, ("PUSH_IMAGE", "")]));
    assert!(push(&["--push"], &[img, ("PUSH_IMAGE", "false")]));
    assert!(!push(&["--no-push"], &[img, ("PUSH_IMAGE", "true")]));
    // A flag makes a broken PUSH_IMAGE irrelevant.
    assert!(push(&["--push"], &[img, ("PUSH_IMAGE", "yes")]));
    let msg = err(&["ctx"], &[img, ("PUSH_IMAGE", "yes")], &t.root);
    assert!(
        msg.contains("PUSH_IMAGE") && msg.contains("true or false"),
        "{msg}"
    );
}

#[test]
fn export_decisions() {
    let t = Tree::new();
    let img = ("IMAGE", "r/a:1");
    let export = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["ctx"];
        all.extend_from_slice(args);
        let s = testkit::resolve(&all, env, &t.root).unwrap();
        (s.export, s.notes)
    };
    let names = vec!["r/a:1".to_string()];
    assert_eq!(
        export(&[], &[img]).0,
        Export::DockerLoad {
            names: names.clone()
        }
    );
    assert_eq!(
        export(&["-t", "x:1", "-t", "y:2"], &[]).0,
        Export::DockerLoad {
            names: vec!["x:1".into(), "y:2".into()]
        }
    );
    let (e, notes) = export(&["--no-load"], &[img]);
    assert_eq!(e, Export::BuildOnly);
    assert!(
        notes[0].contains("--no-load") && notes[0].contains("r/a:1"),
        "{notes:?}"
    );
    let (e, notes) = export(&["--load"], &[img, ("PUSH_IMAGE", "true")]);
    assert_eq!(
        e,
        Export::Push {
            names: names.clone()
        }
    );
    assert!(notes[0].contains("--load ignored"), "{notes:?}");
    assert_eq!(
        export(&["--no-load"], &[img, ("PUSH_IMAGE", "true")]).0,
        Export::Push { names }
    );
    let (e, notes) = export(&[], &[]);
    assert_eq!(e, Export::BuildOnly);
    assert!(
        notes[0].contains("no image name") && notes[0].contains("$IMAGE"),
        "{notes:?}"
    );
    let (e, _) = export(&[], &[("PUSH_IMAGE", "true")]);
    assert_eq!(e, Export::BuildOnly);
    let (e, notes) = export(
        &["-o", "type=local,dest=out"],
        &[img, ("PUSH_IMAGE", "true")],
    );
    assert_eq!(e, Export::Raw(vec!["type=local,dest=out".into()]));
    assert!(
        notes[0].contains("--output replaces") && notes[0].contains("r/a:1"),
        "{notes:?}"
    );
    let (_, notes) = export(&["-o", "type=local,dest=out", "--push"], &[]);
    assert!(notes[0].contains("--push/--load ignored"), "{notes:?}");
}

#[test]
fn push_or_load_without_a_name_is_an_error() {
    let t = Tree::new();
    for flag in ["--push", "--load"] {
        let msg = err(&["ctx", flag], &[], &t.root);
        assert!(msg.contains(flag) && msg.contains("-t NAME"), "{msg}");
    }
}

#[test]
fn several_platforms_need_a_push() {
    let t = Tree::new();
    let img = ("IMAGE", "r/a:1");
    let two = ("PLATFORMS", "linux/amd64,linux/arm64");
    let msg = err(&["ctx"], &[img, two], &t.root);
    assert!(
        msg.contains("--push") && msg.contains("single --platform") && msg.contains("linux/arm64"),
        "{msg}"
    );
    let msg = err(
        &["ctx", "--platform", "linux/amd64,linux/arm64"],
        &[img],
        &t.root,
    );
    assert!(msg.contains("2 platforms"), "{msg}");
    // Fine when pushing, when not loading, with a raw output, or with one platform.
    for (args, env) in [
        (vec!["ctx"], vec![img, two, ("PUSH_IMAGE", "true")]),
        (vec!["ctx", "--no-load"], vec![img, two]),
        (vec!["ctx", "-o", "type=oci,dest=o.tar"], vec![img, two]),
        (vec!["ctx", "--platform", "linux/arm64"], vec![img, two]),
    ] {
        testkit::resolve(&args, &env, &t.root).unwrap();
    }
    let s = testkit::resolve(&["ctx", "--platform", "linux/arm64"], &[img, two], &t.root).unwrap();
    assert_eq!(s.platforms, ["linux/arm64"]);
    let s = testkit::resolve(&["ctx"], &[img, ("PLATFORMS", "")], &t.root).unwrap();
    assert!(s.platforms.is_empty());
}

#[test]
fn build_args_labels_and_opts() {
    let t = Tree::new();
    let env = [("TOKEN", "s3cr3t-value"), ("EMPTY", "")];
    let s = testkit::resolve(
        &[
            "ctx",
            "--build-arg",
            "A=1=2",
            "--build-arg",
            "TOKEN",
            "--build-arg",
            "EMPTY",
            "--build-arg",
            "UNSET",
            "--label",
            "l=v",
            "--label",
            "bare",
            "--opt",
            "k=v",
        ],
        &env,
        &t.root,
    )
    .unwrap();
    assert_eq!(
        s.build_args,
        [
            ("A".to_string(), "1=2".to_string()),
            ("TOKEN".to_string(), "s3cr3t-value".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]
    );
    assert_eq!(
        s.labels,
        [("l".into(), "v".into()), ("bare".into(), String::new())]
    );
    assert_eq!(s.opts, [("k".to_string(), "v".to_string())]);
    assert!(s
        .notes
        .iter()
        .any(|n| n.contains("UNSET") && n.contains("not set")));
    assert!(
        s.notes.iter().all(|n| !n.contains("s3cr3t")),
        "{:?}",
        s.notes
    );
    let msg = err(&["ctx", "--build-arg", "=s3cr3t-value"], &env, &t.root);
    assert!(
        msg.contains("--build-arg") && !msg.contains("s3cr3t"),
        "{msg}"
    );
    let msg = err(&["ctx", "--opt", "nokey"], &env, &t.root);
    assert!(msg.contains("--opt"), "{msg}");
}

#[test]
fn csv_flags_are_checked() {
    let t = Tree::new();
    let s = testkit::resolve(
        &[
            "ctx",
            "--secret",
            "id=npm,src=npmrc",
            "--secret",
            "id=tok,env=TOKEN",
            "--ssh",
            "default",
            "--cache-from",
            "r/a:cache",
            "--cache-to",
            "type=inline",
        ],
        &[],
        &t.root,
    )
    .unwrap();
    assert_eq!(s.secrets, ["id=npm,src=npmrc", "id=tok,env=TOKEN"]);
    assert_eq!(s.ssh, ["default"]);
    for (args, says) in [
        (
            vec!["ctx", "--secret", "id=npm,src=missing"],
            "--secret id=npm",
        ),
        (vec!["ctx", "--ssh", ""], "--ssh"),
        (vec!["ctx", "-o", "dest=out"], "--output"),
        (vec!["ctx", "--export-cache", "mode=max"], "--export-cache"),
        (vec!["ctx", "--cache-from", "type=,ref=x"], "--import-cache"),
        (vec!["ctx", "--target", ""], "--target"),
        (vec!["ctx", "--frontend", ""], "--frontend"),
        (vec!["ctx", "--addr", " "], "--addr"),
    ] {
        let msg = err(&args, &[], &t.root);
        assert!(msg.contains(says), "{args:?}: {msg}");
    }
}

#[test]
fn files_for_metadata_and_tls() {
    let t = Tree::new();
    let s = testkit::resolve(
        &[
            "ctx",
            "--metadata-file",
            "meta.json",
            "--tlscacert",
            "tls/ca.pem",
            "--tlscert",
            "tls/cert.pem",
            "--tlskey",
            "tls/key.pem",
            "--tlsservername",
            "bk",
        ],
        &[],
        &t.root,
    )
    .unwrap();
    assert_eq!(s.metadata_file, Some(t.path("meta.json")));
    assert_eq!(
        s.tls,
        Tls {
            server_name: Some("bk".into()),
            ca_cert: Some(t.path("tls/ca.pem")),
            cert: Some(t.path("tls/cert.pem")),
            key: Some(t.path("tls/key.pem")),
            dir: None,
        }
    );
    let s = testkit::resolve(&["ctx", "--tlsdir", "tls"], &[], &t.root).unwrap();
    assert_eq!(s.tls.dir, Some(t.path("tls")));
    assert!(!s.tls.is_empty());
    for (args, says) in [
        (
            vec!["ctx", "--metadata-file", "nodir/m.json"],
            "does not exist",
        ),
        (vec!["ctx", "--metadata-file", "ctx"], "is a directory"),
        (vec!["ctx", "--tlscacert", "tls/none.pem"], "--tlscacert"),
        (vec!["ctx", "--tlscert", "tls/cert.pem"], "go together"),
        (vec!["ctx", "--tlsdir", "npmrc"], "--tlsdir"),
    ] {
        let msg = err(&args, &[], &t.root);
        assert!(msg.contains(says), "{args:?}: {msg}");
    }
    // clap refuses the combination; resolve does too when handed such flags directly.
    let mut flags = testkit::flags(&["ctx", "--tlsdir", "tls"]);
    flags.tlscert = Some("tls/cert.pem".into());
    let msg = resolve(&flags.options(), &testkit::env(&[]), &t.root)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("--tlsdir cannot be combined"), "{msg}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn resolve_never_panics_and_never_shows_values(
        arg in ".{0,20}",
        value in "[0-9]{9,12}",
        output in ".{0,20}",
        push_image in ".{0,8}",
        platforms in "[a-z/,]{0,20}",
    ) {
        let t = Tree::new();
        let build_arg = format!("{}={value}", arg.replace('=', ""));
        let env = [("IMAGE", "r/a:1"), ("PUSH_IMAGE", push_image.as_str()), ("PLATFORMS", platforms.as_str())];
        let mut flags = testkit::flags(&["ctx", "--build-arg", "X"]);
        flags.build_args.push(build_arg);
        let _ = resolve(&flags.options(), &testkit::env(&env), &t.root);
        flags.outputs.push(output);
        match resolve(&flags.options(), &testkit::env(&env), &t.root) {
            Ok(s) => prop_assert!(s.notes.iter().all(|n| !n.contains(&value))),
            Err(e) => {
                let msg = format!("{e:#}");
                prop_assert!(!msg.contains(&value));
            }
        }
    }
}
