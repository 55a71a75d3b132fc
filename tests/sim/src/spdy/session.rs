//! The kubelet's side of a port-forward SPDY/3.1 session.
//!
//! One task runs the session: a reader loop (frames from kubectl) and a writer loop
//! (the only place frames are serialised and header blocks compressed), joined.
//! Each (error, data) stream pair, matched by `requestid`, gets its own task that
//! connects to the pod and relays bytes both ways. Backpressure: bounded channels
//! everywhere; a pair whose pod does not read stalls the reader (as with the real
//! kubelet, whose spdystream hands data frames over unbuffered). SPDY flow control is
//! not used: kubectl's spdystream neither sends nor honours WINDOW_UPDATE.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::frame::{self, rst, Frame, FLAG_FIN};
use super::headers;
use crate::stream::{BoxStream, PortConnector};

/// Bytes asked of the connection per read.
const CONN_READ: usize = 256 * 1024;
/// Bytes asked of a pod connection per read.
const POD_READ: usize = 256 * 1024;
/// Largest data frame we send.
const MAX_DATA: usize = 64 * 1024;
/// The writer flushes once this much is batched (or nothing more is queued).
const WRITE_BATCH: usize = 256 * 1024;
/// Frames queued for the writer, from all pairs together.
const OUT_QUEUE: usize = 64;
/// Data frames queued from kubectl towards one pod connection.
const INBOUND_QUEUE: usize = 16;

/// What the writer sends.
#[derive(Debug)]
enum Out {
    /// SYN_REPLY with an empty header block (what the kubelet answers).
    Reply {
        stream_id: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    Rst {
        stream_id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
}

/// Byte source of a session: a raw upgraded connection or a WebSocket.
trait Source: Send {
    /// Append what arrives to `buf`; `Ok(0)` is the end of the connection.
    fn read_into(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send;
}

/// Byte sink of a session.
trait Sink: Send {
    /// Send all of `buf` (and clear it).
    fn write_out(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<()>> + Send;
    /// Close our direction.
    fn finish(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

struct IoSource<R>(R);
struct IoSink<W>(W);

impl<R: AsyncRead + Unpin + Send> Source for IoSource<R> {
    async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < CONN_READ / 4 {
            buf.reserve(CONN_READ);
        }
        self.0.read_buf(buf).await
    }
}

impl<W: AsyncWrite + Unpin + Send> Sink for IoSink<W> {
    async fn write_out(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        self.0.write_all(buf).await?;
        buf.clear();
        self.0.flush().await
    }

    async fn finish(&mut self) -> io::Result<()> {
        self.0.shutdown().await
    }
}

struct WsSource<S>(SplitStream<WebSocketStream<S>>);
struct WsSink<S>(SplitSink<WebSocketStream<S>, Message>);

fn ws_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Source for WsSource<S> {
    async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            match self.0.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(0),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(0),
                Some(Err(e)) => return Err(ws_error(e)),
                Some(Ok(Message::Binary(b))) => {
                    if b.is_empty() {
                        continue;
                    }
                    buf.extend_from_slice(&b);
                    return Ok(b.len());
                }
                Some(Ok(Message::Text(_))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket message in a SPDY tunnel",
                    ))
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Sink for WsSink<S> {
    async fn write_out(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        let msg = Message::Binary(buf.split().freeze());
        self.0.send(msg).await.map_err(ws_error)
    }

    async fn finish(&mut self) -> io::Result<()> {
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        // The peer may have closed first (tungstenite then already answered).
        let _ = self.0.send(close).await;
        match self.0.close().await {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Ok(()),
            Err(e) => Err(ws_error(e)),
        }
    }
}

/// Serve a port-forward SPDY/3.1 session on a raw upgraded connection.
pub async fn serve_portforward<IO>(io: IO, connect: PortConnector) -> io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (r, w): (ReadHalf<IO>, WriteHalf<IO>) = tokio::io::split(io);
    run(IoSource(r), IoSink(w), connect).await
}

/// Serve a port-forward SPDY/3.1 session tunnelled in binary WebSocket messages
/// (subprotocol `SPDY/3.1+portforward.k8s.io`).
pub async fn serve_portforward_ws<S>(
    ws: WebSocketStream<S>,
    connect: PortConnector,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    run(WsSource(stream), WsSink(sink), connect).await
}

async fn run<R: Source, W: Sink>(source: R, sink: W, connect: PortConnector) -> io::Result<()> {
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    let reader = async move {
        let mut session = Session::new(tx, connect);
        let result = session.read_loop(source).await;
        // Whatever ended the session, no pair outlives it.
        session.pairs.shutdown().await;
        result
        // `session` (and with it the last queue sender) is dropped here, which lets
        // the writer drain and finish.
    };
    let (read, write) = tokio::join!(reader, write_loop(sink, rx));
    match (read, write) {
        (Ok(()), write) => write,
        // The reader only noticed that the writer failed: report the writer's error.
        (Err(r), Err(w)) if r.kind() == io::ErrorKind::BrokenPipe => Err(w),
        (Err(r), _) => Err(r),
    }
}

async fn write_loop<W: Sink>(mut sink: W, mut rx: mpsc::Receiver<Out>) -> io::Result<()> {
    let result = async {
        let mut compressor = headers::Compressor::new()?;
        let empty_block = headers::encode_block::<&str, &str>(&[]);
        let mut buf = BytesMut::with_capacity(WRITE_BATCH + MAX_DATA + 64);
        while let Some(item) = rx.recv().await {
            let mut next = Some(item);
            while let Some(item) = next.take() {
                match item {
                    Out::Data {
                        stream_id,
                        fin,
                        data,
                    } => {
                        let flags = if fin { FLAG_FIN } else { 0 };
                        frame::put_data_header(&mut buf, stream_id, flags, data.len());
                        buf.extend_from_slice(&data);
                    }
                    Out::Reply { stream_id } => {
                        let block = compressor.compress(&empty_block)?;
                        Frame::SynReply {
                            stream_id,
                            flags: 0,
                            header_block: block.into(),
                        }
                        .encode(&mut buf);
                    }
                    Out::Rst { stream_id, status } => {
                        Frame::RstStream { stream_id, status }.encode(&mut buf)
                    }
                    Out::Ping { id } => Frame::Ping { id }.encode(&mut buf),
                }
                if buf.len() < WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            sink.write_out(&mut buf).await?;
        }
        Ok::<_, io::Error>(())
    }
    .await;
    // Closing the queue tells the reader and the pairs the connection is gone.
    drop(rx);
    let finished = sink.finish().await;
    result.and(finished.or_else(|e| match e.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::NotConnected
        | io::ErrorKind::ConnectionReset => Ok(()),
        _ => Err(e),
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Error,
    Data,
}

/// Resets kubectl sent for a pair's streams.
#[derive(Debug, Default, Clone, Copy)]
struct Resets {
    data: bool,
    error: bool,
}

struct StreamEntry {
    kind: Kind,
    /// Towards the pod (data streams, until kubectl's FIN or RST).
    inbound: Option<mpsc::Sender<Bytes>>,
    resets: Arc<watch::Sender<Resets>>,
}

/// A pair still waiting for one of its streams.
struct Pending {
    error_id: Option<u32>,
    data: Option<(u32, u16, mpsc::Receiver<Bytes>)>,
    resets: Arc<watch::Sender<Resets>>,
}

struct Session {
    out: mpsc::Sender<Out>,
    connect: PortConnector,
    decompressor: headers::Decompressor,
    streams: HashMap<u32, StreamEntry>,
    pending: HashMap<String, Pending>,
    pairs: JoinSet<(u32, u32)>,
    gone_away: bool,
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "port-forward connection writer stopped",
    )
}

impl Session {
    fn new(out: mpsc::Sender<Out>, connect: PortConnector) -> Self {
        Session {
            out,
            connect,
            decompressor: headers::Decompressor::new(),
            streams: HashMap::new(),
            pending: HashMap::new(),
            pairs: JoinSet::new(),
            gone_away: false,
        }
    }

    async fn read_loop<R: Source>(&mut self, mut source: R) -> io::Result<()> {
        let mut buf = BytesMut::with_capacity(CONN_READ);
        loop {
            while let Some(frame) = frame::decode(&mut buf)? {
                self.handle(frame).await?;
            }
            if let Some(total) = frame::pending_len(&buf) {
                if total > buf.capacity() {
                    buf.reserve(total - buf.len());
                }
            }
            tokio::select! {
                read = source.read_into(&mut buf) => {
                    if read? == 0 {
                        if buf.is_empty() {
                            return Ok(());
                        }
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "port-forward connection ended inside a SPDY frame",
                        ));
                    }
                }
                Some(done) = self.pairs.join_next(), if !self.pairs.is_empty() => {
                    if let Ok((error_id, data_id)) = done {
                        self.streams.remove(&error_id);
                        self.streams.remove(&data_id);
                    }
                }
                _ = self.out.closed() => return Err(gone()),
            }
        }
    }

    async fn send(&self, item: Out) -> io::Result<()> {
        self.out.send(item).await.map_err(|_| gone())
    }

    async fn handle(&mut self, frame: Frame) -> io::Result<()> {
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let Some(entry) = self.streams.get_mut(&stream_id) else {
                    return Ok(()); // unknown or finished stream: drop
                };
                if entry.kind == Kind::Data && !data.is_empty() {
                    if let Some(tx) = entry.inbound.clone() {
                        let delivered = tokio::select! {
                            sent = tx.send(data) => sent.is_ok(),
                            _ = self.out.closed() => return Err(gone()),
                        };
                        if !delivered {
                            // The pair is done with the pod; drop what follows.
                            if let Some(entry) = self.streams.get_mut(&stream_id) {
                                entry.inbound = None;
                            }
                        }
                    }
                }
                if flags & FLAG_FIN != 0 {
                    if let Some(entry) = self.streams.get_mut(&stream_id) {
                        entry.inbound = None;
                    }
                }
            }
            Frame::SynStream {
                stream_id,
                flags,
                header_block,
                ..
            } => {
                // Always inflate: the header compression state spans all frames.
                let block = self.decompressor.decompress(&header_block)?;
                let headers = headers::decode_block(&block)?;
                self.open_stream(stream_id, flags, &headers).await?;
            }
            Frame::SynReply { header_block, .. } | Frame::Headers { header_block, .. } => {
                self.decompressor.decompress(&header_block)?;
            }
            Frame::RstStream { stream_id, .. } => {
                if let Some(entry) = self.streams.get_mut(&stream_id) {
                    entry.inbound = None;
                    let kind = entry.kind;
                    entry.resets.send_modify(|r| match kind {
                        Kind::Data => r.data = true,
                        Kind::Error => r.error = true,
                    });
                }
            }
            Frame::Ping { id } => {
                // Odd ids are the client's: echo them. Even ones would answer ours.
                if !id.is_multiple_of(2) {
                    self.send(Out::Ping { id }).await?;
                }
            }
            Frame::GoAway { .. } => self.gone_away = true,
            Frame::Unknown { version, .. } if version != frame::VERSION => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("SPDY version {version} is not supported"),
                ));
            }
            Frame::Settings { .. } | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    async fn refuse(&self, stream_id: u32, status: u32) -> io::Result<()> {
        self.send(Out::Rst { stream_id, status }).await
    }

    async fn open_stream(
        &mut self,
        stream_id: u32,
        flags: u8,
        headers: &[(String, String)],
    ) -> io::Result<()> {
        if stream_id == 0 || stream_id.is_multiple_of(2) || self.streams.contains_key(&stream_id) {
            return self.refuse(stream_id, rst::PROTOCOL_ERROR).await;
        }
        if self.gone_away {
            return self.refuse(stream_id, rst::REFUSED_STREAM).await;
        }
        // The kubelet's checks: a port > 0 and a stream type of error or data.
        let port = headers::get(headers, "port").and_then(|p| p.parse::<u16>().ok());
        let kind = match headers::get(headers, "streamtype") {
            Some("error") => Some(Kind::Error),
            Some("data") => Some(Kind::Data),
            _ => None,
        };
        let (Some(port @ 1..), Some(kind)) = (port, kind) else {
            return self.refuse(stream_id, rst::REFUSED_STREAM).await;
        };
        // Old clients send no request id: pair consecutive streams as the kubelet does.
        let request = match headers::get(headers, "requestid") {
            Some(id) => id.to_string(),
            None => match kind {
                Kind::Error => stream_id.to_string(),
                Kind::Data => stream_id.saturating_sub(2).to_string(),
            },
        };
        let pending = self
            .pending
            .entry(request.clone())
            .or_insert_with(|| Pending {
                error_id: None,
                data: None,
                resets: Arc::new(watch::Sender::new(Resets::default())),
            });
        let duplicate = match kind {
            Kind::Error => pending.error_id.is_some(),
            Kind::Data => pending.data.is_some(),
        };
        if duplicate {
            return self.refuse(stream_id, rst::PROTOCOL_ERROR).await;
        }
        let resets = pending.resets.clone();
        let inbound = match kind {
            Kind::Error => {
                pending.error_id = Some(stream_id);
                None
            }
            Kind::Data => {
                let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
                pending.data = Some((stream_id, port, rx));
                // A SYN_STREAM with FIN: kubectl will send nothing on it.
                (flags & FLAG_FIN == 0).then_some(tx)
            }
        };
        self.streams.insert(
            stream_id,
            StreamEntry {
                kind,
                inbound,
                resets,
            },
        );
        // The reply goes out before the pair task exists, so before any data of it.
        self.send(Out::Reply { stream_id }).await?;

        let complete = self
            .pending
            .get(&request)
            .is_some_and(|p| p.error_id.is_some() && p.data.is_some());
        if let Some(Pending {
            error_id: Some(error_id),
            data: Some((data_id, port, inbound)),
            resets,
        }) = complete.then(|| self.pending.remove(&request)).flatten()
        {
            let pair = Pair {
                port,
                error_id,
                data_id,
                inbound,
                resets: resets.subscribe(),
                out: self.out.clone(),
            };
            self.pairs.spawn(pair.run(self.connect.clone()));
        }
        Ok(())
    }
}

/// One forwarded connection: kubectl's (error, data) streams and the pod's socket.
struct Pair {
    port: u16,
    error_id: u32,
    data_id: u32,
    inbound: mpsc::Receiver<Bytes>,
    resets: watch::Receiver<Resets>,
    out: mpsc::Sender<Out>,
}

/// How the pod-to-kubectl direction ended.
enum End {
    /// The pod closed its side.
    Eof,
    /// kubectl reset the data stream.
    Reset,
    /// The pod connection failed (or could not be made): tell kubectl.
    Failed(String),
    /// The connection to kubectl is gone.
    Gone,
}

/// Wait until kubectl resets the data stream.
async fn data_reset(mut resets: watch::Receiver<Resets>) {
    if resets.wait_for(|r| r.data).await.is_err() {
        // The session dropped the pair's state: it is ending and aborts us anyway.
        std::future::pending::<()>().await;
    }
}

impl Pair {
    async fn run(mut self, connect: PortConnector) -> (u32, u32) {
        let ids = (self.error_id, self.data_id);
        let end = tokio::select! {
            biased;
            _ = data_reset(self.resets.clone()) => End::Reset,
            pod = connect(self.port) => match pod {
                Err(message) => End::Failed(message),
                Ok(pod) => self.relay(pod).await,
            },
        };
        self.finish(end).await;
        ids
    }

    /// Move bytes both ways until the pod closes, kubectl resets, or something fails.
    async fn relay(&mut self, pod: BoxStream) -> End {
        let (mut pod_r, mut pod_w) = tokio::io::split(pod);
        let inbound = &mut self.inbound;
        let up = async move {
            let mut writable = true;
            while let Some(chunk) = inbound.recv().await {
                if writable && pod_w.write_all(&chunk).await.is_err() {
                    // Keep draining so kubectl's frames don't back up.
                    writable = false;
                }
            }
            // kubectl's FIN (or reset): half-close towards the pod.
            if writable {
                let _ = pod_w.shutdown().await;
            }
        };
        let (out, data_id, port) = (&self.out, self.data_id, self.port);
        let resets = self.resets.clone();
        let down = async move {
            let mut buf = BytesMut::new();
            loop {
                if buf.capacity() < POD_READ / 4 {
                    buf.reserve(POD_READ);
                }
                let read = tokio::select! {
                    biased;
                    _ = data_reset(resets.clone()) => return End::Reset,
                    read = pod_r.read_buf(&mut buf) => read,
                };
                match read {
                    Ok(0) => return End::Eof,
                    Ok(_) => {}
                    Err(e) => return End::Failed(format!("error forwarding port {port}: {e}")),
                }
                let mut chunk = buf.split().freeze();
                while !chunk.is_empty() {
                    let data = chunk.split_to(chunk.len().min(MAX_DATA));
                    let item = Out::Data {
                        stream_id: data_id,
                        fin: false,
                        data,
                    };
                    tokio::select! {
                        biased;
                        _ = data_reset(resets.clone()) => return End::Reset,
                        sent = out.send(item) => if sent.is_err() { return End::Gone },
                    }
                }
            }
        };
        tokio::pin!(up, down);
        let mut up_done = false;
        loop {
            tokio::select! {
                end = &mut down => return end,
                _ = &mut up, if !up_done => up_done = true,
            }
        }
    }

    async fn finish(&self, end: End) {
        let resets = *self.resets.borrow();
        let fin = |stream_id| Out::Data {
            stream_id,
            fin: true,
            data: Bytes::new(),
        };
        let mut frames = Vec::with_capacity(3);
        match end {
            End::Gone => return,
            End::Eof => {
                if !resets.data {
                    frames.push(fin(self.data_id));
                }
                if !resets.error {
                    frames.push(fin(self.error_id));
                }
            }
            End::Reset => {
                if !resets.error {
                    frames.push(fin(self.error_id));
                }
            }
            End::Failed(message) => {
                // As the kubelet: the message, then FIN on the error and data streams.
                if !resets.error {
                    frames.push(Out::Data {
                        stream_id: self.error_id,
                        fin: false,
                        data: Bytes::from(message),
                    });
                    frames.push(fin(self.error_id));
                }
                if !resets.data {
                    frames.push(fin(self.data_id));
                }
            }
        }
        for item in frames {
            if self.out.send(item).await.is_err() {
                return;
            }
        }
    }
}
