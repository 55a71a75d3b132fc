//! `build --cli builtin` (the default): the spec as the built-in client's build,
//! refused before any connection when it cannot run; a pod reached through the
//! failover walk, each candidate probed as BuildKit; the solve with our progress;
//! results (digest, metadata file) on stderr / in the file; exit codes.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use tokio::sync::oneshot;

use crate::cli::BuildArgs;
use kubectl_buildkit::build::builtin::local_build;
use kubectl_buildkit::build::spec::{BuildSpec, Export};
use kubectl_buildkit::buildkit::credentials::DockerConfig;
use kubectl_buildkit::buildkit::progress::ProgressMode;
use kubectl_buildkit::buildkit::session::auth::AuthService;
use kubectl_buildkit::buildkit::session::ssh::{parse_ssh_spec, SshService};
use kubectl_buildkit::buildkit::{
    connect_probed, run_build, BuildError, BuildReport, DaemonInfo, LocalBuild, ProbeError,
};
use kubectl_buildkit::cluster::Cluster;
use kubectl_buildkit::process::{Forwarded, Signals};
use kubectl_buildkit::progress::Progress;
use kubectl_buildkit::{log, selection, tunnel};

/// How long one pod may take to prove it is BuildKit (HTTP/2 + Info/ListWorkers).
const PROBE_LIMIT: Duration = Duration::from_secs(15);

/// What the user can do when the built-in client cannot use a pod.
const HINT: &str = "if this buildkitd needs buildctl, run with --cli buildctl";

pub async fn run(
    kube: &crate::cli::KubeFlags,
    args: &BuildArgs,
    spec: &BuildSpec,
    cwd: &std::path::Path,
    signals: &mut Signals,
) -> Result<i32> {
    // Everything that can be refused without a daemon is refused here.
    let build = local_build(spec, cwd)?;
    let agents = spec
        .ssh
        .iter()
        .map(|s| parse_ssh_spec(s))
        .collect::<Result<Vec<_>, _>>()?;
    let ssh = if agents.is_empty() {
        None
    } else {
        Some(SshService::new(agents)?)
    };
    let auth = AuthService::new(DockerConfig::from_env()?);
    let env_progress = std::env::var("BUILDKIT_PROGRESS").ok();
    let mode = ProgressMode::resolve(
        spec.progress.map(|p| p.as_str()),
        env_progress.as_deref().filter(|v| !v.is_empty()),
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    )?;

    let (channel, info, pod) = if let Some(addr) = &spec.addr {
        if !spec.tls.is_empty() {
            bail!("--addr with TLS flags is not served by the built-in client yet: use --cli buildctl");
        }
        let stream = tokio::select! {
            s = dial_addr(addr) => s?,
            sig = signals.recv() => return Ok(sig.exit_code()),
        };
        let (channel, info) = tokio::select! {
            r = connect_probed(stream, PROBE_LIMIT) => r.map_err(|e| anyhow::anyhow!("{addr}: {e}; {HINT}"))?,
            sig = signals.recv() => return Ok(sig.exit_code()),
        };
        (channel, info, None)
    } else {
        let progress = Progress::start("resolving buildkitd pods");
        let cluster = Cluster::connect(&kube.options()).await?;
        let key = selection::default_key(
            args.select.hash_key.as_deref(),
            spec.image(),
            Some(&spec.context),
        );
        let sel = selection::select_one(&cluster, &args.select.options(), key).await?;
        let options = args.tunnel.options(args.select.container.clone());
        let failover = tunnel::failover_for(&cluster, &sel, &options)?;
        progress.set(format!(
            "connecting to pod {} via {}",
            sel.chosen().unwrap_or_default(),
            options.kind.name()
        ));
        let walk = failover.connect(
            |_pod, conn| async move { connect_probed(conn, PROBE_LIMIT).await },
            |failure, next| {
                let next = next
                    .map(|n| format!("; trying pod {n}"))
                    .unwrap_or_default();
                log::warn(format!("{}{next}", describe(failure)));
            },
        );
        let reached = tokio::select! {
            r = walk => r,
            sig = signals.recv() => {
                progress.finish();
                return Ok(sig.exit_code());
            }
        };
        progress.finish();
        let reached = match reached {
            Ok(r) => r,
            Err(unreachable) => {
                let reasons: Vec<String> = unreachable.attempts.iter().map(describe).collect();
                bail!(
                    "no buildkitd pod could take the build: {}; {HINT}",
                    reasons.join("; ")
                );
            }
        };
        log::debug(
            1,
            format!(
                "pod {}: {} (workers {})",
                reached.pod,
                reached.value.1.version_text(),
                reached.value.1.workers.join(", ")
            ),
        );
        let (channel, info) = reached.value;
        (
            channel,
            info,
            Some((reached.pod, cluster.namespace.clone(), sel.key)),
        )
    };
    check_exporters(&build, &info)?;

    let (sig_tx, mut sig_rx) = oneshot::channel::<Forwarded>();
    let cancel = async move {
        let sig = signals.recv().await;
        let _ = sig_tx.send(sig);
    };
    let result = run_build(
        channel,
        &build,
        move |routes| {
            let routes = routes.with_service(auth.into_server());
            match ssh {
                Some(ssh) => routes.with_service(ssh.into_server()),
                None => routes,
            }
        },
        mode,
        Box::new(std::io::stderr()),
        cancel,
    )
    .await;
    match result {
        Ok(report) => {
            report_success(spec, &report)?;
            if let Some((pod, namespace, key)) = pod {
                log::note(format!(
                    "built on pod {pod} (namespace {namespace}, key {:?})",
                    key.as_deref().unwrap_or("")
                ));
            }
            Ok(0)
        }
        Err(BuildError::Cancelled) => {
            let sig = sig_rx.try_recv().unwrap_or(Forwarded::Interrupt);
            eprintln!("kubectl-buildkit: build cancelled on the daemon");
            Ok(sig.exit_code())
        }
        Err(BuildError::Failed { message, failed }) => {
            if !matches!(mode, ProgressMode::Plain | ProgressMode::RawJson) {
                if let Some(f) = failed {
                    eprintln!("{f}");
                }
            }
            let on = pod
                .as_ref()
                .map(|(p, _, _)| format!(" on pod {p}"))
                .unwrap_or_default();
            eprintln!("error: the build failed{on}: {message}");
            Ok(1)
        }
        Err(e) => bail!("{e}"),
    }
}

/// One passed-over pod, named, with why.
fn describe(failure: &tunnel::AttemptFailure<ProbeError>) -> String {
    match failure {
        tunnel::AttemptFailure::Tunnel(e) => e.to_string(),
        tunnel::AttemptFailure::Probe { pod, error } => {
            format!("pod {pod} is not a usable BuildKit: {error}")
        }
    }
}

/// dockerd's BuildKit (worker `moby`) has no image push, docker or oci exporter:
/// say so before the solve rather than after it.
fn check_exporters(build: &LocalBuild, info: &DaemonInfo) -> Result<()> {
    if !info.workers.iter().any(|w| w == "moby") {
        return Ok(());
    }
    for e in &build.solve.exports {
        if matches!(e.kind.as_str(), "image" | "docker" | "oci") {
            bail!(
                "this buildkitd is docker's built-in BuildKit ({}), which has no {} exporter: \
                 use -o type=moby,name=NAME, -o type=tar or -o type=local, or a standalone buildkitd",
                info.version_text(),
                e.kind
            );
        }
    }
    Ok(())
}

fn report_success(spec: &BuildSpec, report: &BuildReport) -> Result<()> {
    let resp = &report.exporter_response;
    if let Export::Push { names } = &spec.export {
        if let Some(digest) = resp.get("containerimage.digest") {
            for n in names {
                eprintln!("kubectl-buildkit: pushed {n}@{digest}");
            }
        }
    }
    if let Some(path) = &spec.metadata_file {
        std::fs::write(path, metadata_json(resp))
            .with_context(|| format!("cannot write --metadata-file {}", path.display()))?;
    }
    Ok(())
}

/// The exporter response as buildctl writes `--metadata-file`: values that are
/// base64 of JSON become that JSON, the rest stay strings.
pub fn metadata_json(resp: &std::collections::HashMap<String, String>) -> String {
    let mut map = serde_json::Map::new();
    let mut keys: Vec<&String> = resp.keys().collect();
    keys.sort();
    for k in keys {
        let v = &resp[k];
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(v)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .filter(|j| j.is_object() || j.is_array());
        map.insert(
            k.clone(),
            decoded.unwrap_or_else(|| serde_json::Value::String(v.clone())),
        );
    }
    serde_json::to_string_pretty(&serde_json::Value::Object(map)).unwrap_or_default() + "\n"
}

/// A byte stream to `--addr` (unix:// or tcp://).
async fn dial_addr(addr: &str) -> Result<Box<dyn Stream>> {
    if let Some(path) = addr.strip_prefix("unix://") {
        let s = tokio::net::UnixStream::connect(path)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        return Ok(Box::new(s));
    }
    if let Some(hostport) = addr.strip_prefix("tcp://") {
        let s = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(hostport),
        )
        .await
        .map_err(|_| anyhow::anyhow!("cannot connect to {addr}: no answer within 10s"))?
        .with_context(|| format!("cannot connect to {addr}"))?;
        let _ = s.set_nodelay(true);
        return Ok(Box::new(s));
    }
    bail!("--addr {addr}: the built-in client takes unix://PATH or tcp://HOST:PORT; use --cli buildctl for others")
}

/// Any byte stream the client can run over.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_decodes_base64_json_like_buildctl() {
        let desc = base64::engine::general_purpose::STANDARD
            .encode(br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1}"#);
        let resp = std::collections::HashMap::from([
            (
                "containerimage.digest".to_string(),
                "sha256:abc".to_string(),
            ),
            ("containerimage.descriptor".to_string(), desc),
        ]);
        let json: serde_json::Value = serde_json::from_str(&metadata_json(&resp)).unwrap();
        assert_eq!(json["containerimage.digest"], "sha256:abc");
        assert_eq!(json["containerimage.descriptor"]["size"], 1);
    }
}
