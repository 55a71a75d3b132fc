//! `kubectl buildkit pods`: every matching pod, its eligibility and ring share, and
//! with a key the chosen pod and its fallbacks.

use std::collections::HashMap;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{KubeFlags, PodsArgs, PodsOutput};
use kubectl_buildkit::cluster::Cluster;
use kubectl_buildkit::output;
use kubectl_buildkit::process::Signals;
use kubectl_buildkit::selection::{self, PodView, Selection};

#[derive(Serialize)]
struct PodRow<'a> {
    #[serde(flatten)]
    pod: &'a PodView,
    share: Option<f64>,
}

#[derive(Serialize)]
struct PodsReport<'a> {
    namespace: &'a str,
    selector: &'a str,
    algorithm: &'a str,
    pods: Vec<PodRow<'a>>,
    key: Option<&'a str>,
    chosen: Option<&'a str>,
    order: &'a [String],
}

pub async fn run(kube: &KubeFlags, args: &PodsArgs) -> Result<i32> {
    // Every wait here is on the API server: SIGINT/SIGTERM end it, 130/143.
    let mut signals = Signals::install()?;
    let listed = signals
        .unless_interrupted(async {
            let cluster = Cluster::connect(&kube.options()).await?;
            let image = std::env::var("IMAGE").ok();
            let key =
                selection::default_key(args.select.hash_key.as_deref(), image.as_deref(), None);
            let sel = selection::select(&cluster, &args.select.options(), key).await?;
            anyhow::Ok((cluster, sel))
        })
        .await;
    let (cluster, sel) = match listed {
        Ok(listed) => listed?,
        Err(sig) => return Ok(sig.exit_code()),
    };
    print(&cluster, args, &sel)?;
    sel.require_eligible(&args.select.selector, &cluster.namespace)?;
    Ok(0)
}

fn print(cluster: &Cluster, args: &PodsArgs, sel: &Selection) -> Result<()> {
    let shares: HashMap<String, f64> = sel
        .ring
        .shares()
        .into_iter()
        .map(|s| (s.name, s.share))
        .collect();
    let rank: HashMap<&str, usize> = sel
        .order
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i + 1))
        .collect();
    let mut out = std::io::stdout().lock();
    let report = || PodsReport {
        namespace: &cluster.namespace,
        selector: &args.select.selector,
        algorithm: sel.ring.algorithm().name(),
        pods: sel
            .pods
            .iter()
            .map(|p| PodRow {
                pod: p,
                share: shares.get(&p.name).copied(),
            })
            .collect(),
        key: sel.key.as_deref(),
        chosen: sel.chosen(),
        order: &sel.order,
    };
    match args.output {
        PodsOutput::Json => return output::json(&mut out, &report()),
        PodsOutput::Yaml => return output::yaml(&mut out, &report()),
        PodsOutput::Name => {
            use std::io::Write;
            for p in &sel.pods {
                writeln!(out, "pod/{}", p.name)?;
            }
            return Ok(());
        }
        PodsOutput::Table | PodsOutput::Wide => {}
    }
    let wide = args.output == PodsOutput::Wide;
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut header = vec![
        "NAME", "READY", "STATUS", "RESTARTS", "AGE", "NODE", "SHARE",
    ];
    if sel.key.is_some() {
        header.push("ORDER");
    }
    if wide {
        header.extend(["IP", "CONTAINERS", "REASON"]);
    }
    let rows: Vec<Vec<String>> = sel
        .pods
        .iter()
        .map(|p| {
            let status = if p.reason.as_deref() == Some("Terminating") {
                "Terminating".to_string()
            } else {
                p.phase.clone()
            };
            let age = p
                .created
                .map(|c| output::human_age(now.as_second() - c.as_second()))
                .unwrap_or_else(|| "<unknown>".into());
            let mut row = vec![
                p.name.clone(),
                format!("{}/{}", p.ready_containers.0, p.ready_containers.1),
                status,
                p.restarts.to_string(),
                age,
                p.node.clone().unwrap_or_else(|| "<none>".into()),
                match shares.get(&p.name) {
                    Some(s) => output::percent(*s),
                    None => format!("- ({})", p.reason.as_deref().unwrap_or("not eligible")),
                },
            ];
            if sel.key.is_some() {
                row.push(match rank.get(p.name.as_str()) {
                    Some(1) => "1 (chosen)".to_string(),
                    Some(n) => n.to_string(),
                    None => "-".to_string(),
                });
            }
            if wide {
                row.push(p.ip.clone().unwrap_or_else(|| "<none>".into()));
                row.push(p.containers.join(","));
                row.push(p.reason.clone().unwrap_or_else(|| "<none>".into()));
            }
            row
        })
        .collect();
    output::table(&mut out, &header, &rows)?;
    if let (Some(key), Some(chosen)) = (&sel.key, sel.chosen()) {
        kubectl_buildkit::log::note(format!(
            "key {key:?} -> {chosen} ({} algorithm, namespace {})",
            sel.ring.algorithm(),
            cluster.namespace
        ));
    }
    Ok(())
}
