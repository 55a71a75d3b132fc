//! The one bounded test harness of the workspace: every wait on a child has a
//! deadline, and the real kubectl is found on PATH.
//!
//! - [`run_bounded`] / [`wait_deadline`]: a child runs in its own process group with
//!   piped output; past its deadline the whole group is killed and the test fails,
//!   showing what the child printed so far. No unbounded `output()` or `wait()`.
//! - [`output_within`]: the same for a tokio `Command` in an async test.
//! - [`kubectl`]: the kubectl on PATH. Its absence is loud: with `CI=true` (or `1`) the
//!   test fails; elsewhere it prints a `SKIPPED` line naming the test and returns None,
//!   and the caller returns early.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// What a command in a test may take before it is called a hang.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// Whether we run under CI (`CI=true` or `CI=1`, as CI services set it).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `name` on PATH, if it is there.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The kubectl on PATH, for `test`. Absent: a failure under CI, a loud skip elsewhere.
#[track_caller]
pub fn kubectl(test: &str) -> Option<PathBuf> {
    if let Some(found) = on_path("kubectl") {
        return Some(found);
    }
    if under_ci() {
        panic!("{test}: kubectl is not on PATH (CI=true: install kubectl, e.g. Debian's kubernetes-client)");
    }
    eprintln!(
        "SKIPPED {test}: kubectl is not on PATH; install it (e.g. Debian's kubernetes-client) to run this test"
    );
    None
}

/// In a test fn: the kubectl on PATH, or return from the test (see [`kubectl`]).
#[macro_export]
macro_rules! require_kubectl {
    () => {
        match $crate::harness::kubectl(concat!(module_path!(), " line ", line!())) {
            Some(kubectl) => kubectl,
            None => return,
        }
    };
}

/// The kubectl on PATH for a test that checked with [`require_kubectl!`].
pub fn kubectl_on_path() -> PathBuf {
    on_path("kubectl").expect("kubectl on PATH (the test checks with require_kubectl!)")
}

/// Wait for `child` until `limit`; None when it is still running then.
pub fn wait_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("waiting for a child") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Run `cmd` to completion in its own process group with stdout and stderr piped (stdin
/// as the caller set it, else null). Past `limit` the group is killed and the test
/// fails with the stderr read so far.
#[track_caller]
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let out_pipe = child.stdout.take().expect("piped stdout");
    let err_pipe = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || read_all(out_pipe));
    let err_t = std::thread::spawn(move || read_all(err_pipe));
    let Some(status) = wait_deadline(&mut child, limit) else {
        kill_group(&mut child);
        // The pipes close with the group; whatever was printed is in the threads.
        let err = err_t.join().unwrap_or_default();
        panic!(
            "hang: {program} still running after {limit:?}; stderr so far: {}",
            String::from_utf8_lossy(&err)
        );
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// The output of an already spawned `child` (stdout/stderr piped or not) within
/// `limit`; past it the child is killed and the test fails.
#[track_caller]
pub fn finish_within(mut child: Child, limit: Duration) -> Output {
    let out_t = child
        .stdout
        .take()
        .map(|p| std::thread::spawn(move || read_all(p)));
    let err_t = child
        .stderr
        .take()
        .map(|p| std::thread::spawn(move || read_all(p)));
    let Some(status) = wait_deadline(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        let err = err_t
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        panic!(
            "hang: child still running after {limit:?}; stderr so far: {}",
            String::from_utf8_lossy(&err)
        );
    };
    Output {
        status,
        stdout: out_t
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default(),
        stderr: err_t
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default(),
    }
}

/// Wait for `child` within `limit`, or kill it and fail.
#[track_caller]
pub fn wait_within(child: &mut Child, limit: Duration) -> ExitStatus {
    match wait_deadline(child, limit) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hang: child still running after {limit:?}");
        }
    }
}

/// `.output_bounded()` on a `Command`: [`run_bounded`] with [`CHILD_DEADLINE`].
pub trait OutputBounded {
    fn output_bounded(&mut self) -> Output;
}

impl OutputBounded for Command {
    #[track_caller]
    fn output_bounded(&mut self) -> Output {
        run_bounded(self, CHILD_DEADLINE)
    }
}

/// Kill `child`'s process group (it leads one: [`run_bounded`]) and reap it.
pub fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn read_all(mut r: impl std::io::Read) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v);
    v
}

/// A tokio command's output within `limit` (it is killed on drop when late).
pub async fn output_within(cmd: &mut tokio::process::Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out.unwrap_or_else(|e| panic!("reading {program}'s output: {e}")),
        Err(_) => panic!("hang: {program} still running after {limit:?}"),
    }
}

/// Every process whose command line contains `needle`, as (pid, command line with
/// spaces for its NULs). A zombie's command line is empty, so only live processes
/// match: the check for "the RUN's process is gone" and "nothing left behind".
pub fn processes_naming(needle: &str) -> Vec<(u32, String)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then_some((pid, cmdline))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hang_is_killed_and_reported() {
        let caught = std::panic::catch_unwind(|| {
            run_bounded(
                Command::new("sh").args(["-c", "echo started >&2; sleep 30"]),
                Duration::from_millis(300),
            )
        });
        let msg = caught.expect_err("the hang fails the test");
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("hang: sh") && msg.contains("started"), "{msg}");
    }

    #[test]
    fn a_quick_child_gives_its_output() {
        let out = run_bounded(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    }
}
