//! `rm`: delete what `create` made, found by the builder's label; keep the cache
//! claims unless asked; wait for the pods to go.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams};
use kube::Resource;

use super::apply::{timed, Object};
use super::spec::builder_selector;
use crate::cluster::{humantime, Cluster};

/// What `rm` did.
#[derive(Debug, Default)]
pub struct Removed {
    /// `statefulset.apps/NAME`, ...
    pub deleted: Vec<String>,
    /// Cache claims left in place.
    pub kept_claims: Vec<String>,
}

fn display<K: Resource<DynamicType = ()>>(name: &str) -> String {
    let group = K::group(&());
    let kind = K::kind(&()).to_lowercase();
    if group.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}.{group}/{name}")
    }
}

async fn names<K: Object>(cluster: &Cluster, selector: &str) -> Result<Vec<String>> {
    let api: Api<K> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let what = format!(
        "listing {} with label {selector} in namespace {}",
        K::plural(&()),
        cluster.namespace
    );
    let list = timed(cluster, api.list(&ListParams::default().labels(selector)))
        .await
        .map_err(|e| cluster.explain(&what, e))?;
    Ok(list
        .items
        .iter()
        .filter_map(|o| o.meta().name.clone())
        .collect())
}

async fn delete_labelled<K: Object>(cluster: &Cluster, selector: &str) -> Result<Vec<String>> {
    let api: Api<K> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut out = Vec::new();
    for name in names::<K>(cluster, selector).await? {
        let what = format!(
            "deleting {} in namespace {}",
            display::<K>(&name),
            cluster.namespace
        );
        match timed(cluster, api.delete(&name, &DeleteParams::background())).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(cluster.explain(&what, e)),
        }
        out.push(display::<K>(&name));
    }
    Ok(out)
}

/// Delete builder `name`; with `delete_cache` its claims too. Waits up to `timeout` for
/// the pods to go (None: don't wait). An error when nothing carries the builder's label,
/// unless `ignore_not_found`.
pub async fn remove(
    cluster: &Cluster,
    name: &str,
    delete_cache: bool,
    timeout: Option<Duration>,
    ignore_not_found: bool,
) -> Result<Removed> {
    let selector = builder_selector(name);
    let mut removed = Removed::default();
    // The StatefulSet first: nothing recreates pods while the rest goes.
    removed
        .deleted
        .extend(delete_labelled::<StatefulSet>(cluster, &selector).await?);
    removed
        .deleted
        .extend(delete_labelled::<Service>(cluster, &selector).await?);
    removed
        .deleted
        .extend(delete_labelled::<RoleBinding>(cluster, &selector).await?);
    removed
        .deleted
        .extend(delete_labelled::<Role>(cluster, &selector).await?);
    removed
        .deleted
        .extend(delete_labelled::<ConfigMap>(cluster, &selector).await?);
    let pods = names::<Pod>(cluster, &selector).await?;
    let claims = names::<PersistentVolumeClaim>(cluster, &selector).await?;
    if removed.deleted.is_empty() && pods.is_empty() && claims.is_empty() {
        if ignore_not_found {
            return Ok(removed);
        }
        bail!(
            "no builder {name:?} in namespace {} (context {}): nothing carries the label {selector}; \
             check the name and -n (kubectl get statefulsets -l app.kubernetes.io/managed-by=kubectl-buildkit \
             lists the builders)",
            cluster.namespace,
            cluster.context
        );
    }
    if let Some(timeout) = timeout {
        wait_gone(cluster, &selector, timeout).await?;
    }
    if delete_cache {
        removed
            .deleted
            .extend(delete_labelled::<PersistentVolumeClaim>(cluster, &selector).await?);
    } else {
        removed.kept_claims = claims
            .iter()
            .map(|c| display::<PersistentVolumeClaim>(c))
            .collect();
    }
    Ok(removed)
}

async fn wait_gone(cluster: &Cluster, selector: &str, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let mut last = Vec::new();
    loop {
        let pods = names::<Pod>(cluster, selector).await?;
        if pods.is_empty() {
            return Ok(());
        }
        if pods != last {
            crate::log::note(format!("waiting for pods to go: {}", pods.join(", ")));
            last = pods.clone();
        }
        if start.elapsed() >= timeout {
            bail!(
                "pods still there after --timeout {}: {}; they are being deleted (see \
                 `kubectl -n {} get pods -l {selector}`), or wait longer with --timeout",
                humantime(timeout),
                pods.join(", "),
                cluster.namespace
            );
        }
        tokio::time::sleep(Duration::from_millis(250).min(timeout.saturating_sub(start.elapsed())))
            .await;
    }
}
