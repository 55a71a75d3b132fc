//! SSH forwarding over a real tonic server, driven by the generated client as the
//! daemon drives it: bytes through test agents (unix socket echo servers) chosen by
//! `buildkit.ssh.id`, and a real ssh-agent listing its key through the forward.

use std::path::Path;
use std::time::Duration;

use bollard_buildkit_proto::moby::sshforward::v1::ssh_client::SshClient;
use bollard_buildkit_proto::moby::sshforward::v1::{BytesMessage, CheckAgentRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tonic::Request;

use super::*;
use crate::buildkit::session::test_transport::serve;

/// A test agent: greets with `NAME:`, then echoes until EOF, then closes.
fn echo_agent(path: &Path, name: &'static str) -> tokio::task::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                conn.write_all(format!("{name}:").as_bytes()).await.unwrap();
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = conn.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    conn.write_all(&buf[..n]).await.unwrap();
                }
                conn.shutdown().await.unwrap();
            });
        }
    })
}

/// Forward `data` to agent `id` (None: no metadata), close our side, collect the reply.
async fn forward(
    client: &mut SshClient<tonic::transport::Channel>,
    id: Option<&str>,
    data: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let msgs: Vec<BytesMessage> = data
        .chunks(10_000)
        .map(|c| BytesMessage { data: c.to_vec() })
        .collect();
    let mut req = Request::new(tokio_stream::iter(msgs));
    if let Some(id) = id {
        req.metadata_mut().insert(SSH_ID_KEY, id.parse().unwrap());
    }
    let mut resp = client.forward_agent(req).await?.into_inner();
    let mut got = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), resp.message())
        .await
        .expect("the stream ends")?
    {
        got.extend(m.data);
    }
    Ok(got)
}

#[tokio::test]
async fn bytes_reach_the_agent_named_by_the_stream_and_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.sock"), tmp.path().join("b.sock"));
    let _agents = (echo_agent(&a, "default"), echo_agent(&b, "work"));
    let svc = SshService::new(vec![
        parse_ssh_spec_with("default", Some(a.as_os_str())).unwrap(),
        parse_ssh_spec_with(&format!("work={}", b.display()), None).unwrap(),
    ])
    .unwrap();
    let served = serve(svc.into_server()).await;
    let mut client = SshClient::new(served.channel.clone());
    assert_eq!(
        forward(&mut client, None, b"ping".to_vec()).await.unwrap(),
        b"default:ping"
    );
    assert_eq!(
        forward(&mut client, Some("work"), b"pong".to_vec())
            .await
            .unwrap(),
        b"work:pong"
    );
    let big: Vec<u8> = (0..1_000_003u32).map(|i| (i % 241) as u8).collect();
    let mut want = b"default:".to_vec();
    want.extend(&big);
    assert_eq!(
        forward(&mut client, Some("default"), big).await.unwrap(),
        want
    );
    let err = forward(&mut client, Some("nope"), b"x".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("--ssh nope"), "{}", err.message());

    client
        .check_agent(CheckAgentRequest { id: "work".into() })
        .await
        .unwrap();
    client
        .check_agent(CheckAgentRequest { id: String::new() })
        .await
        .unwrap();
    let err = client
        .check_agent(CheckAgentRequest { id: "other".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn an_agent_that_went_away_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("gone.sock");
    let agent = parse_ssh_spec_with(&format!("default={}", sock.display()), None);
    assert!(matches!(agent, Err(SshSpecError::Missing { .. })));
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let agent = parse_ssh_spec_with(&format!("default={}", sock.display()), None).unwrap();
    drop(listener); // the socket file stays, nobody listens
    let served = serve(SshService::new(vec![agent]).unwrap().into_server()).await;
    let mut client = SshClient::new(served.channel.clone());
    let err = forward(&mut client, None, b"x".to_vec()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().contains("gone.sock"), "{}", err.message());
}

#[test]
fn specs_are_checked_before_any_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("agent.sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let file = tmp.path().join("id_ed25519");
    std::fs::write(&file, "key").unwrap();
    let auth = Some(sock.as_os_str());
    let ok = |id: &str| SshAgent {
        id: id.into(),
        socket: sock.clone(),
    };
    assert_eq!(parse_ssh_spec_with("default", auth), Ok(ok("default")));
    assert_eq!(parse_ssh_spec_with("git", auth), Ok(ok("git")));
    assert_eq!(
        parse_ssh_spec_with(&format!("git={}", sock.display()), None),
        Ok(ok("git"))
    );
    assert_eq!(
        parse_ssh_spec_with("default", None),
        Err(SshSpecError::NoAuthSock {
            id: "default".into()
        })
    );
    assert_eq!(parse_ssh_spec_with("", auth), Err(SshSpecError::Empty));
    assert_eq!(parse_ssh_spec_with("git=", auth), Err(SshSpecError::Empty));
    let missing = tmp.path().join("nothing.sock");
    let err = parse_ssh_spec_with(&format!("default={}", missing.display()), None).unwrap_err();
    assert!(
        err.to_string().contains("nothing.sock") && err.to_string().contains("does not exist"),
        "{err}"
    );
    let err = parse_ssh_spec_with(&format!("default={}", file.display()), None).unwrap_err();
    assert!(matches!(err, SshSpecError::NotSocket { .. }), "{err}");
    let err = SshService::new(vec![ok("a"), ok("a")]).unwrap_err();
    assert_eq!(err, SshSpecError::Duplicate { id: "a".into() });
}

/// A real ssh-agent with one key; killed on drop.
struct RealAgent {
    child: std::process::Child,
}

impl Drop for RealAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_real_ssh_agent_lists_its_key_through_the_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("agent.sock");
    let key = tmp.path().join("key");
    let agent = RealAgent {
        child: std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent"),
    };
    let gen = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "session-test-key",
            "-f",
        ])
        .arg(&key)
        .status()
        .unwrap();
    assert!(gen.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let add = std::process::Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(add.success());
    let svc = SshService::new(vec![
        parse_ssh_spec_with("default", Some(sock.as_os_str())).unwrap()
    ])
    .unwrap();
    let served = serve(svc.into_server()).await;
    let mut client = SshClient::new(served.channel.clone());
    // SSH_AGENTC_REQUEST_IDENTITIES (11) in one frame, as ssh does: ask, read the
    // whole SSH_AGENT_IDENTITIES_ANSWER (12), then close; the agent closes too.
    let (tx, rx) = tokio::sync::mpsc::channel::<BytesMessage>(4);
    let mut resp = client
        .forward_agent(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(BytesMessage {
        data: vec![0, 0, 0, 1, 11],
    })
    .await
    .unwrap();
    let mut reply = Vec::new();
    while reply.len() < 4
        || reply.len() < 4 + u32::from_be_bytes(reply[..4].try_into().unwrap()) as usize
    {
        let m = tokio::time::timeout(Duration::from_secs(10), resp.message())
            .await
            .unwrap()
            .unwrap();
        reply.extend(m.expect("the agent answers").data);
    }
    let len = u32::from_be_bytes(reply[..4].try_into().unwrap()) as usize;
    assert_eq!(reply.len(), 4 + len);
    assert_eq!(reply[4], 12);
    assert_eq!(
        u32::from_be_bytes(reply[5..9].try_into().unwrap()),
        1,
        "one key"
    );
    assert!(reply.windows(16).any(|w| w == b"session-test-key"));
    drop(tx);
    let end = tokio::time::timeout(Duration::from_secs(10), resp.message())
        .await
        .unwrap();
    assert!(
        matches!(end, Ok(None)),
        "the stream ends when the agent closes: {end:?}"
    );
    drop(agent);
}
