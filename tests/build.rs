//! `kubectl buildkit build` end to end: the real binary, the simulated cluster, the
//! stand-in buildctl and docker. Every test also checks that nothing is left behind.

mod common;
use std::path::Path;
use std::process::Command;

use common::*;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn argv(record: &serde_json::Value) -> Vec<String> {
    record["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// argv with the tunnel's socket (different every run) replaced by ADDR.
fn argv_with_addr(record: &serde_json::Value, tmp: &Path) -> Vec<String> {
    let mut a = argv(record);
    assert_eq!(a[0], "--addr");
    let addr = a[1].clone();
    let prefix = format!("unix://{}/kubectl-buildkit-", tmp.display());
    assert!(
        addr.starts_with(&prefix) && addr.ends_with("/buildkitd.sock"),
        "socket in our TMPDIR: {addr}"
    );
    a[1] = "ADDR".into();
    a
}

const FOUR: [&str; 4] = ["buildkitd-0", "buildkitd-1", "buildkitd-2", "buildkitd-3"];

#[test]
fn the_hashed_pod_serves_the_build_for_every_algorithm_and_tunnel() {
    let sim = start(pods(4));
    let p = Project::new();
    let images = [
        "gcr.io/team/api",
        "reg.example.com:5000/web",
        "docker.io/me/worker",
        "ghcr.io/x/y",
    ];
    let mut n = 0;
    for alg in ["classic", "buildx", "rendezvous"] {
        for tunnel in ["exec", "port-forward"] {
            for image in images {
                let want = &ring_order(&p.home, &FOUR, image, alg)[0];
                let before = sim.stats(NS, want).connections;
                let out = run(p
                    .build(Some(&sim))
                    .args(["--algorithm", alg, "--tunnel", tunnel])
                    .env("IMAGE", format!("{image}:{n}"))
                    .env("PUSH_IMAGE", "true"));
                ok(&out);
                let rec = p.buildctl_records().pop().unwrap();
                assert_eq!(
                    rec["served_by"]["pod"],
                    want.as_str(),
                    "{alg} {tunnel} {image}"
                );
                assert_eq!(
                    rec["payload_bytes"],
                    1 << 20,
                    "the payload crossed the tunnel"
                );
                assert_eq!(sim.stats(NS, want).connections, before + 1);
                assert!(stderr(&out).contains(&format!("built on pod {want}")));
                p.assert_clean();
                n += 1;
            }
        }
    }
}

#[test]
fn skaffold_push_gives_buildctl_exactly_this_argv() {
    let sim = start(pods(3));
    let p = Project::new();
    let out = run(p
        .build(Some(&sim))
        .env("IMAGE", "reg.example.com/team/app:v1.2.3")
        .env("PUSH_IMAGE", "true")
        .env("BUILD_CONTEXT", p.ctx())
        .env("PLATFORMS", "linux/amd64,linux/arm64"));
    ok(&out);
    let rec = p.buildctl_records().pop().unwrap();
    let ctx = p.ctx().display().to_string();
    assert_eq!(
        argv_with_addr(&rec, &p.tmp()),
        strings(&[
            "--addr",
            "ADDR",
            "build",
            "--frontend",
            "dockerfile.v0",
            "--local",
            &format!("context={ctx}"),
            "--local",
            &format!("dockerfile={ctx}"),
            "--opt",
            "filename=Dockerfile",
            "--opt",
            "platform=linux/amd64,linux/arm64",
            "--output",
            "type=image,name=reg.example.com/team/app:v1.2.3,push=true",
        ])
    );
    assert!(p.docker_records().is_empty(), "pushing needs no docker");
    p.assert_clean();
}

#[test]
fn skaffold_no_push_loads_buildctls_tarball_into_docker() {
    let sim = start(pods(3));
    let p = Project::new();
    let out = run(p
        .build(Some(&sim))
        .env("IMAGE", "reg.example.com/team/app:dev")
        .env("PUSH_IMAGE", "false")
        .env("BUILD_CONTEXT", p.ctx()));
    ok(&out);
    assert!(
        stdout(&out).contains("Loaded image: reg.example.com/team/app:dev"),
        "{}",
        stdout(&out)
    );
    let rec = p.buildctl_records().pop().unwrap();
    let a = argv_with_addr(&rec, &p.tmp());
    assert_eq!(
        a[a.len() - 2..],
        strings(&["--output", "type=docker,name=reg.example.com/team/app:dev"])
    );
    let load = p.docker_records().pop().unwrap();
    assert_eq!(argv(&load), ["load"]);
    assert!(rec["stdout_bytes"].as_u64().unwrap() > 0);
    assert_eq!(load["stdin_bytes"], rec["stdout_bytes"]);
    assert_eq!(
        load["stdin_sha256"], rec["stdout_sha256"],
        "docker load got exactly what buildctl wrote"
    );
    p.assert_clean();
}

#[test]
fn every_build_flag_reaches_buildctl_as_buildctl_spells_it() {
    let sim = start(pods(2));
    let p = Project::new();
    // A Dockerfile outside the context, relative to the current directory as docker.
    let other = p.root().join("docker");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("Dockerfile.dev"), "FROM scratch\n").unwrap();
    let key = p.root().join("id_ed25519");
    std::fs::write(&key, "not a real key").unwrap();
    let npmrc = p.root().join("npmrc");
    std::fs::write(&npmrc, "token").unwrap();
    let out = run(p
        .build(Some(&sim))
        .args([
            "-f",
            "../docker/Dockerfile.dev",
            "-t",
            "r.io/a:1",
            "-t",
            "r.io/a:latest",
            "--push",
        ])
        .args([
            "--build-arg",
            "VERSION=1.2",
            "--build-arg",
            "FROM_ENV",
            "--target",
            "prod",
        ])
        .args([
            "--secret",
            &format!("id=npm,src={}", npmrc.display()),
            "--secret",
            "id=tok,env=API_TOKEN",
        ])
        .args(["--ssh", &format!("default={}", key.display())])
        .args([
            "--label",
            "org.opencontainers.image.source=https://example.com/a",
        ])
        .args(["--no-cache", "--progress", "plain"])
        .args([
            "--cache-to",
            "type=registry,ref=r.io/a:cache",
            "--import-cache",
            "type=registry,ref=r.io/a:cache",
        ])
        .args([
            "--opt",
            "add-hosts=db=10.0.0.1",
            "--metadata-file",
            "../meta.json",
        ])
        .arg(".")
        .args(["--", "--trace", "trace.json"])
        .env("FROM_ENV", "from-the-environment")
        .env("API_TOKEN", "t0ken"));
    ok(&out);
    let rec = p.buildctl_records().pop().unwrap();
    let ctx = p.ctx().display().to_string();
    let a = argv_with_addr(&rec, &p.tmp());
    assert_eq!(
        a,
        strings(&[
            "--addr",
            "ADDR",
            "build",
            "--frontend",
            "dockerfile.v0",
            "--local",
            &format!("context={ctx}"),
            "--local",
            &format!("dockerfile={}", other.display()),
            "--opt",
            "filename=Dockerfile.dev",
            "--opt",
            "target=prod",
            "--opt",
            "build-arg:VERSION=1.2",
            "--opt",
            "build-arg:FROM_ENV=from-the-environment",
            "--opt",
            "label:org.opencontainers.image.source=https://example.com/a",
            "--no-cache",
            "--progress",
            "plain",
            "--secret",
            &format!("id=npm,src={}", npmrc.display()),
            "--secret",
            "id=tok,env=API_TOKEN",
            "--ssh",
            &format!("default={}", key.display()),
            "--export-cache",
            "type=registry,ref=r.io/a:cache",
            "--import-cache",
            "type=registry,ref=r.io/a:cache",
            "--opt",
            "add-hosts=db=10.0.0.1",
            "--metadata-file",
            &p.root().join("meta.json").display().to_string(),
            "--output",
            "type=image,\"name=r.io/a:1,r.io/a:latest\",push=true",
            "--trace",
            "trace.json",
        ]),
        "{a:#?}"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.root().join("meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["image.name"], "r.io/a:1,r.io/a:latest");
    p.assert_clean();
}

#[test]
fn a_raw_output_overrides_tags_push_and_load() {
    let sim = start(pods(2));
    let p = Project::new();
    let out = run(p
        .build(Some(&sim))
        .args(["--output", "type=local,dest=out"])
        .env("IMAGE", "r.io/a:1")
        .env("PUSH_IMAGE", "true"));
    ok(&out);
    let a = argv(&p.buildctl_records().pop().unwrap());
    let outputs: Vec<&String> = a.iter().skip_while(|x| *x != "--output").collect();
    assert_eq!(outputs, ["--output", "type=local,dest=out"]);
    assert!(p.docker_records().is_empty());
    p.assert_clean();
}

#[test]
fn the_original_wrappers_readme_command_line_still_works() {
    let sim = start(pods(3));
    let p = Project::new();
    std::fs::write(p.ctx().join("sample.Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(p.ctx().join(".gitconfig"), "[user]\n").unwrap();
    let hash_key = "daisaru11/skaffold-buildkit-wrapper-example";
    let line = format!(
        "--cli buildctl --kube-pod-selector app=buildkitd --kube-pod-balancing-hash-key {hash_key} \
         --secret id=gitconfig,src=.gitconfig --build-arg TEST=test1 --file sample.Dockerfile"
    );
    let out = run(p
        .build(Some(&sim))
        .args(line.split(' '))
        .env("IMAGE", "daisaru11/skaffold-buildkit-wrapper-example:abc")
        .env("PUSH_IMAGE", "true")
        .env("BUILD_CONTEXT", p.ctx()));
    ok(&out);
    let rec = p.buildctl_records().pop().unwrap();
    let want = &ring_order(
        &p.home,
        &["buildkitd-0", "buildkitd-1", "buildkitd-2"],
        hash_key,
        "classic",
    )[0];
    assert_eq!(rec["served_by"]["pod"], want.as_str());
    let ctx = p.ctx().display().to_string();
    let a = argv_with_addr(&rec, &p.tmp());
    assert_eq!(
        a,
        strings(&[
            "--addr",
            "ADDR",
            "build",
            "--frontend",
            "dockerfile.v0",
            "--local",
            &format!("context={ctx}"),
            // The wrapper's bug is gone: the dockerfile local is the Dockerfile's directory.
            "--local",
            &format!("dockerfile={ctx}"),
            "--opt",
            "filename=sample.Dockerfile",
            "--opt",
            "build-arg:TEST=test1",
            "--secret",
            "id=gitconfig,src=.gitconfig",
            "--output",
            "type=image,name=daisaru11/skaffold-buildkit-wrapper-example:abc,push=true",
        ]),
        "{a:#?}"
    );
    p.assert_clean();
}

#[test]
fn addr_talks_to_a_buildkitd_directly_without_kubernetes() {
    let sim = start(pods(2));
    let p = Project::new();
    let direct = sim.buildkitd_addr(NS, "buildkitd-1").unwrap();
    let before = sim.requests().len();
    let out = run(p
        .build(Some(&sim))
        .args(["--addr", &format!("tcp://{direct}")])
        .env("IMAGE", "a/b:1")
        .env("PUSH_IMAGE", "true"));
    ok(&out);
    let rec = p.buildctl_records().pop().unwrap();
    assert_eq!(rec["served_by"]["pod"], "buildkitd-1");
    assert_eq!(
        argv(&rec)[..2],
        strings(&["--addr", &format!("tcp://{direct}")])
    );
    assert_eq!(sim.requests().len(), before, "no API request");
    let out =
        run(p
            .build(Some(&sim))
            .args(["--addr", "tcp://127.0.0.1:1", "--pod", "buildkitd-0"]));
    fails_with(&out, 1, &["--pod", "no meaning with --addr"]);
    p.assert_clean();
}

/// Each way the first choice can fail before its first byte: the build ends on the
/// second choice with a warning naming both; with --max-failover 0 it fails, naming
/// the first pod and the reason.
#[test]
fn failover_and_its_limit() {
    type Fault = fn(&mut PodFaults);
    let cases: [(&str, Fault, &[&str]); 3] = [
        (
            "exec forbidden",
            |f| f.exec_forbidden = true,
            &["pods/exec is forbidden", "--tunnel port-forward"],
        ),
        (
            "pod deleted",
            |f| f.vanished = true,
            &["the pod is gone (deleted since it was listed?)"],
        ),
        (
            "buildctl missing",
            |f| f.buildctl_missing = true,
            &["is buildctl installed", "--container"],
        ),
    ];
    let home = Home::new();
    let names = ["buildkitd-0", "buildkitd-1", "buildkitd-2"];
    let key = "gcr.io/failover/app";
    let want = ring_order(&home, &names, key, "classic");
    for (what, fault, reason) in cases {
        let mut ps = pods(3);
        fault(&mut ps.iter_mut().find(|p| p.name == want[0]).unwrap().faults);
        let sim = start(ps);
        let p = Project::new();
        let out = run(p
            .build(Some(&sim))
            .env("IMAGE", format!("{key}:1"))
            .env("PUSH_IMAGE", "true"));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{what}: {err}");
        assert_eq!(
            p.buildctl_records().pop().unwrap()["served_by"]["pod"],
            want[1].as_str(),
            "{what}"
        );
        assert!(
            err.contains(&format!("pod {} could not take the connection", want[0])),
            "{what}: {err}"
        );
        assert!(
            err.contains(&format!("failing over to pod {}", want[1])),
            "{what}: {err}"
        );
        assert_eq!(
            sim.stats(NS, &want[2]).connections,
            0,
            "{what}: third pod untouched"
        );
        p.assert_clean();

        let out = run(p
            .build(Some(&sim))
            .args(["--max-failover", "0"])
            .env("IMAGE", format!("{key}:1"))
            .env("PUSH_IMAGE", "true"));
        let mut needles = vec![
            "no buildkitd pod could take buildctl's connection",
            &want[0],
        ];
        needles.extend_from_slice(reason);
        let err = fails_with(&out, 1, &needles);
        assert!(
            !err.contains(&format!("failing over to pod {}", want[1])),
            "{what}: {err}"
        );
        assert!(
            p.buildctl_records().pop().unwrap()["served_by"].is_null(),
            "{what}"
        );
        p.assert_clean();
    }
}

#[test]
fn buildctls_exit_code_is_ours() {
    let sim = start(pods(2));
    let p = Project::new();
    let out = run(p
        .build(Some(&sim))
        .env("IMAGE", "a/b:1")
        .env("PUSH_IMAGE", "true")
        .env("SIM_BUILDCTL_EXIT", "7"));
    assert_eq!(out.status.code(), Some(7));
    p.assert_clean();
}

#[test]
fn sixteen_concurrent_builds_across_four_pods_are_byte_exact() {
    let sim = start(pods(4));
    let p = Project::new();
    let images: Vec<String> = (0..16)
        .map(|i| format!("reg.example.com/svc-{i}"))
        .collect();
    let children: Vec<_> = images
        .iter()
        .map(|img| {
            p.build(Some(&sim))
                .env("IMAGE", format!("{img}:v1"))
                .env("PUSH_IMAGE", "true")
                .env("SIM_BUILDCTL_PAYLOAD", "32M")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = finish_within(c, CHILD_DEADLINE);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let recs = p.buildctl_records();
    assert_eq!(recs.len(), 16);
    let mut per_pod = std::collections::BTreeMap::<String, u64>::new();
    for rec in &recs {
        assert_eq!(rec["exit_code"], 0);
        assert_eq!(rec["payload_bytes"], 32 << 20, "byte-exact echo of 32 MiB");
        *per_pod
            .entry(rec["served_by"]["pod"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let mut expected = std::collections::BTreeMap::<String, u64>::new();
    for img in &images {
        *expected
            .entry(ring_order(&p.home, &FOUR, img, "classic")[0].clone())
            .or_default() += 1;
    }
    assert_eq!(per_pod, expected, "each build landed on its hashed pod");
    let total: u64 = FOUR.iter().map(|pod| sim.stats(NS, pod).bytes_in).sum();
    assert!(
        total >= 16 * (32 << 20),
        "every payload reached a pod: {total}"
    );
    assert!(per_pod.len() >= 2, "spread across pods: {per_pod:?}");
    p.assert_clean();
}

/// The cleanup check itself: a process that only inherited our TMPDIR (as `docker
/// load` does) is reported while it lives, and not after it is gone.
#[test]
fn leftovers_sees_a_child_that_only_carries_our_tmpdir() {
    let p = Project::new();
    let mut child = Command::new("sleep")
        .arg("30")
        .env("TMPDIR", p.tmp())
        .spawn()
        .unwrap();
    // Right after spawn the kernel may not have set up the new program's environment
    // in /proc yet (execve publishes it last): look again for a moment.
    let listed = |left: &[String]| {
        left.iter()
            .any(|l| l.contains(&format!("process {}", child.id())))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut left = leftovers(&p.tmp());
    while !listed(&left) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        left = leftovers(&p.tmp());
    }
    assert!(listed(&left), "{left:?}");
    child.kill().unwrap();
    wait_within(&mut child, CHILD_DEADLINE);
    p.assert_clean();
}
