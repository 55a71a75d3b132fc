//! `kubectl buildkit tunnel`: the right pod, both transports, failover, cleanup.

mod common;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;
use kube_sim::buildkitd::client;

struct Running {
    child: Child,
    address: String,
    stderr: std::thread::JoinHandle<String>,
}

/// Start `tunnel` without a command and read the BUILDKIT_HOST line.
fn start_tunnel(sim: &Sim, home: &Home, args: &[&str]) -> Running {
    let mut child = plugin(Some(sim), home)
        .arg("tunnel")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("BUILDKIT_HOST=")
        .unwrap_or_else(|| panic!("no address line: {line:?}"))
        .to_string();
    Running {
        child,
        address,
        stderr,
    }
}

fn stop(mut r: Running, signal: i32) -> (Option<i32>, String) {
    unsafe { libc::kill(r.child.id() as i32, signal) };
    let status = r.child.wait().unwrap();
    (status.code(), r.stderr.join().unwrap())
}

/// Connect to the tunnel, check which pod answers, and echo `len` bytes through it.
fn served_by(address: &str, len: u64) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let fut = async {
            if let Some(path) = address.strip_prefix("unix://") {
                let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
                let who = client::hello(&mut s).await.unwrap();
                assert_eq!(client::echo(s, len).await.unwrap(), len);
                who.pod
            } else {
                let hostport = address.strip_prefix("tcp://").unwrap();
                let mut s = tokio::net::TcpStream::connect(hostport).await.unwrap();
                let who = client::hello(&mut s).await.unwrap();
                assert_eq!(client::echo(s, len).await.unwrap(), len);
                who.pod
            }
        };
        tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .expect("tunnel answers in time")
    })
}

#[test]
fn exec_tunnel_reaches_the_hashed_pod_and_cleans_up() {
    let sim = start(pods(4));
    let home = Home::new();
    let names = ["buildkitd-0", "buildkitd-1", "buildkitd-2", "buildkitd-3"];
    for alg in ["classic", "buildx", "rendezvous"] {
        for key in ["gcr.io/me/app", "reg:5000/team/api", "/home/dev/src/web"] {
            let want = ring_order(&home, &names, key, alg);
            let before = sim.stats(NS, &want[0]).connections;
            let t = start_tunnel(&sim, &home, &["--hash-key", key, "--algorithm", alg]);
            let sock = PathBuf::from(
                t.address
                    .strip_prefix("unix://")
                    .expect("unix socket by default"),
            );
            assert_eq!(served_by(&t.address, 1 << 20), want[0], "{alg} {key}");
            assert_eq!(sim.stats(NS, &want[0]).connections, before + 1);
            let dir = sock.parent().unwrap().to_path_buf();
            let (code, err) = stop(t, libc::SIGTERM);
            assert_eq!(code, Some(143), "{err}");
            assert!(!dir.exists(), "socket directory removed");
        }
    }
}

#[test]
fn port_forward_tunnel_on_loopback_tcp() {
    let sim = start(pods(3));
    let home = Home::new();
    let want = ring_order(
        &home,
        &["buildkitd-0", "buildkitd-1", "buildkitd-2"],
        "gcr.io/x/y",
        "classic",
    );
    let t = start_tunnel(
        &sim,
        &home,
        &[
            "--hash-key",
            "gcr.io/x/y",
            "--tunnel",
            "port-forward",
            "--listen",
            "tcp://127.0.0.1:0",
        ],
    );
    assert!(t.address.starts_with("tcp://127.0.0.1:"), "{}", t.address);
    assert_eq!(served_by(&t.address, 8 << 20), want[0]);
    // A second connection on the same tunnel: a new stream, same pod.
    assert_eq!(served_by(&t.address, 1 << 20), want[0]);
    assert_eq!(sim.stats(NS, &want[0]).connections, 2);
    let (code, _) = stop(t, libc::SIGINT);
    assert_eq!(code, Some(130));
}

#[test]
fn failover_moves_to_the_next_pod_with_a_warning() {
    let names = ["buildkitd-0", "buildkitd-1", "buildkitd-2"];
    let home = Home::new();
    let want = ring_order(&home, &names, "k", "classic");
    for fault in ["exec_forbidden", "vanished", "buildctl_missing"] {
        let mut ps = pods(3);
        let first = ps.iter_mut().find(|p| p.name == want[0]).unwrap();
        match fault {
            "exec_forbidden" => first.faults.exec_forbidden = true,
            "vanished" => first.faults.vanished = true,
            _ => first.faults.buildctl_missing = true,
        }
        let sim = start(ps);
        let t = start_tunnel(&sim, &home, &["--hash-key", "k"]);
        assert_eq!(served_by(&t.address, 1 << 16), want[1], "{fault}");
        let (_, err) = stop(t, libc::SIGTERM);
        assert!(
            err.contains(&format!("pod {} could not take the connection", want[0])),
            "{fault}: {err}"
        );
        assert!(
            err.contains(&format!("failing over to pod {}", want[1])),
            "{fault}: {err}"
        );
        let why = match fault {
            "exec_forbidden" => "pods/exec is forbidden",
            "vanished" => "gone",
            _ => "is buildctl installed",
        };
        assert!(err.contains(why), "{fault}: {err}");
    }
}

#[test]
fn tunnel_runs_a_command_with_buildkit_host_and_returns_its_code() {
    let sim = start(pods(3));
    let home = Home::new();
    let tmp = home.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let want = ring_order(
        &home,
        &["buildkitd-0", "buildkitd-1", "buildkitd-2"],
        "k",
        "classic",
    );
    let out = run(plugin(Some(&sim), &home).env("TMPDIR", &tmp).args([
        "tunnel",
        "--hash-key",
        "k",
        "--",
        "buildctl",
        "debug",
        "workers",
    ]));
    let text = ok(&out);
    assert!(text.contains(&want[0]), "workers of the chosen pod: {text}");
    let out = run(plugin(Some(&sim), &home).env("TMPDIR", &tmp).args([
        "tunnel",
        "--pod",
        "buildkitd-2",
        "--",
        "sh",
        "-c",
        "echo \"$BUILDKIT_HOST\"; exit 5",
    ]));
    assert_eq!(out.status.code(), Some(5));
    let host = stdout(&out);
    assert!(
        host.trim()
            .starts_with(&format!("unix://{}/kubectl-buildkit-", tmp.display())),
        "{host}"
    );
    let left = leftovers(&tmp);
    assert!(left.is_empty(), "{left:?}");
    let out = run(plugin(Some(&sim), &home).args([
        "tunnel",
        "--hash-key",
        "k",
        "--",
        "/nonexistent/cmd",
    ]));
    fails_with(&out, 1, &["/nonexistent/cmd", "not found"]);
    let out = run(plugin(Some(&sim), &home).args([
        "tunnel",
        "--listen",
        "tcp://0.0.0.0:0",
        "--hash-key",
        "k",
    ]));
    fails_with(&out, 1, &["127.0.0.1"]);
}
