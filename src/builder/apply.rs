//! Putting a builder's objects on the cluster: server-side apply (field manager
//! `kubectl-buildkit`), all or nothing. Every object is first applied with
//! `dryRun=All`, which the API server authorizes and validates like the real write, so
//! a missing permission or a missing namespace stops before anything exists; a failure
//! in the real pass removes what this run created.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::manifest::BuilderObject;
use crate::cluster::Cluster;

pub const FIELD_MANAGER: &str = "kubectl-buildkit";

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Configured,
    Unchanged,
}

impl Change {
    pub fn word(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Configured => "configured",
            Change::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Applied {
    /// `statefulset.apps/NAME`.
    pub name: String,
    pub change: Change,
    /// The object as the API server answered.
    pub object: Value,
}

/// Why a builder could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "cannot {verb} {resource} {name:?} in namespace {namespace} (403 Forbidden, context \
         {context}): {message}; nothing was changed. Ask a cluster admin for {needs} on \
         {resource} in namespace {namespace} (server-side apply needs `patch`, and `create` \
         for a new object), or create the builder with an account that has them",
        needs = needs(verb)
    )]
    Forbidden {
        verb: &'static str,
        resource: String,
        name: String,
        namespace: String,
        context: String,
        message: String,
    },
    #[error(
        "namespace {namespace} does not exist (context {context}); create it first \
         (kubectl create namespace {namespace}), or pass another -n"
    )]
    NoNamespace { namespace: String, context: String },
    #[error("{what}: {source:#}{rollback}")]
    Other {
        what: String,
        source: anyhow::Error,
        /// What was removed again, when a write failed half way.
        rollback: String,
    },
}

/// What to ask an admin for after a 403 on `verb`.
fn needs(verb: &str) -> String {
    match verb {
        "create" => "`create` and `patch`".into(),
        other => format!("`{other}`"),
    }
}

/// `statefulsets.apps`, as the API server names a resource.
fn resource_of<K: Resource<DynamicType = ()>>() -> String {
    let group = K::group(&());
    let plural = K::plural(&()).into_owned();
    if group.is_empty() {
        plural
    } else {
        format!("{plural}.{group}")
    }
}

pub(crate) trait Object:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}
impl<K> Object for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// One step on one object, whatever its type.
enum Step {
    /// resourceVersion now, None when absent.
    Current,
    Apply {
        dry_run: bool,
    },
    Delete,
}

enum StepResult {
    /// resourceVersion and labels, None when absent.
    Current(Option<(String, BTreeMap<String, String>)>),
    Applied(Value),
    Deleted,
}

async fn step_on<K: Object>(
    cluster: &Cluster,
    obj: &K,
    step: &Step,
) -> Result<StepResult, kube::Error> {
    let api: Api<K> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let name = obj.meta().name.clone().unwrap_or_default();
    match step {
        Step::Current => Ok(StepResult::Current(api.get_opt(&name).await?.map(|o| {
            let m = o.meta();
            (
                m.resource_version.clone().unwrap_or_default(),
                m.labels.clone().unwrap_or_default(),
            )
        }))),
        Step::Apply { dry_run } => {
            let mut pp = PatchParams::apply(FIELD_MANAGER).force();
            pp.dry_run = *dry_run;
            let out = api.patch(&name, &pp, &Patch::Apply(obj)).await?;
            Ok(StepResult::Applied(
                serde_json::to_value(out).unwrap_or(Value::Null),
            ))
        }
        Step::Delete => match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => Ok(StepResult::Deleted),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(StepResult::Deleted),
            Err(e) => Err(e),
        },
    }
}

fn resource_name(obj: &BuilderObject) -> String {
    match obj {
        BuilderObject::ConfigMap(_) => resource_of::<k8s_openapi::api::core::v1::ConfigMap>(),
        BuilderObject::Service(_) => resource_of::<k8s_openapi::api::core::v1::Service>(),
        BuilderObject::Role(_) => resource_of::<k8s_openapi::api::rbac::v1::Role>(),
        BuilderObject::RoleBinding(_) => resource_of::<k8s_openapi::api::rbac::v1::RoleBinding>(),
        BuilderObject::StatefulSet(_) => resource_of::<k8s_openapi::api::apps::v1::StatefulSet>(),
    }
}

fn object_name(obj: &BuilderObject) -> String {
    obj.display_name()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

async fn step(cluster: &Cluster, obj: &BuilderObject, s: Step) -> Result<StepResult, kube::Error> {
    match obj {
        BuilderObject::ConfigMap(o) => step_on(cluster, o, &s).await,
        BuilderObject::Service(o) => step_on(cluster, o, &s).await,
        BuilderObject::Role(o) => step_on(cluster, o, &s).await,
        BuilderObject::RoleBinding(o) => step_on(cluster, o, &s).await,
        BuilderObject::StatefulSet(o) => step_on(cluster, o.as_ref(), &s).await,
    }
}

/// A kube error on `obj` as an ApplyError; `verb` is what we asked for.
fn refused(
    cluster: &Cluster,
    obj: &BuilderObject,
    verb: &'static str,
    e: kube::Error,
) -> ApplyError {
    if let kube::Error::Api(s) = &e {
        if s.code == 403 {
            return ApplyError::Forbidden {
                verb,
                resource: resource_name(obj),
                name: object_name(obj),
                namespace: cluster.namespace.clone(),
                context: cluster.context.clone(),
                message: s.message.clone(),
            };
        }
        let about_namespace = s.details.as_ref().is_some_and(|d| d.kind == "namespaces");
        if s.code == 404 && about_namespace {
            return ApplyError::NoNamespace {
                namespace: cluster.namespace.clone(),
                context: cluster.context.clone(),
            };
        }
    }
    let what = format!(
        "{verb} {} in namespace {}",
        obj.display_name(),
        cluster.namespace
    );
    ApplyError::Other {
        source: cluster.explain(&what, e),
        what: "applying the builder".into(),
        rollback: String::new(),
    }
}

/// `fut` within --request-timeout; running out is a kube error like a lost connection.
pub async fn timed<T>(
    cluster: &Cluster,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    match cluster.request_timeout {
        None => fut.await,
        Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
            Err(kube::Error::Service(Box::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no answer within --request-timeout {}",
                    crate::cluster::humantime(t)
                ),
            ))))
        }),
    }
}

fn rv_of(v: &Value) -> Option<String> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Apply every object (in order), all or nothing. With `dry_run`, only the server-side
/// dry run: what the server would store, nothing written.
pub async fn apply(
    cluster: &Cluster,
    objects: &[BuilderObject],
    dry_run: bool,
) -> Result<Vec<Applied>, ApplyError> {
    let mut before = Vec::new();
    for obj in objects {
        let rv = match timed(cluster, step(cluster, obj, Step::Current))
            .await
            .map_err(|e| refused(cluster, obj, "get", e))?
        {
            StepResult::Current(current) => current.map(|(rv, _)| rv),
            _ => None,
        };
        before.push(rv);
    }
    let mut planned = Vec::new();
    for (obj, rv) in objects.iter().zip(&before) {
        let verb = if rv.is_some() { "patch" } else { "create" };
        let r = timed(cluster, step(cluster, obj, Step::Apply { dry_run: true }))
            .await
            .map_err(|e| refused(cluster, obj, verb, e))?;
        if let StepResult::Applied(v) = r {
            planned.push(v);
        }
    }
    if dry_run {
        return Ok(objects
            .iter()
            .zip(before)
            .zip(planned)
            .map(|((obj, rv), object)| Applied {
                name: obj.display_name(),
                change: change(rv.as_deref(), &object),
                object,
            })
            .collect());
    }
    let mut done: Vec<Applied> = Vec::new();
    for (i, (obj, rv)) in objects.iter().zip(&before).enumerate() {
        let verb = if rv.is_some() { "patch" } else { "create" };
        match timed(cluster, step(cluster, obj, Step::Apply { dry_run: false })).await {
            Ok(StepResult::Applied(object)) => done.push(Applied {
                name: obj.display_name(),
                change: change(rv.as_deref(), &object),
                object,
            }),
            Ok(_) => {}
            Err(e) => {
                let mut err = refused(cluster, obj, verb, e);
                let rollback = roll_back(cluster, &objects[..i], &before[..i]).await;
                if let ApplyError::Other { rollback: r, .. } = &mut err {
                    *r = rollback;
                } else if !rollback.is_empty() {
                    err = ApplyError::Other {
                        what: "applying the builder".into(),
                        source: anyhow::anyhow!("{err}"),
                        rollback,
                    };
                }
                return Err(err);
            }
        }
    }
    Ok(done)
}

fn change(before: Option<&str>, after: &Value) -> Change {
    match before {
        None => Change::Created,
        Some(rv) if rv_of(after).as_deref() == Some(rv) => Change::Unchanged,
        Some(_) => Change::Configured,
    }
}

/// Delete the objects this run created (those absent before), newest first.
async fn roll_back(
    cluster: &Cluster,
    objects: &[BuilderObject],
    before: &[Option<String>],
) -> String {
    let mut removed = Vec::new();
    for (obj, rv) in objects.iter().zip(before).rev() {
        if rv.is_none() {
            match timed(cluster, step(cluster, obj, Step::Delete)).await {
                Ok(_) => removed.push(obj.display_name()),
                Err(e) => crate::log::warn(format!(
                    "could not remove {} again: {e}; delete it by hand",
                    obj.display_name()
                )),
            }
        }
    }
    if removed.is_empty() {
        String::new()
    } else {
        format!(
            "; removed again what this run created: {}",
            removed.join(", ")
        )
    }
}

/// Delete `obj` by name if it exists and carries this builder's label (an object of
/// the same name that someone else made is left alone). Used for what an earlier
/// `create` made and this one does not (a dropped --config, --no-rbac, no subjects).
pub async fn prune(cluster: &Cluster, obj: &BuilderObject, builder: &str) -> anyhow::Result<bool> {
    let current = timed(cluster, step(cluster, obj, Step::Current))
        .await
        .map_err(|e| cluster.explain(&format!("getting {}", obj.display_name()), e))?;
    let StepResult::Current(Some((_, labels))) = current else {
        return Ok(false);
    };
    if labels.get(super::spec::BUILDER_LABEL).map(String::as_str) != Some(builder) {
        return Ok(false);
    }
    timed(cluster, step(cluster, obj, Step::Delete))
        .await
        .map_err(|e| cluster.explain(&format!("deleting {}", obj.display_name()), e))?;
    Ok(true)
}

/// Make the builder's namespace when it is missing (`--create-namespace`): a plain
/// create, so `create` on namespaces is all it needs. Never removed by `rm`.
pub async fn ensure_namespace(cluster: &Cluster, dry_run: bool) -> Result<Change, ApplyError> {
    use k8s_openapi::api::core::v1::Namespace;
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let name = cluster.namespace.clone();
    // May we look? A 403 here just means we try to create it.
    if let Ok(Some(_)) = timed(cluster, api.get_opt(&name)).await {
        return Ok(Change::Unchanged);
    }
    let ns = Namespace {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Namespace::default()
    };
    let pp = kube::api::PostParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.into()),
    };
    match timed(cluster, api.create(&pp, &ns)).await {
        Ok(_) => Ok(Change::Created),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Change::Unchanged),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(ApplyError::Forbidden {
            verb: "create",
            resource: "namespaces".into(),
            name: name.clone(),
            namespace: name,
            context: cluster.context.clone(),
            message: s.message.clone(),
        }),
        Err(e) => Err(ApplyError::Other {
            source: cluster.explain(&format!("creating namespace {name}"), e),
            what: "--create-namespace".into(),
            rollback: String::new(),
        }),
    }
}

/// Undo `ensure_namespace` after the builder failed (best effort, with a warning).
pub async fn remove_namespace(cluster: &Cluster) {
    use k8s_openapi::api::core::v1::Namespace;
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    if let Err(e) = timed(
        cluster,
        api.delete(&cluster.namespace, &DeleteParams::default()),
    )
    .await
    {
        crate::log::warn(format!(
            "could not delete namespace {} again, which this run created: {e}",
            cluster.namespace
        ));
    }
}
