//! JSON the API server answers with: discovery documents, namespaces and pods
//! (built from k8s-openapi types so the shapes are the real ones).

use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Namespace, NamespaceStatus, Pod, PodCondition, PodIP,
    PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::state::PodView;

pub const IMAGE: &str = "moby/buildkit:rootless";
const IMAGE_ID: &str =
    "docker.io/moby/buildkit@sha256:4c2a4e4b5e6f0a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b";

pub fn time(t: SystemTime) -> Time {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "emulationMajor": "1",
        "emulationMinor": "32",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "31",
        "gitVersion": "v1.32.0",
        "gitCommit": "70d3cc986aa8221cd1dfb1121852688902d3bf53",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T17:58:59Z",
        "goVersion": "go1.23.3",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

pub fn api_groups() -> Value {
    crate::resources::group_list()
}

pub fn core_v1_resources() -> Value {
    let all = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let mut resources = json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace",
             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["ns"]},
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
             "verbs": all, "shortNames": ["po"], "categories": ["all"]},
            {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions",
             "verbs": ["create", "get"]},
            {"name": "pods/portforward", "singularName": "", "namespaced": true,
             "kind": "PodPortForwardOptions", "verbs": ["create", "get"]},
            {"name": "pods/status", "singularName": "", "namespaced": true, "kind": "Pod",
             "verbs": ["get", "patch", "update"]}
        ]
    });
    if let Some(list) = resources["resources"].as_array_mut() {
        list.extend(crate::resources::core_resources());
    }
    resources
}

pub fn namespace(name: &str, created: SystemTime) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            uid: Some(crate::state::object_uid("", name)),
            resource_version: Some("1".into()),
            creation_timestamp: Some(time(created)),
            labels: Some([("kubernetes.io/metadata.name".to_string(), name.to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(NamespaceStatus {
            phase: Some("Active".into()),
            ..NamespaceStatus::default()
        }),
    }
}

pub fn namespace_list(names: &[String], created: SystemTime) -> Value {
    json!({
        "kind": "NamespaceList",
        "apiVersion": "v1",
        "metadata": ListMeta { resource_version: Some("1".into()), ..ListMeta::default() },
        "items": names.iter().map(|n| namespace(n, created)).collect::<Vec<_>>(),
    })
}

fn condition(type_: &str, ok: bool, at: &Time) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        last_transition_time: Some(at.clone()),
        ..PodCondition::default()
    }
}

pub fn pod(p: &PodView) -> Pod {
    let c = &p.cfg;
    let created = time(p.created);
    let running = c.phase == "Running";
    let ready = c.ready && running;
    let state = match c.phase.as_str() {
        "Running" => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(created.clone()),
            }),
            ..ContainerState::default()
        },
        "Succeeded" | "Failed" => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: if c.phase == "Failed" { 1 } else { 0 },
                reason: Some(
                    if c.phase == "Failed" {
                        "Error"
                    } else {
                        "Completed"
                    }
                    .into(),
                ),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        },
        _ => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                ..ContainerStateWaiting::default()
            }),
            ..ContainerState::default()
        },
    };
    let containers = c
        .containers
        .iter()
        .map(|name| Container {
            name: name.clone(),
            image: Some(IMAGE.into()),
            args: (name == "buildkitd").then(|| {
                vec![
                    "--addr".into(),
                    "tcp://0.0.0.0:1234".into(),
                    "--oci-worker-no-process-sandbox".into(),
                ]
            }),
            ports: (name == "buildkitd").then(|| {
                vec![ContainerPort {
                    container_port: 1234,
                    name: Some("buildkitd".into()),
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                }]
            }),
            ..Container::default()
        })
        .collect();
    let statuses = c
        .containers
        .iter()
        .enumerate()
        .map(|(i, name)| ContainerStatus {
            name: name.clone(),
            image: IMAGE.into(),
            image_id: IMAGE_ID.into(),
            container_id: Some(format!("containerd://{}{:02x}", p.uid.replace('-', ""), i)),
            ready,
            started: Some(running),
            restart_count: c.restarts,
            state: Some(state.clone()),
            ..ContainerStatus::default()
        })
        .collect();
    let scheduled = !c.node.is_empty();
    Pod {
        metadata: ObjectMeta {
            name: Some(c.name.clone()),
            namespace: Some(c.namespace.clone()),
            uid: Some(p.uid.clone()),
            resource_version: Some("1".into()),
            creation_timestamp: Some(created.clone()),
            deletion_timestamp: c.terminating.then(|| time(SystemTime::now())),
            deletion_grace_period_seconds: c.terminating.then_some(30),
            labels: Some(c.labels.clone()),
            annotations: (!c.annotations.is_empty()).then(|| c.annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers,
            node_name: scheduled.then(|| c.node.clone()),
            restart_policy: Some("Always".into()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some(c.phase.clone()),
            conditions: Some(vec![
                condition("PodScheduled", scheduled, &created),
                condition("Initialized", true, &created),
                condition("ContainersReady", ready, &created),
                condition("Ready", ready, &created),
            ]),
            host_ip: scheduled.then(|| "172.18.0.2".into()),
            pod_ip: c.ip.clone(),
            pod_ips: c.ip.clone().map(|ip| vec![PodIP { ip }]),
            start_time: Some(created),
            container_statuses: Some(statuses),
            qos_class: Some("BestEffort".into()),
            ..PodStatus::default()
        }),
    }
}

pub fn pod_list(pods: &[PodView]) -> Value {
    json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": ListMeta { resource_version: Some("1".into()), ..ListMeta::default() },
        "items": pods.iter().map(pod).collect::<Vec<_>>(),
    })
}
