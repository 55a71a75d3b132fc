//! The benchmark (examples/bench/) in quick mode: it must finish and print every row
//! of its table with a number in the "ours" column. No timing is asserted: CI machines
//! vary, and the figures that matter come from `cargo run --release --example bench`
//! (see BENCHMARKS.md).

mod common;

use std::time::Duration;

use common::bench::{leading_number, run_bench};

/// Every row the benchmark prints, by id.
const ROWS: &[&str] = &[
    "dispatch.build",
    "dispatch.pods",
    "tput.exec",
    "tput.exec.ceiling",
    "tput.pf",
    "tput.pf.ceiling",
    "tput.direct",
    "cpu.exec",
    "cpu.pf",
    "rss.small",
    "rss.large",
    "rss.flat",
    "conc.time",
    "conc.tput",
    "ring.classic.10",
    "ring.classic.100",
    "ring.classic.1000",
    "ring.buildx.10",
    "ring.buildx.100",
    "ring.buildx.1000",
    "ring.rendezvous.10",
    "ring.rendezvous.100",
    "ring.rendezvous.1000",
    "ring.cli",
];

/// Rows compared with a peer: their peer and ratio columns must hold numbers too.
const WITH_PEER: &[&str] = &[
    "dispatch.build",
    "dispatch.pods",
    "tput.exec",
    "tput.exec.ceiling",
    "tput.pf",
    "tput.pf.ceiling",
    "cpu.exec",
    "cpu.pf",
    "rss.small",
    "rss.large",
    "conc.time",
    "conc.tput",
];

#[test]
fn quick_benchmark_prints_every_row_with_numbers() {
    let run = run_bench(&["--quick"], Duration::from_secs(900));
    run.assert_ok();
    let out = &run.stdout;
    for id in ROWS {
        let row = run.row(id);
        if WITH_PEER.contains(id) {
            assert!(
                leading_number(&row[3]).is_some(),
                "row {id}: peer {:?}",
                row[3]
            );
            assert!(
                leading_number(&row[4]).is_some(),
                "row {id}: ratio {:?}",
                row[4]
            );
        }
    }
    let rows = run.rows();
    assert_eq!(rows.len(), ROWS.len(), "unexpected rows in:\n{out}");
    assert!(out.contains("(quick mode)"), "{out}");
}
