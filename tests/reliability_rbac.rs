//! Minimal RBAC: with exactly the Role of example/k8s_buildkitd/rbac.yaml, `pods`,
//! `ring` and `build` work in the simulated cluster; without pods/exec the build fails
//! with the documented hint, and every rule of the Role is needed by something.

mod common;
mod reliability_support;

use std::path::PathBuf;

use common::*;
use reliability_support::*;

fn rbac_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("example/k8s_buildkitd/rbac.yaml")
}

/// The rules of the Role in rbac.yaml, as the simulated API server's rules, limited to
/// the Role's namespace. Core API group only: that is where pods live.
fn role_rules() -> (String, Vec<Rule>) {
    let path = rbac_file();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} must exist (the Role users apply): {e}", path.display()));
    let mut role = None;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap();
        if v["kind"] == "Role" {
            assert!(role.is_none(), "one Role in {}", path.display());
            role = Some(v);
        }
    }
    let role = role.unwrap_or_else(|| panic!("no Role in {}", path.display()));
    let ns = role["metadata"]["namespace"].as_str().unwrap().to_string();
    let strings = |v: &serde_yaml::Value| -> Vec<String> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let rules = role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(strings(&r["apiGroups"]), vec![""], "core group only: {r:?}");
            Rule {
                verbs: strings(&r["verbs"]),
                resources: strings(&r["resources"]),
                namespaces: vec![ns.clone()],
            }
        })
        .collect();
    (ns, rules)
}

fn cluster(rules: Vec<Rule>) -> Sim {
    start_with(SimConfig {
        pods: pods(3),
        context_namespace: Some(NS.into()),
        users: vec![UserConfig::admin(), UserConfig::new("builder", rules)],
        ..SimConfig::default()
    })
}

fn build(sb: &Sandbox, sim: &Sim, extra: &[&str]) -> std::process::Output {
    let ctx = sb.context();
    let mut cmd = sb.plugin(Some(sim));
    cmd.args([
        "build",
        "--context",
        "builder",
        "-t",
        "reg.example/app:1",
        "--push",
    ])
    .args(extra)
    .arg(&ctx);
    sb.run_bounded(&mut cmd).0
}

/// The rules without `verb` on `resource`.
fn without(rules: &[Rule], resource: &str, verb: &str) -> Vec<Rule> {
    let mut out: Vec<Rule> = rules
        .iter()
        .cloned()
        .map(|mut r| {
            if r.resources.iter().any(|x| x == resource) {
                r.verbs.retain(|v| v != verb);
            }
            r
        })
        .filter(|r| !r.verbs.is_empty())
        .collect();
    out.retain(|r| !r.resources.is_empty());
    out
}

#[test]
fn the_documented_role_is_enough() {
    let (ns, rules) = role_rules();
    assert_eq!(ns, NS, "the Role lives in the buildkitd namespace");
    let sim = cluster(rules);
    let sb = Sandbox::new();
    let out =
        run(plugin(Some(&sim), &sb.home).args(["pods", "--context", "builder", "-o", "name"]));
    assert_eq!(
        ok(&out),
        "pod/buildkitd-0\npod/buildkitd-1\npod/buildkitd-2\n"
    );
    let v = json(&run(plugin(Some(&sim), &sb.home).args([
        "ring",
        "--context",
        "builder",
        "-o",
        "json",
        "reg.example/app",
    ])));
    assert_eq!(v["pods"].as_array().unwrap().len(), 3);
    ok(&build(&sb, &sim, &[]));
    ok(&build(&sb, &sim, &["--tunnel", "port-forward"]));
    ok(&build(&sb, &sim, &["--pod", "buildkitd-1"]));
    sb.assert_clean("builds with the minimal Role");
    // Nothing the plugin did needed more than the Role.
    for r in sim.requests() {
        if r.user.as_deref() == Some("builder") {
            assert_ne!(r.status, 403, "{r:?}");
        }
    }
}

#[test]
fn without_pods_exec_the_build_says_use_port_forward() {
    let (_, rules) = role_rules();
    let sim = cluster(without(&rules, "pods/exec", "create"));
    let sb = Sandbox::new();
    let out = build(&sb, &sim, &[]);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    for needle in [
        "pods/exec is forbidden",
        "--tunnel port-forward",
        "example/k8s_buildkitd/rbac.yaml",
    ] {
        assert!(err.contains(needle), "lacks {needle:?}: {err}");
    }
    ok(&build(&sb, &sim, &["--tunnel", "port-forward"]));
    sb.assert_clean("no pods/exec");
}

#[test]
fn every_rule_of_the_role_is_needed() {
    let (_, rules) = role_rules();
    let sb = Sandbox::new();
    // No list: nothing can be selected.
    let sim = cluster(without(&rules, "pods", "list"));
    let out = run(plugin(Some(&sim), &sb.home).args(["pods", "--context", "builder"]));
    fails_with(&out, 1, &["403", "cannot list resource \"pods\""]);
    // No get: --pod cannot look its pod up.
    let sim = cluster(without(&rules, "pods", "get"));
    let out = build(&sb, &sim, &["--pod", "buildkitd-1"]);
    fails_with(&out, 1, &["403", "cannot get resource \"pods\""]);
    // No port-forward: that transport is refused, with the way back to exec.
    let sim = cluster(without(&rules, "pods/portforward", "create"));
    let out = build(&sb, &sim, &["--tunnel", "port-forward"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("pods/portforward is forbidden"),
        "{}",
        stderr(&out)
    );
    ok(&build(&sb, &sim, &[]));
    sb.assert_clean("every rule needed");
}
