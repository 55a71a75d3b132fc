//! FileSend over a real tonic server (in-memory duplex), called by the generated
//! clients the way buildkitd does: fsutil packets for `local`, BytesMessage chunks for
//! tarballs, with `docker load` against a real dockerd.

use std::collections::VecDeque;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bollard_buildkit_proto::fsutil::types::{packet::PacketType, Packet, Stat};
use bollard_buildkit_proto::moby::filesync::packet::file_send_client::FileSendClient as PacketClient;
use bollard_buildkit_proto::moby::filesync::v1::file_send_client::FileSendClient as BytesClient;
use bollard_buildkit_proto::moby::filesync::v1::BytesMessage;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Request;

use super::*;
use crate::buildkit::fsutil::mode::{MODE_DIR, MODE_NAMED_PIPE, MODE_SYMLINK};
use crate::buildkit::session::test_transport::serve;

const T0: i64 = 1_600_000_000_123_456_789;

struct Entry {
    stat: Stat,
    content: Vec<u8>,
}

fn entry(path: &str, mode: u32, content: &[u8]) -> Entry {
    Entry {
        stat: Stat {
            path: path.into(),
            mode,
            size: content.len() as i64,
            mod_time: T0,
            ..Default::default()
        },
        content: content.to_vec(),
    }
}

fn link(path: &str, mode: u32, target: &str) -> Entry {
    let mut e = entry(path, mode, b"");
    e.stat.linkname = target.into();
    e
}

/// What the daemon's side saw: the packet types we answered with, the final status.
struct Sent {
    answers: Vec<Packet>,
    status: Result<(), tonic::Status>,
}

/// Play fsutil's sender: list `entries`, answer each REQ with its content in 32 KiB
/// chunks, files interleaved round-robin, FIN for FIN; then close our side.
async fn send_tree(
    channel: tonic::transport::Channel,
    id: Option<&str>,
    entries: Vec<Entry>,
) -> Sent {
    let (tx, rx) = mpsc::unbounded_channel::<Packet>();
    let mut req = Request::new(UnboundedReceiverStream::new(rx));
    if let Some(id) = id {
        req.metadata_mut().insert(EXPORTER_ID, id.parse().unwrap());
    }
    for e in &entries {
        let _ = tx.send(Packet {
            r#type: PacketType::PacketStat as i32,
            stat: Some(e.stat.clone()),
            ..Default::default()
        });
    }
    let _ = tx.send(Packet::default());
    let mut answers = Vec::new();
    let mut resp = match PacketClient::new(channel).diff_copy(req).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            return Sent {
                answers,
                status: Err(status),
            }
        }
    };
    let mut active: VecDeque<(u32, usize)> = VecDeque::new();
    let status = loop {
        tokio::select! {
            biased;
            msg = resp.message() => match msg {
                Ok(Some(p)) => {
                    answers.push(p.clone());
                    match PacketType::try_from(p.r#type) {
                        Ok(PacketType::PacketReq) => active.push_back((p.id, 0)),
                        Ok(PacketType::PacketFin) => {
                            let _ = tx.send(Packet { r#type: PacketType::PacketFin as i32, ..Default::default() });
                            drop(tx);
                            break loop {
                                match resp.message().await {
                                    Ok(Some(p)) => answers.push(p),
                                    Ok(None) => break Ok(()),
                                    Err(s) => break Err(s),
                                }
                            };
                        }
                        _ => {}
                    }
                }
                Ok(None) => break Ok(()),
                Err(s) => break Err(s),
            },
            _ = std::future::ready(()), if !active.is_empty() => {
                let (id, off) = active.pop_front().unwrap();
                let content = &entries[id as usize].content;
                let end = (off + 32 * 1024).min(content.len());
                let _ = tx.send(Packet {
                    r#type: PacketType::PacketData as i32,
                    id,
                    data: content[off..end].to_vec(),
                    ..Default::default()
                });
                if off == end {
                    continue; // the empty DATA that ends the file was just sent
                }
                active.push_back((id, end));
            }
        }
    };
    Sent { answers, status }
}

fn mtime_nanos(p: &Path) -> i64 {
    let m = std::fs::symlink_metadata(p).unwrap();
    m.mtime() * 1_000_000_000 + m.mtime_nsec()
}

#[tokio::test]
async fn local_export_writes_every_kind_of_entry_with_modes_and_times() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    // Merged over what is there: unrelated files stay, exported paths are replaced.
    std::fs::create_dir_all(dest.join("bin")).unwrap();
    std::fs::write(dest.join("keep.txt"), "mine").unwrap();
    std::fs::write(dest.join("bin/run.sh"), "old").unwrap();
    std::fs::create_dir(dest.join("was-a-dir")).unwrap();
    std::fs::write(dest.join("was-a-dir/x"), "x").unwrap();
    let big: Vec<u8> = (0..5 * 1024 * 1024 + 7)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let svc = FileSendService::new(vec![ExportSink::LocalDir(dest.clone())]);
    let served = serve(svc.clone()).await;
    let entries = vec![
        entry("big.bin", 0o644, &big),
        link("big.link", 0o644, "big.bin"),
        entry("bin", MODE_DIR | 0o755, b""),
        entry("bin/run.sh", 0o755, b"#!/bin/sh\necho hi\n"),
        link("bin/sh", MODE_SYMLINK | 0o777, "/bin/busybox"),
        entry("empty", MODE_DIR | 0o700, b""),
        entry("empty.txt", 0o600, b""),
        entry("pipe", MODE_NAMED_PIPE | 0o640, b""),
        entry("ro", MODE_DIR | 0o555, b""),
        entry("ro/file", 0o444, b"read only"),
        entry("was-a-dir", 0o644, b"now a file"),
        entry("ünï cödé.txt", 0o644, "naïve".as_bytes()),
    ];
    let sent = send_tree(served.channel.clone(), None, entries).await;
    sent.status.expect("the export succeeds");
    let kinds: Vec<i32> = sent.answers.iter().map(|p| p.r#type).collect();
    assert_eq!(kinds.last(), Some(&(PacketType::PacketFin as i32)));
    // Every regular file (not the hard link) requested exactly once, by its STAT index.
    let mut reqs: Vec<u32> = sent
        .answers
        .iter()
        .filter(|p| p.r#type == PacketType::PacketReq as i32)
        .map(|p| p.id)
        .collect();
    reqs.sort();
    assert_eq!(reqs, vec![0, 3, 6, 9, 10, 11]);

    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), big);
    let meta = |p: &str| std::fs::symlink_metadata(dest.join(p)).unwrap();
    assert_eq!(meta("big.link").ino(), meta("big.bin").ino(), "hard link");
    assert_eq!(
        std::fs::read_to_string(dest.join("bin/run.sh")).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
    assert_eq!(meta("bin/run.sh").permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::read_link(dest.join("bin/sh")).unwrap(),
        PathBuf::from("/bin/busybox")
    );
    assert!(meta("empty").is_dir());
    assert_eq!(meta("empty").permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::read_dir(dest.join("empty")).unwrap().count(), 0);
    assert_eq!(meta("empty.txt").len(), 0);
    assert_eq!(meta("empty.txt").permissions().mode() & 0o777, 0o600);
    assert_eq!(meta("pipe").mode() & 0o170000, 0o010000, "a FIFO");
    assert_eq!(meta("ro").permissions().mode() & 0o777, 0o555);
    assert_eq!(meta("ro/file").permissions().mode() & 0o777, 0o444);
    assert_eq!(
        std::fs::read_to_string(dest.join("was-a-dir")).unwrap(),
        "now a file"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("ünï cödé.txt")).unwrap(),
        "naïve"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("keep.txt")).unwrap(),
        "mine"
    );
    for p in [
        "big.bin",
        "bin",
        "bin/run.sh",
        "bin/sh",
        "empty",
        "pipe",
        "ro",
        "ro/file",
    ] {
        assert_eq!(mtime_nanos(&dest.join(p)), T0, "mtime of {p}");
    }
    // No temporary names left behind.
    let stray = walk(&dest)
        .into_iter()
        .filter(|p| p.contains(".tmp"))
        .count();
    assert_eq!(stray, 0);
    let outcomes = svc.outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].result, Ok(big.len() as u64 + 18 + 10 + 9 + 6));
    let _ = std::fs::set_permissions(dest.join("ro"), std::fs::Permissions::from_mode(0o755));
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.file_name().to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[tokio::test]
async fn paths_that_would_escape_or_break_order_are_refused_before_any_write_outside() {
    let attacks: Vec<(&str, Vec<Entry>)> = vec![
        ("absolute", vec![entry("/tmp/escape", 0o644, b"x")]),
        ("dotdot", vec![entry("../escape", 0o644, b"x")]),
        (
            "inner dotdot",
            vec![
                entry("a", MODE_DIR | 0o755, b""),
                entry("a/../../escape", 0o644, b"x"),
            ],
        ),
        ("unclean", vec![entry("a//b", 0o644, b"x")]),
        (
            "through a symlink",
            vec![
                link("link", MODE_SYMLINK | 0o777, "../outside"),
                entry("link/secret", 0o644, b"x"),
            ],
        ),
        ("missing parent", vec![entry("x/y", 0o644, b"x")]),
        (
            "parent is a file",
            vec![entry("f", 0o644, b"x"), entry("f/y", 0o644, b"x")],
        ),
        (
            "unsorted",
            vec![entry("b", 0o644, b"x"), entry("a", 0o644, b"x")],
        ),
        (
            "duplicate",
            vec![entry("a", 0o644, b"x"), entry("a", 0o644, b"y")],
        ),
        (
            "hard link outside",
            vec![link("h", 0o644, "../outside/secret")],
        ),
        ("hard link forward", vec![link("h", 0o644, "z")]),
    ];
    for (name, entries) in attacks {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "untouched").unwrap();
        let svc = FileSendService::new(vec![ExportSink::LocalDir(dest.clone())]);
        let served = serve(svc.clone()).await;
        let sent = send_tree(served.channel.clone(), Some("0"), entries).await;
        let status = sent.status.expect_err(name);
        assert!(
            status.message().contains("invalid entry"),
            "{name}: {}",
            status.message()
        );
        let err = sent
            .answers
            .iter()
            .find(|p| p.r#type == PacketType::PacketErr as i32)
            .unwrap_or_else(|| panic!("{name}: the sender was told (ERR)"));
        assert!(
            String::from_utf8_lossy(&err.data).contains("invalid entry"),
            "{name}"
        );
        let mut top: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, ["dest", "outside"], "{name}");
        assert_eq!(walk(&outside), ["secret"], "{name}");
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "untouched"
        );
        assert!(std::fs::symlink_metadata(dest.join("h")).is_err(), "{name}");
        assert!(
            matches!(svc.outcomes()[0].result, Err(ExportError::Local { .. })),
            "{name}"
        );
    }
}

#[tokio::test]
async fn data_for_a_file_never_requested_is_a_protocol_error() {
    let tmp = tempfile::tempdir().unwrap();
    let svc = FileSendService::new(vec![ExportSink::LocalDir(tmp.path().join("d"))]);
    let served = serve(svc).await;
    let (tx, rx) = mpsc::unbounded_channel::<Packet>();
    tx.send(Packet {
        r#type: PacketType::PacketData as i32,
        id: 7,
        data: b"sneaky".to_vec(),
        ..Default::default()
    })
    .unwrap();
    let mut resp = PacketClient::new(served.channel.clone())
        .diff_copy(UnboundedReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut last = Ok(None);
    for _ in 0..3 {
        last = resp.message().await;
        if last.is_err() {
            break;
        }
    }
    let status = last.expect_err("refused");
    assert!(
        status.message().contains("not requested"),
        "{}",
        status.message()
    );
}

/// Send `data` as BytesMessage chunks to exporter `id`, closing our side at the end.
async fn send_bytes(
    channel: tonic::transport::Channel,
    id: &str,
    data: &[u8],
    chunk: usize,
) -> Result<(), tonic::Status> {
    let msgs: Vec<BytesMessage> = data
        .chunks(chunk)
        .map(|c| BytesMessage { data: c.to_vec() })
        .collect();
    let mut req = Request::new(tokio_stream::iter(msgs));
    req.metadata_mut().insert(EXPORTER_ID, id.parse().unwrap());
    let mut resp = BytesClient::new(channel).diff_copy(req).await?.into_inner();
    while resp.message().await?.is_some() {}
    Ok(())
}

#[tokio::test]
async fn a_tarball_goes_to_its_exporters_file_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("image.tar");
    let data: Vec<u8> = (0..7 * 1024 * 1024 + 3).map(|i| (i % 253) as u8).collect();
    // Exporter 0 pushes an image (nothing comes back), exporter 1 is the tarball.
    let svc = FileSendService::indexed([(1, ExportSink::File(tar.clone()))]);
    let served = serve(svc.clone()).await;
    send_bytes(served.channel.clone(), "1", &data, 3 << 20)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&tar).unwrap(), data);
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "no partial file left"
    );
    assert_eq!(svc.outcomes()[0].result, Ok(data.len() as u64));
    // An exporter we have no output for is refused, naming it.
    let err = send_bytes(served.channel.clone(), "0", b"x", 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("exporter 0"), "{}", err.message());
    let err = send_bytes(served.channel.clone(), "one", b"x", 1)
        .await
        .unwrap_err();
    assert!(err.message().contains("\"one\""), "{}", err.message());
}

#[tokio::test]
async fn a_tarball_into_a_missing_directory_is_a_clear_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("no/such/dir/out.tar");
    let svc = FileSendService::new(vec![ExportSink::File(tar.clone())]);
    let served = serve(svc.clone()).await;
    let err = send_bytes(served.channel.clone(), "0", b"abc", 1)
        .await
        .unwrap_err();
    assert!(err.message().contains("out.tar"), "{}", err.message());
    match &svc.outcomes()[0].result {
        Err(ExportError::File { path, .. }) => assert_eq!(path, &tar),
        other => panic!("{other:?}"),
    }
}

#[path = "filesend_docker_tests.rs"]
mod docker;
