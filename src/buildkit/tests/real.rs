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

fn processes_with(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(marker) {
                pids.push(pid);
            }
        }
    }
    pids
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
                    seen_running = !processes_with(&m).is_empty();
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
        if processes_with(&marker).is_empty() {
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

/// The Dockerfile build every output test uses: multi-stage with COPY --from, a
/// target, a build-arg, a secret mounted (its hash kept, its bytes nowhere), a
/// .dockerignore with `**` and `!`, exec bits, symlinks, empty dirs, a non-ASCII
/// name and a file of several MiB.
pub(crate) struct TreeProject {
    pub dir: tempfile::TempDir,
    pub context: std::path::PathBuf,
    pub secret_file: std::path::PathBuf,
    pub secret: Vec<u8>,
    pub big: Vec<u8>,
}

pub(crate) fn tree_project() -> TreeProject {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(ctx.join("empty_in_context")).unwrap();
    std::fs::create_dir_all(ctx.join("ignored_dir")).unwrap();
    std::fs::write(ctx.join("ignored_dir/a"), "no").unwrap();
    std::fs::write(ctx.join("run.sh"), "#!/bin/sh\necho run\n").unwrap();
    std::fs::set_permissions(ctx.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(ctx.join("h\u{e9}llo w\u{f6}rld.txt"), "unicode\n").unwrap();
    std::fs::write(ctx.join("keep.tmp"), "kept by !\n").unwrap();
    std::fs::write(ctx.join("x.tmp"), "dropped\n").unwrap();
    std::fs::write(ctx.join("sub/deeper/y.tmp"), "dropped\n").unwrap();
    std::fs::write(ctx.join("sub/deeper/z.txt"), "z\n").unwrap();
    std::os::unix::fs::symlink("z.txt", ctx.join("sub/deeper/to_z")).unwrap();
    let big: Vec<u8> = (0..(5 << 20) + 123)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(ctx.join("big.bin"), &big).unwrap();
    std::fs::write(
        ctx.join(".dockerignore"),
        "**/*.tmp\n!keep.tmp\nignored_dir\n",
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {BUSYBOX} AS base\n\
             ARG GREETING=unset\n\
             RUN mkdir -p /out/empty/inner && echo \"$GREETING\" > /out/greeting && ln -s greeting /out/link\n\
             RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -c1-64 > /out/secret.sha\n\
             COPY . /out/ctx/\n\
             FROM scratch AS final\n\
             COPY --from=base /out /\n\
             FROM scratch AS other\n\
             COPY --from=base /out/greeting /other-stage\n"
        ),
    )
    .unwrap();
    let secret = format!("tok-{}", crate::buildkit::solve::random_id()).into_bytes();
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(&secret_file, &secret).unwrap();
    TreeProject {
        dir,
        context: ctx,
        secret_file,
        secret,
        big,
    }
}

/// Check a tree the daemon exported for the TreeProject's final stage.
pub(crate) fn check_tree(root: &std::path::Path, p: &TreeProject) {
    use sha2::Digest;
    use std::os::unix::fs::PermissionsExt;
    let read = |rel: &str| std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(read("greeting"), "h\u{e9} there\n".as_bytes());
    assert_eq!(
        std::fs::read_link(root.join("link")).unwrap(),
        std::path::Path::new("greeting")
    );
    assert!(root.join("empty/inner").is_dir());
    assert_eq!(
        std::fs::read_dir(root.join("empty/inner")).unwrap().count(),
        0
    );
    let sha = format!("{:x}", sha2::Sha256::digest(&p.secret));
    assert_eq!(String::from_utf8(read("secret.sha")).unwrap().trim(), sha);
    assert_eq!(read("ctx/big.bin"), p.big);
    let mode = std::fs::metadata(root.join("ctx/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "exec bits survive");
    assert_eq!(read("ctx/h\u{e9}llo w\u{f6}rld.txt"), b"unicode\n");
    assert_eq!(read("ctx/keep.tmp"), b"kept by !\n");
    assert!(!root.join("ctx/x.tmp").exists(), ".dockerignore **/*.tmp");
    assert!(
        !root.join("ctx/sub/deeper/y.tmp").exists(),
        ".dockerignore **/*.tmp below"
    );
    assert!(!root.join("ctx/ignored_dir").exists());
    assert_eq!(read("ctx/sub/deeper/z.txt"), b"z\n");
    assert_eq!(
        std::fs::read_link(root.join("ctx/sub/deeper/to_z")).unwrap(),
        std::path::Path::new("z.txt")
    );
    assert!(root.join("ctx/empty_in_context").is_dir());
    assert!(
        !root.join("other-stage").exists(),
        "only the target stage is exported"
    );
    // The secret's bytes are in no exported file.
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let data = std::fs::read(e.path()).unwrap();
                assert!(
                    !data
                        .windows(p.secret.len())
                        .any(|w| w == p.secret.as_slice()),
                    "secret in {:?}",
                    e.path()
                );
            }
        }
    }
}

#[tokio::test]
async fn a_local_export_tree_is_what_the_dockerfile_makes() {
    let Some(stream) = dial().await else { return };
    let p = tree_project();
    let dest = p.dir.path().join("out");
    let build = LocalBuild {
        solve: SolveOptions {
            dockerfile_name: "Dockerfile".into(),
            target: Some("final".into()),
            build_args: vec![("GREETING".into(), "h\u{e9} there".into())],
            network: NetworkMode::None,
            exports: vec![ExportEntry {
                kind: "local".into(),
                attrs: Default::default(),
            }],
            ..Default::default()
        },
        context: p.context.clone(),
        dockerfile_dir: p.context.clone(),
        secrets: HashMap::from([("tok".to_string(), SecretSource::File(p.secret_file.clone()))]),
        sinks: vec![Some(
            crate::buildkit::session::filesend::ExportSink::LocalDir(dest.clone()),
        )],
        shared_key: shared_key(&p.context),
        ..Default::default()
    };
    let ch = connect(stream).await.unwrap();
    let report = run_build(
        ch,
        &build,
        |r| r,
        crate::buildkit::progress::ProgressMode::Quiet,
        Box::new(std::io::sink()),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(report
        .summary
        .vertices
        .iter()
        .any(|v| v.name.contains("COPY --from=base")));
    check_tree(&dest, &p);
}
