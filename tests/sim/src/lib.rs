//! kube-sim: a simulated Kubernetes cluster with buildkitd pods, for kubectl-buildkit's tests.
pub mod buildkitd;
pub mod spdy;
pub mod stream;
