//! `kubectl buildkit version`: the crate's version, the commit it was built from and
//! the target, as text and as JSON.

mod common;
use std::process::Command;

use kube_sim::harness::OutputBounded;

use common::*;

/// The commit the binary must report: KUBECTL_BUILDKIT_COMMIT when the build was given
/// one, else the checkout's HEAD; None outside a git checkout.
fn expected_commit() -> Option<String> {
    if let Ok(c) = std::env::var("KUBECTL_BUILDKIT_COMMIT") {
        return Some(c);
    }
    let git = harness::on_path("git")?;
    let out = Command::new(git)
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output_bounded();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn text_and_json_agree_with_the_crate_and_the_checkout() {
    let home = Home::new();
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));

    let json = json(&run(plugin(None, &home).args(["version", "-o", "json"])));
    assert_eq!(json["version"], version.as_str(), "{json}");
    let commit = json["gitCommit"].as_str().expect("gitCommit").to_string();
    let target = json["target"].as_str().expect("target").to_string();
    match expected_commit() {
        Some(want) => assert_eq!(commit, want, "built from another commit?"),
        None => assert!(!commit.is_empty()),
    }
    assert!(
        target.starts_with(std::env::consts::ARCH) && target.contains(std::env::consts::OS),
        "target {target:?} is not this machine's ({}, {})",
        std::env::consts::ARCH,
        std::env::consts::OS
    );

    let text = ok(&run(plugin(None, &home).arg("version")));
    assert_eq!(
        text,
        format!("kubectl-buildkit {version} (commit {commit}, {target})\n")
    );
    // clap's --version agrees on the number.
    let flag = ok(&run(plugin(None, &home).arg("--version")));
    assert!(flag.contains(env!("CARGO_PKG_VERSION")), "{flag}");
}
