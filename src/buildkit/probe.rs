//! Is the far end BuildKit, and which? `Control.Info` answers since v0.11; an older
//! daemon answers Unimplemented, and then `ListWorkers` (every version) proves it is
//! BuildKit. Anything else (no HTTP/2, another gRPC service, silence) is `NotBuildkit`.

use std::time::Duration;

use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::{InfoRequest, ListWorkersRequest};
use tonic::transport::Channel;
use tonic::Code;

use super::channel::{connect_watched, error_chain, MAX_MESSAGE_SIZE};

/// What the daemon told us about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    /// `v0.29.0` from Info, or from a worker record; None for a v0.8 daemon.
    pub version: Option<String>,
    /// Whether `Control.Info` exists (v0.11+).
    pub has_info: bool,
    /// Worker ids (`moby`, or the oci worker's id).
    pub workers: Vec<String>,
    /// Platforms of the first worker, `os/arch[/variant]`.
    pub platforms: Vec<String>,
}

impl DaemonInfo {
    /// The version as people say it (`v0.8 or older` when the daemon won't say).
    pub fn version_text(&self) -> String {
        self.version
            .clone()
            .unwrap_or_else(|| "BuildKit before v0.11".to_string())
    }
}

/// Why the far end is not a BuildKit we can use.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer from buildkitd within {0:?}")]
    Timeout(Duration),
    #[error("the endpoint does not answer as BuildKit: {0}")]
    NotBuildkit(String),
}

/// Make a channel over `stream` and probe it, within `limit` in all: the one call a
/// failover walk makes per candidate.
pub async fn connect_probed<S>(
    stream: S,
    limit: Duration,
) -> Result<(Channel, DaemonInfo), ProbeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let attempt = async {
        let (channel, hello) = connect_watched(stream)
            .await
            .map_err(|e| ProbeError::NotBuildkit(e.to_string()))?;
        match probe_unbounded(channel.clone()).await {
            Ok(info) => Ok((channel, info)),
            Err(ProbeError::NotBuildkit(why)) => {
                Err(ProbeError::NotBuildkit(hello.diagnosis().unwrap_or(why)))
            }
            Err(e) => Err(e),
        }
    };
    tokio::time::timeout(limit, attempt)
        .await
        .map_err(|_| ProbeError::Timeout(limit))?
}

/// Ask the daemon who it is, within `limit` in all.
pub async fn probe(channel: Channel, limit: Duration) -> Result<DaemonInfo, ProbeError> {
    tokio::time::timeout(limit, probe_unbounded(channel))
        .await
        .map_err(|_| ProbeError::Timeout(limit))?
}

async fn probe_unbounded(channel: Channel) -> Result<DaemonInfo, ProbeError> {
    let mut control = ControlClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE);
    let (version, has_info) = match control.info(InfoRequest {}).await {
        Ok(resp) => (
            resp.into_inner()
                .buildkit_version
                .map(|v| v.version)
                .filter(|v| !v.is_empty()),
            true,
        ),
        Err(status) if status.code() == Code::Unimplemented => (None, false),
        Err(status) => return Err(not_buildkit(&status)),
    };
    let workers = control
        .list_workers(ListWorkersRequest { filter: vec![] })
        .await
        .map_err(|s| not_buildkit(&s))?
        .into_inner()
        .record;
    let version = version.or_else(|| {
        workers
            .iter()
            .filter_map(|w| w.buildkit_version.as_ref())
            .map(|v| v.version.clone())
            .find(|v| !v.is_empty())
    });
    let platforms = workers
        .first()
        .map(|w| {
            w.platforms
                .iter()
                .map(|p| {
                    let mut s = format!("{}/{}", p.os, p.architecture);
                    if !p.variant.is_empty() {
                        s.push('/');
                        s.push_str(&p.variant);
                    }
                    s
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(DaemonInfo {
        version,
        has_info,
        workers: workers.into_iter().map(|w| w.id).collect(),
        platforms,
    })
}

fn not_buildkit(status: &tonic::Status) -> ProbeError {
    let mut why = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        why.push_str(": ");
        why.push_str(&error_chain(source));
    }
    ProbeError::NotBuildkit(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A peer that echoes every byte (the simulated cluster's stand-in buildkitd
    /// protocol) is not BuildKit, and we say so quickly.
    #[tokio::test]
    async fn an_echo_peer_is_refused_in_bounded_time() {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(theirs);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        let started = Instant::now();
        let err = connect_probed(ours, Duration::from_secs(10))
            .await
            .expect_err("an echo peer is not BuildKit");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert!(
            err.to_string().contains("echoed our HTTP/2 preface"),
            "{err}"
        );
    }

    /// A peer that never answers: the probe's own limit ends it.
    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (ours, _theirs) = tokio::io::duplex(64 * 1024);
        let ch = crate::buildkit::channel::connect(ours).await.unwrap();
        let err = probe(ch, Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(err, ProbeError::Timeout(_)), "{err}");
    }
}
