use std::collections::HashMap;
use std::time::Duration;

use crate::buildkit::session::filesync::FileSyncService;
use crate::buildkit::session::secrets::{SecretSource, SecretsService};
use crate::buildkit::*;

/// A stream to the shared fixture's first daemon; None (after one loud line) when
/// this machine cannot run real BuildKit.
async fn dial() -> Option<tokio::net::UnixStream> {
    dial_daemon(0).await
}

/// The shared fixture has two daemons. The cache test takes the second: on v0.8 a
/// build cancelled or failed at the same moment on the same daemon (the other tests
/// here) was seen to cost a concurrent rebuild its cache hit.
async fn dial_daemon(index: usize) -> Option<tokio::net::UnixStream> {
    let kit = kube_sim::realkit::RealBuildkit::shared()?;
    let daemon = &kit.daemons()[index];
    Some(
        daemon
            .dial_buildkit()
            .await
            .expect("dial the fixture's BuildKit"),
    )
}

const BUSYBOX: &str = kube_sim::realkit::BUSYBOX_IMAGE;

#[tokio::test]
async fn probe_names_a_v08_daemon() {
    let Some(stream) = dial().await else { return };
    let ch = connect(stream).await.unwrap();
    let info = probe(ch, Duration::from_secs(10)).await.unwrap();
    eprintln!("{info:?}");
    assert!(!info.has_info);
    assert_eq!(info.workers, vec!["moby".to_string()]);
}

#[tokio::test]
async fn build_with_context_secret_and_failure() {
    let Some(stream) = dial().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    std::fs::write(ctx.join("sub/hello.txt"), "hello from the context\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {BUSYBOX}\nCOPY sub /sub\nRUN --mount=type=secret,id=tok cat /run/secrets/tok && cat /sub/hello.txt && exit 3\n")).unwrap();
    std::fs::write(dir.path().join("tok"), "s3cr3t").unwrap();
    let routes = SessionRoutes::new()
        .with_service(
            bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSyncServer::new(
                FileSyncService::new(HashMap::from([
                    ("context".to_string(), ctx.clone()),
                    ("dockerfile".to_string(), ctx.clone()),
                ])),
            ),
        )
        .with_service(
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
    let ch = connect(stream).await.unwrap();
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
}

/// Counts the bytes we write into the stream (what the tunnel would carry upstream).
struct Counting<S> {
    inner: S,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counting<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            self.written
                .fetch_add(*n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn context_routes(ctx: &std::path::Path) -> SessionRoutes {
    SessionRoutes::new().with_service(
        bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSyncServer::new(
            FileSyncService::new(HashMap::from([
                ("context".to_string(), ctx.to_path_buf()),
                ("dockerfile".to_string(), ctx.to_path_buf()),
            ])),
        ),
    )
}

async fn build_counting(
    ctx: &std::path::Path,
    key: &str,
) -> (Result<SolveOutcome, SolveError>, u64, Vec<(String, bool)>) {
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stream = Counting {
        inner: dial_daemon(1).await.expect("the fixture runs"),
        written: written.clone(),
    };
    let ch = connect(stream).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<
        bollard_buildkit_proto::moby::buildkit::v1::StatusResponse,
    >(64);
    let vertices = tokio::spawn(async move {
        let mut v: Vec<(String, bool)> = Vec::new();
        while let Some(s) = rx.recv().await {
            for x in s.vertexes {
                if x.completed.is_some() {
                    v.push((x.name, x.cached));
                }
            }
        }
        v
    });
    let opts = SolveOptions {
        dockerfile_name: "Dockerfile".into(),
        network: NetworkMode::None,
        ..Default::default()
    };
    let r = solve(
        ch,
        &opts,
        context_routes(ctx),
        key.to_string(),
        tx,
        std::future::pending(),
    )
    .await;
    let v = vertices.await.unwrap();
    (r, written.load(std::sync::atomic::Ordering::Relaxed), v)
}

#[tokio::test]
async fn a_rebuild_sends_only_the_changed_file_and_hits_the_cache() {
    if dial().await.is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("data")).unwrap();
    for i in 0..16 {
        let block: Vec<u8> = (0..(1 << 20)).map(|j| ((i * 7 + j) % 251) as u8).collect();
        std::fs::write(ctx.join(format!("data/blob{i:02}")), block).unwrap();
    }
    std::fs::write(ctx.join("small.txt"), "one\n").unwrap();
    let marker = crate::buildkit::solve::random_id();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {BUSYBOX}\nRUN echo expensive {marker} > /e\nCOPY . /ctx\nRUN cat /ctx/small.txt\n")).unwrap();
    let key = format!("test-{marker}");
    let (r, first, _) = build_counting(&ctx, &key).await;
    r.unwrap();
    assert!(
        first > 16 << 20,
        "the first build sends the whole context ({first} bytes)"
    );
    std::fs::write(ctx.join("small.txt"), "two\n").unwrap();
    let (r, second, vertices) = build_counting(&ctx, &key).await;
    r.unwrap();
    eprintln!("first {first} second {second} {vertices:?}");
    assert!(second < 1 << 20, "a one-file change sent {second} bytes");
    let expensive = vertices
        .iter()
        .find(|(n, _)| n.contains("expensive"))
        .expect("the expensive step ran");
    assert!(expensive.1, "the expensive step is CACHED the second time");
}

#[tokio::test]
async fn cancelling_stops_the_run_on_the_daemon() {
    let Some(stream) = dial().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let marker = format!("kbk-cancel-{}", crate::buildkit::solve::random_id());
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {BUSYBOX}\nRUN sh -c 'echo {marker}; sleep 300; echo {marker} done'\n"),
    )
    .unwrap();
    let ch = connect(stream).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<
        bollard_buildkit_proto::moby::buildkit::v1::StatusResponse,
    >(64);
    let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<()>();
    let m = marker.clone();
    let watcher = tokio::spawn(async move {
        let mut cancel = Some(cancel_tx);
        let mut seen_running = false;
        while let Some(s) = rx.recv().await {
            if s.logs
                .iter()
                .any(|l| String::from_utf8_lossy(&l.msg).contains(&m))
            {
                if let Some(c) = cancel.take() {
                    seen_running = !kube_sim::harness::processes_naming(&m).is_empty();
                    let _ = c.send(());
                }
            }
        }
        seen_running
    });
    let opts = SolveOptions {
        dockerfile_name: "Dockerfile".into(),
        network: NetworkMode::None,
        ..Default::default()
    };
    let running = tokio::spawn(async move {
        solve(ch, &opts, context_routes(&ctx), "k".into(), tx, async {
            let _ = cancel_rx.await;
        })
        .await
    });
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the solve ends")
        .unwrap();
    assert!(matches!(r, Err(SolveError::Cancelled)), "{r:?}");
    assert!(
        watcher.await.unwrap(),
        "the RUN process was running on the daemon before the cancel"
    );
    let mut gone = false;
    for _ in 0..150 {
        if kube_sim::harness::processes_naming(&marker).is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "the RUN process still runs on the daemon after {:?}",
        started.elapsed()
    );
}

// The whole exported tree (every kind of entry, .dockerignore, secrets) is checked
// through the real binary in tests/builtin_real.rs.
