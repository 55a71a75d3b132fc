//! `BuilderSpec`: everything `create` needs to know about a builder, as plain values,
//! and the parsers that turn the flags' text into them (no I/O, no clap).

use std::collections::BTreeMap;

use anyhow::{bail, Result};

/// The BuildKit release the default images pin.
pub const BUILDKIT_VERSION: &str = "v0.23.2";

/// Label on every object a builder has: `rm` finds them by it, `build --builder` selects by it.
pub const BUILDER_LABEL: &str = "buildkit.kubectl.io/builder";
/// The label the default selector (`app=buildkitd`) finds.
pub const APP_LABEL: (&str, &str) = ("app", "buildkitd");
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kubectl-buildkit");

/// Who may build on the builder (RoleBinding subjects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    User(String),
    Group(String),
    ServiceAccount { namespace: String, name: String },
}

/// A toleration as `key[=value][:effect]` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    pub key: String,
    /// None: operator Exists (any value).
    pub value: Option<String>,
    /// None: every effect.
    pub effect: Option<String>,
}

/// Everything a builder is.
#[derive(Debug, Clone, PartialEq)]
pub struct BuilderSpec {
    pub name: String,
    pub namespace: String,
    pub replicas: i32,
    pub image: String,
    /// Rootless (the default) or privileged buildkitd.
    pub rootless: bool,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
    /// Size of each pod's cache volume claim; None: an emptyDir (lost with the pod).
    pub cache_size: Option<String>,
    pub storage_class: Option<String>,
    /// buildkitd also listens on 127.0.0.1:PORT for `--tunnel port-forward`.
    pub port_forward_port: u16,
    /// buildkitd.toml's text, put in a ConfigMap.
    pub config: Option<String>,
    /// Make the Role and RoleBinding.
    pub rbac: bool,
    pub subjects: Vec<Subject>,
}

impl BuilderSpec {
    /// A builder with every default: one rootless pod, emptyDir cache, port 1234.
    pub fn new(name: &str, namespace: &str) -> BuilderSpec {
        BuilderSpec {
            name: name.to_string(),
            namespace: namespace.to_string(),
            replicas: 1,
            image: default_image(true),
            rootless: true,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            requests: BTreeMap::new(),
            limits: BTreeMap::new(),
            cache_size: None,
            storage_class: None,
            port_forward_port: 1234,
            config: None,
            rbac: true,
            subjects: Vec::new(),
        }
    }

    /// The labels every object of this builder carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (BUILDER_LABEL.to_string(), self.name.clone()),
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        ])
    }

    /// The pods' selector: the default selector's label and the builder's.
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (APP_LABEL.0.to_string(), APP_LABEL.1.to_string()),
            (BUILDER_LABEL.to_string(), self.name.clone()),
        ])
    }

    /// `buildkit.kubectl.io/builder=NAME`: how `rm` and `build --builder` find it.
    pub fn label_selector(&self) -> String {
        builder_selector(&self.name)
    }

    pub fn config_map_name(&self) -> String {
        format!("{}-config", self.name)
    }

    pub fn role_name(&self) -> String {
        format!("kubectl-buildkit-{}", self.name)
    }

    /// The pod names the StatefulSet makes.
    pub fn pod_names(&self) -> Vec<String> {
        (0..self.replicas.max(0))
            .map(|i| format!("{}-{i}", self.name))
            .collect()
    }
}

pub fn builder_selector(name: &str) -> String {
    format!("{BUILDER_LABEL}={name}")
}

pub fn default_image(rootless: bool) -> String {
    if rootless {
        format!("moby/buildkit:{BUILDKIT_VERSION}-rootless")
    } else {
        format!("moby/buildkit:{BUILDKIT_VERSION}")
    }
}

fn is_label(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= max
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter().all(|&c| alnum(c) || c == b'-')
}

/// A builder name: a DNS-1123 label of at most 52 characters (a StatefulSet's limit:
/// its pods' controller-revision-hash label must fit in 63).
pub fn check_name(name: &str) -> Result<()> {
    if !is_label(name, 52) {
        bail!(
            "invalid builder name {name:?}: lowercase letters, digits and '-', starting and \
             ending with a letter or digit, at most 52 characters (e.g. buildkitd)"
        );
    }
    Ok(())
}

/// `K=V` (node selectors).
pub fn parse_key_value(flag: &str, s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{flag} {s:?}: expected KEY=VALUE, e.g. {flag} kubernetes.io/arch=amd64"),
    }
}

/// `cpu=1,memory=2Gi` (requests, limits): only cpu, memory and ephemeral-storage.
pub fn parse_resources(flag: &str, s: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = parse_key_value(flag, part.trim())?;
        if !["cpu", "memory", "ephemeral-storage"].contains(&k.as_str()) {
            bail!("{flag} {s:?}: unknown resource {k:?}; use cpu, memory or ephemeral-storage, e.g. {flag} cpu=1,memory=2Gi");
        }
        check_quantity(flag, &v)?;
        out.insert(k, v);
    }
    if out.is_empty() {
        bail!("{flag} needs at least one resource, e.g. {flag} cpu=1,memory=2Gi");
    }
    Ok(out)
}

/// A Kubernetes quantity: a decimal number with an optional suffix (m, k, M, G, Ki, Gi, ...).
pub fn check_quantity(flag: &str, v: &str) -> Result<()> {
    let digits = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(digits);
    let suffixes = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    if num.is_empty() || num.parse::<f64>().is_err() || !suffixes.contains(&suffix) {
        bail!("{flag}: {v:?} is not a quantity; use e.g. 500m, 2, 512Mi, 50Gi");
    }
    Ok(())
}

/// `key[=value][:effect]`, kubectl taint's syntax; effect NoSchedule, PreferNoSchedule
/// or NoExecute.
pub fn parse_toleration(s: &str) -> Result<Toleration> {
    let (kv, effect) = match s.rsplit_once(':') {
        Some((kv, e)) => (kv, Some(e)),
        None => (s, None),
    };
    if let Some(e) = effect {
        if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&e) {
            bail!(
                "--toleration {s:?}: effect {e:?} must be NoSchedule, PreferNoSchedule or \
                 NoExecute (e.g. --toleration dedicated=build:NoSchedule)"
            );
        }
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        bail!("--toleration {s:?}: expected KEY[=VALUE][:EFFECT], e.g. --toleration dedicated=build:NoSchedule");
    }
    Ok(Toleration {
        key: key.to_string(),
        value,
        effect: effect.map(str::to_string),
    })
}

/// `NAMESPACE:NAME` or `NAME` (then in `default_ns`), like kubectl create rolebinding.
pub fn parse_service_account(s: &str, default_ns: &str) -> Result<Subject> {
    let (ns, name) = match s.split_once(':') {
        Some((ns, name)) => (ns, name),
        None => (default_ns, s),
    };
    if ns.is_empty() || name.is_empty() {
        bail!("--bind-serviceaccount {s:?}: expected NAMESPACE:NAME or NAME, e.g. ci:builder");
    }
    Ok(Subject::ServiceAccount {
        namespace: ns.to_string(),
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("buildkitd").is_ok());
        assert!(check_name(&"a".repeat(52)).is_ok());
        for bad in ["", "A", "-a", "a-", "a.b", &"a".repeat(53)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tolerations() {
        let t = parse_toleration("dedicated=build:NoSchedule").unwrap();
        assert_eq!(
            t,
            Toleration {
                key: "dedicated".into(),
                value: Some("build".into()),
                effect: Some("NoSchedule".into())
            }
        );
        let t = parse_toleration("gpu").unwrap();
        assert_eq!((t.value, t.effect), (None, None));
        let t = parse_toleration("example.com/x:NoExecute").unwrap();
        assert_eq!(t.key, "example.com/x");
        assert!(parse_toleration("a=b:Never").is_err());
        assert!(parse_toleration("=b").is_err());
    }

    #[test]
    fn resources() {
        let r = parse_resources("--requests", "cpu=500m,memory=2Gi").unwrap();
        assert_eq!(r["cpu"], "500m");
        assert_eq!(r["memory"], "2Gi");
        assert!(parse_resources("--requests", "gpu=1").is_err());
        assert!(parse_resources("--limits", "cpu=lots").is_err());
        assert!(parse_resources("--limits", "").is_err());
        assert!(check_quantity("--cache-size", "50Gi").is_ok());
        assert!(check_quantity("--cache-size", "50GB").is_err());
    }

    #[test]
    fn subjects() {
        assert_eq!(
            parse_service_account("ci:builder", "bk").unwrap(),
            Subject::ServiceAccount {
                namespace: "ci".into(),
                name: "builder".into()
            }
        );
        assert_eq!(
            parse_service_account("builder", "bk").unwrap(),
            Subject::ServiceAccount {
                namespace: "bk".into(),
                name: "builder".into()
            }
        );
        assert!(parse_service_account("ci:", "bk").is_err());
        assert!(parse_key_value("--node-selector", "novalue").is_err());
    }
}
