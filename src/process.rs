//! Child processes (buildctl, docker, the user's command): our exit code is theirs,
//! SIGINT/SIGTERM reach them, and they die with us.

use std::process::ExitStatus;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

/// Exit code for a child's status, shell-style: 128 + signal when it was killed.
pub fn exit_code(status: ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    status.code().unwrap_or(1)
}

/// Make `cmd`'s child die when we die (Linux: parent-death signal). Children must be
/// spawned from the main thread (the runtime's block_on thread), since the signal
/// fires when the spawning *thread* exits.
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    unsafe {
        let parent = libc::getpid();
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // We may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
    cmd.kill_on_drop(true);
}

/// Spawn with a clear error naming the program and how to fix a missing one.
pub fn spawn(cmd: &mut Command, what: &str, flag: &str) -> Result<Child> {
    die_with_parent(cmd);
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "{what} not found: {program:?} is not on PATH; install it, or pass its path with {flag}"
            )
        } else {
            anyhow::anyhow!("cannot start {what} ({program}): {e}")
        }
    })
}

/// The signals we pass on to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    Interrupt,
    Terminate,
}

impl Forwarded {
    pub fn exit_code(self) -> i32 {
        match self {
            Forwarded::Interrupt => 130,
            Forwarded::Terminate => 143,
        }
    }
    #[cfg(unix)]
    fn raw(self) -> i32 {
        match self {
            Forwarded::Interrupt => libc::SIGINT,
            Forwarded::Terminate => libc::SIGTERM,
        }
    }
}

/// Resolves when SIGINT or SIGTERM arrives (Ctrl-C elsewhere).
pub struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Run `fut` unless SIGINT or SIGTERM comes first: then `Err(signal)`, and `fut` is
    /// dropped (what it opened closes with it). For every wait that is not on a child:
    /// the API server, a credential plugin, a tunnel's first dial.
    pub async fn unless_interrupted<F: std::future::Future>(
        &mut self,
        fut: F,
    ) -> Result<F::Output, Forwarded> {
        tokio::select! {
            out = fut => Ok(out),
            sig = self.recv() => Err(sig),
        }
    }

    pub async fn recv(&mut self) -> Forwarded {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => Forwarded::Interrupt,
                _ = self.term.recv() => Forwarded::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Forwarded::Interrupt
        }
    }
}

/// Send a signal to a running child.
pub fn signal_child(child: &Child, sig: Forwarded) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        unsafe {
            libc::kill(pid as libc::pid_t, sig.raw());
        }
    }
    #[cfg(not(unix))]
    let _ = (child, sig);
}

/// Wait for the child; on SIGINT/SIGTERM pass it on, wait for the child to go, and
/// return 130/143. Otherwise the child's exit code.
pub async fn wait(child: &mut Child, signals: &mut Signals) -> Result<i32> {
    tokio::select! {
        status = child.wait() => Ok(exit_code(status.context("waiting for the child process")?)),
        sig = signals.recv() => {
            signal_child(child, sig);
            // Give the child a moment to finish cleanly, then make sure it is gone.
            if tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
            Ok(sig.exit_code())
        }
    }
}
