//! attrs: --output, cache and secret specs, checked and rendered.

use super::testkit::{self, Tree};
use kubectl_buildkit::build::attrs::*;
use kubectl_buildkit::build::{buildctl, csv, docker};
use proptest::prelude::*;
use std::path::Path;

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
