//! The built-in BuildKit client: speaks BuildKit's gRPC API over any byte stream.
//!
//! This module knows only that it has a byte stream to a buildkitd (an exec
//! `buildctl dial-stdio`, a port-forward, a unix socket): it never knows about
//! Kubernetes, pods or clap. The pieces:
//! - `session`: the gRPC server we run inside `Control.Session` for the daemon
//!   (filesync, filesend, secrets, ssh, auth, health);
//! - `fsutil`: the wire form of files (Go `FileMode` bits, the diffcopy protocol);
//! - `patterns`: `.dockerignore` semantics for the daemon's include/exclude patterns.

pub mod credentials;
pub mod fsutil;
pub mod patterns;
pub mod session;
