//! More of the built-in BuildKit client on a REAL BuildKit (dockerd 20.10, BuildKit
//! v0.8, worker `moby`; the kube_sim::realkit fixture behind simulated pods), with no
//! buildctl on PATH: the three progress styles, labels on an image in dockerd's own
//! image store, SSH agent forwarding, and registry credentials from a docker
//! credential helper. Every check reads what the daemon produced: its Status stream
//! as rendered, `docker image inspect`, exported files, the registry's answers.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A private ssh-agent holding one fresh ed25519 key; killed (by its pid) on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
    /// The public key blob (the base64 field of the .pub file, decoded).
    public_blob: Vec<u8>,
    comment: String,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// None (after skip_or_fail) when openssh-client is missing.
    fn start() -> Option<Agent> {
        for tool in ["ssh-agent", "ssh-keygen", "ssh-add"] {
            if !Path::new("/usr/bin").join(tool).is_file() {
                kube_sim::realkit::skip_or_fail(&kube_sim::realkit::Unavailable {
                    reason: format!("/usr/bin/{tool} is missing (apt-get install openssh-client)"),
                });
                return None;
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("kbk-ssh")
            .tempdir()
            .unwrap();
        let key = dir.path().join("id");
        let comment = fresh("ssh-key");
        let keygen = Command::new("/usr/bin/ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", &comment, "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(keygen.status.success(), "{keygen:?}");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("/usr/bin/ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut agent = Agent {
            child,
            socket,
            public_blob: Vec::new(),
            comment,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        let add = Command::new("/usr/bin/ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .output()
            .unwrap();
        assert!(add.status.success(), "{add:?}");
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        agent.public_blob = base64::engine::general_purpose::STANDARD
            .decode(public.split_whitespace().nth(1).unwrap())
            .unwrap();
        Some(agent)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SSH string (u32 length, bytes) at `at`, and the offset after it.
fn ssh_string(data: &[u8], at: usize) -> (&[u8], usize) {
    let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
    (&data[at + 4..at + 4 + len], at + 4 + len)
}

#[test]
fn an_ssh_mount_reaches_the_forwarded_agent_and_it_answers() {
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let Some(agent) = Agent::start() else {
        return;
    };
    let sim = real_cluster(kit, &[("real-0", 0)]);
    let p = Project::new();
    // A static agent client (tests/fixtures/agent_identities.c): busybox has none.
    let client = p.ctx().join("agent_identities");
    let cc = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&client)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent_identities.c"))
        .output()
        .expect("cc runs (the Rust toolchain's linker)");
    assert!(
        cc.status.success(),
        "cc -static: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let marker = fresh("ssh");
    std::fs::write(
        p.ctx().join("Dockerfile"),
        format!(
            "FROM {BUSYBOX_IMAGE} AS run\n\
             COPY agent_identities /usr/local/bin/\n\
             RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo ok > /proof && \
                 agent_identities > /identities && echo {marker}\n\
             FROM scratch\n\
             COPY --from=run /proof /identities /\n"
        ),
    )
    .unwrap();
    let dest = p.root().join("out");
    let out = run(build(&p, &sim)
        .env("SSH_AUTH_SOCK", &agent.socket)
        .args(["--ssh", "default", "-o"])
        .arg(format!("type=local,dest={}", dest.display())));
    ok(&out);
    assert_eq!(
        std::fs::read(dest.join("proof")).unwrap(),
        b"ok\n",
        "the step saw a socket at $SSH_AUTH_SOCK"
    );
    // What the agent answered through the daemon and our session: one identity, our
    // key and its comment (SSH2_AGENT_IDENTITIES_ANSWER = 12).
    let answer = std::fs::read(dest.join("identities")).unwrap();
    assert!(answer.len() > 9, "{answer:?}");
    let len = u32::from_be_bytes(answer[..4].try_into().unwrap()) as usize;
    assert_eq!(len + 4, answer.len(), "{answer:?}");
    assert_eq!(answer[4], 12, "an identities answer: {answer:?}");
    assert_eq!(
        u32::from_be_bytes(answer[5..9].try_into().unwrap()),
        1,
        "one key"
    );
    let (blob, next) = ssh_string(&answer, 9);
    let (comment, _) = ssh_string(&answer, next);
    assert_eq!(blob, agent.public_blob.as_slice(), "the agent's key");
    assert_eq!(comment, agent.comment.as_bytes());
    drop(agent);
    p.assert_clean();
}

#[test]
fn an_ssh_mount_without_ssh_fails_on_the_daemon() {
    // The counterpart: without --ssh the daemon refuses the step (so the proof above
    // comes from the forwarding, not from a socket that is always there).
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let sim = real_cluster(kit, &[("real-0", 0)]);
    let p = Project::new();
    let marker = fresh("no-ssh");
    std::fs::write(
        p.ctx().join("Dockerfile"),
        format!("FROM {BUSYBOX_IMAGE}\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo {marker}\n"),
    )
    .unwrap();
    let out = run(&mut build(&p, &sim));
    fails_with(&out, 1, &["error: the build failed", "exit code: 1"]);
    p.assert_clean();
}

/// `DIR/docker-credential-NAME`: answers `get` for any registry with `user` and
/// `secret`, recording each registry it was asked about in `DIR/NAME.asked`.
fn credential_helper(dir: &Path, name: &str, user: &str, secret: &str) {
    let script = dir.join(format!("docker-credential-{name}"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             [ \"$1\" = get ] || {{ echo \"unsupported: $1\"; exit 1; }}\n\
             read -r host\n\
             echo \"$host\" >> '{}'\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}\\n' \"$host\"\n",
            dir.join(format!("{name}.asked")).display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_base_image_is_pulled_with_credentials_from_a_docker_credential_helper() {
    let (user, password) = ("helped", "h3lper-s3cret");
    let Some((kit, image)) = registry_with_base(user, password) else {
        return;
    };
    let host = kit.registry().host();
    let sim = real_cluster(&kit, &[("real-0", 0)]);
    let p = Project::new();
    let helpers = p.root().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    credential_helper(&helpers, "kbkright", user, password);
    credential_helper(&helpers, "kbkwrong", user, "not-the-one");
    std::fs::write(
        p.ctx().join("Dockerfile"),
        format!("FROM {image}\nRUN echo pulled > /pulled\n"),
    )
    .unwrap();
    let path = format!("{}:{}", helpers.display(), path_without_buildctl());
    let dest = p.root().join("out");
    let build_here = |p: &Project| {
        let mut cmd = build(p, &sim);
        cmd.env("PATH", &path)
            .args(["-o", &format!("type=local,dest={}", dest.display())]);
        cmd
    };
    // credHelpers naming a helper with the wrong password: the registry's refusal.
    write_docker_config(
        p.root(),
        &serde_json::json!({ "credHelpers": { &host: "kbkwrong" } }),
    );
    let out = run(&mut build_here(&p));
    let err = fails_with(&out, 1, &["error: the build failed"]);
    assert!(
        err.to_lowercase().contains("401") || err.to_lowercase().contains("unauthorized"),
        "the registry's refusal is named:\n{err}"
    );
    for secret in [password, "not-the-one"] {
        assert!(!err.contains(secret) && !stdout(&out).contains(secret));
    }
    let asked = std::fs::read_to_string(helpers.join("kbkwrong.asked")).unwrap_or_default();
    assert!(
        !asked.is_empty() && asked.lines().all(|l| l == host),
        "the credHelpers entry's helper was asked for {host} only: {asked:?}"
    );
    // credsStore: one helper for every registry, with the right password.
    write_docker_config(p.root(), &serde_json::json!({ "credsStore": "kbkright" }));
    let out = run(&mut build_here(&p));
    ok(&out);
    assert_eq!(std::fs::read(dest.join("pulled")).unwrap(), b"pulled\n");
    assert!(
        dest.join("bin/busybox").is_file(),
        "the base image's files came from the registry"
    );
    assert!(!stderr(&out).contains(password));
    assert!(
        std::fs::read_to_string(helpers.join("kbkright.asked"))
            .unwrap()
            .lines()
            .all(|l| l == host),
        "only the registry of the base image was asked about"
    );
    p.assert_clean();
}
