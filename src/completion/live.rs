//! Candidates that come from the user's kubeconfig and cluster. Everything here fails
//! silently: a completion that cannot ask offers nothing, and never waits long.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::config::Kubeconfig;

use super::position::Position;
use super::Candidate;
use crate::cli::KubeFlags;
use kubectl_buildkit::cluster::Cluster;

/// The longest a completion waits for the cluster (connecting included).
const CLUSTER_BUDGET: Duration = Duration::from_secs(2);

/// The kubeconfig files kubectl would read: --kubeconfig, else the existing files of
/// $KUBECONFIG, else ~/.kube/config.
fn kubeconfig_files(pos: &Position) -> Vec<PathBuf> {
    if let Some(path) = pos.value("kubeconfig") {
        return vec![PathBuf::from(path)];
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|l| !l.is_empty()) {
        return std::env::split_paths(&list)
            .filter(|p| p.is_file())
            .collect();
    }
    std::env::var_os("HOME")
        .map(|h| vec![PathBuf::from(h).join(".kube").join("config")])
        .unwrap_or_default()
}

/// Names of the kubeconfig's contexts, clusters or users (`what`), first file first.
pub fn kubeconfig_names(pos: &Position, what: &str) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for file in kubeconfig_files(pos) {
        let Ok(kc) = Kubeconfig::read_from(&file) else {
            continue;
        };
        let names: Vec<(String, String)> = match what {
            "context" => kc
                .contexts
                .iter()
                .map(|c| {
                    let ctx = c.context.as_ref();
                    let cluster = ctx.map(|c| c.cluster.as_str()).unwrap_or_default();
                    let ns = ctx.and_then(|c| c.namespace.as_deref());
                    let desc = match ns {
                        Some(ns) => format!("cluster {cluster}, namespace {ns}"),
                        None => format!("cluster {cluster}"),
                    };
                    (c.name.clone(), desc)
                })
                .collect(),
            "cluster" => kc
                .clusters
                .iter()
                .map(|c| (c.name.clone(), String::new()))
                .collect(),
            _ => kc
                .auth_infos
                .iter()
                .map(|u| (u.name.clone(), String::new()))
                .collect(),
        };
        for (name, desc) in names {
            if !out.iter().any(|c| c.value == name) {
                out.push(Candidate::new(name, desc));
            }
        }
    }
    out
}

/// The connection flags typed so far, as the commands would parse them.
fn typed_flags(pos: &Position) -> KubeFlags {
    KubeFlags {
        kubeconfig: pos.value("kubeconfig").map(PathBuf::from),
        context: pos.value("context").map(str::to_string),
        cluster: pos.value("cluster").map(str::to_string),
        user: pos.value("user").map(str::to_string),
        namespace: pos.value("namespace").map(str::to_string),
        request_timeout: Some(CLUSTER_BUDGET),
        verbose: 0,
        quiet: true,
    }
}

fn with_cluster<F, Fut>(pos: &Position, f: F) -> Vec<Candidate>
where
    F: FnOnce(Cluster) -> Fut,
    Fut: std::future::Future<Output = Option<Vec<Candidate>>>,
{
    let flags = typed_flags(pos);
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let found = runtime.block_on(async {
        tokio::time::timeout(CLUSTER_BUDGET, async {
            let cluster = Cluster::connect(&flags.options()).await.ok()?;
            f(cluster).await
        })
        .await
        .ok()
        .flatten()
    });
    // A credential plugin or a stuck connection must not hold the shell.
    runtime.shutdown_background();
    found.unwrap_or_default()
}

/// The cluster's namespaces, when it answers in time and lets us list them.
pub fn namespaces(pos: &Position) -> Vec<Candidate> {
    with_cluster(pos, |cluster| async move {
        let api: Api<Namespace> = Api::all(cluster.client.clone());
        let list = api.list(&ListParams::default()).await.ok()?;
        let mut names: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        names.sort();
        Some(
            names
                .into_iter()
                .map(|n| Candidate::new(n, String::new()))
                .collect(),
        )
    })
}

/// The buildkitd pods the typed selector and namespace find, with their state.
pub fn pods(pos: &Position) -> Vec<Candidate> {
    let selector = pos
        .value("selector")
        .map(str::to_string)
        .or_else(|| {
            pos.cmd
                .get_arguments()
                .find(|a| a.get_id() == "selector")
                .and_then(|a| a.get_default_values().first())
                .map(|v| v.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    with_cluster(pos, |cluster| async move {
        let pods = cluster.list_pods(&selector).await.ok()?;
        Some(
            pods.iter()
                .map(|p| {
                    let v = kubectl_buildkit::selection::view(p, false);
                    let state = match &v.reason {
                        None => "ready".to_string(),
                        Some(why) => why.clone(),
                    };
                    let desc = match &v.node {
                        Some(node) => format!("{state}, node {node}"),
                        None => state,
                    };
                    Candidate::new(v.name, desc)
                })
                .collect(),
        )
    })
}
