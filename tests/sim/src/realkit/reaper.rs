//! The reaper: a small `sh` process that owns the cleanup of one fixture directory.
//!
//! It is started before any daemon, in its own process group, ignoring INT/TERM/HUP,
//! with a pipe on its stdin whose only writer is the test process. It waits for EOF on
//! that pipe, which comes either when the fixture is stopped on purpose (Drop, or the
//! atexit hook for the shared fixture, since statics never drop) or when the test
//! process dies in any way (panic=abort, SIGKILL, Ctrl-C): the kernel closes the
//! pipe with the process, whichever thread started the fixture. No PR_SET_PDEATHSIG,
//! which fires when the spawning *thread* exits (test threads end after each test).
//!
//! Then it stops every process the fixture spawned, known by the `spawned.pid` files
//! the test process writes right after each spawn, and dockerd's own pidfile (which
//! covers a death between spawn and that write; a pid is only signalled while its
//! /proc cmdline still names the fixture directory, so a reused pid is never hit):
//! SIGTERM, a grace period, SIGKILL; then dockerd's own containerd (its pidfile under
//! the exec root) the same way; then it lazily unmounts whatever is still mounted
//! under the directory (dockerd bind-mounts its data root) and removes the directory.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// The pidfile name the reaper looks for in each direct subdirectory of the fixture dir.
pub const PIDFILE: &str = "spawned.pid";

const SCRIPT: &str = r#"
trap '' INT TERM HUP
root="$1"
cat >/dev/null
# ours PID: the process is alive (not a zombie: its cmdline is empty) and names $root.
ours() { [ -n "$1" ] && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -qF "$root"; }
stop() {
  for p in "$@"; do ours "$p" && kill -TERM "$p" 2>/dev/null; done
  i=0
  while [ $i -lt 150 ]; do
    alive=""
    for p in "$@"; do ours "$p" && alive="$alive $p"; done
    [ -z "$alive" ] && return 0
    sleep 0.1; i=$((i+1))
  done
  for p in $alive; do ours "$p" && kill -KILL "$p" 2>/dev/null; done
  sleep 0.2
}
pids=""
for f in "$root"/*/spawned.pid "$root"/*/dockerd.pid; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
stop $pids
pids=""
for f in "$root"/*/exec/containerd/containerd.pid; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
stop $pids
awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
  umount -l "$m" 2>/dev/null
done
rm -rf "$root"
"#;

/// A running reaper for one fixture directory.
pub struct Reaper {
    stdin: Option<ChildStdin>,
    child: Child,
}

impl Reaper {
    /// Start the reaper of `root` (which must exist and be the fixture's own directory).
    pub fn start(root: &Path) -> std::io::Result<Reaper> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("realkit-reaper")
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Reaper { stdin, child })
    }

    /// Clean up now: close the pipe and wait until the reaper has removed everything.
    pub fn finish(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Record a spawned process for the reaper: `dir/spawned.pid`.
pub fn record(dir: &Path, pid: u32) -> std::io::Result<()> {
    std::fs::write(dir.join(PIDFILE), format!("{pid}\n"))
}
