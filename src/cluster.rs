//! Cluster access: a kube Client built from the user's kubeconfig and flags, exactly
//! as kubectl would resolve them, and the few API calls the plugin makes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};
use kube::config::{ExecInteractiveMode, KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::names;

mod client;
mod explain;
use explain::credential_plugin_failure;
pub use explain::explain_kube_error;

/// How to reach the cluster: kubectl's connection flags as plain values (the binary
/// fills this from `--kubeconfig`, `--context`, ...; `None` means kubectl's default).
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub cluster: Option<String>,
    pub user: Option<String>,
    pub namespace: Option<String>,
    /// Per API request; `None` or zero means no limit.
    pub request_timeout: Option<Duration>,
}

/// A connected cluster: the client plus what the user asked for.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
    /// The context in use ("in-cluster" when running inside a pod).
    pub context: String,
    /// The API server URL, for messages.
    pub server: String,
    /// --request-timeout; None = no limit.
    pub request_timeout: Option<Duration>,
}

/// Where the kubeconfig comes from, kubectl's order: --kubeconfig, then $KUBECONFIG
/// (a list; missing files in it are skipped, as kubectl does), then ~/.kube/config.
fn load_kubeconfig(flag: Option<&Path>) -> Result<(Kubeconfig, String)> {
    if let Some(path) = flag {
        let kc = read_one(path)?;
        return Ok((kc, path.display().to_string()));
    }
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
        if !paths.is_empty() {
            if existing.is_empty() {
                bail!(
                    "no kubeconfig: none of the files in KUBECONFIG exist ({}); \
                     fix KUBECONFIG or pass --kubeconfig",
                    std::env::join_paths(&paths)
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default()
                );
            }
            let mut merged = Kubeconfig::default();
            for p in &existing {
                merged = merged
                    .merge(read_one(p)?)
                    .with_context(|| format!("cannot merge kubeconfig {}", p.display()))?;
            }
            let shown = existing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>();
            return Ok((merged, shown.join(":")));
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let default = home.map(|h| h.join(".kube").join("config"));
    match default {
        Some(p) if p.exists() => Ok((read_one(&p)?, p.display().to_string())),
        _ => bail!(
            "no kubeconfig found: ~/.kube/config does not exist and KUBECONFIG is not set; \
             pass --kubeconfig PATH, set KUBECONFIG, or run inside a cluster"
        ),
    }
}

/// One kubeconfig file. Relative paths in it (certificate-authority, client-certificate,
/// client-key, tokenFile, an exec plugin's command with a '/') are rebased on the file's
/// own directory, as kubectl does: kube's `read_from` does that, `from_yaml` does not.
fn read_one(path: &Path) -> Result<Kubeconfig> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // UTF-8 text, or a clear "cannot read" (kube alone would also decode UTF-16).
    std::fs::read_to_string(&absolute)
        .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
    Kubeconfig::read_from(&absolute).map_err(|e| match e {
        kube::config::KubeconfigError::ReadConfig(io, _) => {
            anyhow!("cannot read kubeconfig {}: {io}", path.display())
        }
        e => anyhow!(
            "kubeconfig {} is not valid: {e}; fix the file or pass another --kubeconfig",
            path.display()
        ),
    })
}

impl Cluster {
    /// Build a client from the kubeconfig and flags. Makes no request.
    pub async fn connect(flags: &ClusterOptions) -> Result<Cluster> {
        let in_cluster = flags.kubeconfig.is_none()
            && std::env::var_os("KUBECONFIG").is_none()
            && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
            && !std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".kube/config").exists())
                .unwrap_or(false);
        let (mut config, context) = if in_cluster {
            let config = Config::incluster()
                .context("running in a pod, but the in-cluster service account is unusable")?;
            (config, "in-cluster".to_string())
        } else {
            let (mut kc, source) = load_kubeconfig(flags.kubeconfig.as_deref())?;
            let context = flags
                .context
                .clone()
                .or_else(|| kc.current_context.clone())
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    anyhow!(
                        "kubeconfig {source} has no current-context: pass --context NAME \
                         (kubectl config get-contexts lists them)"
                    )
                })?;
            if !kc.contexts.iter().any(|c| c.name == context) {
                let known: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
                bail!(
                    "context {context:?} not found in kubeconfig {source} (known: {}); \
                     pass one of them with --context",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            }
            if let Some(cluster) = &flags.cluster {
                if !kc.clusters.iter().any(|c| &c.name == cluster) {
                    bail!("cluster {cluster:?} not found in kubeconfig {source}; check --cluster");
                }
            }
            if let Some(user) = &flags.user {
                if !kc.auth_infos.iter().any(|u| &u.name == user) {
                    bail!("user {user:?} not found in kubeconfig {source}; check --user");
                }
            }
            // Our stdin may carry a build context or a tunnel: a credential plugin must
            // never prompt on it.
            for user in &mut kc.auth_infos {
                if let Some(exec) = user.auth_info.as_mut().and_then(|a| a.exec.as_mut()) {
                    exec.interactive_mode = Some(ExecInteractiveMode::Never);
                }
            }
            let options = KubeConfigOptions {
                context: Some(context.clone()),
                cluster: flags.cluster.clone(),
                user: flags.user.clone(),
            };
            let config = Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| {
                    anyhow!("cannot use context {context:?} from kubeconfig {source}: {e}")
                })?;
            (config, context)
        };
        if let Some(ns) = &flags.namespace {
            names::check_namespace(ns)?;
            config.default_namespace = ns.clone();
        } else if config.default_namespace.is_empty() {
            // `namespace: ""` in the context means no namespace, as kubectl reads it.
            config.default_namespace = "default".to_string();
        } else {
            names::check_namespace(&config.default_namespace).map_err(|e| {
                anyhow!(
                    "{e:#} (from context {context:?} of the kubeconfig): fix the context's \
                     namespace, or pass -n NAMESPACE"
                )
            })?;
        }
        let request_timeout = flags.request_timeout.filter(|d| !d.is_zero());
        if let Some(t) = request_timeout {
            config.connect_timeout = Some(t);
        }
        let server = config.cluster_url.to_string();
        let namespace = config.default_namespace.clone();
        let client = client::build(config).map_err(|e| match credential_plugin_failure(&e) {
            Some(why) => anyhow!(
                "the kubeconfig's credential plugin failed (context {context}): {why}; run the \
                 plugin by hand to see why, or log in again"
            ),
            None => anyhow!("cannot set up a client for {server} (context {context}): {e}"),
        })?;
        Ok(Cluster {
            client,
            namespace,
            context,
            server,
            request_timeout,
        })
    }

    /// Run one API call under --request-timeout, turning kube errors into messages
    /// that name the server, context and the fix.
    pub async fn call<T, F>(&self, what: &str, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T, kube::Error>>,
    {
        self.timed(what, fut)
            .await?
            .map_err(|e| self.explain(what, e))
    }

    /// `fut` within --request-timeout (the outer error), its own result inside.
    async fn timed<T, F>(&self, what: &str, fut: F) -> Result<Result<T, kube::Error>>
    where
        F: std::future::Future<Output = Result<T, kube::Error>>,
    {
        match self.request_timeout {
            Some(t) => tokio::time::timeout(t, fut).await.map_err(|_| {
                anyhow!(
                    "{what}: the API server {} (context {}) did not answer within \
                     --request-timeout {}; check the cluster, or allow more time",
                    self.server,
                    self.context,
                    humantime(t)
                )
            }),
            None => Ok(fut.await),
        }
    }

    /// A kube error as a message a user can act on.
    pub fn explain(&self, what: &str, e: kube::Error) -> anyhow::Error {
        explain_kube_error(what, &self.server, &self.context, &self.namespace, e)
    }

    /// Every pod matching the selector in our namespace, sorted by name.
    pub async fn list_pods(&self, selector: &str) -> Result<Vec<Pod>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let lp = ListParams::default().labels(selector);
        let what = format!(
            "listing pods with selector {selector:?} in namespace {}",
            self.namespace
        );
        let list = match self.timed(&what, api.list(&lp)).await? {
            // A 400 on a list is the server refusing the selector's syntax.
            Err(kube::Error::Api(s)) if s.code == 400 => bail!(
                "{:#}; fix the label selector given with -l/--selector, e.g. -l app=buildkitd",
                self.explain(&what, kube::Error::Api(s))
            ),
            r => r.map_err(|e| self.explain(&what, e))?,
        };
        let mut pods = list.items;
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(pods)
    }

    /// One pod by name.
    pub async fn get_pod(&self, name: &str) -> Result<Pod> {
        names::check_pod(name)?;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let what = format!("getting pod {name} in namespace {}", self.namespace);
        self.call(&what, api.get(name)).await
    }

    /// Whether our namespace exists: Some(false) when the server says 404, None when we
    /// may not ask (403) or cannot tell.
    pub async fn namespace_exists(&self) -> Option<bool> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let fut = api.get_opt(&self.namespace);
        let r = match self.request_timeout {
            Some(t) => tokio::time::timeout(t, fut).await.ok()?,
            None => fut.await,
        };
        match r {
            Ok(Some(_)) => Some(true),
            Ok(None) => Some(false),
            Err(_) => None,
        }
    }
}

pub fn humantime(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}
