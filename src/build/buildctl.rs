//! A [`BuildSpec`] as `buildctl` arguments.

use super::spec::{BuildSpec, Export};
use super::{attrs, csv};

/// The `--output` values for buildctl: none for [`Export::BuildOnly`].
pub fn outputs(export: &Export) -> Vec<String> {
    match export {
        Export::Push { names } => vec![csv::join([
            "type=image".to_string(),
            format!("name={}", names.join(",")),
            "push=true".to_string(),
        ])],
        // No dest: buildctl writes the tarball to stdout, for `docker load`.
        Export::DockerLoad { names } => vec![csv::join([
            "type=docker".to_string(),
            format!("name={}", names.join(",")),
        ])],
        Export::Raw(outputs) => outputs
            .iter()
            .map(|o| attrs::output_for_buildctl(o))
            .collect(),
        Export::BuildOnly => Vec::new(),
    }
}

/// The whole argv after the program name: global connection flags for `addr` (the
/// tunnel's local endpoint, or --addr), then `build` and its flags.
pub fn argv(spec: &BuildSpec, addr: &str) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let flag = |a: &mut Vec<String>, name: &str, value: String| {
        a.push(name.to_string());
        a.push(value);
    };
    flag(&mut a, "--addr", addr.to_string());
    let tls = &spec.tls;
    if let Some(s) = &tls.server_name {
        flag(&mut a, "--tlsservername", s.clone());
    }
    for (name, path) in [
        ("--tlscacert", &tls.ca_cert),
        ("--tlscert", &tls.cert),
        ("--tlskey", &tls.key),
        ("--tlsdir", &tls.dir),
    ] {
        if let Some(p) = path {
            flag(&mut a, name, p.display().to_string());
        }
    }

    a.push("build".to_string());
    flag(&mut a, "--frontend", spec.frontend.clone());
    flag(
        &mut a,
        "--local",
        format!("context={}", spec.context.display()),
    );
    flag(
        &mut a,
        "--local",
        format!("dockerfile={}", spec.dockerfile.dir.display()),
    );
    flag(
        &mut a,
        "--opt",
        format!("filename={}", spec.dockerfile.name),
    );
    if let Some(t) = &spec.target {
        flag(&mut a, "--opt", format!("target={t}"));
    }
    if !spec.platforms.is_empty() {
        flag(
            &mut a,
            "--opt",
            format!("platform={}", spec.platforms.join(",")),
        );
    }
    for (k, v) in &spec.build_args {
        flag(&mut a, "--opt", format!("build-arg:{k}={v}"));
    }
    for (k, v) in &spec.labels {
        flag(&mut a, "--opt", format!("label:{k}={v}"));
    }
    if spec.no_cache {
        a.push("--no-cache".to_string());
    }
    if let Some(p) = spec.progress {
        flag(&mut a, "--progress", p.as_str().to_string());
    }
    for s in &spec.secrets {
        flag(&mut a, "--secret", s.clone());
    }
    for s in &spec.ssh {
        flag(&mut a, "--ssh", s.clone());
    }
    for c in &spec.export_cache {
        flag(&mut a, "--export-cache", attrs::cache_for_buildctl(c));
    }
    for c in &spec.import_cache {
        flag(&mut a, "--import-cache", attrs::cache_for_buildctl(c));
    }
    for (k, v) in &spec.opts {
        flag(&mut a, "--opt", format!("{k}={v}"));
    }
    if let Some(m) = &spec.metadata_file {
        flag(&mut a, "--metadata-file", m.display().to_string());
    }
    for o in outputs(&spec.export) {
        flag(&mut a, "--output", o);
    }
    a.extend(spec.extra.iter().cloned());
    a
}
