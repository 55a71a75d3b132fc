//! Section 2: bytes through each path, echoed both ways at once and verified: our
//! exec and port-forward tunnels, `kubectl exec -i -- buildctl dial-stdio`,
//! `kubectl port-forward`, and direct TCP to the simulated buildkitd (the ceiling).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kube_sim::buildkitd::client::hello;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::Child;

use crate::dispatch::{expected_pod, measure};
use crate::echo::echo;
use crate::env::{Env, MIB, NS};
use crate::procs::{cpu_seconds, Helper};
use crate::table::{Row, Target, Unit};

pub const KEY: &str = "registry.example.com/team/throughput";

/// Where a client connects.
#[derive(Debug, Clone)]
pub enum Addr {
    Unix(String),
    Tcp(SocketAddr),
}

impl Addr {
    pub fn parse(buildkit_host: &str) -> Result<Addr> {
        if let Some(p) = buildkit_host.strip_prefix("unix://") {
            Ok(Addr::Unix(p.to_string()))
        } else if let Some(hp) = buildkit_host.strip_prefix("tcp://") {
            Ok(Addr::Tcp(hp.parse().context("tunnel address")?))
        } else {
            bail!("unexpected tunnel address {buildkit_host}")
        }
    }
}

/// Deadline for moving `len` bytes: generous (10 MiB/s) plus setup.
pub fn limit_for(len: u64) -> Duration {
    Duration::from_secs(30 + len / (10 * MIB))
}

/// Greet, check the pod, then time the echo of `len` bytes.
async fn greet_and_echo<R, W>(
    r: &mut R,
    w: &mut W,
    pod: &str,
    len: u64,
    quit: bool,
) -> Result<Duration>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let who = hello(r).await.context("reading the buildkitd greeting")?;
    if who.pod != pod {
        bail!("reached pod {} instead of {pod}", who.pod);
    }
    let start = Instant::now();
    let got = echo(r, w, len, quit).await.context("echo")?;
    let t = start.elapsed();
    if got != len {
        bail!("echoed {got} of {len} bytes");
    }
    Ok(t)
}

/// One connection to `addr`, `len` bytes echoed; the echo's duration.
pub async fn echo_at(addr: &Addr, pod: &str, len: u64) -> Result<Duration> {
    let fut = async {
        match addr {
            Addr::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .with_context(|| format!("connecting to {p}"))?;
                let (mut r, mut w) = s.into_split();
                greet_and_echo(&mut r, &mut w, pod, len, true).await
            }
            Addr::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a)
                    .await
                    .with_context(|| format!("connecting to {a}"))?;
                s.set_nodelay(true)?;
                let (mut r, mut w) = s.into_split();
                greet_and_echo(&mut r, &mut w, pod, len, true).await
            }
        }
    };
    tokio::time::timeout(limit_for(len), fut)
        .await
        .context("echo timed out")?
}

/// `kubectl-buildkit tunnel --hash-key KEY [extra]`, and the address it prints.
pub async fn start_tunnel(env: &Env, key: &str, extra: &[&str]) -> Result<(Helper, Addr)> {
    let mut cmd = env.plugin();
    cmd.args(["tunnel", "--hash-key", key]).args(extra);
    let mut h = Helper::spawn(&mut cmd, "kubectl-buildkit tunnel")?;
    let host = h
        .wait_line(Duration::from_secs(30), |l| {
            l.strip_prefix("BUILDKIT_HOST=").map(str::to_string)
        })
        .await?;
    Ok((h, Addr::parse(&host)?))
}

/// `kubectl port-forward pod/POD :1234`, and the local port it chose.
pub async fn start_kubectl_port_forward(env: &Env, pod: &str) -> Result<(Helper, Addr)> {
    let mut cmd = env.kubectl();
    cmd.args(["port-forward", &format!("pod/{pod}"), ":1234"]);
    let mut h = Helper::spawn(&mut cmd, "kubectl port-forward")?;
    // "Forwarding from 127.0.0.1:40123 -> 1234"
    let addr = h
        .wait_line(Duration::from_secs(30), |l| {
            let rest = l.strip_prefix("Forwarding from 127.0.0.1:")?;
            let port: u16 = rest.split_whitespace().next()?.parse().ok()?;
            Some(SocketAddr::from(([127, 0, 0, 1], port)))
        })
        .await?;
    Ok((h, Addr::Tcp(addr)))
}

/// `kubectl exec -i POD -- buildctl dial-stdio`: what buildctl's kube-pod:// runs.
pub fn spawn_kubectl_exec(env: &Env, pod: &str) -> Result<Helper> {
    let mut cmd = env.kubectl();
    cmd.args(["exec", "-i", pod, "--", "buildctl", "dial-stdio"])
        .stdin(std::process::Stdio::piped());
    Helper::spawn(&mut cmd, "kubectl exec")
}

/// Echo through a fresh `kubectl exec`; returns the echo's duration and the child.
/// Without `quit` the stream stays open and kubectl keeps running (stdin not closed)
/// so the caller can read its /proc; with it, kubectl ends on its own.
pub async fn kubectl_exec_echo(
    env: &Env,
    pod: &str,
    len: u64,
    quit: bool,
) -> Result<(Duration, Helper)> {
    let mut h = spawn_kubectl_exec(env, pod)?;
    let mut stdin = h.child.stdin.take().context("stdin")?;
    let mut stdout = h.child.stdout.take().context("stdout")?;
    let t = tokio::time::timeout(
        limit_for(len),
        greet_and_echo(&mut stdout, &mut stdin, pod, len, quit),
    )
    .await
    .context("kubectl exec echo timed out")?
    .with_context(|| format!("through kubectl exec (stderr: {})", h.stderr().trim()))?;
    // Keep the pipes with the child until the caller is done with it.
    h.child.stdin = Some(stdin);
    h.child.stdout = Some(stdout);
    Ok((t, h))
}

/// Close kubectl exec's stdin and let it finish.
pub async fn finish_exec(mut h: Helper) -> Result<()> {
    drop(h.child.stdin.take());
    let child: &mut Child = &mut h.child;
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(Ok(_)) => Ok(()),
        _ => {
            h.stop().await;
            bail!("kubectl exec did not end after its stdin closed")
        }
    }
}

fn mibps(len: u64, t: Duration) -> f64 {
    len as f64 / MIB as f64 / t.as_secs_f64()
}

pub async fn run(env: &Env) -> Result<Vec<Row>> {
    let p = env.plan;
    let len = p.tput_bytes;
    let pod = expected_pod(env, KEY);

    // CPU time of the relaying process (user + system) over all its transfers, per
    // GiB moved each way: independent of what else the machine is doing.
    let gib_total = (len * (p.warmups + p.runs) as u64) as f64 / (1u64 << 30) as f64;

    let (tunnel, addr) = start_tunnel(env, KEY, &[]).await?;
    let cpu0 = cpu_seconds(tunnel.pid())?;
    let ours_exec = measure(p.warmups, p.runs, |_| async {
        Ok(mibps(len, echo_at(&addr, &pod, len).await?))
    })
    .await;
    let cpu_ours_exec = (cpu_seconds(tunnel.pid())? - cpu0) / gib_total;
    tunnel.stop().await;
    let ours_exec = ours_exec?;

    let kubectl_cpu = std::cell::Cell::new(0f64);
    let kubectl_exec = measure(p.warmups, p.runs, |_| async {
        // Without QUIT kubectl stays up after the echo, so its /proc can be read.
        let (t, h) = kubectl_exec_echo(env, &pod, len, false).await?;
        let cpu = cpu_seconds(h.pid());
        finish_exec(h).await?;
        kubectl_cpu.set(kubectl_cpu.get() + cpu?);
        Ok(mibps(len, t))
    })
    .await?;
    let cpu_kubectl_exec = kubectl_cpu.get() / gib_total;

    let (tunnel, addr) = start_tunnel(env, KEY, &["--tunnel", "port-forward"]).await?;
    let cpu0 = cpu_seconds(tunnel.pid())?;
    let ours_pf = measure(p.warmups, p.runs, |_| async {
        Ok(mibps(len, echo_at(&addr, &pod, len).await?))
    })
    .await;
    let cpu_ours_pf = (cpu_seconds(tunnel.pid())? - cpu0) / gib_total;
    tunnel.stop().await;
    let ours_pf = ours_pf?;

    let (pf, addr) = start_kubectl_port_forward(env, &pod).await?;
    let cpu0 = cpu_seconds(pf.pid())?;
    let kubectl_pf = measure(p.warmups, p.runs, |_| async {
        Ok(mibps(len, echo_at(&addr, &pod, len).await?))
    })
    .await;
    let cpu_kubectl_pf = (cpu_seconds(pf.pid())? - cpu0) / gib_total;
    pf.stop().await;
    let kubectl_pf = kubectl_pf?;

    let direct = Addr::Tcp(
        env.sim
            .buildkitd_addr(NS, &pod)
            .context("the sim has no buildkitd address")?,
    );
    let direct = measure(p.warmups, p.runs, |_| async {
        Ok(mibps(len, echo_at(&direct, &pod, len).await?))
    })
    .await?;

    let size = format!("{} MiB each way", len / MIB);
    let vs_direct = |id: &str, what: &str, ours: f64| {
        let mut r = Row::new(
            id,
            what,
            ours,
            Some(direct),
            Unit::MibPerSec,
            Target::RatioAtLeast(0.5),
        );
        r.peer_label = Some("direct TCP".into());
        r
    };
    Ok(vec![
        Row::new(
            "tput.exec",
            &format!("exec tunnel vs `kubectl exec -i … dial-stdio`, {size}"),
            ours_exec,
            Some(kubectl_exec),
            Unit::MibPerSec,
            Target::RatioAtLeast(1.5),
        ),
        vs_direct(
            "tput.exec.ceiling",
            "exec tunnel vs the direct-TCP ceiling",
            ours_exec,
        ),
        Row::new(
            "tput.pf",
            &format!("port-forward tunnel vs `kubectl port-forward`, {size}"),
            ours_pf,
            Some(kubectl_pf),
            Unit::MibPerSec,
            Target::RatioAtLeast(1.5),
        ),
        vs_direct(
            "tput.pf.ceiling",
            "port-forward tunnel vs the direct-TCP ceiling",
            ours_pf,
        ),
        Row::new(
            "tput.direct",
            &format!("ceiling: direct TCP to the simulated buildkitd, {size}"),
            direct,
            None,
            Unit::MibPerSec,
            Target::None,
        ),
        Row::new(
            "cpu.exec",
            "CPU seconds per GiB each way: exec tunnel vs kubectl exec processes",
            cpu_ours_exec,
            Some(cpu_kubectl_exec),
            Unit::Seconds,
            Target::None,
        ),
        Row::new(
            "cpu.pf",
            "CPU seconds per GiB each way: port-forward tunnel vs kubectl port-forward",
            cpu_ours_pf,
            Some(cpu_kubectl_pf),
            Unit::Seconds,
            Target::None,
        ),
    ])
}
