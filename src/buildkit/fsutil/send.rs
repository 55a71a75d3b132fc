//! The diffcopy SENDER (FileSync: our files to the daemon).
//!
//! One STAT per entry in walk order, then an empty STAT; meanwhile the receiver asks
//! for the regular files it lacks (REQ{id}, the id being the STAT's index) and gets
//! DATA chunks then an empty DATA; its FIN is answered with FIN. Files are read in
//! chunks into a bounded queue, so memory stays flat whatever the context's size.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use bollard_buildkit_proto::fsutil::types::{Packet, Stat};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::walk::{walk, WalkEntry, WalkError, WalkFilter};

/// Bytes of file data per DATA packet (well under every daemon's message limit).
/// With the session's queues (16 packets here, 8 relay messages) this bounds what
/// is in flight to about 2 MiB: 256 KiB chunks kept up to ~9 MiB in flight and our
/// peak RSS rose 2-3 MiB from a 16 MiB to a 1 GiB context; at 64 KiB it stays
/// within ~1 MiB, with no loss of speed (64 MiB in 0.3-0.4 s either way).
pub const CHUNK: usize = 64 * 1024;

/// Per STAT id: the regular file and its size at the walk (None: not a file).
type FileTable = Vec<Option<(PathBuf, u64)>>;

/// What one transfer moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    pub entries: u64,
    pub files_sent: u64,
    pub bytes_sent: u64,
}

/// Run the sender: `incoming` is the receiver's packets, `out` carries ours. Returns
/// when the receiver's FIN was answered (or it hung up).
pub async fn send_dir<S>(
    root: PathBuf,
    filter: WalkFilter,
    mut incoming: S,
    out: mpsc::Sender<Result<Packet, Status>>,
) -> Result<SendStats, Status>
where
    S: Stream<Item = Result<Packet, Status>> + Unpin,
{
    // id -> (file, its size at the walk), filled before the STAT with that id goes out.
    let files: Arc<Mutex<FileTable>> = Arc::default();
    let walk_task = {
        let files = files.clone();
        let out = out.clone();
        let root = root.clone();
        tokio::task::spawn_blocking(move || {
            let mut count: u64 = 0;
            let result = walk(&root, &filter, &mut |WalkEntry { stat, file }| {
                let size = stat.size.max(0) as u64;
                files
                    .lock()
                    .expect("file table")
                    .push(file.map(|f| (f, size)));
                count += 1;
                out.blocking_send(Ok(stat_packet(Some(stat))))
                    .map_err(|_| ())
            });
            match result {
                Ok(()) => {
                    let _ = out.blocking_send(Ok(stat_packet(None)));
                    Ok(count)
                }
                Err(WalkError::Stopped(())) => Ok(count),
                Err(e) => Err(e.to_string()),
            }
        })
    };

    // Files are read on one blocking thread, in the order they are asked for: a
    // small file costs one open and one read there, not a hop to the blocking pool
    // per call (thousands of files were latency-bound that way).
    let (reqs, queued) = mpsc::unbounded_channel::<(u32, PathBuf, u64)>();
    let mut reader = Some(tokio::task::spawn_blocking({
        let out = out.clone();
        move || read_requested(queued, out)
    }));
    let mut stats = SendStats::default();
    let mut walk_task = Some(walk_task);
    loop {
        let packet = match incoming.next().await {
            Some(Ok(p)) => p,
            Some(Err(status)) => return Err(status),
            None => break,
        };
        match PacketType::try_from(packet.r#type) {
            Ok(PacketType::PacketReq) => {
                let path = files
                    .lock()
                    .expect("file table")
                    .get(packet.id as usize)
                    .cloned()
                    .flatten();
                let Some(path) = path else {
                    let msg = format!(
                        "the receiver asked for entry {} which is not a file",
                        packet.id
                    );
                    let _ = out.send(Ok(err_packet(&msg))).await;
                    return Err(Status::invalid_argument(msg));
                };
                let (path, size) = path;
                if reqs.send((packet.id, path, size)).is_err() {
                    // The reader stopped: its error says why.
                    if let Some(task) = reader.take() {
                        join_reader(task).await?;
                    }
                    return Err(Status::cancelled("the session closed"));
                }
            }
            Ok(PacketType::PacketFin) => {
                // Every STAT went out before the receiver could finish.
                if let Some(task) = walk_task.take() {
                    stats.entries = join_walk(task).await?;
                }
                // Every DATA too: the reader drains what was asked, then stops.
                drop(reqs);
                if let Some(task) = reader.take() {
                    (stats.files_sent, stats.bytes_sent) = join_reader(task).await?;
                }
                let _ = out
                    .send(Ok(Packet {
                        r#type: PacketType::PacketFin as i32,
                        ..Default::default()
                    }))
                    .await;
                return Ok(stats);
            }
            Ok(PacketType::PacketErr) => {
                return Err(Status::aborted(format!(
                    "the daemon stopped the transfer: {}",
                    String::from_utf8_lossy(&packet.data)
                )))
            }
            // STAT / DATA are not sent to a sender; ignore like fsutil.
            _ => {}
        }
    }
    drop(reqs);
    if let Some(task) = reader.take() {
        (stats.files_sent, stats.bytes_sent) = join_reader(task).await?;
    }
    if let Some(task) = walk_task.take() {
        stats.entries = join_walk(task).await?;
    }
    Ok(stats)
}

async fn join_walk(task: tokio::task::JoinHandle<Result<u64, String>>) -> Result<u64, Status> {
    match task.await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(msg)) => Err(Status::internal(msg)),
        Err(e) => Err(Status::internal(format!("the file walk failed: {e}"))),
    }
}

type ReaderResult = Result<(u64, u64), Status>;

async fn join_reader(task: tokio::task::JoinHandle<ReaderResult>) -> ReaderResult {
    match task.await {
        Ok(r) => r,
        Err(e) => Err(Status::internal(format!("the file reader failed: {e}"))),
    }
}

/// The reader thread: each requested file as DATA chunks and the empty DATA that
/// ends it. Returns (files, bytes) once the request queue closes.
fn read_requested(
    mut queued: mpsc::UnboundedReceiver<(u32, PathBuf, u64)>,
    out: mpsc::Sender<Result<Packet, Status>>,
) -> ReaderResult {
    let (mut files, mut bytes) = (0u64, 0u64);
    while let Some((id, path, size)) = queued.blocking_recv() {
        match send_file(id, &path, size, &out) {
            Ok(n) => {
                files += 1;
                bytes += n;
            }
            Err(status) => {
                if status.code() != tonic::Code::Cancelled {
                    let _ = out.blocking_send(Ok(err_packet(status.message())));
                }
                return Err(status);
            }
        }
    }
    Ok((files, bytes))
}

/// Stream one file as DATA chunks and the empty DATA that ends it. `size` (from
/// the walk) sizes the buffers; the data is whatever the file holds when read.
fn send_file(
    id: u32,
    path: &std::path::Path,
    size: u64,
    out: &mpsc::Sender<Result<Packet, Status>>,
) -> Result<u64, Status> {
    use std::io::Read;
    let gone = |_| Status::cancelled("the session closed");
    let cannot_read =
        |e: std::io::Error| Status::internal(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path)
        .map_err(|e| Status::not_found(format!("cannot open {}: {e}", path.display())))?;
    let mut total = 0u64;
    let mut at_end = false;
    while !at_end {
        // One byte more than the walk saw is left to read: a read that comes back
        // short once the walk's size is reached is the end, so a small file costs
        // one read, not a second one that returns 0. A short read before that size
        // (a slow or network filesystem) just reads on. Past the walk's size (the
        // file grew since), whole chunks until a read returns 0 or comes back short.
        let remaining = size.saturating_sub(total);
        let want = if remaining == 0 && total > 0 {
            CHUNK
        } else {
            (remaining + 1).min(CHUNK as u64) as usize
        };
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            match file.read(&mut buf[filled..]) {
                Ok(0) => {
                    at_end = true;
                    break;
                }
                Ok(n) => {
                    filled += n;
                    if filled < want && total + filled as u64 >= size {
                        at_end = true;
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(cannot_read(e)),
            }
        }
        if filled > 0 {
            buf.truncate(filled);
            total += filled as u64;
            out.blocking_send(Ok(data_packet(id, buf))).map_err(gone)?;
        }
    }
    out.blocking_send(Ok(data_packet(id, Vec::new())))
        .map_err(gone)?;
    Ok(total)
}

fn stat_packet(stat: Option<Stat>) -> Packet {
    Packet {
        r#type: PacketType::PacketStat as i32,
        stat,
        ..Default::default()
    }
}

fn data_packet(id: u32, data: Vec<u8>) -> Packet {
    Packet {
        r#type: PacketType::PacketData as i32,
        id,
        data,
        ..Default::default()
    }
}

fn err_packet(msg: &str) -> Packet {
    Packet {
        r#type: PacketType::PacketErr as i32,
        data: msg.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::wrappers::ReceiverStream;

    type Item = Result<Packet, Status>;

    /// `send_dir` on `dir`, as the daemon's side sees it: where our requests go in,
    /// what the sender answers, and its task.
    fn start(
        dir: &std::path::Path,
    ) -> (
        mpsc::Sender<Item>,
        mpsc::Receiver<Item>,
        tokio::task::JoinHandle<Result<SendStats, Status>>,
    ) {
        let (to_sender, from_receiver) = mpsc::channel(16);
        let (out, from_sender) = mpsc::channel(4);
        let sender = tokio::spawn(send_dir(
            dir.to_path_buf(),
            WalkFilter::default(),
            ReceiverStream::new(from_receiver),
            out,
        ));
        (to_sender, from_sender, sender)
    }

    /// A receiver that asks for every regular file once its STAT arrives, collects
    /// the data, and finishes with FIN: the protocol as the daemon drives it.
    #[tokio::test]
    async fn every_requested_file_arrives_whole_then_fin() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("big.bin"), &big).unwrap();
        std::fs::write(dir.path().join("empty.txt"), b"").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/small"), b"hi").unwrap();

        let (to_sender, mut from_sender, sender) = start(dir.path());
        let mut stats: Vec<Stat> = Vec::new();
        let mut data: std::collections::HashMap<u32, Vec<u8>> = Default::default();
        let mut open = 0;
        let mut listing_done = false;
        while let Some(p) = from_sender.recv().await {
            let p = p.unwrap();
            match PacketType::try_from(p.r#type).unwrap() {
                PacketType::PacketStat => match p.stat {
                    Some(s) => {
                        if s.mode & super::super::mode::MODE_TYPE == 0 {
                            let id = stats.len() as u32;
                            to_sender
                                .send(Ok(Packet {
                                    r#type: PacketType::PacketReq as i32,
                                    id,
                                    ..Default::default()
                                }))
                                .await
                                .unwrap();
                            open += 1;
                        }
                        stats.push(s);
                    }
                    None => listing_done = true,
                },
                PacketType::PacketData => {
                    if p.data.is_empty() {
                        open -= 1;
                        if open == 0 && listing_done {
                            to_sender
                                .send(Ok(Packet {
                                    r#type: PacketType::PacketFin as i32,
                                    ..Default::default()
                                }))
                                .await
                                .unwrap();
                        }
                    } else {
                        data.entry(p.id).or_default().extend(p.data);
                    }
                }
                PacketType::PacketFin => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        let result = sender.await.unwrap().unwrap();
        let names: Vec<&str> = stats.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(names, vec!["big.bin", "d", "d/small", "empty.txt"]);
        assert_eq!(data[&0], big);
        assert_eq!(data[&2], b"hi");
        assert!(!data.contains_key(&3), "an empty file sends no data chunk");
        assert_eq!(result.files_sent, 3);
        assert_eq!(result.bytes_sent, big.len() as u64 + 2);
        assert_eq!(result.entries, 4);
    }

    /// A file that grew between the walk and the request is sent as it is when
    /// read, in whole chunks (the walk's size only sizes the first buffer).
    #[tokio::test]
    async fn a_file_that_grew_after_the_walk_is_sent_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grow.bin");
        std::fs::write(&path, b"0123456789").unwrap();
        let (to_sender, mut from_sender, sender) = start(dir.path());
        let grown: Vec<u8> = (0..(2 * CHUNK + 5)).map(|i| (i % 253) as u8).collect();
        let mut data = Vec::new();
        let mut packets = 0;
        while let Some(p) = from_sender.recv().await {
            let p = p.unwrap();
            match PacketType::try_from(p.r#type).unwrap() {
                PacketType::PacketStat if p.stat.is_some() => {
                    assert_eq!(p.stat.as_ref().unwrap().size, 10);
                    std::fs::write(&path, &grown).unwrap();
                    let req = Packet {
                        r#type: PacketType::PacketReq as i32,
                        id: 0,
                        ..Default::default()
                    };
                    to_sender.send(Ok(req)).await.unwrap();
                }
                PacketType::PacketData if p.data.is_empty() => {
                    let fin = Packet {
                        r#type: PacketType::PacketFin as i32,
                        ..Default::default()
                    };
                    to_sender.send(Ok(fin)).await.unwrap();
                }
                PacketType::PacketData => {
                    packets += 1;
                    data.extend(p.data);
                }
                PacketType::PacketFin => break,
                _ => {}
            }
        }
        sender.await.unwrap().unwrap();
        assert_eq!(data, grown);
        assert!(
            packets <= 4,
            "{packets} DATA packets for {} bytes",
            grown.len()
        );
    }

    /// A read that comes back short before the walk's size is not the end: a FIFO
    /// delivers the file in two writes, and every byte is sent.
    #[test]
    fn a_short_read_before_the_walks_size_reads_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("slow");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let writer = std::thread::spawn({
            let fifo = fifo.clone();
            move || {
                use std::io::Write;
                let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
                w.write_all(b"first half, ").unwrap();
                w.flush().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(200));
                w.write_all(b"second half").unwrap();
            }
        });
        let (out, mut packets) = mpsc::channel(16);
        let whole = b"first half, second half";
        let sent = send_file(7, &fifo, whole.len() as u64, &out).unwrap();
        writer.join().unwrap();
        drop(out);
        let mut data = Vec::new();
        while let Some(Ok(p)) = packets.blocking_recv() {
            assert_eq!(p.id, 7);
            data.extend(p.data);
        }
        assert_eq!(data, whole);
        assert_eq!(sent, whole.len() as u64);
    }

    #[tokio::test]
    async fn a_request_for_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let (to_sender, mut from_sender, sender) = start(dir.path());
        // Wait for the end of the listing, then ask for the directory.
        while let Some(Ok(p)) = from_sender.recv().await {
            if p.stat.is_none() {
                break;
            }
        }
        to_sender
            .send(Ok(Packet {
                r#type: PacketType::PacketReq as i32,
                id: 0,
                ..Default::default()
            }))
            .await
            .unwrap();
        let err = sender.await.unwrap().unwrap_err();
        assert!(err.message().contains("not a file"), "{err}");
    }
}
