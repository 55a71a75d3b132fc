//! `KEY=VALUE` flags: --build-arg, --label, --opt. Errors name the flag and the key,
//! never the value (a build argument may carry a token).

use anyhow::{bail, Result};

/// `KEY=VALUE` split at the first `=`; `KEY` alone gives `None` for the value.
/// The key must not be empty or blank.
pub fn parse(flag: &str, raw: &str) -> Result<(String, Option<String>)> {
    let (key, value) = match raw.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (raw, None),
    };
    if key.trim().is_empty() {
        bail!("{flag} needs KEY=VALUE, and the KEY is empty: write {flag} KEY=VALUE");
    }
    Ok((key.to_string(), value))
}

/// --build-arg: a bare KEY takes its value from the environment; `Ok(None)` when it is
/// not set there (docker leaves such an argument out, so the Dockerfile's default applies).
pub fn build_arg(
    raw: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(String, String)>> {
    let (key, value) = parse("--build-arg", raw)?;
    Ok(match value {
        Some(v) => Some((key, v)),
        None => env(&key).map(|v| (key, v)),
    })
}

/// --label: a bare KEY means an empty value, as with docker.
pub fn label(raw: &str) -> Result<(String, String)> {
    let (key, value) = parse("--label", raw)?;
    Ok((key, value.unwrap_or_default()))
}

/// --opt: buildctl insists on KEY=VALUE.
pub fn opt(raw: &str) -> Result<(String, String)> {
    match parse("--opt", raw)? {
        (key, Some(value)) => Ok((key, value)),
        (key, None) => bail!(
            "--opt {key:?} has no value: buildctl wants --opt KEY=VALUE \
             (e.g. --opt build-arg:{key}=VALUE, or --opt {key}=)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(k: &str) -> Option<String> {
        (k == "HOME").then(|| "/home/me".to_string())
    }

    #[test]
    fn pairs() {
        assert_eq!(
            parse("--x", "A=b=c").unwrap(),
            ("A".into(), Some("b=c".into()))
        );
        assert_eq!(parse("--x", "A=").unwrap(), ("A".into(), Some("".into())));
        assert_eq!(parse("--x", "A").unwrap(), ("A".into(), None));
        let msg = parse("--build-arg", "=s3cr3t").unwrap_err().to_string();
        assert!(
            msg.contains("--build-arg") && !msg.contains("s3cr3t"),
            "{msg}"
        );
        assert!(parse("--x", "").is_err());
        assert!(parse("--x", " =v").is_err());
    }

    #[test]
    fn build_args_from_the_environment() {
        assert_eq!(
            build_arg("HOME", &env).unwrap(),
            Some(("HOME".into(), "/home/me".into()))
        );
        assert_eq!(build_arg("UNSET", &env).unwrap(), None);
        assert_eq!(
            build_arg("UNSET=", &env).unwrap(),
            Some(("UNSET".into(), "".into()))
        );
        assert_eq!(
            build_arg("HOME=x", &env).unwrap(),
            Some(("HOME".into(), "x".into()))
        );
    }

    #[test]
    fn labels_and_opts() {
        assert_eq!(label("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(label("a").unwrap(), ("a".into(), "".into()));
        assert_eq!(opt("k=v=w").unwrap(), ("k".into(), "v=w".into()));
        let msg = opt("nokey").unwrap_err().to_string();
        assert!(msg.contains("--opt") && msg.contains("KEY=VALUE"), "{msg}");
    }

    proptest! {
        #[test]
        fn valid_pairs_round_trip(k in "[A-Za-z_][A-Za-z0-9_:.-]{0,12}", v in ".*") {
            prop_assert_eq!(parse("--x", &format!("{k}={v}")).unwrap(), (k.clone(), Some(v.clone())));
            prop_assert_eq!(opt(&format!("{k}={v}")).unwrap(), (k.clone(), v.clone()));
            prop_assert_eq!(label(&format!("{k}={v}")).unwrap(), (k, v));
        }

        #[test]
        fn never_panics_and_reads_back_what_was_written(raw in ".*") {
            let _ = label(&raw);
            let _ = opt(&raw);
            match build_arg(&raw, &env) {
                Ok(Some((k, v))) => prop_assert_eq!(
                    raw.clone(),
                    if raw.contains('=') { format!("{k}={v}") } else { k }
                ),
                Ok(None) => prop_assert!(!raw.contains('=')),
                Err(_) => prop_assert!(raw.split('=').next().unwrap_or("").trim().is_empty()),
            }
        }

        #[test]
        fn an_error_never_shows_the_value(blank in "[ \t]{0,2}", v in "[0-9]{6,12}") {
            let raw = format!("{blank}={v}");
            let e = build_arg(&raw, &env).unwrap_err().to_string();
            prop_assert!(!e.contains(&v), "{}", e);
            let e = label(&raw).unwrap_err().to_string();
            prop_assert!(!e.contains(&v), "{}", e);
        }
    }
}
