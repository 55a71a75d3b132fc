//! The progress spinner of `build` (issue 4): on stderr, only when stderr is a terminal,
//! never with -q, and stdout is left to buildctl. The terminal is a pseudo-terminal from
//! script(1) (util-linux); the build runs against the simulated cluster with the
//! stand-in buildctl. Every test also checks that nothing is left behind.

mod common;
use std::process::{Command, Output, Stdio};

use common::*;
use sha2::{Digest, Sha256};

const RESOLVING: &str = "resolving buildkitd pods";
const PODS: [&str; 3] = ["buildkitd-0", "buildkitd-1", "buildkitd-2"];
const IMAGE: &str = "reg.example.com/team/progress";

/// Three pods behind an API server slow enough (200 ms a request) for the spinner to
/// tick while the pods are resolved.
fn slow_sim() -> Sim {
    start_with(SimConfig {
        pods: pods(3),
        context_namespace: Some(NS.into()),
        faults: ServerFaults {
            api_latency_ms: 200,
            ..ServerFaults::default()
        },
        ..SimConfig::default()
    })
}

/// `kubectl-buildkit build ARGS` of the project, pushing $IMAGE.
fn push_build(p: &Project, sim: &Sim, args: &[&str]) -> Command {
    let mut cmd = p.build(Some(sim));
    cmd.args(args)
        .env("IMAGE", format!("{IMAGE}:v1"))
        .env("PUSH_IMAGE", "true");
    cmd
}

/// The one buildctl run so far: it succeeded on `pod`.
#[track_caller]
fn built_once_on(p: &Project, pod: &str) -> serde_json::Value {
    let recs = p.buildctl_records();
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0]["exit_code"], 0, "{:#?}", recs[0]);
    assert_eq!(recs[0]["served_by"]["pod"], pod, "{:#?}", recs[0]);
    recs[0].clone()
}

/// The pod the hash picks for $IMAGE.
fn hashed_pod(p: &Project) -> String {
    ring_order(&p.home, &PODS, IMAGE, "classic")[0].clone()
}

/// What the terminal showed, lossily as text.
fn screen(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_spinner_shows_on_a_terminal_for_both_tunnels() {
    let sim = slow_sim();
    for tunnel in ["exec", "port-forward"] {
        let p = Project::new();
        let want = hashed_pod(&p);
        let out = on_a_terminal(&push_build(&p, &sim, &["--tunnel", tunnel]), "CMD");
        let shown = screen(&out);
        assert_eq!(out.status.code(), Some(0), "{tunnel}: {shown}");
        assert!(shown.contains(RESOLVING), "{tunnel}: {shown:?}");
        let connecting = format!("connecting to pod {want} via {tunnel}");
        assert!(shown.contains(&connecting), "{tunnel}: {shown:?}");
        // The spinner's line is erased before buildctl writes its own progress.
        let last_spin = shown.rfind(&connecting).unwrap();
        let buildctl_starts = shown
            .find("[simkit] connected to pod")
            .unwrap_or_else(|| panic!("{tunnel}: no buildctl output: {shown:?}"));
        assert!(last_spin < buildctl_starts, "{tunnel}: {shown:?}");
        assert!(
            shown[last_spin..buildctl_starts].contains("\r\x1b[2K"),
            "{tunnel}: the spinner is cleared first: {shown:?}"
        );
        built_once_on(&p, &want);
        p.assert_clean();
    }
}

#[test]
fn quiet_hides_the_spinner_on_a_terminal() {
    let sim = slow_sim();
    let p = Project::new();
    let want = hashed_pod(&p);
    let out = on_a_terminal(&push_build(&p, &sim, &["-q"]), "CMD");
    let shown = screen(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(!shown.contains(RESOLVING), "{shown:?}");
    assert!(!shown.contains("connecting to pod"), "{shown:?}");
    // -q hides the notes too; the build itself happened.
    assert!(!shown.contains("built on pod"), "{shown:?}");
    built_once_on(&p, &want);
    p.assert_clean();
}

#[test]
fn no_spinner_when_stderr_is_a_pipe_even_with_stdout_on_a_terminal() {
    let sim = slow_sim();
    let p = Project::new();
    let want = hashed_pod(&p);
    let err_file = p.root().join("stderr.txt");
    // fd 3 is the terminal: the plugin's stdout goes there, its stderr into a pipe to cat.
    let shell = format!(
        "{{ [ -t 3 ] && echo 'stdout is a terminal'; \
         {{ CMD 2>&1 >&3 3>&-; echo \"plugin exit $?\" >&3; }} | cat > {}; }} 3>&1",
        sh_quote(err_file.to_str().unwrap())
    );
    let out = on_a_terminal(&push_build(&p, &sim, &[]), &shell);
    let shown = screen(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("stdout is a terminal"), "{shown:?}");
    assert!(shown.contains("plugin exit 0"), "{shown:?}");
    let err = std::fs::read_to_string(&err_file).unwrap();
    assert!(
        err.contains(&format!("built on pod {want}")),
        "stderr reached the pipe: {err:?}"
    );
    for text in [&shown, &err] {
        assert!(!text.contains(RESOLVING), "{text:?}");
        assert!(!text.contains("connecting to pod"), "{text:?}");
    }
    built_once_on(&p, &want);
    p.assert_clean();
}

#[test]
fn no_spinner_without_a_terminal() {
    let sim = slow_sim();
    let p = Project::new();
    let want = hashed_pod(&p);
    let out = run(push_build(&p, &sim, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()));
    ok(&out);
    let err = stderr(&out);
    assert!(err.contains(&format!("built on pod {want}")), "{err}");
    assert!(!err.contains(RESOLVING), "{err:?}");
    assert!(!err.contains("connecting to pod"), "{err:?}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    built_once_on(&p, &want);
    p.assert_clean();
}

#[test]
fn stdout_is_left_to_buildctl_while_the_spinner_runs() {
    let sim = slow_sim();
    let p = Project::new();
    let want = hashed_pod(&p);
    let tar = p.root().join("out.tar");
    // Only stdout is redirected: stderr, and so the spinner, stays on the terminal.
    let shell = format!("CMD > {}", sh_quote(tar.to_str().unwrap()));
    let cmd = push_build(
        &p,
        &sim,
        &["--hash-key", IMAGE, "--output", "type=tar,dest=-"],
    );
    let out = on_a_terminal(&cmd, &shell);
    let shown = screen(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains(RESOLVING), "{shown:?}");
    assert!(
        shown.contains(&format!("connecting to pod {want} via exec")),
        "{shown:?}"
    );
    let rec = built_once_on(&p, &want);
    let bytes = std::fs::read(&tar).unwrap();
    assert!(!bytes.is_empty(), "buildctl wrote the tarball to stdout");
    assert_eq!(rec["stdout_bytes"], bytes.len() as u64);
    let sha = format!("{:x}", Sha256::digest(&bytes));
    assert_eq!(
        rec["stdout_sha256"], sha,
        "stdout holds exactly what buildctl wrote, nothing of ours"
    );
    p.assert_clean();
}
