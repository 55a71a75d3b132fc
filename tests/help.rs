//! Every subcommand's help reads like a kubectl plugin's: it says `kubectl buildkit`,
//! shows examples, and documents the environment variables the subcommand reads.

mod common;
use common::*;

/// Subcommand names from the root help's "Commands:" section (so a new subcommand is
/// checked without editing this test).
fn subcommands(root_help: &str) -> Vec<String> {
    let section = root_help
        .split("Commands:\n")
        .nth(1)
        .expect("root help lists commands")
        .split("\n\n")
        .next()
        .unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The environment variables each subcommand reads.
fn env_read_by(sub: &str) -> &'static [&'static str] {
    match sub {
        "build" => &[
            "IMAGE",
            "PUSH_IMAGE",
            "BUILD_CONTEXT",
            "PLATFORMS",
            "KUBECONFIG",
        ],
        "tunnel" => &["IMAGE", "KUBECONFIG", "BUILDKIT_HOST"],
        "pods" => &["IMAGE", "KUBECONFIG"],
        "ring" | "completion" => &["KUBECONFIG"],
        _ => &[],
    }
}

#[test]
fn every_subcommand_has_kubectl_style_help_with_examples_and_its_environment() {
    let home = Home::new();
    let root = ok(&run(plugin(None, &home).arg("--help")));
    assert!(root.contains("kubectl buildkit"), "{root}");
    assert!(root.contains("Examples:"), "{root}");
    let subs = subcommands(&root);
    for want in ["build", "pods", "ring", "tunnel", "version", "completion"] {
        assert!(subs.iter().any(|s| s == want), "{want} not in {subs:?}");
    }
    for sub in &subs {
        for flag in ["--help", "-h"] {
            let help = ok(&run(plugin(None, &home).args([sub.as_str(), flag])));
            assert!(
                help.contains(&format!("kubectl buildkit {sub}")),
                "{sub} {flag}: no usage line:\n{help}"
            );
            assert!(
                help.contains("Examples:"),
                "{sub} {flag}: no examples:\n{help}"
            );
            let examples = help.split("Examples:").nth(1).unwrap();
            assert!(
                examples.contains(&format!("kubectl buildkit {sub}")),
                "{sub} {flag}: examples don't run `kubectl buildkit {sub}`:\n{help}"
            );
            for var in env_read_by(sub) {
                assert!(
                    help.contains(var),
                    "{sub} {flag}: {var} undocumented:\n{help}"
                );
            }
        }
    }
}
