//! Acceptance: simulated pods backed by a REAL BuildKit. The real kubectl's
//! `exec -i POD -- buildctl dial-stdio` and `port-forward POD :1234` reach the fixture
//! dockerd's BuildKit, which answers an HTTP/2 preface with its own SETTINGS frame; the
//! pod's counters say which pod served and how many bytes crossed. The `kube-sim`
//! binary does the same from YAML (`real_buildkit_daemon: N`), starting the fixture
//! itself and removing it when stopped.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use kube_sim::realkit::RealBuildkit;
use kube_sim::{PodConfig, Sim, SimConfig};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

const NS: &str = "builders";
/// The client connection preface plus an empty SETTINGS frame (33 bytes).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

fn kubectl(kubeconfig: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(kube_sim::harness::kubectl_on_path());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Send the HTTP/2 preface and read the first frame's header: it must be the server's
/// own SETTINGS (type 4, no ACK, stream 0). Returns the header.
async fn expect_settings<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut R,
    w: &mut W,
) -> [u8; 9] {
    w.write_all(H2_PREFACE).await.unwrap();
    w.flush().await.unwrap();
    let mut head = [0u8; 9];
    timeout(Duration::from_secs(30), r.read_exact(&mut head))
        .await
        .expect("BuildKit's first frame within 30 s")
        .expect("read BuildKit's first frame");
    assert_eq!(head[3], 4, "BuildKit's first frame is SETTINGS: {head:?}");
    assert_eq!(head[4] & 1, 0, "its own SETTINGS, not an ACK: {head:?}");
    assert_eq!(&head[5..9], &[0, 0, 0, 0], "on stream 0: {head:?}");
    head
}

fn cluster(kit: &RealBuildkit) -> SimConfig {
    let d = kit.daemons();
    SimConfig {
        namespaces: vec!["default".into(), NS.into()],
        pods: vec![
            PodConfig::new(NS, "real-0").backed_by(&d[0]),
            PodConfig::new(NS, "real-1").backed_by(&d[1]),
            PodConfig::new(NS, "simkit-0"),
        ],
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_dial_stdio_reaches_real_buildkit() {
    let _kubectl = kube_sim::require_kubectl!();
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let sim = Sim::start(cluster(kit)).unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut child = kubectl(sim.kubeconfig(), home.path())
        .args([
            "exec",
            "-i",
            "-n",
            NS,
            "real-1",
            "--",
            "buildctl",
            "dial-stdio",
        ])
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let head = expect_settings(&mut stdout, &mut stdin).await;
    let settings_len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as u64;
    drop(stdin); // EOF: the bridge half-closes, BuildKit hangs up, dial-stdio ends.
    let mut rest = Vec::new();
    let _ = timeout(Duration::from_secs(30), stdout.read_to_end(&mut rest)).await;
    let out = timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("kubectl exec ends after stdin EOF")
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl exec: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let used = sim.stats(NS, "real-1");
    assert_eq!(used.connections, 1, "{used:?}");
    assert_eq!(used.bytes_in, H2_PREFACE.len() as u64, "{used:?}");
    assert!(
        rest.len() as u64 >= settings_len,
        "the SETTINGS payload arrived"
    );
    // Every byte BuildKit sent (SETTINGS, its ACK of ours, ...) was counted on this pod.
    assert_eq!(used.bytes_out, 9 + rest.len() as u64, "{used:?}");
    assert_eq!(sim.stats(NS, "real-0").connections, 0);
    assert_eq!(sim.stats(NS, "simkit-0").connections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_1234_reaches_real_buildkit() {
    let _kubectl = kube_sim::require_kubectl!();
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let sim = Sim::start(cluster(kit)).unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut child = kubectl(sim.kubeconfig(), home.path())
        .args(["port-forward", "-n", NS, "pod/real-0", ":1234"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                return rest.split(' ').next().unwrap().parse().unwrap();
            }
        }
        panic!("kubectl port-forward ended without forwarding");
    })
    .await
    .expect("kubectl port-forward starts");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut r, mut w) = tcp.into_split();
    expect_settings(&mut r, &mut w).await;
    // BuildKit sends its SETTINGS without waiting for our preface, so the preface
    // may still be on its way through kubectl when SETTINGS is here: wait for it
    // (bounded) to be counted.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut used = sim.stats(NS, "real-0");
    while used.bytes_in < H2_PREFACE.len() as u64 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        used = sim.stats(NS, "real-0");
    }
    assert_eq!(used.connections, 1, "{used:?}");
    assert_eq!(used.bytes_in, H2_PREFACE.len() as u64, "{used:?}");
    assert!(used.bytes_out >= 9, "{used:?}");
    assert_eq!(sim.stats(NS, "real-1").connections, 0);
    child.kill().await.unwrap();
}

/// `kube-sim --config real-builders.yaml` (`real_buildkit_daemon: N`) starts its own
/// fixture, serves the pods from it, and leaves nothing behind when stopped (SIGTERM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_sim_binary_starts_real_builders_from_yaml() {
    // Availability is the same as the shared fixture's (root, dockerd...).
    if RealBuildkit::shared().is_none() {
        return;
    }
    // The file README.md shows.
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("real-builders.yaml");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    let (mut kubeconfig, mut docker_host, mut fixture) = (None, None, None);
    timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(v) = line.strip_prefix("kubeconfig: ") {
                kubeconfig = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("real buildkit daemon 1: DOCKER_HOST=") {
                docker_host = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("realkit dir: ") {
                fixture = Some(std::path::PathBuf::from(v));
            }
            if line.starts_with("registry: ") {
                return;
            }
        }
        panic!("kube-sim ended before printing its registry");
    })
    .await
    .expect("kube-sim with real builders starts");
    let (kubeconfig, fixture) = (kubeconfig.unwrap(), fixture.unwrap());
    assert!(docker_host.unwrap().starts_with("unix:///"));
    let home = tempfile::tempdir().unwrap();
    let mut child = kubectl(Path::new(&kubeconfig), home.path())
        .args(["exec", "-i", "builder-1", "--", "buildctl", "dial-stdio"])
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    expect_settings(&mut stdout, &mut stdin).await;
    drop(stdin);
    child.kill().await.unwrap();

    // SIGTERM: the binary stops the cluster and its fixture.
    let pid = sim.id().unwrap() as i32;
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = timeout(Duration::from_secs(60), sim.wait())
        .await
        .expect("kube-sim stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "kube-sim: {status}");
    assert!(!fixture.exists(), "{} left behind", fixture.display());
}
