//! The real-BuildKit world of the affinity and client sections: private dockerd (each
//! one BuildKit with its own cache) and a simulated cluster whose pods are backed by
//! them, so a build goes through the Kubernetes API path to a real daemon.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use kube_sim::realkit::{FixtureOptions, RealBuildkit};
use kube_sim::{PodConfig, Sim, SimConfig};

use crate::procs::run_timed;

pub const NS: &str = "realkit";
/// What one daemon-side chore (a prune) may take.
const CHORE_LIMIT: Duration = Duration::from_secs(180);

pub fn pod_name(i: usize) -> String {
    format!("buildkitd-{i}")
}

pub struct RealCluster {
    pub kit: RealBuildkit,
    pub sim: Sim,
}

impl RealCluster {
    /// `daemons` dockerd; the first `pods` of them back the pods buildkitd-0.. .
    pub fn start(section: &str, daemons: usize, pods: usize) -> Result<RealCluster> {
        let kit = RealBuildkit::start(FixtureOptions {
            daemons,
            registry_users: Vec::new(),
        })
        .map_err(|e| anyhow::anyhow!("{e}: the {section} section needs the real BuildKit"))?;
        eprintln!(
            "bench:   {section}: {daemons} dockerd started in {:.1}s",
            kit.started_in().as_secs_f64()
        );
        let pods = (0..pods)
            .map(|i| PodConfig::new(NS, &pod_name(i)).backed_by(&kit.daemons()[i]))
            .collect();
        let sim = Sim::start(SimConfig {
            pods,
            context_namespace: Some(NS.into()),
            ..SimConfig::default()
        })
        .context("starting the simulated cluster with real builders")?;
        Ok(RealCluster { kit, sim })
    }

    /// Bytes the tunnels carried up to pods buildkitd-0..n-1 so far.
    pub fn bytes_up(&self, n: usize) -> u64 {
        (0..n)
            .map(|i| self.sim.stats(NS, &pod_name(i)).bytes_in)
            .sum()
    }

    /// Empty every daemon's build cache (and the sources it kept).
    pub async fn prune(&self) -> Result<()> {
        for d in self.kit.daemons() {
            let mut cmd = tokio::process::Command::from(d.docker());
            cmd.args(["builder", "prune", "-af"]).kill_on_drop(true);
            let (_, out) = run_timed(&mut cmd, "docker builder prune", CHORE_LIMIT).await?;
            if !out.status.success() {
                bail!(
                    "docker builder prune failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(())
    }
}
