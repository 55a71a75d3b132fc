//! Secrets: `--secret env=` values, build-arg values and kubeconfig tokens never show in
//! any output at -vvv, on success or failure; the unix socket is private; TCP listens
//! on loopback only; credential plugins never read our stdin.

mod common;
mod reliability_support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use common::*;
use reliability_support::*;

const SECRET_ENV: &str = "env-secret-Q7x9Lm2";
const ARG_VALUE: &str = "buildarg-secret-Zr4Kp8";
const ARG_FROM_ENV: &str = "buildarg-from-env-Wc3Nv6";

fn users_sim() -> Sim {
    start_with(SimConfig {
        pods: pods(2),
        context_namespace: Some(NS.into()),
        users: vec![
            UserConfig::admin(),
            UserConfig::new("noexec", vec![Rule::new(&["get", "list"], &["pods"])]),
        ],
        ..SimConfig::default()
    })
}

/// A -vvv build carrying every kind of secret.
fn secret_build(sb: &Sandbox, sim: Option<&Sim>, extra: &[&str]) -> Command {
    let ctx = sb.context();
    let mut cmd = sb.plugin(sim);
    cmd.args(["-vvv", "build", "-t", "reg.example/app:1", "--push"])
        .args(["--secret", "id=npm,env=MY_SECRET"])
        .args(["--build-arg", &format!("TOKEN={ARG_VALUE}")])
        .args(["--build-arg", "NPM_TOKEN"])
        .args(extra)
        .arg(&ctx)
        .env("MY_SECRET", SECRET_ENV)
        .env("NPM_TOKEN", ARG_FROM_ENV);
    cmd
}

#[track_caller]
fn assert_no_secret(what: &str, out: &Output, secrets: &[&str]) {
    let all = format!("{}\n{}", stdout(out), stderr(out));
    for s in secrets {
        assert!(
            !all.contains(s),
            "{what}: {s:?} shows in the output:\n{all}"
        );
    }
}

#[test]
fn no_secret_in_any_output_on_success_or_failure() {
    let sim = users_sim();
    let sb = Sandbox::new();
    let admin = sim.token("admin").unwrap();
    let noexec = sim.token("noexec").unwrap();
    let rec = sb.home.path().join("buildctl.jsonl");

    // Success: the values still reach buildctl (so the test is not vacuous).
    let mut cmd = secret_build(&sb, Some(&sim), &[]);
    cmd.env("SIM_BUILDCTL_RECORD", &rec);
    let (out, _) = sb.run_bounded(&mut cmd);
    ok(&out);
    let recorded = std::fs::read_to_string(&rec).unwrap();
    assert!(
        recorded.contains(ARG_VALUE) && recorded.contains(ARG_FROM_ENV),
        "{recorded}"
    );
    assert!(stderr(&out).contains("[v2]"), "-vvv logs: {}", stderr(&out));
    assert_no_secret(
        "success",
        &out,
        &[SECRET_ENV, ARG_VALUE, ARG_FROM_ENV, &admin],
    );

    // buildctl fails.
    let mut cmd = secret_build(&sb, Some(&sim), &[]);
    cmd.env("SIM_BUILDCTL_EXIT", "1");
    let (out, _) = sb.run_bounded(&mut cmd);
    assert_eq!(out.status.code(), Some(1));
    assert_no_secret(
        "buildctl fails",
        &out,
        &[SECRET_ENV, ARG_VALUE, ARG_FROM_ENV, &admin],
    );

    // The tunnel fails (403 on exec).
    let (out, _) = sb.run_bounded(&mut secret_build(&sb, Some(&sim), &["--context", "noexec"]));
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("pods/exec is forbidden"),
        "{}",
        stderr(&out)
    );
    assert_no_secret(
        "exec forbidden",
        &out,
        &[SECRET_ENV, ARG_VALUE, ARG_FROM_ENV, &noexec],
    );

    // The token is rejected (401).
    let kc = edited_kubeconfig(&sim, &sb.home, |v| {
        v["users"][0]["user"]["token"] = "rejected-token-Hy5Tq1".into();
    });
    let (out, _) = sb.run_bounded(&mut secret_build(
        &sb,
        None,
        &["--kubeconfig", kc.to_str().unwrap()],
    ));
    fails_with(&out, 1, &["401"]);
    assert_no_secret(
        "401",
        &out,
        &[SECRET_ENV, ARG_VALUE, "rejected-token-Hy5Tq1"],
    );

    // `tunnel` at -vvv with a client connecting.
    let mut cmd = sb.plugin(Some(&sim));
    cmd.args([
        "-vvv",
        "tunnel",
        "--hash-key",
        "k",
        "--",
        "buildctl",
        "debug",
        "workers",
    ]);
    let (out, _) = sb.run_bounded(&mut cmd);
    ok(&out);
    assert_no_secret("tunnel", &out, &[&admin]);
    sb.assert_clean("secret builds");
}

#[test]
fn unix_socket_is_private_while_the_tunnel_runs() {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    let mut child = sb
        .plugin(Some(&sim))
        .args(["tunnel", "--hash-key", "k"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let sock = std::path::PathBuf::from(
        line.trim()
            .strip_prefix("BUILDKIT_HOST=unix://")
            .unwrap_or_else(|| panic!("{line:?}")),
    );
    let dir = sock.parent().unwrap();
    assert_eq!(
        dir.parent().unwrap(),
        sb.tmp,
        "the socket lives under TMPDIR"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700, "socket directory");
    assert_eq!(mode(&sock), 0o600, "socket");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(wait_deadline(&mut child, BOUND).unwrap().code(), Some(143));
    sb.assert_clean("private socket");
}

/// Local addresses of listening TCP sockets on `port` (from /proc/net/tcp{,6}).
fn listeners(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            if f.len() > 3 && f[3] == "0A" && f[1].ends_with(&format!(":{port:04X}")) {
                found.push(f[1].to_string());
            }
        }
    }
    found
}

#[test]
fn tcp_listens_on_loopback_only() {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    for addr in [
        "tcp://0.0.0.0:0",
        "tcp://[::]:0",
        "tcp://10.1.2.3:1234",
        "tcp://:0",
    ] {
        sb.expect_failure(
            addr,
            sb.plugin(Some(&sim)).args([
                "tunnel",
                "--hash-key",
                "k",
                "--listen",
                addr,
                "--",
                "true",
            ]),
            1,
            &["only listens on 127.0.0.1"],
        );
    }
    let mut child = sb
        .plugin(Some(&sim))
        .args(["tunnel", "--hash-key", "k", "--listen", "tcp://127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("BUILDKIT_HOST=tcp://127.0.0.1:")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    assert_eq!(listeners(port), vec![format!("0100007F:{port:04X}")]);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_deadline(&mut child, BOUND).unwrap();
    sb.assert_clean("tcp tunnel");
}

/// A kubeconfig whose user runs `script` as its exec credential plugin.
fn exec_kubeconfig(sim: &Sim, sb: &Sandbox, script: &std::path::Path) -> std::path::PathBuf {
    edited_kubeconfig(sim, &sb.home, |v| {
        v["users"][0]["user"] = serde_yaml::from_str(&format!(
            "exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: {}\n  interactiveMode: IfAvailable\n",
            script.display()
        ))
        .unwrap();
    })
}

fn write_script(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn credential_plugin_never_reads_our_stdin_during_build() {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    let token = sim.token("admin").unwrap();
    let script = sb.home.path().join("cred-plugin");
    let seen = sb.home.path().join("stdin-seen");
    write_script(
        &script,
        &format!(
            "#!/bin/sh\ncat > {seen} 2>/dev/null\nprintf '%s' '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{token}\"}}}}'\n",
            seen = seen.display()
        ),
    );
    let kc = exec_kubeconfig(&sim, &sb, &script);
    let ctx = sb.context();
    let mut child = sb
        .plugin(None)
        .args([
            "-vvv",
            "build",
            "-t",
            "reg.example/app:1",
            "--push",
            "--kubeconfig",
        ])
        .arg(&kc)
        .arg(&ctx)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"our stdin is not the credential plugin's")
        .unwrap();
    let out = finish_within(child, CHILD_DEADLINE);
    ok(&out);
    let seen = std::fs::read(&seen).unwrap_or_default();
    assert!(
        seen.is_empty(),
        "plugin read: {:?}",
        String::from_utf8_lossy(&seen)
    );
    assert_no_secret("exec plugin build", &out, &[&token]);
    sb.assert_clean("exec plugin build");
}

#[test]
fn failing_credential_plugin_output_is_not_echoed() {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    let script = sb.home.path().join("cred-plugin");
    // A plugin that prints a credential and still fails, or prints something broken.
    for body in [
        "printf '{\"status\":{\"token\":\"plugin-token-Bv8Xe2\"}}'\necho 'session expired' >&2\nexit 2",
        "printf 'not a credential plugin-token-Bv8Xe2'",
    ] {
        write_script(&script, &format!("#!/bin/sh\n{body}\n"));
        let kc = exec_kubeconfig(&sim, &sb, &script);
        let ctx = sb.context();
        let mut cmd = sb.plugin(None);
        cmd.args(["-vvv", "build", "-t", "reg.example/app:1", "--push", "--kubeconfig"])
            .arg(&kc)
            .arg(&ctx);
        let err = sb.expect_failure(body, &mut cmd, 1, &["credential plugin failed"]);
        assert!(!err.contains("plugin-token-Bv8Xe2"), "{body}: {err}");
        if body.contains("exit 2") {
            assert!(err.contains("session expired"), "stderr is shown: {err}");
        }
    }
}
