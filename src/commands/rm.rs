//! `kubectl buildkit rm [NAME]`: delete a builder by its label, keeping the cache
//! claims unless --delete-cache, and wait for its pods to go.

use std::io::Write;

use anyhow::Result;

use crate::cli::{KubeFlags, RmArgs};
use kubectl_buildkit::builder::{remove, spec};
use kubectl_buildkit::cluster::Cluster;

pub async fn run(kube: &KubeFlags, args: &RmArgs) -> Result<i32> {
    spec::check_name(&args.name)?;
    let cluster = Cluster::connect(&kube.options()).await?;
    let wait = args.wait.then_some(args.timeout);
    let removed = remove::remove(
        &cluster,
        &args.name,
        args.delete_cache,
        wait,
        args.ignore_not_found,
    )
    .await?;
    let mut out = std::io::stdout().lock();
    for name in &removed.deleted {
        writeln!(out, "{name} deleted")?;
    }
    if !removed.kept_claims.is_empty() {
        kubectl_buildkit::log::note(format!(
            "kept the cache volumes ({}): `create {}` again finds its cache; \
             `rm {} --delete-cache` deletes them",
            removed.kept_claims.join(", "),
            args.name,
            args.name
        ));
    }
    Ok(0)
}
