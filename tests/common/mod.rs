//! Helpers for integration tests: a simulated cluster, and the real plugin binary run
//! against it with its own HOME, as a user would run it.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use kube_sim::harness::{
    self, finish_within, kubectl, wait_deadline, wait_within, CHILD_DEADLINE,
};
pub use kube_sim::{PodConfig, PodFaults, Rule, ServerFaults, Sim, SimConfig, UserConfig};

pub mod bench;
pub mod real;

pub const NS: &str = "buildkit";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-buildkit"))
}

/// The directory holding the stand-in buildctl and docker (built by the kube-sim crate
/// into the same target dir; built here when a lone `cargo test --test X` skipped them).
pub fn standin_dir() -> PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let dir = bin().parent().unwrap().to_path_buf();
    BUILT.get_or_init(|| {
        if !dir.join("buildctl").exists()
            || !dir.join("docker").exists()
            || !dir.join("kube-sim").exists()
        {
            let release = dir.ends_with("release");
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo.args(["build", "-p", "kube-sim", "--bins"]);
            if release {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("cargo runs");
            assert!(
                status.success(),
                "building the stand-in buildctl and docker failed"
            );
        }
    });
    dir
}

/// target/<profile>/examples/NAME. `cargo test` builds every example (with the
/// workspace's features) before it runs tests, so that binary is normally used as it
/// is. A lone `cargo test --test X` does not build examples: then it is built here when
/// missing or older than any of `sources` (paths relative to the crate, files or
/// directories). `--workspace` keeps the features the same as the test build's, so no
/// dependency is compiled a second time.
pub fn example_binary(name: &str, sources: &[&str]) -> PathBuf {
    let dir = standin_dir();
    let exe = dir.join("examples").join(name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest_source = sources
        .iter()
        .flat_map(|s| {
            let p = root.join(s);
            let mut files = vec![p.clone()];
            if let Ok(entries) = std::fs::read_dir(&p) {
                files.extend(entries.flatten().map(|e| e.path()));
            }
            files
        })
        .filter_map(|p| modified(&p))
        .max();
    if modified(&exe).is_some() && modified(&exe) >= newest_source {
        return exe;
    }
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args(["build", "--workspace", "--example", name])
        .current_dir(root);
    if dir.ends_with("release") {
        cargo.arg("--release");
    }
    assert!(
        cargo.status().expect("cargo runs").success(),
        "building the {name} example failed"
    );
    assert!(exe.is_file(), "{} missing after the build", exe.display());
    exe
}

/// A skaffold-like project: a context with a Dockerfile, its own TMPDIR, record files.
pub struct Project {
    pub home: Home,
}

impl Project {
    pub fn new() -> Project {
        let home = Home::new();
        let p = Project { home };
        std::fs::create_dir_all(p.ctx()).unwrap();
        std::fs::create_dir_all(p.tmp()).unwrap();
        std::fs::write(p.ctx().join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
        p
    }
    pub fn root(&self) -> &Path {
        self.home.path()
    }
    pub fn ctx(&self) -> PathBuf {
        self.root().join("app")
    }
    pub fn tmp(&self) -> PathBuf {
        self.root().join("tmp")
    }
    pub fn buildctl_records(&self) -> Vec<serde_json::Value> {
        records(&self.root().join("buildctl.jsonl"))
    }
    pub fn docker_records(&self) -> Vec<serde_json::Value> {
        records(&self.root().join("docker.jsonl"))
    }
    /// `kubectl-buildkit build` as skaffold runs it: in the context dir.
    pub fn build(&self, sim: Option<&Sim>) -> Command {
        let mut cmd = plugin(sim, &self.home);
        cmd.arg("build")
            .current_dir(self.ctx())
            .env("TMPDIR", self.tmp())
            .env("SIM_BUILDCTL_RECORD", self.root().join("buildctl.jsonl"))
            .env("SIM_DOCKER_RECORD", self.root().join("docker.jsonl"));
        cmd
    }
    #[track_caller]
    pub fn assert_clean(&self) {
        let left = leftovers(&self.tmp());
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// Pods buildkitd-0..n-1 in namespace `buildkit`, all Running and Ready.
pub fn pods(n: usize) -> Vec<PodConfig> {
    (0..n)
        .map(|i| PodConfig::new(NS, &format!("buildkitd-{i}")))
        .collect()
}

pub fn start(pods: Vec<PodConfig>) -> Sim {
    start_with(SimConfig {
        pods,
        context_namespace: Some(NS.into()),
        ..SimConfig::default()
    })
}

/// `n` ready pods in `buildkit`, and two users: `admin` (everything) and `nolist`, who
/// may get pods but not list them (the 403 cases).
pub fn start_with_nolist_user(n: usize) -> Sim {
    start_with(SimConfig {
        pods: pods(n),
        context_namespace: Some(NS.into()),
        users: vec![
            UserConfig::admin(),
            UserConfig::new("nolist", vec![Rule::new(&["get"], &["pods"])]),
        ],
        ..SimConfig::default()
    })
}

pub fn start_with(cfg: SimConfig) -> Sim {
    Sim::start(cfg).expect("simulated cluster starts")
}

/// A test's own HOME and working directory.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The plugin, with a clean environment: HOME = `home`, KUBECONFIG = the sim's.
pub fn plugin(sim: Option<&Sim>, home: &Home) -> Command {
    let mut cmd = Command::new(bin());
    clean_env(&mut cmd, home);
    if let Some(sim) = sim {
        cmd.env("KUBECONFIG", sim.kubeconfig());
    }
    cmd.current_dir(home.path());
    cmd.stdin(Stdio::null());
    cmd
}

pub fn clean_env(cmd: &mut Command, home: &Home) {
    for var in [
        "KUBECONFIG",
        "IMAGE",
        "PUSH_IMAGE",
        "BUILD_CONTEXT",
        "PLATFORMS",
        "BUILDKIT_HOST",
        "KUBERNETES_SERVICE_HOST",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home.path());
    // These tests prove the buildctl path (and --cli docker where they say so): the
    // built-in client's own tests (builtin_real.rs) remove this.
    cmd.env("KUBECTL_BUILDKIT_CLI", "buildctl");
    // The stand-in buildctl's connect-and-greet limit (real buildctl: --timeout 5): these
    // tests are about behaviour, and on a loaded CI machine a failover can take longer.
    cmd.env("SIM_BUILDCTL_DEFAULT_TIMEOUT", "60");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![standin_dir()];
    paths.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(paths).unwrap());
}

/// Run to completion under the harness's deadline (a hang kills it and fails).
pub fn run(cmd: &mut Command) -> Output {
    let out = harness::run_bounded(cmd, CHILD_DEADLINE);
    if std::env::var_os("TEST_VERBOSE").is_some() {
        eprintln!("stdout: {}", String::from_utf8_lossy(&out.stdout));
        eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Assert success, showing stderr when it fails.
#[track_caller]
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// Assert exit code `code` and a stderr containing every needle.
#[track_caller]
pub fn fails_with(out: &Output, code: i32, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {err}",
        stdout(out)
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
    err
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", stdout(out), stderr(out)))
}

/// A copy of the sim's kubeconfig with edits applied (for bad tokens, servers, ...).
pub fn edited_kubeconfig(
    sim: &Sim,
    home: &Home,
    edit: impl FnOnce(&mut serde_yaml::Value),
) -> PathBuf {
    let text = std::fs::read_to_string(sim.kubeconfig()).unwrap();
    let mut v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    edit(&mut v);
    let path = home.path().join("edited-kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&v).unwrap()).unwrap();
    path
}

/// What a run left behind under `tmp` (the TMPDIR it was given): files or directories
/// there, and live processes that outlived it: any whose command line mentions `tmp`, or
/// whose environment has `TMPDIR=tmp` (the plugin and every child it starts, buildctl
/// and `docker load` included, inherit it).
pub fn leftovers(tmp: &Path) -> Vec<String> {
    let mut left: Vec<String> = std::fs::read_dir(tmp)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default();
    let needle = tmp.display().to_string();
    let me = std::process::id();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.filter_map(|e| e.ok()) {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let tmpdir = format!("TMPDIR={needle}");
            let inherited = std::fs::read(p.path().join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == tmpdir.as_bytes()))
                .unwrap_or(false);
            // Zombies have an empty cmdline and environment; a live child still names
            // its socket or carries our TMPDIR.
            if cmdline.contains(&needle) || inherited {
                left.push(format!("process {pid}: {cmdline}"));
            }
        }
    }
    left
}

/// One JSON record a line, as the stand-ins write them.
pub fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("record is JSON"))
        .collect()
}

/// The fallback order the plugin's offline `ring` gives `key` among `pods` (the test's
/// expectation for which pod a build or tunnel must reach).
pub fn ring_order(home: &Home, pods: &[&str], key: &str, algorithm: &str) -> Vec<String> {
    let out = run(plugin(None, home).args([
        "ring",
        "-o",
        "json",
        "--algorithm",
        algorithm,
        "--pods",
        &pods.join(","),
        key,
    ]));
    json(&out)["keys"][0]["order"]
        .as_array()
        .expect("order")
        .iter()
        .map(|p| p.as_str().expect("pod name").to_string())
        .collect()
}

/// script(1) from util-linux: the pseudo-terminal of the tty tests.
pub const SCRIPT: &str = "/usr/bin/script";

/// `s` single-quoted for sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `cmd` as one shell word list, its program first.
pub fn shell_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| sh_quote(a.to_str().expect("UTF-8 argument")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `shell` (a sh command line in which CMD stands for `cmd`) on a pseudo-terminal
/// with `cmd`'s environment and directory. Returns what the terminal showed (script's
/// stdout) and script's exit status, which is the shell's.
pub fn on_a_terminal(cmd: &Command, shell: &str) -> Output {
    assert!(
        Path::new(SCRIPT).exists(),
        "{SCRIPT} (util-linux) is needed to give the plugin a terminal"
    );
    let line = shell.replace("CMD", &shell_line(cmd));
    let mut s = Command::new(SCRIPT);
    s.args(["-qec", &line, "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => s.env(k, v),
            None => s.env_remove(k),
        };
    }
    s.env("SHELL", "/bin/sh")
        .env("TERM", "xterm-256color")
        .current_dir(cmd.get_current_dir().expect("a working directory"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run(&mut s)
}
