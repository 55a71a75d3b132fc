//! The library's tunnel service from a client's side, against the simulated cluster:
//! `tunnel::dial` gives one `Connection` (a tokio byte stream) to one named pod, exec
//! and port-forward alike; a failure is a typed `TunnelError` naming the pod; the
//! failover walk passes over pods whose dial or probe fails and says why.

use std::time::Duration;

use kube_sim::{PodConfig, Sim, SimConfig};
use kubectl_buildkit::cluster::{Cluster, ClusterOptions};
use kubectl_buildkit::tunnel::{
    self, AttemptFailure, Connection, Failover, Transport, TunnelError,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const NS: &str = "buildkit";
/// The longest any step here may take.
const DEADLINE: Duration = Duration::from_secs(20);

fn sim(pods: Vec<PodConfig>) -> Sim {
    Sim::start(SimConfig {
        pods,
        context_namespace: Some(NS.into()),
        ..SimConfig::default()
    })
    .expect("simulated cluster starts")
}

async fn cluster(sim: &Sim) -> Cluster {
    Cluster::connect(&ClusterOptions {
        kubeconfig: Some(sim.kubeconfig().to_path_buf()),
        ..ClusterOptions::default()
    })
    .await
    .expect("client for the sim")
}

/// The simkit greeting, then an ECHO round trip of `payload` through the stream.
async fn echo(conn: Connection, payload: &[u8]) -> std::io::Result<(String, Vec<u8>)> {
    let mut conn = BufReader::new(conn);
    let mut greeting = String::new();
    conn.read_line(&mut greeting).await?;
    conn.get_mut()
        .write_all(format!("ECHO {}\n", payload.len()).as_bytes())
        .await?;
    conn.get_mut().write_all(payload).await?;
    conn.get_mut().flush().await?;
    let mut back = vec![0u8; payload.len()];
    conn.read_exact(&mut back).await?;
    conn.get_mut().write_all(b"QUIT\n").await?;
    conn.get_mut().flush().await?;
    conn.get_mut().shutdown().await?;
    Ok((greeting.trim().to_string(), back))
}

#[tokio::test]
async fn a_connection_carries_bytes_both_ways_over_exec_and_port_forward() {
    let sim = sim(vec![PodConfig::new(NS, "buildkitd-0")]);
    let cluster = cluster(&sim).await;
    // More than one WebSocket message's worth (256 KiB) each way.
    let payload: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    for transport in [Transport::exec(None), Transport::port_forward(1234)] {
        let conn =
            tokio::time::timeout(DEADLINE, tunnel::dial(&cluster, "buildkitd-0", &transport))
                .await
                .expect("dial within the deadline")
                .unwrap_or_else(|e| panic!("{}: {e}", transport.describe()));
        assert_eq!(conn.pod(), "buildkitd-0");
        let (greeting, back) = tokio::time::timeout(DEADLINE, echo(conn, &payload))
            .await
            .expect("echo within the deadline")
            .unwrap_or_else(|e| panic!("{}: {e}", transport.describe()));
        assert_eq!(
            greeting,
            format!("SIMKIT/1 pod=buildkitd-0 namespace={NS}"),
            "{}",
            transport.describe()
        );
        assert!(
            back == payload,
            "{}: the echo differs",
            transport.describe()
        );
    }
    let stats = sim.stats(NS, "buildkitd-0");
    assert!(
        stats.bytes_in >= 2 * payload.len() as u64,
        "the pod saw {} bytes",
        stats.bytes_in
    );
}

#[tokio::test]
async fn dialing_a_broken_pod_is_a_typed_error_naming_it() {
    let mut gone = PodConfig::new(NS, "buildkitd-0");
    gone.faults.vanished = true;
    let mut bare = PodConfig::new(NS, "buildkitd-1");
    bare.faults.buildctl_missing = true;
    let mut locked = PodConfig::new(NS, "buildkitd-2");
    locked.faults.exec_forbidden = true;
    let sim = sim(vec![gone, bare, locked]);
    let cluster = cluster(&sim).await;
    let exec = Transport::exec(None);

    match tunnel::dial(&cluster, "buildkitd-0", &exec).await {
        Err(TunnelError::PodGone { pod, .. }) => assert_eq!(pod, "buildkitd-0"),
        other => panic!("want PodGone, got {:?}", other.map(|c| c.pod().to_string())),
    }
    match tunnel::dial(&cluster, "buildkitd-2", &exec).await {
        Err(e @ TunnelError::Forbidden { .. }) => {
            assert_eq!(e.pod(), "buildkitd-2");
            assert!(e.to_string().contains("pods/exec is forbidden"), "{e}");
        }
        other => panic!(
            "want Forbidden, got {:?}",
            other.map(|c| c.pod().to_string())
        ),
    }
    // buildctl missing: the exec opens, then the stream fails with the exit code,
    // which the reader sees as an io::Error carrying the TunnelError.
    let mut conn = tunnel::dial(&cluster, "buildkitd-1", &exec)
        .await
        .expect("the exec itself opens");
    let mut buf = [0u8; 64];
    let err = tokio::time::timeout(DEADLINE, conn.read(&mut buf))
        .await
        .expect("read within the deadline")
        .expect_err("no buildctl, no bytes");
    match tunnel::tunnel_error(&err) {
        Some(TunnelError::BuildctlMissing { pod, code, .. }) => {
            assert_eq!((pod.as_str(), *code), ("buildkitd-1", 127));
        }
        other => panic!("want BuildctlMissing, got {other:?} ({err})"),
    }
}

#[tokio::test]
async fn the_failover_walk_records_each_pod_passed_over_and_its_reason() {
    let mut gone = PodConfig::new(NS, "buildkitd-0");
    gone.faults.vanished = true;
    let sim = sim(vec![
        gone,
        PodConfig::new(NS, "buildkitd-1"),
        PodConfig::new(NS, "buildkitd-2"),
    ]);
    let cluster = cluster(&sim).await;
    let order: Vec<String> = ["buildkitd-0", "buildkitd-1", "buildkitd-2"]
        .map(String::from)
        .to_vec();
    let walk = Failover::new(cluster, Transport::exec(None), order, 2);
    // The probe refuses buildkitd-1 (as a failed gRPC handshake would): the walk goes
    // on to buildkitd-2.
    let mut heard = Vec::new();
    let reached = tokio::time::timeout(
        DEADLINE,
        walk.connect(
            |pod, conn| async move {
                let (greeting, _) = echo(conn, b"ping").await.map_err(|e| e.to_string())?;
                if pod == "buildkitd-1" {
                    return Err(format!("refused by the probe ({greeting})"));
                }
                Ok(greeting)
            },
            |failure, next| heard.push((failure.pod().to_string(), next.map(String::from))),
        ),
    )
    .await
    .expect("walk within the deadline")
    .expect("buildkitd-2 answers");
    assert_eq!(reached.pod, "buildkitd-2");
    assert_eq!(
        reached.value,
        format!("SIMKIT/1 pod=buildkitd-2 namespace={NS}")
    );
    assert!(
        matches!(&reached.passed_over[0], AttemptFailure::Tunnel(TunnelError::PodGone { pod, .. }) if pod == "buildkitd-0"),
        "{:?}",
        reached.passed_over
    );
    assert!(
        matches!(&reached.passed_over[1], AttemptFailure::Probe { pod, error } if pod == "buildkitd-1" && error.contains("refused")),
        "{:?}",
        reached.passed_over
    );
    assert_eq!(
        heard,
        [
            ("buildkitd-0".to_string(), Some("buildkitd-1".to_string())),
            ("buildkitd-1".to_string(), Some("buildkitd-2".to_string()))
        ]
    );
    assert_eq!(walk.served(), ["buildkitd-2"]);
    // A second walk over the same Failover skips the pods that failed.
    assert_eq!(walk.next_candidate(None).as_deref(), Some("buildkitd-2"));

    // With no failover at all, the walk ends at the first pod and says why.
    let only_first = Failover::new(
        walk.cluster().clone(),
        Transport::exec(None),
        vec!["buildkitd-0".into(), "buildkitd-1".into()],
        0,
    );
    let err = only_first
        .connect(|_, conn| async move { Ok::<_, String>(conn) }, |_, _| {})
        .await
        .expect_err("buildkitd-0 is gone");
    assert_eq!(err.attempts.len(), 1);
    assert!(
        err.to_string()
            .starts_with("pod buildkitd-0: the pod is gone"),
        "{err}"
    );
}
