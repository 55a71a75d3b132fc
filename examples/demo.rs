//! A first run without a cluster: `cargo run --release --example demo`.
//!
//! Starts the simulated cluster (kube-sim) with four buildkitd pods in namespace
//! `buildkit`, one of them not Ready, then runs the real `kubectl-buildkit` against it
//! like a tutorial: `pods`, `ring`, and two skaffold builds of example/k8s_buildkitd,
//! showing which pod served them. Where the real-BuildKit fixture can run
//! (`kube_sim::realkit`: root, dockerd, docker-registry, busybox-static), the three
//! ready pods are each backed by a private dockerd's real BuildKit and the builds go
//! through the plugin's built-in client with no buildctl on PATH; elsewhere the pods
//! are simulated and the builds go through the stand-in buildctl, and the demo says
//! why. Everything it writes or starts lives in temporary directories and private
//! processes, removed and stopped at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use kube_sim::realkit::{FixtureOptions, RealBuildkit, BUSYBOX_IMAGE};
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

    // A real BuildKit behind each ready pod when this machine can run one.
    let kit = match RealBuildkit::start(FixtureOptions {
        daemons: PODS.len() - 1,
        registry_users: Vec::new(),
    }) {
        Ok(kit) => Some(kit),
        Err(e) => {
            println!(
                "# The real BuildKit fixture cannot run here ({}): the pods are simulated and the \
                 builds go through the stand-in buildctl instead.",
                e.reason
            );
            None
        }
    };
    let path = search_path(&bins, temp.path(), kit.is_some())?;

    let sim = Sim::start(SimConfig {
        pods: PODS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut p = PodConfig::new(NS, name);
                p.ready = *name != UNREADY;
                match &kit {
                    Some(kit) if p.ready => p.backed_by(&kit.daemons()[i]),
                    _ => p,
                }
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
    if let Some(kit) = &kit {
        println!(
            "# REAL BuildKit: each ready pod's buildkitd is a private dockerd 20.10 (BuildKit \
             v0.8, worker moby) under {}, started in {:.1} s; `build` speaks BuildKit's gRPC \
             API itself (the built-in client; no stand-in buildctl on PATH).",
            kit.dir().display(),
            kit.started_in().as_secs_f64()
        );
    }
    println!(
        "# KUBECONFIG={}  HOME={}",
        sim.kubeconfig().display(),
        home.display()
    );
    let env = Env {
        path,
        home: home.clone(),
        kubeconfig: sim.kubeconfig().to_path_buf(),
        standin_buildctl: kit.is_none(),
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
    let example = Path::new(REPO).join("example/k8s_buildkitd");
    let mut command = build_command(&example.join("skaffold.yaml"))?;
    let ctx = match &kit {
        Some(kit) => {
            let ctx = real_context(&example, temp.path(), kit)?;
            // v0.8's worker moby has no push exporter and no network for RUN steps: the
            // image goes into the pod's own docker image store.
            command.push_str(" --network none --output type=moby,name=$IMAGE");
            println!(
                "(on this fixture: a copy of the example without its `# syntax=` line, which \
                 would fetch a frontend image, and its FROM image tagged from the fixture's \
                 busybox in each daemon, as there is no network; PUSH_IMAGE=false and \
                 `--output type=moby` put the image into the serving pod's docker image store, \
                 since v0.8 cannot push; `--network none` for the same reason)"
            );
            println!("$ cd {}", ctx.display());
            ctx
        }
        None => {
            println!(
                "(the simulated pods speak only the stand-in buildctl's protocol, so these \
                 builds run with KUBECTL_BUILDKIT_CLI=buildctl; on real buildkitd pods `build` \
                 needs no buildctl)"
            );
            println!("$ cd example/k8s_buildkitd");
            example.clone()
        }
    };
    let push = if kit.is_some() { "false" } else { "true" };
    let mut served = Vec::new();
    for tag in ["v1", "v2"] {
        let full = format!("{image}:{tag}");
        let vars = [
            ("IMAGE", full.as_str()),
            ("PUSH_IMAGE", push),
            (
                "BUILD_CONTEXT",
                ctx.to_str().context("context path is not UTF-8")?,
            ),
            ("PLATFORMS", ""),
        ];
        let before: Vec<u64> = PODS.iter().map(|p| sim.stats(NS, p).connections).collect();
        let shown = env.show(&ctx, &["sh", "-c", &command], &vars)?;
        let after: Vec<u64> = PODS.iter().map(|p| sim.stats(NS, p).connections).collect();
        let (i, pod) = PODS
            .iter()
            .enumerate()
            .zip(before.iter().zip(&after))
            .find(|(_, (b, a))| a > b)
            .map(|(p, _)| p)
            .context("no buildkitd pod saw the build's connection")?;
        match &kit {
            Some(kit) => {
                println!("# the simulated cluster saw the connection on pod {pod}; its real BuildKit built it");
                show_image(&kit.daemons()[i], image, &full)?;
                if tag == "v2" {
                    let cached = shown.lines().filter(|l| l.ends_with(" CACHED")).count();
                    println!(
                        "# {cached} steps of the second build were CACHED by pod {pod}'s BuildKit"
                    );
                }
            }
            None => println!("# the simulated cluster saw the connection on pod {pod}"),
        }
        served.push(*pod);
    }
    if let Some(kit) = &kit {
        let i = PODS.iter().position(|p| *p == served[1]).unwrap_or(0);
        let full = format!("{image}:v2");
        let mut run = kit.daemons()[i].docker();
        run.args(["run", "--rm", "--network", "none", &full]);
        println!(
            "$ docker -H {} run --rm --network none {full}",
            kit.daemons()[i].docker_host()
        );
        print_output(&mut run)?;
    }

    if kit.is_some() {
        section("Connections each pod's buildkitd served (a real BuildKit behind each ready pod)");
    } else {
        section("Connections each pod's simulated buildkitd served");
    }
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
    let real = kit.is_some();
    drop(kit);
    drop(temp);
    if real {
        println!(
            "Done: the simulated cluster and the private dockerd are stopped and the temporary \
             files are removed."
        );
    } else {
        println!("Done: the simulated cluster is stopped and the temporary files are removed.");
    }
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
    /// Builds go through the stand-in buildctl (the simulated pods speak only its
    /// protocol); false: the built-in client on real BuildKit.
    standin_buildctl: bool,
}

impl Env {
    /// Print the command like a shell prompt, run it, print what it printed (and
    /// return that).
    fn show(&self, dir: &Path, argv: &[&str], vars: &[(&str, &str)]) -> Result<String> {
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
        // Simulated pods run the simulated buildkitd, which only the stand-in buildctl
        // speaks: builds go through it. On real BuildKit, build speaks BuildKit itself.
        cmd.env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBECTL_BUILDKIT_CLI")
            .env_remove("DOCKER_HOST")
            .env("PATH", &self.path)
            .env("HOME", &self.home)
            .env("KUBECONFIG", &self.kubeconfig)
            .envs(vars.iter().copied());
        if self.standin_buildctl {
            cmd.env("KUBECTL_BUILDKIT_CLI", "buildctl");
        }
        print_output(&mut cmd).with_context(|| format!("`{}`", argv.join(" ")))
    }
}

/// Run `cmd`, print its stdout then its stderr, and return both; fail on a non-zero exit.
fn print_output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{text}");
    if !out.status.success() {
        bail!("failed ({})", out.status);
    }
    Ok(text)
}

/// The example's build context for the fixture's daemons, in `temp`: its files, its
/// Dockerfile without the `# syntax=` line (BuildKit would fetch that frontend image,
/// and there is no network), and its FROM image tagged from the fixture's busybox in
/// every daemon (dockerd's BuildKit takes a local image before the registry).
fn real_context(example: &Path, temp: &Path, kit: &RealBuildkit) -> Result<PathBuf> {
    let ctx = temp.join("k8s_buildkitd");
    std::fs::create_dir_all(&ctx)?;
    for file in [".dockerignore", "app.sh"] {
        std::fs::copy(example.join(file), ctx.join(file))
            .with_context(|| format!("copying example/k8s_buildkitd/{file}"))?;
    }
    let dockerfile = std::fs::read_to_string(example.join("Dockerfile"))?;
    let kept: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().to_ascii_lowercase().starts_with("# syntax="))
        .collect();
    std::fs::write(ctx.join("Dockerfile"), kept.join("\n") + "\n")?;
    let base = kept
        .iter()
        .find_map(|l| l.strip_prefix("FROM "))
        .and_then(|rest| rest.split_whitespace().next())
        .context("the example's Dockerfile has no FROM line")?;
    for d in kit.daemons() {
        let out = d.docker().args(["tag", BUSYBOX_IMAGE, base]).output()?;
        if !out.status.success() {
            bail!(
                "docker tag {BUSYBOX_IMAGE} {base}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(ctx)
}

/// `docker image ls REPO` on the daemon behind a pod; fails unless `full` is there.
fn show_image(daemon: &kube_sim::realkit::Dockerd, repo: &str, full: &str) -> Result<()> {
    println!("$ docker -H {} image ls {repo}", daemon.docker_host());
    let text = print_output(daemon.docker().args(["image", "ls", repo]))?;
    let tag = full.rsplit(':').next().unwrap_or_default();
    if !text
        .lines()
        .any(|l| l.split_whitespace().take(2).eq([repo, tag]))
    {
        bail!("{full} is not in the image store of the daemon that built it");
    }
    Ok(())
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

/// PATH: the built binaries first (kubectl-buildkit and the stand-in buildctl and
/// docker; with `plugin_only`, a directory holding kubectl-buildkit alone), then a
/// `kubectl` shim when no kubectl is installed, then the system's PATH.
fn search_path(bins: &Path, temp: &Path, plugin_only: bool) -> Result<std::ffi::OsString> {
    let system = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = if plugin_only {
        let only = temp.join("plugin");
        std::fs::create_dir_all(&only)?;
        std::os::unix::fs::symlink(bins.join("kubectl-buildkit"), only.join("kubectl-buildkit"))?;
        vec![only]
    } else {
        vec![bins.to_path_buf()]
    };
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
