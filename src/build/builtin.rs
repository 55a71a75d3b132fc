//! A [`BuildSpec`] as the built-in client's [`LocalBuild`]: what buildctl.rs is for
//! buildctl's argv. Also the checks of the flags only the built-in client (and
//! buildctl) understand, so bad input is refused before any connection.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use super::csv;
use super::spec::{BuildSpec, Export};
use crate::buildkit::session::filesend::ExportSink;
use crate::buildkit::session::secrets::SecretSource;
use crate::buildkit::{CacheEntry, ExportEntry, LocalBuild, NetworkMode, SolveOptions};

/// Entitlements a build may ask for with --allow.
pub const ENTITLEMENTS: &[&str] = &["network.host", "security.insecure"];

/// --network: docker's names.
pub fn network(raw: Option<&str>) -> Result<NetworkMode> {
    match raw {
        None => Ok(NetworkMode::Default),
        Some(r) => NetworkMode::parse(r.trim()).ok_or_else(|| {
            anyhow!("--network {r:?} is not a build network: use default, none or host")
        }),
    }
}

/// --add-host HOST:IP (docker's form; HOST=IP as buildctl's add-hosts also works).
pub fn add_host(raw: &str) -> Result<(String, String)> {
    let split = raw
        .split_once('=')
        .or_else(|| raw.split_once(':'))
        .filter(|(h, ip)| !h.trim().is_empty() && !ip.trim().is_empty());
    let Some((host, ip)) = split else {
        bail!("--add-host {raw:?}: give HOST:IP, e.g. --add-host db:127.0.0.1");
    };
    let ip = ip.trim();
    if ip.parse::<std::net::IpAddr>().is_err() {
        bail!("--add-host {raw:?}: {ip:?} is not an IP address");
    }
    if host.contains([',', ' ']) {
        bail!("--add-host {raw:?}: a host name cannot contain ',' or blanks");
    }
    Ok((host.trim().to_string(), ip.to_string()))
}

/// --allow ENTITLEMENT.
pub fn entitlement(raw: &str) -> Result<String> {
    let e = raw.trim();
    if ENTITLEMENTS.contains(&e) {
        Ok(e.to_string())
    } else {
        bail!(
            "--allow {raw:?} is not an entitlement: use {}",
            ENTITLEMENTS.join(" or ")
        )
    }
}

/// --build-context NAME=DIR: a local directory under a name (DIR from `cwd`).
pub fn named_context(raw: &str, cwd: &Path) -> Result<(String, PathBuf)> {
    let Some((name, dir)) = raw.split_once('=') else {
        bail!("--build-context {raw:?}: give NAME=DIR, e.g. --build-context assets=../assets");
    };
    let name = name.trim();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if !valid || ["context", "dockerfile"].contains(&name) {
        bail!(
            "--build-context {raw:?}: {name:?} cannot name a context (letters, digits, -_./; \
             not context or dockerfile)"
        );
    }
    if dir.contains("://") || dir.starts_with("docker-image:") {
        bail!("--build-context {raw:?}: only local directories are supported as named contexts");
    }
    let path = super::files::absolute(cwd, Path::new(dir));
    if !path.is_dir() {
        bail!(
            "--build-context {name}: {} is not a directory (relative paths are from {})",
            path.display(),
            cwd.display()
        );
    }
    Ok((name.to_string(), path))
}

/// The parts of an --output the daemon sees and where its bytes go.
fn output(raw: &str, cwd: &Path) -> Result<(ExportEntry, Option<ExportSink>)> {
    let fields = csv::attrs(raw).map_err(|e| anyhow!("--output {raw:?}: {e}"))?;
    let mut attrs: BTreeMap<String, String> = BTreeMap::new();
    let mut kind = String::new();
    let mut dest: Option<String> = None;
    for (k, v) in fields {
        match k.as_str() {
            "type" => kind = v,
            "dest" => dest = Some(v),
            _ => {
                attrs.insert(k, v);
            }
        }
    }
    if kind == "registry" {
        kind = "image".to_string();
        attrs.entry("push".into()).or_insert_with(|| "true".into());
    }
    let sink = match kind.as_str() {
        "local" => {
            let Some(d) = dest.filter(|d| !d.is_empty() && d != "-") else {
                bail!("--output {raw:?}: type=local needs dest=DIR");
            };
            Some(ExportSink::LocalDir(super::files::absolute(
                cwd,
                Path::new(&d),
            )))
        }
        "tar" | "oci" | "docker" => match dest.as_deref() {
            None | Some("-") => {
                if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    bail!(
                        "--output {raw:?}: a {kind} tarball will not be written to a terminal: \
                         add dest=FILE, or redirect stdout"
                    );
                }
                Some(ExportSink::Stdout)
            }
            Some(d) => {
                let path = super::files::absolute(cwd, Path::new(d));
                match path.parent() {
                    Some(p) if p.is_dir() => {}
                    _ => bail!(
                        "--output {raw:?}: the directory of {} does not exist",
                        path.display()
                    ),
                }
                Some(ExportSink::File(path))
            }
        },
        "image" | "moby" => {
            if dest.is_some() {
                bail!("--output {raw:?}: type={kind} has no dest (it goes to a registry or image store)");
            }
            None
        }
        other => bail!(
            "--output {raw:?}: type={other:?} is not an exporter: use local, tar, oci, docker, \
             image or registry"
        ),
    };
    Ok((ExportEntry { kind, attrs }, sink))
}

fn cache(raw: &str) -> Result<CacheEntry> {
    if !raw.contains("type=") {
        return Ok(CacheEntry {
            kind: "registry".into(),
            attrs: BTreeMap::from([("ref".to_string(), raw.trim().to_string())]),
        });
    }
    let mut entry = CacheEntry::default();
    for (k, v) in csv::attrs(raw).map_err(|e| anyhow!("cache {raw:?}: {e}"))? {
        if k == "type" {
            entry.kind = v;
        } else {
            entry.attrs.insert(k, v);
        }
    }
    Ok(entry)
}

/// --secret as buildctl reads it: `src=` a file, `env=` a variable; `type=env`
/// alone, or an id with neither, names a variable called like the id.
pub fn secret(raw: &str, cwd: &Path) -> Result<(String, SecretSource)> {
    let fields = csv::attrs(raw).map_err(|e| anyhow!("--secret: {e}"))?;
    let get = |key: &[&str]| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| key.contains(&k.as_str()))
            .map(|(_, v)| v.clone())
    };
    let id = get(&["id"]);
    let src = get(&["src", "source"]);
    let env = get(&["env"]);
    let typ = get(&["type"]);
    let id = match (id, &src, &env) {
        (Some(id), _, _) => id,
        (None, Some(src), _) => Path::new(src)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        (None, None, Some(env)) => env.clone(),
        (None, None, None) => bail!("--secret: give id=, src= or env="),
    };
    let source = if typ.as_deref() == Some("env") || (env.is_some() && src.is_none()) {
        SecretSource::Env(env.or(src).unwrap_or_else(|| id.clone()))
    } else if let Some(src) = src {
        SecretSource::File(cwd.join(src))
    } else {
        SecretSource::Env(id.clone())
    };
    source
        .check(&id)
        .map_err(|e| anyhow!("--secret id={id}: {e}"))?;
    Ok((id, source))
}

/// The built-in client's whole build, from a spec. `cwd` resolves relative paths.
pub fn local_build(spec: &BuildSpec, cwd: &Path) -> Result<LocalBuild> {
    if spec.frontend != super::spec::DEFAULT_FRONTEND {
        bail!(
            "--frontend {}: the built-in client runs the Dockerfile frontend only; use --cli buildctl",
            spec.frontend
        );
    }
    if !spec.extra.is_empty() {
        bail!(
            "arguments after -- ({}) are for buildctl or docker: drop them, or use --cli buildctl",
            spec.extra.join(" ")
        );
    }
    let (exports, sinks): (Vec<ExportEntry>, Vec<Option<ExportSink>>) = match &spec.export {
        Export::Push { names } => (
            vec![ExportEntry {
                kind: "image".into(),
                attrs: BTreeMap::from([
                    ("name".to_string(), names.join(",")),
                    ("push".to_string(), "true".to_string()),
                ]),
            }],
            vec![None],
        ),
        Export::DockerLoad { names } => (
            vec![ExportEntry {
                kind: "docker".into(),
                attrs: BTreeMap::from([("name".to_string(), names.join(","))]),
            }],
            vec![Some(ExportSink::DockerLoad {
                docker: spec.docker.clone(),
                docker_host: None,
            })],
        ),
        Export::Raw(outputs) => outputs
            .iter()
            .map(|o| output(o, cwd))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip(),
        Export::BuildOnly => (Vec::new(), Vec::new()),
    };
    let mut secrets = HashMap::new();
    for raw in &spec.secrets {
        let (id, source) = secret(raw, cwd)?;
        secrets.insert(id, source);
    }
    let solve = SolveOptions {
        dockerfile_name: spec.dockerfile.name.clone(),
        target: spec.target.clone(),
        build_args: spec.build_args.clone(),
        labels: spec.labels.clone(),
        platforms: spec.platforms.clone(),
        no_cache: spec.no_cache,
        network: spec.network,
        add_hosts: spec.add_hosts.clone(),
        named_contexts: spec.named_contexts.iter().map(|(n, _)| n.clone()).collect(),
        frontend_opts: spec.opts.clone(),
        entitlements: spec.allow.clone(),
        exports,
        cache_imports: spec
            .import_cache
            .iter()
            .map(|c| cache(c))
            .collect::<Result<_>>()?,
        cache_exports: spec
            .export_cache
            .iter()
            .map(|c| cache(c))
            .collect::<Result<_>>()?,
    };
    Ok(LocalBuild {
        solve,
        context: spec.context.clone(),
        dockerfile_dir: spec.dockerfile.dir.clone(),
        named_contexts: spec.named_contexts.clone(),
        secrets,
        sinks,
        shared_key: crate::buildkit::shared_key(&spec.context),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_add_host_allow_and_named_contexts_are_checked() {
        assert_eq!(network(Some("none")).unwrap(), NetworkMode::None);
        assert_eq!(network(None).unwrap(), NetworkMode::Default);
        assert!(network(Some("bridge"))
            .unwrap_err()
            .to_string()
            .contains("default, none or host"));
        assert_eq!(
            add_host("db:127.0.0.2").unwrap(),
            ("db".into(), "127.0.0.2".into())
        );
        assert_eq!(add_host("db=::1").unwrap(), ("db".into(), "::1".into()));
        assert!(add_host("db").is_err());
        assert!(add_host("db:not-an-ip")
            .unwrap_err()
            .to_string()
            .contains("not an IP"));
        assert_eq!(entitlement("network.host").unwrap(), "network.host");
        assert!(entitlement("root").is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        let (n, p) = named_context("assets=assets", dir.path()).unwrap();
        assert_eq!(n, "assets");
        assert_eq!(p, dir.path().join("assets"));
        assert!(named_context("missing=nope", dir.path())
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
        assert!(named_context("context=assets", dir.path()).is_err());
        assert!(named_context("img=docker-image://alpine", dir.path()).is_err());
        assert!(named_context("noequals", dir.path()).is_err());
    }

    #[test]
    fn outputs_split_into_what_the_daemon_sees_and_where_bytes_go() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        let (e, s) = output("type=local,dest=out", cwd).unwrap();
        assert_eq!(e.kind, "local");
        assert!(e.attrs.is_empty(), "dest stays on our side");
        assert_eq!(s, Some(ExportSink::LocalDir(cwd.join("out"))));
        let (e, s) = output("type=tar,dest=img.tar", cwd).unwrap();
        assert_eq!(e.kind, "tar");
        assert_eq!(s, Some(ExportSink::File(cwd.join("img.tar"))));
        let (e, s) = output("type=registry,name=127.0.0.1:5000/a:1", cwd).unwrap();
        assert_eq!(e.kind, "image");
        assert_eq!(e.attrs["push"], "true");
        assert_eq!(e.attrs["name"], "127.0.0.1:5000/a:1");
        assert_eq!(s, None);
        assert!(output("type=local", cwd)
            .unwrap_err()
            .to_string()
            .contains("dest=DIR"));
        assert!(output("type=tar,dest=no/such/dir/x.tar", cwd)
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        assert!(output("type=zip,dest=x", cwd)
            .unwrap_err()
            .to_string()
            .contains("not an exporter"));
    }

    #[test]
    fn secrets_from_files_and_variables_refused_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("npmrc"), "x").unwrap();
        let (id, s) = secret("id=npm,src=npmrc", dir.path()).unwrap();
        assert_eq!(id, "npm");
        assert_eq!(s, SecretSource::File(dir.path().join("npmrc")));
        let (id, _) = secret("src=npmrc", dir.path()).unwrap();
        assert_eq!(id, "npmrc");
        // A name held in a const: the help test scans the source for variables read.
        const TOKEN: &str = "KBK_BUILTIN_TEST_TOKEN";
        std::env::set_var(TOKEN, "v");
        let (id, s) = secret("id=tok,env=KBK_BUILTIN_TEST_TOKEN", dir.path()).unwrap();
        assert_eq!(
            (id.as_str(), s),
            ("tok", SecretSource::Env("KBK_BUILTIN_TEST_TOKEN".into()))
        );
        let e = secret("id=gone,src=missing", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("id=gone") && e.contains("missing"), "{e}");
        let e = secret("id=KBK_NO_SUCH_VARIABLE_SET", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("KBK_NO_SUCH_VARIABLE_SET"), "{e}");
    }

    #[test]
    fn caches_bare_references_are_registry_refs() {
        let c = cache("127.0.0.1:5000/app:cache").unwrap();
        assert_eq!(c.kind, "registry");
        assert_eq!(c.attrs["ref"], "127.0.0.1:5000/app:cache");
        let c = cache("type=inline").unwrap();
        assert_eq!(c.kind, "inline");
        assert!(c.attrs.is_empty());
    }
}
