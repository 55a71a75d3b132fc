//! The StatefulSet controller: pods `NAME-0..N-1` from the template (Pending, then
//! Running, then Ready), a PersistentVolumeClaim per volumeClaimTemplate and ordinal
//! (kept when the StatefulSet goes, as Kubernetes' default Retain policy), scale-down and
//! deletion that mark pods terminating and remove them shortly after. A template change
//! replaces every pod at once (the real controller rolls them one by one).
//!
//! Every pod starts from `ControllerConfig::pod_base`, so whatever a PodConfig can say
//! (faults, or a future field naming a real BuildKit behind the pod) applies to the pods
//! the controller makes: that is the hook for other buildkitd backends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

use crate::config::PodConfig;
use crate::objects::{labels_of, ObjectStore, PVCS, STATEFULSETS};
use crate::state::State;

/// How the controller's pods behave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// A new pod is Pending for half of this, Running but not Ready for the other half.
    pub ready_after_ms: u64,
    /// A terminating pod is removed this long after it was marked.
    pub terminate_after_ms: u64,
    /// Pods (by name) whose readiness probe never passes: they stay Running, not Ready.
    pub never_ready: Vec<String>,
    /// What every pod starts from; the controller sets its name, namespace, labels,
    /// annotations, containers, phase, readiness and node.
    pub pod_base: PodConfig,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            ready_after_ms: 400,
            terminate_after_ms: 200,
            never_ready: Vec::new(),
            pod_base: PodConfig::default(),
        }
    }
}

/// The workload objects and the controller's own bookkeeping.
#[derive(Default)]
pub struct Workloads {
    pub store: Mutex<ObjectStore>,
    config: Mutex<ControllerConfig>,
    /// (namespace, statefulset) -> the pods it made.
    owned: Mutex<BTreeMap<(String, String), BTreeSet<String>>>,
    /// (namespace, pod) -> which incarnation of the pod a delayed step belongs to.
    incarnation: Mutex<BTreeMap<(String, String), u64>>,
    next_incarnation: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Workloads {
    pub fn new(config: ControllerConfig) -> Workloads {
        Workloads {
            config: Mutex::new(config),
            ..Workloads::default()
        }
    }

    pub fn store(&self) -> MutexGuard<'_, ObjectStore> {
        lock(&self.store)
    }

    pub fn config(&self) -> ControllerConfig {
        lock(&self.config).clone()
    }

    pub fn set_config(&self, c: ControllerConfig) {
        *lock(&self.config) = c;
    }

    /// The pods a StatefulSet made that still exist.
    pub fn pods_of(&self, ns: &str, sts: &str) -> BTreeSet<String> {
        lock(&self.owned)
            .get(&(ns.to_string(), sts.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

/// RFC 3339 "now", second precision, as the apiserver writes times.
pub fn now() -> String {
    let t = crate::api::time(std::time::SystemTime::now());
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn template_hash(template: &Value) -> String {
    let d = Sha1::digest(template.to_string().as_bytes());
    d.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

fn ordinal(sts: &str, pod: &str) -> Option<u32> {
    pod.strip_prefix(sts)?.strip_prefix('-')?.parse().ok()
}

/// Bring the pods and claims of one StatefulSet in line with its spec (or its absence).
pub fn reconcile(state: &Arc<State>, ns: &str, sts_name: &str) {
    let w = &state.workloads;
    let sts = w.store().get(&STATEFULSETS, ns, sts_name);
    let owned = w.pods_of(ns, sts_name);
    let Some(sts) = sts else {
        for pod in owned {
            if state.pod(ns, &pod).is_some_and(|p| !p.cfg.terminating) {
                terminate(state, ns, sts_name, &pod);
            }
        }
        return;
    };
    let replicas = sts
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1) as u32;
    let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let revision = format!("{sts_name}-{}", template_hash(&template));
    for pod in &owned {
        let Some(view) = state.pod(ns, pod) else {
            continue;
        };
        if view.cfg.terminating {
            continue;
        }
        let stale = view.cfg.labels.get("controller-revision-hash") != Some(&revision);
        if ordinal(sts_name, pod).is_none_or(|i| i >= replicas) || stale {
            terminate(state, ns, sts_name, pod);
        }
    }
    for i in 0..replicas {
        let pod = format!("{sts_name}-{i}");
        if state.pod(ns, &pod).is_none() {
            make_pod(state, ns, sts_name, &pod, i, &template, &revision);
        }
        make_claims(&mut w.store(), ns, sts_name, i, &sts);
    }
}

fn make_pod(
    state: &Arc<State>,
    ns: &str,
    sts: &str,
    pod: &str,
    index: u32,
    template: &Value,
    revision: &str,
) {
    let w = &state.workloads;
    let config = w.config();
    let mut cfg = config.pod_base.clone();
    cfg.name = pod.to_string();
    cfg.namespace = ns.to_string();
    cfg.labels = labels_of(template);
    cfg.labels
        .insert("statefulset.kubernetes.io/pod-name".into(), pod.into());
    cfg.labels
        .insert("controller-revision-hash".into(), revision.into());
    cfg.labels
        .insert("apps.kubernetes.io/pod-index".into(), index.to_string());
    cfg.annotations = template
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let containers: Vec<String> = template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !containers.is_empty() {
        cfg.containers = containers;
    }
    cfg.phase = "Pending".into();
    cfg.ready = false;
    cfg.terminating = false;
    cfg.node = String::new();
    cfg.restarts = 0;
    cfg.age_seconds = 0;
    let incarnation = {
        let mut n = lock(&w.next_incarnation);
        *n += 1;
        *n
    };
    lock(&w.incarnation).insert((ns.to_string(), pod.to_string()), incarnation);
    lock(&w.owned)
        .entry((ns.to_string(), sts.to_string()))
        .or_default()
        .insert(pod.to_string());
    state.upsert_pod(cfg);

    let never_ready = config.never_ready.iter().any(|p| p == pod);
    let half = Duration::from_millis(config.ready_after_ms / 2);
    let (me, ns, pod) = (Arc::downgrade(state), ns.to_string(), pod.to_string());
    let node = format!("node-{}", index % 3 + 1);
    state.handle().spawn(async move {
        let current = |s: &State| {
            lock(&s.workloads.incarnation).get(&(ns.clone(), pod.clone())) == Some(&incarnation)
                && s.pod(&ns, &pod).is_some_and(|p| !p.cfg.terminating)
        };
        tokio::time::sleep(half).await;
        let Some(s) = me.upgrade() else { return };
        if !current(&s) {
            return;
        }
        s.update_pod(&ns, &pod, |p| {
            p.phase = "Running".into();
            p.node = node;
        });
        drop(s);
        tokio::time::sleep(half).await;
        let Some(s) = me.upgrade() else { return };
        if current(&s) && !never_ready {
            s.update_pod(&ns, &pod, |p| p.ready = true);
        }
    });
}

/// One claim per volumeClaimTemplate for ordinal `i`, labelled like the pods' selector.
fn make_claims(store: &mut ObjectStore, ns: &str, sts_name: &str, i: u32, sts: &Value) {
    let Some(templates) = sts
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
    else {
        return;
    };
    let selector = sts
        .pointer("/spec/selector/matchLabels")
        .cloned()
        .unwrap_or(json!({}));
    for t in templates {
        let Some(tname) = t.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let name = format!("{tname}-{sts_name}-{i}");
        let mut labels = t.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
        if let (Some(l), Some(s)) = (labels.as_object_mut(), selector.as_object()) {
            for (k, v) in s {
                l.insert(k.clone(), v.clone());
            }
        }
        let spec = t.get("spec").cloned().unwrap_or(json!({}));
        let claim = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": spec,
            "status": {
                "phase": "Bound",
                "accessModes": spec.get("accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
                "capacity": {"storage": spec.pointer("/resources/requests/storage").cloned().unwrap_or(json!("1Gi"))}
            }
        });
        store.insert_owned(&PVCS, ns, &name, claim, &now());
    }
}

/// Mark a pod terminating, remove it shortly after, then reconcile again (a template
/// change recreates it).
fn terminate(state: &Arc<State>, ns: &str, sts: &str, pod: &str) {
    state.update_pod(ns, pod, |p| {
        p.terminating = true;
        p.ready = false;
    });
    let after = Duration::from_millis(state.workloads.config().terminate_after_ms);
    let (me, ns, sts, pod) = (
        Arc::downgrade(state),
        ns.to_string(),
        sts.to_string(),
        pod.to_string(),
    );
    state.handle().spawn(async move {
        tokio::time::sleep(after).await;
        let Some(s) = me.upgrade() else { return };
        s.remove_pod(&ns, &pod);
        if let Some(set) = lock(&s.workloads.owned).get_mut(&(ns.clone(), sts.clone())) {
            set.remove(&pod);
        }
        reconcile(&s, &ns, &sts);
    });
}

/// A StatefulSet's status, computed from its pods as the controller would report it.
pub fn status(state: &State, ns: &str, sts: &Value) -> Value {
    let name = sts
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let revision = format!("{name}-{}", template_hash(&template));
    let pods: Vec<_> = state
        .workloads
        .pods_of(ns, name)
        .iter()
        .filter_map(|p| state.pod(ns, p))
        .collect();
    let ready = pods
        .iter()
        .filter(|p| p.cfg.ready && p.cfg.phase == "Running" && !p.cfg.terminating)
        .count();
    let current = pods
        .iter()
        .filter(|p| p.cfg.labels.get("controller-revision-hash") == Some(&revision))
        .count();
    json!({
        "observedGeneration": sts.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "replicas": pods.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": current,
        "currentRevision": revision,
        "updateRevision": revision,
        "collisionCount": 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals() {
        assert_eq!(ordinal("bk", "bk-0"), Some(0));
        assert_eq!(ordinal("bk", "bk-12"), Some(12));
        assert_eq!(ordinal("bk", "bk-x"), None);
        assert_eq!(ordinal("bk", "bkx-1"), None);
    }

    #[test]
    fn yaml_defaults() {
        let c: ControllerConfig = serde_yaml::from_str("never_ready: [a-1]\n").unwrap();
        assert_eq!(c.ready_after_ms, 400);
        assert_eq!(c.never_ready, vec!["a-1"]);
    }
}
