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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::testkit::{self, Tree};
    use crate::build::{buildctl, docker};
    use proptest::prelude::*;

    /// The values that follow each `flag` in an argv.
    fn values_of(argv: &[String], flag: &str) -> Vec<String> {
        argv.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn outputs() {
        check_output("type=local,dest=/o").unwrap();
        check_output("type=image,\"name=a:1,b:2\",push=true").unwrap();
        for (bad, says) in [
            ("dest=/o", "has no type="),
            ("type=,dest=/o", "has no type="),
            ("type=local,/o", "field 2 is not key=value"),
            ("/tmp/out", "not key=value"),
            ("", "not valid CSV"),
            ("type=local,output=/o", "dest=/o"),
            ("type=image,name=a\"b", "not valid CSV"),
        ] {
            let msg = check_output(bad).unwrap_err().to_string();
            assert!(
                msg.contains("--output") && msg.contains(says),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn registry_outputs_become_pushed_images_for_buildctl() {
        assert_eq!(
            output_for_buildctl("type=registry,name=r/a:1"),
            "type=image,name=r/a:1,push=true"
        );
        assert_eq!(
            output_for_buildctl("type=registry,\"name=a,b\",push=false"),
            "type=image,\"name=a,b\",push=false"
        );
        assert_eq!(
            output_for_buildctl("type=local,dest=o"),
            "type=local,dest=o"
        );
    }

    #[test]
    fn caches() {
        check_cache("--export-cache", "type=registry,ref=r/a:cache,mode=max").unwrap();
        check_cache("--import-cache", "r/a:cache").unwrap();
        assert!(check_cache("--import-cache", "").is_err());
        assert!(check_cache("--import-cache", "ref=r/a:cache").is_err());
        assert!(check_cache("--import-cache", "type=,ref=x").is_err());
        assert!(check_cache("--import-cache", "type=local,\"src").is_err());
        assert_eq!(
            cache_for_buildctl("r/a:cache"),
            "type=registry,ref=r/a:cache"
        );
        assert_eq!(cache_for_buildctl("type=inline"), "type=inline");
    }

    #[test]
    fn secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("npmrc"), "token").unwrap();
        let cwd = dir.path();
        check_secret("id=npm,src=npmrc", 1, cwd).unwrap();
        check_secret("id=npm,source=npmrc,type=file", 1, cwd).unwrap();
        check_secret("id=tok,env=TOKEN", 1, cwd).unwrap();
        check_secret("id=tok,src=TOKEN,type=env", 1, cwd).unwrap();
        check_secret("id=tok", 1, cwd).unwrap();
        let msg = check_secret("id=npm,src=missing", 1, cwd)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("--secret id=npm") && msg.contains("missing"),
            "{msg}"
        );
        assert!(msg.contains(&cwd.display().to_string()), "{msg}");
        let msg = check_secret("id=x,value=hunter2", 3, cwd)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("\"value\"") && !msg.contains("hunter2"),
            "{msg}"
        );
        let msg = check_secret("type=ssh,id=x", 1, cwd)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("type=file or type=env"), "{msg}");
        let msg = check_secret("hunter2", 2, cwd).unwrap_err().to_string();
        assert!(
            msg.contains("--secret #2") && !msg.contains("hunter2"),
            "{msg}"
        );
        assert!(check_secret("id=", 1, cwd).is_err());
        assert!(check_secret("type=file", 1, cwd).is_err());
    }

    proptest! {
        #[test]
        fn checks_never_panic(raw in ".*") {
            let _ = check_output(&raw);
            let _ = output_for_buildctl(&raw);
            let _ = check_cache("--import-cache", &raw);
            let _ = cache_for_buildctl(&raw);
            let _ = check_secret(&raw, 1, Path::new("/nonexistent"));
        }

        #[test]
        fn an_output_with_a_type_is_accepted(
            typ in "[a-z]{1,8}",
            attrs in prop::collection::vec(("[a-z]{1,6}", "[^\"]{0,10}"), 0..4),
        ) {
            let mut fields = vec![format!("type={typ}")];
            fields.extend(attrs.iter().filter(|(k, _)| k != "output" && k != "type").map(|(k, v)| format!("{k}={v}")));
            let line = csv::join(&fields);
            prop_assert!(check_output(&line).is_ok(), "{}", line);
        }

        /// Valid --secret combinations of id, src/source (a file that exists), env and
        /// type, in any order and key case, with CSV metacharacters in the values:
        /// rendered as one CSV record, read back field for field, accepted, and handed
        /// to buildctl and docker verbatim.
        #[test]
        fn valid_secrets_round_trip(
            id in prop::option::of("[A-Za-z0-9_.,\"= -]{1,12}"),
            kind in 0u8..4,
            file in "\\.?[A-Za-z0-9_,\"= -]{1,12}",
            var in "[A-Za-z_][A-Za-z0-9_]{0,10}",
            source_key in prop::sample::select(vec!["src", "source"]),
            typed in any::<bool>(),
            upper in any::<u8>(),
            order in prop::collection::vec(any::<u16>(), 3),
        ) {
            let t = Tree::new();
            // id alone must be there when nothing else names the secret.
            let id = if kind == 0 { id.or_else(|| Some("x".into())) } else { id };
            let mut fields: Vec<(&str, String)> = Vec::new();
            if let Some(id) = &id {
                fields.push(("id", id.clone()));
            }
            match kind {
                0 => {
                    if typed {
                        fields.push(("type", "env".into()));
                    }
                }
                1 => {
                    std::fs::write(t.root.join(&file), "s3cr3t").unwrap();
                    fields.push((source_key, file.clone()));
                    if typed {
                        fields.push(("type", "file".into()));
                    }
                }
                2 => {
                    fields.push(("env", var.clone()));
                    if typed {
                        fields.push(("type", "env".into()));
                    }
                }
                _ => {
                    fields.push((source_key, var.clone()));
                    fields.push(("type", "env".into()));
                }
            }
            let mut keyed: Vec<(u16, (String, String))> = fields
                .iter()
                .enumerate()
                .map(|(i, (k, v))| {
                    let k = if upper & (1 << i) != 0 { k.to_ascii_uppercase() } else { k.to_string() };
                    (order[i % order.len()], (k, v.clone()))
                })
                .collect();
            keyed.sort_by_key(|(o, _)| *o);
            let written: Vec<(String, String)> = keyed.into_iter().map(|(_, f)| f).collect();
            let line = csv::join(written.iter().map(|(k, v)| format!("{k}={v}")));

            let read = csv::attrs(&line).unwrap();
            let want: Vec<(String, String)> = written
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            prop_assert_eq!(&read, &want, "{}", line);
            prop_assert!(check_secret(&line, 1, &t.root).is_ok(), "{}: {:?}", line, check_secret(&line, 1, &t.root));

            let spec = testkit::resolve(&["ctx", "--secret", &line], &[], &t.root).unwrap();
            prop_assert_eq!(&spec.secrets, &vec![line.clone()]);
            prop_assert_eq!(values_of(&buildctl::argv(&spec, "unix:///s"), "--secret"), vec![line.clone()]);
            prop_assert_eq!(values_of(&docker::build_argv(&spec), "--secret"), vec![line]);
        }

        #[test]
        fn secret_errors_never_show_a_value(v in "[0-9]{8,12}") {
            let e = check_secret(&format!("id=x,value={v}"), 1, Path::new("/")).unwrap_err();
            prop_assert!(!e.to_string().contains(&v));
            let e = check_secret(&v, 1, Path::new("/")).unwrap_err();
            prop_assert!(!e.to_string().contains(&v));
        }
    }
}
