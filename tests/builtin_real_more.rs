//! More of the built-in BuildKit client on a REAL BuildKit (dockerd 20.10, BuildKit
//! v0.8, worker `moby`; the kube_sim::realkit fixture behind simulated pods), with no
//! buildctl on PATH: the three progress styles, labels on an image in dockerd's own
//! image store, SSH agent forwarding, and registry credentials from a docker
//! credential helper. Every check reads what the daemon produced: its Status stream
//! as rendered, `docker image inspect`, exported files, the registry's answers.

mod common;

use base64::Engine;
use common::real::*;
use common::*;
use kube_sim::realkit::{RealBuildkit, BUSYBOX_IMAGE};

/// A word no earlier build on the shared daemons has seen, so its RUN is not cached.
fn fresh(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "kbk-{what}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A project whose Dockerfile runs one step that prints `marker`.
fn echo_project(marker: &str) -> Project {
    let p = Project::new();
    std::fs::write(
        p.ctx().join("Dockerfile"),
        format!("FROM {BUSYBOX_IMAGE}\nRUN echo {marker} > /m && cat /m\n"),
    )
    .unwrap();
    p
}

#[test]
fn rawjson_progress_is_one_json_object_a_line_and_names_the_run_step() {
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let sim = real_cluster(kit, &[("real-0", 0)]);
    let marker = fresh("rawjson");
    let p = echo_project(&marker);
    // -q: the plugin's own notes go, so stderr is the progress stream alone.
    let out = run(build_with_progress(&p, &sim, "rawjson").arg("-q"));
    ok(&out);
    let mut vertexes = Vec::new();
    let mut logs = Vec::new();
    let mut lines = 0;
    for (stream, text) in [("stdout", stdout(&out)), ("stderr", stderr(&out))] {
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{stream} line is not JSON ({e}): {line:?}"));
            assert!(v.is_object(), "{stream}: {line}");
            lines += 1;
            vertexes.extend(v["vertexes"].as_array().cloned().unwrap_or_default());
            logs.extend(v["logs"].as_array().cloned().unwrap_or_default());
        }
    }
    assert!(lines >= 3, "a real build streams several updates: {lines}");
    let step = format!("RUN echo {marker} > /m && cat /m");
    let run_step: Vec<&serde_json::Value> = vertexes
        .iter()
        .filter(|v| v["name"].as_str().is_some_and(|n| n.contains(&step)))
        .collect();
    assert!(
        !run_step.is_empty(),
        "no vertex named {step:?}: {vertexes:#?}"
    );
    let digest = run_step[0]["digest"].as_str().expect("a vertex digest");
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(
        run_step
            .iter()
            .any(|v| v["completed"].is_string() && v["error"].is_null()),
        "the RUN vertex completed without error: {run_step:#?}"
    );
    // The step's output, as the daemon logged it (base64 `data` of that vertex).
    let printed: Vec<u8> = logs
        .iter()
        .filter(|l| l["vertex"] == digest)
        .flat_map(|l| {
            base64::engine::general_purpose::STANDARD
                .decode(l["data"].as_str().unwrap_or_default())
                .expect("log data is base64")
        })
        .collect();
    assert!(
        String::from_utf8_lossy(&printed).contains(&marker),
        "the RUN's log holds what it printed: {:?}",
        String::from_utf8_lossy(&printed)
    );
    p.assert_clean();
}

#[test]
fn tty_progress_on_a_terminal_shows_the_run_step_and_finishes() {
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let sim = real_cluster(kit, &[("real-0", 0)]);
    let marker = fresh("tty");
    let p = echo_project(&marker);
    let out = on_a_terminal(&build_with_progress(&p, &sim, "tty"), "CMD");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let final_frame = shown
        .rfind("[+] Building")
        .map(|i| &shown[i..])
        .unwrap_or_else(|| panic!("no [+] Building header: {shown:?}"));
    let header = final_frame.lines().next().unwrap();
    assert!(header.contains("FINISHED"), "{header:?}\n{shown:?}");
    assert!(
        final_frame
            .lines()
            .any(|l| l.contains("=> ") && l.contains(&format!("RUN echo {marker}"))),
        "the final frame lists the RUN step: {final_frame:?}"
    );
    assert!(
        shown.contains("built on pod real-0"),
        "the plugin's note follows: {shown:?}"
    );
    p.assert_clean();
}

/// The number of the plain-progress block whose title line holds `title`.
#[track_caller]
fn block_of(err: &str, title: &str) -> String {
    let line = err
        .lines()
        .find(|l| l.starts_with('#') && l.contains(" [") && l.contains(title))
        .unwrap_or_else(|| panic!("no `#N [..] {title}` line in:\n{err}"));
    let n = line.split_whitespace().next().unwrap();
    assert!(
        n[1..].chars().all(|c| c.is_ascii_digit()) && n.len() > 1,
        "{line}"
    );
    n.to_string()
}

#[test]
fn plain_progress_numbers_the_steps_and_says_done_then_cached() {
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let sim = real_cluster(kit, &[("real-0", 0)]);
    let marker = fresh("plain");
    let p = echo_project(&marker);
    let title = format!("RUN echo {marker}");
    let out = run(&mut build(&p, &sim));
    ok(&out);
    let err = stderr(&out);
    let n = block_of(&err, &title);
    assert!(
        err.lines()
            .any(|l| l.starts_with(&format!("{n} DONE ")) && l.ends_with('s')),
        "{n} DONE <time>s:\n{err}"
    );
    assert!(
        err.lines().any(|l| l.starts_with(&format!("{n} "))
            && l.split_whitespace()
                .nth(1)
                .is_some_and(|t| t.parse::<f64>().is_ok())
            && l.ends_with(&marker)),
        "the RUN's output as `{n} <seconds> {marker}`:\n{err}"
    );
    // The same build again: the daemon has that step in its cache.
    let out = run(&mut build(&p, &sim));
    ok(&out);
    let err = stderr(&out);
    let n = block_of(&err, &title);
    assert!(
        err.lines().any(|l| l == format!("{n} CACHED")),
        "{n} CACHED:\n{err}"
    );
    assert!(
        !err.lines()
            .any(|l| l.ends_with(&marker) && !l.contains("RUN")),
        "a cached step does not run again:\n{err}"
    );
    p.assert_clean();
}

#[test]
fn labels_land_on_the_image_in_dockerds_store() {
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let sim = real_cluster(kit, &[("real-0", 0)]);
    let p = Project::new();
    let tag = format!("kbk-labels/app:{}", std::process::id());
    std::fs::write(
        p.ctx().join("Dockerfile"),
        format!(
            "FROM {BUSYBOX_IMAGE}\nLABEL org.kbk.from-dockerfile=kept\nRUN echo labelled > /l\n"
        ),
    )
    .unwrap();
    let metadata = p.root().join("metadata.json");
    let out = run(build(&p, &sim).args([
        "--label",
        "org.kbk.one=1",
        "--label",
        "org.kbk.words=two words, a comma=and equals",
        "-o",
        &format!("type=moby,name={tag}"),
        "--metadata-file",
        metadata.to_str().unwrap(),
    ]));
    ok(&out);
    let inspect = kit.daemons()[0]
        .docker()
        .args(["image", "inspect", &tag])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "the image {tag} is in the daemon's store: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let image: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let labels = &image[0]["Config"]["Labels"];
    assert_eq!(labels["org.kbk.one"], "1", "{labels}");
    assert_eq!(
        labels["org.kbk.words"], "two words, a comma=and equals",
        "{labels}"
    );
    assert_eq!(labels["org.kbk.from-dockerfile"], "kept", "{labels}");
    // --metadata-file holds the daemon's exporter response: the digest of that image.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metadata).unwrap()).unwrap();
    assert_eq!(
        meta["containerimage.digest"], image[0]["Id"],
        "metadata {meta:#} vs image {}",
        image[0]["Id"]
    );
    // The other daemon (another pod's cache) never saw it.
    let other = kit.daemons()[1]
        .docker()
        .args(["image", "inspect", &tag])
        .output()
        .unwrap();
    assert!(!other.status.success());
    p.assert_clean();
}
