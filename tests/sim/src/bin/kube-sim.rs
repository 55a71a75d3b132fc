//! `kube-sim --config FILE.yaml [--kubeconfig-out PATH]`: run a simulated cluster until
//! SIGINT or SIGTERM, for shell tests, benchmarks and demos.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use kube_sim::{realkit, Sim, SimConfig};

const USAGE: &str = "usage: kube-sim --config FILE.yaml [--kubeconfig-out PATH]";

struct Args {
    config: PathBuf,
    kubeconfig_out: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut config = None;
    let mut kubeconfig_out = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        let a = a.to_string_lossy().into_owned();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| -> anyhow::Result<PathBuf> {
            match inline.clone() {
                Some(v) => Ok(PathBuf::from(v)),
                None => args
                    .next()
                    .map(PathBuf::from)
                    .with_context(|| format!("{name} needs a value\n{USAGE}")),
            }
        };
        match flag.as_str() {
            "--config" | "-c" => config = Some(value("--config")?),
            "--kubeconfig-out" => kubeconfig_out = Some(value("--kubeconfig-out")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(Args {
        config: config.with_context(|| format!("--config is required\n{USAGE}"))?,
        kubeconfig_out,
    })
}

fn main() {
    if let Err(e) = run() {
        eprintln!("kube-sim: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let mut cfg: SimConfig = serde_yaml::from_str(&text)
        .with_context(|| format!("parsing {}", args.config.display()))?;
    // Pods with `real_buildkit_daemon: N` get a real BuildKit: start the fixture
    // (stopped when this process ends, however it ends).
    let kit = match realkit::daemons_named(&cfg) {
        0 => None,
        daemons => Some(
            realkit::RealBuildkit::start(realkit::FixtureOptions {
                daemons,
                registry_users: Vec::new(),
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
    };
    if let Some(kit) = &kit {
        realkit::attach(&mut cfg, kit)?;
    }
    let sim = Sim::start(cfg)?;
    let kubeconfig = match &args.kubeconfig_out {
        Some(path) => {
            std::fs::copy(sim.kubeconfig(), path)
                .with_context(|| format!("writing {}", path.display()))?;
            path.clone()
        }
        None => sim.kubeconfig().to_path_buf(),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "kubeconfig: {}", kubeconfig.display())?;
    writeln!(out, "server: {}", sim.url())?;
    if let Some(kit) = &kit {
        for (i, d) in kit.daemons().iter().enumerate() {
            writeln!(
                out,
                "real buildkit daemon {i}: DOCKER_HOST={}",
                d.docker_host()
            )?;
        }
        writeln!(out, "realkit dir: {}", kit.dir().display())?;
        writeln!(out, "registry: {}", kit.registry().host())?;
    }
    out.flush()?;
    drop(out);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<_, std::io::Error>(())
    })?;
    sim.shutdown();
    drop(kit);
    if let Some(path) = &args.kubeconfig_out {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
