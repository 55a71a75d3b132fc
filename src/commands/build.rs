//! `kubectl buildkit build`: flags + skaffold env -> BuildSpec -> a tunnel to the
//! chosen pod (or --addr, or the local docker daemon) -> buildctl / docker.

mod builtin;

use std::process::Stdio;

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;
use tokio::process::Command;

use super::{describe_choice, tunnel_reporter};
use crate::cli::{BuildArgs, KubeFlags};
use kubectl_buildkit::build::options::BuildClient;
use kubectl_buildkit::build::spec::{BuildSpec, Export};
use kubectl_buildkit::build::{buildctl, docker, spec};
use kubectl_buildkit::cluster::Cluster;
use kubectl_buildkit::process::{self, Signals};
use kubectl_buildkit::progress::Progress;
use kubectl_buildkit::selection;
use kubectl_buildkit::tunnel::{self, Listen};

/// Flags that only mean something when we pick a pod and tunnel to it.
const KUBE_ONLY: &[(&str, &str)] = &[
    ("selector", "--selector"),
    ("hash_key", "--hash-key"),
    ("algorithm", "--algorithm"),
    ("pod", "--pod"),
    ("container", "--container"),
    ("include_unready", "--include-unready"),
    ("kind", "--tunnel"),
    ("remote_port", "--remote-port"),
    ("max_failover", "--max-failover"),
    ("kubeconfig", "--kubeconfig"),
    ("context", "--context"),
    ("cluster", "--cluster"),
    ("user", "--user"),
    ("namespace", "--namespace"),
    ("request_timeout", "--request-timeout"),
];

/// Whether the user typed the flag with this id (not a default, not the environment).
fn given_on_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches!(matches.try_get_raw(id), Ok(Some(_)))
        && matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// Reject Kubernetes flags when the build does not go through Kubernetes.
fn reject_kube_flags(matches: &ArgMatches, why: &str) -> Result<()> {
    let given: Vec<&str> = KUBE_ONLY
        .iter()
        .filter(|(id, _)| given_on_command_line(matches, id))
        .map(|(_, flag)| *flag)
        .collect();
    if !given.is_empty() {
        bail!(
            "{} {} no meaning {why}: drop {}",
            given.join(", "),
            if given.len() == 1 { "has" } else { "have" },
            if given.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(())
}

pub async fn run(kube: &KubeFlags, args: &BuildArgs, matches: &ArgMatches) -> Result<i32> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let env = |k: &str| std::env::var(k).ok();
    let spec = spec::resolve(&args.build.options(), &env, &cwd)?;
    for note in &spec.notes {
        kubectl_buildkit::log::note(note);
    }
    let mut signals = Signals::install()?;
    match spec.client {
        BuildClient::Builtin => {
            if spec.addr.is_some() {
                reject_kube_flags(
                    matches,
                    "with --addr (the build connects to that buildkitd directly)",
                )?;
            }
            builtin::run(kube, args, &spec, &cwd, &mut signals).await
        }
        BuildClient::Docker => {
            reject_kube_flags(
                matches,
                "with --cli docker (it builds on the local docker daemon)",
            )?;
            if given_on_command_line(matches, "buildctl") {
                bail!(
                    "--buildctl has no meaning with --cli docker (docker builds without \
                     buildctl): drop it, or pass the docker program with --docker PATH"
                );
            }
            docker::check(&spec)?;
            run_docker(&spec, &mut signals).await
        }
        BuildClient::Buildctl => {
            if let Some(addr) = spec.addr.clone() {
                reject_kube_flags(
                    matches,
                    "with --addr (buildctl connects to that buildkitd directly)",
                )?;
                return run_buildctl(&spec, &addr, &mut signals).await;
            }
            let progress = Progress::start("resolving buildkitd pods");
            // Until buildctl runs, the waits are on the API server: a signal ends them.
            let opened = signals
                .unless_interrupted(async {
                    let cluster = Cluster::connect(&kube.options()).await?;
                    let key = selection::default_key(
                        args.select.hash_key.as_deref(),
                        spec.image(),
                        Some(&spec.context),
                    );
                    let sel = selection::select_one(&cluster, &args.select.options(), key).await?;
                    let chosen = sel.chosen().unwrap_or_default().to_string();
                    let options = args.tunnel.options(args.select.container.clone());
                    progress.set(format!(
                        "connecting to pod {chosen} via {}",
                        options.kind.name()
                    ));
                    describe_choice(&sel, &tunnel::transport_for(&sel, &options)?);
                    let report = tunnel_reporter(false);
                    let tunnel =
                        tunnel::open(&cluster, &sel, &options, &Listen::Auto, report).await?;
                    anyhow::Ok((cluster, sel, tunnel))
                })
                .await;
            progress.finish();
            let (cluster, sel, tunnel) = match opened {
                Ok(opened) => opened?,
                Err(sig) => return Ok(sig.exit_code()),
            };
            let code = run_buildctl(&spec, tunnel.address(), &mut signals).await;
            let served = tunnel.served();
            let mut failures = tunnel.failures();
            // buildctl may retry: say each distinct failure once.
            let mut distinct = Vec::with_capacity(failures.len());
            for f in failures.drain(..) {
                if !distinct.contains(&f) {
                    distinct.push(f);
                }
            }
            let failures: Vec<String> = distinct.iter().map(ToString::to_string).collect();
            tunnel.close().await;
            let code = code?;
            match served.as_slice() {
                [] if !failures.is_empty() => {
                    eprintln!(
                        "error: no buildkitd pod could take buildctl's connection: {}",
                        failures.join("; ")
                    );
                }
                [] => {}
                [one] => kubectl_buildkit::log::note(format!(
                    "built on pod {one} (namespace {}, key {:?})",
                    cluster.namespace,
                    sel.key.as_deref().unwrap_or("")
                )),
                many => kubectl_buildkit::log::note(format!("built on pods {}", many.join(", "))),
            }
            Ok(code)
        }
    }
}

/// Run buildctl against `addr`; without push, pipe its docker tarball into `docker load`.
async fn run_buildctl(spec: &BuildSpec, addr: &str, signals: &mut Signals) -> Result<i32> {
    let argv = buildctl::argv(spec, addr);
    kubectl_buildkit::log::debug(
        1,
        format!(
            "running {} {}",
            spec.buildctl.display(),
            redact(&argv).join(" ")
        ),
    );
    let mut cmd = Command::new(&spec.buildctl);
    cmd.args(&argv).stdin(Stdio::null());
    let load = matches!(spec.export, Export::DockerLoad { .. });
    if !load {
        let mut child = process::spawn(&mut cmd, "buildctl", "--buildctl PATH")?;
        return process::wait(&mut child, signals).await;
    }
    // buildctl writes the image tarball to stdout; docker load reads it from a pipe.
    let (reader, writer) = std::io::pipe().context("cannot create a pipe for docker load")?;
    let mut load_cmd = Command::new(&spec.docker);
    load_cmd
        .arg("load")
        .stdin(Stdio::from(reader))
        .stdout(Stdio::inherit());
    let mut loader = process::spawn(&mut load_cmd, "docker (for `docker load`)", "--docker PATH")?;
    // A Command keeps its Stdio (our copy of the pipe end) until it is dropped: drop
    // both, or docker load would never see the end of the stream.
    drop(load_cmd);
    cmd.stdout(Stdio::from(writer));
    let spawned = process::spawn(&mut cmd, "buildctl", "--buildctl PATH");
    drop(cmd);
    let mut builder = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = loader.kill().await;
            return Err(e);
        }
    };
    let build_code = process::wait(&mut builder, signals).await?;
    if build_code != 0 {
        // docker load sees a truncated stream and fails; buildctl's failure is the news.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), loader.wait()).await;
        let _ = loader.kill().await;
        return Ok(build_code);
    }
    let load_code = process::wait(&mut loader, signals).await?;
    if load_code != 0 {
        eprintln!(
            "error: `{} load` failed (exit {load_code}): the image was built but is not in the local docker daemon",
            spec.docker.display()
        );
    }
    Ok(load_code)
}

/// docker build, then docker push of each tag when pushing.
async fn run_docker(spec: &BuildSpec, signals: &mut Signals) -> Result<i32> {
    let argv = docker::build_argv(spec);
    kubectl_buildkit::log::debug(
        1,
        format!(
            "running {} {}",
            spec.docker.display(),
            redact(&argv).join(" ")
        ),
    );
    let mut cmd = Command::new(&spec.docker);
    cmd.args(&argv).envs(docker::BUILD_ENV).stdin(Stdio::null());
    let mut child = process::spawn(&mut cmd, "docker", "--docker PATH")?;
    let code = process::wait(&mut child, signals).await?;
    if code != 0 {
        return Ok(code);
    }
    for push in docker::push_argvs(spec) {
        let mut cmd = Command::new(&spec.docker);
        cmd.args(&push).stdin(Stdio::null());
        let mut child = process::spawn(&mut cmd, "docker", "--docker PATH")?;
        let code = process::wait(&mut child, signals).await?;
        if code != 0 {
            eprintln!("error: `docker {}` failed (exit {code})", push.join(" "));
            return Ok(code);
        }
    }
    Ok(0)
}

/// argv for logs: build-arg values hidden (they may carry tokens).
fn redact(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut prev_build_arg = false;
    for a in argv {
        let shown = if let Some(rest) = a.strip_prefix("build-arg:") {
            format!("build-arg:{}=***", rest.split('=').next().unwrap_or(""))
        } else if prev_build_arg {
            format!("{}=***", a.split('=').next().unwrap_or(""))
        } else {
            a.clone()
        };
        prev_build_arg = a == "--build-arg";
        out.push(shown);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_build_arg_values_only() {
        let argv: Vec<String> = [
            "--opt",
            "build-arg:TOKEN=s3cret",
            "--build-arg",
            "PASS=hunter2",
            "--opt",
            "target=app",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let shown = redact(&argv).join(" ");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(
            shown.contains("build-arg:TOKEN=***")
                && shown.contains("PASS=***")
                && shown.contains("target=app")
        );
    }
}
