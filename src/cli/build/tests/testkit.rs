//! Test fixtures: a directory tree with contexts and Dockerfiles, flags parsed from a
//! command line, and an environment from pairs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Parser;

use super::super::BuildFlags;
use kubectl_buildkit::build::spec::{self, BuildSpec};

#[derive(Debug, Parser)]
#[command(name = "build")]
struct BuildLine {
    #[command(flatten)]
    flags: BuildFlags,
}

/// `build ARGS...` parsed as clap would.
pub fn flags(args: &[&str]) -> BuildFlags {
    let line = std::iter::once("build").chain(args.iter().copied());
    match BuildLine::try_parse_from(line) {
        Ok(b) => b.flags,
        Err(e) => panic!("{args:?} does not parse: {e}"),
    }
}

/// A temporary tree:
///   ctx/Dockerfile, ctx/sample.Dockerfile, ctx/.gitconfig, other/Dockerfile, npmrc, tls/{ca,cert,key}.pem
pub struct Tree {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Tree {
    pub fn new() -> Tree {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        for d in ["ctx", "other", "tls"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        for f in [
            "ctx/Dockerfile",
            "ctx/sample.Dockerfile",
            "ctx/.gitconfig",
            "other/Dockerfile",
            "npmrc",
            "tls/ca.pem",
            "tls/cert.pem",
            "tls/key.pem",
        ] {
            std::fs::write(root.join(f), "x").unwrap();
        }
        Tree { _dir: dir, root }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The absolute path of `rel`, as a string.
    pub fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }
}

pub fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

/// Resolve `build ARGS...` with the environment `pairs` in the directory `cwd`.
pub fn resolve(args: &[&str], pairs: &[(&str, &str)], cwd: &Path) -> anyhow::Result<BuildSpec> {
    spec::resolve(&flags(args).options(), &env(pairs), cwd)
}

/// Owned strings, for comparing argv.
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
