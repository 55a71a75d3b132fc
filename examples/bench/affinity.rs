//! Cache affinity on real BuildKit: the same workload built through the built-in client
//! on K real-BuildKit pods (each its own dockerd, so its own cache), once per strategy:
//! ours (the plugin's own ring, classic and rendezvous, hashing on the image name),
//! a Service's random pick (seeded, so a run is reproducible) and round-robin.
//!
//! Per strategy: the share of rebuilds whose expensive step the daemon reported CACHED
//! (the Status stream's `cached` flag, read from `--progress rawjson`), the total wall
//! time, and the bytes the tunnels carried up to the pods for a rebuild (the sim's
//! per-pod counters). For ours, the pool then grows to K+1 pods and every image is
//! built once more: the share that misses is compared with the ideal 1/(K+1).
//!
//! Caches are emptied (`docker builder prune -af` on every daemon) before each
//! strategy, so each one starts as cold as the others.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kube_sim::PodConfig;

use kubectl_buildkit::ring::{Algorithm, Ring};

use crate::env::{Env, MIB};
use crate::procs::run_timed;
use crate::realcluster::{pod_name, RealCluster, NS};
use crate::table::{Row, Target, Unit};

/// Marks the expensive step's vertex name in the Status stream.
const STEP_MARK: &str = "affinity-expensive-step";
/// One build may take this long at most (a cold one runs a 2 s step on vfs).
const BUILD_LIMIT: Duration = Duration::from_secs(180);
/// Image names over which the ring's movement on scale-up is counted in-process.
const SCALE_KEYS: usize = 10_000;

/// The workload's size.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Pods before scaling up (K).
    pub pods: usize,
    /// Images (M), each its own Dockerfile over a shared base.
    pub images: usize,
    /// Builds of each image (R): the first is cold wherever it lands.
    pub builds: usize,
    /// Bytes of each image's build context.
    pub context_bytes: u64,
    /// Seconds of work in the expensive RUN step.
    pub step_seconds: u32,
}

impl Workload {
    /// full: K=3, M=6, R=4; quick: K=2, M=3, R=3; tiny (the test): K=2, M=1, R=2.
    pub fn for_mode(quick: bool, tiny: bool) -> Workload {
        let (pods, images, builds) = match (tiny, quick) {
            (true, _) => (2, 1, 2),
            (false, true) => (2, 3, 3),
            (false, false) => (3, 6, 4),
        };
        Workload {
            pods,
            images,
            builds,
            context_bytes: if tiny { 2 * MIB } else { 8 * MIB },
            step_seconds: 2,
        }
    }
}

/// How a strategy picks the pod of each build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    /// The plugin's ring (`--algorithm NAME`, hash key = image name).
    Ours(&'static str),
    /// A Service: a random pod per connection (xorshift, fixed seed).
    Random,
    RoundRobin,
}

impl Strategy {
    fn id(self) -> &'static str {
        match self {
            Strategy::Ours(a) => a,
            Strategy::Random => "random",
            Strategy::RoundRobin => "round_robin",
        }
    }
}

/// A reproducible random pick: xorshift64* with a fixed seed.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// What one build did.
#[derive(Debug, Clone, Copy)]
struct BuildResult {
    cached: bool,
    wall: Duration,
    /// Bytes the tunnels carried up to the pods (all pods' counters, before/after).
    bytes_up: u64,
}

/// What one strategy did over the whole workload.
#[derive(Debug, Default)]
struct StrategyResult {
    rebuilds: usize,
    hits: usize,
    wall: Duration,
    /// bytes_up of each rebuild.
    rebuild_bytes: Vec<u64>,
    /// After growing to K+1 pods (ours only): (misses, images).
    scale: Option<(usize, usize)>,
}

impl StrategyResult {
    fn hit_rate(&self) -> f64 {
        if self.rebuilds == 0 {
            return f64::NAN;
        }
        100.0 * self.hits as f64 / self.rebuilds as f64
    }
}

/// The real-BuildKit cluster: K+1 daemons, the first K as pods.
struct World<'a> {
    env: &'a Env,
    real: RealCluster,
    work: Workload,
    dir: tempfile::TempDir,
}

fn image_name(i: usize) -> String {
    format!("bench.local/affinity/app-{i}")
}

impl<'a> World<'a> {
    fn start(env: &'a Env, work: Workload) -> Result<World<'a>> {
        let real = RealCluster::start("affinity", work.pods + 1, work.pods)?;
        let dir = tempfile::Builder::new()
            .prefix("bench-affinity-")
            .tempdir()?;
        let world = World {
            env,
            real,
            work,
            dir,
        };
        for i in 0..work.images {
            world.write_image(i)?;
        }
        Ok(world)
    }

    fn context(&self, image: usize) -> PathBuf {
        self.dir.path().join(format!("app-{image}"))
    }

    /// A Dockerfile with an expensive step of its own over the shared base, then a COPY
    /// of the sources; the sources are `context_bytes` of files, one of them small.
    fn write_image(&self, image: usize) -> Result<()> {
        let dir = self.context(image);
        let src = dir.join("src");
        std::fs::create_dir_all(&src)?;
        let base = self.real.kit.daemons()[0].busybox_image();
        std::fs::write(
            dir.join("Dockerfile"),
            format!(
                "FROM {base}\n\
                 RUN echo {STEP_MARK} {image} && sleep {secs} && echo built > /step-{image}\n\
                 COPY src/ /src/\n",
                secs = self.work.step_seconds
            ),
        )?;
        let files = 8u64;
        let each = self.work.context_bytes / files;
        for f in 0..files {
            // Distinct content per image and file, so nothing deduplicates by accident.
            let byte = (image as u64 * 31 + f * 7) as u8;
            std::fs::write(src.join(format!("blob-{f}.bin")), vec![byte; each as usize])?;
        }
        self.touch(image, 0)
    }

    /// The one-file change between two builds of an image.
    fn touch(&self, image: usize, round: usize) -> Result<()> {
        std::fs::write(
            self.context(image).join("src/change.txt"),
            format!("image {image} build {round}\n"),
        )?;
        Ok(())
    }

    fn bytes_up(&self) -> u64 {
        self.real.bytes_up(self.work.pods + 1)
    }

    /// One build through the built-in client: on `pod`, or where the ring puts it.
    async fn build(&self, image: usize, how: Pick<'_>) -> Result<BuildResult> {
        let mut cmd = self.env.plugin_with_kubeconfig(self.real.sim.kubeconfig());
        cmd.args(["build", "--progress", "rawjson", "--network", "none"]);
        match how {
            Pick::Ring(algorithm) => {
                cmd.args(["--algorithm", algorithm, "--hash-key", &image_name(image)]);
            }
            Pick::Pod(pod) => {
                cmd.args(["--pod", pod]);
            }
        }
        cmd.arg(self.context(image));
        let before = self.bytes_up();
        let (wall, out) = run_timed(&mut cmd, "kubectl buildkit build", BUILD_LIMIT).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "build of {} failed ({}): {}",
                image_name(image),
                out.status,
                stderr
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        let cached = step_cached(&stderr).with_context(|| {
            format!(
                "no '{STEP_MARK}' step in the rawjson progress of {}",
                image_name(image)
            )
        })?;
        Ok(BuildResult {
            cached,
            wall,
            bytes_up: self.bytes_up() - before,
        })
    }

    async fn run_strategy(&self, strategy: Strategy) -> Result<StrategyResult> {
        self.real.prune().await?;
        let mut result = StrategyResult::default();
        let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
        let mut next_rr = 0usize;
        for round in 0..self.work.builds {
            // Interleaved: every image once per round.
            for image in 0..self.work.images {
                self.touch(image, round)?;
                let pod;
                let how = match strategy {
                    Strategy::Ours(a) => Pick::Ring(a),
                    Strategy::Random => {
                        pod = pod_name(random.next(self.work.pods));
                        Pick::Pod(&pod)
                    }
                    Strategy::RoundRobin => {
                        pod = pod_name(next_rr % self.work.pods);
                        next_rr += 1;
                        Pick::Pod(&pod)
                    }
                };
                let b = self.build(image, how).await?;
                result.wall += b.wall;
                if round > 0 {
                    result.rebuilds += 1;
                    result.hits += usize::from(b.cached);
                    result.rebuild_bytes.push(b.bytes_up);
                }
            }
        }
        if let Strategy::Ours(algorithm) = strategy {
            result.scale = Some(self.scale_up(algorithm).await?);
        }
        Ok(result)
    }

    /// Add pod K (a fresh daemon), build every image once more, count the misses, then
    /// take the pod away again.
    async fn scale_up(&self, algorithm: &'static str) -> Result<(usize, usize)> {
        let k = self.work.pods;
        self.real
            .sim
            .upsert_pod(PodConfig::new(NS, &pod_name(k)).backed_by(&self.real.kit.daemons()[k]));
        let mut misses = 0;
        let outcome = async {
            for image in 0..self.work.images {
                self.touch(image, self.work.builds)?;
                let b = self.build(image, Pick::Ring(algorithm)).await?;
                misses += usize::from(!b.cached);
            }
            anyhow::Ok(())
        }
        .await;
        self.real.sim.remove_pod(NS, &pod_name(k));
        outcome?;
        Ok((misses, self.work.images))
    }
}

#[derive(Clone, Copy)]
enum Pick<'p> {
    Ring(&'static str),
    Pod(&'p str),
}

/// Whether the expensive step was CACHED, from `--progress rawjson` lines: the last
/// word on that vertex wins (BuildKit repeats a vertex as its state changes).
fn step_cached(rawjson: &str) -> Option<bool> {
    let mut seen = None;
    for line in rawjson.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(vertexes) = v.get("vertexes").and_then(|x| x.as_array()) else {
            continue;
        };
        for vx in vertexes {
            let name = vx.get("name").and_then(|n| n.as_str()).unwrap_or("");
            if name.contains(STEP_MARK) {
                let cached = vx.get("cached").and_then(|c| c.as_bool()).unwrap_or(false);
                seen = Some(seen.unwrap_or(false) || cached);
            }
        }
    }
    seen
}

/// How many of `keys` map to another pod once pod K joins the K pods.
fn moved(algorithm: Algorithm, pods: usize, keys: &[String]) -> usize {
    let before = Ring::new(algorithm, &(0..pods).map(pod_name).collect::<Vec<_>>());
    let after = Ring::new(algorithm, &(0..=pods).map(pod_name).collect::<Vec<_>>());
    keys.iter()
        .filter(|k| before.pick(k) != after.pick(k))
        .count()
}

/// The mean: a rebuild's expected cost, misses included (a median hides them).
fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

pub async fn run(env: &Env) -> Result<Vec<Row>> {
    run_workload(env, Workload::for_mode(env.quick, env.tiny)).await
}

async fn run_workload(env: &Env, work: Workload) -> Result<Vec<Row>> {
    let world = World::start(env, work)?;
    let strategies = [
        Strategy::Ours("classic"),
        Strategy::Ours("rendezvous"),
        Strategy::Random,
        Strategy::RoundRobin,
    ];
    let mut results = Vec::new();
    for s in strategies {
        let began = Instant::now();
        let r = world
            .run_strategy(s)
            .await
            .with_context(|| format!("strategy {}", s.id()))?;
        eprintln!(
            "bench:   affinity {}: {}/{} rebuild hits, {:.1}s of builds ({:.1}s with pruning), scale {:?}",
            s.id(),
            r.hits,
            r.rebuilds,
            r.wall.as_secs_f64(),
            began.elapsed().as_secs_f64(),
            r.scale
        );
        results.push((s, r));
    }
    let ctx_mib = work.context_bytes as f64 / MIB as f64;
    let get = |id: &str| {
        &results
            .iter()
            .find(|(s, _)| s.id() == id)
            .expect("every strategy ran")
            .1
    };
    let random = get("random");
    let round_robin = get("round_robin");
    let mut rows = Vec::new();
    for algorithm in ["classic", "rendezvous"] {
        let ours = get(algorithm);
        let rate = ours.hit_rate();
        let ratio = rate / random.hit_rate();
        // A random pick that never missed leaves nothing to beat: that is a MISS too.
        let pass = rate >= 100.0 && ratio >= 1.5;
        let mut hit = Row::new(
            &format!("affinity.hits.{algorithm}"),
            &format!("rebuild cache hits, {algorithm} vs a Service's random pick"),
            rate,
            Some(random.hit_rate()),
            Unit::Percent,
            Target::Check("100% and ≥ 1.5x".into(), pass),
        );
        hit.peer_label = Some("random".into());
        rows.push(hit);
        let mut wall = Row::new(
            &format!("affinity.wall.{algorithm}"),
            &format!("total build time, {algorithm} vs random pick"),
            ours.wall.as_secs_f64(),
            Some(random.wall.as_secs_f64()),
            Unit::Seconds,
            Target::RatioAtMost(0.6),
        );
        wall.peer_label = Some("random".into());
        rows.push(wall);
        let share = 100.0 * mean(&ours.rebuild_bytes) / work.context_bytes as f64;
        let mut bytes = Row::new(
            &format!("affinity.bytes.{algorithm}"),
            &format!("mean bytes sent for a one-file rebuild, % of the {ctx_mib:.0} MiB context"),
            share,
            Some(100.0 * mean(&random.rebuild_bytes) / work.context_bytes as f64),
            Unit::Percent,
            Target::AtMost(2.0),
        );
        bytes.peer_label = Some("random".into());
        bytes.ratio_shown = false;
        rows.push(bytes);
        if let Some((misses, images)) = ours.scale {
            let ideal = 100.0 / (work.pods + 1) as f64;
            let measured = 100.0 * misses as f64 / images as f64;
            let algo = match algorithm {
                "classic" => Algorithm::Classic,
                _ => Algorithm::Rendezvous,
            };
            let names: Vec<String> = (0..work.images).map(image_name).collect();
            let predicted = moved(algo, work.pods, &names);
            let mut scale = Row::new(
                &format!("affinity.scale.{algorithm}"),
                &format!(
                    "images whose build missed after {} -> {} pods ({misses}/{images}; the ring moved {predicted})",
                    work.pods,
                    work.pods + 1
                ),
                measured,
                Some(ideal),
                Unit::Percent,
                Target::RatioAtMost(1.5),
            );
            scale.peer_label = Some("ideal 1/(K+1)".into());
            rows.push(scale);
            let keys: Vec<String> = (0..SCALE_KEYS).map(image_name).collect();
            let share = 100.0 * moved(algo, work.pods, &keys) as f64 / SCALE_KEYS as f64;
            let mut wide = Row::new(
                &format!("affinity.scale.{algorithm}.keys"),
                &format!(
                    "image names the ring moves from {} -> {} pods, of {SCALE_KEYS}",
                    work.pods,
                    work.pods + 1
                ),
                share,
                Some(ideal),
                Unit::Percent,
                Target::RatioAtMost(1.5),
            );
            wide.peer_label = Some("ideal 1/(K+1)".into());
            rows.push(wide);
        }
    }
    let mut rr = Row::new(
        "affinity.hits.round_robin",
        "rebuild cache hits, round-robin vs random pick",
        round_robin.hit_rate(),
        Some(random.hit_rate()),
        Unit::Percent,
        Target::None,
    );
    rr.peer_label = Some("random".into());
    rows.push(rr);
    let mut rr_wall = Row::new(
        "affinity.wall.round_robin",
        "total build time, round-robin vs random pick",
        round_robin.wall.as_secs_f64(),
        Some(random.wall.as_secs_f64()),
        Unit::Seconds,
        Target::None,
    );
    rr_wall.peer_label = Some("random".into());
    rows.push(rr_wall);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_word_on_the_step_decides_and_other_vertices_do_not_count() {
        let lines = [
            r#"{"vertexes":[{"digest":"sha256:a","name":"[1/2] RUN echo affinity-expensive-step 0","cached":false}]}"#,
            r#"{"vertexes":[{"digest":"sha256:b","name":"[2/2] COPY src/ /src/","cached":true}]}"#,
            r#"{"vertexes":[{"digest":"sha256:a","name":"[1/2] RUN echo affinity-expensive-step 0","cached":true}]}"#,
        ];
        assert_eq!(step_cached(&lines.join("\n")), Some(true));
        assert_eq!(step_cached(lines[1]), None);
        assert_eq!(step_cached(lines[0]), Some(false));
    }

    #[test]
    fn the_random_pick_is_reproducible_and_spreads() {
        let mut a = Xorshift(0x9e37_79b9_7f4a_7c15);
        let mut b = Xorshift(0x9e37_79b9_7f4a_7c15);
        let picks: Vec<usize> = (0..300).map(|_| a.next(3)).collect();
        assert_eq!(picks, (0..300).map(|_| b.next(3)).collect::<Vec<_>>());
        for pod in 0..3 {
            let n = picks.iter().filter(|&&p| p == pod).count();
            assert!((60..140).contains(&n), "pod {pod} got {n} of 300");
        }
    }
}
