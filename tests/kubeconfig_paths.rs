//! Relative paths in a kubeconfig (certificate-authority, tokenFile, an exec plugin's
//! command) belong to the kubeconfig's own directory, as kubectl reads them, not to the
//! directory the plugin runs in (skaffold runs `build` in the artifact's context).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The sim's kubeconfig rewritten into `dir/config` with its CA in `dir/certs/ca.pem`
/// and the admin credential given by `user` (a YAML mapping), every path relative.
fn relative_kubeconfig(sim: &Sim, dir: &Path, user: serde_yaml::Value) -> PathBuf {
    let text = std::fs::read_to_string(sim.kubeconfig()).unwrap();
    let mut v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let cluster = &mut v["clusters"][0]["cluster"];
    let ca_b64 = cluster["certificate-authority-data"]
        .as_str()
        .unwrap()
        .to_string();
    let ca = decode_base64(&ca_b64);
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join("certs/ca.pem"), ca).unwrap();
    let map = cluster.as_mapping_mut().unwrap();
    map.remove("certificate-authority-data");
    map.insert("certificate-authority".into(), "certs/ca.pem".into());
    v["users"][0]["user"] = user;
    let path = dir.join("config");
    std::fs::write(&path, serde_yaml::to_string(&v).unwrap()).unwrap();
    path
}

fn decode_base64(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn admin_token(sim: &Sim) -> String {
    sim.token("admin").expect("admin token")
}

/// `kubectl get pods -o name` and `kubectl buildkit pods -o name` with `kubeconfig`,
/// both run from `cwd` (not the kubeconfig's directory): the same pods, both succeed.
fn both_list_the_pods(kubeconfig: &Path, cwd: &Path, home: &Home, what: &str) {
    let want: Vec<String> = (0..2).map(|i| format!("pod/buildkitd-{i}")).collect();
    let names = |out: &std::process::Output| -> Vec<String> {
        stdout(out).lines().map(str::to_string).collect()
    };
    if let Some(kubectl) = kubectl(what) {
        let mut cmd = Command::new(kubectl);
        cmd.env_clear()
            .env("HOME", home.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .current_dir(cwd)
            .args(["get", "pods", "-n", NS, "-o", "name"]);
        let out = run(&mut cmd);
        assert_eq!(names(&out), want, "kubectl ({what}): {}", stderr(&out));
    }
    let out = run(plugin(None, home)
        .env("KUBECONFIG", kubeconfig)
        .current_dir(cwd)
        .args(["pods", "-o", "name"]));
    assert_eq!(
        names(&out),
        want,
        "kubectl buildkit ({what}): {}",
        stderr(&out)
    );
}

#[test]
fn relative_ca_and_token_file_are_read_from_the_kubeconfigs_directory() {
    let sim = start(pods(2));
    let home = Home::new();
    let dir = home.path().join("kube");
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/token"), admin_token(&sim)).unwrap();
    let mut user = serde_yaml::Mapping::new();
    user.insert("tokenFile".into(), "secrets/token".into());
    let kubeconfig = relative_kubeconfig(&sim, &dir, user.into());
    let elsewhere = home.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    both_list_the_pods(&kubeconfig, &elsewhere, &home, "ca + tokenFile");
    // --kubeconfig relative to the working directory: its directory is still the base.
    let out = run(plugin(None, &home).current_dir(home.path()).args([
        "pods",
        "-o",
        "name",
        "--kubeconfig",
        "kube/config",
    ]));
    assert_eq!(
        stdout(&out).lines().count(),
        2,
        "--kubeconfig kube/config: {}",
        stderr(&out)
    );
}

#[test]
fn a_relative_exec_plugin_command_is_run_from_the_kubeconfigs_directory() {
    let sim = start(pods(2));
    let home = Home::new();
    let dir = home.path().join("kube");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let script = dir.join("bin/credential");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\
             \"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{}\"}}}}'\n",
            admin_token(&sim)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let user: serde_yaml::Value = serde_yaml::from_str(
        "exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: ./bin/credential\n  interactiveMode: Never\n",
    )
    .unwrap();
    let kubeconfig = relative_kubeconfig(&sim, &dir, user);
    let elsewhere = home.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    both_list_the_pods(
        &kubeconfig,
        &elsewhere,
        &home,
        "exec plugin ./bin/credential",
    );
}
