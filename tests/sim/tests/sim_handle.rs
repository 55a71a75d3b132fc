//! The `Sim` handle and the `kube-sim` binary: kubeconfig contents, live pod changes,
//! the request log, direct-TCP buildkitd ports, and the binary's start/stop contract.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use kube_sim::harness::OutputBounded;
use std::time::Duration;

use common::{cluster, run, text, MIB, NS};
use kube_sim::buildkitd::client;
use kube_sim::{PodConfig, Sim, SimConfig};

#[test]
fn sim_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Sim>();
}

#[test]
fn kubeconfig_has_a_context_per_user() {
    let sim = Sim::start(cluster()).unwrap();
    let kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(sim.kubeconfig()).unwrap()).unwrap();
    assert_eq!(kc["current-context"], "admin");
    assert_eq!(kc["clusters"][0]["name"], "sim");
    assert_eq!(
        kc["clusters"][0]["cluster"]["server"].as_str().unwrap(),
        sim.url()
    );
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let contexts = kc["contexts"].as_sequence().unwrap();
    assert_eq!(contexts.len(), 2);
    assert_eq!(contexts[1]["name"], "noexec");
    assert_eq!(contexts[1]["context"]["namespace"], NS);
    let token = sim.token("noexec").unwrap();
    assert!(token.len() >= 16);
    assert_eq!(kc["users"][1]["user"]["token"].as_str().unwrap(), token);
    assert_ne!(sim.token("admin"), sim.token("noexec"));
    assert_eq!(sim.token("nobody"), None);

    let dir = sim.kubeconfig().parent().unwrap().to_path_buf();
    sim.shutdown();
    assert!(
        !dir.exists(),
        "the kubeconfig directory is removed on shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_change_while_running_and_counters_survive() {
    let sim = Sim::start(cluster()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    // Direct TCP to a pod's buildkitd.
    let addr = sim.buildkitd_addr(NS, "buildkitd-0").unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(client::hello(&mut s).await.unwrap().pod, "buildkitd-0");
    assert_eq!(client::echo(s, MIB).await.unwrap(), MIB);
    let before = sim.stats(NS, "buildkitd-0");
    assert!(
        before.connections == 1 && before.bytes_in >= MIB,
        "{before:?}"
    );

    sim.update_pod(NS, "buildkitd-0", |p| {
        p.ready = false;
        p.terminating = true;
    });
    assert_eq!(sim.stats(NS, "buildkitd-0"), before);
    let out = run(&sim, h, &["get", "pod", "buildkitd-0", "-o", "json"]).await;
    let pod: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
    let ready = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False");
    let out = run(&sim, h, &["get", "pods", "-l", "tier=hot"]).await;
    assert!(
        text(&out.stdout).contains("Terminating"),
        "{}",
        text(&out.stdout)
    );

    sim.upsert_pod(PodConfig::new(NS, "buildkitd-9"));
    sim.remove_pod(NS, "buildkitd-1");
    let out = run(
        &sim,
        h,
        &["get", "pods", "-o", "name", "-l", "app=buildkitd"],
    )
    .await;
    let names = text(&out.stdout);
    assert!(
        names.contains("pod/buildkitd-9") && !names.contains("pod/buildkitd-1"),
        "{names}"
    );
    assert!(sim.buildkitd_addr(NS, "buildkitd-1").is_none());
    let out = run(&sim, h, &["exec", "buildkitd-9", "--", "hostname"]).await;
    assert_eq!(text(&out.stdout), "buildkitd-9\n");

    let log = sim.requests();
    let exec = log
        .iter()
        .find(|r| r.path == format!("/api/v1/namespaces/{NS}/pods/buildkitd-9/exec"))
        .unwrap();
    assert_eq!(exec.method, "GET");
    assert_eq!(exec.status, 101);
    assert!(exec.query.as_deref().unwrap().contains("command=hostname"));
    let list = log
        .iter()
        .find(|r| {
            r.query
                .as_deref()
                .is_some_and(|q| q.contains("labelSelector=tier%3Dhot"))
        })
        .unwrap();
    assert_eq!((list.user.as_deref(), list.status), (Some("admin"), 200));
}

#[test]
fn binary_serves_until_sigterm() {
    let _kubectl = kube_sim::require_kubectl!();
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig {
        pods: vec![PodConfig::new("buildkit", "buildkitd-0")],
        ..SimConfig::default()
    };
    let cfg_path = dir.path().join("sim.yaml");
    std::fs::write(&cfg_path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let kc_path = dir.path().join("out.kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .arg("--config")
        .arg(&cfg_path)
        .arg("--kubeconfig-out")
        .arg(&kc_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    assert_eq!(first, format!("kubeconfig: {}", kc_path.display()));
    assert!(second.starts_with("server: https://127.0.0.1:"), "{second}");
    assert!(kc_path.exists());

    let home = tempfile::tempdir().unwrap();
    let out = Command::new(kube_sim::harness::kubectl_on_path())
        .args(["get", "pods", "-A", "-o", "name"])
        .env("HOME", home.path())
        .env("KUBECONFIG", &kc_path)
        .output_bounded();
    assert_eq!(
        text(&out.stdout),
        "pod/buildkitd-0\n",
        "{}",
        text(&out.stderr)
    );

    // SIGTERM: it exits cleanly and removes the kubeconfig it wrote.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kube-sim did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!kc_path.exists());
}
