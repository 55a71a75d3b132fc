//! The first-run demo (examples/demo.rs) works: it runs the plugin against the
//! simulated cluster and shows the pods table, the ring, and the pod that served the
//! builds.

mod common;
use std::process::Command;

use common::*;

#[test]
fn the_demo_shows_pods_ring_and_the_pod_that_served_the_build() {
    let home = Home::new();
    let mut cmd = Command::new(example_binary("demo", &["examples/demo.rs"]));
    // The demo makes its own HOME and KUBECONFIG; give it a clean start anyway.
    clean_env(&mut cmd, &home);
    // As a user runs it: no --cli default from the test harness.
    cmd.env_remove("KUBECTL_BUILDKIT_CLI");
    cmd.current_dir(home.path());
    let out = run(&mut cmd);
    let text = ok(&out);
    // The pods table: header, the unready pod shown but not eligible, the chosen one.
    let table = text
        .lines()
        .find(|l| l.starts_with("NAME") && l.contains("READY") && l.contains("SHARE"))
        .unwrap_or_else(|| panic!("no pods table:\n{text}"));
    assert!(table.contains("ORDER"), "{table}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("buildkitd-3") && l.contains("0/1") && l.contains("NotReady")),
        "{text}"
    );
    // The ring: a key, its pod, its fallback order; then the scale-up preview.
    assert!(text.contains("algorithm: classic"), "{text}");
    assert!(text.contains("KEY") && text.contains("FALLBACK"), "{text}");
    assert!(
        text.contains("changes pod when adding buildkitd-3"),
        "{text}"
    );
    // Both builds, the plugin's note and the sim's count naming the same pod.
    let notes: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("kubectl-buildkit: built on pod "))
        .collect();
    assert_eq!(notes.len(), 2, "{text}");
    let pod = notes[0].split_whitespace().next().unwrap();
    assert!(
        ["buildkitd-0", "buildkitd-1", "buildkitd-2"].contains(&pod),
        "{pod}"
    );
    assert!(notes[1].starts_with(&format!("{pod} ")), "{notes:?}");
    assert!(
        text.contains(&format!("saw the connection on pod {pod}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("  {pod:<12} connections=2")),
        "{text}"
    );
    assert!(text.contains("temporary files are removed"), "{text}");

    // It cleaned up: its kubeconfig and HOME (both in temporary directories) are gone.
    let line = text
        .lines()
        .find(|l| l.starts_with("# KUBECONFIG="))
        .unwrap_or_else(|| panic!("no KUBECONFIG line:\n{text}"));
    for word in line.trim_start_matches("# ").split_whitespace() {
        let path = std::path::Path::new(word.split_once('=').unwrap().1);
        assert!(
            path.is_absolute() && !path.exists(),
            "{} left behind",
            path.display()
        );
    }
}
