//! A [`BuildSpec`] as `docker build` (BuildKit) and `docker push` arguments.

use anyhow::{bail, Result};

use super::spec::{BuildSpec, Export, DEFAULT_FRONTEND};

/// Environment for `docker build`: BuildKit, not the legacy builder.
pub const BUILD_ENV: [(&str, &str); 1] = [("DOCKER_BUILDKIT", "1")];

/// Refuse what only buildctl understands, naming the flag and the way out.
pub fn check(spec: &BuildSpec) -> Result<()> {
    if let Some((k, _)) = spec.opts.first() {
        bail!(
            "--opt {k}=... has no meaning with --cli docker: use --build-arg, --label, \
             --target or --platform, or build with --cli buildctl"
        );
    }
    if spec.frontend != DEFAULT_FRONTEND {
        bail!(
            "--frontend {} has no meaning with --cli docker: put `# syntax=IMAGE` on the \
             first line of the Dockerfile instead, or build with --cli buildctl",
            spec.frontend
        );
    }
    if !spec.tls.is_empty() {
        bail!(
            "--tlsservername/--tlscacert/--tlscert/--tlskey/--tlsdir have no meaning with \
             --cli docker: they secure buildctl's connection to buildkitd; docker talks to \
             its own daemon (see DOCKER_HOST and `docker context`)"
        );
    }
    if let Some(addr) = &spec.addr {
        bail!(
            "--addr {addr} has no meaning with --cli docker: docker builds on its own daemon; \
             use --cli buildctl to build on a buildkitd address"
        );
    }
    Ok(())
}

/// `docker build ...` after the program name; run it with [`BUILD_ENV`].
pub fn build_argv(spec: &BuildSpec) -> Vec<String> {
    let mut a: Vec<String> = vec!["build".to_string()];
    let flag = |a: &mut Vec<String>, name: &str, value: String| {
        a.push(name.to_string());
        a.push(value);
    };
    flag(&mut a, "-f", spec.dockerfile.path.display().to_string());
    let names = match &spec.export {
        Export::Push { names } | Export::DockerLoad { names } => names.as_slice(),
        Export::Raw(_) | Export::BuildOnly => &[],
    };
    for t in names {
        flag(&mut a, "-t", t.clone());
    }
    for (k, v) in &spec.build_args {
        flag(&mut a, "--build-arg", format!("{k}={v}"));
    }
    for s in &spec.secrets {
        flag(&mut a, "--secret", s.clone());
    }
    for s in &spec.ssh {
        flag(&mut a, "--ssh", s.clone());
    }
    if let Some(t) = &spec.target {
        flag(&mut a, "--target", t.clone());
    }
    if !spec.platforms.is_empty() {
        flag(&mut a, "--platform", spec.platforms.join(","));
    }
    for (k, v) in &spec.labels {
        flag(&mut a, "--label", format!("{k}={v}"));
    }
    if spec.no_cache {
        a.push("--no-cache".to_string());
    }
    if let Some(p) = spec.progress {
        flag(&mut a, "--progress", p.as_str().to_string());
    }
    for c in &spec.import_cache {
        flag(&mut a, "--cache-from", c.clone());
    }
    for c in &spec.export_cache {
        flag(&mut a, "--cache-to", c.clone());
    }
    if let Export::Raw(outputs) = &spec.export {
        for o in outputs {
            flag(&mut a, "--output", o.clone());
        }
    }
    if spec.explicit_load && matches!(spec.export, Export::DockerLoad { .. }) {
        a.push("--load".to_string());
    }
    if let Some(m) = &spec.metadata_file {
        flag(&mut a, "--metadata-file", m.display().to_string());
    }
    a.extend(spec.extra.iter().cloned());
    a.push(spec.context.display().to_string());
    a
}

/// `docker push NAME` for every name, after a successful build; none unless pushing.
pub fn push_argvs(spec: &BuildSpec) -> Vec<Vec<String>> {
    match &spec.export {
        Export::Push { names } => names
            .iter()
            .map(|n| vec!["push".to_string(), n.clone()])
            .collect(),
        _ => Vec::new(),
    }
}
