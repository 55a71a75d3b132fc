//! kube-sim: a simulated Kubernetes cluster with buildkitd pods, for kubectl-buildkit's tests.
pub mod buildkitd;
pub mod spdy;
pub mod standin;
pub mod stream;

mod api;
mod auth;
pub mod config;
mod exec;
mod kubeconfig;
mod portforward;
mod programs;
pub mod realkit;
pub mod selector;
mod server;
mod sim;
mod state;
mod status;
mod table;
mod tls;
mod ws;

pub use config::{PodConfig, PodFaults, Rule, ServerFaults, SimConfig, UserConfig};
pub use sim::Sim;
pub use state::RequestRecord;
