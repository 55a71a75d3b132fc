//! The fsutil diffcopy RECEIVER: the local exporter (FileSend) streams a tree to us
//! and we write it under a destination directory, merged over what is there.
//!
//! The protocol: the sender lists the tree as STAT packets (depth-first, sorted, each
//! parent before its children), then an empty STAT; a file's id is the index of its
//! STAT. We answer REQ{id} for every regular file; the sender streams DATA{id, chunk}
//! ... DATA{id, empty}, several files interleaved. When every file is in we send FIN
//! and the sender answers FIN. ERR{message} may come either way.
//!
//! Nothing lands outside `dest`: each path must be relative, clean, without `..`, in
//! order, and its parent must be a directory sent earlier in this transfer, which we
//! made (or found) as a real directory; so no write goes through a symlink. Disk work
//! runs on a blocking thread fed by a bounded channel: memory is flat in file sizes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use bollard_buildkit_proto::fsutil::types::{packet::PacketType, Packet, Stat};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::disk::{DiskWriter, Op};
use super::mode;

/// Why a local export could not be received.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("the exporter sent an invalid entry {path:?}: {reason}")]
    BadEntry { path: String, reason: String },
    #[error("the exporter broke the protocol: {0}")]
    Protocol(String),
    #[error("the exporter failed: {0}")]
    Sender(String),
    #[error("the export stream broke: {0}")]
    Stream(String),
    #[error("the export stream ended before every file had arrived")]
    Truncated,
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a finished transfer wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// STAT entries in the listing (directories, files, links...).
    pub entries: u64,
    /// Regular files whose content arrived.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Chunks in flight to the disk thread (fsutil chunks are 32 KiB: about 2 MiB).
const DISK_QUEUE: usize = 64;

/// Receive one fsutil transfer from `incoming` into `dest`, answering on `outgoing`.
/// On our own failure an ERR packet tells the sender why.
pub async fn receive<S, E>(
    incoming: S,
    outgoing: mpsc::UnboundedSender<Packet>,
    dest: &Path,
) -> Result<Received, ReceiveError>
where
    S: Stream<Item = Result<Packet, E>> + Unpin,
    E: std::fmt::Display,
{
    let result = run(incoming, &outgoing, dest).await;
    if let Err(e) = &result {
        if !matches!(e, ReceiveError::Sender(_) | ReceiveError::Stream(_)) {
            let _ = outgoing.send(Packet {
                r#type: PacketType::PacketErr as i32,
                data: e.to_string().into_bytes(),
                ..Default::default()
            });
        }
    }
    result
}

async fn run<S, E>(
    mut incoming: S,
    outgoing: &mpsc::UnboundedSender<Packet>,
    dest: &Path,
) -> Result<Received, ReceiveError>
where
    S: Stream<Item = Result<Packet, E>> + Unpin,
    E: std::fmt::Display,
{
    std::fs::create_dir_all(dest).map_err(|source| ReceiveError::Write {
        path: dest.to_path_buf(),
        source,
    })?;
    let mut disk = DiskThread::start(dest.to_path_buf());
    let mut listing = Listing::default();
    let mut wanted: HashSet<u32> = HashSet::new();
    let mut listed = false;
    let mut next_id: u32 = 0;
    let mut got = Received::default();
    while !(listed && wanted.is_empty()) {
        let packet = next_packet(&mut incoming)
            .await?
            .ok_or(ReceiveError::Truncated)?;
        match PacketType::try_from(packet.r#type) {
            Ok(PacketType::PacketStat) => {
                if listed {
                    return Err(ReceiveError::Protocol(
                        "a STAT after the listing ended".into(),
                    ));
                }
                let Some(stat) = packet.stat else {
                    listed = true;
                    continue;
                };
                let id = next_id;
                next_id = next_id
                    .checked_add(1)
                    .ok_or_else(|| ReceiveError::Protocol("too many entries".into()))?;
                got.entries += 1;
                let op = listing.admit(id, stat)?;
                if let Some(Op::FileStart { id, .. }) = &op {
                    wanted.insert(*id);
                    outgoing
                        .send(Packet {
                            r#type: PacketType::PacketReq as i32,
                            id: *id,
                            ..Default::default()
                        })
                        .map_err(|_| {
                            ReceiveError::Stream("the exporter stopped listening".into())
                        })?;
                }
                if let Some(op) = op {
                    disk.send(op).await?;
                }
            }
            Ok(PacketType::PacketData) => {
                if !wanted.contains(&packet.id) {
                    return Err(ReceiveError::Protocol(format!(
                        "data for file id {} that was not requested (or already complete)",
                        packet.id
                    )));
                }
                if packet.data.is_empty() {
                    wanted.remove(&packet.id);
                    got.files += 1;
                    disk.send(Op::FileEnd { id: packet.id }).await?;
                } else {
                    got.bytes += packet.data.len() as u64;
                    disk.send(Op::Data {
                        id: packet.id,
                        chunk: packet.data,
                    })
                    .await?;
                }
            }
            Ok(PacketType::PacketErr) => {
                return Err(ReceiveError::Sender(
                    String::from_utf8_lossy(&packet.data).into_owned(),
                ))
            }
            Ok(PacketType::PacketFin) => {
                return Err(ReceiveError::Protocol(
                    "FIN before every requested file had arrived".into(),
                ))
            }
            Ok(PacketType::PacketReq) | Err(_) => {
                return Err(ReceiveError::Protocol(format!(
                    "unexpected packet type {}",
                    packet.r#type
                )))
            }
        }
    }
    disk.finish().await?;
    outgoing
        .send(Packet {
            r#type: PacketType::PacketFin as i32,
            ..Default::default()
        })
        .map_err(|_| ReceiveError::Stream("the exporter stopped listening".into()))?;
    // The sender answers our FIN with its own and is done; an end of stream is fine too.
    if let Some(packet) = next_packet(&mut incoming).await? {
        match PacketType::try_from(packet.r#type) {
            Ok(PacketType::PacketFin) => {}
            Ok(PacketType::PacketErr) => {
                return Err(ReceiveError::Sender(
                    String::from_utf8_lossy(&packet.data).into_owned(),
                ))
            }
            _ => {
                return Err(ReceiveError::Protocol(format!(
                    "packet type {} after FIN",
                    packet.r#type
                )))
            }
        }
    }
    Ok(got)
}

async fn next_packet<S, E>(incoming: &mut S) -> Result<Option<Packet>, ReceiveError>
where
    S: Stream<Item = Result<Packet, E>> + Unpin,
    E: std::fmt::Display,
{
    match incoming.next().await {
        None => Ok(None),
        Some(Ok(p)) => Ok(Some(p)),
        Some(Err(e)) => Err(ReceiveError::Stream(e.to_string())),
    }
}

/// The blocking disk writer and the channel that feeds it.
struct DiskThread {
    tx: Option<mpsc::Sender<Op>>,
    handle: Option<tokio::task::JoinHandle<Result<(), ReceiveError>>>,
}

impl DiskThread {
    fn start(dest: PathBuf) -> Self {
        let (tx, rx) = mpsc::channel(DISK_QUEUE);
        let handle = tokio::task::spawn_blocking(move || DiskWriter::new(dest).run(rx));
        DiskThread {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    async fn send(&mut self, op: Op) -> Result<(), ReceiveError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(op).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped: its error is the news.
        Err(self
            .join()
            .await
            .err()
            .unwrap_or_else(|| ReceiveError::Protocol("the disk writer stopped".into())))
    }

    async fn finish(&mut self) -> Result<(), ReceiveError> {
        self.send(Op::Finish).await?;
        self.join().await
    }

    async fn join(&mut self) -> Result<(), ReceiveError> {
        self.tx = None;
        match self.handle.take() {
            Some(handle) => handle.await.unwrap_or_else(|e| {
                Err(ReceiveError::Protocol(format!(
                    "the disk writer failed: {e}"
                )))
            }),
            None => Ok(()),
        }
    }
}

/// The listing so far: checks order and parents, turns STATs into disk operations.
#[derive(Default)]
struct Listing {
    /// Directories open around the current entry, outermost first.
    dirs: Vec<String>,
    last: Option<String>,
    /// Non-directory entries so far: the only valid hard-link targets.
    linkable: HashSet<String>,
}

impl Listing {
    fn admit(&mut self, id: u32, stat: Stat) -> Result<Option<Op>, ReceiveError> {
        let bad = |reason: String| ReceiveError::BadEntry {
            path: stat.path.clone(),
            reason,
        };
        let path = stat.path.as_str();
        clean_relative(path).map_err(bad)?;
        if let Some(last) = &self.last {
            if compare_paths(last, path) != std::cmp::Ordering::Less {
                return Err(bad(format!("out of order (it follows {last:?})")));
            }
        }
        let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        while let Some(top) = self.dirs.last() {
            if parent == top
                || (parent.starts_with(top.as_str()) && parent.as_bytes()[top.len()] == b'/')
            {
                break;
            }
            self.dirs.pop();
        }
        if !parent.is_empty() && self.dirs.last().map(String::as_str) != Some(parent) {
            return Err(bad(format!(
                "its parent {parent:?} was not sent as a directory before it"
            )));
        }
        self.last = Some(stat.path.clone());
        let go = stat.mode;
        let rel = stat.path.clone();
        let op = if go & mode::MODE_DIR != 0 {
            self.dirs.push(rel.clone());
            Op::Dir {
                rel,
                perms: mode::unix_permissions(go),
                mtime: stat.mod_time,
            }
        } else if go & mode::MODE_SYMLINK != 0 {
            if stat.linkname.is_empty() || stat.linkname.contains('\0') {
                return Err(bad("a symlink without a valid target".into()));
            }
            self.linkable.insert(rel.clone());
            Op::Symlink {
                rel,
                target: stat.linkname,
                mtime: stat.mod_time,
            }
        } else if go & (mode::MODE_NAMED_PIPE | mode::MODE_DEVICE) != 0 {
            self.linkable.insert(rel.clone());
            Op::Special {
                rel,
                st_mode: mode::unix_mode(go),
                major: stat.devmajor,
                minor: stat.devminor,
                mtime: stat.mod_time,
            }
        } else if !mode::is_regular(go) {
            // Sockets and irregular files cannot be recreated: skipped, as fsutil does.
            return Ok(None);
        } else if !stat.linkname.is_empty() {
            clean_relative(&stat.linkname)
                .map_err(|r| bad(format!("hard link target {:?}: {r}", stat.linkname)))?;
            if !self.linkable.contains(&stat.linkname) {
                return Err(bad(format!(
                    "hard link to {:?}, which is not an earlier file of this transfer",
                    stat.linkname
                )));
            }
            self.linkable.insert(rel.clone());
            Op::HardLink {
                rel,
                target: stat.linkname,
            }
        } else {
            self.linkable.insert(rel.clone());
            Op::FileStart {
                id,
                rel,
                perms: mode::unix_permissions(go),
                mtime: stat.mod_time,
            }
        };
        Ok(Some(op))
    }
}

/// A path as fsutil must send it: relative, `/`-separated, no empty, `.` or `..` part.
pub fn clean_relative(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("an empty path".into());
    }
    if path.starts_with('/') {
        return Err("an absolute path".into());
    }
    if path.contains('\0') {
        return Err("a NUL byte in the path".into());
    }
    for part in path.split('/') {
        match part {
            "" | "." => return Err("an unclean path (empty or `.` component)".into()),
            ".." => return Err("a `..` component".into()),
            _ => {}
        }
    }
    Ok(())
}

/// fsutil's path order: component by component, byte-wise (a parent before its children).
pub fn compare_paths(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/')
        .map(str::as_bytes)
        .cmp(b.split('/').map(str::as_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_or_unclean_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "./a",
            "a/",
            "a\0b",
        ] {
            assert!(clean_relative(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a/b", "..a", "a..", ".hidden/x", "ünï/çödé"] {
            assert!(clean_relative(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn order_puts_children_before_later_siblings() {
        use std::cmp::Ordering::Less;
        assert_eq!(compare_paths("a", "a/b"), Less);
        assert_eq!(compare_paths("a/z", "a-b"), Less);
        assert_eq!(compare_paths("a/b", "ab"), Less);
        assert_eq!(compare_paths("B", "a"), Less);
    }
}
