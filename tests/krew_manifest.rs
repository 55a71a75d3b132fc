//! The krew manifest: plugin.yaml (the template) and the buildkit.yaml that
//! scripts/release.sh renders pass every rule krew's validate-krew-manifest enforces;
//! and a release archive installs the way krew installs it.

mod common;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kube_sim::harness::OutputBounded;

use common::*;
use serde_yaml::Value;
use sha2::{Digest, Sha256};

const API_VERSION: &str = "krew.googlecontainertools.github.com/v1alpha2";
const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The platforms we release.
const RELEASED: [(&str, &str); 6] = [
    ("linux", "amd64"),
    ("linux", "arm64"),
    ("darwin", "amd64"),
    ("darwin", "arm64"),
    ("windows", "amd64"),
    ("windows", "arm64"),
];
/// The os/arch pairs krew supports (a platform must match one, and no pair two).
const SUPPORTED: [(&str, &str); 12] = [
    ("windows", "386"),
    ("windows", "amd64"),
    ("windows", "arm64"),
    ("linux", "386"),
    ("linux", "amd64"),
    ("linux", "arm"),
    ("linux", "arm64"),
    ("linux", "ppc64le"),
    ("linux", "s390x"),
    ("darwin", "386"),
    ("darwin", "amd64"),
    ("darwin", "arm64"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// krew's semver: vMAJOR.MINOR.PATCH[-PRE][+BUILD], numbers without leading zeros.
fn is_semver_with_v(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let (rest, build) = match rest.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (rest, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let ident_ok = |x: &str| {
        x.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    let nums: Vec<&str> = core.split('.').collect();
    nums.len() == 3
        && nums.iter().all(|n| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
                && (n.len() == 1 || !n.starts_with('0'))
        })
        && pre.is_none_or(ident_ok)
        && build.is_none_or(ident_ok)
}

/// Whether a label selector (matchLabels / matchExpressions) selects os/arch.
fn selects(selector: &Value, os: &str, arch: &str) -> bool {
    let label = |k: &str| match k {
        "os" => Some(os),
        "arch" => Some(arch),
        _ => None,
    };
    if let Some(m) = selector.get("matchLabels").and_then(Value::as_mapping) {
        for (k, v) in m {
            if label(k.as_str().unwrap_or("")) != v.as_str() {
                return false;
            }
        }
    }
    if let Some(exprs) = selector
        .get("matchExpressions")
        .and_then(Value::as_sequence)
    {
        for e in exprs {
            let have = label(s(e, "key"));
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_sequence)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let ok = match s(e, "operator") {
                "In" => have.is_some_and(|h| values.contains(&h)),
                "NotIn" => !have.is_some_and(|h| values.contains(&h)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

/// Lines over `max` characters that krew warns about (one-word lines are allowed).
fn long_lines(text: &str, max: usize) -> Vec<String> {
    text.lines()
        .filter(|l| l.len() > max && l.trim().contains(' '))
        .map(str::to_string)
        .collect()
}

/// Every problem validate-krew-manifest (and krew-index's review) would report for
/// the manifest at `path`; empty when it is valid. `name` is the index file's name
/// without .yaml (plugin.yaml is the template of buildkit.yaml).
fn problems(doc: &Value, name: &str) -> Vec<String> {
    let mut p = Vec::new();
    if s(doc, "apiVersion") != API_VERSION {
        p.push(format!("apiVersion is {:?}", s(doc, "apiVersion")));
    }
    if s(doc, "kind") != "Plugin" {
        p.push(format!("kind is {:?}", s(doc, "kind")));
    }
    let safe = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        && !["CON", "PRN", "AUX", "NUL"].contains(&name.to_uppercase().as_str());
    if !safe {
        p.push(format!("name {name:?} does not match ^[\\w-]+$"));
    }
    let meta_name = doc["metadata"].get("name").and_then(Value::as_str);
    if meta_name != Some(name) {
        p.push(format!(
            "metadata.name {meta_name:?} is not the file's name {name:?}"
        ));
    }
    let spec = &doc["spec"];
    let short = s(spec, "shortDescription");
    if short.is_empty() || short.contains(['\r', '\n']) {
        p.push(format!(
            "shortDescription {short:?} must be one non-empty line"
        ));
    }
    for (field, max) in [
        ("shortDescription", 70),
        ("description", 80),
        ("caveats", 80),
    ] {
        for line in long_lines(s(spec, field), max) {
            p.push(format!("{field} line over {max} characters: {line:?}"));
        }
    }
    if !is_semver_with_v(s(spec, "version")) {
        p.push(format!(
            "version {:?} is not semver with a leading v",
            s(spec, "version")
        ));
    }
    let platforms = spec
        .get("platforms")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    if platforms.is_empty() {
        p.push("no platforms".into());
    }
    for (i, pl) in platforms.iter().enumerate() {
        let at = format!("platforms[{i}]");
        if s(pl, "uri").is_empty() {
            p.push(format!("{at}: uri not set"));
        }
        let sha = s(pl, "sha256");
        if sha.len() != 64 || !sha.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            p.push(format!(
                "{at}: sha256 {sha:?} is not 64 lowercase hex digits"
            ));
        }
        let bin = s(pl, "bin");
        if bin.is_empty() {
            p.push(format!("{at}: bin not set"));
        }
        match pl.get("files") {
            None => {}
            Some(Value::Sequence(ops)) if !ops.is_empty() => {
                for op in ops {
                    if s(op, "from").is_empty() || s(op, "to").is_empty() {
                        p.push(format!("{at}: files entry {op:?} needs from and to"));
                    }
                }
                if !ops.iter().any(|op| s(op, "from") == "LICENSE") {
                    p.push(format!("{at}: no files entry installs LICENSE"));
                }
            }
            Some(other) => p.push(format!(
                "{at}: files must be absent or a non-empty list: {other:?}"
            )),
        }
        match pl.get("selector") {
            None | Some(Value::Null) => p.push(format!("{at}: no selector")),
            Some(sel) => {
                let labels = sel.get("matchLabels");
                let exprs = sel.get("matchExpressions");
                let no_labels = labels.is_none_or(Value::is_null);
                let no_exprs = exprs
                    .and_then(Value::as_sequence)
                    .is_none_or(|e| e.is_empty());
                if no_labels && no_exprs {
                    p.push(format!("{at}: empty selector"));
                }
                if labels
                    .and_then(Value::as_mapping)
                    .is_some_and(|m| m.is_empty())
                {
                    p.push(format!("{at}: matchLabels specified but empty"));
                }
                if exprs
                    .and_then(Value::as_sequence)
                    .is_some_and(|e| e.is_empty())
                {
                    p.push(format!("{at}: matchExpressions specified but empty"));
                }
                let mut keys: Vec<String> = labels
                    .and_then(Value::as_mapping)
                    .map(|m| {
                        m.keys()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                for e in exprs.and_then(Value::as_sequence).into_iter().flatten() {
                    keys.push(s(e, "key").to_string());
                }
                for k in keys.iter().filter(|k| *k != "os" && *k != "arch") {
                    p.push(format!(
                        "{at}: selector key {k:?} not supported (only os, arch)"
                    ));
                }
                let matched: Vec<&(&str, &str)> = SUPPORTED
                    .iter()
                    .filter(|(os, arch)| selects(sel, os, arch))
                    .collect();
                if matched.is_empty() {
                    p.push(format!("{at}: selector matches no supported os/arch"));
                }
                if matched.iter().any(|(os, _)| *os == "windows") && !bin.ends_with(".exe") {
                    p.push(format!("{at}: windows bin {bin:?} must end with .exe"));
                }
            }
        }
    }
    for (os, arch) in SUPPORTED {
        let hits: Vec<usize> = platforms
            .iter()
            .enumerate()
            .filter(|(_, pl)| pl.get("selector").is_some_and(|sel| selects(sel, os, arch)))
            .map(|(i, _)| i)
            .collect();
        if hits.len() > 1 {
            p.push(format!("platforms {hits:?} overlap on {os}/{arch}"));
        }
    }
    p
}

/// Validate a manifest file as validate-krew-manifest does: the plugin's name is the
/// file's name without .yaml.
fn validate_file(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let file = path.file_name().unwrap().to_str().unwrap();
    let Some(name) = file.strip_suffix(".yaml") else {
        return vec![format!("{file}: a manifest's extension is .yaml")];
    };
    problems(&doc, name)
}

fn platform_of(pl: &Value) -> (String, String) {
    let sel = &pl["selector"];
    let (os, arch) = RELEASED
        .iter()
        .find(|(os, arch)| selects(sel, os, arch))
        .expect("a released platform");
    (os.to_string(), arch.to_string())
}

fn load(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn committed_plugin_yaml_is_a_valid_template() {
    // plugin.yaml is the template of krew-index's buildkit.yaml: validate it under
    // that name (the file-name rule), as it is committed.
    let path = repo().join("plugin.yaml");
    let doc = load(&path);
    assert_eq!(problems(&doc, "buildkit"), Vec::<String>::new());
    assert_eq!(
        s(&doc["spec"], "version"),
        "v0.0.0",
        "the template's version placeholder"
    );
    let platforms = doc["spec"]["platforms"].as_sequence().unwrap();
    let mut seen = BTreeSet::new();
    for pl in platforms {
        let (os, arch) = platform_of(pl);
        assert_eq!(
            s(pl, "sha256"),
            ZEROS,
            "{os}/{arch}: the template's sha256 placeholder"
        );
        let ext = if os == "windows" { "zip" } else { "tar.gz" };
        assert!(
            s(pl, "uri").ends_with(&format!(
                "/v0.0.0/kubectl-buildkit_v0.0.0_{os}_{arch}.{ext}"
            )),
            "{}",
            s(pl, "uri")
        );
        let bin = if os == "windows" {
            "kubectl-buildkit.exe"
        } else {
            "kubectl-buildkit"
        };
        assert_eq!(s(pl, "bin"), bin);
        assert!(seen.insert((os, arch)));
    }
    let want: BTreeSet<(String, String)> = RELEASED
        .iter()
        .map(|(o, a)| (o.to_string(), a.to_string()))
        .collect();
    assert_eq!(seen, want);
}

#[test]
fn the_validator_rejects_what_krew_rejects() {
    let good = load(&repo().join("plugin.yaml"));
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit)> = vec![
        ("apiVersion", |d| {
            d["apiVersion"] = "krew.googlecontainertools.github.com/v1alpha1".into()
        }),
        ("kind", |d| d["kind"] = "Plugins".into()),
        ("metadata.name", |d| {
            d["metadata"]["name"] = "kubectl-buildkit".into()
        }),
        ("semver", |d| d["spec"]["version"] = "0.1.0".into()),
        ("shortDescription", |d| {
            d["spec"]["shortDescription"] = "two\nlines".into()
        }),
        ("sha256", |d| {
            d["spec"]["platforms"][0]["sha256"] = "ABCDEF0123456789".repeat(4).into()
        }),
        ("bin not set", |d| {
            d["spec"]["platforms"][0]["bin"] = "".into()
        }),
        ("needs from and to", |d| {
            d["spec"]["platforms"][0]["files"][0]["to"] = "".into()
        }),
        ("LICENSE", |d| {
            let files = d["spec"]["platforms"][0]["files"]
                .as_sequence_mut()
                .unwrap();
            files.retain(|op| s(op, "from") != "LICENSE");
        }),
        ("not supported", |d| {
            d["spec"]["platforms"][0]["selector"]["matchLabels"]["distro"] = "x".into()
        }),
        ("empty selector", |d| {
            d["spec"]["platforms"][0]["selector"] = serde_yaml::from_str("{}").unwrap()
        }),
        ("overlap", |d| {
            d["spec"]["platforms"][1]["selector"]["matchLabels"]["arch"] = "amd64".into()
        }),
        ("no supported", |d| {
            d["spec"]["platforms"][0]["selector"]["matchLabels"]["os"] = "plan9".into()
        }),
        (".exe", |d| {
            d["spec"]["platforms"][4]["bin"] = "kubectl-buildkit".into()
        }),
        ("no platforms", |d| {
            d["spec"]["platforms"] = Value::Sequence(vec![])
        }),
    ];
    for (needle, edit) in cases {
        let mut doc = good.clone();
        edit(&mut doc);
        let found = problems(&doc, "buildkit");
        assert!(
            found.iter().any(|p| p.contains(needle)),
            "{needle}: not rejected; problems: {found:?}"
        );
    }
    // The file-name rule.
    assert!(problems(&good, "kubectl_buildkit")
        .iter()
        .any(|p| p.contains("metadata.name")));
    assert!(problems(&good, "bad name")
        .iter()
        .any(|p| p.contains("does not match")));
}

fn release(args: &[&str], out: &Path, home: &Home) -> std::process::Output {
    let mut cmd = Command::new("bash");
    clean_env(&mut cmd, home);
    cmd.arg(repo().join("scripts/release.sh"))
        .args(args)
        .arg("--out")
        .arg(out)
        .env(
            "RELEASE_URL",
            "https://downloads.example.com/kubectl-buildkit/x/",
        )
        .env_remove("PREBUILT_ARCHIVES")
        .current_dir(repo());
    run(&mut cmd)
}

fn version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// This machine's krew platform.
fn host() -> (&'static str, &'static str) {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    (os, arch)
}

/// Extract an archive (as krew does, by its kind) into `dir`.
fn extract(archive: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let name = archive.to_str().unwrap();
    let have_unzip = harness::on_path("unzip").is_some();
    let out = if name.ends_with(".zip") && have_unzip {
        Command::new("unzip")
            .arg("-q")
            .arg(archive)
            .arg("-d")
            .arg(dir)
            .output_bounded()
    } else if name.ends_with(".zip") {
        Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(archive)
            .arg(dir)
            .output_bounded()
    } else {
        Command::new("tar")
            .arg("-xzf")
            .arg(archive)
            .arg("-C")
            .arg(dir)
            .output_bounded()
    };
    ok(&out);
}

/// krew's install of one platform: fetch (here: the archive by the uri's file name),
/// check the sha256, extract, move each `files` entry from -> to, find `bin`.
fn krew_install(pl: &Value, archives: &Path, install: &Path) -> PathBuf {
    let uri = s(pl, "uri");
    let file = archives.join(uri.rsplit('/').next().unwrap());
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{uri}: {}: {e}", file.display()));
    let sum = format!("{:x}", Sha256::digest(&bytes));
    assert_eq!(sum, s(pl, "sha256"), "{uri}: sha256 mismatch");
    let staging = install.with_extension("staging");
    extract(&file, &staging);
    std::fs::create_dir_all(install).unwrap();
    for op in pl["files"].as_sequence().unwrap() {
        let from = staging.join(s(op, "from"));
        assert!(from.exists(), "{uri}: the archive has no {}", s(op, "from"));
        let to = install.join(s(op, "to"));
        std::fs::create_dir_all(&to).unwrap();
        std::fs::rename(&from, to.join(from.file_name().unwrap())).unwrap();
    }
    assert!(
        install.join("LICENSE").is_file(),
        "{uri}: LICENSE not installed"
    );
    assert_eq!(
        std::fs::read(install.join("LICENSE")).unwrap(),
        std::fs::read(repo().join("LICENSE")).unwrap(),
        "{uri}: LICENSE is not the project's"
    );
    let bin = install.join(s(pl, "bin"));
    assert!(bin.is_file(), "{uri}: bin {} not installed", s(pl, "bin"));
    bin
}

#[test]
fn released_archives_render_a_valid_manifest_that_krew_installs() {
    let _kubectl = kube_sim::require_kubectl!();
    let home = Home::new();
    let out = home.path().join("dist");
    let v = version();
    let (host_os, host_arch) = host();

    // Archives for the other platforms: the archive step on a stand-in file (we cannot
    // cross-compile here), each run rendering a partial manifest.
    let stub = home.path().join("stub-binary");
    std::fs::write(&stub, "not this machine's binary\n").unwrap();
    for (os, arch) in RELEASED.iter().filter(|p| **p != (host_os, host_arch)) {
        let platform = format!("{os}/{arch}");
        ok(&release(
            &[
                &v,
                "--binary",
                stub.to_str().unwrap(),
                "--platform",
                &platform,
                "--partial",
            ],
            &out,
            &home,
        ));
    }
    // This machine's archive holds the plugin binary; with it, every platform has one.
    let out_run = release(&[&v, "--binary", bin().to_str().unwrap()], &out, &home);
    ok(&out_run);

    let manifest = out.join("buildkit.yaml");
    assert_eq!(validate_file(&manifest), Vec::<String>::new());
    let doc = load(&manifest);
    assert_eq!(s(&doc["spec"], "version"), v);
    let platforms = doc["spec"]["platforms"].as_sequence().unwrap();
    assert_eq!(platforms.len(), RELEASED.len());
    let mut ran = false;
    for pl in platforms {
        let (os, arch) = platform_of(pl);
        let ext = if os == "windows" { "zip" } else { "tar.gz" };
        assert_eq!(
            s(pl, "uri"),
            format!("https://downloads.example.com/kubectl-buildkit/x/kubectl-buildkit_{v}_{os}_{arch}.{ext}")
        );
        let sidecar = out.join(format!("kubectl-buildkit_{v}_{os}_{arch}.{ext}.sha256"));
        assert_eq!(
            std::fs::read_to_string(&sidecar).unwrap().trim(),
            s(pl, "sha256")
        );
        let install = home
            .path()
            .join(format!("krew/store/buildkit/{v}/{os}-{arch}"));
        let installed = krew_install(pl, &out, &install);
        if (os.as_str(), arch.as_str()) == (host_os, host_arch) {
            // krew links kubectl-buildkit into its bin dir: kubectl finds it there.
            let out = ok(&run(Command::new(&installed).arg("version")));
            assert!(out.starts_with(&format!("kubectl-buildkit {v} ")), "{out}");
            let krew_bin = home.path().join("krew/bin");
            std::fs::create_dir_all(&krew_bin).unwrap();
            std::os::unix::fs::symlink(&installed, krew_bin.join("kubectl-buildkit")).unwrap();
            let mut kubectl = Command::new("kubectl");
            clean_env(&mut kubectl, &home);
            let path = std::env::join_paths(
                std::iter::once(krew_bin)
                    .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
            )
            .unwrap();
            let out = ok(&run(kubectl
                .env("PATH", path)
                .args(["buildkit", "version", "-o", "json"])));
            assert!(out.contains(&format!("\"version\": \"{v}\"")), "{out}");
            ran = true;
        } else {
            assert_eq!(
                std::fs::read(&installed).unwrap(),
                std::fs::read(&stub).unwrap()
            );
        }
    }
    assert!(
        ran,
        "no platform of the manifest is this machine's ({host_os}/{host_arch})"
    );
}

#[test]
fn the_release_script_refuses_a_wrong_version_or_a_missing_platform() {
    let home = Home::new();
    let out = home.path().join("dist");
    let stub = home.path().join("stub");
    std::fs::write(&stub, "x").unwrap();
    let stub = stub.to_str().unwrap();

    let r = release(
        &["v9.9.9", "--binary", stub, "--platform", "linux/amd64"],
        &out,
        &home,
    );
    fails_with(&r, 1, &["v9.9.9", "Cargo.toml", env!("CARGO_PKG_VERSION")]);
    let r = release(
        &[
            env!("CARGO_PKG_VERSION"),
            "--binary",
            stub,
            "--platform",
            "linux/amd64",
        ],
        &out,
        &home,
    );
    fails_with(&r, 1, &["leading v"]);
    let r = release(
        &[&version(), "--binary", stub, "--platform", "solaris/sparc"],
        &out,
        &home,
    );
    fails_with(&r, 1, &["solaris/sparc"]);

    // One archive and no --partial: the others are named, with the way to supply them.
    let r = release(
        &[&version(), "--binary", stub, "--platform", "linux/amd64"],
        &out,
        &home,
    );
    fails_with(
        &r,
        1,
        &["darwin/arm64", "windows/amd64", "--archive OS/ARCH=FILE"],
    );
    // --partial renders that one platform only; the result is still a valid manifest.
    ok(&release(
        &[&version(), "--render-only", "--partial"],
        &out,
        &home,
    ));
    let manifest = out.join("buildkit.yaml");
    assert_eq!(validate_file(&manifest), Vec::<String>::new());
    assert_eq!(
        load(&manifest)["spec"]["platforms"]
            .as_sequence()
            .unwrap()
            .len(),
        1
    );
    // A prebuilt archive passed by --archive is taken under its release name.
    let elsewhere = home.path().join("from-ci.zip");
    std::fs::copy(
        out.join(format!("kubectl-buildkit_{}_linux_amd64.tar.gz", version())),
        &elsewhere,
    )
    .unwrap();
    let spec = format!("windows/arm64={}", elsewhere.display());
    ok(&release(
        &[&version(), "--render-only", "--partial", "--archive", &spec],
        &out,
        &home,
    ));
    let doc = load(&manifest);
    let platforms = doc["spec"]["platforms"].as_sequence().unwrap();
    let got: Vec<(String, String)> = platforms.iter().map(platform_of).collect();
    assert_eq!(
        got,
        vec![
            ("linux".to_string(), "amd64".to_string()),
            ("windows".to_string(), "arm64".to_string())
        ]
    );
}
