//! The built-in BuildKit client: speaks BuildKit's gRPC API over any byte stream.
//!
//! This module knows only that it has a byte stream to a buildkitd (an exec
//! `buildctl dial-stdio`, a port-forward, a unix socket): it never knows about
//! Kubernetes, pods or clap. The pieces:
//! - `channel`: a tonic channel over that stream (used once, never reconnects);
//! - `probe`: is it BuildKit, which version (`Info`, or `ListWorkers` before v0.11);
//! - `request`: the `dockerfile.v0` SolveRequest from plain options;
//! - `solve`: Session + Solve + Status on one channel, cancellable;
//! - `build`: a whole Dockerfile build (session services, solve, progress, exports);
//! - `session`: the gRPC server we run inside `Control.Session` for the daemon
//!   (filesync, filesend, secrets, ssh, auth, health);
//! - `fsutil`: the wire form of files (Go `FileMode` bits, the diffcopy protocol);
//! - `patterns`: `.dockerignore` semantics for the daemon's include/exclude patterns.

pub mod build;
pub mod channel;
pub mod credentials;
pub mod fsutil;
pub mod patterns;
pub mod probe;
pub mod progress;
pub mod request;
pub mod session;
pub mod solve;

pub use build::{run_build, BuildError, BuildReport, LocalBuild};
pub use channel::connect;
pub use probe::{connect_probed, probe, DaemonInfo, ProbeError};
pub use request::{CacheEntry, ExportEntry, NetworkMode, SolveOptions};
pub use session::SessionRoutes;
pub use solve::{shared_key, solve, SolveError, SolveOutcome};

#[cfg(test)]
mod tests;
