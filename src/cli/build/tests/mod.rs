//! The build flags through the library: a command line as clap parses it, plus
//! skaffold's environment, to the exact spec and argv. Here, beside the flags, since
//! only the binary knows clap.

use testkit::Tree;

mod args;
mod attrs;
mod flags;
mod skaffold;
mod spec;
pub mod testkit;

pub const ADDR: &str = "unix:///tmp/kubectl-buildkit-1/buildkitd.sock";

/// skaffold's environment for an artifact in `ctx`.
pub fn skaffold_env(t: &Tree, push: &str, platforms: &str) -> Vec<(&'static str, String)> {
    vec![
        ("IMAGE", "reg/app:v1".to_string()),
        ("PUSH_IMAGE", push.to_string()),
        ("BUILD_CONTEXT", t.s("ctx")),
        ("PLATFORMS", platforms.to_string()),
    ]
}

pub fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
