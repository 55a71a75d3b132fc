//! Section 5: ring lookups per second in process (src/ring.rs compiled into this
//! example), and the time of `kubectl-buildkit ring` over 1,000 pods and 10,000 keys.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::dispatch::measure;
use crate::env::Env;
use crate::procs::run_ok;
use crate::table::{ms, Row, Target, Unit};
use kubectl_buildkit::ring::{Algorithm, Ring};

const KEYS: usize = 4096;

fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("registry.example.com/team-{}/app-{i}", i % 37))
        .collect()
}

fn pods(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("buildkitd-{i}")).collect()
}

/// Lookups per second over `lookups` picks.
fn lookups_per_sec(ring: &Ring, keys: &[String], lookups: u64) -> f64 {
    let start = Instant::now();
    for i in 0..lookups {
        black_box(ring.pick(black_box(&keys[i as usize % keys.len()])));
    }
    lookups as f64 / start.elapsed().as_secs_f64()
}

pub async fn run(env: &Env) -> Result<Vec<Row>> {
    let p = env.plan;
    let ks = keys(KEYS);
    let mut rows = Vec::new();
    for alg in [Algorithm::Classic, Algorithm::Buildx, Algorithm::Rendezvous] {
        for n in [10usize, 100, 1000] {
            let ring = Ring::new(alg, &pods(n));
            // Rendezvous hashes every pod per lookup: fewer lookups keep it short.
            let lookups = match alg {
                Algorithm::Rendezvous => (p.ring_lookups / n as u64).max(1000),
                _ => p.ring_lookups,
            };
            let rate = measure(p.warmups, p.runs, |_| {
                let r = lookups_per_sec(&ring, &ks, lookups);
                async move { Ok(r) }
            })
            .await?;
            let target = match (alg, n) {
                (Algorithm::Classic | Algorithm::Buildx, 1000) => Target::AtLeast(1e6),
                _ => Target::None,
            };
            rows.push(Row::new(
                &format!("ring.{alg}.{n}"),
                &format!("{alg} ring lookups, {n} pods (in process)"),
                rate,
                None,
                Unit::PerSec,
                target,
            ));
        }
    }

    // Through the binary: one process builds the ring and prints the table.
    let pods_file = env.home.path().join("ring-pods.txt");
    std::fs::write(&pods_file, pods(p.ring_cli_pods).join("\n"))?;
    let cli_keys = keys(p.ring_cli_keys);
    let last = cli_keys.last().cloned().unwrap_or_default();
    let t = measure(p.warmups, p.runs, |_| {
        let mut cmd = env.plugin();
        cmd.arg("ring")
            .arg("--pods-file")
            .arg(&pods_file)
            .args(&cli_keys);
        let last = last.clone();
        async move {
            let (t, out) =
                run_ok(&mut cmd, "kubectl-buildkit ring", Duration::from_secs(120)).await?;
            if !String::from_utf8_lossy(&out.stdout).contains(&last) {
                bail!("`ring` output lacks the last key {last}");
            }
            Ok(ms(t))
        }
    })
    .await?;
    rows.push(Row::new(
        "ring.cli",
        &format!(
            "`kubectl-buildkit ring --pods-file` {} pods, {} keys, table (process wall time)",
            p.ring_cli_pods, p.ring_cli_keys
        ),
        t,
        None,
        Unit::Ms,
        Target::None,
    ));
    Ok(rows)
}
