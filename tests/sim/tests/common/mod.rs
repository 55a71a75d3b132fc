//! Helpers shared by the sim's conformance tests: a cluster with known pods and users,
//! and the real kubectl pointed at it with a private HOME (its discovery cache).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use kube_sim::{PodConfig, Rule, Sim, SimConfig, UserConfig};

pub const KUBECTL: &str = "/usr/bin/kubectl";
pub const NS: &str = "ns1";
pub const MIB: u64 = 1024 * 1024;

/// Pods in ns1 with varied labels, a multi-container pod, and users admin / noexec.
pub fn cluster() -> SimConfig {
    let pod = |name: &str, labels: &[(&str, &str)]| PodConfig::new(NS, name).with_labels(labels);
    let mut web = pod("web-0", &[("app", "web")]);
    web.containers = vec!["nginx".into(), "sidecar".into()];
    let mut pending = pod(
        "buildkitd-pending",
        &[("app", "buildkitd"), ("tier", "cold")],
    );
    pending.phase = "Pending".into();
    pending.ready = false;
    SimConfig {
        namespaces: vec!["default".into(), NS.into()],
        pods: vec![
            pod("buildkitd-0", &[("app", "buildkitd"), ("tier", "hot")]),
            pod("buildkitd-1", &[("app", "buildkitd"), ("tier", "warm")]),
            pod(
                "buildkitd-2",
                &[("app", "buildkitd"), ("tier", "cold"), ("canary", "")],
            ),
            pending,
            web,
            pod("plain", &[]),
            PodConfig::new("other", "buildkitd-x"),
        ],
        users: vec![
            UserConfig::admin(),
            UserConfig::new(
                "noexec",
                vec![
                    Rule::new(&["get", "list", "watch"], &["pods", "namespaces"]),
                    Rule::new(&["create"], &["pods/portforward"]),
                ],
            ),
        ],
        context_namespace: Some(NS.into()),
        ..SimConfig::default()
    }
}

/// The real kubectl with a clean environment: its own HOME and the sim's kubeconfig.
pub fn kubectl(sim: &Sim, home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(KUBECTL);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("KUBECONFIG", sim.kubeconfig())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Run kubectl to completion (bounded), returning its output.
pub async fn run(sim: &Sim, home: &Path, args: &[&str]) -> Output {
    let child = kubectl(sim, home)
        .args(args)
        .spawn()
        .expect("spawn kubectl");
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
        .expect("kubectl output")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
