//! The benchmark's world: options, the simulated cluster, the binaries, and commands
//! with a clean environment (own HOME, the sim's KUBECONFIG, stand-ins first on PATH).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kube_sim::{PodConfig, Sim, SimConfig};
use tokio::process::Command;

pub const NS: &str = "buildkit";
pub const PODS: usize = 8;
pub const MIB: u64 = 1 << 20;

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Opts {
    pub quick: bool,
    /// The smallest workload of the real-BuildKit sections (their test's).
    pub tiny: bool,
    /// Where kubectl-buildkit and the stand-in buildctl live (default: next to us).
    pub bin_dir: Option<PathBuf>,
    /// Don't run `cargo build --workspace --bins` first.
    pub no_build: bool,
    pub kubectl: PathBuf,
    /// Run only these sections (all when empty).
    pub only: Vec<String>,
}

impl Opts {
    pub fn parse() -> Result<Opts> {
        let mut o = Opts {
            quick: false,
            tiny: false,
            bin_dir: None,
            no_build: false,
            kubectl: PathBuf::from("/usr/bin/kubectl"),
            only: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--tiny" => o.tiny = true,
                "--no-build" => o.no_build = true,
                "--bin-dir" => o.bin_dir = Some(args.next().context("--bin-dir needs DIR")?.into()),
                "--kubectl" => o.kubectl = args.next().context("--kubectl needs PATH")?.into(),
                "--only" => o.only.push(args.next().context("--only needs SECTION")?),
                "-h" | "--help" => {
                    println!(
                        "usage: bench [--quick|--tiny] [--only SECTION]... [--bin-dir DIR] [--no-build] [--kubectl PATH]\n\
                         sections: dispatch throughput memory concurrency ring (run by default)\n\
                         \x20         client affinity (real BuildKit, as root; only with --only)"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?}: try --help"),
            }
        }
        Ok(o)
    }
}

/// Sizes and repetitions: full or quick.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub warmups: usize,
    pub runs: usize,
    /// Bytes echoed each way per throughput run.
    pub tput_bytes: u64,
    /// The two transfer sizes for peak RSS.
    pub rss_small: u64,
    pub rss_large: u64,
    /// Builds at once, and the build context each one moves.
    pub concurrent: usize,
    pub conc_payload: u64,
    /// In-process ring lookups per run (classic/buildx; rendezvous does fewer).
    pub ring_lookups: u64,
    pub ring_cli_pods: usize,
    pub ring_cli_keys: usize,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                warmups: 1,
                runs: 3,
                tput_bytes: 16 * MIB,
                rss_small: 8 * MIB,
                rss_large: 32 * MIB,
                concurrent: 32,
                conc_payload: 64 * 1024,
                ring_lookups: 100_000,
                ring_cli_pods: 1000,
                ring_cli_keys: 1_000,
            }
        } else {
            Plan {
                warmups: 1,
                runs: 5,
                tput_bytes: 1024 * MIB,
                rss_small: 256 * MIB,
                rss_large: 1024 * MIB,
                concurrent: 32,
                conc_payload: 32 * MIB,
                ring_lookups: 2_000_000,
                ring_cli_pods: 1000,
                ring_cli_keys: 10_000,
            }
        }
    }
}

pub struct Env {
    pub sim: Sim,
    pub plan: Plan,
    pub bin_dir: PathBuf,
    pub kubectl: PathBuf,
    pub home: tempfile::TempDir,
    /// A tiny build context with a Dockerfile.
    pub context_dir: PathBuf,
    pub quick: bool,
    pub tiny: bool,
    path: OsString,
}

impl Env {
    pub fn start(opts: &Opts) -> Result<Env> {
        let bin_dir = match &opts.bin_dir {
            Some(d) => d.clone(),
            None => default_bin_dir()?,
        };
        if !opts.no_build {
            build_binaries(&bin_dir)?;
        }
        for name in ["kubectl-buildkit", "buildctl"] {
            if !bin_dir.join(name).is_file() {
                bail!(
                    "{} is missing: run `cargo build --release --workspace --bins`, or pass --bin-dir",
                    bin_dir.join(name).display()
                );
            }
        }
        if !opts.kubectl.is_file() {
            bail!(
                "kubectl not found at {}: install it or pass --kubectl PATH",
                opts.kubectl.display()
            );
        }
        let pods = (0..PODS)
            .map(|i| PodConfig::new(NS, &format!("buildkitd-{i}")))
            .collect();
        let sim = Sim::start(SimConfig {
            pods,
            context_namespace: Some(NS.into()),
            ..SimConfig::default()
        })
        .context("starting the simulated cluster")?;
        let home = tempfile::Builder::new().prefix("bench-home-").tempdir()?;
        let context_dir = home.path().join("app");
        std::fs::create_dir_all(&context_dir)?;
        std::fs::write(context_dir.join("Dockerfile"), "FROM scratch\nCOPY . /\n")?;
        // The stand-ins first, then the rest of PATH (the stand-in buildctl runs
        // `kubectl` from PATH for kube-pod://, so it must find the real one).
        let mut dirs = vec![bin_dir.clone()];
        if let Some(k) = opts.kubectl.parent() {
            dirs.push(k.to_path_buf());
        }
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let path = std::env::join_paths(dirs)?;
        Ok(Env {
            sim,
            plan: Plan::new(opts.quick),
            quick: opts.quick,
            tiny: opts.tiny,
            bin_dir,
            kubectl: opts.kubectl.clone(),
            home,
            context_dir,
            path,
        })
    }

    pub fn pods(&self) -> Vec<String> {
        (0..PODS).map(|i| format!("buildkitd-{i}")).collect()
    }

    pub fn buildctl_path(&self) -> PathBuf {
        self.bin_dir.join("buildctl")
    }

    /// A command against the bench's simulated cluster. Its pods run the simulated
    /// buildkitd, which only the stand-in buildctl speaks: builds there use
    /// `--cli buildctl` (the real-BuildKit sections use the built-in client).
    fn clean(&self, program: &Path) -> Command {
        let mut cmd = self.clean_with(program, self.sim.kubeconfig());
        cmd.env("KUBECTL_BUILDKIT_CLI", "buildctl");
        cmd
    }

    /// The plugin against another cluster than the bench's own (a real-BuildKit one).
    pub fn plugin_with_kubeconfig(&self, kubeconfig: &Path) -> Command {
        self.clean_with(&self.bin_dir.join("kubectl-buildkit"), kubeconfig)
    }

    fn clean_with(&self, program: &Path, kubeconfig: &Path) -> Command {
        let mut cmd = Command::from(self.clean_std(program, kubeconfig));
        cmd.kill_on_drop(true);
        cmd
    }

    /// A clean environment for `program`, as a std Command (for wait4-measured runs).
    pub fn clean_std(&self, program: &Path, kubeconfig: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.env_clear()
            .env("PATH", &self.path)
            .env("HOME", self.home.path())
            .env("KUBECONFIG", kubeconfig)
            .current_dir(self.home.path())
            .stdin(std::process::Stdio::null());
        if let Some(t) = std::env::var_os("TMPDIR") {
            cmd.env("TMPDIR", t);
        }
        cmd
    }

    pub fn plugin_path(&self) -> PathBuf {
        self.bin_dir.join("kubectl-buildkit")
    }

    pub fn plugin(&self) -> Command {
        self.clean(&self.bin_dir.join("kubectl-buildkit"))
    }

    pub fn kubectl(&self) -> Command {
        self.clean(&self.kubectl)
    }

    pub fn buildctl(&self) -> Command {
        self.clean(&self.buildctl_path())
    }
}

/// target/<profile>/, from target/<profile>/examples/bench.
fn default_bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the bench executable")?;
    let dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .context("the bench executable has no target directory above it")?;
    Ok(dir.to_path_buf())
}

/// `cargo build [--release] --workspace --bins`: a no-op when the binaries are fresh,
/// so the figures never come from stale binaries.
fn build_binaries(bin_dir: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--workspace", "--bins"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if bin_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    eprintln!("bench: {:?}", cmd);
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("`cargo build --workspace --bins` failed ({status})");
    }
    Ok(())
}
