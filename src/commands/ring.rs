//! `kubectl buildkit ring`: how keys map to pods, each pod's share, and what a scale
//! change would move. Pods come from the cluster or, offline, from --pods/--pods-file.

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cli::{KubeFlags, RingArgs, RingOutput};
use kubectl_buildkit::cluster::Cluster;
use kubectl_buildkit::output;
use kubectl_buildkit::process::Signals;
use kubectl_buildkit::ring::{moved_share, PodShare, Ring};
use kubectl_buildkit::selection;

#[derive(Serialize)]
struct KeyRow<'a> {
    key: &'a str,
    pod: &'a str,
    order: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_after: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    moved: Option<bool>,
}

#[derive(Serialize)]
struct RingReport<'a> {
    algorithm: &'a str,
    pods: Vec<PodShare>,
    keys: Vec<KeyRow<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pods_after: Option<Vec<PodShare>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    moved_share: Option<f64>,
}

/// --pods: comma-separated names, blanks around them and empty items ignored.
fn pods_from_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// --pods-file: one name a line, blank lines ignored; `kubectl get pods -o name`
/// prints pod/NAME, so a `pod/` prefix is dropped (a bare `pod/` names nothing).
fn pods_from_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim())
        .map(|l| l.strip_prefix("pod/").unwrap_or(l).trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Pod names from --pods or --pods-file, or None to ask the cluster.
fn offline_pods(args: &RingArgs) -> Result<Option<Vec<String>>> {
    let names: Vec<String> = if let Some(list) = &args.pods {
        pods_from_list(list)
    } else if let Some(path) = &args.pods_file {
        let mut text = String::new();
        if path.as_os_str() == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading pod names from stdin")?;
        } else {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --pods-file {}", path.display()))?;
        }
        pods_from_lines(&text)
    } else {
        return Ok(None);
    };
    if names.is_empty() {
        bail!(
            "{} names no pods: give at least one pod name (comma-separated, or one a line)",
            if args.pods.is_some() {
                "--pods"
            } else {
                "--pods-file"
            }
        );
    }
    Ok(Some(names))
}

pub async fn run(kube: &KubeFlags, args: &RingArgs) -> Result<i32> {
    let pods = match offline_pods(args)? {
        Some(p) => p,
        None => {
            // The waits are on the API server: SIGINT/SIGTERM end them, 130/143.
            let mut signals = Signals::install()?;
            let listed = signals
                .unless_interrupted(async {
                    let cluster = Cluster::connect(&kube.options()).await?;
                    let sel = selection::select(&cluster, &args.select.options(), None).await?;
                    sel.require_eligible(&args.select.selector, &cluster.namespace)?;
                    anyhow::Ok(sel.ring.pods().to_vec())
                })
                .await;
            match listed {
                Ok(pods) => pods?,
                Err(sig) => return Ok(sig.exit_code()),
            }
        }
    };
    let mut keys: Vec<&str> = args.keys.iter().map(String::as_str).collect();
    if let Some(k) = &args.select.hash_key {
        keys.insert(0, k);
    }
    let before = Ring::new(args.select.algorithm.into(), &pods);
    let after = if args.add.is_empty() && args.remove.is_empty() {
        None
    } else {
        let mut next: Vec<String> = before.pods().to_vec();
        for r in &args.remove {
            if !next.contains(r) {
                bail!(
                    "--remove {r}: no such pod in the ring (pods: {})",
                    before.pods().join(", ")
                );
            }
            next.retain(|p| p != r);
        }
        for a in &args.add {
            if before.pods().contains(a) {
                bail!("--add {a}: the pod is already in the ring");
            }
            next.push(a.clone());
        }
        if next.is_empty() {
            bail!("--remove takes every pod out of the ring: keep at least one");
        }
        Some(Ring::new(args.select.algorithm.into(), &next))
    };
    let rows: Vec<KeyRow> = keys
        .iter()
        .map(|k| {
            let pod = before.pick(k).expect("ring is not empty");
            let pod_after = after
                .as_ref()
                .map(|r| r.pick(k).expect("ring is not empty"));
            KeyRow {
                key: k,
                pod,
                // The table shows the chosen pod and three fallbacks: don't rank 1,000.
                order: if args.output == RingOutput::Table {
                    before.order_prefix(k, 4)
                } else {
                    before.order(k)
                },
                pod_after,
                moved: pod_after.map(|p| p != pod),
            }
        })
        .collect();
    let report = RingReport {
        algorithm: before.algorithm().name(),
        pods: before.shares(),
        keys: rows,
        pods_after: after.as_ref().map(Ring::shares),
        moved_share: after.as_ref().map(|a| moved_share(&before, a)),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        RingOutput::Json => output::json(&mut out, &report)?,
        RingOutput::Yaml => output::yaml(&mut out, &report)?,
        RingOutput::Table => print_table(&mut out, &report, args)?,
    }
    out.flush()?;
    Ok(0)
}

fn print_table<W: Write>(out: &mut W, r: &RingReport, args: &RingArgs) -> Result<()> {
    let pods_rows: Vec<Vec<String>> = r
        .pods
        .iter()
        .map(|p| {
            let after = r.pods_after.as_ref().map(|a| {
                a.iter()
                    .find(|x| x.name == p.name)
                    .map(|x| output::percent(x.share))
            });
            let mut row = vec![
                p.name.clone(),
                output::percent(p.share),
                p.points.to_string(),
            ];
            if let Some(a) = after {
                row.push(a.unwrap_or_else(|| "removed".into()));
            }
            row
        })
        .chain(
            r.pods_after
                .iter()
                .flatten()
                .filter(|a| !r.pods.iter().any(|p| p.name == a.name))
                .map(|a| {
                    vec![
                        a.name.clone(),
                        "added".into(),
                        a.points.to_string(),
                        output::percent(a.share),
                    ]
                }),
        )
        .collect();
    let mut header = vec!["POD", "SHARE", "POINTS"];
    if r.pods_after.is_some() {
        header.push("SHARE AFTER");
    }
    writeln!(out, "algorithm: {}", r.algorithm)?;
    output::table(out, &header, &pods_rows)?;
    if !r.keys.is_empty() {
        writeln!(out)?;
        let mut header = vec!["KEY", "POD"];
        if r.moved_share.is_some() {
            header.extend(["AFTER", "MOVED"]);
        }
        header.push("FALLBACK");
        let rows: Vec<Vec<String>> = r
            .keys
            .iter()
            .map(|k| {
                let mut row = vec![k.key.to_string(), k.pod.to_string()];
                if let (Some(a), Some(m)) = (k.pod_after, k.moved) {
                    row.push(a.to_string());
                    row.push(if m { "yes".into() } else { "no".into() });
                }
                let rest: Vec<&str> = k.order.iter().skip(1).take(3).copied().collect();
                let more = r.pods.len().saturating_sub(4);
                let mut fb = if rest.is_empty() {
                    "-".to_string()
                } else {
                    rest.join(", ")
                };
                if more > 0 {
                    fb.push_str(&format!(", ... ({more} more)"));
                }
                row.push(fb);
                row
            })
            .collect();
        output::table(out, &header, &rows)?;
    }
    if let Some(m) = r.moved_share {
        let mut change = Vec::new();
        if !args.add.is_empty() {
            change.push(format!("adding {}", args.add.join(", ")));
        }
        if !args.remove.is_empty() {
            change.push(format!("removing {}", args.remove.join(", ")));
        }
        writeln!(out)?;
        writeln!(
            out,
            "moved: {} of the hash space changes pod when {}",
            output::percent(m),
            change.join(" and ")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lists_and_files() {
        assert_eq!(pods_from_list("a,b,c"), ["a", "b", "c"]);
        assert_eq!(pods_from_list(" a , ,b,,"), ["a", "b"]);
        assert!(pods_from_list(" , ,").is_empty());
        assert_eq!(
            pods_from_lines("pod/buildkitd-0\r\n\n  buildkitd-1  \n\t\npod/buildkitd-2"),
            ["buildkitd-0", "buildkitd-1", "buildkitd-2"]
        );
        // A bare `pod/` (or `pod/` and blanks) names no pod: it is not an empty name.
        assert!(pods_from_lines("pod/\n pod/  \n\n").is_empty());
    }

    /// A pod name as Kubernetes allows it (a DNS subdomain).
    const NAME: &str = "[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?";

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary input: no panic, and every name read is non-empty, trimmed, and
        /// free of the separator.
        #[test]
        fn never_panics_and_names_are_clean(
            text in "\\PC{0,80}|[a ,/\r\n\tpod]{0,40}|([ \t]{0,2}(pod/)?[ \t]{0,2}[a-z0-9,/]{0,3}[ \t]{0,2}\r?\n){0,6}",
        ) {
            for n in pods_from_list(&text) {
                prop_assert!(!n.is_empty() && n.trim() == n && !n.contains(','), "{:?} from {:?}", n, text);
            }
            for n in pods_from_lines(&text) {
                prop_assert!(!n.is_empty() && n.trim() == n && !n.contains('\n'), "{:?} from {:?}", n, text);
            }
        }

        /// Valid names round-trip through --pods, whatever blanks and empty items
        /// surround them.
        #[test]
        fn a_pod_list_round_trips(
            names in prop::collection::vec(NAME, 0..12),
            pads in prop::collection::vec(("[ \t]{0,2}", "[ \t]{0,2}", any::<bool>()), 12),
        ) {
            let mut items = Vec::new();
            for (n, (before, after, empty)) in names.iter().zip(&pads) {
                if *empty {
                    items.push(before.clone());
                }
                items.push(format!("{before}{n}{after}"));
            }
            prop_assert_eq!(pods_from_list(&items.join(",")), names);
        }

        /// Valid names round-trip through --pods-file: one a line, with or without
        /// `pod/`, blank lines and CRLF ignored.
        #[test]
        fn a_pods_file_round_trips(
            names in prop::collection::vec(NAME, 0..12),
            shapes in prop::collection::vec((any::<bool>(), "[ \t]{0,2}", "(\r?\n[ \t]*){0,2}"), 12),
            crlf in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut text = String::new();
            for (n, (prefixed, pad, blank)) in names.iter().zip(&shapes) {
                let prefix = if *prefixed { "pod/" } else { "" };
                text.push_str(&format!("{pad}{prefix}{n}{pad}{eol}{blank}"));
            }
            prop_assert_eq!(pods_from_lines(&text), names.clone());
            // What `kubectl get pods -o name` prints reads back as the names.
            let kubectl: String = names.iter().map(|n| format!("pod/{n}\n")).collect();
            prop_assert_eq!(pods_from_lines(&kubectl), names);
        }
    }
}
