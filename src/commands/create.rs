//! `kubectl buildkit create [NAME]`: the flags become a BuilderSpec, its objects are
//! printed (--dry-run=client) or applied, then the pods are waited for.

use std::io::Write;

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use crate::builder::apply::{self, Applied};
use crate::builder::manifest::{self, BuilderObject};
use crate::builder::spec::{self, BuilderSpec, Subject};
use crate::builder::wait;
use crate::cli::{CreateArgs, DryRun, KubeFlags, ObjectOutput};
use crate::cluster::Cluster;

/// The builder the flags describe, in `namespace`.
pub fn spec_from(args: &CreateArgs, namespace: &str) -> Result<BuilderSpec> {
    spec::check_name(&args.name)?;
    let mut s = BuilderSpec::new(&args.name, namespace);
    s.replicas = args.replicas;
    s.rootless = !args.rootful;
    s.image = args
        .image
        .clone()
        .unwrap_or_else(|| spec::default_image(s.rootless));
    for kv in &args.node_selector {
        let (k, v) = spec::parse_key_value("--node-selector", kv)?;
        s.node_selector.insert(k, v);
    }
    s.tolerations = args
        .toleration
        .iter()
        .map(|t| spec::parse_toleration(t))
        .collect::<Result<_>>()?;
    if let Some(r) = &args.requests {
        s.requests = spec::parse_resources("--requests", r)?;
    }
    if let Some(l) = &args.limits {
        s.limits = spec::parse_resources("--limits", l)?;
    }
    if args.cache_size != "0" {
        spec::check_quantity("--cache-size", &args.cache_size)?;
        s.cache_size = Some(args.cache_size.clone());
    } else if args.storage_class.is_some() {
        anyhow::bail!(
            "--storage-class needs --cache-size SIZE (a cache volume to put in that class)"
        );
    }
    s.storage_class = args.storage_class.clone();
    s.port_forward_port = args.port_forward_port;
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read --config {}: give a buildkitd.toml file",
                path.display()
            )
        })?;
        s.config = Some(text);
    }
    s.rbac = !args.no_rbac;
    s.subjects
        .extend(args.bind_user.iter().map(|u| Subject::User(u.clone())));
    s.subjects
        .extend(args.bind_group.iter().map(|g| Subject::Group(g.clone())));
    for sa in &args.bind_serviceaccount {
        s.subjects.push(spec::parse_service_account(sa, namespace)?);
    }
    if args.no_rbac && !s.subjects.is_empty() {
        anyhow::bail!("--bind-user/--bind-group/--bind-serviceaccount need the RoleBinding that --no-rbac turns off: drop one of them");
    }
    Ok(s)
}

/// The namespace without asking the cluster: -n, else the kubeconfig context's, else
/// "default" (a client dry run works with no kubeconfig at all).
async fn offline_namespace(kube: &KubeFlags) -> String {
    if let Some(ns) = &kube.namespace {
        return ns.clone();
    }
    match Cluster::connect(kube).await {
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
            crate::output::json(out, &list)?;
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
        let spec = spec_from(args, &offline_namespace(kube).await)?;
        let objects: Vec<Value> = manifest::objects(&spec)
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
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
    let cluster = Cluster::connect(kube).await?;
    let spec = spec_from(args, &cluster.namespace)?;
    let objects = manifest::objects(&spec);
    let server_dry_run = args.dry_run == DryRun::Server;
    let applied: Vec<Applied> = apply::apply(&cluster, &objects, server_dry_run).await?;
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
            Err(e) => crate::log::warn(format!(
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
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn args(line: &str) -> Box<CreateArgs> {
        let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
        match cli.command {
            Command::Create(a) => a,
            _ => panic!("create"),
        }
    }

    #[test]
    fn flags_become_the_spec() {
        let a = args("kubectl-buildkit create fast --replicas 3 --rootful --node-selector pool=build \
                      --toleration gpu:NoSchedule --requests cpu=1 --limits memory=2Gi \
                      --cache-size 10Gi --storage-class ssd --port-forward-port 9999 \
                      --bind-user alice --bind-group devs --bind-serviceaccount ci:runner --dry-run=client -o yaml");
        let s = spec_from(&a, "bk").unwrap();
        assert_eq!(
            (s.name.as_str(), s.namespace.as_str(), s.replicas),
            ("fast", "bk", 3)
        );
        assert!(!s.rootless);
        assert_eq!(s.image, "moby/buildkit:v0.23.2");
        assert_eq!(s.node_selector["pool"], "build");
        assert_eq!(s.cache_size.as_deref(), Some("10Gi"));
        assert_eq!(s.subjects.len(), 3);
        assert_eq!(s.port_forward_port, 9999);
        assert_eq!(a.dry_run, DryRun::Client);
    }

    #[test]
    fn defaults_and_refusals() {
        let s = spec_from(&args("kubectl-buildkit create"), "default").unwrap();
        assert_eq!(s.name, "buildkitd");
        assert_eq!(s.replicas, 1);
        assert!(s.cache_size.is_none());
        assert!(spec_from(&args("kubectl-buildkit create Bad"), "d").is_err());
        assert!(spec_from(&args("kubectl-buildkit create --storage-class x"), "d").is_err());
        assert!(spec_from(
            &args("kubectl-buildkit create --no-rbac --bind-user a"),
            "d"
        )
        .is_err());
        assert!(spec_from(&args("kubectl-buildkit create --cache-size lots"), "d").is_err());
        assert!(Cli::try_parse_from(["kubectl-buildkit", "create", "--replicas", "-1"]).is_err());
        assert!(Cli::try_parse_from(["kubectl-buildkit", "create", "--dry-run=maybe"]).is_err());
        let a = args("kubectl-buildkit create --wait=false --dry-run");
        assert!(!a.wait);
        assert_eq!(a.dry_run, DryRun::Client);
    }

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
