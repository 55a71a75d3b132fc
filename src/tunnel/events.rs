//! What a running tunnel has to say: the relay and the accept loop report
//! [`TunnelEvent`]s to the [`Reporter`] they were given, and never print. The command
//! that opened the tunnel decides what the user sees.

use std::sync::Arc;

use super::error::TunnelError;
use super::failover::{AttemptFailure, Unreachable};

/// One thing that happened in a tunnel. `conn` numbers the local connections.
#[derive(Debug, Clone)]
pub enum TunnelEvent {
    /// Connection `conn` is being dialled to `pod`.
    Dialing {
        conn: u64,
        pod: String,
        transport: String,
    },
    /// `pod` sent its first byte: the connection is its own from now on.
    Answered { conn: u64, pod: String },
    /// A pod could not take the connection; it moves on to `next`.
    FailingOver {
        conn: u64,
        failed: AttemptFailure,
        next: String,
    },
    /// No pod could take the connection (also kept in [`super::Tunnel::failures`]).
    Unreachable { conn: u64, why: Unreachable },
    /// The stream to the pod failed after the pod answered; the local connection is
    /// closed. `expected`: we closed a stream without half-close ourselves, so its end
    /// without a status is no news.
    StreamFailed {
        conn: u64,
        error: TunnelError,
        expected: bool,
    },
    /// A relayed connection ended.
    Served {
        conn: u64,
        pod: String,
        up: u64,
        down: u64,
    },
    /// Accepting a local connection failed (the tunnel keeps accepting).
    AcceptFailed { error: String },
}

/// Where a tunnel's events go.
pub type Reporter = Arc<dyn Fn(TunnelEvent) + Send + Sync>;

/// A reporter that drops everything (for callers with nothing to say).
pub fn silent() -> Reporter {
    Arc::new(|_| {})
}
