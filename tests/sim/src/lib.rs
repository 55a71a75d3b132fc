//! kube-sim: a simulated Kubernetes cluster with buildkitd pods, for kubectl-buildkit's tests.
pub mod buildkitd;
pub mod harness;
pub mod spdy;
pub mod standin;
pub mod stream;

mod api;
mod auth;
pub mod config;
pub mod controller;
mod exec;
mod kubeconfig;
pub mod objects;
mod portforward;
mod programs;
pub mod realkit;
mod resources;
pub mod selector;
mod server;
mod sim;
mod state;
mod status;
mod table;
mod tls;
mod ws;

pub use config::{PodConfig, PodFaults, Rule, ServerFaults, SimConfig, UserConfig};
pub use controller::ControllerConfig;
pub use sim::Sim;
pub use state::RequestRecord;
