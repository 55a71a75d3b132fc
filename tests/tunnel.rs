//! `kubectl buildkit tunnel`: the right pod, both transports, failover, cleanup.

mod common;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;
use kube_sim::buildkitd::client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Running {
    child: Child,
    address: String,
    stderr: std::thread::JoinHandle<String>,
    /// The TMPDIR the tunnel was given (its socket directory goes there).
    tmp: PathBuf,
}

/// HOME/tmp, the TMPDIR every tunnel of these tests gets, so `leftovers` can check it.
fn tmp_of(home: &Home) -> PathBuf {
    let tmp = home.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    tmp
}

/// Start `tunnel` without a command and read the BUILDKIT_HOST line.
fn start_tunnel(sim: &Sim, home: &Home, args: &[&str]) -> Running {
    let tmp = tmp_of(home);
    let mut child = plugin(Some(sim), home)
        .env("TMPDIR", &tmp)
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
        tmp,
    }
}

/// Signal the tunnel, wait for it, and check it left nothing behind (no socket
/// directory, no process naming its TMPDIR). Returns its exit code and stderr.
fn stop(mut r: Running, signal: i32) -> (Option<i32>, String) {
    unsafe { libc::kill(r.child.id() as i32, signal) };
    let status = wait_within(&mut r.child, CHILD_DEADLINE);
    let err = r.stderr.join().unwrap();
    let left = leftovers(&r.tmp);
    assert!(left.is_empty(), "left behind: {left:?}\nstderr: {err}");
    (status.code(), err)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Wait (bounded) until no connection to `pod`'s buildkitd is open.
fn wait_inactive(sim: &Sim, pod: &str) -> kube_sim::buildkitd::PodStats {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = sim.stats(NS, pod);
        if s.active == 0 || std::time::Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connect to the tunnel, check which pod answers, and echo `len` bytes through it.
fn served_by(address: &str, len: u64) -> String {
    runtime().block_on(async {
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
    let (code, err) = stop(t, libc::SIGINT);
    assert_eq!(code, Some(130), "{err}");
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
        let (code, err) = stop(t, libc::SIGTERM);
        assert_eq!(code, Some(143), "{fault}: {err}");
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
    let out = run(plugin(Some(&sim), &home).env("TMPDIR", &tmp).args([
        "tunnel",
        "--hash-key",
        "k",
        "--",
        "/nonexistent/cmd",
    ]));
    fails_with(&out, 1, &["/nonexistent/cmd", "not found"]);
    let left = leftovers(&tmp);
    assert!(left.is_empty(), "{left:?}");
    let out = run(plugin(Some(&sim), &home).env("TMPDIR", &tmp).args([
        "tunnel",
        "--listen",
        "tcp://0.0.0.0:0",
        "--hash-key",
        "k",
    ]));
    fails_with(&out, 1, &["127.0.0.1"]);
    let left = leftovers(&tmp);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn exec_tunnel_over_exec_v4_only_moves_bytes_exactly() {
    // An apiserver that only knows exec v4: the plugin (kube-rs offers v5, v4) gets v4,
    // whose stdin cannot be half-closed.
    let sim = start_with(SimConfig {
        pods: pods(3),
        context_namespace: Some(NS.into()),
        faults: ServerFaults {
            exec_protocols: vec!["v4.channel.k8s.io".into()],
            ..ServerFaults::default()
        },
        ..SimConfig::default()
    });
    let home = Home::new();
    let names = ["buildkitd-0", "buildkitd-1", "buildkitd-2"];
    let want = ring_order(&home, &names, "v4-key", "classic");
    let t = start_tunnel(&sim, &home, &["--hash-key", "v4-key"]);
    assert_eq!(served_by(&t.address, 8 << 20), want[0]);
    assert_eq!(served_by(&t.address, 1 << 20), want[0]);
    let s = wait_inactive(&sim, &want[0]);
    assert_eq!((s.connections, s.active), (2, 0), "{s:?}");
    assert!(s.bytes_in >= 9 << 20 && s.bytes_out >= 9 << 20, "{s:?}");
    let (code, err) = stop(t, libc::SIGTERM);
    assert_eq!(code, Some(143), "{err}");
    assert!(!err.contains("warning"), "{err}");

    // The client reads its whole echo, then only half-closes (no QUIT): without v5's
    // stdin close the plugin must end the whole stream, so the client sees EOF, nothing
    // extra arrives and the pod's connection is gone.
    let t = start_tunnel(&sim, &home, &["--hash-key", "v4-key"]);
    let path = t.address.strip_prefix("unix://").unwrap().to_string();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (who, echoed, rest) = runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
            let who = client::hello(&mut s).await.unwrap();
            let (mut r, mut w) = s.into_split();
            let writer = async {
                w.write_all(format!("ECHO {}\n", payload.len()).as_bytes())
                    .await
                    .unwrap();
                w.write_all(&payload).await.unwrap();
                w
            };
            let reader = async {
                let mut echoed = vec![0u8; payload.len()];
                r.read_exact(&mut echoed).await.unwrap();
                echoed
            };
            let (mut w, echoed) = tokio::join!(writer, reader);
            w.shutdown().await.unwrap();
            let mut rest = Vec::new();
            r.read_to_end(&mut rest).await.unwrap();
            (who.pod, echoed, rest)
        })
        .await
        .expect("the tunnel ends the connection after the half-close")
    });
    assert_eq!(who, want[0]);
    assert!(echoed == payload, "echo differs");
    assert!(rest.is_empty(), "{} bytes after the echo", rest.len());
    let s = wait_inactive(&sim, &want[0]);
    assert_eq!((s.connections, s.active), (3, 0), "{s:?}");
    let refused: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/exec") && r.status != 101)
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    let (code, err) = stop(t, libc::SIGTERM);
    assert_eq!(code, Some(143), "{err}");
    // Closing a v4 stream ourselves is no failure: the pod cannot send an exit status.
    assert!(!err.contains("warning"), "{err}");
}

/// Connect to the tunnel and SEND FIRST ("ECHO 5\nhello"), before reading anything; then
/// read the greeting (which pod answered), the echo, QUIT, and everything up to EOF.
fn send_first(address: &str) -> (Option<String>, Vec<u8>) {
    let path = address
        .strip_prefix("unix://")
        .expect("unix socket")
        .to_string();
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
            s.write_all(b"ECHO 5\nhello").await.unwrap();
            let who = match client::hello(&mut s).await {
                Ok(who) => Some(who.pod),
                Err(_) => return (None, Vec::new()),
            };
            let mut echo = [0u8; 5];
            s.read_exact(&mut echo).await.unwrap();
            s.write_all(b"QUIT\n").await.unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            let mut got = echo.to_vec();
            got.extend(rest);
            (who, got)
        })
        .await
        .expect("the tunnel answers in time")
    })
}

#[test]
fn failover_replays_what_buildctl_sent_before_the_first_pod_answered() {
    let names = ["buildkitd-0", "buildkitd-1", "buildkitd-2"];
    let home = Home::new();
    let want = ring_order(&home, &names, "replay", "classic");
    const SENT: u64 = "ECHO 5\nhello".len() as u64;
    for tunnel in ["exec", "port-forward"] {
        // The chosen pod never speaks and cuts the connection once it has what the
        // client sent: the plugin must replay those bytes to the next pod.
        let mut ps = pods(3);
        let first = ps.iter_mut().find(|p| p.name == want[0]).unwrap();
        first.faults.mute_drop_after_bytes = Some(SENT);
        let sim = start(ps);
        let t = start_tunnel(&sim, &home, &["--hash-key", "replay", "--tunnel", tunnel]);
        let (who, got) = send_first(&t.address);
        assert_eq!(who.as_deref(), Some(want[1].as_str()), "{tunnel}");
        assert_eq!(got, b"hello", "{tunnel}");
        let s0 = wait_inactive(&sim, &want[0]);
        assert_eq!(
            (s0.connections, s0.bytes_in, s0.bytes_out),
            (1, SENT, 0),
            "{tunnel}: the first pod received the bytes: {s0:?}"
        );
        let s1 = wait_inactive(&sim, &want[1]);
        assert_eq!(
            (s1.connections, s1.bytes_in),
            (1, SENT + "QUIT\n".len() as u64),
            "{tunnel}: the second pod received them all (replayed) and QUIT: {s1:?}"
        );
        assert_eq!(sim.stats(NS, &want[2]).connections, 0, "{tunnel}");
        let (code, err) = stop(t, libc::SIGTERM);
        assert_eq!(code, Some(143), "{tunnel}: {err}");
        assert!(
            err.contains(&format!("pod {} could not take the connection", want[0]))
                && err.contains(&format!("failing over to pod {}", want[1])),
            "{tunnel}: {err}"
        );

        // With --max-failover 0 there is no second pod: the client gets EOF, no bytes.
        let t = start_tunnel(
            &sim,
            &home,
            &[
                "--hash-key",
                "replay",
                "--tunnel",
                tunnel,
                "--max-failover",
                "0",
            ],
        );
        let (who, got) = send_first(&t.address);
        assert_eq!((who, got), (None, Vec::new()), "{tunnel}");
        assert_eq!(sim.stats(NS, &want[0]).connections, 2, "{tunnel}");
        assert_eq!(sim.stats(NS, &want[1]).connections, 1, "{tunnel}");
        let (code, err) = stop(t, libc::SIGTERM);
        assert_eq!(code, Some(143), "{tunnel}: {err}");
        let warning = err
            .lines()
            .find(|l| l.contains("warning: no buildkitd pod could take a connection"))
            .unwrap_or_else(|| panic!("{tunnel}: no warning: {err}"));
        let why = match tunnel {
            "exec" => format!("in pod {} exited with code 1", want[0]),
            _ => format!(
                "pod {}: the stream ended before the pod sent anything",
                want[0]
            ),
        };
        assert!(warning.contains(&why), "{tunnel}: {err}");
        assert!(!err.contains("failing over"), "{tunnel}: {err}");
    }
}

/// `--listen unix:///PATH`: the tunnel listens exactly there (socket 0600), serves, and
/// removes the socket (and only the socket) when it stops; a path that exists already
/// is refused without touching it.
#[test]
fn listen_on_a_unix_path_of_the_users_choice() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let sim = start(pods(2));
    let home = Home::new();
    let want = ring_order(&home, &["buildkitd-0", "buildkitd-1"], "k", "classic");
    let dir = home.path().join("sockets");
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("bk.sock");
    let listen = format!("unix://{}", sock.display());
    let t = start_tunnel(&sim, &home, &["--hash-key", "k", "--listen", &listen]);
    assert_eq!(t.address, listen);
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(served_by(&t.address, 1 << 20), want[0]);
    let (code, err) = stop(t, libc::SIGINT);
    assert_eq!(code, Some(130), "{err}");
    assert!(!sock.exists(), "socket removed");
    assert!(dir.is_dir(), "the user's directory stays");

    // Something already there: refused, and left as it was.
    std::fs::write(&sock, "mine").unwrap();
    let out =
        run(plugin(Some(&sim), &home).args(["tunnel", "--hash-key", "k", "--listen", &listen]));
    fails_with(&out, 1, &["something already exists there", "another path"]);
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "mine");
}
