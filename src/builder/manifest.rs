//! A builder's Kubernetes objects from its `BuilderSpec`: pure, no client calls.
//! ConfigMap (with --config), headless Service, Role and RoleBinding (unless --no-rbac),
//! and the StatefulSet, in the order they are applied.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    AppArmorProfile, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, ExecAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, Service,
    ServiceSpec, Toleration as K8sToleration, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject as K8sSubject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Serialize;

use super::spec::{BuilderSpec, Subject};

/// One object of a builder.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
// A handful per builder, made once: their sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum BuilderObject {
    ConfigMap(ConfigMap),
    Service(Service),
    Role(Role),
    RoleBinding(RoleBinding),
    StatefulSet(Box<StatefulSet>),
}

impl BuilderObject {
    /// `statefulset.apps/buildkitd`, as kubectl names objects.
    pub fn display_name(&self) -> String {
        let (kind, meta) = match self {
            BuilderObject::ConfigMap(o) => ("configmap", &o.metadata),
            BuilderObject::Service(o) => ("service", &o.metadata),
            BuilderObject::Role(o) => ("role.rbac.authorization.k8s.io", &o.metadata),
            BuilderObject::RoleBinding(o) => ("rolebinding.rbac.authorization.k8s.io", &o.metadata),
            BuilderObject::StatefulSet(o) => ("statefulset.apps", &o.metadata),
        };
        format!("{kind}/{}", meta.name.as_deref().unwrap_or_default())
    }
}

/// Where the ConfigMap's buildkitd.toml is mounted, and what `--config` names.
pub const CONFIG_DIR: &str = "/etc/buildkit";

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn meta(spec: &BuilderSpec, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(spec.namespace.clone()),
        labels: Some(spec.labels()),
        ..ObjectMeta::default()
    }
}

fn quantities(m: &BTreeMap<String, String>) -> Option<BTreeMap<String, Quantity>> {
    (!m.is_empty()).then(|| {
        m.iter()
            .map(|(k, v)| (k.clone(), Quantity(v.clone())))
            .collect()
    })
}

/// A short stable digest of the config's text: a pod-template annotation, so a changed
/// buildkitd.toml restarts the pods (a ConfigMap change alone does not).
fn config_digest(text: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every object of the builder, in apply order (the StatefulSet last).
pub fn objects(spec: &BuilderSpec) -> Vec<BuilderObject> {
    let mut out = Vec::new();
    if let Some(text) = &spec.config {
        out.push(BuilderObject::ConfigMap(ConfigMap {
            metadata: meta(spec, &spec.config_map_name()),
            data: Some(BTreeMap::from([(
                "buildkitd.toml".to_string(),
                text.clone(),
            )])),
            ..ConfigMap::default()
        }));
    }
    out.push(BuilderObject::Service(service(spec)));
    if spec.rbac {
        out.push(BuilderObject::Role(role(spec)));
        if !spec.subjects.is_empty() {
            out.push(BuilderObject::RoleBinding(role_binding(spec)));
        }
    }
    out.push(BuilderObject::StatefulSet(Box::new(stateful_set(spec))));
    out
}

/// Headless, no ports: stable pod DNS names only; the plugin reaches buildkitd through
/// the API server, never over the cluster network.
fn service(spec: &BuilderSpec) -> Service {
    Service {
        metadata: meta(spec, &spec.name),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(spec.selector()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn role(spec: &BuilderSpec) -> Role {
    let rule = |resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(strings(&[""])),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    };
    Role {
        metadata: meta(spec, &spec.role_name()),
        rules: Some(vec![
            // Every command lists the pods; --pod gets one.
            rule(&["pods"], &["get", "list"]),
            // --tunnel exec (the default): buildctl dial-stdio in the pod.
            rule(&["pods/exec"], &["create"]),
            // --tunnel port-forward.
            rule(&["pods/portforward"], &["create"]),
        ]),
    }
}

fn role_binding(spec: &BuilderSpec) -> RoleBinding {
    let subjects = spec
        .subjects
        .iter()
        .map(|s| match s {
            Subject::User(name) => K8sSubject {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "User".into(),
                name: name.clone(),
                namespace: None,
            },
            Subject::Group(name) => K8sSubject {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Group".into(),
                name: name.clone(),
                namespace: None,
            },
            Subject::ServiceAccount { namespace, name } => K8sSubject {
                api_group: None,
                kind: "ServiceAccount".into(),
                name: name.clone(),
                namespace: Some(namespace.clone()),
            },
        })
        .collect();
    RoleBinding {
        metadata: meta(spec, &spec.role_name()),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: spec.role_name(),
        },
        subjects: Some(subjects),
    }
}

fn probe(initial_delay: i32, period: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(strings(&["buildctl", "debug", "workers"])),
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

fn container(spec: &BuilderSpec) -> Container {
    let (socket, cache_dir) = if spec.rootless {
        (
            "unix:///run/user/1000/buildkit/buildkitd.sock",
            "/home/user/.local/share/buildkit",
        )
    } else {
        ("unix:///run/buildkit/buildkitd.sock", "/var/lib/buildkit")
    };
    // The socket for --tunnel exec (the image's BUILDKIT_HOST, so `buildctl dial-stdio`
    // and the probes find it), and the pod's loopback for --tunnel port-forward.
    let mut args = vec![
        "--addr".to_string(),
        socket.to_string(),
        "--addr".to_string(),
        format!("tcp://127.0.0.1:{}", spec.port_forward_port),
    ];
    if spec.rootless {
        // Rootless in an unprivileged container: no nested PID namespace.
        args.push("--oci-worker-no-process-sandbox".into());
    }
    let mut mounts = vec![VolumeMount {
        name: "cache".into(),
        mount_path: cache_dir.into(),
        ..VolumeMount::default()
    }];
    if spec.config.is_some() {
        args.push("--config".into());
        args.push(format!("{CONFIG_DIR}/buildkitd.toml"));
        mounts.push(VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let security = if spec.rootless {
        // User namespaces and mounts need no seccomp or AppArmor profile, but no
        // privileges either.
        SecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "Unconfined".into(),
                ..SeccompProfile::default()
            }),
            app_armor_profile: Some(AppArmorProfile {
                type_: "Unconfined".into(),
                ..AppArmorProfile::default()
            }),
            run_as_user: Some(1000),
            run_as_group: Some(1000),
            ..SecurityContext::default()
        }
    } else {
        SecurityContext {
            privileged: Some(true),
            ..SecurityContext::default()
        }
    };
    let resources =
        (!spec.requests.is_empty() || !spec.limits.is_empty()).then(|| ResourceRequirements {
            requests: quantities(&spec.requests),
            limits: quantities(&spec.limits),
            ..ResourceRequirements::default()
        });
    Container {
        name: "buildkitd".into(),
        image: Some(spec.image.clone()),
        args: Some(args),
        ports: Some(vec![ContainerPort {
            name: Some("buildkitd".into()),
            container_port: i32::from(spec.port_forward_port),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(probe(2, 5)),
        liveness_probe: Some(probe(5, 30)),
        security_context: Some(security),
        resources,
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

fn stateful_set(spec: &BuilderSpec) -> StatefulSet {
    let mut volumes = Vec::new();
    if spec.cache_size.is_none() {
        volumes.push(Volume {
            name: "cache".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    if spec.config.is_some() {
        volumes.push(Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: spec.config_map_name(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let claims = spec.cache_size.as_ref().map(|size| {
        vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("cache".into()),
                labels: Some(spec.labels()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(strings(&["ReadWriteOnce"])),
                storage_class_name: spec.storage_class.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(size.clone()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }]
    });
    let mut annotations = BTreeMap::from([(
        "kubectl.kubernetes.io/default-container".to_string(),
        "buildkitd".to_string(),
    )]);
    if let Some(text) = &spec.config {
        annotations.insert("buildkit.kubectl.io/config-md5".into(), config_digest(text));
    }
    let tolerations: Vec<K8sToleration> = spec
        .tolerations
        .iter()
        .map(|t| K8sToleration {
            key: Some(t.key.clone()),
            operator: Some(if t.value.is_some() { "Equal" } else { "Exists" }.into()),
            value: t.value.clone(),
            effect: t.effect.clone(),
            ..K8sToleration::default()
        })
        .collect();
    let mut pod_labels = spec.selector();
    pod_labels.extend(spec.labels());
    StatefulSet {
        metadata: meta(spec, &spec.name),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(spec.name.clone()),
            // The pods do not depend on each other: start and replace them together.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(spec.selector()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container(spec)],
                    node_selector: (!spec.node_selector.is_empty())
                        .then(|| spec.node_selector.clone()),
                    tolerations: (!tolerations.is_empty()).then_some(tolerations),
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::spec::Toleration;

    fn sts(objs: &[BuilderObject]) -> &StatefulSet {
        objs.iter()
            .find_map(|o| match o {
                BuilderObject::StatefulSet(s) => Some(s),
                _ => None,
            })
            .expect("a StatefulSet")
    }

    fn pod_spec(s: &StatefulSet) -> &PodSpec {
        s.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    #[test]
    fn defaults_are_one_rootless_pod_with_rbac_and_no_binding() {
        let spec = BuilderSpec::new("buildkitd", "bk");
        let objs = objects(&spec);
        let names: Vec<String> = objs.iter().map(BuilderObject::display_name).collect();
        assert_eq!(
            names,
            [
                "service/buildkitd",
                "role.rbac.authorization.k8s.io/kubectl-buildkit-buildkitd",
                "statefulset.apps/buildkitd"
            ]
        );
        let s = sts(&objs);
        let ss = s.spec.as_ref().unwrap();
        assert_eq!(ss.replicas, Some(1));
        assert_eq!(
            ss.selector.match_labels.as_ref().unwrap()["app"],
            "buildkitd"
        );
        let c = &pod_spec(s).containers[0];
        assert_eq!(c.image.as_deref(), Some("moby/buildkit:v0.23.2-rootless"));
        assert!(c
            .args
            .as_ref()
            .unwrap()
            .contains(&"tcp://127.0.0.1:1234".to_string()));
        assert_eq!(c.security_context.as_ref().unwrap().run_as_user, Some(1000));
        assert!(ss.volume_claim_templates.is_none());
        let vols = pod_spec(s).volumes.as_ref().unwrap();
        assert!(vols[0].empty_dir.is_some(), "cache-size 0 is an emptyDir");
        // The pods carry what the default selector and --builder find.
        let labels = ss
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(labels["app"], "buildkitd");
        assert_eq!(labels["buildkit.kubectl.io/builder"], "buildkitd");
    }

    #[test]
    fn every_flag_lands_where_kubernetes_reads_it() {
        let mut spec = BuilderSpec::new("fast", "ci");
        spec.replicas = 4;
        spec.rootless = false;
        spec.image = "reg.example.com/buildkit:v1".into();
        spec.node_selector = BTreeMap::from([("pool".into(), "build".into())]);
        spec.tolerations = vec![Toleration {
            key: "dedicated".into(),
            value: Some("build".into()),
            effect: Some("NoSchedule".into()),
        }];
        spec.requests = BTreeMap::from([("cpu".into(), "2".into())]);
        spec.limits = BTreeMap::from([("memory".into(), "8Gi".into())]);
        spec.cache_size = Some("100Gi".into());
        spec.storage_class = Some("fast-ssd".into());
        spec.port_forward_port = 4321;
        spec.config = Some("[registry.\"docker.io\"]\nmirrors = [\"mirror.example.com\"]\n".into());
        spec.subjects = vec![
            Subject::Group("devs".into()),
            Subject::ServiceAccount {
                namespace: "ci".into(),
                name: "runner".into(),
            },
        ];
        let objs = objects(&spec);
        assert!(
            matches!(objs[0], BuilderObject::ConfigMap(_)),
            "config first"
        );
        let s = sts(&objs);
        let ps = pod_spec(s);
        let c = &ps.containers[0];
        assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
        let args = c.args.as_ref().unwrap();
        assert!(args.contains(&"tcp://127.0.0.1:4321".to_string()));
        assert!(!args.contains(&"--oci-worker-no-process-sandbox".to_string()));
        assert!(args.ends_with(&[
            "--config".to_string(),
            "/etc/buildkit/buildkitd.toml".to_string()
        ]));
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 4321);
        let res = c.resources.as_ref().unwrap();
        assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "2");
        assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "8Gi");
        assert_eq!(ps.node_selector.as_ref().unwrap()["pool"], "build");
        let t = &ps.tolerations.as_ref().unwrap()[0];
        assert_eq!(
            (t.operator.as_deref(), t.effect.as_deref()),
            (Some("Equal"), Some("NoSchedule"))
        );
        let claim = &s
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .as_ref()
            .unwrap()[0];
        let cs = claim.spec.as_ref().unwrap();
        assert_eq!(cs.storage_class_name.as_deref(), Some("fast-ssd"));
        assert_eq!(
            cs.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
            "100Gi"
        );
        assert!(ps
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .all(|v| v.name != "cache"));
        let binding = objs
            .iter()
            .find_map(|o| match o {
                BuilderObject::RoleBinding(b) => Some(b),
                _ => None,
            })
            .unwrap();
        let subjects = binding.subjects.as_ref().unwrap();
        assert_eq!(subjects[0].kind, "Group");
        assert_eq!(subjects[1].namespace.as_deref(), Some("ci"));
        assert_eq!(binding.role_ref.name, "kubectl-buildkit-fast");
    }

    #[test]
    fn no_rbac_and_no_config_make_neither() {
        let mut spec = BuilderSpec::new("b", "ns");
        spec.rbac = false;
        spec.subjects = vec![Subject::User("alice".into())];
        let objs = objects(&spec);
        assert_eq!(objs.len(), 2);
        assert!(objs.iter().all(|o| !matches!(
            o,
            BuilderObject::Role(_) | BuilderObject::RoleBinding(_) | BuilderObject::ConfigMap(_)
        )));
    }

    #[test]
    fn a_changed_config_changes_the_pod_template() {
        let mut a = BuilderSpec::new("b", "ns");
        a.config = Some("debug = true\n".into());
        let mut b = a.clone();
        b.config = Some("debug = false\n".into());
        let (oa, ob) = (objects(&a), objects(&b));
        let ta = &sts(&oa).spec.as_ref().unwrap().template;
        let tb = &sts(&ob).spec.as_ref().unwrap().template;
        assert_ne!(ta, tb);
    }
}
