//! The built-in client's tests on a REAL BuildKit (tests/builtin_real*.rs): the
//! plugin with no buildctl on PATH, sim pods backed by the kube_sim::realkit
//! fixture's daemons, and an htpasswd registry holding a base image.

use std::path::Path;
use std::process::Command;

use super::*;
use kube_sim::realkit::{RealBuildkit, BUSYBOX_IMAGE};

/// PATH for the plugin: the system's directories, none holding a buildctl.
pub fn path_without_buildctl() -> String {
    let dirs = ["/usr/local/bin", "/usr/bin", "/bin"];
    for d in dirs {
        assert!(
            !Path::new(d).join("buildctl").exists(),
            "{d}/buildctl exists: these tests prove builds without one"
        );
    }
    dirs.join(":")
}

/// `build` with the built-in client (the default: no --cli), plain progress, RUN
/// steps without a network (the fixture has none).
pub fn build(p: &Project, sim: &Sim) -> Command {
    build_with_progress(p, sim, "plain")
}

/// [`build`] with another `--progress` style.
pub fn build_with_progress(p: &Project, sim: &Sim, progress: &str) -> Command {
    let mut cmd = p.build(Some(sim));
    cmd.env("PATH", path_without_buildctl())
        .env_remove("KUBECTL_BUILDKIT_CLI")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("DOCKER_CONFIG")
        .args(["--progress", progress, "--network", "none"]);
    cmd
}

pub fn real_cluster(kit: &RealBuildkit, pods: &[(&str, usize)]) -> Sim {
    start(
        pods.iter()
            .map(|(name, d)| PodConfig::new(NS, name).backed_by(&kit.daemons()[*d]))
            .collect(),
    )
}

/// A private fixture with an htpasswd registry holding `base:1` (busybox pushed by
/// the fixture's own docker), and the docker config that logs in to it.
pub fn registry_with_base(user: &str, password: &str) -> Option<(RealBuildkit, String)> {
    let kit = match RealBuildkit::start(kube_sim::realkit::FixtureOptions {
        daemons: 1,
        registry_users: vec![(user.to_string(), password.to_string())],
    }) {
        Ok(k) => k,
        Err(e) => {
            kube_sim::realkit::skip_or_fail(&e);
            return None;
        }
    };
    let host = kit.registry().host();
    let image = format!("{host}/base:1");
    let cfg = tempfile::tempdir().unwrap();
    let docker = |args: &[&str]| {
        let out = kit.daemons()[0]
            .docker()
            .env("DOCKER_CONFIG", cfg.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    docker(&["tag", BUSYBOX_IMAGE, &image]);
    docker(&["login", "-u", user, "-p", password, &host]);
    docker(&["push", &image]);
    // Untag it: dockerd's BuildKit would take a local image before the registry.
    docker(&["rmi", &image]);
    Some((kit, image))
}

/// `HOME/.docker/config.json` with `auths` holding `user:password` for `host`.
pub fn docker_config(home: &Path, host: &str, user: &str, password: &str) {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    write_docker_config(
        home,
        &serde_json::json!({ "auths": { host: { "auth": auth } } }),
    );
}

/// `HOME/.docker/config.json` with the given content.
pub fn write_docker_config(home: &Path, config: &serde_json::Value) {
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::write(home.join(".docker/config.json"), config.to_string()).unwrap();
}
