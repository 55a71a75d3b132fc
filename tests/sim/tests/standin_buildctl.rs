//! The stand-in buildctl binary, run as a process against simkit servers started
//! here (tcp and unix), and through kubectl against the simulated cluster.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_sim::buildkitd::{self, Counters, Identity};
use kube_sim::standin::buildctl::VERSION_LINE;
use kube_sim::standin::record::sha256_hex;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const BUILDCTL: &str = env!("CARGO_BIN_EXE_buildctl");
const DOCKER: &str = env!("CARGO_BIN_EXE_docker");

/// A simkit server on 127.0.0.1 or a unix socket.
struct Server {
    addr: String,
    counters: Arc<Counters>,
    _dir: Option<tempfile::TempDir>,
}

fn who(pod: &str, ns: &str) -> Identity {
    Identity {
        pod: pod.into(),
        namespace: ns.into(),
    }
}

async fn tcp_server(pod: &str, ns: &str, drop_after: Option<u64>) -> Server {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", l.local_addr().unwrap());
    let counters = Arc::new(Counters::default());
    let (c, id) = (counters.clone(), who(pod, ns));
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (c, id) = (c.clone(), id.clone());
            tokio::spawn(async move { buildkitd::serve(s, &id, c, drop_after).await });
        }
    });
    Server {
        addr,
        counters,
        _dir: None,
    }
}

async fn unix_server(pod: &str, ns: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buildkitd.sock");
    let l = tokio::net::UnixListener::bind(&path).unwrap();
    let counters = Arc::new(Counters::default());
    let (c, id) = (counters.clone(), who(pod, ns));
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (c, id) = (c.clone(), id.clone());
            tokio::spawn(async move { buildkitd::serve(s, &id, c, None).await });
        }
    });
    Server {
        addr: format!("unix://{}", path.display()),
        counters,
        _dir: Some(dir),
    }
}

/// A scratch directory with a build context (Dockerfile inside) and a record file.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ctx")).unwrap();
        std::fs::write(dir.path().join("ctx/Dockerfile"), "FROM scratch\n").unwrap();
        Scratch { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }
    fn ctx(&self) -> String {
        self.p("ctx")
    }
    fn records(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
    fn last(&self) -> Value {
        self.records("buildctl.jsonl")
            .pop()
            .expect("a buildctl record")
    }
    /// buildctl with a clean environment recording to buildctl.jsonl.
    fn buildctl(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(BUILDCTL);
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SIM_BUILDCTL_RECORD", self.path("buildctl.jsonl"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }
    fn dockerfile_args(&self) -> Vec<String> {
        let c = self.ctx();
        vec![
            "--frontend".into(),
            "dockerfile.v0".into(),
            "--local".into(),
            format!("context={c}"),
            "--local".into(),
            format!("dockerfile={c}"),
        ]
    }
}

async fn output(mut c: tokio::process::Command) -> Output {
    let child = c.spawn().expect("spawn");
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("command timed out")
        .expect("command output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Run `buildctl --addr ADDR build <dockerfile args> EXTRA...`.
async fn build(s: &Scratch, addr: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["--addr", addr, "build"];
    let df = s.dockerfile_args();
    args.extend(strs(&df));
    args.extend(extra);
    let mut c = s.buildctl(&args);
    for (k, v) in env {
        c.env(k, v);
    }
    output(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_help_and_usage_errors() {
    let s = Scratch::new();
    let out = output(s.buildctl(&["--version"])).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), format!("{VERSION_LINE}\n"));
    let out = output(s.buildctl(&["build", "--help"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("--metadata-file"));

    for (args, msg) in [
        (
            vec!["--foo", "build"],
            "flag provided but not defined: -foo",
        ),
        (
            vec!["build", "--tag", "x"],
            "flag provided but not defined: -tag",
        ),
        (
            vec!["build", "--platform=linux/amd64"],
            "flag provided but not defined: -platform",
        ),
        (
            vec!["build", "--version"],
            "flag provided but not defined: -version",
        ),
        (
            vec!["build", "--output"],
            "flag needs an argument: --output",
        ),
        (
            vec!["--timeout", "soon", "du"],
            "invalid value \"soon\" for flag -timeout",
        ),
        (
            vec!["build", "--no-cache=maybe"],
            "invalid value \"maybe\" for flag -no-cache",
        ),
    ] {
        let out = output(s.buildctl(&args)).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("Incorrect Usage: {msg}")),
            "{args:?}: {err}"
        );
        assert!(err.contains(&format!("\nerror: {msg}")), "{args:?}: {err}");
        let rec = s.last();
        assert_eq!(rec["exit_code"], 1);
        assert!(rec["error"].as_str().unwrap().starts_with(msg));
        assert_eq!(rec["served_by"], Value::Null);
    }
    let out = output(s.buildctl(&["frobnicate"])).await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stderr), "No help topic for 'frobnicate'\n");
    let out = output(s.buildctl(&["--log-format", "yaml", "du"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "error: unsupported log type \"yaml\"\n");
    let out = output(s.buildctl(&["--tlsdir", "/x", "--tlscacert", "/y", "du"])).await;
    assert_eq!(
        text(&out.stderr),
        "error: cannot specify tlsdir and tlscacert/tlscert/tlskey at the same time\n"
    );
    // One record per invocation, --version and --help included.
    assert_eq!(s.records("buildctl.jsonl").len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_real_flag_is_accepted_in_both_forms() {
    let srv = tcp_server("buildkitd-3", "ns-a", None).await;
    let s = Scratch::new();
    std::fs::create_dir(s.path("oci")).unwrap();
    std::fs::write(s.path("secret.txt"), "hunter2").unwrap();
    std::fs::write(s.path("ssh.key"), "KEY").unwrap();
    std::fs::write(s.path("policy.json"), "{}").unwrap();
    std::fs::write(s.path("ca.pem"), "CA").unwrap();
    let c = s.ctx();
    let args: Vec<String> = vec![
        format!("--addr={}", srv.addr),
        "--timeout".into(),
        "7".into(),
        "--wait".into(),
        "--debug".into(),
        "--log-format=json".into(),
        "--tlsservername".into(),
        "buildkitd".into(),
        format!("--tlscacert={}", s.p("ca.pem")),
        "b".into(),
        "-o".into(),
        "type=image,\"name=r.io/a:1,r.io/a:2\",push=true".into(),
        format!("--output=type=local,dest={}", s.p("out-local")),
        "--progress=plain".into(),
        "--trace".into(),
        s.p("trace.json"),
        format!("--local=context={c}"),
        "--local".into(),
        format!("dockerfile={c}"),
        "--oci-layout".into(),
        format!("base={}", s.p("oci")),
        "--frontend=dockerfile.v0".into(),
        "--opt".into(),
        "filename=Dockerfile".into(),
        "--opt=build-arg:A=1".into(),
        "--opt".into(),
        "target=final".into(),
        "--no-cache".into(),
        "--export-cache".into(),
        "type=inline".into(),
        "--import-cache=type=registry,ref=r.io/cache".into(),
        "--secret".into(),
        format!("id=tok,src={}", s.p("secret.txt")),
        "--secret=id=HOME".into(),
        "--allow".into(),
        "network.host".into(),
        "--ssh".into(),
        format!("deploy={}", s.p("ssh.key")),
        "--metadata-file".into(),
        s.p("meta.json"),
        format!("--source-policy-file={}", s.p("policy.json")),
        "--proxy-network".into(),
        "--ref-file".into(),
        s.p("ref"),
        "--registry-auth-tlscontext".into(),
        "host=r.io,insecure=true".into(),
        format!("--debug-json-cache-metrics={}", s.p("metrics.json")),
    ];
    let mut cmd = s.buildctl(&strs(&args));
    cmd.env("HOME", s.dir.path());
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rec = s.last();
    assert_eq!(rec["served_by"]["pod"], "buildkitd-3");
    assert_eq!(rec["argv"].as_array().unwrap().len(), args.len());
    assert_eq!(rec["addr"], srv.addr);
    assert_eq!(rec["stdout_bytes"], 0);
    assert_eq!(rec["stdout_sha256"], Value::Null);
    assert_eq!(std::fs::read_to_string(s.path("ref")).unwrap().len(), 25);
    assert!(!std::fs::read_to_string(s.path("trace.json"))
        .unwrap()
        .is_empty());
    assert!(s.path("metrics.json").exists());
    let layer = std::fs::read(s.path("out-local/simkit-rootfs.bin")).unwrap();
    assert_eq!(layer.len(), 65536);
    assert!(layer
        .iter()
        .enumerate()
        .all(|(i, b)| *b == buildkitd::pattern_byte(i as u64)));
    let meta: Value = serde_json::from_slice(&std::fs::read(s.path("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["image.name"], "r.io/a:1,r.io/a:2");
    assert!(text(&out.stderr).contains("pushing r.io/a:1,r.io/a:2"));

    // Real buildctl (urfave/cli v3) parses flags after positional arguments, and the
    // global flags persist into subcommands.
    let mut args = vec!["build", "--addr", srv.addr.as_str()];
    let df = s.dockerfile_args();
    args.extend(strs(&df));
    args.extend(["stray-positional", "--progress", "quiet"]);
    let out = output(s.buildctl(&args)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "",
        "quiet progress after a positional argument"
    );
    assert_eq!(s.last()["served_by"]["namespace"], "ns-a");
    // ...but not after `--`.
    let mut args2 = args.clone();
    args2.truncate(args.len() - 2);
    args2.extend(["--", "--progress", "quiet"]);
    let out = output(s.buildctl(&args2)).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("#1 [simkit] connected to pod buildkitd-3 (namespace ns-a)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_build_echoes_the_payload_and_records_the_pod() {
    let srv = tcp_server("buildkitd-7", "ns-b", None).await;
    let s = Scratch::new();
    let out = build(
        &s,
        &srv.addr,
        &[],
        &[("SIM_BUILDCTL_PAYLOAD", "3000000"), ("SIM_TAG", "x")],
    )
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("#1 [simkit] connected to pod buildkitd-7 (namespace ns-b)\n#1 DONE"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let rec = s.last();
    assert_eq!(rec["payload_bytes"], 3_000_000);
    assert_eq!(
        rec["served_by"],
        serde_json::json!({"pod": "buildkitd-7", "namespace": "ns-b"})
    );
    assert_eq!(rec["exit_code"], 0);
    assert_eq!(rec["error"], Value::Null);
    assert_eq!(rec["env"]["SIM_TAG"], "x");
    assert_eq!(rec["env"]["BUILDKIT_HOST"], Value::Null);
    assert_eq!(rec["cwd"], s.dir.path().display().to_string());
    let st = srv.counters.snapshot();
    assert_eq!(st.connections, 1);
    assert!(
        st.bytes_in >= 3_000_000 && st.bytes_out >= 3_000_000,
        "{st:?}"
    );
    // Suffixed sizes work too.
    let out = build(&s, &srv.addr, &[], &[("SIM_BUILDCTL_PAYLOAD", "2M")]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(s.last()["payload_bytes"], 2 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_from_buildkit_host() {
    let srv = unix_server("bk-unix", "default").await;
    let s = Scratch::new();
    let mut args = vec!["build"];
    let df = s.dockerfile_args();
    args.extend(strs(&df));
    let mut c = s.buildctl(&args);
    c.env("BUILDKIT_HOST", &srv.addr);
    let out = output(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rec = s.last();
    assert_eq!(rec["addr"], srv.addr);
    assert_eq!(rec["env"]["BUILDKIT_HOST"], srv.addr);
    assert_eq!(rec["served_by"]["pod"], "bk-unix");
    assert_eq!(rec["payload_bytes"], 1 << 20);
    // Without BUILDKIT_HOST the default socket is used (and absent here).
    let out = output(s.buildctl(&args)).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(s.last()["addr"], "unix:///run/buildkit/buildkitd.sock");
    assert!(text(&out.stderr).starts_with(
        "error: failed to connect to buildkitd at unix:///run/buildkit/buildkitd.sock: dial unix"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_tarball_on_stdout_feeds_docker_load() {
    let srv = tcp_server("buildkitd-1", "ns", None).await;
    let s = Scratch::new();
    let script = format!(
        "\"$BUILDCTL\" --addr {} build --frontend dockerfile.v0 --local context={c} --local dockerfile={c} \
         --output type=docker,name=app:dev --metadata-file {m} | \"$DOCKER\" load",
        srv.addr,
        c = s.ctx(),
        m = s.p("meta.json")
    );
    let mut c = tokio::process::Command::new("sh");
    c.args(["-c", &script])
        .env("BUILDCTL", BUILDCTL)
        .env("DOCKER", DOCKER)
        .env("SIM_BUILDCTL_RECORD", s.path("buildctl.jsonl"))
        .env("SIM_DOCKER_RECORD", s.path("docker.jsonl"))
        .env("SIM_BUILDCTL_IMAGE_BYTES", "300000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = output(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Loaded image: app:dev\n");
    let b = s.last();
    let d = s.records("docker.jsonl").pop().unwrap();
    assert!(b["stdout_bytes"].as_u64().unwrap() > 300_000);
    assert_eq!(b["stdout_bytes"], d["stdin_bytes"]);
    assert_eq!(b["stdout_sha256"], d["stdin_sha256"]);
    assert_eq!(d["loaded"], serde_json::json!(["app:dev"]));
    assert_eq!(d["argv"], serde_json::json!(["load"]));

    let meta: Value = serde_json::from_slice(&std::fs::read(s.path("meta.json")).unwrap()).unwrap();
    let digest = meta["containerimage.digest"].as_str().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(meta["simkit.pod"], "buildkitd-1");
    assert_eq!(meta["image.name"], "app:dev");

    // The same build to a file: same bytes, same digest; stdout stays empty.
    let mut c = s.buildctl(&[]);
    let mut args = vec!["--addr".to_string(), srv.addr.clone(), "build".into()];
    args.extend(s.dockerfile_args());
    args.extend([
        "--output".into(),
        format!("type=docker,name=app:dev,dest={}", s.p("image.tar")),
        "--metadata-file".into(),
        s.p("meta2.json"),
    ]);
    c.args(&args).env("SIM_BUILDCTL_IMAGE_BYTES", "300000");
    let out = output(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let tar = std::fs::read(s.path("image.tar")).unwrap();
    assert_eq!(Some(sha256_hex(&tar).as_str()), b["stdout_sha256"].as_str());
    let meta2: Value =
        serde_json::from_slice(&std::fs::read(s.path("meta2.json")).unwrap()).unwrap();
    assert_eq!(
        meta2["containerimage.digest"],
        meta["containerimage.digest"]
    );
    assert_eq!(s.last()["stdout_sha256"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_and_daemon_side_validation() {
    let srv = tcp_server("buildkitd-0", "ns", None).await;
    let s = Scratch::new();
    let c = s.ctx();
    let base = [
        "--addr",
        srv.addr.as_str(),
        "build",
        "--frontend",
        "dockerfile.v0",
    ];
    let cases: Vec<(Vec<String>, &str, bool)> = vec![
        (vec![format!("--local=context={c}")], "error: failed to solve: failed to read dockerfile", true),
        (vec![format!("--local=dockerfile={c}")], "error: failed to solve: failed to compute cache key", true),
        (
            vec![format!("--local=context={c}"), format!("--local=dockerfile={c}"), "--opt=filename=Nope".into()],
            "error: failed to solve: failed to read dockerfile: open Nope: no such file or directory",
            true,
        ),
        (vec!["--local=context=/nonexistent/dir".into()], "error: invalid local: resolve /nonexistent/dir", false),
        (vec![format!("--local=context={c}/Dockerfile")], "error: invalid local: stat ", false),
        (vec!["--local=context".into()], "error: invalid local: invalid value context", false),
        (vec!["--opt=build-arg:FOO".into()], "error: invalid opt: invalid value build-arg:FOO", false),
        (vec!["--secret=id=a,src=/nonexistent/s".into()], "error: failed to stat /nonexistent/s", false),
        (vec!["--secret=id=a,env=SIM_UNSET_SECRET_VAR".into()], "error: secret a: environment variable", false),
        (vec!["--output=name=x".into()], "error: --output requires type=<type>", false),
        (vec!["--output=type=docker,name=\"a,b\"".into()], "bare \" in non-quoted-field", false),
        (vec!["--output=type=local".into()], "output directory is required for local exporter", false),
        (vec!["--output=type=registry,name=x".into()], "error: failed to solve: exporter \"registry\" could not be found", true),
        (vec!["--progress=fancy".into()], "error: invalid progress mode fancy", false),
        (vec!["--allow=root".into()], "error: unknown entitlement root", false),
        (vec!["--ssh=default".into()], "make sure SSH_AUTH_SOCK is set", false),
        (vec!["--export-cache=mode=max,type=".into()], "error: --export-cache requires type=<type>", false),
        (vec!["--registry-auth-tlscontext=host=h".into()], "error: --registry-auth-tlscontext requires ca=<ca>", false),
    ];
    for (extra, want, served) in cases {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(strs(&extra));
        let out = output(s.buildctl(&args)).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: want {want:?} in {err:?}");
        let rec = s.last();
        assert_eq!(rec["exit_code"], 1);
        assert_eq!(rec["served_by"].is_object(), served, "{extra:?}");
    }
    // No frontend and nothing on stdin.
    let out = output(s.buildctl(&["--addr", &srv.addr, "build"])).await;
    assert!(text(&out.stderr).contains("empty definition sent to build"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_mid_payload_fails_the_build() {
    let srv = tcp_server("buildkitd-2", "ns", Some(200_000)).await;
    let s = Scratch::new();
    let out = build(&s, &srv.addr, &[], &[]).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: failed to solve: connection to buildkitd lost"),
        "{err}"
    );
    let rec = s.last();
    assert_eq!(rec["exit_code"], 1);
    assert_eq!(rec["served_by"]["pod"], "buildkitd-2");
    assert_eq!(rec["payload_bytes"], 0);
    assert!(rec["error"]
        .as_str()
        .unwrap()
        .contains("connection to buildkitd lost"));

    // Dropped while streaming the image to stdout: also exit 1.
    let srv = tcp_server("buildkitd-2", "ns", Some(30_000)).await;
    let out = build(&s, &srv.addr, &["--output", "type=docker,name=a"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("error: failed to solve: failed to export docker"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_and_timeout() {
    let s = Scratch::new();
    let out = build(&s, "tcp://127.0.0.1:1", &[], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: failed to connect to buildkitd at tcp://127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused"));
    assert_eq!(s.last()["served_by"], Value::Null);
    let out = build(&s, "nonsense", &[], &[]).await;
    assert_eq!(text(&out.stderr), "error: invalid address nonsense\n");

    // A server that accepts but never greets: --timeout bounds connect + greeting.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = l.accept().await {
            held.push(sock);
        }
    });
    let t = Instant::now();
    let mut args = vec!["--timeout", "1", "--addr", &addr, "build"];
    let df = s.dockerfile_args();
    args.extend(strs(&df));
    let out = output(s.buildctl(&args)).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        text(&out.stderr).contains("context deadline exceeded"),
        "{}",
        text(&out.stderr)
    );

    // --wait retries until the server shows up.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("late.sock");
    let addr = format!("unix://{}", sock.display());
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let l = tokio::net::UnixListener::bind(&sock).unwrap();
        let (st, _) = l.accept().await.unwrap();
        buildkitd::serve(st, &who("late", "ns"), Arc::new(Counters::default()), None)
            .await
            .unwrap();
    });
    let out = output(s.buildctl(&["--wait", "--addr", &addr, "debug", "workers"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ID\tPLATFORMS\nsim-late\tlinux/amd64\n");
    late.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_exit_is_propagated_without_connecting() {
    let srv = tcp_server("buildkitd-0", "ns", None).await;
    let s = Scratch::new();
    let out = build(&s, &srv.addr, &[], &[("SIM_BUILDCTL_EXIT", "7")]).await;
    assert_eq!(out.status.code(), Some(7));
    assert!(text(&out.stderr).contains("SIM_BUILDCTL_EXIT"));
    let rec = s.last();
    assert_eq!(rec["exit_code"], 7);
    assert_eq!(rec["served_by"], Value::Null);
    assert_eq!(rec["env"]["SIM_BUILDCTL_EXIT"], "7");
    let out = build(&s, &srv.addr, &[], &[("SIM_BUILDCTL_EXIT", "0")]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty());
    assert_eq!(srv.counters.snapshot().connections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_du_prune() {
    let srv = tcp_server("buildkitd-5", "ns", None).await;
    let s = Scratch::new();
    let out = output(s.buildctl(&["--addr", &srv.addr, "debug", "workers"])).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "ID\tPLATFORMS\nsim-buildkitd-5\tlinux/amd64\n"
    );
    let rec = s.last();
    assert_eq!(rec["served_by"]["pod"], "buildkitd-5");
    assert_eq!(rec["stdout_sha256"], sha256_hex(&out.stdout));
    let out = output(s.buildctl(&[
        "debug",
        "workers",
        "--addr",
        &srv.addr,
        "--format",
        "{{json .}}",
    ]))
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["ID"], "sim-buildkitd-5");
    let out = output(s.buildctl(&["--addr", &srv.addr, "du", "-v"])).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("ID\tRECLAIMABLE"));
    let out = output(s.buildctl(&[
        "--addr",
        &srv.addr,
        "prune",
        "--keep-duration",
        "1h",
        "--all",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = output(s.buildctl(&["--addr", &srv.addr, "prune", "--keep-duration", "1"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(srv.counters.snapshot().connections, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_stdio_relays_both_ways() {
    let srv = unix_server("relay-pod", "ns").await;
    let s = Scratch::new();
    let mut c = s.buildctl(&["--addr", &srv.addr, "dial-stdio"]);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let id = buildkitd::client::hello(&mut stdout).await.unwrap();
    assert_eq!(id.pod, "relay-pod");
    let got = buildkitd::client::echo(tokio::io::join(stdout, stdin), 700_000)
        .await
        .unwrap();
    assert_eq!(got, 700_000);
    // echo sent QUIT; the server closes, so dial-stdio ends on its own.
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let rec = s.last();
    assert!(rec["stdout_bytes"].as_u64().unwrap() >= 700_000);
    assert_eq!(rec["served_by"], Value::Null);

    // stdin closing first half-closes the socket; the relay still drains the reply.
    let mut c = s.buildctl(&["--addr", &srv.addr, "dial-stdio"]);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"SOURCE 5000\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let hello = b"SIMKIT/1 pod=relay-pod namespace=ns\n";
    assert_eq!(&out.stdout[..hello.len()], hello);
    assert_eq!(out.stdout.len(), hello.len() + 5000);

    // Like the real one, dial-stdio reaches unix sockets only.
    let out = output(s.buildctl(&["--addr", "tcp://127.0.0.1:9", "dial-stdio"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: invalid address tcp://127.0.0.1:9 (expected unix://, got tcp://)\n"
    );
}

async fn signal_case(sig: i32, name: &str, code: i32) {
    let srv = tcp_server("buildkitd-0", "ns", None).await;
    let s = Scratch::new();
    let mut args = vec!["--addr", srv.addr.as_str(), "build"];
    let df = s.dockerfile_args();
    args.extend(strs(&df));
    let mut c = s.buildctl(&args);
    c.env("SIM_BUILDCTL_SLEEP_MS", "20000")
        .env("SIM_BUILDCTL_SIGNAL_FILE", s.path("signals"));
    let child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while srv.counters.connections.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "buildctl never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id().unwrap() as i32, sig) };
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(s.path("signals")).unwrap(),
        format!("{name}\n")
    );
    let rec = s.last();
    assert_eq!(rec["signal"], name);
    assert_eq!(rec["exit_code"], code);
    assert_eq!(rec["served_by"]["pod"], "buildkitd-0");
    assert_eq!(rec["payload_bytes"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_and_sigterm_are_recorded() {
    signal_case(libc::SIGINT, "SIGINT", 130).await;
    signal_case(libc::SIGTERM, "SIGTERM", 143).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_pod_through_kubectl_and_the_simulated_cluster() {
    use kube_sim::{PodConfig, Sim, SimConfig};
    let _kubectl = kube_sim::require_kubectl!();
    let sim = Sim::start(SimConfig {
        pods: vec![PodConfig {
            name: "buildkitd-0".into(),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    let s = Scratch::new();
    let home = tempfile::tempdir().unwrap();
    let run = |addr: &str, extra: &[&str]| {
        // buildctl's default --timeout (5 s) covers kubectl's start-up and its API
        // discovery in a fresh HOME, which on a loaded 2-core CI machine can take longer.
        let mut args = vec!["--timeout", "60", "--addr", addr, "build"];
        let df = s.dockerfile_args();
        let mut owned: Vec<String> = df;
        owned.extend(extra.iter().map(|e| e.to_string()));
        args.extend(owned.iter().map(String::as_str));
        let mut c = s.buildctl(&args);
        c.env("HOME", home.path())
            .env("KUBECONFIG", sim.kubeconfig())
            .env("SIM_BUILDCTL_PAYLOAD", "2000000");
        c
    };
    let out = output(run(
        "kube-pod://buildkitd-0",
        &["--output", "type=docker,name=app:k"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rec = s.last();
    assert_eq!(
        rec["served_by"],
        serde_json::json!({"pod": "buildkitd-0", "namespace": "default"})
    );
    assert_eq!(rec["payload_bytes"], 2_000_000);
    assert_eq!(rec["stdout_sha256"], sha256_hex(&out.stdout));
    let st = sim.stats("default", "buildkitd-0");
    assert_eq!(st.connections, 1);
    assert!(st.bytes_in >= 2_000_000, "{st:?}");

    let out = output(run(
        "kube-pod://buildkitd-0?namespace=default&container=buildkitd",
        &[],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // A pod that does not exist: kubectl fails, and its complaint reaches the error.
    let out = output(run("kube-pod://buildkitd-9", &[])).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("kubectl stderr:") && err.contains("buildkitd-9"),
        "{err}"
    );
    assert_eq!(s.last()["served_by"], Value::Null);

    let out = output(run("kube-pod://BuildKitD", &[])).await;
    assert_eq!(
        text(&out.stderr),
        "error: unsupported pod name: \"BuildKitD\"\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tarball_to_a_terminal_is_refused() {
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("no script(1): skipped");
        return;
    }
    let srv = tcp_server("buildkitd-0", "ns", None).await;
    let s = Scratch::new();
    let cmd = format!(
        "{BUILDCTL} --addr {} build --frontend dockerfile.v0 --local context={c} --local dockerfile={c} --output type=docker,name=a",
        srv.addr,
        c = s.ctx()
    );
    let mut c = tokio::process::Command::new("/usr/bin/script");
    c.args(["-qec", &cmd, "/dev/null"])
        .env("SIM_BUILDCTL_RECORD", s.path("buildctl.jsonl"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = output(c).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains(
        "error: invalid output option: output: output file is required for docker exporter. refusing to write to console"
    ));
    assert_eq!(srv.counters.snapshot().connections, 0);
    assert_eq!(s.last()["exit_code"], 1);
}
