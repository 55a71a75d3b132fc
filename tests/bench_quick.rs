//! The benchmark (examples/bench/) in quick mode: it must finish and print every row
//! of its table with a number in the "ours" column. No timing is asserted: CI machines
//! vary, and the figures that matter come from `cargo run --release --example bench`
//! (see BENCHMARKS.md).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn leading_number(cell: &str) -> Option<f64> {
    cell.split_whitespace()
        .next()?
        .trim_end_matches('x')
        .parse()
        .ok()
}

#[test]
fn quick_benchmark_prints_every_row_with_numbers() {
    let exe = common::example_binary("bench", &["examples/bench", "src"]);
    // The plugin binary this test was built with, and the stand-ins next to it.
    let bin_dir = common::standin_dir();
    let mut child = Command::new(exe)
        .args(["--quick", "--no-build", "--bin-dir"])
        .arg(&bin_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bench starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).ok();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).ok();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(900);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            // SIGTERM lets the bench stop its tunnels and kubectl helpers.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            panic!("the quick benchmark did not finish within 15 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = out_reader.join().unwrap();
    let err = err_reader.join().unwrap();
    assert!(
        status.success(),
        "bench failed ({status}):\nstdout: {out}\nstderr: {err}"
    );

    let rows: Vec<Vec<String>> = out
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| id "))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    for id in ROWS {
        let row = rows
            .iter()
            .find(|r| r[0] == *id)
            .unwrap_or_else(|| panic!("row {id} missing from:\n{out}"));
        assert_eq!(row.len(), 7, "row {id} has {} columns: {row:?}", row.len());
        let ours = leading_number(&row[2])
            .unwrap_or_else(|| panic!("row {id}: ours {:?} is not a number", row[2]));
        assert!(ours.is_finite(), "row {id}: {ours}");
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
        assert!(
            ["PASS", "MISS", "—"].contains(&row[6].as_str()),
            "row {id}: result {:?}",
            row[6]
        );
    }
    assert_eq!(rows.len(), ROWS.len(), "unexpected rows in:\n{out}");
    assert!(out.contains("(quick mode)"), "{out}");
}
