//! Running the benchmark program (examples/bench) from a test and reading its table.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What one bench run printed.
pub struct BenchRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl BenchRun {
    /// Fail the test, with everything the bench printed, unless it exited 0.
    pub fn assert_ok(&self) {
        assert!(
            self.status.success(),
            "bench failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// Row `id`, checked for shape: seven cells, a finite number in "ours", and a
    /// result of PASS, MISS or —.
    pub fn row(&self, id: &str) -> Vec<String> {
        let row = self
            .rows()
            .into_iter()
            .find(|r| r[0] == id)
            .unwrap_or_else(|| panic!("row {id} missing from:\n{}\n{}", self.stdout, self.stderr));
        assert_eq!(row.len(), 7, "row {id} has {} columns: {row:?}", row.len());
        let ours = leading_number(&row[2])
            .unwrap_or_else(|| panic!("row {id}: ours {:?} is not a number", row[2]));
        assert!(ours.is_finite(), "row {id}: {ours}");
        assert!(
            ["PASS", "MISS", "—"].contains(&row[6].as_str()),
            "row {id}: result {:?}",
            row[6]
        );
        row
    }

    /// The table's rows (header and rule left out), each split into its cells.
    pub fn rows(&self) -> Vec<Vec<String>> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| id "))
            .map(|l| {
                l.trim_matches('|')
                    .split(" | ")
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .collect()
    }
}

/// The number a table cell starts with ("12.5 ms", "1.30x", "100.0%").
pub fn leading_number(cell: &str) -> Option<f64> {
    cell.split_whitespace()
        .next()?
        .trim_end_matches('x')
        .trim_end_matches('%')
        .parse()
        .ok()
}

/// Run the bench with `args` (plus `--no-build --bin-dir` of this test build), within
/// `limit`: past it the bench gets SIGTERM (it stops its helpers), then SIGKILL.
pub fn run_bench(args: &[&str], limit: Duration) -> BenchRun {
    run_bench_in(args, limit, None)
}

/// As [`run_bench`], with the bench's TMPDIR (and so its daemons' directories) in
/// `tmpdir` when given, for a [`super::leftovers`] check afterwards.
pub fn run_bench_in(args: &[&str], limit: Duration, tmpdir: Option<&std::path::Path>) -> BenchRun {
    let exe = super::example_binary("bench", &["examples/bench", "src"]);
    let bin_dir = super::standin_dir();
    let mut cmd = Command::new(exe);
    if let Some(t) = tmpdir {
        cmd.env("TMPDIR", t);
    }
    let mut child = cmd
        .args(args)
        .args(["--no-build", "--bin-dir"])
        .arg(&bin_dir)
        .stdin(Stdio::null())
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
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            // SIGTERM lets the bench stop its tunnels, daemons and kubectl helpers.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            panic!("the benchmark {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    BenchRun {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}
