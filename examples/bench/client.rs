//! Our built-in BuildKit client against docker's Go client (`/usr/bin/docker build`
//! with BuildKit, Debian's 20.10) on the same real daemon, side by side in one run.
//!
//! Ours goes the way a user's build goes: through the simulated cluster's exec tunnel
//! (`buildctl dial-stdio` bridged to the daemon's BuildKit); docker talks to the same
//! daemon's socket directly. Both export the image into the daemon (ours with
//! `--output type=moby`, docker by default), both with `--network none`.
//!
//! - noop: a rebuild of an unchanged small context (everything cached).
//! - big: a context of one large file, the daemon's build cache emptied before each
//!   run, so every run sends the whole file.
//! - many: a context of many small files, emptied likewise.
//! - rss: our peak RSS (the kernel's, from wait4; median of the runs) sending a large
//!   context, next to a small one: it must stay flat in the context's size.
//!
//! Runs alternate ours / docker, who goes first alternating by round; each figure is
//! the median of the runs, and every sample is printed on stderr.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::env::{Env, MIB};
use crate::procs::{run_measured, Measured};
use crate::realcluster::{pod_name, RealCluster};
use crate::table::{median, Row, Target, Unit};

const BUILD_LIMIT: Duration = Duration::from_secs(600);
const DOCKER: &str = "/usr/bin/docker";
/// Peak RSS budget sending the large context (the target).
const RSS_BUDGET_MIB: f64 = 48.0;

#[derive(Debug, Clone, Copy)]
struct Sizes {
    runs: usize,
    big_file: u64,
    many_files: usize,
    rss_small: u64,
    rss_large: u64,
}

impl Sizes {
    fn for_mode(quick: bool, tiny: bool) -> Sizes {
        if tiny {
            Sizes {
                runs: 1,
                big_file: 4 * MIB,
                many_files: 200,
                rss_small: MIB,
                rss_large: 8 * MIB,
            }
        } else if quick {
            Sizes {
                runs: 3,
                big_file: 16 * MIB,
                many_files: 2_000,
                rss_small: 4 * MIB,
                rss_large: 128 * MIB,
            }
        } else {
            Sizes {
                runs: 5,
                big_file: 64 * MIB,
                many_files: 10_000,
                rss_small: 16 * MIB,
                rss_large: 1024 * MIB,
            }
        }
    }
}

struct World<'a> {
    env: &'a Env,
    real: RealCluster,
    dir: tempfile::TempDir,
}

/// Which client builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Ours,
    Docker,
}

impl<'a> World<'a> {
    fn context(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A context `name` holding a Dockerfile that copies everything in.
    fn make_context(&self, name: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let dir = self.context(name);
        std::fs::create_dir_all(dir.join("data"))?;
        let base = self.real.kit.daemons()[0].busybox_image();
        std::fs::write(
            dir.join("Dockerfile"),
            format!("FROM {base}\nCOPY data/ /data/\n"),
        )?;
        fill(&dir.join("data"))
    }

    fn command(&self, client: Client, context: &str, tag: &str) -> std::process::Command {
        let kubeconfig = self.real.sim.kubeconfig();
        match client {
            Client::Ours => {
                let mut cmd = self.env.clean_std(&self.env.plugin_path(), kubeconfig);
                cmd.args(["build", "--pod", &pod_name(0), "--network", "none"])
                    .args(["--progress", "quiet", "--output"])
                    .arg(format!("type=moby,name={tag}"))
                    .arg(self.context(context));
                cmd
            }
            Client::Docker => {
                let mut cmd = self.env.clean_std(Path::new(DOCKER), kubeconfig);
                cmd.env("DOCKER_BUILDKIT", "1")
                    .env("DOCKER_HOST", self.real.kit.daemons()[0].docker_host())
                    .args(["build", "--network", "none", "-q", "-t", tag])
                    .arg(self.context(context));
                cmd
            }
        }
    }

    async fn build(&self, client: Client, context: &str) -> Result<Measured> {
        let tag = format!("bench.local/client/{context}:{client:?}").to_lowercase();
        let m = run_measured(
            self.command(client, context, &tag),
            &format!("{client:?} build of {context}"),
            BUILD_LIMIT,
        )
        .await?;
        if !m.success {
            bail!(
                "{client:?} build of {context} failed: {}",
                m.stderr
                    .lines()
                    .rev()
                    .take(12)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        Ok(m)
    }

    /// Median seconds of ours and docker's over `runs` alternating builds, the cache
    /// emptied before each one when `cold`.
    async fn compare(&self, context: &str, runs: usize, cold: bool) -> Result<(f64, f64)> {
        let (mut ours, mut docker) = (Vec::new(), Vec::new());
        if !cold {
            // Warm both: the figure is a rebuild.
            self.build(Client::Ours, context).await?;
            self.build(Client::Docker, context).await?;
        }
        for round in 0..runs {
            // Who goes first alternates, so neither always follows the other's build
            // (or the previous row's): a drift in the daemon's state cancels out.
            let order = if round % 2 == 0 {
                [Client::Ours, Client::Docker]
            } else {
                [Client::Docker, Client::Ours]
            };
            for client in order {
                if cold {
                    self.real.prune().await?;
                }
                let before = self.real.bytes_up(1);
                let m = self.build(client, context).await?;
                if client == Client::Ours && cold {
                    let sent = self.real.bytes_up(1) - before;
                    let size = dir_bytes(&self.context(context))?;
                    // A cold build must send the whole context: else the prune kept
                    // something and the figure would flatter us.
                    if sent < size {
                        bail!("a cold build of {context} sent {sent} bytes, less than its {size}");
                    }
                }
                let v = if client == Client::Ours {
                    &mut ours
                } else {
                    &mut docker
                };
                v.push(m.wall.as_secs_f64());
            }
        }
        // Every sample, so a reader can judge a ratio near 1 against the spread.
        eprintln!(
            "bench:   client.{context} runs: ours {}, docker {}",
            samples(&ours),
            samples(&docker)
        );
        Ok((median(&ours), median(&docker)))
    }

    /// Our peak RSS, MiB: the median over `runs` cold builds of `context` (one
    /// peak is the top of a plateau that wobbles by about 1 MiB as queues fill).
    async fn peak(&self, context: &str, runs: usize) -> Result<f64> {
        let mut peaks = Vec::new();
        for _ in 0..runs {
            self.real.prune().await?;
            let m = self.build(Client::Ours, context).await?;
            peaks.push(m.peak_rss as f64 / MIB as f64);
        }
        Ok(median(&peaks))
    }
}

/// `[0.95 0.97 1.02] s`, sorted.
fn samples(v: &[f64]) -> String {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let shown: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
    format!("[{}] s", shown.join(" "))
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// `len` bytes of a pattern that no compressor or deduplicator flattens.
fn write_noise(path: &Path, len: u64, seed: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x = seed | 1;
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

pub async fn run(env: &Env) -> Result<Vec<Row>> {
    let sizes = Sizes::for_mode(env.quick, env.tiny);
    let real = RealCluster::start("client", 1, 1)?;
    let dir = tempfile::Builder::new().prefix("bench-client-").tempdir()?;
    let w = World { env, real, dir };
    w.make_context("noop", |d| {
        Ok(std::fs::write(d.join("hello.txt"), "hello\n")?)
    })?;
    w.make_context("big", |d| {
        write_noise(&d.join("big.bin"), sizes.big_file, 7)
    })?;
    w.make_context("many", |d| {
        for i in 0..sizes.many_files {
            let sub = d.join(format!("d{:03}", i / 100));
            std::fs::create_dir_all(&sub)?;
            std::fs::write(sub.join(format!("f{i:05}.txt")), format!("file {i}\n"))?;
        }
        Ok(())
    })?;
    w.make_context("rss-small", |d| {
        write_noise(&d.join("blob.bin"), sizes.rss_small, 11)
    })?;
    w.make_context("rss-large", |d| {
        write_noise(&d.join("blob.bin"), sizes.rss_large, 13)
    })?;

    let (noop_ours, noop_docker) = w.compare("noop", sizes.runs, false).await.context("noop")?;
    let (big_ours, big_docker) = w.compare("big", sizes.runs, true).await.context("big")?;
    let (many_ours, many_docker) = w.compare("many", sizes.runs, true).await.context("many")?;
    let rss_small = w.peak("rss-small", sizes.runs).await.context("rss-small")?;
    let rss_large = w.peak("rss-large", sizes.runs).await.context("rss-large")?;
    w.real.prune().await?;

    let docker_row = |id: &str, what: String, ours: f64, docker: f64| {
        let mut r = Row::new(
            id,
            &what,
            ours,
            Some(docker),
            Unit::Seconds,
            Target::RatioAtMost(1.0),
        );
        r.peer_label = Some("docker build".into());
        r
    };
    let mut rss = Row::new(
        "client.rss",
        &format!(
            "our peak RSS sending a {} MiB context (vs {} MiB)",
            sizes.rss_large / MIB,
            sizes.rss_small / MIB
        ),
        rss_large,
        Some(rss_small),
        Unit::Mib,
        Target::Check(
            format!("≤ {RSS_BUDGET_MIB} MiB, flat (≤ +2 MiB)"),
            rss_large <= RSS_BUDGET_MIB && rss_large - rss_small <= 2.0,
        ),
    );
    rss.peer_label = Some(format!("{} MiB context", sizes.rss_small / MIB));
    rss.ratio_shown = false;
    Ok(vec![
        docker_row(
            "client.noop",
            "no-op rebuild, ours (exec tunnel) vs docker build (socket)".into(),
            noop_ours,
            noop_docker,
        ),
        docker_row(
            "client.big",
            format!(
                "cold build of a {} MiB one-file context",
                sizes.big_file / MIB
            ),
            big_ours,
            big_docker,
        ),
        docker_row(
            "client.many",
            format!("cold build of a {}-file context", sizes.many_files),
            many_ours,
            many_docker,
        ),
        rss,
    ])
}
