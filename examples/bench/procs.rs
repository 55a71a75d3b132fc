//! Child processes with deadlines, long-lived helpers that are always stopped, and
//! the figures we read from /proc.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Run to completion within `limit`; the wall time covers spawn to exit. stderr goes
/// through a temp file so a timeout can still say what the command printed.
pub async fn run_timed(
    cmd: &mut Command,
    what: &str,
    limit: Duration,
) -> Result<(Duration, Output)> {
    let err_file = tempfile::NamedTempFile::new()?;
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::from(err_file.reopen()?));
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(r) => r.with_context(|| format!("waiting for {what}"))?,
        // Dropping the future drops the child: kill_on_drop ends it.
        Err(_) => bail!(
            "{what} did not finish within {limit:?}; stderr so far: {}",
            std::fs::read_to_string(err_file.path())
                .unwrap_or_default()
                .trim()
        ),
    };
    let elapsed = start.elapsed();
    let mut out = out;
    out.stderr = std::fs::read(err_file.path()).unwrap_or_default();
    Ok((elapsed, out))
}

/// As [`run_timed`], and fail unless it exits 0.
pub async fn run_ok(cmd: &mut Command, what: &str, limit: Duration) -> Result<(Duration, Output)> {
    let (t, out) = run_timed(cmd, what, limit).await?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((t, out))
}

/// A long-lived child (a tunnel, kubectl port-forward, kubectl exec): stopped with
/// SIGTERM (then SIGKILL) when dropped, so nothing outlives the benchmark.
pub struct Helper {
    pub child: Child,
    pub name: String,
    stderr_file: tempfile::NamedTempFile,
}

impl Helper {
    /// Start `cmd` with piped stdout and stderr kept in a temp file.
    pub fn spawn(cmd: &mut Command, name: &str) -> Result<Helper> {
        let stderr_file = tempfile::NamedTempFile::new()?;
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_file.reopen()?));
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Helper {
            child,
            name: name.to_string(),
            stderr_file,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_file.path()).unwrap_or_default()
    }

    /// Read stdout lines until `pick` accepts one (within `limit`).
    pub async fn wait_line<T>(
        &mut self,
        limit: Duration,
        pick: impl Fn(&str) -> Option<T>,
    ) -> Result<T> {
        let stdout = self.child.stdout.take().context("stdout already taken")?;
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(limit, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(v) = pick(line.trim()) {
                    return Some(v);
                }
            }
            None
        })
        .await;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        match found {
            Ok(Some(v)) => Ok(v),
            Ok(None) => bail!(
                "{} ended without the expected line; stderr: {}",
                self.name,
                self.stderr().trim()
            ),
            Err(_) => bail!(
                "{} printed no expected line within {limit:?}; stderr: {}",
                self.name,
                self.stderr().trim()
            ),
        }
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL.
    pub async fn stop(mut self) -> Option<i32> {
        terminate(&mut self.child).await
    }
}

async fn terminate(child: &mut Child) -> Option<i32> {
    if let Ok(Some(st)) = child.try_wait() {
        return st.code();
    }
    if let Some(pid) = child.id() {
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(Ok(st)) => st.code(),
        _ => {
            let _ = child.kill().await;
            None
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Normal paths call stop(); this covers errors and panics.
        if let Ok(None) = self.child.try_wait() {
            if let Some(pid) = self.child.id() {
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(3);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = self.child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = self.child.start_kill();
            }
        }
    }
}

/// Peak resident set size (VmHWM) of a live process, in bytes.
pub fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM line in /proc/PID/status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .context("unreadable VmHWM")?;
    Ok(kib * 1024)
}

/// The executable of a live process (to see through kubectl's version dispatcher).
pub fn exe_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// User + system CPU time of a live process so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14, 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks =
        |i: usize| -> Result<f64> { Ok(f.get(i).context("short /proc/PID/stat")?.parse::<f64>()?) };
    // rest starts at field 3 (state): field n is rest[n - 3].
    let total = ticks(14 - 3)? + ticks(15 - 3)?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(total / hz)
}

/// What [`run_measured`] saw of a finished child.
pub struct Measured {
    pub wall: Duration,
    pub success: bool,
    /// The kernel's peak resident set size of the child (wait4's ru_maxrss), bytes.
    pub peak_rss: u64,
    pub stderr: String,
}

/// Run `cmd` to completion within `limit` and reap it with wait4, which hands back
/// the child's peak RSS however short its life (no /proc sampling race).
pub async fn run_measured(
    mut cmd: std::process::Command,
    what: &str,
    limit: Duration,
) -> Result<Measured> {
    let err_file = tempfile::NamedTempFile::new()?;
    cmd.stdout(Stdio::null())
        .stderr(Stdio::from(err_file.reopen()?));
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let pid = child.id() as libc::pid_t;
    let what = what.to_string();
    let (status, rusage) = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + limit;
        loop {
            let mut status = 0;
            // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: pid is our own unreaped child; status and usage are valid.
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if r == pid {
                return Ok((status, usage));
            }
            if r < 0 {
                bail!("wait4 on {what}: {}", std::io::Error::last_os_error());
            }
            if Instant::now() > deadline {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let mut status = 0;
                // SAFETY: reaping our own child after SIGKILL.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                bail!("{what} did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await??;
    // The std Child is left unwaited on purpose: wait4 above reaped it.
    drop(child);
    Ok(Measured {
        wall: start.elapsed(),
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        peak_rss: rusage.ru_maxrss as u64 * 1024,
        stderr: std::fs::read_to_string(err_file.path()).unwrap_or_default(),
    })
}
