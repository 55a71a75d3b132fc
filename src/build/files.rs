//! The paths a build reads or writes: context, Dockerfile, metadata file, TLS files.
//! Made absolute against the current directory and checked to exist.

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use super::options::BuildOptions;
use super::skaffold;
use super::spec::{Dockerfile, Tls};

/// `path` made absolute against `cwd`, with `.` and `..` resolved lexically (symlinks are
/// kept, as docker and buildx do with the context path).
pub fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in cwd.join(path).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !matches!(
                    out.components().next_back(),
                    Some(Component::RootDir) | None
                ) {
                    out.pop();
                }
            }
            other => out.push(other),
        }
    }
    out
}

pub fn utf8<'a>(flag: &str, path: &'a Path) -> Result<&'a str> {
    path.to_str()
        .ok_or_else(|| anyhow!("{flag} {}: the path is not valid UTF-8", path.display()))
}

/// Resolve the flags against skaffold's environment (`env`) and the current directory.
pub fn context(
    flags: &BuildOptions,
    var: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<PathBuf> {
    let (given, from) = match (&flags.context, var(skaffold::BUILD_CONTEXT)) {
        (Some(c), _) => (c.clone(), "CONTEXT"),
        (None, Some(c)) => (PathBuf::from(c), "$BUILD_CONTEXT"),
        (None, None) => (PathBuf::from("."), "the current directory"),
    };
    let text = given.to_string_lossy();
    if text == "-" || text.contains("://") || text.starts_with("git@") {
        bail!(
            "build context {text:?} ({from}): only a local directory can be the context \
             (stdin and URLs are not supported)"
        );
    }
    let context = absolute(cwd, &given);
    if !context.is_dir() {
        bail!(
            "build context {} ({from}) is not a directory: give an existing directory \
             as CONTEXT",
            context.display()
        );
    }
    utf8("CONTEXT", &context)?;
    Ok(context)
}

pub fn dockerfile(file: Option<&Path>, context: &Path, cwd: &Path) -> Result<Dockerfile> {
    let path = match file {
        Some(f) if f.as_os_str() == "-" => {
            bail!("-f -: reading the Dockerfile from stdin is not supported: give its path")
        }
        Some(f) => absolute(cwd, f),
        None => context.join("Dockerfile"),
    };
    if !path.is_file() {
        let hint = match file {
            Some(f) => format!(
                "--file {} is taken relative to the current directory {}",
                f.display(),
                cwd.display()
            ),
            None => "give its path with -f/--file (relative to the current directory)".into(),
        };
        let what = if path.is_dir() {
            "is a directory"
        } else {
            "not found"
        };
        bail!("Dockerfile {} {what}: {hint}", path.display());
    }
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(d), Some(n)) => (d.to_path_buf(), n),
        _ => bail!("Dockerfile {}: not a file path", path.display()),
    };
    let name = utf8("--file", Path::new(name))?.to_string();
    utf8("--file", &dir)?;
    Ok(Dockerfile { path, dir, name })
}

pub fn metadata_file(path: &Path, cwd: &Path) -> Result<PathBuf> {
    let abs = absolute(cwd, path);
    match abs.parent() {
        Some(dir) if dir.is_dir() => {}
        _ => bail!(
            "--metadata-file {}: its directory does not exist; create it first",
            abs.display()
        ),
    }
    if abs.is_dir() {
        bail!(
            "--metadata-file {} is a directory: give a file path",
            abs.display()
        );
    }
    utf8("--metadata-file", &abs)?;
    Ok(abs)
}

pub fn tls(flags: &BuildOptions, cwd: &Path) -> Result<Tls> {
    if flags.tlsdir.is_some()
        && (flags.tlscacert.is_some() || flags.tlscert.is_some() || flags.tlskey.is_some())
    {
        bail!("--tlsdir cannot be combined with --tlscacert, --tlscert or --tlskey: use one or the other");
    }
    let file = |flag: &str, p: &Option<PathBuf>| -> Result<Option<PathBuf>> {
        let Some(p) = p else { return Ok(None) };
        let abs = absolute(cwd, p);
        if !abs.is_file() {
            bail!("{flag} {}: file not found", abs.display());
        }
        utf8(flag, &abs)?;
        Ok(Some(abs))
    };
    let dir = match &flags.tlsdir {
        Some(d) => {
            let abs = absolute(cwd, d);
            if !abs.is_dir() {
                bail!(
                    "--tlsdir {}: not a directory (it should hold ca.pem, cert.pem and key.pem)",
                    abs.display()
                );
            }
            utf8("--tlsdir", &abs)?;
            Some(abs)
        }
        None => None,
    };
    if flags.tlscert.is_some() != flags.tlskey.is_some() {
        bail!("--tlscert and --tlskey go together: give both, or neither");
    }
    Ok(Tls {
        server_name: flags.tlsservername.clone(),
        ca_cert: file("--tlscacert", &flags.tlscacert)?,
        cert: file("--tlscert", &flags.tlscert)?,
        key: file("--tlskey", &flags.tlskey)?,
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_absolute_paths() {
        let cwd = Path::new("/a/b");
        assert_eq!(absolute(cwd, Path::new(".")), PathBuf::from("/a/b"));
        assert_eq!(
            absolute(cwd, Path::new("../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(absolute(cwd, Path::new("/x/../y")), PathBuf::from("/y"));
        assert_eq!(absolute(cwd, Path::new("../../../..")), PathBuf::from("/"));
    }
}
