//! Faults during `build` and `tunnel`: each gives a clear message, a non-zero exit
//! within a bounded time, and leaves nothing behind (no socket directory in the
//! plugin's TMPDIR, no child process alive). `pods`-only cases are in cluster_errors.rs.

mod common;
mod reliability_support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;
use reliability_support::*;

/// `build` of a pushed image (key "reg.example/app") in the sandbox.
fn build(sb: &Sandbox, sim: Option<&Sim>, extra: &[&str]) -> Command {
    let ctx = sb.context();
    let mut cmd = sb.plugin(sim);
    cmd.args(["build", "-t", "reg.example/app:1", "--push"])
        .args(extra)
        .arg(&ctx);
    cmd
}

/// `tunnel -- COMMAND` in the sandbox.
fn tunnel(sb: &Sandbox, sim: Option<&Sim>, extra: &[&str], command: &[&str]) -> Command {
    let mut cmd = sb.plugin(sim);
    cmd.args(["tunnel", "--hash-key", "reg.example/app"])
        .args(extra)
        .arg("--")
        .args(command);
    cmd
}

/// The fallback order `ring` computes offline for pods buildkitd-0..n-1.
fn order(sb: &Sandbox, n: usize, key: &str) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("buildkitd-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    ring_order(&sb.home, &names, key, "classic")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Both commands fail the same way before any tunnel exists.
#[track_caller]
fn both_fail(sb: &Sandbox, sim: Option<&Sim>, extra: &[&str], needles: &[&str]) {
    sb.expect_failure("build", &mut build(sb, sim, extra), 1, needles);
    sb.expect_failure("tunnel", &mut tunnel(sb, sim, extra, &["true"]), 1, needles);
}

#[test]
fn api_server_down() {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    let port = free_port();
    let kc = edited_kubeconfig(&sim, &sb.home, |v| {
        v["clusters"][0]["cluster"]["server"] = format!("https://127.0.0.1:{port}").into();
    });
    let kc = kc.to_str().unwrap();
    both_fail(
        &sb,
        None,
        &["--kubeconfig", kc],
        &["cannot reach the API server", &format!("127.0.0.1:{port}")],
    );
}

#[test]
fn api_server_slower_than_request_timeout() {
    let sim = start(pods(2));
    sim.set_faults(ServerFaults {
        api_latency_ms: 10_000,
        ..ServerFaults::default()
    });
    let sb = Sandbox::new();
    for (what, mut cmd) in [
        (
            "build",
            build(&sb, Some(&sim), &["--request-timeout", "500ms"]),
        ),
        (
            "tunnel",
            tunnel(&sb, Some(&sim), &["--request-timeout", "500ms"], &["true"]),
        ),
    ] {
        let (out, took) = sb.run_bounded(&mut cmd);
        fails_with(&out, 1, &["did not answer within --request-timeout 500ms"]);
        assert!(took.as_secs_f64() < 5.0, "{what} took {took:?}");
        sb.assert_clean(what);
    }
}

#[test]
fn rejected_credentials_401() {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    let kc = edited_kubeconfig(&sim, &sb.home, |v| {
        v["users"][0]["user"]["token"] = "wrong-token-4711".into();
    });
    let kc = kc.to_str().unwrap();
    both_fail(&sb, None, &["--kubeconfig", kc], &["401", "log in again"]);
}

#[test]
fn forbidden_list_403() {
    let sim = start_with_nolist_user(2);
    let sb = Sandbox::new();
    both_fail(
        &sb,
        Some(&sim),
        &["--context", "nolist"],
        &["403", "cannot list resource \"pods\"", "rbac.yaml"],
    );
}

#[test]
fn forbidden_exec_403_suggests_port_forward() {
    let sim = start_with(SimConfig {
        pods: pods(2),
        context_namespace: Some(NS.into()),
        users: vec![
            UserConfig::admin(),
            UserConfig::new(
                "noexec",
                vec![
                    Rule::new(&["get", "list"], &["pods"]),
                    Rule::new(&["create"], &["pods/portforward"]),
                ],
            ),
        ],
        ..SimConfig::default()
    });
    let sb = Sandbox::new();
    let needles = [
        "pods/exec is forbidden",
        "--tunnel port-forward",
        "grant `create` on pods/exec",
        "example/k8s_buildkitd/rbac.yaml",
    ];
    let err = sb.expect_failure(
        "build",
        &mut build(&sb, Some(&sim), &["--context", "noexec"]),
        1,
        &needles,
    );
    assert!(
        err.contains("error: no buildkitd pod could take buildctl's connection"),
        "{err}"
    );
    sb.expect_failure(
        "tunnel",
        &mut tunnel(
            &sb,
            Some(&sim),
            &["--context", "noexec"],
            &["buildctl", "debug", "workers"],
        ),
        1,
        &needles,
    );
    // The advice works: the same user builds through port-forward.
    let (out, _) = sb.run_bounded(&mut build(
        &sb,
        Some(&sim),
        &["--context", "noexec", "--tunnel", "port-forward"],
    ));
    ok(&out);
    sb.assert_clean("port-forward build");
}

#[test]
fn forbidden_port_forward_403() {
    let mut ps = pods(2);
    for p in &mut ps {
        p.faults.portforward_forbidden = true;
    }
    let sim = start(ps);
    let sb = Sandbox::new();
    let needles = ["pods/portforward is forbidden", "--tunnel exec"];
    sb.expect_failure(
        "build",
        &mut build(&sb, Some(&sim), &["--tunnel", "port-forward"]),
        1,
        &needles,
    );
    sb.expect_failure(
        "tunnel",
        &mut tunnel(
            &sb,
            Some(&sim),
            &["--tunnel", "port-forward"],
            &["buildctl", "debug", "workers"],
        ),
        1,
        &needles,
    );
}

#[test]
fn pods_deleted_between_list_and_exec() {
    let mut ps = pods(3);
    for p in &mut ps {
        p.faults.vanished = true;
    }
    let sim = start(ps);
    let sb = Sandbox::new();
    sb.expect_failure(
        "build",
        &mut build(&sb, Some(&sim), &[]),
        1,
        &["the pod is gone", "no buildkitd pod could take"],
    );
    sb.expect_failure(
        "tunnel",
        &mut tunnel(&sb, Some(&sim), &[], &["buildctl", "debug", "workers"]),
        1,
        &["the pod is gone"],
    );
}

#[test]
fn pod_removed_while_a_tunnel_serves_fails_over() {
    let sim = start(pods(3));
    let sb = Sandbox::new();
    let want = order(&sb, 3, "reg.example/app");
    let mut child = sb
        .plugin(Some(&sim))
        .args(["tunnel", "--hash-key", "reg.example/app"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = drain_stderr(&mut child);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("BUILDKIT_HOST=unix://")
        .unwrap()
        .to_string();
    // The chosen pod goes away after the tunnel listed it.
    sim.remove_pod(NS, &want[0]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let who = rt.block_on(async {
        let fut = async {
            let mut s = tokio::net::UnixStream::connect(&addr).await.unwrap();
            let who = kube_sim::buildkitd::client::hello(&mut s).await.unwrap();
            assert_eq!(
                kube_sim::buildkitd::client::echo(s, 1 << 16).await.unwrap(),
                1 << 16
            );
            who.pod
        };
        tokio::time::timeout(BOUND, fut)
            .await
            .expect("answered in time")
    });
    assert_eq!(who, want[1]);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_deadline(&mut child, BOUND).expect("tunnel exits");
    assert_eq!(status.code(), Some(143));
    let err = err.join().unwrap();
    assert!(err.contains("the pod is gone"), "{err}");
    assert!(
        err.contains(&format!("failing over to pod {}", want[1])),
        "{err}"
    );
    sb.assert_clean("tunnel after pod removal");
}

#[test]
fn connection_dropped_mid_transfer_exits_with_buildctls_code() {
    let mut ps = pods(2);
    for p in &mut ps {
        p.faults.drop_after_bytes = Some(200_000);
    }
    let sim = start(ps);
    let sb = Sandbox::new();
    let rec = sb.home.path().join("buildctl.jsonl");
    let mut cmd = build(&sb, Some(&sim), &[]);
    cmd.env("SIM_BUILDCTL_PAYLOAD", "1048576")
        .env("SIM_BUILDCTL_RECORD", &rec);
    let (out, took) = sb.run_bounded(&mut cmd);
    let recs = records(&rec);
    assert_eq!(recs.len(), 1, "{}", stderr(&out));
    let code = recs[0]["exit_code"].as_i64().unwrap() as i32;
    assert_ne!(code, 0, "buildctl saw the failure: {}", stderr(&out));
    assert!(
        recs[0]["error"].as_str().unwrap_or("").contains("lost"),
        "{}",
        recs[0]
    );
    assert_eq!(out.status.code(), Some(code), "our exit is buildctl's");
    assert!(took < BOUND);
    sb.assert_clean("dropped build");

    // Through `tunnel -- buildctl build`, too.
    let ctx = sb.context();
    let ctx = ctx.to_str().unwrap();
    let mut cmd = tunnel(
        &sb,
        Some(&sim),
        &[],
        &[
            "buildctl",
            "build",
            "--frontend",
            "dockerfile.v0",
            "--local",
            &format!("context={ctx}"),
            "--local",
            &format!("dockerfile={ctx}"),
        ],
    );
    cmd.env("SIM_BUILDCTL_PAYLOAD", "1048576")
        .env("SIM_BUILDCTL_RECORD", &rec);
    let (out, _) = sb.run_bounded(&mut cmd);
    let recs = records(&rec);
    let code = recs[1]["exit_code"].as_i64().unwrap() as i32;
    assert_ne!(code, 0);
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    sb.assert_clean("dropped tunnel");
}

#[test]
fn buildctl_missing_in_the_pod() {
    let sb = Sandbox::new();
    let want = order(&sb, 3, "reg.example/app");
    let mut ps = pods(3);
    ps.iter_mut()
        .find(|p| p.name == want[0])
        .unwrap()
        .faults
        .buildctl_missing = true;
    let sim = start(ps);
    // Failover: the next pod builds, with a warning naming the first.
    let rec = sb.home.path().join("buildctl.jsonl");
    let mut cmd = build(&sb, Some(&sim), &[]);
    cmd.env("SIM_BUILDCTL_RECORD", &rec);
    let (out, _) = sb.run_bounded(&mut cmd);
    ok(&out);
    let err = stderr(&out);
    assert!(err.contains("is buildctl installed"), "{err}");
    assert!(
        err.contains(&format!("failing over to pod {}", want[1])),
        "{err}"
    );
    assert_eq!(records(&rec)[0]["served_by"]["pod"], want[1].as_str());
    sb.assert_clean("failover build");
    // No failover: a clear error.
    sb.expect_failure(
        "build --max-failover 0",
        &mut build(&sb, Some(&sim), &["--max-failover", "0"]),
        1,
        &[
            &format!("could not run in pod {}", want[0]),
            "is buildctl installed in that container",
            "--container",
        ],
    );
    sb.expect_failure(
        "tunnel --max-failover 0",
        &mut tunnel(
            &sb,
            Some(&sim),
            &["--max-failover", "0"],
            &["buildctl", "debug", "workers"],
        ),
        1,
        &["is buildctl installed in that container"],
    );
}

#[test]
fn buildctl_missing_locally() {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    sb.expect_failure(
        "build",
        &mut build(&sb, Some(&sim), &["--buildctl", "/nonexistent/buildctl"]),
        1,
        &["buildctl not found", "/nonexistent/buildctl", "--buildctl"],
    );
    sb.expect_failure(
        "tunnel",
        &mut tunnel(&sb, Some(&sim), &[], &["/nonexistent/buildctl", "du"]),
        1,
        &["not found", "/nonexistent/buildctl"],
    );
}

#[test]
fn docker_missing_for_the_load_step() {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    let ctx = sb.context();
    let mut cmd = sb.plugin(Some(&sim));
    cmd.args(["build", "--docker", "/nonexistent/docker"])
        .arg(&ctx)
        .env("IMAGE", "reg.example/app:1")
        .env("PUSH_IMAGE", "false");
    sb.expect_failure(
        "build",
        &mut cmd,
        1,
        &["docker (for `docker load`) not found", "--docker"],
    );
}

#[test]
fn no_eligible_pods() {
    let mut ps = pods(2);
    ps[0].ready = false;
    ps[1].terminating = true;
    let sim = start(ps);
    let sb = Sandbox::new();
    both_fail(
        &sb,
        Some(&sim),
        &[],
        &[
            "none can take builds",
            "buildkitd-0 (NotReady)",
            "buildkitd-1 (Terminating)",
            "--include-unready",
        ],
    );
    both_fail(
        &sb,
        Some(&sim),
        &["-l", "app=nothing"],
        &["no pods match selector \"app=nothing\"", "-l/--selector"],
    );
}

#[test]
fn namespace_that_does_not_exist() {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    both_fail(
        &sb,
        Some(&sim),
        &["-n", "nosuchns"],
        &["namespace \"nosuchns\" does not exist", "-n"],
    );
}

#[test]
fn kubeconfig_unreadable_malformed_or_missing_context() {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    let bad = sb.home.path().join("malformed");
    std::fs::write(&bad, "clusters: [ this is: not yaml").unwrap();
    let bad = bad.to_str().unwrap().to_string();
    both_fail(
        &sb,
        None,
        &["--kubeconfig", &bad],
        &["kubeconfig", "not valid"],
    );
    // Root (which runs these tests) reads a chmod 000 file, but nobody reads a
    // directory as a file: the path exists and still cannot be read.
    let unreadable = sb.home.path().join("kubeconfig-dir");
    std::fs::create_dir(&unreadable).unwrap();
    assert!(std::fs::read_to_string(&unreadable).is_err());
    let unreadable = unreadable.to_str().unwrap().to_string();
    both_fail(
        &sb,
        None,
        &["--kubeconfig", &unreadable],
        &[&format!("cannot read kubeconfig {unreadable}")],
    );
    both_fail(
        &sb,
        None,
        &["--kubeconfig", "/nonexistent/kubeconfig"],
        &["cannot read kubeconfig /nonexistent/kubeconfig"],
    );
    both_fail(
        &sb,
        Some(&sim),
        &["--context", "nope"],
        &["context \"nope\" not found", "--context"],
    );
}

#[test]
fn exec_credential_plugin_that_fails() {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    let script = sb.home.path().join("cred-plugin");
    std::fs::write(&script, "#!/bin/sh\necho 'token expired' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let kc = edited_kubeconfig(&sim, &sb.home, |v| {
        v["users"][0]["user"] = serde_yaml::from_str(&format!(
            "exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: {}\n",
            script.display()
        ))
        .unwrap();
    });
    let kc = kc.to_str().unwrap();
    both_fail(
        &sb,
        None,
        &["--kubeconfig", kc],
        &["credential plugin", "token expired"],
    );
}

#[test]
fn names_are_validated_before_they_reach_a_url() {
    let sim = start(pods(2));
    let sb = Sandbox::new();
    for (flags, needle) in [
        (["--pod", "../x"], "invalid pod name \"../x\""),
        (["-n", "a/b"], "invalid namespace \"a/b\""),
        (["--pod", "x%2F..%2Fy"], "invalid pod name"),
        (["-n", ".."], "invalid namespace \"..\""),
    ] {
        both_fail(&sb, Some(&sim), &flags, &[needle]);
    }
    for r in sim.requests() {
        assert!(
            !r.path.contains("..") && !r.path.contains("a/b") && !r.path.contains('%'),
            "a bad name reached the server: {r:?}"
        );
    }
}

#[test]
fn garbage_pod_list_is_an_error_not_a_panic() {
    let sim = start(pods(2));
    sim.set_faults(ServerFaults {
        list_garbage: true,
        ..ServerFaults::default()
    });
    let sb = Sandbox::new();
    let needles = ["cannot read", "listing pods"];
    both_fail(&sb, Some(&sim), &[], &needles);
    let (out, _) = sb.run_bounded(plugin(Some(&sim), &sb.home).args(["ring", "k"]));
    let err = fails_with(&out, 1, &needles);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn huge_label_values_are_read_correctly() {
    let big = "v".repeat(10 << 20);
    let ps: Vec<PodConfig> = pods(3)
        .into_iter()
        .map(|mut p| {
            p.labels.insert("huge".into(), big.clone());
            p
        })
        .collect();
    let sim = start(ps);
    let sb = Sandbox::new();
    let (out, took) = sb.run_bounded(plugin(Some(&sim), &sb.home).args(["pods", "-o", "name"]));
    assert_eq!(
        ok(&out),
        "pod/buildkitd-0\npod/buildkitd-1\npod/buildkitd-2\n"
    );
    assert!(took < BOUND);
    let want = order(&sb, 3, "reg.example/app");
    let rec = sb.home.path().join("buildctl.jsonl");
    let mut cmd = build(&sb, Some(&sim), &[]);
    cmd.env("SIM_BUILDCTL_RECORD", &rec);
    ok(&sb.run_bounded(&mut cmd).0);
    assert_eq!(records(&rec)[0]["served_by"]["pod"], want[0].as_str());
    sb.assert_clean("build with huge labels");
}

#[test]
fn ten_thousand_pods_are_read_correctly_in_bounded_time() {
    raise_fd_limit(12_000);
    let n = 10_000;
    let sim = start(pods(n));
    let sb = Sandbox::new();
    // A generous bound: a loaded 2-core runner takes seconds for 10,000 pods; a hang
    // takes forever.
    let limit = std::time::Duration::from_secs(120);
    let t = std::time::Instant::now();
    let (out, took) = run_bounded(
        plugin(Some(&sim), &sb.home).args(["pods", "-o", "name"]),
        limit,
    );
    let names = ok(&out);
    assert_eq!(names.lines().count(), n);
    assert!(names.contains("pod/buildkitd-9999\n"));
    assert!(took < limit, "{took:?}");
    // The cluster's answer equals the offline ring over the same names.
    let keys = ["reg.example/app", "/src/web", "k"];
    let (out, _) = run_bounded(
        plugin(Some(&sim), &sb.home)
            .args(["ring", "-o", "json", "--algorithm", "rendezvous"])
            .args(keys),
        limit,
    );
    let live = json(&out);
    let file = sb.home.path().join("names.txt");
    let list: String = (0..n).map(|i| format!("buildkitd-{i}\n")).collect();
    std::fs::write(&file, list).unwrap();
    let offline = json(&run(plugin(None, &sb.home)
        .args([
            "ring",
            "-o",
            "json",
            "--algorithm",
            "rendezvous",
            "--pods-file",
        ])
        .arg(&file)
        .args(keys)));
    for i in 0..keys.len() {
        assert_eq!(
            live["keys"][i]["pod"], offline["keys"][i]["pod"],
            "{}",
            keys[i]
        );
    }
    eprintln!("10,000 pods: pods took {took:?}, all {:?}", t.elapsed());
}

/// Each simulated pod holds a listening socket: make room for 10,000 of them.
fn raise_fd_limit(want: u64) {
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            assert!(
                lim.rlim_max >= want,
                "this test needs {want} open files; the hard limit is {}",
                lim.rlim_max
            );
            lim.rlim_cur = want;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
}
