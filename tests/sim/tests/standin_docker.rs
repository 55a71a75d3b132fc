//! The stand-in docker binary, run as a process.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use kube_sim::buildkitd::pattern_byte;
use kube_sim::standin::image::{ArchiveKind, ImagePlan};
use kube_sim::standin::record::sha256_hex;
use serde_json::Value;

const DOCKER: &str = env!("CARGO_BIN_EXE_docker");

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join("Dockerfile.dev"), "FROM scratch\n").unwrap();
        Scratch { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("docker.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
    fn last(&self) -> Value {
        self.records().pop().expect("a docker record")
    }
    fn docker(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
        let mut c = Command::new(DOCKER);
        c.args(args)
            .env_clear()
            .env("SIM_DOCKER_RECORD", self.path("docker.jsonl"))
            .current_dir(self.dir.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        if let Some(data) = stdin {
            let mut w = child.stdin.take().unwrap();
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = w.write_all(&data);
            });
        }
        kube_sim::harness::finish_within(child, kube_sim::harness::CHILD_DEADLINE)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn archive(names: &[&str], kind: ArchiveKind) -> Vec<u8> {
    let plan = ImagePlan::new(
        names.iter().map(|s| s.to_string()).collect(),
        5000,
        &serde_json::json!({}),
    );
    let mut a = plan.head(kind);
    a.extend((0..5000u64).map(pattern_byte));
    a.extend(plan.tail(kind));
    a
}

#[test]
fn load_reports_tags_and_records_stdin() {
    let s = Scratch::new();
    let tar = archive(
        &["docker.io/library/app:1", "reg.io/x/y"],
        ArchiveKind::Docker,
    );
    let out = s.docker(&["load"], &[("DOCKER_BUILDKIT", "1")], Some(&tar));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "Loaded image: app:1\nLoaded image: reg.io/x/y:latest\n"
    );
    let rec = s.last();
    assert_eq!(rec["stdin_bytes"], tar.len());
    assert_eq!(rec["stdin_sha256"], sha256_hex(&tar));
    assert_eq!(
        rec["loaded"],
        serde_json::json!(["app:1", "reg.io/x/y:latest"])
    );
    assert_eq!(rec["env"]["DOCKER_BUILDKIT"], "1");
    assert_eq!(rec["argv"], serde_json::json!(["load"]));
    assert_eq!(rec["exit_code"], 0);

    // OCI layouts name the image through index.json.
    let oci = archive(&["app:oci"], ArchiveKind::Oci);
    let out = s.docker(&["image", "load", "-q"], &[], Some(&oci));
    assert_eq!(text(&out.stdout), "Loaded image: app:oci\n");

    // -i FILE: stdin untouched.
    std::fs::write(s.path("img.tar"), &tar).unwrap();
    let out = s.docker(&["load", "-i", "img.tar"], &[], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(s.last()["stdin_bytes"], Value::Null);
    let out = s.docker(&["load", "--input=missing.tar"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "open missing.tar: no such file or directory\n"
    );

    // Not an archive: an image ID from the bytes.
    let out = s.docker(&["load"], &[], Some(b"raw image bytes"));
    assert_eq!(
        text(&out.stdout),
        format!(
            "Loaded image ID: sha256:{}\n",
            sha256_hex(b"raw image bytes")
        )
    );

    // Untagged docker archive: the config's ID.
    let out = s.docker(&["load"], &[], Some(&archive(&[], ArchiveKind::Docker)));
    assert!(text(&out.stdout).starts_with("Loaded image ID: sha256:"));

    let out = s.docker(&["load"], &[], Some(b""));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("stdin is empty"));
    assert_eq!(s.last()["stdin_bytes"], 0);
    assert_eq!(s.last()["exit_code"], 1);

    let out = s.docker(&["load", "--nope"], &[], Some(b"x"));
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).starts_with("unknown flag: --nope\n\nUsage:  docker load [OPTIONS]"));
    let out = s.docker(&["load", "extra"], &[], Some(b"x"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("accepts no arguments"));
}

#[test]
fn build_flags_and_arguments() {
    let s = Scratch::new();
    std::fs::write(s.path("secret"), "s").unwrap();
    let all = [
        "build",
        "--add-host",
        "h:1.2.3.4",
        "--allow=network.host",
        "--annotation",
        "a=b",
        "--attest",
        "type=sbom",
        "--build-arg",
        "A=1",
        "--build-arg=B",
        "--build-context",
        "x=dir",
        "--builder",
        "default",
        "--cache-from",
        "type=registry,ref=r/c",
        "--cache-to=type=inline",
        "--cgroup-parent",
        "p",
        "-f",
        "Dockerfile.dev",
        "--iidfile",
        "iid",
        "--label",
        "l=1",
        "--load",
        "--metadata-file",
        "md.json",
        "--network",
        "host",
        "--no-cache",
        "--no-cache-filter",
        "s",
        "-o",
        "type=docker",
        "--platform",
        "linux/amd64",
        "--progress=plain",
        "--provenance",
        "--pull",
        "--push",
        "--sbom=false",
        "--secret",
        "id=s,src=secret",
        "--shm-size",
        "64m",
        "--ssh",
        "default",
        "-t",
        "app:dev",
        "--tag=app:latest",
        "--target",
        "final",
        "--ulimit",
        "nofile=1024",
        "--cpu-shares",
        "2",
        "-m",
        "1g",
        "--rm",
        "--force-rm",
        "--squash",
        "--compress",
        "--security-opt",
        "x",
        "--isolation",
        "default",
        "--disable-content-trust",
        "app",
        "-q",
    ];
    let out = s.docker(&all, &[("DOCKER_BUILDKIT", "1")], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = text(&out.stdout);
    assert!(id.starts_with("sha256:") && id.len() == 72, "{id:?}");
    assert_eq!(std::fs::read_to_string(s.path("iid")).unwrap(), id.trim());
    let md: Value = serde_json::from_slice(&std::fs::read(s.path("md.json")).unwrap()).unwrap();
    assert_eq!(
        md["image.name"],
        "docker.io/library/app:dev,docker.io/library/app:latest"
    );
    let rec = s.last();
    assert_eq!(rec["argv"].as_array().unwrap().len(), all.len());
    assert_eq!(rec["stdin_bytes"], Value::Null);

    for alias in [
        &["buildx", "build"][..],
        &["image", "build"],
        &["builder", "build"],
    ] {
        let mut args = alias.to_vec();
        args.push("app");
        let out = s.docker(&args, &[], None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{alias:?}: {}",
            text(&out.stderr)
        );
    }

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["build", "--frobnicate", "app"], 125, "unknown flag: --frobnicate\n\nUsage:  docker build [OPTIONS] PATH | URL | -\n\nRun 'docker build --help' for more information"),
        (vec!["build", "-Z", "app"], 125, "unknown shorthand flag: 'Z' in -Z"),
        (vec!["build", "app", "--tag"], 125, "flag needs an argument: --tag"),
        (vec!["build"], 1, "docker: 'docker build' requires 1 argument"),
        (vec!["build", "app", "other"], 1, "docker: 'docker build' requires 1 argument"),
        (vec!["build", "missing-dir"], 1, "ERROR: unable to prepare context: path \"missing-dir\" not found"),
        (vec!["build", "-f", "app/Dockerfile.nope", "app"], 1, "failed to read dockerfile: open app/Dockerfile.nope: no such file or directory"),
        // -f is relative to the current directory, not to the context.
        (vec!["build", "-f", "Dockerfile", "app"], 1, "open Dockerfile: no such file or directory"),
        (vec!["build", "--secret", "id=s,src=nope", "app"], 1, "failed to stat nope"),
        (vec!["build", "--progress", "fancy", "app"], 1, "invalid progress mode fancy"),
    ];
    for (args, code, want) in cases {
        let out = s.docker(&args, &[], None);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want {want:?} in {err:?}");
        assert_eq!(s.last()["exit_code"], code);
    }
    let out = s.docker(&["build", "-f", "app/Dockerfile", "."], &[], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Context from stdin is read and recorded.
    let out = s.docker(&["build", "-t", "x", "-"], &[], Some(b"FROM scratch\n"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(s.last()["stdin_bytes"], 13);
}

#[test]
fn push_version_info_and_root() {
    let s = Scratch::new();
    let out = s.docker(&["push", "reg.io/team/app:v1"], &[], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("The push refers to repository [reg.io/team/app]"));
    assert!(text(&out.stdout).contains("v1: digest: sha256:"));
    let out = s.docker(&["push", "Reg/App"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    let out = s.docker(&["push"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("docker: 'docker push' requires 1 argument"));

    let out = s.docker(&["version", "--format", "{{.Server.Version}}"], &[], None);
    assert_eq!(text(&out.stdout), "28.2.2-sim\n");
    let out = s.docker(&["version"], &[], None);
    assert!(text(&out.stdout).contains("Server"));
    let out = s.docker(&["info", "-f", "{{.ServerVersion}}"], &[], None);
    assert_eq!(text(&out.stdout), "28.2.2-sim\n");
    let out = s.docker(&["-v"], &[], None);
    assert!(text(&out.stdout).starts_with("Docker version 28.2.2-sim"));
    let out = s.docker(&["--context", "default", "-D", "version"], &[], None);
    assert_eq!(out.status.code(), Some(0));

    let out = s.docker(&["frobnicate"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("docker: unknown command: docker frobnicate"));
    let out = s.docker(&["--frobnicate", "version"], &[], None);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).starts_with("unknown flag: --frobnicate"));
    assert_eq!(s.records().len(), 10);
}

#[test]
fn forced_exit_codes() {
    let s = Scratch::new();
    let tar = archive(&["app:1"], ArchiveKind::Docker);
    let env = [("SIM_DOCKER_EXIT", "3")];
    for args in [
        &["version"][..],
        &["push", "a"],
        &["build", "app"],
        &["info"],
    ] {
        let out = s.docker(args, &env, None);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert_eq!(s.last()["exit_code"], 3);
    }
    // load still drains and records its input, but loads nothing.
    let out = s.docker(&["load"], &env, Some(&tar));
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("SIM_DOCKER_EXIT=3"));
    let rec = s.last();
    assert_eq!(rec["stdin_bytes"], tar.len());
    assert_eq!(rec["loaded"], serde_json::json!([]));

    let env = [("SIM_DOCKER_FAIL_ON", "load")];
    let out = s.docker(&["load"], &env, Some(&tar));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(s.last()["stdin_sha256"], sha256_hex(&tar));
    let out = s.docker(&["push", "a"], &env, None);
    assert_eq!(out.status.code(), Some(0));
    let out = s.docker(&["version"], &[("SIM_DOCKER_EXIT", "0")], None);
    assert_eq!(out.status.code(), Some(0));
}
