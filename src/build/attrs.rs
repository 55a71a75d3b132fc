//! The CSV-valued flags (--output, --secret, --export-cache, --import-cache): checked
//! here as buildctl would check them, so mistakes surface before any pod is picked.

use std::path::Path;

use anyhow::{anyhow, bail, Result};

use super::csv;

/// --output: CSV `key=value` fields with a non-empty `type`.
pub fn check_output(raw: &str) -> Result<()> {
    let fields = csv::attrs(raw).map_err(|e| anyhow!("--output {raw:?}: {e}"))?;
    if let Some((_, v)) = fields.iter().find(|(k, _)| k == "output") {
        bail!("--output {raw:?}: there is no output= option; you meant dest={v}");
    }
    match fields.iter().rev().find(|(k, _)| k == "type") {
        Some((_, t)) if !t.is_empty() => Ok(()),
        _ => bail!(
            "--output {raw:?} has no type=: say what to export, e.g. type=local,dest=DIR, \
             type=image,name=NAME,push=true or type=docker,name=NAME,dest=FILE"
        ),
    }
}

/// buildctl has no `type=registry` (it is docker buildx's name for a pushed image):
/// rewrite it as `type=image` with `push=true` unless push is given. Anything else,
/// and anything unreadable, is returned unchanged.
pub fn output_for_buildctl(raw: &str) -> String {
    let Ok(mut fields) = csv::attrs(raw) else {
        return raw.to_string();
    };
    if !fields.iter().any(|(k, v)| k == "type" && v == "registry") {
        return raw.to_string();
    }
    for (k, v) in fields.iter_mut() {
        if k == "type" {
            *v = "image".to_string();
        }
    }
    if !fields.iter().any(|(k, _)| k == "push") {
        fields.push(("push".to_string(), "true".to_string()));
    }
    csv::join(fields.iter().map(|(k, v)| format!("{k}={v}")))
}

/// --export-cache / --import-cache: CSV with `type=`, or (deprecated, but buildctl and
/// docker both take it) a bare registry reference.
pub fn check_cache(flag: &str, raw: &str) -> Result<()> {
    if raw.trim().is_empty() {
        bail!("{flag} is empty: give e.g. type=registry,ref=REPO:cache");
    }
    if !raw.contains("type=") {
        if raw.contains([',', '=', ' ']) {
            bail!(
                "{flag} {raw:?} has no type=: give e.g. type=registry,ref=REPO:cache \
                 (or just a registry reference)"
            );
        }
        return Ok(());
    }
    let fields = csv::attrs(raw).map_err(|e| anyhow!("{flag} {raw:?}: {e}"))?;
    match fields.iter().rev().find(|(k, _)| k == "type") {
        Some((_, t)) if !t.is_empty() => Ok(()),
        _ => bail!("{flag} {raw:?}: type= is empty: e.g. type=registry, type=local, type=inline"),
    }
}

/// A cache flag as buildctl wants it: a bare reference becomes `type=registry,ref=...`
/// (buildctl still takes the bare form, with a deprecation warning).
pub fn cache_for_buildctl(raw: &str) -> String {
    if raw.contains("type=") {
        raw.to_string()
    } else {
        csv::join(["type=registry".to_string(), format!("ref={raw}")])
    }
}

/// --secret: the keys buildctl knows, a known type, and (for a file) a file that exists,
/// relative paths taken from `cwd`. Errors name the secret by its id (or position),
/// never by its whole text.
pub fn check_secret(raw: &str, index: usize, cwd: &Path) -> Result<()> {
    let fields = csv::attrs(raw).map_err(|e| anyhow!("--secret #{index}: {e}"))?;
    let id = fields
        .iter()
        .rev()
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v.clone());
    let name = match &id {
        Some(id) => format!("--secret id={id}"),
        None => format!("--secret #{index}"),
    };
    let mut typ = None;
    let mut src = None;
    let mut env = None;
    for (k, v) in &fields {
        match k.as_str() {
            "id" => {}
            "type" if v == "file" || v == "env" => typ = Some(v.as_str()),
            "type" => bail!("{name}: type={v:?} is not a secret type: use type=file or type=env"),
            "src" | "source" => src = Some(v.as_str()),
            "env" => env = Some(v.as_str()),
            other => bail!("{name}: unknown key {other:?}: use id=, src=, env= or type="),
        }
    }
    if id.as_deref() == Some("") {
        bail!("--secret #{index}: id= is empty: name the secret, e.g. id=npmrc");
    }
    if id.is_none() && src.is_none() && env.is_none() {
        bail!("--secret #{index}: give at least id=, src= or env=, e.g. id=npmrc,src=.npmrc");
    }
    if typ == Some("env") || env.is_some() {
        return Ok(());
    }
    if let Some(src) = src {
        if src.is_empty() {
            bail!("{name}: src= is empty: give the file holding the secret");
        }
        let path = cwd.join(src);
        if !path.is_file() {
            bail!(
                "{name}: secret file {} not found (relative paths are from {})",
                path.display(),
                cwd.display()
            );
        }
    }
    Ok(())
}
