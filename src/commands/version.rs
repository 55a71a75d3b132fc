use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{VersionArgs, VersionOutput};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionInfo {
    version: String,
    git_commit: &'static str,
    target: &'static str,
}

pub fn run(args: &VersionArgs) -> Result<i32> {
    let info = VersionInfo {
        version: format!("v{}", env!("CARGO_PKG_VERSION")),
        git_commit: env!("KUBECTL_BUILDKIT_COMMIT"),
        target: env!("KUBECTL_BUILDKIT_TARGET"),
    };
    let mut out = std::io::stdout().lock();
    match args.output {
        VersionOutput::Json => kubectl_buildkit::output::json(&mut out, &info)?,
        VersionOutput::Text => writeln!(
            out,
            "kubectl-buildkit {} (commit {}, {})",
            info.version, info.git_commit, info.target
        )?,
    }
    Ok(0)
}
