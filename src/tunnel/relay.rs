//! One local connection relayed to a pod, failing over to the next pod in fallback
//! order until the chosen pod has sent its first byte.
//!
//! Until the pod speaks, what buildctl sent is kept (up to [`REPLAY_LIMIT`]) so it can be
//! replayed to the next pod; after the pod's first byte the connection belongs to that
//! pod, and a failure ends it (buildctl sees the error and reports it).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::TunnelError;
use super::events::TunnelEvent;
use super::failover::{AttemptFailure, Unreachable};
use super::remote::{Event, RemoteRx, RemoteTx, FRAME};
use super::TunnelShared;

/// What we keep of buildctl's bytes for replay before the pod's first byte.
const REPLAY_LIMIT: usize = 4 * 1024 * 1024;

/// How the connection ended, for logs and tests.
#[derive(Debug)]
pub enum Outcome {
    /// Relayed to this pod until one side finished.
    Served { pod: String, up: u64, down: u64 },
    /// No pod could take it.
    Unreachable(Unreachable),
}

pub async fn serve<L>(local: L, shared: Arc<TunnelShared>, conn_id: u64) -> Outcome
where
    L: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let walk = &shared.failover;
    let (mut lr, mut lw) = tokio::io::split(local);
    let mut replay: Vec<Bytes> = Vec::new();
    let mut replay_len = 0usize;
    let mut replayable = true;
    let mut local_eof = false;
    // Why each pod tried could not take the connection.
    let mut attempts: Vec<AttemptFailure> = Vec::new();

    let mut previous: Option<String> = None;
    while let Some(pod) = walk.next_candidate(previous.as_deref()) {
        if let Some(failed) = attempts.last() {
            (shared.report)(TunnelEvent::FailingOver {
                conn: conn_id,
                failed: failed.clone(),
                next: pod.clone(),
            });
        }
        previous = Some(pod.clone());
        (shared.report)(TunnelEvent::Dialing {
            conn: conn_id,
            pod: pod.clone(),
            transport: walk.transport().describe(),
        });
        let (mut tx, mut rx) = match walk.dial(&pod).await {
            Ok(conn) => conn.into_parts(),
            Err(e) => {
                walk.mark_bad(&pod);
                attempts.push(AttemptFailure::Tunnel(e));
                continue;
            }
        };
        // Phase 1: replay, then forward while waiting for the pod's first byte.
        let first = match first_byte(
            &pod,
            &mut lr,
            &mut tx,
            &mut rx,
            &mut replay,
            &mut replay_len,
            &mut replayable,
            &mut local_eof,
        )
        .await
        {
            Ok(b) => b,
            Err(why) => {
                tx.close().await;
                walk.mark_bad(&pod);
                attempts.push(AttemptFailure::Tunnel(why));
                if !replayable {
                    attempts.push(AttemptFailure::Tunnel(TunnelError::ReplayLimit {
                        pod: pod.clone(),
                        limit_mib: REPLAY_LIMIT >> 20,
                    }));
                    break;
                }
                continue;
            }
        };
        drop(replay);
        walk.mark_served(&pod);
        (shared.report)(TunnelEvent::Answered {
            conn: conn_id,
            pod: pod.clone(),
        });
        let failed = |error: TunnelError, expected: bool| {
            (shared.report)(TunnelEvent::StreamFailed {
                conn: conn_id,
                error,
                expected,
            })
        };
        let (up, down) = relay(lr, lw, tx, rx, first, local_eof, failed).await;
        return Outcome::Served { pod, up, down };
    }
    let _ = lw.shutdown().await;
    Outcome::Unreachable(Unreachable { attempts })
}

/// Replay what buildctl sent so far, then forward until the pod sends data.
#[allow(clippy::too_many_arguments)]
async fn first_byte<R: AsyncRead + Unpin>(
    pod: &str,
    lr: &mut R,
    tx: &mut RemoteTx,
    rx: &mut RemoteRx,
    replay: &mut Vec<Bytes>,
    replay_len: &mut usize,
    replayable: &mut bool,
    local_eof: &mut bool,
) -> Result<Bytes, TunnelError> {
    let send_failed = |e: std::io::Error| TunnelError::SendFailed {
        pod: pod.to_string(),
        reason: e.to_string(),
    };
    for chunk in replay.iter() {
        tx.send_frame(chunk.clone()).await.map_err(send_failed)?;
    }
    if *local_eof {
        tx.close_write().await.map_err(send_failed)?;
    }
    let mut frames = FrameReader::new();
    loop {
        tokio::select! {
            ev = rx.next() => {
                return match ev {
                    Event::Data(b) => Ok(b),
                    Event::End => Err(TunnelError::NoAnswer { pod: pod.to_string() }),
                    Event::Failed(why) => Err(why),
                };
            }
            frame = frames.read(lr), if !*local_eof => {
                match frame {
                    None => {
                        *local_eof = true;
                        tx.close_write().await.map_err(send_failed)?;
                    }
                    Some(frame) => {
                        if *replayable {
                            *replay_len += frame.len();
                            if *replay_len > REPLAY_LIMIT {
                                *replayable = false;
                                replay.clear();
                            } else {
                                replay.push(frame.clone());
                            }
                        }
                        tx.send_frame(frame).await.map_err(send_failed)?;
                    }
                }
            }
        }
    }
}

/// Reads local bytes straight into WebSocket frames (channel byte 0 first), reusing
/// one allocation for as long as the frames sent before it have been released.
struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    fn new() -> Self {
        FrameReader {
            buf: BytesMut::new(),
        }
    }

    /// The next frame, or None at EOF (or on a read error: the local side is gone).
    async fn read<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Option<Bytes> {
        self.buf.clear();
        self.buf.reserve(FRAME + 1);
        self.buf.put_u8(0);
        match r.read_buf(&mut (&mut self.buf).limit(FRAME)).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(self.buf.split().freeze()),
        }
    }
}

/// Phase 2: both directions until the pod ends the stream or the local side is gone.
async fn relay<R, W, F>(
    mut lr: R,
    mut lw: W,
    mut tx: RemoteTx,
    mut rx: RemoteRx,
    first: Bytes,
    local_eof: bool,
    failed: F,
) -> (u64, u64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: Fn(TunnelError, bool),
{
    let half_close = tx.has_half_close();
    // Bytes sent up so far, readable even when the pod ends first and the upward
    // task is dropped mid-way.
    let sent_up = std::sync::atomic::AtomicU64::new(0);
    // Set when we close a stream that has no half-close: the pod then cannot send its
    // exit status, and the stream ending without one is our doing, not news.
    let we_closed = std::sync::atomic::AtomicBool::new(false);
    let up_task = async {
        let mut up = 0u64;
        if !local_eof {
            let mut frames = FrameReader::new();
            while let Some(frame) = frames.read(&mut lr).await {
                up += frame.len() as u64 - 1;
                sent_up.store(up, std::sync::atomic::Ordering::Relaxed);
                if tx.send_frame(frame).await.is_err() {
                    return (up, false);
                }
            }
        }
        if half_close {
            let _ = tx.close_write().await;
            (up, true)
        } else {
            // No half-close on this transport: buildctl is done with the connection,
            // so the whole stream goes.
            we_closed.store(true, std::sync::atomic::Ordering::Relaxed);
            tx.close().await;
            (up, false)
        }
    };
    let down_task = async {
        let mut down = first.len() as u64;
        if lw.write_all(&first).await.is_err() {
            return down;
        }
        loop {
            match rx.next().await {
                Event::Data(b) => {
                    down += b.len() as u64;
                    if lw.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Event::End => break,
                Event::Failed(why) => {
                    failed(why, we_closed.load(std::sync::atomic::Ordering::Relaxed));
                    break;
                }
            }
        }
        let _ = lw.shutdown().await;
        down
    };
    let counts = {
        tokio::pin!(up_task);
        tokio::pin!(down_task);
        // The pod ending its side ends the connection; the local side ending first only
        // half-closes (exec v5) and we keep reading what the pod still sends.
        tokio::select! {
            down = &mut down_task => (sent_up.load(std::sync::atomic::Ordering::Relaxed), down),
            (up, keep_reading) = &mut up_task => {
                let down = if keep_reading {
                    down_task.await
                } else {
                    // Give the pod's last bytes a moment to arrive after our close.
                    tokio::time::timeout(LINGER, down_task).await.unwrap_or(0)
                };
                (up, down)
            }
        }
    };
    tx.close().await;
    counts
}

/// How long we still read from a pod after closing a stream that has no half-close.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);
