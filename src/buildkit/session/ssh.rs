//! SSH agent forwarding for `RUN --mount=type=ssh`: the daemon asks `CheckAgent{ID}`
//! when a step names an ssh id, and opens `ForwardAgent` (a raw byte stream both
//! ways) for each agent connection inside the step, naming the id in metadata
//! `buildkit.ssh.id` (absent: `default`). Each stream gets its own connection to the
//! agent's unix socket. Sockets are checked when the spec is parsed, before any
//! connection to a daemon.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;

use super::AbortOnDrop;
use bollard_buildkit_proto::moby::sshforward::v1::ssh_server::{Ssh, SshServer};
use bollard_buildkit_proto::moby::sshforward::v1::{
    BytesMessage, CheckAgentRequest, CheckAgentResponse,
};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

/// The id a step uses when it names none.
pub const DEFAULT_ID: &str = "default";
/// Metadata naming the agent a ForwardAgent stream is for.
pub const SSH_ID_KEY: &str = "buildkit.ssh.id";

/// One forwarded agent: the id steps name, the socket it is reached on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAgent {
    pub id: String,
    pub socket: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshSpecError {
    #[error("--ssh is empty: give default, ID, or ID=SOCKET")]
    Empty,
    #[error("--ssh {id}: SSH_AUTH_SOCK is not set; start an agent (eval $(ssh-agent); ssh-add) or give {id}=SOCKET")]
    NoAuthSock { id: String },
    #[error("--ssh {id}: agent socket {} does not exist; start the agent or fix the path", socket.display())]
    Missing { id: String, socket: PathBuf },
    #[error("--ssh {id}: {} is not a unix socket; the built-in client forwards agents only (load keys with ssh-add), or use --cli buildctl for key files", socket.display())]
    NotSocket { id: String, socket: PathBuf },
    #[error("--ssh {id} is given twice")]
    Duplicate { id: String },
}

/// `default`, `ID` (both: `$SSH_AUTH_SOCK`) or `ID=SOCKET`; the socket must exist.
pub fn parse_ssh_spec(spec: &str) -> Result<SshAgent, SshSpecError> {
    parse_ssh_spec_with(spec, std::env::var_os("SSH_AUTH_SOCK").as_deref())
}

/// `parse_ssh_spec` with `SSH_AUTH_SOCK` given.
pub fn parse_ssh_spec_with(
    spec: &str,
    auth_sock: Option<&OsStr>,
) -> Result<SshAgent, SshSpecError> {
    let spec = spec.trim();
    let (id, socket) = match spec.split_once('=') {
        Some((id, path)) => (id.trim(), Some(path.trim())),
        None => (spec, None),
    };
    if id.is_empty() || socket == Some("") {
        return Err(SshSpecError::Empty);
    }
    let socket = match socket {
        Some(path) => PathBuf::from(path),
        None => match auth_sock.filter(|s| !s.is_empty()) {
            Some(s) => PathBuf::from(s),
            None => return Err(SshSpecError::NoAuthSock { id: id.into() }),
        },
    };
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(&socket) {
        Err(_) => Err(SshSpecError::Missing {
            id: id.into(),
            socket,
        }),
        Ok(m) if !m.file_type().is_socket() => Err(SshSpecError::NotSocket {
            id: id.into(),
            socket,
        }),
        Ok(_) => Ok(SshAgent {
            id: id.into(),
            socket,
        }),
    }
}

/// Serves `moby.sshforward.v1.SSH` for a set of agents.
#[derive(Debug, Clone)]
pub struct SshService {
    agents: Arc<HashMap<String, PathBuf>>,
}

impl SshService {
    pub fn new(agents: Vec<SshAgent>) -> Result<Self, SshSpecError> {
        let mut map = HashMap::new();
        for a in agents {
            if map.insert(a.id.clone(), a.socket).is_some() {
                return Err(SshSpecError::Duplicate { id: a.id });
            }
        }
        Ok(SshService {
            agents: Arc::new(map),
        })
    }

    /// The tonic service for the session's router.
    pub fn into_server(self) -> SshServer<Self> {
        SshServer::new(self)
    }

    fn socket(&self, id: &str) -> Result<&PathBuf, Status> {
        let id = if id.is_empty() { DEFAULT_ID } else { id };
        self.agents.get(id).ok_or_else(|| {
            Status::not_found(format!(
                "no ssh agent {id:?} is forwarded by this build: pass --ssh {id}[=SOCKET]"
            ))
        })
    }
}

/// Bytes read from the agent per message.
const CHUNK: usize = 32 * 1024;

#[tonic::async_trait]
impl Ssh for SshService {
    async fn check_agent(
        &self,
        request: Request<CheckAgentRequest>,
    ) -> Result<Response<CheckAgentResponse>, Status> {
        self.socket(&request.into_inner().id)?;
        Ok(Response::new(CheckAgentResponse {}))
    }

    type ForwardAgentStream = BoxStream<BytesMessage>;

    async fn forward_agent(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Self::ForwardAgentStream>, Status> {
        let id = request
            .metadata()
            .get(SSH_ID_KEY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let socket = self.socket(&id)?.clone();
        let conn = UnixStream::connect(&socket).await.map_err(|e| {
            Status::unavailable(format!(
                "cannot connect to the ssh agent at {}: {e}",
                socket.display()
            ))
        })?;
        let (mut from_agent, mut to_agent) = conn.into_split();
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<BytesMessage, Status>>(8);
        let task = tokio::spawn(async move {
            let upstream = async move {
                while let Some(msg) = incoming.next().await {
                    let Ok(msg) = msg else { break };
                    if to_agent.write_all(&msg.data).await.is_err() {
                        break;
                    }
                }
                // The step closed its end: let the agent see EOF.
                let _ = to_agent.shutdown().await;
            };
            // Owns `tx`: when the agent closes its side, the response ends.
            let downstream = async move {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    match from_agent.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            let msg = BytesMessage {
                                data: buf[..n].to_vec(),
                            };
                            if tx.send(Ok(msg)).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = tx
                                .send(Err(Status::unavailable(format!("ssh agent: {e}"))))
                                .await;
                            break;
                        }
                    }
                }
            };
            tokio::join!(upstream, downstream);
        });
        let guard = AbortOnDrop(task.abort_handle());
        let stream = ReceiverStream::new(rx).map(move |item| {
            let _keep = &guard;
            item
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
#[path = "ssh_tests.rs"]
mod tests;
