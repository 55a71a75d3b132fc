//! Section 1: how long until a build is on a pod. Ours: one `kubectl-buildkit build`.
//! Theirs (the original wrapper): `kubectl get pods -o name`, a classic-ring pick,
//! then buildctl with `kube-pod://POD`, which runs `kubectl exec -i POD -- buildctl
//! dial-stdio`. The stand-in buildctl moves a 1-byte context either way.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::env::{Env, NS};
use crate::procs::run_ok;
use crate::table::{median, ms, Row, Target, Unit};
use kubectl_buildkit::ring::{Algorithm, Ring};

const LIMIT: Duration = Duration::from_secs(60);
pub const KEY: &str = "registry.example.com/team/dispatch";

/// Repeat `f` (warm-ups discarded) and return the median.
pub async fn measure<F, Fut>(warmups: usize, runs: usize, mut f: F) -> Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<f64>>,
{
    let mut samples = Vec::new();
    for i in 0..warmups + runs {
        let v = f(i).await?;
        if i >= warmups {
            samples.push(v);
        }
    }
    Ok(median(&samples))
}

/// The last record the stand-in buildctl appended to `file`: check it succeeded on
/// `pod` having moved `payload` bytes.
pub fn check_record(file: &Path, pod: &str, payload: u64) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("no buildctl record at {}", file.display()))?;
    let last = text.lines().last().context("empty buildctl record")?;
    let v: serde_json::Value = serde_json::from_str(last)?;
    if v["exit_code"] != 0 {
        bail!("buildctl record shows a failure: {last}");
    }
    if v["served_by"]["pod"] != pod {
        bail!(
            "buildctl was served by {} instead of {pod}",
            v["served_by"]["pod"]
        );
    }
    if v["payload_bytes"] != payload {
        bail!(
            "buildctl moved {} bytes instead of {payload}",
            v["payload_bytes"]
        );
    }
    Ok(())
}

/// `kubectl-buildkit build` with a fixed key, no push, no load, quiet.
pub fn our_build(env: &Env, key: &str, payload: u64, record: &Path) -> tokio::process::Command {
    let mut cmd = env.plugin();
    cmd.arg("build")
        .arg(&env.context_dir)
        .args([
            "--hash-key",
            key,
            "--no-push",
            "--no-load",
            "--progress",
            "quiet",
        ])
        .arg("--buildctl")
        .arg(env.buildctl_path())
        .env("SIM_BUILDCTL_PAYLOAD", payload.to_string())
        .env("SIM_BUILDCTL_RECORD", record);
    cmd
}

/// The original wrapper's path: list with kubectl, pick with the classic ring, build
/// through kube-pod://. Returns the pod it used. `timeout_s`: buildctl's --timeout
/// (its default, 5 s, covers starting `kubectl exec` and the greeting).
pub async fn their_build(
    env: &Env,
    key: &str,
    payload: u64,
    record: &Path,
    timeout_s: Option<u32>,
) -> Result<String> {
    let (_, out) = run_ok(
        env.kubectl()
            .args(["get", "pods", "-l", "app=buildkitd", "-o", "name"]),
        "kubectl get pods",
        LIMIT,
    )
    .await?;
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches("pod/").to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let ring = Ring::new(Algorithm::Classic, &names);
    let pod = ring
        .pick(key)
        .context("kubectl listed no pods")?
        .to_string();
    let ctx = env.context_dir.display().to_string();
    let mut cmd = env.buildctl();
    if let Some(t) = timeout_s {
        cmd.arg(format!("--timeout={t}"));
    }
    run_ok(
        cmd.arg("--addr")
            .arg(format!("kube-pod://{pod}?namespace={NS}"))
            .args(["build", "--frontend", "dockerfile.v0"])
            .args(["--local", &format!("context={ctx}")])
            .args(["--local", &format!("dockerfile={ctx}")])
            .args(["--opt", "filename=Dockerfile", "--progress", "quiet"])
            .env("SIM_BUILDCTL_PAYLOAD", payload.to_string())
            .env("SIM_BUILDCTL_RECORD", record),
        "buildctl --addr kube-pod://",
        LIMIT,
    )
    .await?;
    Ok(pod)
}

pub fn expected_pod(env: &Env, key: &str) -> String {
    Ring::new(Algorithm::Classic, &env.pods())
        .pick(key)
        .expect("pods")
        .to_string()
}

pub async fn run(env: &Env) -> Result<Vec<Row>> {
    let p = env.plan;
    let want = expected_pod(env, KEY);
    let record = env.home.path().join("dispatch-record.jsonl");

    let ours = measure(p.warmups, p.runs, |_| async {
        let (t, _) = run_ok(
            &mut our_build(env, KEY, 1, &record),
            "kubectl-buildkit build",
            LIMIT,
        )
        .await?;
        check_record(&record, &want, 1)?;
        Ok(ms(t))
    })
    .await?;
    let theirs = measure(p.warmups, p.runs, |_| async {
        let start = std::time::Instant::now();
        let pod = their_build(env, KEY, 1, &record, None).await?;
        let t = start.elapsed();
        if pod != want {
            bail!(
                "the kubectl path picked {pod}, our ring {want}: the reproduction is not faithful"
            );
        }
        check_record(&record, &want, 1)?;
        Ok(ms(t))
    })
    .await?;

    let pods_ours = measure(p.warmups, p.runs, |_| async {
        let (t, out) = run_ok(env.plugin().arg("pods"), "kubectl-buildkit pods", LIMIT).await?;
        expect_pods(&out.stdout)?;
        Ok(ms(t))
    })
    .await?;
    let pods_theirs = measure(p.warmups, p.runs, |_| async {
        let (t, out) = run_ok(
            env.kubectl().args(["get", "pods", "-l", "app=buildkitd"]),
            "kubectl get pods",
            LIMIT,
        )
        .await?;
        expect_pods(&out.stdout)?;
        Ok(ms(t))
    })
    .await?;

    Ok(vec![
        Row::new(
            "dispatch.build",
            "build dispatch, 1-byte context (wall time)",
            ours,
            Some(theirs),
            Unit::Ms,
            Target::RatioAtMost(0.3),
        ),
        Row::new(
            "dispatch.pods",
            "list pods: `pods` vs `kubectl get pods -l`",
            pods_ours,
            Some(pods_theirs),
            Unit::Ms,
            Target::None,
        ),
    ])
}

/// Both listings name all eight pods.
fn expect_pods(stdout: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(stdout);
    for i in 0..crate::env::PODS {
        if !text.contains(&format!("buildkitd-{i}")) {
            bail!("pod listing lacks buildkitd-{i}:\n{text}");
        }
    }
    Ok(())
}
