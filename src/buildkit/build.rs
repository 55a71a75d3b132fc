//! One Dockerfile build over a channel, end to end: the session's services for our
//! local directories, secrets and exports; the solve; progress from its Status
//! stream; the exports' outcomes. What a command calls once it has a channel.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;

use tonic::transport::Channel;

use super::progress::{self, BuildSummary, FailedStep, ProgressMode};
use super::request::SolveOptions;
use super::session::filesend::{ExportError, ExportOutcome, ExportSink, FileSendService};
use super::session::filesync::{FileSyncService, DIR_CONTEXT, DIR_DOCKERFILE};
use super::session::secrets::{SecretSource, SecretsService};
use super::session::SessionRoutes;
use super::solve::{solve, SolveError};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::SecretsServer;
use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSyncServer;

/// Everything local a build needs besides its solve options.
#[derive(Debug, Clone, Default)]
pub struct LocalBuild {
    pub solve: SolveOptions,
    /// The build context directory.
    pub context: PathBuf,
    /// The directory holding the Dockerfile.
    pub dockerfile_dir: PathBuf,
    /// `--build-context NAME=DIR` (their names are in `solve.named_contexts` too).
    pub named_contexts: Vec<(String, PathBuf)>,
    pub secrets: HashMap<String, SecretSource>,
    /// Where each exporter's output goes, by its index in `solve.exports`; None for an
    /// exporter that sends nothing back (image push, dockerd's moby store).
    pub sinks: Vec<Option<ExportSink>>,
    /// The session's shared key (see `solve::shared_key`).
    pub shared_key: String,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub exporter_response: HashMap<String, String>,
    pub summary: BuildSummary,
    pub exports: Vec<ExportOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The solve failed on the daemon: BuildKit's message and the failing step.
    #[error("{message}")]
    Failed {
        message: String,
        failed: Option<FailedStep>,
    },
    #[error("build cancelled")]
    Cancelled,
    /// The build ran but its output did not reach its destination.
    #[error("{0}")]
    Export(ExportError),
    #[error("{0}")]
    Session(String),
}

/// The session routes for a build: filesync for its directories, secrets, filesend
/// for its sinks; `extra` adds more (auth, ssh).
pub fn routes_for(build: &LocalBuild) -> (SessionRoutes, Option<FileSendService>) {
    let mut dirs = HashMap::from([
        (DIR_CONTEXT.to_string(), build.context.clone()),
        (DIR_DOCKERFILE.to_string(), build.dockerfile_dir.clone()),
    ]);
    for (name, dir) in &build.named_contexts {
        dirs.insert(name.clone(), dir.clone());
    }
    let mut routes = SessionRoutes::new().with_service(
        FileSyncServer::new(FileSyncService::new(dirs)).max_decoding_message_size(16 << 20),
    );
    if !build.secrets.is_empty() {
        routes = routes.with_service(SecretsServer::new(SecretsService::new(
            build.secrets.clone(),
        )));
    }
    let filesend = if build.sinks.iter().any(Option::is_some) {
        let svc = FileSendService::indexed(
            build
                .sinks
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.clone().map(|s| (i, s))),
        );
        routes = routes.with_service(svc.clone());
        Some(svc)
    } else {
        None
    };
    (routes, filesend)
}

/// Run `build` on `channel`, progress rendered in `mode` to `out`; `cancel`
/// resolving stops the build on the daemon.
pub async fn run_build(
    channel: Channel,
    build: &LocalBuild,
    extra: impl FnOnce(SessionRoutes) -> SessionRoutes,
    mode: ProgressMode,
    out: Box<dyn std::io::Write + Send>,
    cancel: impl Future<Output = ()>,
) -> Result<BuildReport, BuildError> {
    let (routes, filesend) = routes_for(build);
    let routes = extra(routes);
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let display = tokio::spawn(progress::run(mode, rx, out));
    let result = solve(
        channel,
        &build.solve,
        routes,
        build.shared_key.clone(),
        tx,
        cancel,
    )
    .await;
    // The sender is gone with the solve: the display ends with the stream.
    let summary = display.await.unwrap_or_default();
    let exports = filesend.map(|f| f.outcomes()).unwrap_or_default();
    match result {
        Ok(outcome) => {
            if let Some(e) = exports.iter().find_map(|o| o.result.clone().err()) {
                return Err(BuildError::Export(e));
            }
            Ok(BuildReport {
                exporter_response: outcome.exporter_response,
                summary,
                exports,
            })
        }
        Err(SolveError::Failed(message)) => {
            // An export that broke explains a failed solve better than the daemon's
            // "failed to send" does.
            if let Some(e) = exports.iter().find_map(|o| o.result.clone().err()) {
                return Err(BuildError::Export(e));
            }
            Err(BuildError::Failed {
                message,
                failed: summary.failed,
            })
        }
        Err(SolveError::Cancelled) => Err(BuildError::Cancelled),
        Err(SolveError::Session(e)) => Err(BuildError::Session(e.to_string())),
    }
}
