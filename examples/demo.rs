//! A first run without a cluster: `cargo run --release --example demo`.
//!
//! Starts the simulated cluster (kube-sim) with four buildkitd pods in namespace
//! `buildkit`, one of them not Ready, then runs the real `kubectl-buildkit` against it
//! like a tutorial: `pods`, `ring`, and two skaffold builds of example/k8s_buildkitd
//! through the stand-in buildctl, showing which pod served them. Everything it writes
//! lives in temporary directories, removed at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use kube_sim::{PodConfig, Sim, SimConfig};

const NS: &str = "buildkit";
const PODS: [&str; 4] = ["buildkitd-0", "buildkitd-1", "buildkitd-2", "buildkitd-3"];
const UNREADY: &str = "buildkitd-3";
const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let bins = binaries()?;
    let temp = tempfile::Builder::new()
        .prefix("kubectl-buildkit-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    let home = temp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let path = search_path(&bins, temp.path())?;

    let sim = Sim::start(SimConfig {
        pods: PODS
            .iter()
            .map(|name| {
                let mut p = PodConfig::new(NS, name);
                p.ready = *name != UNREADY;
                p
            })
            .collect(),
        context_namespace: Some(NS.into()),
        ..SimConfig::default()
    })?;
    println!(
        "# A simulated Kubernetes API server (kube-sim) is running at {}",
        sim.url()
    );
    println!(
        "# with pods {} in namespace {NS}; {UNREADY} is Running but not Ready.",
        PODS.join(", ")
    );
    println!(
        "# KUBECONFIG={}  HOME={}",
        sim.kubeconfig().display(),
        home.display()
    );
    let env = Env {
        path,
        home: home.clone(),
        kubeconfig: sim.kubeconfig().to_path_buf(),
    };

    let image = "registry.example.com/kubectl-buildkit-example/app";
    // The example's buildCommand hashes on the project's name (--hash-key).
    let key = "kubectl-buildkit-example";
    section("Which pods can build? (eligible = Running, Ready, not terminating)");
    env.show(
        Path::new(REPO),
        &["kubectl", "buildkit", "pods", "--hash-key", key],
        &[],
    )?;

    section("Where do images land? Each key goes to one pod, with a fallback order");
    env.show(
        Path::new(REPO),
        &[
            "kubectl",
            "buildkit",
            "ring",
            key,
            image,
            "gcr.io/me/api",
            "/home/dev/src/web",
        ],
        &[],
    )?;

    section("What would scaling to 4 ready pods move? (only what the new pod takes)");
    env.show(
        Path::new(REPO),
        &[
            "kubectl",
            "buildkit",
            "ring",
            "--pods",
            "buildkitd-0,buildkitd-1,buildkitd-2",
            "--add",
            UNREADY,
            key,
            image,
            "gcr.io/me/api",
            "/home/dev/src/web",
        ],
        &[],
    )?;

    section("skaffold builds example/k8s_buildkitd twice (its buildCommand, skaffold's env)");
    let ctx = Path::new(REPO).join("example/k8s_buildkitd");
    let command = build_command(&ctx.join("skaffold.yaml"))?;
    println!(
        "(the simulated pods speak only the stand-in buildctl's protocol, so these builds run \
         with KUBECTL_BUILDKIT_CLI=buildctl; on real buildkitd pods `build` needs no buildctl)"
    );
    println!("$ cd example/k8s_buildkitd");
    let mut served = Vec::new();
    for tag in ["v1", "v2"] {
        let full = format!("{image}:{tag}");
        let vars = [
            ("IMAGE", full.as_str()),
            ("PUSH_IMAGE", "true"),
            (
                "BUILD_CONTEXT",
                ctx.to_str().context("context path is not UTF-8")?,
            ),
            ("PLATFORMS", ""),
        ];
        let before: Vec<u64> = PODS.iter().map(|p| sim.stats(NS, p).connections).collect();
        env.show(&ctx, &["sh", "-c", &command], &vars)?;
        let after: Vec<u64> = PODS.iter().map(|p| sim.stats(NS, p).connections).collect();
        let pod = PODS
            .iter()
            .zip(before.iter().zip(&after))
            .find(|(_, (b, a))| a > b)
            .map(|(p, _)| *p)
            .context("no simulated buildkitd pod saw the build's connection")?;
        println!("# the simulated cluster saw the connection on pod {pod}");
        served.push(pod);
    }

    section("Connections each pod's simulated buildkitd served");
    for p in PODS {
        let s = sim.stats(NS, p);
        println!(
            "  {p:<12} connections={}  bytes in={}",
            s.connections, s.bytes_in
        );
    }
    if served[0] != served[1] {
        bail!("the two builds of {image} landed on different pods: {served:?}");
    }
    println!(
        "\nBoth builds of {image} were served by pod {}: its cache stays warm.",
        served[0]
    );
    drop(sim);
    drop(temp);
    println!("Done: the simulated cluster is stopped and the temporary files are removed.");
    Ok(())
}

fn section(title: &str) {
    println!("\n## {title}\n");
}

/// The environment every command of the demo runs in.
struct Env {
    path: std::ffi::OsString,
    home: PathBuf,
    kubeconfig: PathBuf,
}

impl Env {
    /// Print the command like a shell prompt, run it, print what it printed.
    fn show(&self, dir: &Path, argv: &[&str], vars: &[(&str, &str)]) -> Result<()> {
        let mut prompt = String::from("$ ");
        for (k, v) in vars {
            prompt.push_str(&format!("{k}={} ", quote(v)));
        }
        prompt.push_str(&argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "));
        println!("{prompt}");
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]).current_dir(dir).stdin(Stdio::null());
        for var in [
            "IMAGE",
            "PUSH_IMAGE",
            "BUILD_CONTEXT",
            "PLATFORMS",
            "BUILDKIT_HOST",
        ] {
            cmd.env_remove(var);
        }
        // The demo's pods run the simulated buildkitd, which only the stand-in buildctl
        // speaks: builds go through it (on real pods, build speaks BuildKit itself).
        cmd.env_remove("KUBERNETES_SERVICE_HOST")
            .env("KUBECTL_BUILDKIT_CLI", "buildctl")
            .env("PATH", &self.path)
            .env("HOME", &self.home)
            .env("KUBECONFIG", &self.kubeconfig)
            .envs(vars.iter().copied());
        let out = cmd
            .output()
            .with_context(|| format!("running {}", argv[0]))?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        print!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("`{}` failed ({})", argv.join(" "), out.status);
        }
        Ok(())
    }
}

fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:,=@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The buildCommand of the one artifact in a skaffold.yaml.
fn build_command(skaffold_yaml: &Path) -> Result<String> {
    let text = std::fs::read_to_string(skaffold_yaml)
        .with_context(|| format!("reading {}", skaffold_yaml.display()))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text)?;
    doc["build"]["artifacts"][0]["custom"]["buildCommand"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{} has no custom buildCommand", skaffold_yaml.display()))
}

/// target/<profile>/, holding kubectl-buildkit and the stand-in buildctl and docker;
/// built with cargo when missing.
fn binaries() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the demo binary")?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the demo binary is not in target/<profile>/examples")?
        .to_path_buf();
    let needed = ["kubectl-buildkit", "buildctl", "docker"];
    if needed.iter().any(|b| !dir.join(b).is_file()) {
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .args(["build", "--bins", "--workspace"])
            .current_dir(REPO);
        if dir.ends_with("release") {
            cargo.arg("--release");
        }
        println!("# building kubectl-buildkit and the stand-ins: {cargo:?}");
        if !cargo.status().context("running cargo")?.success() {
            bail!("cargo build failed");
        }
    }
    Ok(dir)
}

/// PATH: the built binaries (kubectl-buildkit, stand-in buildctl and docker) first,
/// then a `kubectl` shim when no kubectl is installed, then the system's PATH.
fn search_path(bins: &Path, temp: &Path) -> Result<std::ffi::OsString> {
    let system = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bins.to_path_buf()];
    let has_kubectl = std::env::split_paths(&system).any(|d| d.join("kubectl").is_file());
    if !has_kubectl {
        // kubectl runs `kubectl-NAME` for `kubectl NAME`: this shim does the same.
        let shim = temp.join("shim");
        std::fs::create_dir_all(&shim)?;
        let script = shim.join("kubectl");
        std::fs::write(
            &script,
            "#!/bin/sh\nname=$1; shift\nexec \"kubectl-$name\" \"$@\"\n",
        )?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        println!("# kubectl is not installed: a shim runs kubectl-buildkit as kubectl would");
        dirs.push(shim);
    }
    dirs.extend(std::env::split_paths(&system));
    Ok(std::env::join_paths(dirs)?)
}
