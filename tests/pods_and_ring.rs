//! `pods` and `ring` against the simulated cluster, run as a user runs them.

mod common;
use common::*;

fn mixed_cluster() -> Sim {
    let mut pods = pods(4);
    let mut unready = PodConfig::new(NS, "buildkitd-4");
    unready.ready = false;
    let mut terminating = PodConfig::new(NS, "buildkitd-5");
    terminating.terminating = true;
    let mut pending = PodConfig::new(NS, "buildkitd-6");
    pending.phase = "Pending".into();
    pending.ready = false;
    let web = PodConfig::new(NS, "web-0").with_labels(&[("app", "web")]);
    pods.extend([unready, terminating, pending, web]);
    start(pods)
}

#[test]
fn pods_json_lists_every_match_with_eligibility_and_shares() {
    let sim = mixed_cluster();
    let home = Home::new();
    let out =
        run(plugin(Some(&sim), &home).args(["pods", "-o", "json", "--hash-key", "gcr.io/me/app"]));
    let v = json(&out);
    assert_eq!(v["namespace"], NS);
    assert_eq!(v["selector"], "app=buildkitd");
    assert_eq!(v["algorithm"], "classic");
    let pods = v["pods"].as_array().unwrap();
    let names: Vec<&str> = pods.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        (0..7).map(|i| format!("buildkitd-{i}")).collect::<Vec<_>>()
    );
    let reason = |n: usize| pods[n]["reason"].as_str();
    assert_eq!(reason(4), Some("NotReady"));
    assert_eq!(reason(5), Some("Terminating"));
    assert_eq!(reason(6), Some("Pending"));
    for p in &pods[..4] {
        assert_eq!(p["eligible"], true);
        assert!(p["reason"].is_null());
        assert_eq!(p["node"], "node-1");
        assert!(p["ip"].as_str().unwrap().starts_with("10."));
    }
    let total: f64 = pods.iter().filter_map(|p| p["share"].as_f64()).sum();
    assert!(
        (total - 1.0).abs() < 1e-9,
        "eligible shares sum to 1: {total}"
    );
    assert!(pods[4]["share"].is_null());
    assert_eq!(v["key"], "gcr.io/me/app");
    let order: Vec<&str> = v["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(order.len(), 4);
    assert_eq!(v["chosen"], order[0]);

    // The same answer offline, from the eligible names alone.
    let offline = run(plugin(None, &home).args([
        "ring",
        "--pods",
        "buildkitd-3,buildkitd-1,buildkitd-0,buildkitd-2",
        "-o",
        "json",
        "gcr.io/me/app",
    ]));
    let r = json(&offline);
    assert_eq!(r["keys"][0]["pod"], v["chosen"]);
    assert_eq!(r["keys"][0]["order"], v["order"]);
}

#[test]
fn pods_table_marks_the_chosen_pod_and_image_is_the_default_key() {
    let sim = mixed_cluster();
    let home = Home::new();
    let out = run(plugin(Some(&sim), &home)
        .args(["pods"])
        .env("IMAGE", "gcr.io/me/app:v42"));
    let text = ok(&out);
    let header = text.lines().next().unwrap();
    for col in [
        "NAME", "READY", "STATUS", "RESTARTS", "AGE", "NODE", "SHARE", "ORDER",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let chosen: Vec<&str> = text.lines().filter(|l| l.contains("1 (chosen)")).collect();
    assert_eq!(chosen.len(), 1, "{text}");
    let json_out = json(&run(plugin(Some(&sim), &home)
        .args(["pods", "-o", "json"])
        .env("IMAGE", "gcr.io/me/app:v42")));
    assert_eq!(json_out["key"], "gcr.io/me/app", "tag dropped");
    assert!(chosen[0].starts_with(json_out["chosen"].as_str().unwrap()));
    assert!(text.contains("Terminating"));
    assert!(
        text.contains(" 60m "),
        "an hour-old pod is 60m old, as kubectl says: {text}"
    );
    let names = ok(&run(plugin(Some(&sim), &home).args(["pods", "-o", "name"])));
    assert_eq!(names.lines().count(), 7);
    assert!(names.starts_with("pod/buildkitd-0\n"));
    let wide = ok(&run(plugin(Some(&sim), &home).args(["pods", "-o", "wide"])));
    assert!(wide.lines().next().unwrap().contains("IP"));
    let yaml = ok(&run(plugin(Some(&sim), &home).args(["pods", "-o", "yaml"])));
    let y: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(y["namespace"], NS);
    assert!(y["chosen"].is_null(), "no key, no choice");
}

#[test]
fn ring_from_cluster_matches_ring_offline_for_every_algorithm() {
    let sim = mixed_cluster();
    let home = Home::new();
    for alg in ["classic", "buildx", "rendezvous"] {
        let keys = ["gcr.io/a/b", "reg:5000/c", "/src/app"];
        let live = json(&run(plugin(Some(&sim), &home)
            .args(["ring", "-o", "json", "--algorithm", alg])
            .args(keys)));
        let file = home.path().join("pods.txt");
        std::fs::write(
            &file,
            "pod/buildkitd-2\n\nbuildkitd-0\n  buildkitd-3\nbuildkitd-1\n",
        )
        .unwrap();
        let offline = json(&run(plugin(None, &home)
            .args(["ring", "-o", "json", "--algorithm", alg, "--pods-file"])
            .arg(&file)
            .args(keys)));
        assert_eq!(live, offline, "{alg}");
        assert_eq!(live["algorithm"], alg);
        let pods = live["pods"].as_array().unwrap();
        assert_eq!(pods.len(), 4, "eligible pods only");
        if alg == "rendezvous" {
            assert!(pods.iter().all(|p| p["share"] == 0.25 && p["points"] == 0));
        } else if alg == "classic" {
            assert!(pods.iter().all(|p| p["points"].as_u64().unwrap() >= 119));
        }
        assert_eq!(live["keys"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn ring_reads_pods_from_stdin_and_shows_a_scale_change() {
    let home = Home::new();
    let mut cmd = plugin(None, &home);
    cmd.args([
        "ring",
        "--pods-file",
        "-",
        "--add",
        "buildkitd-3",
        "-o",
        "json",
    ])
    .args((0..50).map(|i| format!("key-{i}")))
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"buildkitd-0\n\nbuildkitd-1\nbuildkitd-2\n")
        .unwrap();
    let out = finish_within(child, CHILD_DEADLINE);
    let v = json(&out);
    let moved = v["moved_share"].as_f64().unwrap();
    assert!(
        moved > 0.1 && moved < 0.45,
        "adding a 4th pod moves about a quarter: {moved}"
    );
    let keys = v["keys"].as_array().unwrap();
    let moved_keys = keys.iter().filter(|k| k["moved"] == true).count();
    for k in keys {
        let moved = k["pod"] != k["pod_after"];
        assert_eq!(k["moved"], moved);
        if moved {
            assert_eq!(
                k["pod_after"], "buildkitd-3",
                "keys only move to the new pod"
            );
        }
    }
    assert!(
        moved_keys > 0 && moved_keys < 30,
        "{moved_keys} of 50 keys moved"
    );

    let table =
        ok(&run(plugin(None, &home).args([
            "ring", "--pods", "a,b,c", "--remove", "b", "k1", "k2",
        ])));
    assert!(table.contains("moved:"), "{table}");
    assert!(table.contains("removing b"), "{table}");
    assert!(table.contains("MOVED"), "{table}");
}

#[test]
fn offline_ring_errors() {
    let home = Home::new();
    fails_with(
        &run(plugin(None, &home).args(["ring", "--pods", " , ", "k"])),
        1,
        &["--pods names no pods"],
    );
    fails_with(
        &run(plugin(None, &home).args(["ring", "--pods", "a,b", "--remove", "c"])),
        1,
        &["--remove c", "no such pod"],
    );
    fails_with(
        &run(plugin(None, &home).args(["ring", "--pods-file", "/nonexistent/pods"])),
        1,
        &["--pods-file", "/nonexistent/pods"],
    );
    fails_with(
        &run(plugin(None, &home).args(["ring", "--algorithm", "nope", "--pods", "a"])),
        2,
        &["nope"],
    );
}
