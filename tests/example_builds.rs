//! The examples' buildCommands run as skaffold runs them (sh -c in the context, with
//! IMAGE, PUSH_IMAGE, BUILD_CONTEXT, PLATFORMS), through the real kubectl and plugin:
//! against the simulated cluster with the stand-in buildctl, or the stand-in docker.
//! Also the original skaffold-buildkit-wrapper's docker command line, a Dockerfile
//! outside the context, and Kubernetes flags refused with --cli docker.

mod common;
mod example_kit;

use common::*;
use example_kit::*;

/// The pod `ring` (offline, the plugin's own hashing) puts first for `key`.
fn hashed_pod(home: &Home, pods: &[&str], key: &str) -> String {
    let v = json(&run(plugin(None, home).args([
        "ring",
        "-o",
        "json",
        "--pods",
        &pods.join(","),
        key,
    ])));
    v["keys"][0]["order"][0].as_str().unwrap().to_string()
}

fn with_tag(mut v: Vec<String>, i: usize, value: String) -> Vec<String> {
    v[i] = value;
    v
}

#[test]
fn k8s_buildkitd_example_builds_on_the_pod_its_hash_key_picks() {
    let art = example_artifact("k8s_buildkitd");
    let ready = ["buildkitd-0", "buildkitd-1", "buildkitd-2"];
    let mut cluster = pods(3);
    // A fourth pod that is Running but not Ready: never chosen.
    let mut unready = PodConfig::new(NS, "buildkitd-3");
    unready.ready = false;
    cluster.push(unready);
    let sim = start(cluster);
    let home = Home::new();
    // Its buildCommand hashes on the project's name, not on $IMAGE.
    let key = "kubectl-buildkit-example";
    assert!(
        art.build_command.contains(&format!("--hash-key {key}")),
        "{}",
        art.build_command
    );
    let want = hashed_pod(&home, &ready, key);
    let ctx = art.context.canonicalize().unwrap();
    let ctx = ctx.to_str().unwrap();
    let buildctl_rec = home.path().join("buildctl.jsonl");
    let docker_rec = home.path().join("docker.jsonl");
    let rec: [(&str, &std::path::Path); 2] = [
        ("SIM_BUILDCTL_RECORD", &buildctl_rec),
        ("SIM_DOCKER_RECORD", &docker_rec),
    ];

    // skaffold build --push: buildctl pushes from the pod.
    let push = SkaffoldRun {
        tag: "v1",
        push: true,
        platforms: "",
    };
    let out = skaffold_build(&art, &push, &home, Some(&sim), &rec);
    ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "built on pod {want} (namespace {NS}, key \"{key}\")"
        )),
        "{err}"
    );
    let first = records(&buildctl_rec);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["served_by"]["pod"], want.as_str());
    assert_eq!(first[0]["served_by"]["namespace"], NS);
    assert_eq!(first[0]["cwd"], ctx);
    let argv1 = argv(&first[0]);
    assert!(argv1[1].starts_with("unix://"), "{argv1:?}");
    let expected = strings([
        "--addr",
        "ADDR",
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
        "build-arg:GREETING=hello",
        "--output",
        &format!("type=image,name={},push=true", push.image(&art)),
    ]);
    assert_eq!(argv1, with_tag(expected, 1, argv1[1].clone()));
    for p in ["buildkitd-0", "buildkitd-1", "buildkitd-2", "buildkitd-3"] {
        let n = sim.stats(NS, p).connections;
        assert_eq!(n, u64::from(p == want), "{p}: {n} connections");
    }
    assert!(
        records(&docker_rec).is_empty(),
        "docker not used when pushing"
    );

    // skaffold build (no push), next tag, one platform: the same pod (the key is the
    // image without its tag), and the image is loaded into the local docker.
    let load = SkaffoldRun {
        tag: "v2",
        push: false,
        platforms: "linux/arm64",
    };
    ok(&skaffold_build(&art, &load, &home, Some(&sim), &rec));
    let records_now = records(&buildctl_rec);
    let second = &records_now[1];
    assert_eq!(second["served_by"]["pod"], want.as_str());
    assert_eq!(sim.stats(NS, &want).connections, 2);
    let argv2 = argv(second);
    let expected2 = strings([
        "--addr",
        "ADDR",
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
        "platform=linux/arm64",
        "--opt",
        "build-arg:GREETING=hello",
        "--output",
        &format!("type=docker,name={}", load.image(&art)),
    ]);
    assert_eq!(argv2, with_tag(expected2, 1, argv2[1].clone()));
    let loads = records(&docker_rec);
    assert_eq!(loads.len(), 1);
    assert_eq!(argv(&loads[0]), ["load"]);
    assert_eq!(loads[0]["loaded"][0], load.image(&art).as_str());
    assert_eq!(loads[0]["stdin_bytes"], second["stdout_bytes"]);
}

fn docker_build_argv(ctx: &str, image: &str) -> Vec<String> {
    strings([
        "build",
        "-f",
        &format!("{ctx}/Dockerfile"),
        "-t",
        image,
        "--build-arg",
        "GREETING=hello",
        "--secret",
        "id=greeting,src=secrets/greeting.txt",
        ctx,
    ])
}

#[test]
fn docker_buildkit_example_runs_docker_build_then_push() {
    let art = example_artifact("docker_buildkit");
    let home = Home::new();
    let ctx = art.context.canonicalize().unwrap();
    let ctx = ctx.to_str().unwrap();
    let docker_rec = home.path().join("docker.jsonl");
    let buildctl_rec = home.path().join("buildctl.jsonl");
    let rec: [(&str, &std::path::Path); 2] = [
        ("SIM_DOCKER_RECORD", &docker_rec),
        ("SIM_BUILDCTL_RECORD", &buildctl_rec),
    ];

    // skaffold build --push: docker build, then docker push.
    let push = SkaffoldRun {
        tag: "v1",
        push: true,
        platforms: "",
    };
    ok(&skaffold_build(&art, &push, &home, None, &rec));
    let r = records(&docker_rec);
    assert_eq!(r.len(), 2, "{r:#?}");
    assert_eq!(argv(&r[0]), docker_build_argv(ctx, &push.image(&art)));
    assert_eq!(r[0]["env"]["DOCKER_BUILDKIT"], "1");
    assert_eq!(r[0]["cwd"], ctx);
    assert_eq!(r[0]["exit_code"], 0);
    assert_eq!(argv(&r[1]), ["push".to_string(), push.image(&art)]);

    // skaffold build: docker build only (the image stays in the local daemon).
    let local = SkaffoldRun {
        tag: "v2",
        push: false,
        platforms: "linux/arm64",
    };
    ok(&skaffold_build(&art, &local, &home, None, &rec));
    let r = records(&docker_rec);
    assert_eq!(r.len(), 3, "{r:#?}");
    let mut want = docker_build_argv(ctx, &local.image(&art));
    let at = want.len() - 1;
    want.splice(at..at, strings(["--platform", "linux/arm64"]));
    assert_eq!(argv(&r[2]), want);
    assert!(
        records(&buildctl_rec).is_empty(),
        "buildctl not used with --cli docker"
    );
}

/// A project laid out like the original wrapper's README example.
fn wrapper_project(home: &Home) -> std::path::PathBuf {
    let dir = home.path().join("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("sample.Dockerfile"),
        "# syntax=docker/dockerfile:1\nFROM alpine\nARG TEST\n\
         RUN --mount=type=secret,id=gitconfig,dst=/root/.gitconfig cat /root/.gitconfig\n",
    )
    .unwrap();
    std::fs::write(dir.join(".gitconfig"), "[user]\n\tname = example\n").unwrap();
    dir
}

#[test]
fn the_original_wrappers_docker_command_line_works_unchanged() {
    let home = Home::new();
    let dir = wrapper_project(&home);
    let dir_s = dir.to_str().unwrap();
    let art = Artifact {
        image: "daisaru11/skaffold-buildkit-wrapper-example".into(),
        context: dir.clone(),
        // Its README's buildCommand, with our command in place of the wrapper's.
        build_command: "kubectl buildkit build --cli docker --secret id=gitconfig,src=.gitconfig \
                        --build-arg TEST=test1 --file sample.Dockerfile"
            .into(),
    };
    let rec = home.path().join("docker.jsonl");
    let run = SkaffoldRun {
        tag: "abc123",
        push: false,
        platforms: "",
    };
    ok(&skaffold_build(
        &art,
        &run,
        &home,
        None,
        &[("SIM_DOCKER_RECORD", &rec)],
    ));
    let r = records(&rec);
    assert_eq!(r.len(), 1);
    assert_eq!(
        argv(&r[0]),
        strings([
            "build",
            "-f",
            &format!("{dir_s}/sample.Dockerfile"),
            "-t",
            "daisaru11/skaffold-buildkit-wrapper-example:abc123",
            "--build-arg",
            "TEST=test1",
            "--secret",
            "id=gitconfig,src=.gitconfig",
            dir_s,
        ])
    );
    assert_eq!(r[0]["exit_code"], 0);
}

#[test]
fn a_dockerfile_outside_the_context() {
    let home = Home::new();
    let app = home.path().join("src/app");
    let docker = home.path().join("build/docker");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(docker.join("app.Dockerfile"), "FROM alpine\nCOPY . /app\n").unwrap();
    let rec = home.path().join("docker.jsonl");
    // -f is relative to the current directory, as with docker.
    let out = run(plugin(None, &home)
        .current_dir(home.path().join("build"))
        .args([
            "build",
            "--cli",
            "docker",
            "-f",
            "docker/app.Dockerfile",
            "-t",
            "app:dev",
            "../src/app",
        ])
        .env("SIM_DOCKER_RECORD", &rec));
    ok(&out);
    let r = records(&rec);
    let root = home.path().canonicalize().unwrap();
    let root = root.to_str().unwrap();
    assert_eq!(
        argv(&r[0]),
        strings([
            "build",
            "-f",
            &format!("{root}/build/docker/app.Dockerfile"),
            "-t",
            "app:dev",
            &format!("{root}/src/app"),
        ])
    );
    assert_eq!(r[0]["exit_code"], 0, "{:?}", r[0]["error"]);
}

#[test]
fn docker_cli_refuses_kubernetes_flags_and_touches_no_cluster() {
    let sim = start(pods(2));
    let home = Home::new();
    let ctx = examples_dir().join("docker_buildkit");
    let rec = home.path().join("docker.jsonl");
    for (flags, named) in [
        (&["--pod", "buildkitd-0"][..], "--pod"),
        (&["--tunnel", "port-forward"][..], "--tunnel"),
        (&["--tunnel", "exec"][..], "--tunnel"),
        (&["--hash-key", "team"][..], "--hash-key"),
        (&["-n", "buildkit"][..], "--namespace"),
        (&["--buildctl", "/usr/bin/buildctl"][..], "--buildctl"),
    ] {
        let out = run(plugin(Some(&sim), &home)
            .args(["build", "--cli", "docker", "-t", "app:dev"])
            .args(flags)
            .arg(&ctx)
            .env("SIM_DOCKER_RECORD", &rec));
        fails_with(&out, 1, &[named, "--cli docker", "drop it"]);
    }
    assert!(sim.requests().is_empty(), "{:#?}", sim.requests());
    assert!(records(&rec).is_empty(), "docker must not run");
}
