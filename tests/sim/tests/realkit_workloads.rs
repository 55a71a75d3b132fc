//! The StatefulSet controller's hook for a real BuildKit: with `controller.pod_base`
//! backed by the fixture's dockerd, the pods the real kubectl's apply of
//! example/k8s_buildkitd makes reach that real BuildKit through `kubectl exec
//! buildctl dial-stdio`, which answers an HTTP/2 preface with its own SETTINGS frame.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kube_sim::realkit::RealBuildkit;
use kube_sim::{ControllerConfig, PodConfig, Sim, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::timeout;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

fn kubectl(sim: &Sim, home: &std::path::Path) -> Command {
    let mut cmd = Command::new("/usr/bin/kubectl");
    cmd.env_clear()
        .env("HOME", home)
        .env("KUBECONFIG", sim.kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_backed_by_real_buildkit_answer_dial_stdio() {
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let sim = Sim::start(SimConfig {
        namespaces: vec!["default".into(), "buildkit".into()],
        controller: ControllerConfig {
            pod_base: PodConfig::default().backed_by(&kit.daemons()[0]),
            ..ControllerConfig::default()
        },
        ..SimConfig::default()
    })
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../example/k8s_buildkitd");
    let sts = dir.join("buildkitd.yaml").display().to_string();
    let out = kubectl(&sim, home.path())
        .args(["apply", "--server-side", "-f", &sts])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    while !sim_ready(&sim, "buildkitd-1").await {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "buildkitd-1 never Ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut child = kubectl(&sim, home.path())
        .args([
            "exec",
            "-i",
            "-n",
            "buildkit",
            "buildkitd-1",
            "--",
            "buildctl",
            "dial-stdio",
        ])
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(H2_PREFACE).await.unwrap();
    stdin.flush().await.unwrap();
    let mut head = [0u8; 9];
    timeout(Duration::from_secs(30), stdout.read_exact(&mut head))
        .await
        .expect("BuildKit's first frame within 30 s")
        .unwrap();
    assert_eq!(
        (head[3], head[4] & 1),
        (4, 0),
        "BuildKit's own SETTINGS: {head:?}"
    );
    drop(stdin);
    let _ = timeout(Duration::from_secs(30), child.wait()).await;
    assert_eq!(sim.stats("buildkit", "buildkitd-1").connections, 1);
    assert_eq!(sim.stats("buildkit", "buildkitd-0").connections, 0);
}

async fn sim_ready(sim: &Sim, pod: &str) -> bool {
    let home = tempfile::tempdir().unwrap();
    let out = kubectl(sim, home.path())
        .args([
            "get",
            "pod",
            "-n",
            "buildkit",
            pod,
            "-o",
            "jsonpath={.status.containerStatuses[0].ready}",
        ])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout) == "true"
}
