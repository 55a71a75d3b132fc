//! One private dockerd (Debian's 20.10, BuildKit v0.8 inside): its own data root, exec
//! root (so its own containerd), pidfile and socket under the fixture directory; no
//! bridge, no iptables, vfs storage, so it needs no network set-up and touches nothing
//! outside its directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{http, reaper, Unavailable};

/// The CLI that speaks to it: Debian's 20.10 docker (BuildKit built in). A newer CLI
/// without buildx refuses BuildKit builds, and may come first on PATH.
pub const DOCKER_CLI: &str = "/usr/bin/docker";

/// The tag the busybox base image gets in every daemon.
pub const BUSYBOX_IMAGE: &str = "local/busybox:1";

/// How long a dockerd may take to answer `/_ping`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Dockerd {
    dir: PathBuf,
    socket: PathBuf,
    docker_config: PathBuf,
    child: Mutex<Child>,
}

impl Dockerd {
    /// Spawn a dockerd in `dir` (created) and record it for the reaper at once.
    pub(super) fn spawn(dockerd: &Path, dir: &Path) -> Result<Dockerd, Unavailable> {
        let mk = |p: &Path| {
            std::fs::create_dir_all(p)
                .map_err(|e| Unavailable::new(format!("creating {}: {e}", p.display())))
        };
        let (root, exec, docker_config) = (dir.join("root"), dir.join("exec"), dir.join("cli"));
        mk(&root)?;
        mk(&exec)?;
        mk(&docker_config)?;
        let socket = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log"))
            .map_err(|e| Unavailable::new(format!("creating dockerd.log: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Unavailable::new(format!("dockerd.log: {e}")))?;
        use std::os::unix::process::CommandExt;
        let child = Command::new(dockerd)
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ])
            .arg("--data-root")
            .arg(&root)
            .arg("--exec-root")
            .arg(&exec)
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            // KUBE_SIM_DOCKERD_DEBUG=1: dockerd (and its BuildKit) log at debug level
            // into dockerd.log, e.g. to see why a session ended.
            .args(
                std::env::var_os("KUBE_SIM_DOCKERD_DEBUG")
                    .filter(|v| v == "1")
                    .map(|_| "--debug"),
            )
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| Unavailable::new(format!("running {}: {e}", dockerd.display())))?;
        let d = Dockerd {
            dir: dir.to_path_buf(),
            socket,
            docker_config,
            child: Mutex::new(child),
        };
        let pid = d.child.lock().map(|c| c.id()).unwrap_or_default();
        if let Err(e) = reaper::record(dir, pid) {
            // The reaper would not know it: stop it here.
            if let Ok(mut c) = d.child.lock() {
                let _ = c.kill();
                let _ = c.wait();
            }
            return Err(Unavailable::new(format!("writing the pidfile: {e}")));
        }
        Ok(d)
    }

    /// Wait until the daemon answers `/_ping` (or fails: exits, or times out).
    pub(super) fn wait_ready(&mut self) -> Result<(), Unavailable> {
        let start = Instant::now();
        loop {
            if let Ok(a) = http::get_unix(&self.socket, "/_ping") {
                if a.status == 200 {
                    return Ok(());
                }
            }
            let exited = self
                .child
                .get_mut()
                .ok()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(self.failed(&format!("dockerd exited ({status})")));
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(self.failed("dockerd did not answer /_ping within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Import the busybox tree archive as [`BUSYBOX_IMAGE`].
    pub(super) fn import_busybox(&self, archive: &Path) -> Result<(), Unavailable> {
        let out = self
            .docker()
            .arg("import")
            .arg(archive)
            .arg(BUSYBOX_IMAGE)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Unavailable::new(format!("running {DOCKER_CLI} import: {e}")))?;
        if !out.status.success() {
            return Err(self.failed(&format!(
                "docker import of busybox failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    fn failed(&self, what: &str) -> Unavailable {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Unavailable::new(format!(
            "{what}; dockerd.log ends:\n  {}",
            tail.join("\n  ")
        ))
    }

    /// Reap the process once the reaper has stopped it (no zombie left).
    pub(super) fn reap(&self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.try_wait();
        }
    }

    /// The unix socket of this dockerd.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix:///…/docker.sock`, for DOCKER_HOST.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The base image present in this daemon (busybox, imported, nothing pulled).
    pub fn busybox_image(&self) -> &str {
        BUSYBOX_IMAGE
    }

    /// The daemon's directory (data root, exec root, log) for diagnostics.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `/usr/bin/docker` aimed at this daemon: DOCKER_HOST set, a private DOCKER_CONFIG
    /// (so a `docker login` never writes the user's ~/.docker), BuildKit on.
    pub fn docker(&self) -> Command {
        let mut c = Command::new(DOCKER_CLI);
        c.env("DOCKER_HOST", self.docker_host())
            .env("DOCKER_CONFIG", &self.docker_config)
            .env("DOCKER_BUILDKIT", "1")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        c
    }

    /// A connection to this daemon's BuildKit: `POST /grpc` with `Upgrade: h2c`, the
    /// 101 read, then the raw stream: HTTP/2 (prior knowledge, the caller is the
    /// client) to BuildKit's gRPC server with the Control service.
    pub async fn dial_buildkit(&self) -> std::io::Result<tokio::net::UnixStream> {
        dial_buildkit_at(&self.socket).await
    }
}

/// [`Dockerd::dial_buildkit`] on any docker socket.
pub async fn dial_buildkit_at(socket: &Path) -> std::io::Result<tokio::net::UnixStream> {
    let mut s = tokio::net::UnixStream::connect(socket).await?;
    s.write_all(
        b"POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n",
    )
    .await?;
    // Byte by byte up to the blank line: what follows the 101 is HTTP/2 (the server's
    // SETTINGS may arrive in the same segment) and must stay in the stream.
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "dockerd at {} closed the connection before answering POST /grpc",
                    socket.display()
                ),
            ));
        }
        head.push(b[0]);
        if head.len() > 16 * 1024 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "dockerd's answer to POST /grpc has no end of headers",
            ));
        }
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default().to_string();
    if status_line.split(' ').nth(1) != Some("101") {
        return Err(std::io::Error::other(format!(
            "dockerd at {} answered POST /grpc (Upgrade: h2c) with {status_line:?}, not 101",
            socket.display()
        )));
    }
    Ok(s)
}
