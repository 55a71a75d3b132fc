//! Section 3: peak RSS (VmHWM) of a fresh `kubectl-buildkit tunnel` after moving a
//! small and a large amount through it, next to a fresh `kubectl exec`'s for the same
//! transfer. Each figure is the largest of the runs (memory is judged by its worst).

use anyhow::{bail, Result};

use crate::dispatch::expected_pod;
use crate::env::{Env, MIB};
use crate::procs::{exe_of, peak_rss};
use crate::table::{Row, Target, Unit};
use crate::throughput::{echo_at, finish_exec, kubectl_exec_echo, start_tunnel, KEY};

const BUDGET_MIB: f64 = 32.0;
/// "Flat": the large transfer may add at most this much to the peak.
const FLAT_SLACK_MIB: f64 = 2.0;

/// (our peak, kubectl's peak) in MiB over `runs` fresh processes.
async fn peaks(env: &Env, pod: &str, len: u64, runs: usize) -> Result<(f64, f64)> {
    let (mut ours, mut theirs) = (0f64, 0f64);
    for _ in 0..runs {
        let (tunnel, addr) = start_tunnel(env, KEY, &[]).await?;
        let r = echo_at(&addr, pod, len).await;
        let peak = peak_rss(tunnel.pid());
        tunnel.stop().await;
        r?;
        ours = ours.max(peak? as f64 / MIB as f64);

        let (_, h) = kubectl_exec_echo(env, pod, len, false).await?;
        let pid = h.pid();
        let exe = exe_of(pid);
        if !exe.contains("kubectl") {
            bail!("kubectl exec runs as {exe}: cannot tell its memory");
        }
        let peak = peak_rss(pid);
        finish_exec(h).await?;
        theirs = theirs.max(peak? as f64 / MIB as f64);
    }
    Ok((ours, theirs))
}

pub async fn run(env: &Env) -> Result<Vec<Row>> {
    let p = env.plan;
    let pod = expected_pod(env, KEY);
    let (small_ours, small_theirs) = peaks(env, &pod, p.rss_small, p.runs).await?;
    let (large_ours, large_theirs) = peaks(env, &pod, p.rss_large, p.runs).await?;
    let growth = large_ours - small_ours;
    let mut flat = Row::new(
        "rss.flat",
        &format!(
            "peak RSS growth from {} to {} MiB (ours vs kubectl exec)",
            p.rss_small / MIB,
            p.rss_large / MIB
        ),
        growth,
        Some(large_theirs - small_theirs),
        Unit::Mib,
        Target::Check(
            format!("flat: ≤ {FLAT_SLACK_MIB} MiB"),
            growth <= FLAT_SLACK_MIB,
        ),
    );
    flat.ratio_shown = false;
    Ok(vec![
        Row::new(
            "rss.small",
            &format!(
                "peak RSS of the exec tunnel vs kubectl exec, {} MiB each way",
                p.rss_small / MIB
            ),
            small_ours,
            Some(small_theirs),
            Unit::Mib,
            Target::AtMost(BUDGET_MIB),
        ),
        Row::new(
            "rss.large",
            &format!(
                "peak RSS of the exec tunnel vs kubectl exec, {} MiB each way",
                p.rss_large / MIB
            ),
            large_ours,
            Some(large_theirs),
            Unit::Mib,
            Target::AtMost(BUDGET_MIB),
        ),
        flat,
    ])
}
