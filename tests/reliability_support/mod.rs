//! Shared by the tests/reliability_*.rs suites: run the plugin with its own TMPDIR and
//! a marker in its environment, under a deadline, then prove nothing was left behind
//! (no socket directory in that TMPDIR, no process carrying the marker alive).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;

/// How long any failing invocation may take before we call it a hang.
pub const BOUND: Duration = Duration::from_secs(30);

/// One test's sandbox: HOME, a private TMPDIR for the plugin, and a unique marker
/// that every process we start (and their children) inherits.
pub struct Sandbox {
    pub home: Home,
    pub tmp: PathBuf,
    pub marker: String,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let home = Home::new();
        let tmp = home.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let marker = format!(
            "{}-{}-{:x}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        Sandbox { home, tmp, marker }
    }

    /// A build context with a Dockerfile.
    pub fn context(&self) -> PathBuf {
        let dir = self.home.path().join("ctx");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").unwrap();
        dir
    }

    /// The plugin against `sim` (or no KUBECONFIG), with TMPDIR and the marker set.
    pub fn plugin(&self, sim: Option<&Sim>) -> Command {
        let mut cmd = plugin(sim, &self.home);
        cmd.env("TMPDIR", &self.tmp)
            .env("RELIABILITY_MARKER", &self.marker)
            // Small payloads keep the suite fast; the load suite sets its own.
            .env("SIM_BUILDCTL_PAYLOAD", "65536");
        cmd
    }

    /// Run to completion under [`BOUND`]; a hang kills the process group and fails.
    pub fn run_bounded(&self, cmd: &mut Command) -> (Output, Duration) {
        run_bounded(cmd, BOUND)
    }

    /// Entries left in the plugin's TMPDIR.
    pub fn tmp_entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Live (non-zombie) processes carrying our marker: the plugin and its children.
    pub fn survivors(&self) -> Vec<(u32, String)> {
        marked_processes(&self.marker)
    }

    /// Nothing left: TMPDIR empty, no marked process alive (children get a moment to
    /// finish dying).
    #[track_caller]
    pub fn assert_clean(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut left = self.survivors();
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            left = self.survivors();
        }
        assert!(left.is_empty(), "{what}: processes left alive: {left:?}");
        let entries = self.tmp_entries();
        assert!(entries.is_empty(), "{what}: TMPDIR not empty: {entries:?}");
    }

    /// Assert a failure: the exit code, stderr needles, bounded time, nothing left.
    #[track_caller]
    pub fn expect_failure(
        &self,
        what: &str,
        cmd: &mut Command,
        code: i32,
        needles: &[&str],
    ) -> String {
        let (out, took) = self.run_bounded(cmd);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{what}: exit code\nstdout: {}\nstderr: {err}",
            stdout(&out)
        );
        for n in needles {
            assert!(err.contains(n), "{what}: stderr lacks {n:?}:\n{err}");
        }
        assert!(err.contains("error"), "{what}: no error line:\n{err}");
        assert!(took < BOUND, "{what}: took {took:?}");
        self.assert_clean(what);
        err
    }
}

/// Run `cmd` under the harness with deadline `limit`; also how long it took.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let out = kube_sim::harness::run_bounded(cmd, limit);
    let took = start.elapsed();
    if std::env::var_os("TEST_VERBOSE").is_some() {
        eprintln!("stdout: {}", String::from_utf8_lossy(&out.stdout));
        eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    (out, took)
}

/// Every live process whose environment holds RELIABILITY_MARKER=marker, as
/// (pid, command name). Zombies are dead: they only wait to be reaped.
pub fn marked_processes(marker: &str) -> Vec<(u32, String)> {
    let needle = format!("RELIABILITY_MARKER={marker}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            continue;
        }
        if is_alive(pid) {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push((pid, comm.trim().to_string()));
        }
    }
    found
}

/// Whether /proc/<pid> exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
    }
}

/// Directories in `dir` (the socket directories the plugin makes live there).
pub fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// Read stderr lines of a running child until one contains `needle` (or the stream
/// ends); the reader thread keeps everything it read, returned by the handle.
pub fn watch_stderr(
    child: &mut Child,
    needle: &'static str,
) -> (
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<String>,
) {
    use std::io::BufRead;
    let err = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut all = String::new();
        let mut sent = false;
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains(needle) {
                let _ = tx.send(());
                sent = true;
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (rx, handle)
}

/// Collect a running child's stderr in the background.
pub fn drain_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let err = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || String::from_utf8_lossy(&read_all(err)).into_owned())
}

fn read_all(mut r: impl std::io::Read) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v);
    v
}
