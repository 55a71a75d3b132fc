//! Acceptance: the real `kubectl port-forward` against the simulated cluster, over both
//! of kubectl's transports: SPDY tunnelled in a WebSocket (kubectl 1.30+'s default) and
//! the classic SPDY/3.1 POST upgrade (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`).

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube_sim::buildkitd::client;
use kube_sim::{PodConfig, Sim, SimConfig};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

const NS: &str = "ci";
const MIB: u64 = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    WebSocket,
    Spdy,
}

struct PortForward {
    child: Child,
    local_port: u16,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect<R: AsyncRead + Unpin + Send + 'static>(r: R) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut t = sink.lock().unwrap();
            t.push_str(&line);
            t.push('\n');
        }
    });
    text
}

impl PortForward {
    /// `kubectl port-forward pod/<pod> :<remote>`, waiting for its "Forwarding from" line.
    async fn start(sim: &Sim, home: &Path, pod: &str, remote: u16, transport: Transport) -> Self {
        let mut cmd = Command::new(kube_sim::harness::kubectl_on_path());
        cmd.args(["port-forward", "-n", NS, &format!("pod/{pod}")])
            .arg(format!(":{remote}"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("KUBECONFIG", sim.kubeconfig())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if transport == Transport::Spdy {
            cmd.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false");
        }
        let mut child = cmd.spawn().expect("kubectl runs");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let wanted = format!(" -> {remote}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = stdout.lock().unwrap().lines().find_map(|l| {
                l.strip_prefix("Forwarding from 127.0.0.1:")
                    .and_then(|rest| rest.strip_suffix(wanted.as_str()))
                    .and_then(|p| p.parse::<u16>().ok())
            });
            if let Some(local_port) = found {
                return PortForward {
                    child,
                    local_port,
                    stdout,
                    stderr,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "kubectl port-forward exited ({status}) before forwarding.\nstdout:\n{}\nstderr:\n{}",
                    stdout.lock().unwrap(),
                    stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "kubectl port-forward did not start.\nstdout:\n{}\nstderr:\n{}",
                stdout.lock().unwrap(),
                stderr.lock().unwrap()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.local_port))
            .await
            .expect("connect to kubectl's local port")
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }

    /// Kill kubectl and make sure it is gone.
    async fn kill(mut self) {
        let _ = self.child.start_kill();
        timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("kubectl exits when killed")
            .unwrap();
    }
}

fn sim() -> Sim {
    Sim::start(SimConfig {
        namespaces: vec!["default".into(), NS.into()],
        pods: vec![
            PodConfig::new(NS, "buildkitd-0"),
            PodConfig::new(NS, "buildkitd-1"),
        ],
        ..SimConfig::default()
    })
    .expect("the simulated cluster starts")
}

async fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Greet, echo `len` bytes byte-exact, QUIT; the pod then closes and so must kubectl's
/// local connection.
async fn session(pf: &PortForward, len: u64) {
    let mut conn = pf.connect().await;
    let id = client::hello(&mut conn).await.unwrap();
    assert_eq!(
        (id.pod.as_str(), id.namespace.as_str()),
        ("buildkitd-1", NS)
    );
    assert_eq!(client::echo(&mut conn, len).await.unwrap(), len);
    let mut rest = Vec::new();
    timeout(Duration::from_secs(20), conn.read_to_end(&mut rest))
        .await
        .expect("kubectl closes the local connection once the pod has")
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

/// Check that kubectl reached the port-forward endpoint the way `transport` says.
fn assert_transport(sim: &Sim, pod: &str, transport: Transport) {
    let path = format!("/api/v1/namespaces/{NS}/pods/{pod}/portforward");
    let hits: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .map(|r| (r.method, r.status))
        .collect();
    let expected = match transport {
        Transport::WebSocket => ("GET".to_string(), 101),
        Transport::Spdy => ("POST".to_string(), 101),
    };
    assert_eq!(hits, vec![expected], "port-forward requests");
}

async fn forwards_bytes(transport: Transport) {
    let sim = sim();
    let home = tempfile::tempdir().unwrap();
    let pf = PortForward::start(&sim, home.path(), "buildkitd-1", 1234, transport).await;
    let run = async {
        // 64 MiB each way on one connection while a second one works alongside.
        tokio::join!(session(&pf, 64 * MIB), async {
            session(&pf, 3 * MIB).await;
            session(&pf, 5 * MIB + 17).await;
        });
        // And a fresh one after those ended.
        session(&pf, 1000).await;
    };
    timeout(Duration::from_secs(240), run)
        .await
        .unwrap_or_else(|_| panic!("port-forward timed out\n{}", pf.output()));
    let stats = sim.stats(NS, "buildkitd-1");
    assert_eq!(stats.connections, 4, "{stats:?}");
    assert!(
        stats.bytes_in >= 72 * MIB && stats.bytes_out >= 72 * MIB,
        "{stats:?}"
    );
    assert_eq!(sim.stats(NS, "buildkitd-0").connections, 0);
    assert_transport(&sim, "buildkitd-1", transport);
    let output = pf.output();
    assert!(
        !output.contains("error") && !output.contains("Error"),
        "kubectl complained:\n{output}"
    );

    // One connection left open with the pod mid-conversation, then kubectl dies:
    // the pod side must be released and the simulator must still stop promptly.
    let mut held = pf.connect().await;
    client::hello(&mut held).await.unwrap();
    wait_until("the held connection reaches the pod", 10, || {
        sim.stats(NS, "buildkitd-1").active == 1
    })
    .await;
    pf.kill().await;
    wait_until("the pod connection is closed", 10, || {
        sim.stats(NS, "buildkitd-1").active == 0
    })
    .await;
    drop(held);
    let stopped = tokio::task::spawn_blocking(move || drop(sim));
    timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the simulator stops")
        .unwrap();
}

async fn reports_closed_port(transport: Transport) {
    let sim = sim();
    let home = tempfile::tempdir().unwrap();
    let mut pf = PortForward::start(&sim, home.path(), "buildkitd-1", 8080, transport).await;
    let mut conn = pf.connect().await;
    // The pod refuses: kubectl gets the kubelet's message on the error stream, prints
    // it, closes the local connection and (kubectl 1.32) gives up the port-forward.
    let mut got = Vec::new();
    timeout(Duration::from_secs(20), conn.read_to_end(&mut got))
        .await
        .unwrap_or_else(|_| panic!("local connection not closed\n{}", pf.output()))
        .ok();
    assert!(got.is_empty(), "{got:?}");
    let status = timeout(Duration::from_secs(20), pf.child.wait())
        .await
        .unwrap_or_else(|_| panic!("kubectl did not give up\n{}", pf.output()))
        .unwrap();
    assert!(!status.success(), "{}", pf.output());
    // Let the output readers catch up with the exit.
    wait_until("kubectl's error is read", 5, || {
        pf.stderr.lock().unwrap().contains("lost connection to pod")
    })
    .await;
    let err = pf.stderr.lock().unwrap().clone();
    assert!(
        err.contains("error forwarding port 8080") && err.contains("connection refused"),
        "{}",
        pf.output()
    );
    assert_transport(&sim, "buildkitd-1", transport);
    assert_eq!(sim.stats(NS, "buildkitd-1").connections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnel_forwards_bytes() {
    let _kubectl = kube_sim::require_kubectl!();
    forwards_bytes(Transport::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_upgrade_forwards_bytes() {
    let _kubectl = kube_sim::require_kubectl!();
    forwards_bytes(Transport::Spdy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnel_reports_a_closed_port() {
    let _kubectl = kube_sim::require_kubectl!();
    reports_closed_port(Transport::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_upgrade_reports_a_closed_port() {
    let _kubectl = kube_sim::require_kubectl!();
    reports_closed_port(Transport::Spdy).await;
}
