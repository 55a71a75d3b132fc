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

/// What every subcommand that talks to the cluster reads (src/cluster.rs).
const CLUSTER_ENV: [&str; 3] = ["KUBECONFIG", "HOME", "KUBERNETES_SERVICE_HOST"];

/// The environment variables each subcommand reads.
fn env_read_by(sub: &str) -> Vec<&'static str> {
    let own: &[&str] = match sub {
        "build" => &[
            "IMAGE",
            "PUSH_IMAGE",
            "BUILD_CONTEXT",
            "PLATFORMS",
            "TMPDIR",
        ],
        "tunnel" => &["IMAGE", "BUILDKIT_HOST", "TMPDIR"],
        "pods" => &["IMAGE"],
        "ring" | "completion" => &[],
        _ => return Vec::new(),
    };
    own.iter().chain(CLUSTER_ENV.iter()).copied().collect()
}

/// Every environment variable the plugin's source reads by name
/// (`var("X")`, `var_os("X")`, and the skaffold names in src/build/skaffold.rs).
fn env_names_in_source() -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let mut sources = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    let mut names = Vec::new();
    for (path, text) in &sources {
        let skaffold = path.ends_with("build/skaffold.rs");
        let openers: &[&str] = if skaffold {
            &["var(\"", "var_os(\"", ": &str = \""]
        } else {
            &["var(\"", "var_os(\""]
        };
        for opener in openers {
            for piece in text.split(opener).skip(1) {
                let name: String = piece.chars().take_while(|c| *c != '"').collect();
                let is_env_name = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    && piece[name.len()..].starts_with('"');
                if is_env_name && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    names
}

#[test]
fn every_environment_variable_the_source_reads_is_in_the_root_help() {
    let home = Home::new();
    let root = ok(&run(plugin(None, &home).arg("--help")));
    let env_section = root
        .split("Environment:")
        .nth(1)
        .expect("an Environment section");
    let names = env_names_in_source();
    for must in ["KUBECONFIG", "HOME", "TMPDIR", "IMAGE", "PUSH_IMAGE"] {
        assert!(
            names.iter().any(|n| n == must),
            "scan missed {must}: {names:?}"
        );
    }
    for name in &names {
        assert!(
            env_section.contains(name.as_str()),
            "{name} is read by src/ but not documented in `kubectl buildkit --help`:\n{root}"
        );
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
