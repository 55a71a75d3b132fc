//! Kubernetes manifests of example/ as k8s-openapi types, strictly: a field the type
//! does not know (a typo, a wrong indentation) fails the parse.

use std::path::Path;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One parsed manifest.
#[derive(Debug)]
pub enum Manifest {
    Namespace(Box<Namespace>),
    Service(Box<Service>),
    StatefulSet(Box<StatefulSet>),
    Deployment(Box<Deployment>),
    Role(Box<Role>),
    RoleBinding(Box<RoleBinding>),
}

impl Manifest {
    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::Namespace(_) => "Namespace",
            Manifest::Service(_) => "Service",
            Manifest::StatefulSet(_) => "StatefulSet",
            Manifest::Deployment(_) => "Deployment",
            Manifest::Role(_) => "Role",
            Manifest::RoleBinding(_) => "RoleBinding",
        }
    }
}

/// Parse `doc` as `T`, and check that writing `T` back gives the same document: the
/// type understood every field.
fn strict<T: DeserializeOwned + Serialize>(path: &Path, doc: &serde_yaml::Value) -> Box<T> {
    let typed: T = serde_yaml::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{}: not a valid {:?}: {e}", path.display(), doc["kind"]));
    let original: serde_json::Value = serde_json::to_value(doc).unwrap();
    let back = serde_json::to_value(&typed).unwrap();
    let mut diffs = Vec::new();
    differences("", &original, &back, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{}: {} has fields its Kubernetes type does not know (or values it changes): {diffs:#?}",
        path.display(),
        doc["kind"].as_str().unwrap_or("?")
    );
    Box::new(typed)
}

/// Every document of a manifest file, as the kind it declares.
pub fn parse_file(path: &Path) -> Vec<Manifest> {
    super::documents(path)
        .iter()
        .map(|doc| {
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a document without kind", path.display()));
            match kind {
                "Namespace" => Manifest::Namespace(strict(path, doc)),
                "Service" => Manifest::Service(strict(path, doc)),
                "StatefulSet" => Manifest::StatefulSet(strict(path, doc)),
                "Deployment" => Manifest::Deployment(strict(path, doc)),
                "Role" => Manifest::Role(strict(path, doc)),
                "RoleBinding" => Manifest::RoleBinding(strict(path, doc)),
                other => panic!("{}: kind {other} is not checked here", path.display()),
            }
        })
        .collect()
}

/// Where `a` (as written) and `b` (as read back) differ, as JSON paths. What only the
/// read-back has (apiVersion and kind of embedded objects) is no difference.
fn differences(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value::{Array, Object};
    match (a, b) {
        (Object(x), Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let null = serde_json::Value::Null;
                let path = format!("{at}.{k}");
                differences(
                    &path,
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Array(x), Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(&format!("{at}[{i}]"), p, q, out);
            }
        }
        _ if a != b && !a.is_null() => out.push(format!("{at}: written {a}, read back {b}")),
        _ => {}
    }
}
