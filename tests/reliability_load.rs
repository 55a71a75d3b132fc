//! Load: 64 concurrent builds against 8 pods, and one tunnel serving 64 connections at
//! once; every byte verified, no errors, no file-descriptor growth.

mod common;
mod reliability_support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use kube_sim::buildkitd::client;
use reliability_support::*;

const N: usize = 64;
const PAYLOAD: u64 = 256 * 1024;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("buildkitd-{i}")).collect()
}

#[test]
fn sixty_four_concurrent_builds_on_eight_pods() {
    let sim = start(pods(8));
    let sb = Sandbox::new();
    let ctx = sb.context();
    let keys: Vec<String> = (0..N)
        .map(|i| format!("reg.example/team/app-{i}"))
        .collect();
    // Where each key must land: the offline ring over the same pods.
    let mut ring = plugin(None, &sb.home);
    ring.args(["ring", "-o", "json", "--pods", &names(8).join(",")])
        .args(&keys);
    let want = json(&run(&mut ring));
    let records: Vec<_> = (0..N)
        .map(|i| sb.home.path().join(format!("rec-{i}.jsonl")))
        .collect();
    let children: Vec<_> = (0..N)
        .map(|i| {
            sb.plugin(Some(&sim))
                .args(["build", "--push", "-t"])
                .arg(format!("{}:v1", keys[i]))
                .arg(&ctx)
                .env("SIM_BUILDCTL_PAYLOAD", PAYLOAD.to_string())
                .env("SIM_BUILDCTL_RECORD", &records[i])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut per_pod = std::collections::BTreeMap::<String, u64>::new();
    for (i, mut child) in children.into_iter().enumerate() {
        let err = drain_stderr(&mut child);
        let status = wait_deadline(&mut child, Duration::from_secs(180)).expect("build finishes");
        let err = err.join().unwrap();
        assert!(status.success(), "build {i}: {status:?}\n{err}");
        assert!(!err.contains("warning"), "build {i}: {err}");
        let rec: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&records[i]).unwrap().trim()).unwrap();
        assert_eq!(rec["exit_code"], 0, "{rec}");
        assert_eq!(rec["payload_bytes"], PAYLOAD, "byte-exact echo: {rec}");
        let pod = rec["served_by"]["pod"].as_str().unwrap().to_string();
        assert_eq!(
            pod,
            want["keys"][i]["pod"].as_str().unwrap(),
            "key {}",
            keys[i]
        );
        *per_pod.entry(pod).or_default() += 1;
    }
    // The simulated buildkitds saw exactly those connections.
    for name in names(8) {
        let stats = sim.stats(NS, &name);
        assert_eq!(
            stats.connections,
            per_pod.get(&name).copied().unwrap_or(0),
            "{name}"
        );
    }
    assert!(per_pod.len() >= 4, "keys spread over pods: {per_pod:?}");
    sb.assert_clean("64 builds");
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn one_tunnel_serves_sixty_four_connections_at_once() {
    let sim = start(pods(8));
    let sb = Sandbox::new();
    let mut child = sb
        .plugin(Some(&sim))
        .args(["tunnel", "--hash-key", "reg.example/app"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = drain_stderr(&mut child);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let path = line
        .trim()
        .strip_prefix("BUILDKIT_HOST=unix://")
        .unwrap_or_else(|| panic!("no address: {line:?}"))
        .to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let round = |len: u64| {
        rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..N {
                let path = path.clone();
                tasks.spawn(async move {
                    let mut s = tokio::net::UnixStream::connect(&path).await?;
                    let who = client::hello(&mut s).await?;
                    let got = client::echo(s, len).await?;
                    Ok::<_, std::io::Error>((who.pod, got))
                });
            }
            let mut pods = Vec::new();
            let all = async {
                while let Some(r) = tasks.join_next().await {
                    let (pod, got) = r.unwrap().expect("connection works");
                    assert_eq!(got, len, "byte-exact echo");
                    pods.push(pod);
                }
            };
            tokio::time::timeout(Duration::from_secs(120), all)
                .await
                .expect("64 connections finish in time");
            pods
        })
    };
    // Warm up (the runtime's threads and the client's pools), then measure.
    let warm = round(1024);
    assert_eq!(warm.len(), N);
    std::thread::sleep(Duration::from_millis(300));
    let before = fd_count(child.id());
    for _ in 0..2 {
        let served = round(PAYLOAD);
        assert_eq!(served.len(), N);
        assert!(
            served.iter().all(|p| p == &served[0]),
            "one pod: {served:?}"
        );
    }
    // Finished connections release their descriptors (allow a moment to close).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut after = fd_count(child.id());
    while after > before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = fd_count(child.id());
    }
    assert!(after <= before, "fds grew from {before} to {after}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_deadline(&mut child, BOUND).expect("tunnel exits");
    let err = err.join().unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(!err.contains("warning"), "{err}");
    sb.assert_clean("tunnel after load");
}
