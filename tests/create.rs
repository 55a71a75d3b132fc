//! `kubectl buildkit create` and `rm` against the simulated cluster. What a command did
//! is read back from the cluster with the real kubectl (/usr/bin/kubectl), never from
//! the plugin's own output.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use kube_sim::ControllerConfig;
use serde_json::Value;

const KUBECTL: &str = "/usr/bin/kubectl";
const KINDS: &str = "statefulsets,services,configmaps,roles,rolebindings";

fn cluster(users: Vec<UserConfig>) -> Sim {
    start_with(SimConfig {
        namespaces: vec!["default".into(), NS.into()],
        context_namespace: Some(NS.into()),
        users,
        ..SimConfig::default()
    })
}

/// The real kubectl as admin, with its own HOME (discovery cache).
fn kubectl(sim: &Sim, home: &Home, args: &[&str]) -> Value {
    kubectl_in(sim, home, NS, args)
}

fn kubectl_in(sim: &Sim, home: &Home, ns: &str, args: &[&str]) -> Value {
    let out = Command::new(KUBECTL)
        .env_clear()
        .env("HOME", home.path().join("kubectl-home"))
        .env("KUBECONFIG", sim.kubeconfig())
        .args(["--context", "admin", "-n", ns, "-o", "json", "get"])
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("kubectl -o json")
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// "kind/name" of every item.
fn names(v: &Value) -> Vec<String> {
    items(v)
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn pod_names(sim: &Sim, home: &Home) -> Vec<String> {
    items(&kubectl(sim, home, &["pods"]))
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// "kind/name" -> resourceVersion of the builder's objects.
fn versions(sim: &Sim, home: &Home) -> BTreeMap<String, String> {
    items(&kubectl(sim, home, &[KINDS]))
        .iter()
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                ),
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect()
}

fn create(sim: &Sim, home: &Home, args: &[&str]) -> std::process::Output {
    run(plugin(Some(sim), home).arg("create").args(args))
}

#[test]
fn create_then_pods_then_a_build_on_the_hashed_pod_then_rm_leaves_nothing() {
    let sim = cluster(vec![UserConfig::admin()]);
    let p = Project::new();
    let home = &p.home;
    let out = create(
        &sim,
        home,
        &["--replicas", "3", "--cache-size", "1Gi", "--timeout", "30s"],
    );
    let text = ok(&out);
    assert!(
        text.contains("statefulset.apps/buildkitd created"),
        "{text}"
    );
    for i in 0..3 {
        assert!(
            stderr(&out).contains(&format!("pod buildkitd-{i}: Ready")),
            "{}",
            stderr(&out)
        );
    }
    // What the cluster holds: the StatefulSet, all three pods Ready.
    let got = kubectl(&sim, home, &["statefulset,pods"]);
    let mut all = names(&got);
    all.sort();
    assert_eq!(
        all,
        [
            "Pod/buildkitd-0",
            "Pod/buildkitd-1",
            "Pod/buildkitd-2",
            "StatefulSet/buildkitd"
        ]
    );
    for pod in items(&got).iter().filter(|o| o["kind"] == "Pod") {
        let ready = pod["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(ready, "{pod}");
        assert_eq!(pod["metadata"]["labels"]["app"], "buildkitd");
    }
    // `pods` sees them all as eligible, by the default selector and by --builder.
    for sel in [vec![], vec!["--builder", "buildkitd"]] {
        let v = json(&run(plugin(Some(&sim), home)
            .arg("pods")
            .args(&sel)
            .args(["-o", "json"])));
        let eligible: Vec<&str> = v["pods"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["eligible"] == true)
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            eligible,
            ["buildkitd-0", "buildkitd-1", "buildkitd-2"],
            "{sel:?}"
        );
    }
    // A build lands on the pod its key hashes to.
    let image = "gcr.io/team/api";
    let want = &ring_order(
        home,
        &["buildkitd-0", "buildkitd-1", "buildkitd-2"],
        image,
        "classic",
    )[0];
    let before = sim.stats(NS, want).connections;
    ok(&run(p
        .build(Some(&sim))
        .args(["--cli", "buildctl", "--builder", "buildkitd"])
        .env("IMAGE", format!("{image}:v1"))
        .env("PUSH_IMAGE", "true")));
    let rec = p.buildctl_records().pop().unwrap();
    assert_eq!(rec["served_by"]["pod"], want.as_str());
    assert_eq!(sim.stats(NS, want).connections, before + 1);
    p.assert_clean();
    // rm: nothing left but the cache claims, which --delete-cache removes.
    let out = run(plugin(Some(&sim), home).args(["rm", "--timeout", "30s"]));
    ok(&out);
    assert!(
        stderr(&out).contains("kept the cache volumes"),
        "{}",
        stderr(&out)
    );
    assert!(items(&kubectl(&sim, home, &[&format!("{KINDS},pods")])).is_empty());
    assert_eq!(items(&kubectl(&sim, home, &["pvc"])).len(), 3);
    ok(&run(plugin(Some(&sim), home).args(["rm", "--delete-cache"])));
    assert!(items(&kubectl(&sim, home, &[&format!("{KINDS},pods,pvc")])).is_empty());
    // And a builder that is not there is an error that says so.
    let out = run(plugin(Some(&sim), home).args(["rm", "nosuch"]));
    fails_with(&out, 1, &["no builder \"nosuch\" in namespace buildkit"]);
    ok(&run(plugin(Some(&sim), home).args([
        "rm",
        "nosuch",
        "--ignore-not-found",
    ])));
}

#[test]
fn create_twice_is_a_no_op_and_replicas_change_only_the_statefulset() {
    let sim = cluster(vec![UserConfig::admin()]);
    let home = Home::new();
    let config = home.path().join("buildkitd.toml");
    std::fs::write(
        &config,
        "[registry.\"docker.io\"]\n  mirrors = [\"mirror.example.com\"]\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let flags = |replicas: &'static str| {
        vec![
            "--replicas",
            replicas,
            "--config",
            &config,
            "--bind-group",
            "devs",
            "--timeout",
            "30s",
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>()
    };
    let run_create = |replicas| {
        let f = flags(replicas);
        let f: Vec<&str> = f.iter().map(String::as_str).collect();
        ok(&create(&sim, &home, &f))
    };
    run_create("2");
    let first = versions(&sim, &home);
    assert_eq!(first.len(), 5, "{first:?}");
    assert_eq!(pod_names(&sim, &home), ["buildkitd-0", "buildkitd-1"]);

    let again = run_create("2");
    assert_eq!(
        versions(&sim, &home),
        first,
        "a second create changed something"
    );
    assert_eq!(
        again.lines().filter(|l| l.ends_with(" unchanged")).count(),
        5,
        "{again}"
    );
    assert_eq!(pod_names(&sim, &home), ["buildkitd-0", "buildkitd-1"]);

    for (replicas, pods) in [
        ("3", vec!["buildkitd-0", "buildkitd-1", "buildkitd-2"]),
        ("1", vec!["buildkitd-0"]),
    ] {
        let before = versions(&sim, &home);
        run_create(replicas);
        let after = versions(&sim, &home);
        let changed: Vec<&String> = after
            .keys()
            .filter(|k| before.get(*k) != after.get(*k))
            .collect();
        assert_eq!(changed, ["StatefulSet/buildkitd"], "--replicas {replicas}");
        assert_eq!(pod_names(&sim, &home), pods, "--replicas {replicas}");
        let sts = kubectl(&sim, &home, &["statefulset", "buildkitd"]);
        assert_eq!(sts["spec"]["replicas"], replicas.parse::<u64>().unwrap());
    }
}

#[test]
fn without_create_on_statefulsets_a_clear_403_and_nothing_half_made() {
    let sim = cluster(vec![
        UserConfig::admin(),
        UserConfig::new(
            "nosts",
            vec![
                Rule::new(
                    &["*"],
                    &["services", "configmaps", "roles", "rolebindings", "pods"],
                ),
                Rule::new(&["get", "list", "patch"], &["statefulsets"]),
            ],
        ),
    ]);
    let home = Home::new();
    let out = create(&sim, &home, &["--context", "nosts", "--bind-group", "devs"]);
    let err = fails_with(
        &out,
        1,
        &[
            "cannot create statefulsets.apps \"buildkitd\" in namespace buildkit",
            "403",
            "nothing was changed",
        ],
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        items(&kubectl(&sim, &home, &[&format!("{KINDS},pods")])).is_empty(),
        "half made"
    );
    // With a ConfigMap applied ahead of the StatefulSet: still nothing made.
    let out = create(
        &sim,
        &home,
        &["--context", "nosts", "--config", "/dev/null"],
    );
    fails_with(&out, 1, &["statefulsets.apps", "namespace buildkit"]);
    assert!(items(&kubectl(&sim, &home, &[KINDS])).is_empty());
    // A namespace that does not exist: said so, nothing made.
    let out = create(&sim, &home, &["-n", "nosuch"]);
    fails_with(
        &out,
        1,
        &[
            "namespace nosuch does not exist",
            "kubectl create namespace nosuch",
        ],
    );
}

#[test]
fn a_pod_that_never_gets_ready_ends_the_wait_at_timeout_naming_it() {
    let sim = cluster(vec![UserConfig::admin()]);
    sim.set_controller(ControllerConfig {
        never_ready: vec!["buildkitd-1".into()],
        ..ControllerConfig::default()
    });
    let home = Home::new();
    let start = Instant::now();
    let out = create(&sim, &home, &["--replicas", "2", "--timeout", "2s"]);
    let took = start.elapsed();
    let err = fails_with(
        &out,
        1,
        &[
            "not ready after --timeout 2s",
            "pod buildkitd-1 is Running, not Ready",
            "describe pod buildkitd-1",
        ],
    );
    assert!(
        !err.contains("pod buildkitd-0 is"),
        "buildkitd-0 was Ready: {err}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // The builder stays: the cluster shows one of two pods Ready.
    let sts = kubectl(&sim, &home, &["statefulset", "buildkitd"]);
    assert_eq!(sts["status"]["readyReplicas"], 1);
    // --wait=false returns at once.
    ok(&create(&sim, &home, &["--replicas", "2", "--wait=false"]));
}

/// Each document, through its k8s-openapi type and back, is unchanged.
fn round_trips(doc: &Value) {
    fn rt<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Value {
        let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
        serde_json::to_value(t).unwrap()
    }
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, rbac::v1 as rbac};
    let back = match doc["kind"].as_str().unwrap() {
        "StatefulSet" => rt::<apps::StatefulSet>(doc),
        "Service" => rt::<core::Service>(doc),
        "ConfigMap" => rt::<core::ConfigMap>(doc),
        "Role" => rt::<rbac::Role>(doc),
        "RoleBinding" => rt::<rbac::RoleBinding>(doc),
        other => panic!("unexpected kind {other}"),
    };
    assert_eq!(
        &back, doc,
        "a field k8s-openapi does not know, or a wrong type"
    );
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn dry_run_client_needs_no_cluster_and_its_objects_round_trip() {
    let home = Home::new();
    let config = home.path().join("buildkitd.toml");
    std::fs::write(&config, "debug = true\n").unwrap();
    let args = [
        "create",
        "fast",
        "--replicas",
        "2",
        "--rootful",
        "--node-selector",
        "pool=build",
        "--toleration",
        "dedicated=build:NoSchedule",
        "--requests",
        "cpu=1,memory=2Gi",
        "--limits",
        "memory=4Gi",
        "--cache-size",
        "5Gi",
        "--storage-class",
        "ssd",
        "--port-forward-port",
        "4321",
        "--bind-user",
        "alice",
        "--bind-serviceaccount",
        "ci:runner",
        "--config",
        config.to_str().unwrap(),
        "--dry-run=client",
    ];
    // No kubeconfig at all (HOME is empty, KUBECONFIG unset): the namespace is "default".
    let yaml = ok(&run(plugin(None, &home).args(args).args(["-o", "yaml"])));
    let docs = yaml_docs(&yaml);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "Service", "Role", "RoleBinding", "StatefulSet"]
    );
    for d in &docs {
        round_trips(d);
        assert_eq!(d["metadata"]["namespace"], "default");
    }
    let sts = &docs[4];
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "moby/buildkit:v0.23.2");
    assert_eq!(c["securityContext"]["privileged"], true);
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"],
        "ssd"
    );
    assert_eq!(docs[0]["data"]["buildkitd.toml"], "debug = true\n");
    // -o json: a v1 List of the same objects; -n sets the namespace.
    let v = json(&run(plugin(None, &home)
        .args(args)
        .args(["-o", "json", "-n", "ci"])));
    assert_eq!(v["kind"], "List");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), docs.len());
    for (a, b) in items.iter().zip(&docs) {
        round_trips(a);
        let mut b = b.clone();
        b["metadata"]["namespace"] = "ci".into();
        assert_eq!(a, &b);
    }
    // Bad flags: a clear error, exit 1 or 2, nothing printed.
    let out = run(plugin(None, &home).args([
        "create",
        "--toleration",
        "a:Sometimes",
        "--dry-run=client",
    ]));
    fails_with(&out, 1, &["--toleration", "NoSchedule"]);
    assert!(stdout(&out).is_empty());
}

#[test]
fn the_example_is_exactly_what_create_makes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("example/k8s_buildkitd");
    let text = std::fs::read_to_string(dir.join("buildkitd.yaml")).unwrap();
    let command = text
        .lines()
        .find_map(|l| {
            l.trim_start_matches('#')
                .trim()
                .strip_prefix("kubectl buildkit create ")
        })
        .expect("buildkitd.yaml names the command that makes it");
    let mut example = yaml_docs(&text);
    example.extend(yaml_docs(
        &std::fs::read_to_string(dir.join("rbac.yaml")).unwrap(),
    ));
    let home = Home::new();
    let made = ok(&run(plugin(None, &home)
        .arg("create")
        .args(command.split_whitespace())));
    let key = |v: &Value| format!("{}/{}", v["kind"], v["metadata"]["name"]);
    let mut made = yaml_docs(&made);
    made.sort_by_key(key);
    example.sort_by_key(key);
    assert_eq!(
        made, example,
        "regenerate example/k8s_buildkitd with: kubectl buildkit create {command}"
    );
    assert!(command.contains("--dry-run=client -o yaml"));
}

#[test]
fn the_readme_sets_up_with_create_and_keeps_the_yaml_path() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Set up the buildkitd pods"))
        .expect("a setup section");
    let first_code = section.split("```sh\n").nth(1).expect("a command block");
    assert!(
        first_code.starts_with("kubectl buildkit create"),
        "{first_code}"
    );
    assert!(section.contains("kubectl apply --server-side -f example/k8s_buildkitd/"));
}

#[test]
fn create_namespace_makes_it_and_a_refused_builder_takes_it_away_again() {
    let sim = cluster(vec![
        UserConfig::admin(),
        UserConfig::new(
            "nosts",
            vec![Rule::new(
                &["*"],
                &["namespaces", "services", "roles", "pods"],
            )],
        ),
    ]);
    let home = Home::new();
    let out = create(
        &sim,
        &home,
        &["-n", "fresh", "--create-namespace", "--timeout", "30s"],
    );
    assert!(
        ok(&out).starts_with("namespace/fresh created\n"),
        "{}",
        stdout(&out)
    );
    let namespaces = |sim: &Sim| -> Vec<String> {
        items(&kubectl(sim, &home, &["namespaces"]))
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(namespaces(&sim).contains(&"fresh".to_string()));
    let sts = kubectl_in(&sim, &home, "fresh", &["statefulset", "buildkitd"]);
    assert_eq!(sts["status"]["readyReplicas"], 1);
    // Again: the namespace exists, nothing to say about it.
    let out = create(&sim, &home, &["-n", "fresh", "--create-namespace"]);
    assert!(!ok(&out).contains("namespace/"), "{}", stdout(&out));
    // A builder the user may not make: the namespace made for it goes again.
    let out = create(
        &sim,
        &home,
        &["--context", "nosts", "-n", "other", "--create-namespace"],
    );
    fails_with(&out, 1, &["statefulsets.apps", "namespace other", "403"]);
    assert!(
        !namespaces(&sim).contains(&"other".to_string()),
        "{:?}",
        namespaces(&sim)
    );
    // --dry-run=client shows the Namespace first.
    let yaml = ok(&run(plugin(None, &home).args([
        "create",
        "-n",
        "x",
        "--create-namespace",
        "--dry-run=client",
        "-o",
        "yaml",
    ])));
    let docs = yaml_docs(&yaml);
    assert_eq!(
        (
            docs[0]["kind"].as_str(),
            docs[0]["metadata"]["name"].as_str()
        ),
        (Some("Namespace"), Some("x"))
    );
}
