//! `kubectl buildkit tunnel`: a tunnel to the chosen pod for any buildkit client.

use std::io::Write;

use anyhow::Result;

use super::{describe_choice, tunnel_reporter};
use crate::cli::{KubeFlags, TunnelArgs};
use kubectl_buildkit::cluster::Cluster;
use kubectl_buildkit::process::{self, Signals};
use kubectl_buildkit::selection;
use kubectl_buildkit::tunnel::{self, Listen};

pub async fn run(kube: &KubeFlags, args: &TunnelArgs) -> Result<i32> {
    let listen = match &args.listen {
        Some(s) => tunnel::parse_listen(s)?,
        None => Listen::Auto,
    };
    let mut signals = Signals::install()?;
    // Until the tunnel is up, the waits are on the API server: a signal ends them.
    let opened = signals
        .unless_interrupted(async {
            let cluster = Cluster::connect(&kube.options()).await?;
            let image = std::env::var("IMAGE").ok();
            let cwd = std::env::current_dir().ok();
            let key = selection::default_key(
                args.select.hash_key.as_deref(),
                image.as_deref(),
                cwd.as_deref(),
            );
            let sel = selection::select_one(&cluster, &args.select.options(), key).await?;
            let options = args.tunnel.options(args.select.container.clone());
            describe_choice(&sel, &tunnel::transport_for(&sel, &options)?);
            let tunnel =
                tunnel::open(&cluster, &sel, &options, &listen, tunnel_reporter(true)).await?;
            anyhow::Ok((sel, tunnel))
        })
        .await;
    let (sel, tunnel) = match opened {
        Ok(opened) => opened?,
        Err(sig) => return Ok(sig.exit_code()),
    };
    // Whatever happens below (a command that cannot start, stdout gone), the tunnel
    // is closed and its socket directory removed before we return.
    let code = async {
        if args.command.is_empty() {
            {
                let mut out = std::io::stdout().lock();
                writeln!(out, "BUILDKIT_HOST={}", tunnel.address())?;
                out.flush()?;
            }
            kubectl_buildkit::log::note(format!(
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
