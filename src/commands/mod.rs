//! One module per subcommand: thin glue between the CLI and the library modules. A
//! command never imports another; what two of them print alike is here.
pub mod build;
pub mod completion;
pub mod create;
pub mod pods;
pub mod ring;
pub mod rm;
pub mod tunnel;
pub mod version;

use std::sync::Arc;

use kubectl_buildkit::log;
use kubectl_buildkit::selection::{Selection, DEFAULT_CONTAINER_ANNOTATION};
use kubectl_buildkit::tunnel::{Reporter, Transport, TunnelEvent};

/// -v: which pod was chosen, the fallback order, and the containers exec will use.
fn describe_choice(sel: &Selection, transport: &Transport) {
    log::debug(
        1,
        format!(
            "pod {} chosen ({} algorithm{}); fallback order: {}",
            sel.chosen().unwrap_or("?"),
            sel.ring.algorithm(),
            sel.key
                .as_deref()
                .map(|k| format!(", key {k:?}"))
                .unwrap_or_default(),
            sel.order.join(", ")
        ),
    );
    for (pod, c) in &transport.defaults {
        log::debug(
            1,
            format!(
                "pod {pod}: exec in container {c} (its {DEFAULT_CONTAINER_ANNOTATION} annotation)"
            ),
        );
    }
}

/// How a command shows a tunnel's events on stderr. `warn_unreachable`: a connection
/// that reached no pod is a warning (else the command reports failures at the end).
fn tunnel_reporter(warn_unreachable: bool) -> Reporter {
    Arc::new(move |event| match event {
        TunnelEvent::Dialing {
            conn,
            pod,
            transport,
        } => log::debug(
            2,
            format!("connection {conn}: dialing pod {pod} via {transport}"),
        ),
        TunnelEvent::Answered { conn, pod } => {
            log::debug(2, format!("connection {conn}: pod {pod} answered"))
        }
        TunnelEvent::FailingOver { failed, next, .. } => log::warn(format!(
            "pod {} could not take the connection ({failed}); failing over to pod {next}",
            failed.pod()
        )),
        TunnelEvent::Unreachable { conn, why } => {
            if warn_unreachable {
                log::warn(format!("no buildkitd pod could take a connection: {why}"));
            } else {
                log::debug(1, format!("connection {conn}: no pod could take it: {why}"));
            }
        }
        TunnelEvent::StreamFailed {
            error, expected, ..
        } => {
            if expected {
                log::debug(2, format!("after our close: {error}"));
            } else {
                log::warn(format!("{error}; the connection to buildctl is closed"));
            }
        }
        TunnelEvent::Served {
            conn,
            pod,
            up,
            down,
        } => log::debug(
            2,
            format!("connection {conn}: pod {pod}: {up} bytes up, {down} down"),
        ),
        TunnelEvent::AcceptFailed { error } => {
            log::warn(format!("accepting a local connection failed: {error}"))
        }
    })
}
