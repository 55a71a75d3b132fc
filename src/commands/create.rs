//! `kubectl buildkit create [NAME]`: the flags become a BuilderSpec, its objects are
//! printed (--dry-run=client) or applied, then the pods are waited for.

use std::io::Write;

use anyhow::Result;
use serde_json::{json, Value};

use crate::cli::{CreateArgs, DryRun, KubeFlags, ObjectOutput};
use kubectl_buildkit::builder::apply::{self, Applied};
use kubectl_buildkit::builder::manifest::{self, BuilderObject};
use kubectl_buildkit::builder::spec::{BuilderSpec, Subject};
use kubectl_buildkit::builder::wait;
use kubectl_buildkit::cluster::Cluster;

/// The namespace without asking the cluster: -n, else the kubeconfig context's, else
/// "default" (a client dry run works with no kubeconfig at all).
async fn offline_namespace(kube: &KubeFlags) -> String {
    if let Some(ns) = &kube.namespace {
        return ns.clone();
    }
    match Cluster::connect(&kube.options()).await {
        Ok(c) => c.namespace,
        Err(_) => "default".to_string(),
    }
}

fn print_objects(out: &mut impl Write, format: ObjectOutput, objects: &[Value]) -> Result<()> {
    match format {
        ObjectOutput::Yaml => {
            for (i, o) in objects.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                out.write_all(serde_yaml::to_string(o)?.as_bytes())?;
            }
        }
        ObjectOutput::Json => {
            let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
            kubectl_buildkit::output::json(out, &list)?;
        }
        ObjectOutput::Name => {
            for o in objects {
                let kind = o["kind"].as_str().unwrap_or_default().to_lowercase();
                let group = o["apiVersion"]
                    .as_str()
                    .and_then(|v| v.split_once('/'))
                    .map(|(g, _)| format!(".{g}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{kind}{group}/{}",
                    o["metadata"]["name"].as_str().unwrap_or_default()
                )?;
            }
        }
    }
    Ok(())
}

/// Objects an earlier `create` may have made that these flags no longer do.
fn stale(spec: &BuilderSpec, current: &[BuilderObject]) -> Vec<BuilderObject> {
    let mut full = spec.clone();
    full.config.get_or_insert_with(String::new);
    full.rbac = true;
    if full.subjects.is_empty() {
        full.subjects.push(Subject::User("placeholder".into()));
    }
    let names: Vec<String> = current.iter().map(BuilderObject::display_name).collect();
    manifest::objects(&full)
        .into_iter()
        .filter(|o| !names.contains(&o.display_name()))
        .collect()
}

pub async fn run(kube: &KubeFlags, args: &CreateArgs) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    if args.dry_run == DryRun::Client {
        let spec = args.spec(&offline_namespace(kube).await)?;
        let mut objects: Vec<Value> = manifest::objects(&spec)
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        if args.create_namespace {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": spec.namespace}});
            objects.insert(0, ns);
        }
        match args.output {
            Some(f) => print_objects(&mut out, f, &objects)?,
            None => {
                for o in manifest::objects(&spec) {
                    writeln!(out, "{} created (dry run)", o.display_name())?;
                }
            }
        }
        return Ok(0);
    }
    let cluster = Cluster::connect(&kube.options()).await?;
    let spec = args.spec(&cluster.namespace)?;
    let objects = manifest::objects(&spec);
    let server_dry_run = args.dry_run == DryRun::Server;
    let mut made_namespace = false;
    if args.create_namespace {
        let change = apply::ensure_namespace(&cluster, server_dry_run).await?;
        made_namespace = change == apply::Change::Created && !server_dry_run;
        if made_namespace && args.output.is_none() {
            writeln!(out, "namespace/{} created", cluster.namespace)?;
        }
    }
    let applied: Vec<Applied> = match apply::apply(&cluster, &objects, server_dry_run).await {
        Ok(a) => a,
        Err(e) => {
            if made_namespace {
                apply::remove_namespace(&cluster).await;
            }
            return Err(e.into());
        }
    };
    match args.output {
        Some(f) => {
            let objs: Vec<Value> = applied.iter().map(|a| a.object.clone()).collect();
            print_objects(&mut out, f, &objs)?;
        }
        None => {
            for a in &applied {
                let suffix = if server_dry_run {
                    " (server dry run)"
                } else {
                    ""
                };
                writeln!(out, "{} {}{suffix}", a.name, a.change.word())?;
            }
        }
    }
    out.flush()?;
    if server_dry_run {
        return Ok(0);
    }
    for obj in stale(&spec, &objects) {
        match apply::prune(&cluster, &obj, &spec.name).await {
            Ok(true) => writeln!(out, "{} deleted (no longer asked for)", obj.display_name())?,
            Ok(false) => {}
            Err(e) => kubectl_buildkit::log::warn(format!(
                "could not remove {}, which these flags no longer make: {e:#}",
                obj.display_name()
            )),
        }
    }
    out.flush()?;
    if args.wait {
        wait::wait_ready(&cluster, &spec, args.timeout).await?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_objects_are_what_the_flags_dropped() {
        let mut s = BuilderSpec::new("b", "ns");
        let names = |v: Vec<BuilderObject>| {
            v.iter()
                .map(BuilderObject::display_name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(stale(&s, &manifest::objects(&s))),
            [
                "configmap/b-config",
                "rolebinding.rbac.authorization.k8s.io/kubectl-buildkit-b"
            ]
        );
        s.rbac = false;
        assert!(names(stale(&s, &manifest::objects(&s)))
            .contains(&"role.rbac.authorization.k8s.io/kubectl-buildkit-b".to_string()));
    }
}
