//! kubectl-buildkit as a library: everything the plugin does, with no command line.
//!
//! The binary (`src/main.rs`, `src/cli.rs`, `src/commands/`, `src/completion/`) parses
//! flags with clap, turns them into the plain option structs below, and prints. Data
//! flows down this list; no module reaches up:
//!
//! - [`names`]: Kubernetes name rules (pods, namespaces, containers).
//! - [`duration`]: `--request-timeout` values, as kubectl (Go) parses them.
//! - [`ring`]: consistent hashing, key -> fallback order over pod names. Pure.
//! - [`cluster`]: a kube client from the user's kubeconfig, like kubectl
//!   ([`cluster::ClusterOptions`]), and the few API calls we make.
//! - [`selection`]: listing -> eligibility -> ring -> fallback order
//!   ([`selection::SelectionOptions`]).
//! - [`tunnel`]: one byte stream to a pod's buildkitd through the API server
//!   ([`tunnel::Connection`], [`tunnel::dial`]), the failover walk over the fallback
//!   order ([`tunnel::Failover`]), and the local endpoint that relays each connection
//!   ([`tunnel::Tunnel`]).
//! - [`build`]: flags + skaffold's environment -> one build spec -> argv for buildctl or
//!   docker. Pure.
//! - [`buildkit`]: the built-in BuildKit client over any byte stream (a
//!   [`tunnel::Connection`], a unix socket): solve, status, the session we serve.
//! - [`builder`]: `create`/`rm`: a builder's objects from a plain
//!   [`builder::spec::BuilderSpec`] (pure), server-side applied all or nothing, its pods
//!   waited for; removal by label.
//! - [`process`]: child processes and the signals they must see.
//! - [`output`], [`log`], [`progress`]: what goes to stdout and stderr.

pub mod build;
pub mod builder;
pub mod buildkit;
pub mod cluster;
pub mod duration;
pub mod log;
pub mod names;
pub mod output;
pub mod process;
pub mod progress;
pub mod ring;
pub mod selection;
pub mod tunnel;
