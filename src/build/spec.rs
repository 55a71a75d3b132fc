//! Flags + skaffold's environment -> one resolved, validated [`BuildSpec`].
//! Pure but for existence checks on the paths it is given.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::options::{BuildClient, BuildOptions, Progress};
use super::{attrs, builtin, files, kv, skaffold};
use crate::buildkit::NetworkMode;

/// The Dockerfile, as docker (one path) and buildctl (a directory + a name in it) need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Absolute path of the file.
    pub path: PathBuf,
    /// The directory holding it (buildctl's `--local dockerfile=`).
    pub dir: PathBuf,
    /// Its name in that directory (buildctl's `--opt filename=`).
    pub name: String,
}

/// Where the built image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    /// Push every name to its registry.
    Push { names: Vec<String> },
    /// Into the local docker daemon under every name: buildctl writes a docker tarball
    /// to stdout for `docker load`; docker build loads it itself.
    DockerLoad { names: Vec<String> },
    /// The user's own --output values, verbatim (validated).
    Raw(Vec<String>),
    /// Nowhere: only the build cache keeps the result.
    BuildOnly,
}

/// TLS for buildctl's connection to buildkitd. Paths are absolute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    pub server_name: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub dir: Option<PathBuf>,
}

impl Tls {
    pub fn is_empty(&self) -> bool {
        *self == Tls::default()
    }
}

/// Everything a build needs, resolved and checked. Renderers turn it into argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    pub client: BuildClient,
    pub buildctl: PathBuf,
    pub docker: PathBuf,
    /// Absolute build context directory.
    pub context: PathBuf,
    pub dockerfile: Dockerfile,
    /// Image names, first is the main one ($IMAGE by default).
    pub tags: Vec<String>,
    pub export: Export,
    /// --load was given: docker build gets `--load` too (for non-default builders).
    pub explicit_load: bool,
    /// Build arguments with their values (bare keys resolved from the environment).
    pub build_args: Vec<(String, String)>,
    /// --secret values, verbatim.
    pub secrets: Vec<String>,
    /// --ssh values, verbatim.
    pub ssh: Vec<String>,
    pub target: Option<String>,
    pub platforms: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub no_cache: bool,
    pub progress: Option<Progress>,
    pub export_cache: Vec<String>,
    pub import_cache: Vec<String>,
    /// --opt pairs for buildctl.
    pub opts: Vec<(String, String)>,
    /// Absolute path.
    pub metadata_file: Option<PathBuf>,
    pub frontend: String,
    /// --network: the network of RUN steps.
    pub network: NetworkMode,
    /// --add-host, as (host, ip).
    pub add_hosts: Vec<(String, String)>,
    /// --allow entitlements.
    pub allow: Vec<String>,
    /// --build-context NAME=DIR, DIR absolute.
    pub named_contexts: Vec<(String, PathBuf)>,
    /// --addr: a buildkitd to use directly.
    pub addr: Option<String>,
    pub tls: Tls,
    /// Arguments after `--`, for the client's build command.
    pub extra: Vec<String>,
    /// Things the user should know (print on stderr); never holds a secret or a value.
    pub notes: Vec<String>,
}

pub const DEFAULT_FRONTEND: &str = "dockerfile.v0";

impl BuildSpec {
    /// Whether the image goes to its registry.
    pub fn pushes(&self) -> bool {
        matches!(self.export, Export::Push { .. })
    }

    /// The main image name, if any (the hash key derives from it).
    pub fn image(&self) -> Option<&str> {
        self.tags.first().map(String::as_str)
    }
}

pub fn resolve(
    flags: &BuildOptions,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<BuildSpec> {
    let mut notes = Vec::new();
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());

    let context = files::context(flags, &var, cwd)?;
    let dockerfile = files::dockerfile(flags.file.as_deref(), &context, cwd)?;

    let tags: Vec<String> = if flags.tags.is_empty() {
        var(skaffold::IMAGE)
            .map(|i| vec![i.trim().to_string()])
            .unwrap_or_default()
    } else {
        flags.tags.clone()
    };
    for t in &tags {
        check_tag(t)?;
    }

    let platforms = if flags.platforms.is_empty() {
        skaffold::split_platforms(var(skaffold::PLATFORMS).as_deref())
    } else {
        skaffold::split_platforms(flags.platforms.iter().map(String::as_str))
    };

    let export = resolve_export(flags, &var, &tags, &platforms, &mut notes)?;

    let mut build_args = Vec::new();
    for raw in &flags.build_args {
        match kv::build_arg(raw, env)? {
            Some(pair) => build_args.push(pair),
            None => notes.push(format!(
                "--build-arg {raw}: {raw} is not set in the environment, so it is not \
                 passed (the Dockerfile's default applies), as with docker"
            )),
        }
    }
    let labels = flags
        .labels
        .iter()
        .map(|l| kv::label(l))
        .collect::<Result<Vec<_>>>()?;
    let opts = flags
        .opts
        .iter()
        .map(|o| kv::opt(o))
        .collect::<Result<Vec<_>>>()?;

    for (i, s) in flags.secrets.iter().enumerate() {
        attrs::check_secret(s, i + 1, cwd)?;
    }
    if flags.ssh.iter().any(|s| s.trim().is_empty()) {
        bail!("--ssh is empty: give default, or ID=SOCKET_OR_KEY");
    }
    for c in &flags.export_cache {
        attrs::check_cache("--export-cache", c)?;
    }
    for c in &flags.import_cache {
        attrs::check_cache("--import-cache", c)?;
    }

    if let Some(t) = &flags.target {
        if t.trim().is_empty() {
            bail!("--target is empty: name a stage of the Dockerfile, or leave it out");
        }
    }
    if flags.frontend.trim().is_empty() {
        bail!("--frontend is empty: leave it out for {DEFAULT_FRONTEND}");
    }
    let metadata_file = match &flags.metadata_file {
        Some(p) => Some(files::metadata_file(p, cwd)?),
        None => None,
    };
    let addr = match &flags.addr {
        Some(a) if a.trim().is_empty() => {
            bail!("--addr is empty: give e.g. tcp://HOST:1234, or leave it out to pick a pod")
        }
        other => other.clone(),
    };

    Ok(BuildSpec {
        client: flags.cli,
        buildctl: flags.buildctl.clone(),
        docker: flags.docker.clone(),
        context,
        dockerfile,
        tags,
        export,
        explicit_load: flags.load,
        build_args,
        secrets: flags.secrets.clone(),
        ssh: flags.ssh.clone(),
        target: flags.target.clone(),
        platforms,
        labels,
        no_cache: flags.no_cache,
        progress: flags.progress,
        export_cache: flags.export_cache.clone(),
        import_cache: flags.import_cache.clone(),
        opts,
        metadata_file,
        frontend: flags.frontend.clone(),
        network: builtin::network(flags.network.as_deref())?,
        add_hosts: flags
            .add_hosts
            .iter()
            .map(|h| builtin::add_host(h))
            .collect::<Result<_>>()?,
        allow: flags
            .allow
            .iter()
            .map(|a| builtin::entitlement(a))
            .collect::<Result<_>>()?,
        named_contexts: flags
            .build_contexts
            .iter()
            .map(|c| builtin::named_context(c, cwd))
            .collect::<Result<_>>()?,
        addr,
        tls: files::tls(flags, cwd)?,
        extra: flags.extra.clone(),
        notes,
    })
}

fn check_tag(tag: &str) -> Result<()> {
    if tag.trim().is_empty() {
        bail!("-t/--tag is empty: give NAME[:TAG], e.g. registry.example/app:v1");
    }
    if tag.contains(',') {
        bail!("-t {tag:?}: an image name cannot contain ','; repeat -t for several names");
    }
    if tag.chars().any(|c| c.is_whitespace() || c == '"') {
        bail!("-t {tag:?}: an image name cannot contain blanks or quotes");
    }
    Ok(())
}

fn resolve_export(
    flags: &BuildOptions,
    var: &dyn Fn(&str) -> Option<String>,
    tags: &[String],
    platforms: &[String],
    notes: &mut Vec<String>,
) -> Result<Export> {
    let push = if flags.push {
        true
    } else if flags.no_push {
        false
    } else {
        match var(skaffold::PUSH_IMAGE) {
            Some(v) => skaffold::parse_push_image(&v)?.unwrap_or(false),
            None => false,
        }
    };

    if !flags.outputs.is_empty() {
        for o in &flags.outputs {
            attrs::check_output(o)?;
        }
        if !tags.is_empty() {
            notes.push(format!(
                "--output replaces the default output: {} is not pushed or loaded unless \
                 an --output says so",
                tags.join(", ")
            ));
        } else if flags.push || flags.load {
            notes.push("--push/--load ignored: --output decides where the image goes".into());
        }
        return Ok(Export::Raw(flags.outputs.clone()));
    }

    if tags.is_empty() {
        if flags.push || flags.load {
            let flag = if flags.push { "--push" } else { "--load" };
            bail!("{flag} needs an image name: give -t NAME[:TAG], or set $IMAGE");
        }
        notes.push(
            "no image name (-t or $IMAGE): the image is built but not exported; only the \
             build cache keeps it"
                .into(),
        );
        return Ok(Export::BuildOnly);
    }
    let names = tags.to_vec();

    if push {
        if flags.load {
            notes.push("--load ignored: the image is pushed; pull it to have it locally".into());
        }
        return Ok(Export::Push { names });
    }
    if flags.no_load {
        notes.push(format!(
            "--no-load: {} is built but neither pushed nor loaded into docker",
            names.join(", ")
        ));
        return Ok(Export::BuildOnly);
    }
    if platforms.len() > 1 {
        bail!(
            "{} platforms ({}) cannot be loaded into the local docker daemon: use --push \
             (or PUSH_IMAGE=true), or a single --platform",
            platforms.len(),
            platforms.join(", ")
        );
    }
    Ok(Export::DockerLoad { names })
}
