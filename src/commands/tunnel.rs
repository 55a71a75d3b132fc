//! `kubectl buildkit tunnel`: a tunnel to the chosen pod for any buildkit client.

use std::io::Write;

use anyhow::{bail, Result};

use crate::cli::{KubeFlags, TunnelArgs, TunnelFlags, TunnelKind};
use crate::cluster::Cluster;
use crate::process::{self, Signals};
use crate::selection::{self, Selection, DEFAULT_CONTAINER_ANNOTATION};
use crate::tunnel::{self, Listen, Transport, Tunnel};

/// Resolve the pods and start a tunnel: shared with `build`.
pub async fn open(
    cluster: &Cluster,
    sel: &Selection,
    flags: &TunnelFlags,
    container: Option<String>,
    listen: &Listen,
    warn_unreachable: bool,
) -> Result<Tunnel> {
    if let Some(c) = &container {
        crate::names::check_container(c)?;
    }
    let transport = match flags.kind {
        TunnelKind::Exec => {
            // Without --container, each pod's default-container annotation, as kubectl
            // exec reads it (sidecar injectors set it on pods with several containers).
            let defaults = match &container {
                Some(_) => Default::default(),
                None => sel
                    .pods
                    .iter()
                    .filter(|p| p.containers.len() > 1)
                    .filter_map(|p| Some((p.name.clone(), p.default_container.clone()?)))
                    .collect(),
            };
            for (pod, c) in &defaults {
                crate::log::debug(
                    1,
                    format!("pod {pod}: exec in container {c} (its {DEFAULT_CONTAINER_ANNOTATION} annotation)"),
                );
            }
            Transport::Exec {
                container,
                defaults,
            }
        }
        TunnelKind::PortForward => {
            if flags.remote_port == 0 {
                bail!("--remote-port 0 is not a port: give buildkitd's TCP port in the pod (default 1234)");
            }
            Transport::PortForward {
                port: flags.remote_port,
            }
        }
    };
    let chosen = sel.chosen().expect("selection has an order");
    crate::log::debug(
        1,
        format!(
            "pod {chosen} chosen ({} algorithm{}); fallback order: {}",
            sel.ring.algorithm(),
            sel.key
                .as_deref()
                .map(|k| format!(", key {k:?}"))
                .unwrap_or_default(),
            sel.order.join(", ")
        ),
    );
    Tunnel::start(
        cluster.clone(),
        sel.order.clone(),
        transport,
        flags.max_failover,
        listen,
        warn_unreachable,
    )
    .await
}

/// Selection for commands that need one pod: a key is required unless --pod is given.
pub async fn select_for_tunnel(
    cluster: &Cluster,
    args: &crate::cli::SelectionFlags,
    key: Option<String>,
) -> Result<Selection> {
    let key = match (&args.pod, key) {
        (Some(_), k) => k,
        (None, Some(k)) => Some(k),
        (None, None) => bail!(
            "no hash key: pass --hash-key KEY (or set IMAGE), or choose a pod with --pod NAME"
        ),
    };
    let sel = selection::select(cluster, args, key).await?;
    sel.require_eligible(&args.selector, &cluster.namespace)?;
    Ok(sel)
}

pub async fn run(kube: &KubeFlags, args: &TunnelArgs) -> Result<i32> {
    let listen = match &args.listen {
        Some(s) => tunnel::parse_listen(s)?,
        None => Listen::Auto,
    };
    let mut signals = Signals::install()?;
    let cluster = Cluster::connect(kube).await?;
    let image = std::env::var("IMAGE").ok();
    let cwd = std::env::current_dir().ok();
    let key = selection::default_key(
        args.select.hash_key.as_deref(),
        image.as_deref(),
        cwd.as_deref(),
    );
    let sel = select_for_tunnel(&cluster, &args.select, key).await?;
    let tunnel = open(
        &cluster,
        &sel,
        &args.tunnel,
        args.select.container.clone(),
        &listen,
        true,
    )
    .await?;
    // Whatever happens below (a command that cannot start, stdout gone), the tunnel
    // is closed and its socket directory removed before we return.
    let code = async {
        if args.command.is_empty() {
            {
                let mut out = std::io::stdout().lock();
                writeln!(out, "BUILDKIT_HOST={}", tunnel.address())?;
                out.flush()?;
            }
            crate::log::note(format!(
                "tunnel to pod {} open; press Ctrl-C to close",
                sel.chosen().unwrap_or("?")
            ));
            Ok(signals.recv().await.exit_code())
        } else {
            let mut cmd = tokio::process::Command::new(&args.command[0]);
            cmd.args(&args.command[1..])
                .env("BUILDKIT_HOST", tunnel.address());
            let mut child = process::spawn(
                &mut cmd,
                &format!("command {:?}", args.command[0]),
                "the full path after --",
            )?;
            process::wait(&mut child, &mut signals).await
        }
    }
    .await;
    tunnel.close().await;
    code
}
