//! `--request-timeout` takes what kubectl takes and refuses what kubectl refuses,
//! checked against the real kubectl on the same cluster.

mod common;

use std::process::Command;

use common::*;

#[test]
fn request_timeout_values_are_read_like_kubectl() {
    let sim = start(pods(2));
    let home = Home::new();
    let kubectl = kubectl("request_timeout_values_are_read_like_kubectl");
    let accepted = [
        "0",
        "30",
        "+30",
        "30s",
        "1m30s",
        "1.5h",
        ".5m",
        "5.s",
        "250ms",
        "500000us",
        "500000\u{00b5}s",
        "500000\u{03bc}s",
        "45000000000ns",
        "1h2m3s4ms5us6ns",
        "-1s",
    ];
    let refused = ["5x", "1.2.3s", "1m30", "-5", "s", "3d", "1e3s"];
    for (value, good) in accepted
        .iter()
        .map(|v| (*v, true))
        .chain(refused.iter().map(|v| (*v, false)))
    {
        let flag = format!("--request-timeout={value}");
        if let Some(kubectl) = &kubectl {
            let mut cmd = Command::new(kubectl);
            cmd.env_clear()
                .env("HOME", home.path())
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("KUBECONFIG", sim.kubeconfig())
                .args(["get", "pods", "-n", NS, "-o", "name", &flag]);
            let out = run(&mut cmd);
            assert_eq!(
                out.status.success(),
                good,
                "kubectl {flag}: {}",
                stderr(&out)
            );
        }
        let out = run(plugin(Some(&sim), &home).args(["pods", "-o", "name", &flag]));
        if good {
            assert_eq!(ok(&out).lines().count(), 2, "{flag}");
        } else {
            fails_with(&out, 2, &["invalid duration", value]);
        }
    }
}
