//! One build: Session, Solve and Status run concurrently on one channel, as the Go
//! client does (the daemon waits a few seconds for a named session to appear).
//! Cancelling drops the Solve call (HTTP/2 RST_STREAM): the daemon cancels the job
//! and stops its RUN processes.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::{StatusRequest, StatusResponse};
use md5::{Digest, Md5};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::channel::MAX_MESSAGE_SIZE;
use super::request::{solve_request, SolveOptions};
use super::session::{Session, SessionError, SessionIdentity, SessionRoutes};

/// How long the status stream may run on after the solve answered.
const STATUS_DRAIN: Duration = Duration::from_secs(5);

/// Why a build stopped short.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// The daemon ran the build and it failed (BuildKit's own message).
    #[error("{0}")]
    Failed(String),
    /// The user stopped it; the daemon was told.
    #[error("build cancelled")]
    Cancelled,
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// What a finished solve gave back.
#[derive(Debug, Clone, Default)]
pub struct SolveOutcome {
    /// The exporter's response (`containerimage.digest`, ...).
    pub exporter_response: HashMap<String, String>,
    pub reference: String,
}

/// Run one solve. Status updates go to `status` (dropped when the build ends);
/// `cancel` resolving stops the build on the daemon.
pub async fn solve(
    channel: Channel,
    opts: &SolveOptions,
    routes: SessionRoutes,
    shared_key: String,
    status: mpsc::Sender<StatusResponse>,
    cancel: impl Future<Output = ()>,
) -> Result<SolveOutcome, SolveError> {
    let reference = random_id();
    let identity = SessionIdentity {
        id: random_id(),
        shared_key,
        name: "kubectl-buildkit".to_string(),
    };
    let session = Session::start(channel.clone(), &identity, routes).await?;

    let control = ControlClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let mut status_control = control.clone();
    let status_ref = reference.clone();
    let status_task = tokio::spawn(async move {
        let request = StatusRequest { r#ref: status_ref };
        let Ok(resp) = status_control.status(request).await else {
            return;
        };
        let mut stream = resp.into_inner();
        while let Some(Ok(update)) = stream.next().await {
            if status.send(update).await.is_err() {
                break;
            }
        }
    });

    let request = solve_request(opts, &reference, &identity.id);
    let mut solve_control = control;
    let result = tokio::select! {
        r = solve_control.solve(request) => Some(r),
        _ = cancel => None,
    };
    // The status stream ends when the job does; let it deliver the last updates.
    let drain = tokio::time::timeout(STATUS_DRAIN, status_task);
    let outcome = match result {
        Some(Ok(resp)) => {
            let _ = drain.await;
            Ok(SolveOutcome {
                exporter_response: resp.into_inner().exporter_response,
                reference,
            })
        }
        Some(Err(status)) => {
            let _ = drain.await;
            Err(SolveError::Failed(status_text(&status)))
        }
        None => {
            let _ = drain.await;
            Err(SolveError::Cancelled)
        }
    };
    session.close();
    outcome
}

/// The daemon's message; for a transport failure (no message from the daemon, a
/// source error below it) the chain of causes too, so "http2 error" says which.
fn status_text(status: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut text = status.message().to_string();
    super::channel::append_sources(&mut text, status.source());
    text
}

/// 32 random hex digits (from the kernel).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if filled.is_err() {
        // No /dev/urandom: time and pid still make a collision unlikely.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let seed = format!("{nanos}-{}", std::process::id());
        bytes = Md5::digest(seed.as_bytes()).into();
    }
    hex(&bytes)
}

/// The session's shared key: stable for one context directory on one machine, so
/// a rebuild on the same daemon sends only what changed.
pub fn shared_key(context_dir: &Path) -> String {
    let dir = std::fs::canonicalize(context_dir).unwrap_or_else(|_| context_dir.to_path_buf());
    let machine = machine_id();
    let mut h = Md5::new();
    h.update(machine.as_bytes());
    h.update([0]);
    h.update(dir.as_os_str().as_encoded_bytes());
    hex(&h.finalize())
}

fn machine_id() -> String {
    for path in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
        if let Ok(id) = std::fs::read_to_string(path) {
            if !id.trim().is_empty() {
                return id.trim().to_string();
            }
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_keys_stable_per_directory() {
        let a = random_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_id());
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        assert_eq!(shared_key(one.path()), shared_key(one.path()));
        // The same directory by another spelling is the same key.
        let dotted = one.path().join(".");
        assert_eq!(shared_key(&dotted), shared_key(one.path()));
        assert_ne!(shared_key(one.path()), shared_key(two.path()));
    }
}
