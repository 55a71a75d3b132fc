//! The real kubectl (v1.32) against the simulated cluster: discovery, label selectors,
//! exec over WebSocket v5 (bytes, exit codes), RBAC 403 and 401. If kubectl and the sim
//! disagree, the sim is wrong.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use common::{cluster, kubectl, run, text, MIB, NS};
use kube_sim::buildkitd::client;
use kube_sim::Sim;
use tokio::io::AsyncReadExt;

fn names(out: &[u8]) -> BTreeSet<String> {
    text(out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.trim_start_matches("pod/").to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_selectors_select_what_the_apiserver_would() {
    let _kubectl = kube_sim::require_kubectl!();
    let sim = Sim::start(cluster()).unwrap();
    let home = tempfile::tempdir().unwrap();
    // Warm kubectl's discovery cache once, then ask concurrently.
    let all = run(&sim, home.path(), &["get", "pods", "-o", "name"]).await;
    assert!(all.status.success(), "{}", text(&all.stderr));
    assert_eq!(
        names(&all.stdout),
        set(&[
            "buildkitd-0",
            "buildkitd-1",
            "buildkitd-2",
            "buildkitd-pending",
            "web-0",
            "plain"
        ])
    );
    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        (
            "app=buildkitd",
            set(&[
                "buildkitd-0",
                "buildkitd-1",
                "buildkitd-2",
                "buildkitd-pending",
            ]),
        ),
        ("app==web", set(&["web-0"])),
        ("app!=buildkitd", set(&["web-0", "plain"])),
        ("tier in (hot,warm)", set(&["buildkitd-0", "buildkitd-1"])),
        (
            "tier notin (hot, warm)",
            set(&["buildkitd-2", "buildkitd-pending", "web-0", "plain"]),
        ),
        ("canary", set(&["buildkitd-2"])),
        ("!tier", set(&["web-0", "plain"])),
        (
            "app=buildkitd,tier!=cold",
            set(&["buildkitd-0", "buildkitd-1"]),
        ),
        (
            " app in ( buildkitd ) , !canary , tier ",
            set(&["buildkitd-0", "buildkitd-1", "buildkitd-pending"]),
        ),
        ("app=nothing", set(&[])),
    ];
    let argvs: Vec<Vec<&str>> = cases
        .iter()
        .map(|(sel, _)| vec!["get", "pods", "-o", "name", "-l", sel])
        .collect();
    let runs = argvs.iter().map(|argv| run(&sim, home.path(), argv));
    let outs = futures::future::join_all(runs).await;
    for ((sel, want), out) in cases.iter().zip(outs) {
        assert!(out.status.success(), "-l {sel:?}: {}", text(&out.stderr));
        assert_eq!(&names(&out.stdout), want, "-l {sel:?}");
    }

    // All namespaces, and an unknown namespace (200 with an empty list, like the apiserver).
    let out = run(
        &sim,
        home.path(),
        &["get", "pods", "-A", "-o", "name", "-l", "app=buildkitd"],
    )
    .await;
    assert!(
        names(&out.stdout).contains("buildkitd-x"),
        "{}",
        text(&out.stdout)
    );
    let out = run(
        &sim,
        home.path(),
        &["get", "pods", "-n", "nowhere", "-o", "name"],
    )
    .await;
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out.stderr)
    );

    for bad in ["app in (", "app = (x)", "tier in ()"] {
        let out = run(&sim, home.path(), &["get", "pods", "-o", "name", "-l", bad]).await;
        assert!(!out.status.success(), "-l {bad:?} should fail");
        let err = text(&out.stderr);
        assert!(
            err.contains("BadRequest") && err.contains("unable to parse requirement"),
            "-l {bad:?}: {err}"
        );
    }
    let bad = sim
        .requests()
        .into_iter()
        .filter(|r| r.status == 400 && r.path == format!("/api/v1/namespaces/{NS}/pods"))
        .count();
    assert!(
        bad >= 3,
        "the server answered the invalid selectors: {:?}",
        sim.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pod_and_namespace_shapes() {
    let _kubectl = kube_sim::require_kubectl!();
    let sim = Sim::start(cluster()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = run(
        &sim,
        home.path(),
        &["get", "pod", "buildkitd-1", "-o", "json"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pod: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pod["metadata"]["namespace"], NS);
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["spec"]["containers"][0]["name"], "buildkitd");
    let out = run(&sim, home.path(), &["get", "pod", "nope"]).await;
    assert!(
        text(&out.stderr).contains("pods \"nope\" not found"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&sim, home.path(), &["get", "ns", "-o", "name"]).await;
    assert_eq!(
        names(&out.stdout),
        set(&["namespace/default", "namespace/ns1", "namespace/other"])
    );
    let out = run(&sim, home.path(), &["get", "ns", "nowhere"]).await;
    assert!(
        text(&out.stderr).contains("namespaces \"nowhere\" not found"),
        "{}",
        text(&out.stderr)
    );
    // Human output goes through the server-side Table.
    let out = run(&sim, home.path(), &["get", "pods", "-l", "tier=hot"]).await;
    let table = text(&out.stdout);
    assert!(
        table.starts_with("NAME") && table.contains("buildkitd-0   1/1     Running"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_dial_stdio_moves_64_mib_both_ways() {
    let _kubectl = kube_sim::require_kubectl!();
    let sim = Sim::start(cluster()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut child = kubectl(&sim, home.path())
        .args(["exec", "-i", "buildkitd-1", "--", "buildctl", "dial-stdio"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let moved = tokio::time::timeout(Duration::from_secs(60), async {
        let id = client::hello(&mut stdout).await?;
        assert_eq!(
            (id.pod.as_str(), id.namespace.as_str()),
            ("buildkitd-1", NS)
        );
        client::echo(tokio::io::join(stdout, stdin), 64 * MIB).await
    })
    .await
    .expect("64 MiB through kubectl exec timed out");
    let mut err = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stderr.read_to_string(&mut err)).await;
    assert_eq!(
        moved.unwrap_or_else(|e| panic!("{e}; kubectl stderr: {err}")),
        64 * MIB
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "kubectl exec: {status}; stderr: {err}");

    let s = sim.stats(NS, "buildkitd-1");
    assert_eq!(s.connections, 1);
    assert!(s.bytes_in >= 64 * MIB && s.bytes_out >= 64 * MIB, "{s:?}");
    assert_eq!(sim.stats(NS, "buildkitd-0").connections, 0);
    let exec = sim
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/buildkitd-1/exec"))
        .unwrap();
    assert_eq!((exec.status, exec.user.as_deref()), (101, Some("admin")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exit_codes_and_errors() {
    let _kubectl = kube_sim::require_kubectl!();
    let sim = Sim::start(cluster()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let warm = run(&sim, h, &["exec", "buildkitd-0", "--", "true"]).await;
    assert_eq!(warm.status.code(), Some(0), "{}", text(&warm.stderr));
    let (fals, three, missing, workers, multi, bogus, pending) = tokio::join!(
        run(&sim, h, &["exec", "buildkitd-0", "--", "false"]),
        run(
            &sim,
            h,
            &["exec", "buildkitd-0", "--", "sh", "-c", "exit 3"]
        ),
        run(&sim, h, &["exec", "buildkitd-0", "--", "no-such-tool", "x"]),
        run(
            &sim,
            h,
            &["exec", "buildkitd-2", "--", "buildctl", "debug", "workers"]
        ),
        run(
            &sim,
            h,
            &["exec", "web-0", "-c", "sidecar", "--", "sh", "-c", "exit 0"]
        ),
        run(&sim, h, &["exec", "web-0", "-c", "bogus", "--", "true"]),
        run(&sim, h, &["exec", "buildkitd-pending", "--", "true"]),
    );
    assert_eq!(fals.status.code(), Some(1), "{}", text(&fals.stderr));
    assert_eq!(three.status.code(), Some(3), "{}", text(&three.stderr));
    assert!(text(&three.stderr).contains("command terminated with exit code 3"));
    assert_eq!(missing.status.code(), Some(127));
    assert!(
        text(&missing.stderr)
            .contains("exec: \"no-such-tool\": executable file not found in $PATH"),
        "{}",
        text(&missing.stderr)
    );
    assert_eq!(workers.status.code(), Some(0));
    let w = text(&workers.stdout);
    assert!(w.starts_with("ID") && w.contains("linux/amd64"), "{w}");
    assert_eq!(multi.status.code(), Some(0), "{}", text(&multi.stderr));
    assert!(
        text(&bogus.stderr).contains("container bogus is not valid for pod web-0"),
        "{}",
        text(&bogus.stderr)
    );
    assert_ne!(pending.status.code(), Some(0));

    // buildctl missing from the image.
    sim.update_pod(NS, "buildkitd-0", |p| p.faults.buildctl_missing = true);
    let out = run(
        &sim,
        h,
        &["exec", "buildkitd-0", "--", "buildctl", "dial-stdio"],
    )
    .await;
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("exec: \"buildctl\": executable file not found in $PATH"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_and_authentication_errors() {
    let _kubectl = kube_sim::require_kubectl!();
    let sim = Sim::start(cluster()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let out = run(
        &sim,
        h,
        &["--context", "noexec", "exec", "buildkitd-0", "--", "true"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"pods "buildkitd-0" is forbidden: User "noexec" cannot create resource "pods/exec" in API group "" in the namespace "ns1""#),
        "{err}"
    );
    // The same user may still list.
    let out = run(
        &sim,
        h,
        &["--context", "noexec", "get", "pods", "-o", "name"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A per-pod exec fault looks like RBAC's answer for the admin too.
    sim.update_pod(NS, "buildkitd-2", |p| p.faults.exec_forbidden = true);
    let out = run(&sim, h, &["exec", "buildkitd-2", "--", "true"]).await;
    assert!(
        text(&out.stderr).contains(r#"User "admin" cannot create resource "pods/exec""#),
        "{}",
        text(&out.stderr)
    );

    // A vanished pod: still listed, but 404 when kubectl fetches it before exec.
    sim.update_pod(NS, "buildkitd-1", |p| p.faults.vanished = true);
    let out = run(&sim, h, &["exec", "buildkitd-1", "--", "true"]).await;
    assert!(
        text(&out.stderr).contains(r#"pods "buildkitd-1" not found"#),
        "{}",
        text(&out.stderr)
    );

    let out = run(&sim, h, &["--token", "not-a-token", "get", "pods"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Unauthorized"),
        "{}",
        text(&out.stderr)
    );
    assert!(sim
        .requests()
        .iter()
        .any(|r| r.status == 401 && r.user.is_none()));
    assert!(sim.requests().iter().any(|r| r.status == 403
        && r.user.as_deref() == Some("noexec")
        && r.path.ends_with("/exec")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_reports_server_minor_32() {
    let _kubectl = kube_sim::require_kubectl!();
    let sim = Sim::start(cluster()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = run(&sim, home.path(), &["version", "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(v["serverVersion"]["major"], "1", "{v}");
    assert_eq!(v["serverVersion"]["minor"], "32", "{v}");
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.32.0", "{v}");
    assert!(v["clientVersion"]["minor"].is_string(), "{v}");
    assert!(sim
        .requests()
        .iter()
        .any(|r| r.path == "/version" && r.status == 200));
}
