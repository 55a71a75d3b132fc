//! Signals: SIGINT/SIGTERM during a build or `tunnel -- COMMAND` reach the child, we
//! exit 130/143, the socket directory is gone and no process survives; after SIGKILL
//! of the plugin, its child dies within a second (parent-death signal).

mod common;
mod reliability_support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reliability_support::*;

/// Start `args` in the sandbox with stderr piped; the stand-in buildctl sleeps 60 s
/// once connected, so the build is in flight until a signal arrives.
fn start_mid_build(
    sb: &Sandbox,
    sim: &Sim,
    args: &[String],
) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = sb
        .plugin(Some(sim))
        .args(args)
        .env("SIM_BUILDCTL_SLEEP_MS", "60000")
        .env("SIM_BUILDCTL_SIGNAL_FILE", sb.home.path().join("signals"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The stand-in prints its progress on the stderr it shares with us.
    let (connected, err) = watch_stderr(&mut child, "[simkit] connected to pod");
    if connected.recv_timeout(BOUND).is_err() {
        let _ = child.kill();
        panic!("the build never connected: {}", err.join().unwrap());
    }
    (child, err)
}

fn build_args(sb: &Sandbox) -> Vec<String> {
    let ctx = sb.context().display().to_string();
    ["build", "-t", "reg.example/app:1", "--push", &ctx]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn tunnel_args(sb: &Sandbox) -> Vec<String> {
    let ctx = sb.context().display().to_string();
    [
        "tunnel",
        "--hash-key",
        "k",
        "--",
        "buildctl",
        "build",
        "--frontend",
        "dockerfile.v0",
        "--local",
        &format!("context={ctx}"),
        "--local",
        &format!("dockerfile={ctx}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The socket directory exists while the build runs (so its removal means something).
fn socket_dirs(sb: &Sandbox) -> usize {
    subdirs(&sb.tmp)
        .iter()
        .filter(|d| d.join("buildkitd.sock").exists())
        .count()
}

fn interrupt(what: &str, args: Vec<String>, sig: i32, name: &str, code: i32) {
    interrupt_with(what, args, sig, name, code, &["buildctl"]);
}

/// Signal the plugin mid-build, with `running` (process names) among its children.
fn interrupt_with(
    what: &str,
    args: Vec<String>,
    sig: i32,
    name: &str,
    code: i32,
    running: &[&str],
) {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    let (mut child, err) = start_mid_build(&sb, &sim, &args);
    assert_eq!(socket_dirs(&sb), 1, "{what}: one private socket directory");
    let children: Vec<_> = sb
        .survivors()
        .into_iter()
        .filter(|(pid, _)| *pid != child.id())
        .collect();
    for want in running {
        assert!(
            children.iter().any(|(_, comm)| comm == want),
            "{what}: {want} runs: {children:?}"
        );
    }
    let t = Instant::now();
    unsafe { libc::kill(child.id() as i32, sig) };
    let status = wait_deadline(&mut child, BOUND).expect("exits after the signal");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "{what}: {:?}",
        t.elapsed()
    );
    let err = err.join().unwrap();
    assert_eq!(status.code(), Some(code), "{what}: {err}");
    let seen = std::fs::read_to_string(sb.home.path().join("signals")).unwrap_or_default();
    assert_eq!(seen.trim(), name, "{what}: buildctl got {name}: {err}");
    sb.assert_clean(what);
}

#[test]
fn sigint_during_build() {
    let sb = Sandbox::new();
    interrupt("build SIGINT", build_args(&sb), libc::SIGINT, "SIGINT", 130);
}

#[test]
fn sigterm_during_build() {
    let sb = Sandbox::new();
    interrupt(
        "build SIGTERM",
        build_args(&sb),
        libc::SIGTERM,
        "SIGTERM",
        143,
    );
}

/// Without push the build has two children, buildctl and `docker load` reading its
/// tarball: after SIGTERM neither survives.
#[test]
fn sigterm_during_a_build_that_loads_into_docker() {
    let sb = Sandbox::new();
    let ctx = sb.context().display().to_string();
    let args = ["build", "-t", "reg.example/app:1", "--no-push", &ctx]
        .iter()
        .map(|s| s.to_string())
        .collect();
    interrupt_with(
        "build --no-push SIGTERM",
        args,
        libc::SIGTERM,
        "SIGTERM",
        143,
        &["buildctl", "docker"],
    );
}

#[test]
fn sigint_during_tunnel_command() {
    let sb = Sandbox::new();
    interrupt(
        "tunnel SIGINT",
        tunnel_args(&sb),
        libc::SIGINT,
        "SIGINT",
        130,
    );
}

#[test]
fn sigterm_during_tunnel_command() {
    let sb = Sandbox::new();
    interrupt(
        "tunnel SIGTERM",
        tunnel_args(&sb),
        libc::SIGTERM,
        "SIGTERM",
        143,
    );
}

#[test]
fn sigkill_of_the_plugin_takes_its_child_along() {
    let sim = start(pods(2));
    for make in [build_args, tunnel_args] {
        let sb = Sandbox::new();
        let args = make(&sb);
        let (mut child, err) = start_mid_build(&sb, &sim, &args);
        let buildctl: Vec<u32> = sb
            .survivors()
            .into_iter()
            .filter(|(_, comm)| comm == "buildctl")
            .map(|(pid, _)| pid)
            .collect();
        assert_eq!(buildctl.len(), 1, "{}: {buildctl:?}", args[0]);
        let pid = buildctl[0];
        assert!(is_alive(pid));
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        let t = Instant::now();
        while is_alive(pid) && t.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !is_alive(pid),
            "{}: buildctl {pid} outlived the plugin by a second",
            args[0]
        );
        let _ = err.join();
        assert!(sb.survivors().is_empty(), "{:?}", sb.survivors());
    }
}

/// A stalled API server (every request held for minutes, no --request-timeout): once
/// the plugin's first request has reached the server, SIGINT or SIGTERM ends `pods`,
/// `build` and `tunnel` within 2 s with 130/143, and nothing is left behind.
#[test]
fn signals_while_the_api_server_stalls() {
    let sim = start(pods(2));
    sim.set_faults(ServerFaults {
        api_latency_ms: 300_000,
        ..ServerFaults::default()
    });
    let sb = Sandbox::new();
    let commands: [(&str, Vec<String>); 3] = [
        ("pods", vec!["pods".to_string()]),
        ("build", build_args(&sb)),
        ("tunnel", tunnel_args(&sb)),
    ];
    for (what, args) in commands {
        for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
            let before = sim.arrivals().len();
            let mut child = sb
                .plugin(Some(&sim))
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let err = drain_stderr(&mut child);
            // Readiness: the plugin's request is at the server, which holds it.
            let t = Instant::now();
            while sim.arrivals().len() == before {
                if t.elapsed() > BOUND {
                    let _ = child.kill();
                    panic!(
                        "{what}: no request reached the server: {}",
                        err.join().unwrap()
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let t = Instant::now();
            unsafe { libc::kill(child.id() as i32, sig) };
            let Some(status) = wait_deadline(&mut child, Duration::from_secs(2)) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what}: still running 2 s after signal {sig}: {}",
                    err.join().unwrap()
                );
            };
            let err = err.join().unwrap();
            assert_eq!(
                status.code(),
                Some(code),
                "{what} after signal {sig}: {err}"
            );
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{what}: {:?}",
                t.elapsed()
            );
            sb.assert_clean(&format!("{what} after signal {sig}"));
        }
    }
}
