//! Every cluster-access error of `pods` and `ring`: a clear message naming the thing
//! and the fix, a non-zero exit, within a bounded time.

mod common;
use std::time::{Duration, Instant};

use common::*;

fn users_cluster() -> Sim {
    start_with_nolist_user(3)
}

#[test]
fn no_kubeconfig_anywhere() {
    let home = Home::new();
    let out = run(plugin(None, &home).args(["pods"]));
    fails_with(&out, 1, &["no kubeconfig", "--kubeconfig", "KUBECONFIG"]);
    let out = run(plugin(None, &home)
        .args(["pods"])
        .env("KUBECONFIG", "/nonexistent/a:/nonexistent/b"));
    fails_with(&out, 1, &["none of the files in KUBECONFIG exist"]);
}

#[test]
fn kubeconfig_flag_wins_and_merged_lists_work() {
    let sim = users_cluster();
    let home = Home::new();
    // KUBECONFIG names a missing file first: kubectl skips it, so do we.
    let list = format!("/nonexistent/kc:{}", sim.kubeconfig().display());
    ok(&run(plugin(None, &home)
        .args(["pods"])
        .env("KUBECONFIG", &list)));
    // --kubeconfig beats a broken KUBECONFIG.
    let out = run(plugin(None, &home)
        .args(["pods", "--kubeconfig"])
        .arg(sim.kubeconfig())
        .env("KUBECONFIG", "/nonexistent/only"));
    ok(&out);
}

#[test]
fn unreadable_or_malformed_kubeconfig() {
    let home = Home::new();
    let bad = home.path().join("bad");
    std::fs::write(&bad, "clusters: [ this is: not yaml").unwrap();
    let out = run(plugin(None, &home).args(["pods", "--kubeconfig"]).arg(&bad));
    fails_with(&out, 1, &["kubeconfig", "not valid"]);
    let out = run(plugin(None, &home).args(["pods", "--kubeconfig", "/nonexistent/kc"]));
    fails_with(&out, 1, &["cannot read kubeconfig /nonexistent/kc"]);
}

/// A kubeconfig that exists but cannot be read. Tests run as root, which reads a
/// chmod 000 file, so use what nobody can read as a text file: a directory, and bytes
/// that are not UTF-8. Through --kubeconfig, KUBECONFIG and ~/.kube/config alike.
#[test]
fn kubeconfig_that_exists_but_cannot_be_read() {
    let home = Home::new();
    let dir = home.path().join("kc-dir");
    std::fs::create_dir(&dir).unwrap();
    let binary = home.path().join("kc-binary");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    for path in [&dir, &binary] {
        let shown = path.display().to_string();
        let needle = format!("cannot read kubeconfig {shown}");
        let out = run(plugin(None, &home).args(["pods", "--kubeconfig", &shown]));
        fails_with(&out, 1, &[&needle]);
        let out = run(plugin(None, &home)
            .args(["ring", "k"])
            .env("KUBECONFIG", path));
        fails_with(&out, 1, &[&needle]);
    }
    let kube = home.path().join(".kube");
    std::fs::create_dir_all(kube.join("config")).unwrap();
    let out = run(plugin(None, &home).args(["pods"]));
    let shown = kube.join("config").display().to_string();
    fails_with(&out, 1, &[&format!("cannot read kubeconfig {shown}")]);
}

#[test]
fn unknown_context_lists_the_known_ones() {
    let sim = users_cluster();
    let home = Home::new();
    let out = run(plugin(Some(&sim), &home).args(["pods", "--context", "nope"]));
    fails_with(
        &out,
        1,
        &["context \"nope\" not found", "admin, nolist", "--context"],
    );
}

#[test]
fn unreachable_api_server() {
    let sim = users_cluster();
    let home = Home::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kc = edited_kubeconfig(&sim, &home, |v| {
        v["clusters"][0]["cluster"]["server"] = format!("https://127.0.0.1:{port}").into();
    });
    let t = Instant::now();
    let out = run(plugin(None, &home).args(["pods", "--kubeconfig"]).arg(&kc));
    fails_with(
        &out,
        1,
        &["cannot reach the API server", &format!("127.0.0.1:{port}")],
    );
    assert!(t.elapsed() < Duration::from_secs(20));
}

#[test]
fn slow_api_server_is_bounded_by_request_timeout() {
    let sim = users_cluster();
    sim.set_faults(ServerFaults {
        api_latency_ms: 5000,
        ..ServerFaults::default()
    });
    let home = Home::new();
    let t = Instant::now();
    let out = run(plugin(Some(&sim), &home).args(["pods", "--request-timeout", "500ms"]));
    fails_with(&out, 1, &["did not answer within --request-timeout 500ms"]);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[test]
fn rejected_token_is_a_401_with_advice() {
    let sim = users_cluster();
    let home = Home::new();
    let kc = edited_kubeconfig(&sim, &home, |v| {
        v["users"][0]["user"]["token"] = "not-the-token".into();
    });
    let out = run(plugin(None, &home).args(["pods", "--kubeconfig"]).arg(&kc));
    let err = fails_with(&out, 1, &["401", "log in again"]);
    assert!(
        !err.contains("not-the-token"),
        "the token never shows: {err}"
    );
}

#[test]
fn forbidden_list_is_a_403_naming_the_permission() {
    let sim = users_cluster();
    let home = Home::new();
    let out = run(plugin(Some(&sim), &home).args(["pods", "--context", "nolist"]));
    fails_with(
        &out,
        1,
        &[
            "403",
            "cannot list resource \"pods\"",
            "namespace \"buildkit\"",
        ],
    );
}

#[test]
fn unknown_namespace_is_named() {
    let sim = users_cluster();
    let home = Home::new();
    let out = run(plugin(Some(&sim), &home).args(["pods", "-n", "nosuchns"]));
    fails_with(&out, 1, &["namespace \"nosuchns\" does not exist", "-n"]);
    let out = run(plugin(Some(&sim), &home).args(["pods", "-n", "Bad_NS"]));
    fails_with(&out, 1, &["invalid namespace \"Bad_NS\""]);
}

#[test]
fn invalid_selector_and_no_match() {
    let sim = users_cluster();
    let home = Home::new();
    let out = run(plugin(Some(&sim), &home).args(["pods", "-l", "app in (a"]));
    fails_with(
        &out,
        1,
        &[
            "listing pods with selector \"app in (a\" in namespace buildkit",
            "the API server refused the request (400)",
            "fix the label selector given with -l/--selector",
        ],
    );
    let out = run(plugin(Some(&sim), &home).args(["ring", "-l", "app=nothing"]));
    fails_with(
        &out,
        1,
        &[
            "no pods match selector \"app=nothing\" in namespace buildkit",
            "-l/--selector",
        ],
    );
}

#[test]
fn matched_but_none_eligible_lists_reasons() {
    let mut a = PodConfig::new(NS, "buildkitd-0");
    a.ready = false;
    let mut b = PodConfig::new(NS, "buildkitd-1");
    b.terminating = true;
    let sim = start(vec![a, b]);
    let home = Home::new();
    let out = run(plugin(Some(&sim), &home).args(["pods"]));
    // The table still shows them, then the error says why nothing can build.
    assert!(stdout(&out).contains("buildkitd-0"));
    fails_with(
        &out,
        1,
        &[
            "none can take builds",
            "buildkitd-0 (NotReady)",
            "buildkitd-1 (Terminating)",
            "--include-unready",
        ],
    );
    let out = run(plugin(Some(&sim), &home).args(["ring", "k"]));
    fails_with(&out, 1, &["none can take builds"]);
    // --include-unready lets the Running one in, never the terminating one.
    let v = json(&run(plugin(Some(&sim), &home).args([
        "ring",
        "k",
        "--include-unready",
        "-o",
        "json",
    ])));
    assert_eq!(v["keys"][0]["pod"], "buildkitd-0");
    assert_eq!(v["pods"].as_array().unwrap().len(), 1);
}

#[test]
fn list_error_and_garbage_from_the_server() {
    let sim = users_cluster();
    let home = Home::new();
    sim.set_faults(ServerFaults {
        list_error: Some(500),
        ..ServerFaults::default()
    });
    fails_with(&run(plugin(Some(&sim), &home).args(["pods"])), 1, &["500"]);
    sim.set_faults(ServerFaults {
        list_garbage: true,
        ..ServerFaults::default()
    });
    fails_with(
        &run(plugin(Some(&sim), &home).args(["pods"])),
        1,
        &["cannot read"],
    );
}

/// `ring` without --pods asks the cluster, and fails like `pods` does.
#[test]
fn ring_from_the_cluster_reports_every_access_error() {
    let sim = users_cluster();
    let home = Home::new();
    let ring = |kc: Option<&std::path::Path>, flags: &[&str]| {
        let mut cmd = plugin(Some(&sim), &home);
        if let Some(kc) = kc {
            cmd.arg("--kubeconfig").arg(kc);
        }
        run(cmd.args(["ring", "gcr.io/me/app"]).args(flags))
    };
    // The cluster works: the control case.
    let v = json(&ring(None, &["-o", "json"]));
    assert_eq!(v["pods"].as_array().unwrap().len(), 3);

    fails_with(
        &ring(None, &["--context", "nope"]),
        1,
        &["context \"nope\" not found", "admin, nolist", "--context"],
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = edited_kubeconfig(&sim, &home, |v| {
        v["clusters"][0]["cluster"]["server"] = format!("https://127.0.0.1:{port}").into();
    });
    let t = Instant::now();
    fails_with(
        &ring(Some(&down), &[]),
        1,
        &["cannot reach the API server", &format!("127.0.0.1:{port}")],
    );
    assert!(t.elapsed() < Duration::from_secs(20));

    let bad_token = home.path().join("bad-token");
    std::fs::copy(
        edited_kubeconfig(&sim, &home, |v| {
            v["users"][0]["user"]["token"] = "not-the-token".into();
        }),
        &bad_token,
    )
    .unwrap();
    let err = fails_with(
        &ring(Some(&bad_token), &[]),
        1,
        &["401 Unauthorized", "log in again", &sim.url()],
    );
    assert!(!err.contains("not-the-token"), "{err}");

    fails_with(
        &ring(None, &["--context", "nolist"]),
        1,
        &[
            "403",
            "cannot list resource \"pods\"",
            "namespace \"buildkit\"",
            "rbac.yaml",
        ],
    );
    fails_with(
        &ring(None, &["-n", "nosuchns"]),
        1,
        &["namespace \"nosuchns\" does not exist", "-n"],
    );
    let err = fails_with(
        &ring(None, &["-l", "app in (a"]),
        1,
        &[
            "listing pods with selector \"app in (a\" in namespace buildkit",
            "the API server refused the request (400)",
            "fix the label selector given with -l/--selector",
        ],
    );
    assert!(err.starts_with("error: "), "{err}");
    // Nothing on stdout for any failure: no half-printed ring.
    assert_eq!(stdout(&ring(None, &["--context", "nolist"])), "");
}
