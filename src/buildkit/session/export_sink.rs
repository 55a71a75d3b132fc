//! Where an exporter's output goes, and the byte sinks (tar / docker / oci tarballs):
//! a file, our stdout, or `docker load`'s stdin. Chunks are written as they arrive:
//! nothing is buffered beyond one chunk, and `docker load` reads from a pipe (no
//! temporary file).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;

/// The destination of one exporter's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportSink {
    /// A tarball written to this path (replaced only once complete).
    File(PathBuf),
    /// A tarball written to our standard output.
    Stdout,
    /// A docker tarball piped into `<docker> load` (with `DOCKER_HOST` when given).
    DockerLoad {
        docker: PathBuf,
        docker_host: Option<String>,
    },
    /// The local exporter's tree, written into this directory (fsutil receiver).
    LocalDir(PathBuf),
}

/// Why an export did not reach its destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("the daemon sent output for exporter {index}, but only {count} output(s) are set up")]
    UnknownExporter { index: usize, count: usize },
    #[error("the daemon sent an invalid exporter id {0:?} (buildkit-attachable-exporter-id)")]
    BadExporterId(String),
    #[error("cannot write the exported tarball to {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("cannot write the exported tarball to stdout: {0}")]
    Stdout(String),
    #[error("cannot start `{} load`: {message}; install docker, or pass its path with --docker PATH", docker.display())]
    DockerLoadStart { docker: PathBuf, message: String },
    #[error("`{} load` failed ({status}): {stderr}", docker.display())]
    DockerLoad {
        docker: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("cannot export into {}: {message}", dest.display())]
    Local { dest: PathBuf, message: String },
    #[error("the export stream from the daemon broke: {0}")]
    Stream(String),
}

/// Keep this much of `docker load`'s stderr for the error (its last bytes).
const STDERR_TAIL: usize = 4096;

/// Write a stream of BytesMessage payloads to a byte sink; the byte count on success.
pub(crate) async fn write_bytes<S>(sink: &ExportSink, incoming: S) -> Result<u64, ExportError>
where
    S: Stream<Item = Result<Bytes, tonic::Status>> + Unpin,
{
    match sink {
        ExportSink::File(path) => to_file(path, incoming).await,
        ExportSink::Stdout => {
            let mut out = tokio::io::stdout();
            let n = pump(incoming, &mut out)
                .await
                .map_err(|p| p.or_out(|e| ExportError::Stdout(e.to_string())))?;
            out.flush()
                .await
                .map_err(|e| ExportError::Stdout(e.to_string()))?;
            Ok(n)
        }
        ExportSink::DockerLoad {
            docker,
            docker_host,
        } => docker_load(docker, docker_host.as_deref(), incoming).await,
        ExportSink::LocalDir(dest) => Err(ExportError::Local {
            dest: dest.clone(),
            message: "a directory takes an fsutil stream, not bytes".into(),
        }),
    }
}

/// Either side of a copy failed.
enum Pump {
    /// The daemon's stream (already an `ExportError::Stream`).
    In(ExportError),
    /// Our destination.
    Out(std::io::Error),
}

/// Copy every chunk into `out`, as it arrives.
async fn pump<S, W>(mut incoming: S, out: &mut W) -> Result<u64, Pump>
where
    S: Stream<Item = Result<Bytes, tonic::Status>> + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut total = 0u64;
    while let Some(item) = incoming.next().await {
        let raw = item.map_err(|s| Pump::In(ExportError::Stream(s.message().to_string())))?;
        let msg = bollard_buildkit_proto::moby::filesync::v1::BytesMessage::decode(raw)
            .map_err(|e| Pump::In(ExportError::Stream(format!("not a BytesMessage: {e}"))))?;
        out.write_all(&msg.data).await.map_err(Pump::Out)?;
        total += msg.data.len() as u64;
    }
    Ok(total)
}

impl Pump {
    fn or_out(self, fail: impl FnOnce(std::io::Error) -> ExportError) -> ExportError {
        match self {
            Pump::In(e) => e,
            Pump::Out(e) => fail(e),
        }
    }
}

/// A regular file (or a new path) is written beside itself and renamed into place, so
/// a failed export leaves nothing half-written; a FIFO or device is written directly.
async fn to_file<S>(path: &Path, incoming: S) -> Result<u64, ExportError>
where
    S: Stream<Item = Result<Bytes, tonic::Status>> + Unpin,
{
    let fail = |e: std::io::Error| ExportError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let direct = std::fs::metadata(path)
        .map(|m| !m.is_file())
        .unwrap_or(false);
    let target = if direct {
        path.to_path_buf()
    } else {
        let name = path.file_name().ok_or_else(|| ExportError::File {
            path: path.to_path_buf(),
            message: "not a file name".into(),
        })?;
        let mut tmp = name.to_os_string();
        tmp.push(format!(".kubectl-buildkit-{}.partial", std::process::id()));
        path.with_file_name(tmp)
    };
    let result = async {
        let mut file = tokio::fs::File::create(&target).await.map_err(fail)?;
        let n = pump(incoming, &mut file)
            .await
            .map_err(|p| p.or_out(fail))?;
        file.flush().await.map_err(fail)?;
        file.sync_all().await.map_err(fail)?;
        drop(file);
        if !direct {
            tokio::fs::rename(&target, path).await.map_err(fail)?;
        }
        Ok(n)
    }
    .await;
    if result.is_err() && !direct {
        let _ = std::fs::remove_file(&target);
    }
    result
}

/// Pipe the tarball into `docker load`; its exit status and stderr decide.
async fn docker_load<S>(
    docker: &Path,
    docker_host: Option<&str>,
    incoming: S,
) -> Result<u64, ExportError>
where
    S: Stream<Item = Result<Bytes, tonic::Status>> + Unpin,
{
    let mut cmd = Command::new(docker);
    cmd.arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    if let Some(host) = docker_host {
        cmd.env("DOCKER_HOST", host);
    }
    // It dies with us, and when this future is dropped (the daemon cancelled).
    crate::process::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| ExportError::DockerLoadStart {
        docker: docker.to_path_buf(),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            format!("{} not found", docker.display())
        } else {
            e.to_string()
        },
    })?;
    let stderr = child.stderr.take().map(|s| tokio::spawn(tail(s)));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A write error means docker load quit early: its own stderr says why.
    let pumped = match pump(incoming, &mut stdin).await {
        Ok(n) => stdin
            .shutdown()
            .await
            .map(|()| n)
            .map_err(|e| e.to_string()),
        Err(Pump::Out(e)) => Err(e.to_string()),
        Err(Pump::In(e)) => {
            // The daemon's stream broke: a truncated image must not load.
            let _ = child.kill().await;
            return Err(e);
        }
    };
    drop(stdin);
    let status = child.wait().await.map_err(|e| ExportError::DockerLoad {
        docker: docker.to_path_buf(),
        status: "unknown".into(),
        stderr: e.to_string(),
    })?;
    let stderr = match stderr {
        Some(task) => task.await.unwrap_or_default(),
        None => String::new(),
    };
    match (status.success(), pumped) {
        (true, Ok(n)) => Ok(n),
        (ok, pumped) => Err(ExportError::DockerLoad {
            docker: docker.to_path_buf(),
            status: if ok {
                format!("it stopped reading: {}", pumped.err().unwrap_or_default())
            } else {
                describe(status)
            },
            stderr: stderr.trim().to_string(),
        }),
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".into(),
    }
}

/// The last `STDERR_TAIL` bytes of a stream, as text.
async fn tail<R: AsyncRead + Unpin>(mut r: R) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > STDERR_TAIL {
            kept.drain(..kept.len() - STDERR_TAIL);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}
