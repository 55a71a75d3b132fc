//! Waiting for a builder's pods: `NAME-0..N-1` Ready on the StatefulSet's current
//! revision, no others left, with a progress line each time a pod's state changes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use super::apply::timed;
use super::spec::BuilderSpec;
use crate::cluster::{humantime, Cluster};

const POLL: Duration = Duration::from_millis(250);

/// A pod's state in a few words: `Ready`, `Running, not Ready`, `Pending
/// (ContainerCreating)`, `Terminating`.
pub fn pod_state(pod: &Pod) -> String {
    if pod.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let status = pod.status.as_ref();
    let phase = crate::selection::phase(pod);
    let ready = crate::selection::is_ready(pod);
    let waiting: Vec<String> = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .collect()
        })
        .unwrap_or_default();
    let unscheduled = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        })
        .map(|c| {
            c.message
                .clone()
                .or_else(|| c.reason.clone())
                .unwrap_or_else(|| "not scheduled yet".into())
        });
    match (phase.as_str(), ready) {
        ("Running", true) => "Ready".into(),
        ("Running", false) => match waiting.first() {
            Some(r) => format!("Running, not Ready ({r})"),
            None => "Running, not Ready (readiness probe not passing)".into(),
        },
        ("Pending", _) => match (waiting.first(), unscheduled) {
            (Some(r), _) => format!("Pending ({r})"),
            (None, Some(why)) => format!("Pending ({why})"),
            (None, None) => "Pending".into(),
        },
        (other, _) => other.to_string(),
    }
}

/// Wait until the builder's pods are all Ready (or `timeout` passes: an error naming
/// every pod that is not, and its state).
pub async fn wait_ready(cluster: &Cluster, spec: &BuilderSpec, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let sts_api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let want = spec.pod_names();
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    let lp = kube::api::ListParams::default().labels(&spec.label_selector());
    loop {
        let sts = timed(cluster, sts_api.get(&spec.name))
            .await
            .map_err(|e| cluster.explain(&format!("getting statefulset {}", spec.name), e))?;
        let pods = timed(cluster, pods_api.list(&lp))
            .await
            .map_err(|e| cluster.explain(&format!("listing the pods of builder {}", spec.name), e))?
            .items;
        let generation = sts.metadata.generation.unwrap_or(0);
        let status = sts.status.unwrap_or_default();
        let observed = status.observed_generation.unwrap_or(0) >= generation;
        let revision = status.update_revision.unwrap_or_default();
        let mut states: BTreeMap<String, String> = BTreeMap::new();
        for p in &pods {
            let name = p.metadata.name.clone().unwrap_or_default();
            let mut state = pod_state(p);
            let pod_revision = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("controller-revision-hash"));
            if state == "Ready"
                && observed
                && !revision.is_empty()
                && pod_revision != Some(&revision)
            {
                state = "Ready, old revision (to be replaced)".into();
            }
            states.insert(name, state);
        }
        for name in &want {
            states
                .entry(name.clone())
                .or_insert_with(|| "not created yet".into());
        }
        for (name, state) in &states {
            if shown.get(name) != Some(state) {
                let extra = if want.contains(name) {
                    ""
                } else {
                    " (scaled away)"
                };
                crate::log::note(format!("pod {name}: {state}{extra}"));
                shown.insert(name.clone(), state.clone());
            }
        }
        let not_ready: Vec<String> = states
            .iter()
            .filter(|(name, state)| !(want.contains(name) && state.as_str() == "Ready"))
            .map(|(name, state)| format!("pod {name} is {state}"))
            .collect();
        if observed && not_ready.is_empty() {
            crate::log::note(format!(
                "builder {} ready: {} pod{} in namespace {} ({})",
                spec.name,
                want.len(),
                if want.len() == 1 { "" } else { "s" },
                cluster.namespace,
                humantime(Duration::from_millis(start.elapsed().as_millis() as u64))
            ));
            return Ok(());
        }
        if start.elapsed() >= timeout {
            let first = not_ready
                .first()
                .and_then(|s| s.strip_prefix("pod "))
                .and_then(|s| s.split(' ').next())
                .unwrap_or(&spec.name)
                .to_string();
            bail!(
                "builder {} is not ready after --timeout {}: {}; the builder stays as it is: \
                 see `kubectl -n {} describe pod {first}`, or wait longer with --timeout",
                spec.name,
                humantime(timeout),
                if not_ready.is_empty() {
                    "the StatefulSet controller has not seen the change yet".to_string()
                } else {
                    not_ready.join(", ")
                },
                cluster.namespace,
            );
        }
        tokio::time::sleep(POLL.min(timeout.saturating_sub(start.elapsed()))).await;
    }
}
