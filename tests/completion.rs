//! Shell completion: the real kubectl completing `kubectl buildkit ...` through the
//! kubectl_complete-buildkit helper we print, against the simulated cluster; and the
//! standalone scripts for the kubectl-buildkit binary.

mod common;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A bin dir on PATH with `kubectl-buildkit` (a link to the built binary) and the
/// helper script as `kubectl completion kubectl` prints it.
fn completion_path(home: &Home) -> std::ffi::OsString {
    let dir = home.path().join("bin");
    let helper = dir.join("kubectl_complete-buildkit");
    if !helper.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(bin(), dir.join("kubectl-buildkit")).unwrap();
        let script = ok(&run(plugin(None, home).args(["completion", "kubectl"])));
        std::fs::write(&helper, script).unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut paths = vec![dir];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// What a shell would get for `kubectl buildkit WORDS<TAB>`: (candidates, directive).
fn kubectl_complete(
    home: &Home,
    kubeconfig: &std::path::Path,
    words: &[&str],
) -> (Vec<String>, String) {
    let mut cmd = Command::new("kubectl");
    clean_env(&mut cmd, home);
    cmd.env("PATH", completion_path(home))
        .env("KUBECONFIG", kubeconfig)
        .current_dir(home.path())
        .arg("__complete")
        .arg("buildkit")
        .args(words);
    let text = ok(&run(&mut cmd));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let directive = lines.pop().unwrap_or_default();
    assert!(directive.starts_with(':'), "no directive line in {text:?}");
    let names = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    (names, directive)
}

fn sim() -> Sim {
    start_with(SimConfig {
        namespaces: vec!["default".into(), "team-a".into()],
        pods: vec![
            PodConfig::new(NS, "buildkitd-0"),
            PodConfig::new(NS, "buildkitd-1"),
            PodConfig {
                ready: false,
                ..PodConfig::new(NS, "buildkitd-2")
            },
            PodConfig::new(NS, "other-0").with_labels(&[("app", "other")]),
            PodConfig::new("team-a", "bk-a-0"),
        ],
        users: vec![
            UserConfig::admin(),
            UserConfig::new("dev", vec![Rule::new(&["list", "get"], &["pods"])]),
        ],
        context_namespace: Some(NS.into()),
        ..SimConfig::default()
    })
}

#[test]
fn kubectl_completes_subcommands_and_flags() {
    let _kubectl = kube_sim::require_kubectl!();
    let sim = sim();
    let home = Home::new();
    let kc = sim.kubeconfig().to_path_buf();
    let (subs, directive) = kubectl_complete(&home, &kc, &[""]);
    for s in ["build", "completion", "pods", "ring", "tunnel", "version"] {
        assert!(subs.contains(&s.to_string()), "{s} missing from {subs:?}");
    }
    assert!(!subs.iter().any(|s| s.starts_with("__")), "{subs:?}");
    assert_eq!(directive, ":4");

    let (flags, directive) = kubectl_complete(&home, &kc, &["tunnel", "--l"]);
    assert_eq!(flags, vec!["--listen"]);
    assert_eq!(directive, ":4");

    let (algos, _) = kubectl_complete(&home, &kc, &["pods", "--algorithm", ""]);
    assert_eq!(algos, vec!["classic", "buildx", "rendezvous"]);
    let (tunnels, _) = kubectl_complete(&home, &kc, &["build", "--tunnel", ""]);
    assert_eq!(tunnels, vec!["exec", "port-forward"]);
    let (outputs, _) = kubectl_complete(&home, &kc, &["pods", "-o", "y"]);
    assert_eq!(outputs, vec!["yaml"]);

    // A file argument lets the shell complete files (directive 0).
    let (none, directive) = kubectl_complete(&home, &kc, &["build", "-f", ""]);
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(directive, ":0");
}

#[test]
fn kubectl_completes_contexts_namespaces_and_pods_from_the_cluster() {
    let _kubectl = kube_sim::require_kubectl!();
    let sim = sim();
    let home = Home::new();
    let kc = sim.kubeconfig().to_path_buf();

    let (contexts, directive) = kubectl_complete(&home, &kc, &["pods", "--context", ""]);
    assert_eq!(contexts, vec!["admin", "dev"]);
    assert_eq!(directive, ":4");
    let (contexts, _) = kubectl_complete(&home, &kc, &["pods", "--context", "d"]);
    assert_eq!(contexts, vec!["dev"]);

    let (namespaces, directive) = kubectl_complete(&home, &kc, &["build", "-n", ""]);
    assert_eq!(namespaces, vec!["buildkit", "default", "team-a"]);
    assert_eq!(directive, ":4");
    let (namespaces, _) = kubectl_complete(&home, &kc, &["build", "--namespace=te"]);
    assert_eq!(namespaces, vec!["--namespace=team-a"]);

    // Pods: the default selector in the context's namespace, not-ready ones included
    // (the user may still want to name them), other apps left out.
    let (pods, directive) = kubectl_complete(&home, &kc, &["build", "--pod", ""]);
    assert_eq!(pods, vec!["buildkitd-0", "buildkitd-1", "buildkitd-2"]);
    assert_eq!(directive, ":4");
    // The namespace and selector typed so far are honoured.
    let (pods, _) = kubectl_complete(&home, &kc, &["tunnel", "-n", "team-a", "--pod", ""]);
    assert_eq!(pods, vec!["bk-a-0"]);
    let (pods, _) = kubectl_complete(&home, &kc, &["build", "-l", "app=other", "--pod", ""]);
    assert_eq!(pods, vec!["other-0"]);

    // A user who may not list namespaces gets nothing, and no error.
    let (namespaces, directive) =
        kubectl_complete(&home, &kc, &["build", "--context", "dev", "-n", ""]);
    assert!(namespaces.is_empty(), "{namespaces:?}");
    assert_eq!(directive, ":4");
    // ... but may list pods.
    let (pods, _) = kubectl_complete(
        &home,
        &kc,
        &["build", "--context", "dev", "--pod", "buildkitd-1"],
    );
    assert_eq!(pods, vec!["buildkitd-1"]);
}

#[test]
fn an_unresponsive_cluster_costs_a_bounded_wait_and_offers_nothing() {
    let _kubectl = kube_sim::require_kubectl!();
    let sim = sim();
    let home = Home::new();
    // A server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let kc = edited_kubeconfig(&sim, &home, |v| {
        v["clusters"][0]["cluster"]["server"] = format!("https://{addr}").into();
    });
    let started = Instant::now();
    let (namespaces, directive) = kubectl_complete(&home, &kc, &["build", "-n", ""]);
    let took = started.elapsed();
    assert!(namespaces.is_empty(), "{namespaces:?}");
    assert_eq!(directive, ":4");
    assert!(took < Duration::from_secs(8), "completion waited {took:?}");
    // Contexts come from the file alone and still complete.
    let (contexts, _) = kubectl_complete(&home, &kc, &["--context", ""]);
    assert_eq!(contexts, vec!["admin", "dev"]);
    drop(silent);
}

fn script(home: &Home, shell: &str) -> String {
    let text = ok(&run(plugin(None, home).args(["completion", shell])));
    assert!(!text.trim().is_empty(), "{shell}: empty script");
    assert!(text.contains("kubectl-buildkit"), "{shell}: {text}");
    text
}

#[test]
fn standalone_scripts_for_every_shell() {
    let home = Home::new();
    for shell in ["bash", "zsh", "fish", "powershell", "kubectl"] {
        script(&home, shell);
    }
    let helper = script(&home, "kubectl");
    assert!(helper.starts_with("#!/bin/sh\n"), "{helper}");
    assert!(
        helper.contains("exec kubectl-buildkit __complete \"$@\""),
        "{helper}"
    );

    // bash accepts the script, and completing `kubectl-buildkit po` with it offers pods.
    let bash_script: PathBuf = home.path().join("kubectl-buildkit.bash");
    std::fs::write(&bash_script, script(&home, "bash")).unwrap();
    let out = run(Command::new("bash").arg("-n").arg(&bash_script));
    ok(&out);
    let probe = format!(
        "source {s}\n\
         fn=$(complete -p kubectl-buildkit | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')\n\
         COMP_WORDS=(kubectl-buildkit po); COMP_CWORD=1; COMP_LINE='kubectl-buildkit po'; COMP_POINT=${{#COMP_LINE}}\n\
         \"$fn\" kubectl-buildkit po kubectl-buildkit\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        s = bash_script.display()
    );
    let out = ok(&run(Command::new("bash").arg("-c").arg(probe)));
    assert_eq!(out.trim(), "pods", "bash completion of `po`: {out:?}");
}

#[test]
fn helper_name_answers_like_the_hidden_subcommand() {
    let home = Home::new();
    let dir = home.path().join("named");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("kubectl_complete-buildkit");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let mut by_name = Command::new(&link);
    clean_env(&mut by_name, &home);
    let a = ok(&run(by_name.args(["ring", "--out"])));
    let b = ok(&run(plugin(None, &home).args([
        "__complete",
        "ring",
        "--out",
    ])));
    assert_eq!(a, b);
    assert!(a.starts_with("--output\t"), "{a}");
    assert!(a.ends_with("\n:4\n"), "{a}");
}
