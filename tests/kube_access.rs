//! How the plugin reaches the cluster, as kubectl does: `--cluster` and `--user`
//! override the context's entries, the namespace comes from -n, else the context, else
//! `default`; `-q` hides notes and detail but never warnings or errors; `--container`
//! picks the container of a pod with several.

mod common;
mod reliability_support;

use std::path::PathBuf;

use common::*;
use reliability_support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn names(out: &std::process::Output) -> Vec<String> {
    ok(out).lines().map(str::to_string).collect()
}

/// The sim's kubeconfig plus broken entries: cluster `broken` (nothing listens on
/// `port`), user `baduser` (a token the server rejects), and context `brokenctx` =
/// cluster `broken` + the good user `admin`. The current context stays `admin`.
fn kubeconfig_with_broken_entries(sim: &Sim, home: &Home, port: u16) -> PathBuf {
    edited_kubeconfig(sim, home, |v| {
        let mut cluster = v["clusters"][0].clone();
        cluster["name"] = "broken".into();
        cluster["cluster"]["server"] = format!("https://127.0.0.1:{port}").into();
        v["clusters"].as_sequence_mut().unwrap().push(cluster);
        let user: serde_yaml::Value =
            serde_yaml::from_str("name: baduser\nuser:\n  token: rejected-token-31337\n").unwrap();
        v["users"].as_sequence_mut().unwrap().push(user);
        let ctx: serde_yaml::Value = serde_yaml::from_str(&format!(
            "name: brokenctx\ncontext:\n  cluster: broken\n  user: admin\n  namespace: {NS}\n"
        ))
        .unwrap();
        v["contexts"].as_sequence_mut().unwrap().push(ctx);
    })
}

#[test]
fn cluster_and_user_flags_override_the_contexts_entries() {
    let sim = start_with_nolist_user(3);
    let home = Home::new();
    let port = free_port();
    let kc = kubeconfig_with_broken_entries(&sim, &home, port);
    let pods_with = |flags: &[&str]| {
        run(plugin(None, &home)
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["pods", "-o", "name"])
            .args(flags))
    };
    let all = ["pod/buildkitd-0", "pod/buildkitd-1", "pod/buildkitd-2"];
    assert_eq!(names(&pods_with(&[])), all, "the current context works");

    // --user: the named user's credentials go to the context's (good) cluster.
    let err = fails_with(
        &pods_with(&["--user", "baduser"]),
        1,
        &["401 Unauthorized", "log in again", &sim.url()],
    );
    assert!(!err.contains("rejected-token-31337"), "token shown: {err}");
    fails_with(
        &pods_with(&["--user", "nolist"]),
        1,
        &["403", "User \"nolist\" cannot list resource \"pods\""],
    );
    // ... and overriding the user back to a good one fixes a context's bad user.
    assert_eq!(
        names(&pods_with(&["--context", "nolist", "--user", "admin"])),
        all
    );

    // --cluster: the named cluster's server, with the context's user.
    fails_with(
        &pods_with(&["--cluster", "broken"]),
        1,
        &["cannot reach the API server", &format!("127.0.0.1:{port}")],
    );
    fails_with(
        &pods_with(&["--context", "brokenctx"]),
        1,
        &["cannot reach the API server", &format!("127.0.0.1:{port}")],
    );
    assert_eq!(
        names(&pods_with(&["--context", "brokenctx", "--cluster", "sim"])),
        all,
        "--cluster repairs the context's broken cluster"
    );
    // Before the subcommand, as kubectl users type them, too.
    let out = run(plugin(None, &home)
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["--context", "brokenctx", "--cluster", "sim", "--user"])
        .args(["baduser", "pods"]));
    fails_with(&out, 1, &["401 Unauthorized", &sim.url()]);

    // Names not in the kubeconfig are refused before any request.
    let before = sim.requests().len();
    let kc_shown = kc.display().to_string();
    fails_with(
        &pods_with(&["--cluster", "nope"]),
        1,
        &["cluster \"nope\" not found", &kc_shown, "--cluster"],
    );
    fails_with(
        &pods_with(&["--user", "nope"]),
        1,
        &["user \"nope\" not found", &kc_shown, "--user"],
    );
    assert_eq!(sim.requests().len(), before, "no request was made");
}

#[test]
fn namespace_is_the_flag_then_the_contexts_then_default() {
    let mut ps = pods(1);
    ps.push(PodConfig::new("default", "buildkitd-a"));
    ps.push(PodConfig::new("default", "buildkitd-b"));
    let sim = start(ps);
    let home = Home::new();
    let in_buildkit = ["pod/buildkitd-0"];
    let in_default = ["pod/buildkitd-a", "pod/buildkitd-b"];

    // The context says namespace buildkit; -n overrides it.
    let ns_of = |out: &std::process::Output| json(out)["namespace"].clone();
    let out = run(plugin(Some(&sim), &home).args(["pods", "-o", "name"]));
    assert_eq!(names(&out), in_buildkit);
    let out = run(plugin(Some(&sim), &home).args(["pods", "-o", "name", "-n", "default"]));
    assert_eq!(names(&out), in_default);
    let out = run(plugin(Some(&sim), &home).args(["-n", "default", "pods", "-o", "json"]));
    assert_eq!(ns_of(&out), "default");

    // A context without a namespace: `default`, for pods and ring alike.
    let kc = edited_kubeconfig(&sim, &home, |v| {
        for ctx in v["contexts"].as_sequence_mut().unwrap() {
            let removed = ctx["context"].as_mapping_mut().unwrap().remove("namespace");
            assert!(removed.is_some(), "the sim's context had a namespace");
        }
    });
    let bare = |args: &[&str]| run(plugin(None, &home).arg("--kubeconfig").arg(&kc).args(args));
    let seen = sim.requests().len();
    assert_eq!(names(&bare(&["pods", "-o", "name"])), in_default);
    let out = bare(&["pods", "-o", "json"]);
    assert_eq!(ns_of(&out), "default");
    let ring = json(&bare(&["ring", "-o", "json", "k"]));
    let ring_pods: Vec<&str> = ring["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(ring_pods, ["buildkitd-a", "buildkitd-b"]);
    let lists: Vec<String> = sim.requests()[seen..]
        .iter()
        .filter(|r| r.path.ends_with("/pods"))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        lists, ["/api/v1/namespaces/default/pods"; 3],
        "pods, pods, ring"
    );
    // ... and -n still wins over that default.
    assert_eq!(names(&bare(&["pods", "-o", "name", "-n", NS])), in_buildkit);
    let out = bare(&["pods", "-n", "nosuchns"]);
    fails_with(&out, 1, &["namespace \"nosuchns\" does not exist", "-n"]);

    // `namespace: ""` in the context is no namespace, as kubectl reads it.
    let set_ns = |ns: &'static str| {
        edited_kubeconfig(&sim, &home, move |v| {
            for ctx in v["contexts"].as_sequence_mut().unwrap() {
                ctx["context"]["namespace"] = serde_yaml::Value::String(ns.into());
            }
        })
    };
    let empty = set_ns("");
    let seen = sim.requests().len();
    let out = run(plugin(None, &home)
        .arg("--kubeconfig")
        .arg(&empty)
        .args(["pods", "-o", "name"]));
    assert_eq!(names(&out), in_default);
    assert!(sim.requests()[seen..]
        .iter()
        .all(|r| !r.path.contains("//")));

    // A context namespace that is no valid name never reaches a URL.
    let bad = set_ns("a/b");
    let seen = sim.requests().len();
    let out = run(plugin(None, &home)
        .arg("--kubeconfig")
        .arg(&bad)
        .args(["pods"]));
    fails_with(&out, 1, &["\"a/b\"", "from context", "-n NAMESPACE"]);
    assert_eq!(
        sim.requests().len(),
        seen,
        "no request with a bad namespace"
    );
}

#[test]
fn quiet_hides_notes_and_detail_but_not_warnings_or_errors() {
    let sb = Sandbox::new();
    let names3: Vec<String> = (0..3).map(|i| format!("buildkitd-{i}")).collect();
    let names3: Vec<&str> = names3.iter().map(String::as_str).collect();
    let want = ring_order(&sb.home, &names3, "reg.example/app", "classic");
    let mut ps = pods(3);
    ps.iter_mut()
        .find(|p| p.name == want[0])
        .unwrap()
        .faults
        .buildctl_missing = true;
    let sim = start(ps);

    // `pods` with a key: a note names the chosen pod; -q drops it, the table stays.
    let loud = run(plugin(Some(&sim), &sb.home).args(["pods", "--hash-key", "reg.example/app"]));
    let table = ok(&loud);
    let note = format!("key \"reg.example/app\" -> {}", want[0]);
    assert!(stderr(&loud).contains(&note), "{}", stderr(&loud));
    let quiet =
        run(plugin(Some(&sim), &sb.home).args(["pods", "--hash-key", "reg.example/app", "-q"]));
    assert_eq!(ok(&quiet), table, "-q leaves stdout alone");
    assert_eq!(stderr(&quiet), "", "-q: nothing on stderr");

    // A build that fails over: -v detail, the failover warning and the closing note...
    let ctx = sb.context();
    let rec = sb.home.path().join("buildctl.jsonl");
    let build = |flags: &[&str]| {
        let mut cmd = sb.plugin(Some(&sim));
        cmd.args(flags)
            .args(["build", "-t", "reg.example/app:1", "--push"])
            .arg(&ctx)
            .env("SIM_BUILDCTL_RECORD", &rec);
        let (out, _) = sb.run_bounded(&mut cmd);
        ok(&out);
        sb.assert_clean("build");
        stderr(&out)
    };
    let failover = format!("warning: pod {} could not take the connection", want[0]);
    let over_to = format!("failing over to pod {}", want[1]);
    let built = format!("built on pod {}", want[1]);
    let err = build(&["-v"]);
    for needle in [failover.as_str(), &over_to, &built, "[v1] "] {
        assert!(
            err.contains(needle),
            "without -q, stderr lacks {needle:?}:\n{err}"
        );
    }
    // ... with -q (which beats -v): the warning alone, since it changes what happened.
    let err = build(&["-q", "-v"]);
    assert!(err.contains(&failover) && err.contains(&over_to), "{err}");
    assert!(!err.contains(&built), "-q drops notes:\n{err}");
    assert!(!err.contains("[v1]"), "-q drops -v detail:\n{err}");
    let served: Vec<serde_json::Value> = records(&rec)
        .iter()
        .map(|r| r["served_by"]["pod"].clone())
        .collect();
    assert_eq!(served, [want[1].as_str(), want[1].as_str()]);

    // Errors still print with -q.
    let out = run(plugin(Some(&sim), &sb.home).args(["-q", "pods", "-l", "app=nothing"]));
    fails_with(
        &out,
        1,
        &[
            "error: no pods match selector \"app=nothing\"",
            "-l/--selector",
        ],
    );
}

#[test]
fn container_flag_picks_the_container_of_a_pod_with_several() {
    let sim = start(two_container_pods(None));
    let sb = Sandbox::new();
    let want = app_order(&sb);
    let rec = records_path(&sb);
    let build = |flags: &[&str]| push_build(&sb, &sim, flags);
    let tunnel = |flags: &[&str]| {
        let mut cmd = sb.plugin(Some(&sim));
        cmd.args(["tunnel", "--hash-key", "reg.example/app"])
            .args(flags)
            .args(["--", "buildctl", "debug", "workers"])
            .env("SIM_BUILDCTL_RECORD", &rec);
        cmd
    };

    // Without --container the API server cannot tell which one: the error names them.
    let needles = [
        "a container name must be specified for pod",
        "choose one of: [sidecar buildkitd]",
        "--container NAME",
    ];
    let err = sb.expect_failure("build", &mut build(&[]), 1, &needles);
    assert!(err.contains(&want[0]), "{err}");
    sb.expect_failure("tunnel", &mut tunnel(&[]), 1, &needles);
    assert!(
        records(&rec).iter().all(|r| r["served_by"].is_null()),
        "no pod served: {:?}",
        records(&rec)
    );

    // With it, build and tunnel reach the chosen pod's buildkitd container.
    let before = sim.requests().len();
    let (out, _) = sb.run_bounded(&mut build(&["--container", "buildkitd"]));
    ok(&out);
    sb.assert_clean("build --container");
    let (out, _) = sb.run_bounded(&mut tunnel(&["-c", "buildkitd"]));
    ok(&out);
    sb.assert_clean("tunnel -c");
    let recs = records(&rec);
    let last_two: Vec<&serde_json::Value> = recs[recs.len() - 2..]
        .iter()
        .map(|r| &r["served_by"]["pod"])
        .collect();
    assert_eq!(last_two, [want[0].as_str(), want[0].as_str()]);
    let execs: Vec<_> = sim.requests()[before..]
        .iter()
        .filter(|r| r.path.ends_with("/exec"))
        .cloned()
        .collect();
    assert!(!execs.is_empty());
    for r in &execs {
        assert_eq!(
            r.path,
            format!("/api/v1/namespaces/{NS}/pods/{}/exec", want[0])
        );
        let query = r.query.as_deref().unwrap_or("");
        assert!(query.contains("container=buildkitd"), "{r:?}");
    }

    // A container the pod does not have is the API server's 400, naming it.
    sb.expect_failure(
        "build --container nope",
        &mut build(&["--container", "nope", "--max-failover", "0"]),
        1,
        &[&format!("container nope is not valid for pod {}", want[0])],
    );
    sb.expect_failure(
        "build --container Bad_Name",
        &mut build(&["--container", "Bad_Name"]),
        1,
        &["invalid container name \"Bad_Name\""],
    );
}

/// Pods with a sidecar (as Istio injects it) whose `kubectl.kubernetes.io/default-container`
/// annotation names buildkitd: as with `kubectl exec`, no --container is needed; an
/// annotation naming a container the pod lacks is ignored; --container still wins.
#[test]
fn the_default_container_annotation_is_honoured_like_kubectl_exec() {
    let annotated = |default: &str| two_container_pods(Some(default));
    let sb = Sandbox::new();
    let want = app_order(&sb);
    let rec = records_path(&sb);
    let build = |sim: &Sim, flags: &[&str]| push_build(&sb, sim, flags);
    let exec_queries = |sim: &Sim, from: usize| -> Vec<String> {
        sim.requests()[from..]
            .iter()
            .filter(|r| r.path.ends_with("/exec"))
            .map(|r| r.query.clone().unwrap_or_default())
            .collect()
    };

    let sim = start(annotated("buildkitd"));
    let (out, _) = sb.run_bounded(&mut build(&sim, &[]));
    ok(&out);
    sb.assert_clean("annotated build");
    assert_eq!(
        records(&rec).last().unwrap()["served_by"]["pod"],
        want[0].as_str()
    );
    let queries = exec_queries(&sim, 0);
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert!(queries[0].contains("container=buildkitd"), "{queries:?}");
    // --container wins over the annotation (the simulated pod runs buildctl in any of
    // its containers, so the request is what shows it).
    let seen = sim.requests().len();
    let _ = sb.run_bounded(&mut build(
        &sim,
        &["--container", "istio-proxy", "--max-failover", "0"],
    ));
    let queries = exec_queries(&sim, seen);
    assert!(
        !queries.is_empty() && queries.iter().all(|q| q.contains("container=istio-proxy")),
        "{queries:?}"
    );
    sb.assert_clean("build --container istio-proxy");

    // An annotation naming a container the pod does not have: ignored, so the API
    // server asks which container, and we point to --container.
    let sim = start(annotated("nope"));
    sb.expect_failure(
        "build, annotation names no container",
        &mut build(&sim, &["--max-failover", "0"]),
        1,
        &["a container name must be specified", "--container NAME"],
    );
    assert!(exec_queries(&sim, 0)
        .iter()
        .all(|q| !q.contains("container=")));
}

/// Two ready pods whose containers are a sidecar and buildkitd (as a sidecar injector
/// leaves them), with `kubectl.kubernetes.io/default-container: DEFAULT` when given.
fn two_container_pods(default: Option<&str>) -> Vec<PodConfig> {
    pods(2)
        .into_iter()
        .map(|mut p| {
            p.containers = vec!["sidecar".into(), "buildkitd".into()];
            if let Some(d) = default {
                p.annotations
                    .insert("kubectl.kubernetes.io/default-container".into(), d.into());
            }
            p
        })
        .collect()
}

/// The fallback order of the key "reg.example/app" over those two pods.
fn app_order(sb: &Sandbox) -> Vec<String> {
    ring_order(
        &sb.home,
        &["buildkitd-0", "buildkitd-1"],
        "reg.example/app",
        "classic",
    )
}

fn records_path(sb: &Sandbox) -> std::path::PathBuf {
    sb.home.path().join("buildctl.jsonl")
}

/// `build -t reg.example/app:1 --push FLAGS CONTEXT`, recording buildctl's runs.
fn push_build(sb: &Sandbox, sim: &Sim, flags: &[&str]) -> std::process::Command {
    let mut cmd = sb.plugin(Some(sim));
    cmd.args(["build", "-t", "reg.example/app:1", "--push"])
        .args(flags)
        .arg(sb.context())
        .env("SIM_BUILDCTL_RECORD", records_path(sb));
    cmd
}
