//! The plugin as kubectl runs it, and kubeconfig features kubectl users rely on.

mod common;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::*;

/// A PATH holding `kubectl-buildkit` (a link to the built binary) and the system's.
fn plugin_path(home: &Home) -> std::ffi::OsString {
    let dir = home.path().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("kubectl-buildkit");
    if !link.exists() {
        std::os::unix::fs::symlink(bin(), &link).unwrap();
    }
    let mut paths = vec![dir];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

fn kubectl(home: &Home, sim: &Sim) -> Command {
    let mut cmd = Command::new("kubectl");
    clean_env(&mut cmd, home);
    cmd.env("PATH", plugin_path(home))
        .env("KUBECONFIG", sim.kubeconfig())
        .current_dir(home.path());
    cmd
}

#[test]
fn kubectl_finds_and_dispatches_the_plugin() {
    let _kubectl = kube_sim::require_kubectl!();
    let sim = start_with(SimConfig {
        pods: vec![
            PodConfig::new("team-a", "buildkitd-0"),
            PodConfig::new("team-a", "buildkitd-1"),
        ],
        users: vec![
            UserConfig::admin(),
            UserConfig::new("dev", vec![Rule::all()]),
        ],
        ..SimConfig::default()
    });
    let home = Home::new();
    let list = run(kubectl(&home, &sim).args(["plugin", "list"]));
    let text = stdout(&list);
    assert!(
        text.contains("kubectl-buildkit"),
        "plugin list: {text}\n{}",
        stderr(&list)
    );
    let out = run(kubectl(&home, &sim).args([
        "buildkit",
        "pods",
        "-n",
        "team-a",
        "--context",
        "dev",
        "-o",
        "name",
    ]));
    assert_eq!(ok(&out), "pod/buildkitd-0\npod/buildkitd-1\n");
    let help = ok(&run(kubectl(&home, &sim).args(["buildkit", "--help"])));
    assert!(help.contains("kubectl buildkit"), "{help}");
}

#[test]
fn exec_credential_plugin_gets_the_token_and_never_our_stdin() {
    let sim = start(pods(2));
    let home = Home::new();
    let token = sim.token("admin").unwrap();
    let script = home.path().join("cred-plugin");
    let seen = home.path().join("stdin-seen");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat > {seen} 2>/dev/null\nprintf '%s' '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{token}\"}}}}'\n",
            seen = seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let kc = edited_kubeconfig(&sim, &home, |v| {
        v["users"][0]["user"] = serde_yaml::from_str(&format!(
            "exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: {}\n  interactiveMode: IfAvailable\n",
            script.display()
        ))
        .unwrap();
    });
    let mut cmd = plugin(None, &home);
    cmd.args(["pods", "-o", "name", "--kubeconfig"])
        .arg(&kc)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"our stdin is not the plugin's").unwrap();
    }
    let out = finish_within(child, CHILD_DEADLINE);
    assert_eq!(ok(&out), "pod/buildkitd-0\npod/buildkitd-1\n");
    let seen = std::fs::read(&seen).unwrap_or_default();
    assert!(
        seen.is_empty(),
        "the credential plugin read our stdin: {:?}",
        String::from_utf8_lossy(&seen)
    );

    // A failing plugin is named, with advice.
    std::fs::write(&script, "#!/bin/sh\necho 'token expired' >&2\nexit 3\n").unwrap();
    let out = run(plugin(None, &home).args(["pods", "--kubeconfig"]).arg(&kc));
    let err = fails_with(&out, 1, &[]);
    assert!(
        err.to_lowercase().contains("plugin") || err.contains("exec"),
        "{err}"
    );
}
