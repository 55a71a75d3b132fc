//! example/: every skaffold.yaml is valid for skaffold v4beta14, every manifest is the
//! Kubernetes kind it says, the Role is exactly what the plugin needs, and each
//! buildCommand, run as skaffold runs it, builds through the simulated cluster or the
//! stand-in docker with the exact command line expected.

mod common;
mod example_kit;

use std::collections::BTreeSet;

use common::*;
use example_kit::manifests::{parse_file, Manifest};
use example_kit::*;

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/skaffold-v4beta14.schema.json"
);

fn skaffold_files() -> Vec<std::path::PathBuf> {
    files_ending(&examples_dir(), "skaffold.yaml")
}

fn manifest_files() -> Vec<std::path::PathBuf> {
    files_ending(&examples_dir(), ".yaml")
        .into_iter()
        .filter(|p| !p.ends_with("skaffold.yaml"))
        .collect()
}

#[test]
fn every_skaffold_yaml_validates_against_the_v4beta14_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(SCHEMA).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let files = skaffold_files();
    assert_eq!(files.len(), 2, "{files:?}");
    for path in &files {
        let doc = &documents(path)[0];
        assert_eq!(doc["apiVersion"].as_str(), Some("skaffold/v4beta14"));
        let config = serde_json::to_value(doc).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&config)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());

        // The validator does catch a misspelt key where skaffold would.
        let mut typo = config.clone();
        let custom = &mut typo["build"]["artifacts"][0]["custom"];
        let cmd = custom["buildCommand"].take();
        custom.as_object_mut().unwrap().remove("buildCommand");
        custom["buildComand"] = cmd;
        assert!(
            !validator.is_valid(&typo),
            "{}: typo accepted",
            path.display()
        );
    }
}

#[test]
fn every_manifest_parses_as_the_kind_it_declares() {
    let mut kinds = BTreeSet::new();
    for path in manifest_files() {
        for m in parse_file(&path) {
            kinds.insert(m.kind());
        }
    }
    for kind in ["Namespace", "Service", "StatefulSet", "Role", "RoleBinding"] {
        assert!(kinds.contains(kind), "no {kind} in example/: {kinds:?}");
    }
}

fn buildkitd_manifests() -> Vec<Manifest> {
    parse_file(&examples_dir().join("k8s_buildkitd/buildkitd.yaml"))
}

#[test]
fn statefulset_runs_rootless_buildkitd_where_the_plugin_looks() {
    let all = buildkitd_manifests();
    let sts = all
        .iter()
        .find_map(|m| match m {
            Manifest::StatefulSet(s) => Some(s),
            _ => None,
        })
        .expect("a StatefulSet");
    let svc = all
        .iter()
        .find_map(|m| match m {
            Manifest::Service(s) => Some(s),
            _ => None,
        })
        .expect("a Service");
    let spec = sts.spec.as_ref().unwrap();
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    // The plugin's default selector, and the namespace the examples build in.
    assert_eq!(pod_labels.get("app").map(String::as_str), Some("buildkitd"));
    assert_eq!(sts.metadata.namespace.as_deref(), Some("buildkit"));
    // The selector picks out this builder's pods (the pods carry more labels).
    let selector = spec.selector.match_labels.clone().unwrap();
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "{selector:?} does not select {pod_labels:?}"
    );
    assert_eq!(
        selector
            .get("buildkit.kubectl.io/builder")
            .map(String::as_str),
        sts.metadata.name.as_deref()
    );

    let pod = spec.template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    let image = c.image.as_deref().unwrap();
    assert!(
        image.starts_with("moby/buildkit:") && image.contains("rootless"),
        "{image}"
    );
    let args = c.args.clone().unwrap();
    for a in [
        "--oci-worker-no-process-sandbox",
        "unix:///run/user/1000/buildkit/buildkitd.sock",
        "tcp://127.0.0.1:1234",
    ] {
        assert!(args.iter().any(|x| x == a), "{a} not in {args:?}");
    }
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(1000));
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "Unconfined");
    assert_eq!(sc.app_armor_profile.as_ref().unwrap().type_, "Unconfined");
    assert_ne!(sc.privileged, Some(true));
    // --remote-port's default.
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 1234);
    let probe = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
    assert_eq!(
        probe.command.as_deref(),
        Some(&strings(["buildctl", "debug", "workers"])[..])
    );
    // The cache survives restarts: a volume claim per pod, mounted where rootless
    // buildkitd keeps its state.
    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(claim.metadata.name.as_deref(), Some(mount.name.as_str()));
    assert_eq!(mount.mount_path, "/home/user/.local/share/buildkit");

    // The headless Service governs the StatefulSet and selects its pods.
    let sspec = svc.spec.as_ref().unwrap();
    assert_eq!(sspec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.service_name.as_deref(), svc.metadata.name.as_deref());
    assert_eq!(sspec.selector.as_ref(), Some(&selector));
}

/// (resource, verb) pairs a Role grants in the core API group.
fn grants(role: &k8s_openapi::api::rbac::v1::Role) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for rule in role.rules.as_ref().unwrap() {
        assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]));
        assert!(rule.resource_names.is_none());
        for r in rule.resources.as_ref().unwrap() {
            for v in &rule.verbs {
                out.insert((r.clone(), v.clone()));
            }
        }
    }
    out
}

fn example_role() -> k8s_openapi::api::rbac::v1::Role {
    let docs = parse_file(&examples_dir().join("k8s_buildkitd/rbac.yaml"));
    let role = docs.iter().find_map(|m| match m {
        Manifest::Role(r) => Some(r.as_ref().clone()),
        _ => None,
    });
    let binding = docs.iter().find_map(|m| match m {
        Manifest::RoleBinding(b) => Some(b.as_ref().clone()),
        _ => None,
    });
    let (role, binding) = (role.expect("a Role"), binding.expect("a RoleBinding"));
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    assert_eq!(binding.metadata.namespace, role.metadata.namespace);
    assert_eq!(role.metadata.namespace.as_deref(), Some("buildkit"));
    assert!(!binding.subjects.as_ref().unwrap().is_empty());
    role
}

#[test]
fn the_role_grants_exactly_what_the_plugin_needs() {
    let role = example_role();
    let want: BTreeSet<(String, String)> = [
        ("pods", "get"),
        ("pods", "list"),
        ("pods/exec", "create"),
        ("pods/portforward", "create"),
    ]
    .iter()
    .map(|(r, v)| (r.to_string(), v.to_string()))
    .collect();
    let have = grants(&role);
    assert_eq!(have, want);

    // Against the simulated cluster: a user holding exactly the Role's grants can do
    // everything; without any one of them, something the plugin does fails with 403.
    let users: Vec<UserConfig> = std::iter::once(("full", None))
        .chain(have.iter().enumerate().map(|(i, g)| ("less", Some((i, g)))))
        .enumerate()
        .map(|(n, (name, dropped))| {
            let rules = have
                .iter()
                .filter(|g| Some(*g) != dropped.map(|(_, g)| g))
                .map(|(r, v)| Rule::new(&[v], &[r]).in_namespaces(&[NS]))
                .collect();
            UserConfig::new(&format!("{name}{n}"), rules)
        })
        .collect();
    let names: Vec<String> = users.iter().map(|u| u.name.clone()).collect();
    let sim = start_with(SimConfig {
        pods: pods(3),
        context_namespace: Some(NS.into()),
        users,
        ..SimConfig::default()
    });
    let home = Home::new();
    let ctx = examples_dir().join("k8s_buildkitd");
    let everything = |user: &str| -> Vec<std::process::Output> {
        let build = |extra: &[&str]| {
            run(plugin(Some(&sim), &home)
                .args([
                    "--context",
                    user,
                    "build",
                    "--push",
                    "-t",
                    "reg.example/rbac:1",
                ])
                .args(extra)
                .arg(&ctx))
        };
        vec![
            run(plugin(Some(&sim), &home).args(["--context", user, "pods"])),
            build(&["--pod", "buildkitd-1"]),
            build(&["--tunnel", "exec"]),
            build(&["--tunnel", "port-forward"]),
        ]
    };
    for out in everything(&names[0]) {
        ok(&out);
    }
    for user in &names[1..] {
        let outs = everything(user);
        let failed: Vec<String> = outs
            .iter()
            .filter(|o| !o.status.success())
            .map(stderr)
            .collect();
        assert!(!failed.is_empty(), "{user}: nothing failed without a grant");
        assert!(
            failed.iter().all(|e| e.contains("forbidden")),
            "{user}: {failed:#?}"
        );
    }
}

#[test]
fn build_commands_use_no_go_templates() {
    for path in skaffold_files() {
        for art in artifacts(&path) {
            assert!(!art.build_command.contains("{{"), "{}", art.build_command);
            assert!(art.build_command.starts_with("kubectl buildkit build"));
        }
    }
}

#[test]
fn the_manifest_check_catches_a_misplaced_field() {
    let home = Home::new();
    let path = home.path().join("typo.yaml");
    let text = std::fs::read_to_string(examples_dir().join("k8s_buildkitd/buildkitd.yaml"))
        .unwrap()
        .replace("readinessProbe:", "readinesProbe:");
    std::fs::write(&path, text).unwrap();
    let caught = std::panic::catch_unwind(|| parse_file(&path));
    let msg = caught.expect_err("a misspelt field must fail the check");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("readinesProbe"), "{msg}");
}

/// example/docker_buildkit: the secret its buildCommand passes is the one the Dockerfile
/// mounts (`RUN --mount=type=secret,id=...`), its file exists, and `.dockerignore` keeps
/// that file out of the build context.
#[test]
fn the_docker_example_mounts_its_secret_and_keeps_it_out_of_the_context() {
    let dir = examples_dir().join("docker_buildkit");
    let art = artifacts(&dir.join("skaffold.yaml")).remove(0);
    let spec = art
        .build_command
        .split_whitespace()
        .skip_while(|w| *w != "--secret")
        .nth(1)
        .unwrap_or_else(|| panic!("no --secret in {}", art.build_command));
    let field = |k: &str| {
        spec.split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in {spec}"))
            .to_string()
    };
    let (id, src) = (field("id"), field("src"));
    let dockerfile = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("RUN ") && l.contains(&format!("--mount=type=secret,id={id}"))),
        "the Dockerfile does not mount secret {id}:\n{dockerfile}"
    );
    assert!(dir.join(&src).is_file(), "{src} missing");
    let ignore = std::fs::read_to_string(dir.join(".dockerignore")).unwrap();
    let top = src.split('/').next().unwrap();
    assert!(
        ignore
            .lines()
            .map(str::trim)
            .any(|l| l == src || l.trim_end_matches('/') == top),
        ".dockerignore does not exclude {src}:\n{ignore}"
    );
}
