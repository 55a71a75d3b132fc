//! Server-side printing: the `Table` kubectl asks for (`Accept: ...;as=Table`) when it
//! prints pods for humans, with the apiserver's pod columns.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::api;
use crate::state::PodView;

/// kubectl's short human durations (`45s`, `5m30s`, `60m`, `3h`, `2d4h`, `40d`, `3y`).
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h, days) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        match h % 24 {
            0 => format!("{days}d"),
            r => format!("{days}d{r}h"),
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else {
        format!("{}y", days / 365)
    }
}

fn column(name: &str, type_: &str, priority: u8, description: &str) -> Value {
    let mut c = json!({"name": name, "type": type_, "format": "", "description": description, "priority": priority});
    if name == "Name" {
        c["format"] = json!("name");
    }
    c
}

pub fn pod_table(pods: &[PodView]) -> Value {
    let columns = vec![
        column("Name", "string", 0, "Name must be unique within a namespace."),
        column("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
        column("Status", "string", 0, "The aggregate status of the containers in this pod."),
        column("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
        column("Age", "string", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
        column("IP", "string", 1, "podIP address allocated to the pod."),
        column("Node", "string", 1, "NodeName is a request to schedule this pod onto a specific node."),
        column("Nominated Node", "string", 1, "nominatedNodeName is set when this pod preempts other pods on the node."),
        column("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
    ];
    let now = SystemTime::now();
    let rows: Vec<Value> = pods
        .iter()
        .map(|p| {
            let c = &p.cfg;
            let total = c.containers.len();
            let ready = if c.ready && c.phase == "Running" {
                total
            } else {
                0
            };
            let status = if c.terminating {
                "Terminating".to_string()
            } else {
                c.phase.clone()
            };
            let age = human_duration(now.duration_since(p.created).unwrap_or_default());
            let pod = api::pod(p);
            json!({
                "cells": [
                    c.name, format!("{ready}/{total}"), status, c.restarts.to_string(), age,
                    c.ip.clone().unwrap_or_else(|| "<none>".into()),
                    if c.node.is_empty() { "<none>".to_string() } else { c.node.clone() },
                    "<none>", "<none>"
                ],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": pod.metadata,
                }
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "1"},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s| human_duration(Duration::from_secs(s));
        assert_eq!(d(45), "45s");
        assert_eq!(d(330), "5m30s");
        assert_eq!(d(3600), "60m");
        assert_eq!(d(4 * 3600), "4h");
        assert_eq!(d(20 * 3600), "20h");
        assert_eq!(d(3 * 86400 + 3600), "3d1h");
        assert_eq!(d(40 * 86400), "40d");
    }
}
