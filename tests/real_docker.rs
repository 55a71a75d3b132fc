//! `--cli docker` on the REAL thing: Debian's docker 20.10 CLI (`--docker
//! /usr/bin/docker`) building with BuildKit v0.8 in a private dockerd of the realkit
//! fixture, pushing to a real registry on 127.0.0.1. Run the way skaffold's custom
//! builder runs it (IMAGE, PUSH_IMAGE, BUILD_CONTEXT in the environment), with a secret
//! mount, a build-arg and a target; checked from what the other side holds: the
//! registry's manifest and layer files, the daemon's image store, docker's own errors.
//! The stand-in docker (tests/sim) stays for argv and fault tests.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use kube_sim::realkit::{Dockerd, RealBuildkit, DOCKER_CLI};
use sha2::Digest;

/// The secret's value: must never appear in an image, a log or an error.
const SECRET: &str = "tok-REAL-5ecret-d2f1c0";
const VERSION: &str = "7.4.1-real";

/// Stages: `final` (the target) writes the build-arg and the secret's sha256 into
/// /build-info.txt; `later` comes after it and fails, so building it means the target
/// was ignored; `broken` fails on purpose (exit 3).
const DOCKERFILE: &str = "FROM local/busybox:1 AS base
ARG VERSION
RUN echo base > /base.txt

FROM base AS final
ARG VERSION
RUN --mount=type=secret,id=token,required=true \\
    echo \"version=$VERSION\" > /build-info.txt && \\
    echo \"secret-sha256=$(sha256sum /run/secrets/token | cut -d' ' -f1)\" >> /build-info.txt

FROM final AS later
RUN exit 9

FROM base AS broken
RUN echo about to fail && exit 3
";

/// A skaffold-style project: Dockerfile and the secret in its own directory.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::write(dir.path().join("app/Dockerfile"), DOCKERFILE).unwrap();
        std::fs::write(dir.path().join("token.txt"), SECRET).unwrap();
        Project { dir }
    }

    fn context(&self) -> PathBuf {
        self.dir.path().join("app")
    }

    /// The plugin as skaffold's custom builder runs it: cwd = the context, IMAGE,
    /// PUSH_IMAGE, BUILD_CONTEXT set; docker = Debian's 20.10 CLI on the fixture daemon.
    fn skaffold_build(&self, d: &Dockerd, image: &str, push: bool, target: &str) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-buildkit"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("DOCKER_CONFIG", self.dir.path().join("home/.docker"))
            .env("DOCKER_HOST", d.docker_host())
            .env("IMAGE", image)
            .env("PUSH_IMAGE", if push { "true" } else { "false" })
            .env("BUILD_CONTEXT", self.context())
            .current_dir(self.context())
            .stdin(Stdio::null())
            .args(["build", "--cli", "docker", "--docker", DOCKER_CLI])
            .arg("--secret")
            .arg(format!(
                "id=token,src={}",
                self.dir.path().join("token.txt").display()
            ))
            .args(["--build-arg", &format!("VERSION={VERSION}")])
            .args(["--target", target, "--progress", "plain"])
            // RUN steps: the fixture daemons have no bridge, so network mode none.
            .args(["--", "--network", "none"]);
        cmd.output().expect("the plugin runs")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn expected_build_info() -> String {
    let sha = format!("{:x}", sha2::Sha256::digest(SECRET.as_bytes()));
    format!("version={VERSION}\nsecret-sha256={sha}\n")
}

fn assert_no_secret(what: &str, data: &[u8]) {
    assert!(
        !data.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the secret's value is in {what}"
    );
}

#[test]
fn push_image_true_pushes_to_the_registry() {
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let (d, reg) = (&kit.daemons()[0], kit.registry());
    let p = Project::new();
    let image = format!("{}/skaffold/app:v1", reg.host());
    let out = p.skaffold_build(d, &image, true, "final");
    assert_ok(&out);
    assert_no_secret("the plugin's stdout", &out.stdout);
    assert_no_secret("the plugin's stderr", &out.stderr);

    // What the registry holds, through its HTTP API.
    let manifest = reg.manifest("skaffold/app", "v1").unwrap();
    assert_eq!(manifest["schemaVersion"], 2, "{manifest}");
    let layers = manifest["layers"].as_array().unwrap();
    assert!(
        layers.len() >= 3,
        "busybox, base.txt, build-info: {manifest}"
    );
    let files = reg.layer_files("skaffold/app", "v1").unwrap();
    let info: Vec<&(String, Vec<u8>)> = files
        .iter()
        .filter(|(n, _)| n == "build-info.txt")
        .collect();
    assert_eq!(info.len(), 1, "one build-info.txt in the layers");
    assert_eq!(text(&info[0].1), expected_build_info());
    assert!(files.iter().any(|(n, _)| n == "bin/busybox"));
    assert!(
        !files.iter().any(|(n, _)| n.starts_with("run/secrets/")),
        "the secret mount left a file in a layer"
    );
    for (name, body) in &files {
        assert_no_secret(&format!("layer file {name}"), body);
    }
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config = reg.blob("skaffold/app", config_digest).unwrap();
    assert_no_secret("the image config", &config);
}

#[test]
fn push_image_false_leaves_the_image_in_the_daemon() {
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let d = &kit.daemons()[1];
    let p = Project::new();
    let image = "skaffold/local:v2";
    let out = p.skaffold_build(d, image, false, "final");
    assert_ok(&out);
    let inspect = d
        .docker()
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .unwrap();
    assert_ok(&inspect);
    assert!(text(&inspect.stdout).starts_with("sha256:"));
    // Its content, read back by running it (network none: no bridge here).
    let run = d
        .docker()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            image,
            "cat",
            "/build-info.txt",
        ])
        .output()
        .unwrap();
    assert_ok(&run);
    assert_eq!(text(&run.stdout), expected_build_info());
    // The other daemon never saw this build (each fixture daemon is its own BuildKit).
    let elsewhere = kit.daemons()[0]
        .docker()
        .args(["image", "inspect", image])
        .output()
        .unwrap();
    assert!(!elsewhere.status.success());
}

#[test]
fn a_failing_run_gives_dockers_exit_code_and_error() {
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let d = &kit.daemons()[1];
    let p = Project::new();
    let out = p.skaffold_build(d, "skaffold/broken:v1", false, "broken");
    // docker itself, run directly on the same build: the code the plugin must pass on.
    let direct = d
        .docker()
        .current_dir(p.context())
        .args([
            "build",
            "--network",
            "none",
            "--target",
            "broken",
            "--progress",
            "plain",
        ])
        .arg(p.context())
        .output()
        .unwrap();
    assert!(!direct.status.success());
    assert_eq!(
        out.status.code(),
        direct.status.code(),
        "docker's exit code"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("about to fail"),
        "the failing step's log: {err}"
    );
    assert!(err.contains("exit code: 3"), "docker's error: {err}");
    assert_no_secret("stderr", &out.stderr);
    let never = d
        .docker()
        .args(["image", "inspect", "skaffold/broken:v1"])
        .output()
        .unwrap();
    assert!(!never.status.success(), "a failed build tagged an image");
}
