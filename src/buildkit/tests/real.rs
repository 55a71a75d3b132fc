use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::buildkit::session::filesync::FileSyncService;
use crate::buildkit::session::secrets::{SecretSource, SecretsService};
use crate::buildkit::*;

// DEV ONLY until the realkit fixture lands: dial our own private dockerd.
async fn dial() -> tokio::net::UnixStream {
    let sock =
        std::env::var("KBK_DEV_DOCKER_SOCK").unwrap_or("/tmp/client-dockerd/docker.sock".into());
    let mut s = tokio::net::UnixStream::connect(&sock)
        .await
        .expect("dev dockerd");
    s.write_all(
        b"POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test]
async fn probe_names_a_v08_daemon() {
    let ch = connect(dial().await).await.unwrap();
    let info = probe(ch, Duration::from_secs(10)).await.unwrap();
    eprintln!("{info:?}");
    assert!(!info.has_info);
    assert_eq!(info.workers, vec!["moby".to_string()]);
}

#[tokio::test]
async fn build_with_context_secret_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    std::fs::write(ctx.join("sub/hello.txt"), "hello from the context\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM local/busybox:1\nCOPY sub /sub\nRUN --mount=type=secret,id=tok cat /run/secrets/tok && cat /sub/hello.txt && exit 3\n").unwrap();
    std::fs::write(dir.path().join("tok"), "s3cr3t").unwrap();
    let routes = SessionRoutes::new()
        .add(
            bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSyncServer::new(
                FileSyncService::new(HashMap::from([
                    ("context".to_string(), ctx.clone()),
                    ("dockerfile".to_string(), ctx.clone()),
                ])),
            ),
        )
        .add(
            bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::SecretsServer::new(
                SecretsService::new(HashMap::from([(
                    "tok".to_string(),
                    SecretSource::File(dir.path().join("tok")),
                )])),
            ),
        );
    let opts = SolveOptions {
        dockerfile_name: "Dockerfile".into(),
        network: NetworkMode::None,
        ..Default::default()
    };
    let ch = connect(dial().await).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<
        bollard_buildkit_proto::moby::buildkit::v1::StatusResponse,
    >(64);
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        while let Some(s) = rx.recv().await {
            for v in &s.vertexes {
                eprintln!("vertex {} {}", v.name, v.error);
            }
            for l in &s.logs {
                text.push_str(&String::from_utf8_lossy(&l.msg));
            }
        }
        text
    });
    let err = solve(
        ch,
        &opts,
        routes,
        shared_key(&ctx),
        tx,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    let logs = logs.await.unwrap();
    eprintln!("{err}\n{logs}");
    assert!(err.to_string().contains("exit code: 3"), "{err}");
    assert!(logs.contains("hello from the context"));
    let _ = PathBuf::new();
}
