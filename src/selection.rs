//! Which pods may take a build, and which one a key picks.
//!
//! Listing -> eligibility -> ring -> fallback order. Transport never appears here.

use std::path::Path;

use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::ring::{Algorithm, Ring};

/// How pods are chosen: the selection flags as plain values.
#[derive(Debug, Clone)]
pub struct SelectionOptions {
    /// Label selector of the buildkitd pods.
    pub selector: String,
    pub algorithm: Algorithm,
    /// Use this pod; no listing, no hashing.
    pub pod: Option<String>,
    /// Also use Running pods that are not Ready (never terminating ones).
    pub include_unready: bool,
}

impl Default for SelectionOptions {
    fn default() -> Self {
        SelectionOptions {
            selector: DEFAULT_SELECTOR.to_string(),
            algorithm: Algorithm::default(),
            pod: None,
            include_unready: false,
        }
    }
}

/// The label selector used when none is given.
pub const DEFAULT_SELECTOR: &str = "app=buildkitd";

/// A pod as `pods` shows it, with the verdict on whether it may take builds.
#[derive(Debug, Clone, Serialize)]
pub struct PodView {
    pub name: String,
    pub phase: String,
    pub ready: bool,
    /// Ready containers / all containers, as kubectl's READY column.
    #[serde(skip)]
    pub ready_containers: (usize, usize),
    pub eligible: bool,
    /// Why the pod is not eligible (NotReady, Terminating, Pending, ...); None if it is.
    pub reason: Option<String>,
    pub node: Option<String>,
    pub ip: Option<String>,
    pub restarts: i32,
    #[serde(skip)]
    pub created: Option<Timestamp>,
    #[serde(skip)]
    pub containers: Vec<String>,
    /// The container its `kubectl.kubernetes.io/default-container` annotation names
    /// (only when the pod has that container).
    #[serde(skip)]
    pub default_container: Option<String>,
}

/// The pod's phase as the API reports it, `Unknown` when it has none yet.
pub fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".into())
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Judge one pod: Running, Ready and not terminating; `--include-unready` lets Running
/// pods that are not Ready through, never terminating ones.
pub fn view(pod: &Pod, include_unready: bool) -> PodView {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref();
    let phase = phase(pod);
    let ready = is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let statuses = status
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let containers: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let ready_containers = (
        statuses.iter().filter(|c| c.ready).count(),
        containers.len(),
    );
    let restarts = statuses.iter().map(|c| c.restart_count).sum();
    // kubectl exec's default: the container the pod's annotation names, if it has it.
    let default_container = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .filter(|c| containers.contains(c))
        .cloned();
    let reason = if terminating {
        Some("Terminating".to_string())
    } else if phase != "Running" {
        Some(phase.clone())
    } else if !ready && !include_unready {
        Some("NotReady".to_string())
    } else {
        None
    };
    PodView {
        name,
        eligible: reason.is_none(),
        reason,
        ready,
        ready_containers,
        phase,
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ip: status.and_then(|s| s.pod_ip.clone()),
        restarts,
        created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        containers,
        default_container,
    }
}

/// The annotation kubectl reads for the container `exec` uses when none is named
/// (sidecar injectors such as Istio's set it to the main container).
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// An image reference without its tag or digest: skaffold tags every build anew, and
/// the cache belongs to the repository, not the tag.
pub fn image_repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match (no_digest.rfind(':'), no_digest.rfind('/')) {
        (Some(colon), Some(slash)) if colon > slash => &no_digest[..colon],
        (Some(colon), None) => &no_digest[..colon],
        _ => no_digest,
    }
}

/// The hash key: --hash-key, else $IMAGE without its tag, else the build context's
/// absolute path (when there is a context).
pub fn default_key(
    flag: Option<&str>,
    image: Option<&str>,
    context: Option<&Path>,
) -> Option<String> {
    if let Some(k) = flag {
        return Some(k.to_string());
    }
    if let Some(img) = image.filter(|s| !s.trim().is_empty()) {
        return Some(image_repository(img.trim()).to_string());
    }
    context.map(|c| c.display().to_string())
}

/// The outcome of selection: every matching pod, the ring over the eligible ones, and
/// (with a key) the order in which to try them.
pub struct Selection {
    pub pods: Vec<PodView>,
    pub ring: Ring,
    pub key: Option<String>,
    /// Pods to try, first choice first. With --pod, just that pod.
    pub order: Vec<String>,
}

impl Selection {
    pub fn chosen(&self) -> Option<&str> {
        self.order.first().map(String::as_str)
    }

    /// Fail, listing every pod with its reason, when none can take a build.
    pub fn require_eligible(&self, selector: &str, namespace: &str) -> Result<()> {
        if !self.ring.is_empty() {
            return Ok(());
        }
        let list = self
            .pods
            .iter()
            .map(|v| format!("{} ({})", v.name, v.reason.as_deref().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", ");
        bail!(
            "{} pod(s) match selector {selector:?} in namespace {namespace}, but none can take \
             builds: {list}; wait for them to become Ready, or pass --include-unready",
            self.pods.len()
        );
    }
}

/// List, judge and hash. Errors when no pod matches; a match with no eligible pod is
/// the caller's to judge (`pods` still shows them), see [`Selection::require_eligible`].
pub async fn select(
    cluster: &Cluster,
    flags: &SelectionOptions,
    key: Option<String>,
) -> Result<Selection> {
    if let Some(name) = &flags.pod {
        let pod = cluster.get_pod(name).await?;
        let v = view(&pod, flags.include_unready);
        if !v.eligible {
            bail!(
                "pod {name} in namespace {} cannot take builds: {}; pick another with --pod, \
                 or drop --pod to let the selector choose",
                cluster.namespace,
                v.reason.as_deref().unwrap_or("not eligible")
            );
        }
        let ring = Ring::new(flags.algorithm, &[name.as_str()]);
        return Ok(Selection {
            pods: vec![v],
            ring,
            key,
            order: vec![name.clone()],
        });
    }
    let pods = cluster.list_pods(&flags.selector).await?;
    let views: Vec<PodView> = pods
        .iter()
        .map(|p| view(p, flags.include_unready))
        .collect();
    if views.is_empty() {
        if cluster.namespace_exists().await == Some(false) {
            bail!(
                "namespace {:?} does not exist (context {}); pass the buildkitd pods' \
                 namespace with -n",
                cluster.namespace,
                cluster.context
            );
        }
        bail!(
            "no pods match selector {:?} in namespace {} (context {}); check -l/--selector \
             and -n/--namespace (kubectl get pods -n {} --show-labels)",
            flags.selector,
            cluster.namespace,
            cluster.context,
            cluster.namespace
        );
    }
    let eligible: Vec<&str> = views
        .iter()
        .filter(|v| v.eligible)
        .map(|v| v.name.as_str())
        .collect();
    let ring = Ring::new(flags.algorithm, &eligible);
    let order = match &key {
        Some(k) => ring.order(k).into_iter().map(str::to_string).collect(),
        None => Vec::new(),
    };
    Ok(Selection {
        pods: views,
        ring,
        key,
        order,
    })
}

/// Selection for what needs one pod (a build, a tunnel): a key is required unless
/// `pod` is given, and at least one pod must be eligible.
pub async fn select_one(
    cluster: &Cluster,
    options: &SelectionOptions,
    key: Option<String>,
) -> Result<Selection> {
    let key = match (&options.pod, key) {
        (Some(_), k) => k,
        (None, Some(k)) => Some(k),
        (None, None) => bail!(
            "no hash key: pass --hash-key KEY (or set IMAGE), or choose a pod with --pod NAME"
        ),
    };
    let sel = select(cluster, options, key).await?;
    sel.require_eligible(&options.selector, &cluster.namespace)?;
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_repository_strips_tag_and_digest_only() {
        let cases = [
            ("gcr.io/me/app:v1", "gcr.io/me/app"),
            ("gcr.io/me/app", "gcr.io/me/app"),
            ("localhost:5000/app", "localhost:5000/app"),
            ("localhost:5000/app:abc123", "localhost:5000/app"),
            ("app:latest", "app"),
            ("app", "app"),
            ("reg.io/app@sha256:abcd", "reg.io/app"),
            ("reg.io/app:v1@sha256:abcd", "reg.io/app"),
            ("reg.io:443/a/b/c:t-1.2", "reg.io:443/a/b/c"),
        ];
        for (input, want) in cases {
            assert_eq!(image_repository(input), want, "{input}");
        }
    }

    #[test]
    fn key_precedence_flag_then_image_then_context() {
        let ctx = Path::new("/src/app");
        assert_eq!(
            default_key(Some("k"), Some("img:1"), Some(ctx)).as_deref(),
            Some("k")
        );
        assert_eq!(
            default_key(None, Some("img:1"), Some(ctx)).as_deref(),
            Some("img")
        );
        assert_eq!(
            default_key(None, Some(" "), Some(ctx)).as_deref(),
            Some("/src/app")
        );
        assert_eq!(
            default_key(None, None, Some(ctx)).as_deref(),
            Some("/src/app")
        );
        assert_eq!(default_key(None, None, None), None);
    }

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn running(name: &str, ready: bool) -> serde_json::Value {
        serde_json::json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "buildkitd"}], "nodeName": "n1"},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                       "containerStatuses": [{"name": "buildkitd", "ready": ready, "restartCount": 2,
                                              "image": "x", "imageID": ""}]}
        })
    }

    #[test]
    fn eligibility_rules() {
        let ok = view(&pod(running("a", true)), false);
        assert!(ok.eligible && ok.reason.is_none());
        assert_eq!(ok.restarts, 2);
        assert_eq!(ok.ready_containers, (1, 1));

        let unready = view(&pod(running("b", false)), false);
        assert_eq!(unready.reason.as_deref(), Some("NotReady"));
        assert!(
            view(&pod(running("b", false)), true).eligible,
            "--include-unready"
        );

        let mut t = running("c", true);
        t["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        assert_eq!(
            view(&pod(t.clone()), false).reason.as_deref(),
            Some("Terminating")
        );
        assert!(!view(&pod(t), true).eligible, "terminating stays out");

        let mut p = running("d", false);
        p["status"]["phase"] = "Pending".into();
        assert_eq!(
            view(&pod(p.clone()), true).reason.as_deref(),
            Some("Pending")
        );

        let bare = view(&pod(serde_json::json!({"metadata": {"name": "e"}})), false);
        assert_eq!(bare.reason.as_deref(), Some("Unknown"));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary input: no panic, and the answer is a prefix of the input.
        #[test]
        fn repository_is_a_prefix(s in "\\PC{0,80}|[a-z0-9:/@.]{0,40}") {
            let r = image_repository(&s);
            prop_assert!(s.starts_with(r), "{:?} -> {:?}", s, r);
            prop_assert!(!r.contains('@'), "{:?} -> {:?}", s, r);
        }

        /// Valid references: the tag and digest go, registry port and path stay, and the
        /// result is its own repository.
        #[test]
        fn valid_references_keep_their_name(
            registry in "(([a-z0-9]{1,8}\\.)?[a-z0-9]{1,8}(:[0-9]{1,5})?/)?",
            path in "[a-z0-9]{1,8}(/[a-z0-9._-]{1,8}){0,3}",
            tag in "(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,20})?",
            digest in "(@sha256:[0-9a-f]{64})?",
        ) {
            let name = format!("{registry}{path}");
            let image = format!("{name}{tag}{digest}");
            prop_assert_eq!(image_repository(&image), name.as_str());
            prop_assert_eq!(image_repository(&name), name.as_str());
            prop_assert_eq!(default_key(None, Some(&image), None), Some(name.clone()));
        }
    }
}
