//! Helpers for tests/examples.rs: read example/, run a skaffold artifact's
//! `buildCommand` the way skaffold's custom builder does, read the stand-ins' records.
#![allow(dead_code)]

pub mod manifests;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;

use crate::common::{clean_env, Home, Sim};

/// The repository's `example/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("example")
}

/// Every file under `dir` whose name ends with `suffix`, sorted.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every YAML document of a file (`---`-separated), nulls (empty documents) dropped.
pub fn documents(path: &Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// A skaffold artifact built by a custom `buildCommand`.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub image: String,
    /// Absolute, as skaffold hands it over.
    pub context: PathBuf,
    pub build_command: String,
}

/// The custom artifacts of a skaffold.yaml.
pub fn artifacts(skaffold_yaml: &Path) -> Vec<Artifact> {
    let doc = &documents(skaffold_yaml)[0];
    let dir = skaffold_yaml.parent().unwrap();
    doc["build"]["artifacts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| Artifact {
            image: a["image"].as_str().unwrap().to_string(),
            context: dir.join(a["context"].as_str().unwrap_or(".")),
            build_command: a["custom"]["buildCommand"].as_str().unwrap().to_string(),
        })
        .collect()
}

/// The one artifact of example/NAME/skaffold.yaml.
pub fn example_artifact(name: &str) -> Artifact {
    let arts = artifacts(&examples_dir().join(name).join("skaffold.yaml"));
    assert_eq!(arts.len(), 1, "example {name} has one artifact");
    arts[0].clone()
}

/// What skaffold decides for one build.
pub struct SkaffoldRun<'a> {
    pub tag: &'a str,
    pub push: bool,
    pub platforms: &'a str,
}

impl SkaffoldRun<'_> {
    pub fn image(&self, art: &Artifact) -> String {
        format!("{}:{}", art.image, self.tag)
    }
}

/// Run the artifact's buildCommand as skaffold's custom builder does: `sh -c COMMAND`
/// in the (absolute) context directory with IMAGE, PUSH_IMAGE, BUILD_CONTEXT,
/// PLATFORMS, IMAGE_REPO and IMAGE_TAG set. Skaffold first expands the command as a
/// Go template over the environment; the examples use no template, which
/// `no_templates` asserts. The stand-ins come first on PATH, `kubectl` is the real
/// one (it finds `kubectl-buildkit` there too), HOME is `home`.
pub fn skaffold_build(
    art: &Artifact,
    run: &SkaffoldRun,
    home: &Home,
    sim: Option<&Sim>,
    env: &[(&str, &Path)],
) -> Output {
    assert!(
        !art.build_command.contains("{{"),
        "buildCommand uses a Go template; this runner does not expand them"
    );
    let context = art.context.canonicalize().unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(&art.build_command);
    clean_env(&mut cmd, home);
    match sim {
        Some(sim) => cmd.env("KUBECONFIG", sim.kubeconfig()),
        None => cmd.env("KUBECONFIG", home.path().join("no-kubeconfig")),
    };
    cmd.env("IMAGE", run.image(art))
        .env("PUSH_IMAGE", run.push.to_string())
        .env("BUILD_CONTEXT", &context)
        .env("PLATFORMS", run.platforms)
        .env("IMAGE_REPO", &art.image)
        .env("IMAGE_TAG", run.tag)
        .current_dir(&context)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    crate::common::run(&mut cmd)
}

/// A record's argv as strings.
pub fn argv(record: &serde_json::Value) -> Vec<String> {
    record["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// Owned strings from literals and formatted pieces.
pub fn strings<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}
