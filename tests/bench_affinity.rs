//! The benchmark's affinity section on its smallest workload (2 real-BuildKit pods,
//! 1 image, 2 builds per strategy): it must run to the end on real daemons and print
//! every affinity row, well formed. The figures themselves are the benchmark's job
//! (BENCHMARKS.md); only what cannot vary is asserted: a hashed rebuild finds its
//! cache on the pod it built on.

mod common;

use std::time::Duration;

use common::bench::{leading_number, run_bench_in};

const ROWS: &[&str] = &[
    "affinity.hits.classic",
    "affinity.wall.classic",
    "affinity.bytes.classic",
    "affinity.scale.classic",
    "affinity.scale.classic.keys",
    "affinity.hits.rendezvous",
    "affinity.wall.rendezvous",
    "affinity.bytes.rendezvous",
    "affinity.scale.rendezvous",
    "affinity.scale.rendezvous.keys",
    "affinity.hits.round_robin",
    "affinity.wall.round_robin",
];

#[test]
fn the_affinity_section_runs_on_real_buildkit_and_prints_its_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_bench_in(
        &["--tiny", "--only", "affinity"],
        Duration::from_secs(600),
        Some(tmp.path()),
    );
    if !run.status.success() && run.stderr.contains("real BuildKit fixture unavailable") {
        let why = run
            .stderr
            .lines()
            .find(|l| l.contains("unavailable"))
            .unwrap_or_default()
            .to_string();
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "CI=true and the real BuildKit cannot run here: {why}"
        );
        eprintln!("!!!!! SKIPPED: the affinity benchmark needs the real BuildKit: {why}");
        return;
    }
    run.assert_ok();
    let (out, err) = (&run.stdout, &run.stderr);
    for id in ROWS {
        let row = run.row(id);
        let peer = leading_number(&row[3])
            .unwrap_or_else(|| panic!("row {id}: peer {:?} is not a number", row[3]));
        assert!(peer.is_finite() && peer >= 0.0, "row {id}: peer {peer}");
    }
    let rows = run.rows();
    assert_eq!(rows.len(), ROWS.len(), "unexpected rows in:\n{out}");
    // One image, built twice on the pod its name hashes to: the second build must find
    // the first one's cache (the daemon's own CACHED flag), whatever the timings.
    for id in ["affinity.hits.classic", "affinity.hits.rendezvous"] {
        let row = rows.iter().find(|r| r[0] == id).unwrap();
        assert_eq!(row[2], "100.0%", "{id}: {row:?}\n{err}");
    }
    assert!(out.contains("bench: 12 rows"), "{out}");
    // The section started and stopped its own daemons: none of them, nor their
    // directories, outlive it.
    let left = common::leftovers(tmp.path());
    assert!(left.is_empty(), "the affinity bench left behind: {left:?}");
}
