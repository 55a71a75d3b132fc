//! The real kubectl (v1.32) applies example/k8s_buildkitd with server-side apply against
//! the simulated cluster, and reads back the StatefulSet, its pods and claims: discovery
//! for apps/v1 and rbac.authorization.k8s.io/v1, the OpenAPI v3 documents kubectl asks
//! for, field validation, no-op applies, RBAC 403s and the StatefulSet controller.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{run, text};
use kube_sim::{Rule, Sim, SimConfig, UserConfig};
use serde_json::Value;

fn example(file: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../example/k8s_buildkitd")
        .join(file)
        .display()
        .to_string()
}

fn cluster() -> Sim {
    Sim::start(SimConfig {
        namespaces: vec!["default".into()],
        users: vec![
            UserConfig::admin(),
            UserConfig::new("reader", vec![Rule::new(&["get", "list"], &["*"])]),
        ],
        ..SimConfig::default()
    })
    .unwrap()
}

async fn get_json(sim: &Sim, home: &std::path::Path, what: &str) -> Value {
    let out = run(sim, home, &["-n", "buildkit", "get", what, "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn wait_for(
    sim: &Sim,
    home: &std::path::Path,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let v = get_json(sim, home, what).await;
        if done(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what} never got there: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_the_example_and_sees_the_statefulset_and_its_pods() {
    let sim = cluster();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let (ns, sts, rbac) = (
        example("namespace.yaml"),
        example("buildkitd.yaml"),
        example("rbac.yaml"),
    );
    let apply = ["apply", "--server-side", "-f", &ns, "-f", &sts, "-f", &rbac];
    let out = run(&sim, home, &apply).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    for obj in [
        "namespace/buildkit",
        "service/buildkitd",
        "statefulset.apps/buildkitd",
        "role.rbac.authorization.k8s.io/kubectl-buildkit-buildkitd",
        "rolebinding.rbac.authorization.k8s.io/kubectl-buildkit-buildkitd",
    ] {
        assert!(
            said.contains(&format!("{obj} serverside-applied")),
            "{said}"
        );
    }
    // The controller makes buildkitd-0..2, Ready within its delay.
    wait_for(&sim, home, "statefulset/buildkitd", |v| {
        v["status"]["readyReplicas"] == 3
    })
    .await;
    let out = run(&sim, home, &["-n", "buildkit", "get", "statefulset,pods"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("statefulset.apps/buildkitd") && l.contains("3/3")),
        "{table}"
    );
    for i in 0..3 {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("pod/buildkitd-{i} "))
                    && l.contains("1/1")
                    && l.contains("Running")),
            "{table}"
        );
    }
    let claims = get_json(&sim, home, "pvc").await;
    let names: Vec<&str> = claims["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "cache-buildkitd-0",
            "cache-buildkitd-1",
            "cache-buildkitd-2"
        ]
    );

    // Applying the same files again changes nothing.
    let rv = |v: &Value| v["metadata"]["resourceVersion"].clone();
    let before = rv(&get_json(&sim, home, "statefulset/buildkitd").await);
    let out = run(&sim, home, &apply).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        rv(&get_json(&sim, home, "statefulset/buildkitd").await),
        before
    );

    // Strict field validation: a misspelt field is refused, as the apiserver does.
    let typo = home.join("typo.yaml");
    std::fs::write(
        &typo,
        std::fs::read_to_string(&sts)
            .unwrap()
            .replace("podManagementPolicy:", "podManagementPolicyy:"),
    )
    .unwrap();
    let out = run(
        &sim,
        home,
        &["apply", "--server-side", "-f", typo.to_str().unwrap()],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(".spec.podManagementPolicyy: field not declared in schema"),
        "{}",
        text(&out.stderr)
    );

    // A user who may only read: kubectl shows the apiserver's 403.
    let out = run(
        &sim,
        home,
        &["--context", "reader", "apply", "--server-side", "-f", &sts],
    )
    .await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("User \"reader\" cannot patch resource \"services\" in API group \"\" in the namespace \"buildkit\"")
            && err.contains("User \"reader\" cannot patch resource \"statefulsets\" in API group \"apps\" in the namespace \"buildkit\""),
        "{err}"
    );

    // Deleting the StatefulSet takes its pods; the claims stay (Retain).
    let out = run(
        &sim,
        home,
        &[
            "-n",
            "buildkit",
            "delete",
            "statefulset",
            "buildkitd",
            "--wait=false",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for(&sim, home, "pods", |v| {
        v["items"].as_array().is_some_and(|i| i.is_empty())
    })
    .await;
    assert_eq!(
        get_json(&sim, home, "pvc").await["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}
