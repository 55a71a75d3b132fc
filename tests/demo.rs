//! The first-run demo (examples/demo.rs) works: it runs the plugin against the
//! simulated cluster and shows the pods table, the ring, and the pod that served the
//! builds; where the real-BuildKit fixture can run, those builds run on real BuildKit
//! through the built-in client, and the demo leaves no daemon or directory behind.

mod common;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

const READY: [&str; 3] = ["buildkitd-0", "buildkitd-1", "buildkitd-2"];

/// The demo as a user runs it (no --cli default from the test harness), with the
/// stand-in buildctl recording every run it makes into `records` (a file).
fn demo(home: &Home, records: &Path, extra_env: &[(&str, &str)]) -> (Output, Duration) {
    let mut cmd = Command::new(example_binary("demo", &["examples/demo.rs"]));
    // The demo makes its own HOME and KUBECONFIG; give it a clean start anyway.
    clean_env(&mut cmd, home);
    cmd.env_remove("KUBECTL_BUILDKIT_CLI")
        .env("SIM_BUILDCTL_RECORD", records)
        .envs(extra_env.iter().copied())
        .current_dir(home.path());
    let started = Instant::now();
    let out = run(&mut cmd);
    (out, started.elapsed())
}

/// What both paths show: the pods table, the ring, two builds on one pod (the
/// plugin's note and the sim's count agree); the pod. Also checks the cleanup of
/// its KUBECONFIG and HOME.
#[track_caller]
fn check_common(text: &str) -> String {
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
    assert!(READY.contains(&pod), "{pod}");
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
        let path = Path::new(word.split_once('=').unwrap().1);
        assert!(
            path.is_absolute() && !path.exists(),
            "{} left behind",
            path.display()
        );
    }
    pod.to_string()
}

#[test]
fn without_real_buildkit_the_demo_builds_on_simulated_pods_through_the_standin() {
    let home = Home::new();
    let record_file = home.path().join("buildctl.jsonl");
    let (out, took) = demo(&home, &record_file, &[("REALKIT_DISABLE", "1")]);
    let text = ok(&out);
    eprintln!("simulated demo took {took:?}");
    assert!(
        text.contains("The real BuildKit fixture cannot run here (REALKIT_DISABLE is set)"),
        "the demo says why it falls back:\n{text}"
    );
    assert!(text.contains("KUBECTL_BUILDKIT_CLI=buildctl"), "{text}");
    assert!(!text.contains("REAL BuildKit"), "{text}");
    let pod = check_common(&text);
    let recs = records(&record_file);
    assert_eq!(
        recs.len(),
        2,
        "both builds ran the stand-in buildctl: {recs:#?}"
    );
    for r in &recs {
        assert_eq!(r["served_by"]["pod"], pod.as_str(), "{r:#?}");
    }
}

#[test]
fn with_real_buildkit_the_demo_builds_on_it_through_the_builtin_client() {
    let home = Home::new();
    let record_file = home.path().join("buildctl.jsonl");
    let (out, took) = demo(&home, &record_file, &[]);
    let text = ok(&out);
    eprintln!("real demo took {took:?}");
    if let Some(line) = text
        .lines()
        .find(|l| l.contains("The real BuildKit fixture cannot run here"))
    {
        kube_sim::realkit::skip_or_fail(&kube_sim::realkit::Unavailable {
            reason: line.to_string(),
        });
        return;
    }
    let fixture = text
        .lines()
        .find_map(|l| l.strip_prefix("# REAL BuildKit: "))
        .unwrap_or_else(|| panic!("the demo does not say it runs on real BuildKit:\n{text}"));
    assert!(fixture.contains("built-in client"), "{fixture}");
    let pod = check_common(&text);
    // No build went through a buildctl: the stand-in never ran.
    assert!(!record_file.exists(), "{:#?}", records(&record_file));
    assert!(!text.contains("KUBECTL_BUILDKIT_CLI=buildctl"), "{text}");
    // The daemon behind the pod holds both images; the second build was cached; the
    // image runs (these lines are the daemon's and the image's own output).
    let image = "registry.example.com/kubectl-buildkit-example/app";
    for tag in ["v1", "v2"] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().take(2).eq([image, tag])),
            "docker image ls shows {image}:{tag}:\n{text}"
        );
    }
    let cached = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("# ")?.strip_suffix(&format!(
                " steps of the second build were CACHED by pod {pod}'s BuildKit"
            ))
        })
        .unwrap_or_else(|| panic!("no CACHED count:\n{text}"));
    assert!(cached.parse::<u32>().unwrap() >= 1, "{cached}");
    assert!(
        text.contains("hello from an image built by kubectl-buildkit"),
        "the image runs and prints the build-arg's greeting:\n{text}"
    );
    // Nothing left: the fixture's directory and every process naming it are gone.
    let dir = fixture
        .split_whitespace()
        .find(|w| w.starts_with('/') && w.contains("realkit-"))
        .unwrap_or_else(|| panic!("no fixture directory in {fixture:?}"))
        .trim_end_matches(',');
    let dir = Path::new(dir);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        leftovers(dir).is_empty(),
        "processes of the fixture left: {:?}",
        leftovers(dir)
    );
    assert!(
        took < Duration::from_secs(120),
        "the real demo took {took:?} (about 60 s is the budget)"
    );
}
