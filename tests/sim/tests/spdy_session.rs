//! The SPDY/3.1 port-forward server against a minimal in-process client that behaves
//! like kubectl's (error stream half-closed at once, then a data stream with the same
//! requestid), over an in-memory pipe, both raw and tunnelled in WebSocket messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use kube_sim::buildkitd::{self, client, Counters, Identity};
use kube_sim::spdy::frame::{self, rst, Frame, FLAG_FIN};
use kube_sim::spdy::{headers, serve_portforward, serve_portforward_ws};
use kube_sim::stream::{BoxStream, PortConnector};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(60);
const POD_PORT: u16 = 1234;

/// A pod: buildkitd on port 1234, everything else refused like a closed port.
fn pod(counters: Arc<Counters>) -> PortConnector {
    Arc::new(move |port| {
        let counters = counters.clone();
        Box::pin(async move {
            if port != POD_PORT {
                return Err(format!(
                    "error forwarding port {port} to pod p1, uid : dial tcp 127.0.0.1:{port}: connect: connection refused"
                ));
            }
            let (ours, theirs) = tokio::io::duplex(256 * 1024);
            tokio::spawn(async move {
                let who = Identity {
                    pod: "p1".into(),
                    namespace: "ns".into(),
                };
                let _ = buildkitd::serve(theirs, &who, counters, None).await;
            });
            Ok(Box::new(ours) as BoxStream)
        })
    })
}

/// What the client sees on one stream.
#[derive(Debug)]
enum Event {
    Reply,
    Data(Bytes),
    Fin,
    Reset(u32),
}

enum ClientOut {
    Frame(Frame),
    Syn {
        stream_id: u32,
        headers: Vec<(String, String)>,
    },
}

/// A minimal SPDY client.
struct Client {
    out: mpsc::UnboundedSender<ClientOut>,
    routes: Arc<Mutex<HashMap<u32, mpsc::UnboundedSender<Event>>>>,
    pings: mpsc::UnboundedReceiver<u32>,
    next_id: u32,
    next_request: u32,
    tasks: Vec<JoinHandle<()>>,
}

/// A forwarded connection: `data` is the local end, `error` yields the error stream's
/// text once it is finished.
struct Forward {
    data: DuplexStream,
    error: oneshot::Receiver<String>,
    data_id: u32,
}

impl Client {
    fn new<IO: AsyncRead + AsyncWrite + Send + 'static>(io: IO) -> Client {
        let (mut r, mut w) = tokio::io::split(io);
        let (out, mut out_rx) = mpsc::unbounded_channel::<ClientOut>();
        let writer = tokio::spawn(async move {
            let mut compressor = headers::Compressor::new().unwrap();
            let mut buf = BytesMut::new();
            while let Some(item) = out_rx.recv().await {
                let frame = match item {
                    ClientOut::Frame(f) => f,
                    ClientOut::Syn { stream_id, headers } => Frame::SynStream {
                        stream_id,
                        associated_id: 0,
                        priority: 0,
                        slot: 0,
                        flags: 0,
                        header_block: compressor
                            .compress(&headers::encode_block(&headers))
                            .unwrap()
                            .into(),
                    },
                };
                frame.encode(&mut buf);
                if w.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
            }
            let _ = w.shutdown().await;
        });
        let routes: Arc<Mutex<HashMap<u32, mpsc::UnboundedSender<Event>>>> = Default::default();
        let (ping_tx, pings) = mpsc::unbounded_channel();
        let routes2 = routes.clone();
        let reader = tokio::spawn(async move {
            let mut decompressor = headers::Decompressor::new();
            let mut buf = BytesMut::with_capacity(1 << 20);
            loop {
                while let Some(frame) = frame::decode(&mut buf).unwrap() {
                    let route = |id: u32| routes2.lock().unwrap().get(&id).cloned();
                    match frame {
                        Frame::SynReply {
                            stream_id,
                            header_block,
                            ..
                        } => {
                            let block = decompressor.decompress(&header_block).unwrap();
                            assert_eq!(headers::decode_block(&block).unwrap(), vec![]);
                            if let Some(tx) = route(stream_id) {
                                let _ = tx.send(Event::Reply);
                            }
                        }
                        Frame::Data {
                            stream_id,
                            flags,
                            data,
                        } => {
                            assert!(data.len() <= 256 * 1024, "frame of {}", data.len());
                            if let Some(tx) = route(stream_id) {
                                if !data.is_empty() {
                                    let _ = tx.send(Event::Data(data));
                                }
                                if flags & FLAG_FIN != 0 {
                                    let _ = tx.send(Event::Fin);
                                }
                            }
                        }
                        Frame::RstStream { stream_id, status } => {
                            if let Some(tx) = route(stream_id) {
                                let _ = tx.send(Event::Reset(status));
                            }
                        }
                        Frame::Ping { id } => {
                            let _ = ping_tx.send(id);
                        }
                        other => panic!("unexpected frame from the server: {other:?}"),
                    }
                }
                if let Some(n) = frame::pending_len(&buf) {
                    buf.reserve(n.saturating_sub(buf.len()));
                }
                buf.reserve(64 * 1024);
                match r.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            // Connection gone: every stream ends.
            routes2.lock().unwrap().clear();
        });
        Client {
            out,
            routes,
            pings,
            next_id: 1,
            next_request: 0,
            tasks: vec![writer, reader],
        }
    }

    fn send(&self, frame: Frame) {
        let _ = self.out.send(ClientOut::Frame(frame));
    }

    /// Open a stream and wait for its SYN_REPLY (or return the RST status).
    async fn open(
        &mut self,
        headers: &[(&str, String)],
    ) -> Result<(u32, mpsc::UnboundedReceiver<Event>), u32> {
        let stream_id = self.next_id;
        self.next_id += 2;
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.routes.lock().unwrap().insert(stream_id, tx);
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        self.out
            .send(ClientOut::Syn { stream_id, headers })
            .unwrap();
        match rx.recv().await {
            Some(Event::Reply) => Ok((stream_id, rx)),
            Some(Event::Reset(status)) => Err(status),
            other => panic!("stream {stream_id}: expected SYN_REPLY, got {other:?}"),
        }
    }

    /// Do what kubectl does for one local connection.
    async fn forward(&mut self, port: u16) -> Forward {
        let request = self.next_request;
        self.next_request += 1;
        let hdrs = |kind: &str| {
            vec![
                ("streamType", kind.to_string()),
                ("port", port.to_string()),
                ("requestID", request.to_string()),
            ]
        };
        let (error_id, mut error_rx) = self.open(&hdrs("error")).await.expect("error stream");
        // kubectl half-closes the error stream at once.
        self.send(Frame::Data {
            stream_id: error_id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        });
        let (etx, error) = oneshot::channel();
        self.tasks.push(tokio::spawn(async move {
            let mut text = Vec::new();
            while let Some(ev) = error_rx.recv().await {
                match ev {
                    Event::Data(d) => text.extend_from_slice(&d),
                    Event::Fin => break,
                    other => panic!("error stream: {other:?}"),
                }
            }
            let _ = etx.send(String::from_utf8(text).unwrap());
        }));
        let (data_id, mut data_rx) = self.open(&hdrs("data")).await.expect("data stream");
        let (local, pump) = tokio::io::duplex(256 * 1024);
        let (mut pump_r, mut pump_w) = tokio::io::split(pump);
        // Server -> local.
        self.tasks.push(tokio::spawn(async move {
            while let Some(ev) = data_rx.recv().await {
                match ev {
                    Event::Data(d) => {
                        if pump_w.write_all(&d).await.is_err() {
                            return;
                        }
                    }
                    Event::Fin | Event::Reset(_) => break,
                    Event::Reply => panic!("second reply"),
                }
            }
            let _ = pump_w.shutdown().await;
        }));
        // Local -> server, in 32 KiB frames as kubectl's io.Copy does; FIN at EOF.
        let out = self.out.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = pump_r.read(&mut buf).await.unwrap_or(0);
                let frame = Frame::Data {
                    stream_id: data_id,
                    flags: if n == 0 { FLAG_FIN } else { 0 },
                    data: Bytes::copy_from_slice(&buf[..n]),
                };
                if out.send(ClientOut::Frame(frame)).is_err() || n == 0 {
                    return;
                }
            }
        }));
        Forward {
            data: local,
            error,
            data_id,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Start a session over an in-memory pipe.
fn start(counters: Arc<Counters>) -> (Client, JoinHandle<std::io::Result<()>>) {
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(serve_portforward(server_io, pod(counters)));
    (Client::new(client_io), server)
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// hello + echo `len` bytes + QUIT on a forward; the pod then closes and both streams
/// must finish with an empty error stream.
async fn echo_through(fwd: Forward, len: u64) {
    let Forward { data, error, .. } = fwd;
    let (mut r, w) = tokio::io::split(data);
    let id = client::hello(&mut r).await.unwrap();
    assert_eq!((id.pod.as_str(), id.namespace.as_str()), ("p1", "ns"));
    let mut stream = tokio::io::join(r, w);
    assert_eq!(client::echo(&mut stream, len).await.unwrap(), len);
    // QUIT was sent: the pod closes, we see EOF and an empty error stream.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(error.await.unwrap(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pairs_are_byte_exact() {
    timeout(T, async {
        let counters = Arc::new(Counters::default());
        let (mut c, server) = start(counters.clone());
        let mut forwards = Vec::new();
        for _ in 0..6 {
            forwards.push(c.forward(POD_PORT).await);
        }
        let jobs: Vec<_> = forwards
            .into_iter()
            .enumerate()
            .map(|(i, f)| tokio::spawn(echo_through(f, 3_000_000 + i as u64 * 77_777)))
            .collect();
        for j in jobs {
            j.await.unwrap();
        }
        let s = counters.snapshot();
        assert_eq!(s.connections, 6);
        wait_until("pods closed", || counters.snapshot().active == 0).await;
        // The session is still usable afterwards.
        let f = c.forward(POD_PORT).await;
        echo_through(f, 100_000).await;
        drop(c);
        timeout(Duration::from_secs(5), server)
            .await
            .expect("server ends when the client goes")
            .unwrap()
            .unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn refused_port_reports_on_the_error_stream() {
    timeout(T, async {
        let counters = Arc::new(Counters::default());
        let (mut c, _server) = start(counters.clone());
        let f = c.forward(8080).await;
        let msg = f.error.await.unwrap();
        assert!(
            msg.contains("8080") && msg.contains("connection refused"),
            "{msg:?}"
        );
        // The data stream is finished too.
        let mut data = f.data;
        let mut rest = Vec::new();
        data.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        // Other pairs still work.
        echo_through(c.forward(POD_PORT).await, 10_000).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn pings_are_echoed_and_settings_window_updates_ignored() {
    timeout(T, async {
        let (mut c, _server) = start(Arc::new(Counters::default()));
        c.send(Frame::Settings {
            flags: 0,
            entries: vec![(0, 7, 65536)],
        });
        c.send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 1000,
        });
        c.send(Frame::Ping { id: 1 });
        c.send(Frame::Ping { id: 2 }); // an even id answers a server ping: not echoed
        c.send(Frame::Ping { id: 3 });
        assert_eq!(c.pings.recv().await, Some(1));
        assert_eq!(c.pings.recv().await, Some(3));
        echo_through(c.forward(POD_PORT).await, 1000).await;
        assert!(c.pings.try_recv().is_err());
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn half_close_reaches_the_pod_and_its_answer_still_comes_back() {
    timeout(T, async {
        let (mut c, _server) = start(Arc::new(Counters::default()));
        let f = c.forward(POD_PORT).await;
        let (mut r, mut w) = tokio::io::split(f.data);
        client::hello(&mut r).await.unwrap();
        // Ask for data, then half-close: the pod sees EOF only after its SOURCE.
        let n = 5_000_000u64;
        w.write_all(format!("SOURCE {n}\n").as_bytes())
            .await
            .unwrap();
        w.shutdown().await.unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len() as u64, n);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, b)| *b == buildkitd::pattern_byte(i as u64)));
        assert_eq!(f.error.await.unwrap(), "");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn reset_data_stream_closes_the_pod_connection_and_finishes_the_error_stream() {
    timeout(T, async {
        let counters = Arc::new(Counters::default());
        let (mut c, _server) = start(counters.clone());
        let f = c.forward(POD_PORT).await;
        let (mut r, mut w) = tokio::io::split(f.data);
        client::hello(&mut r).await.unwrap();
        // Keep the pod busy streaming, then reset as kubectl does.
        w.write_all(b"SOURCE 1000000000\n").await.unwrap();
        let mut some = vec![0u8; 100_000];
        r.read_exact(&mut some).await.unwrap();
        c.send(Frame::RstStream {
            stream_id: f.data_id,
            status: rst::CANCEL,
        });
        assert_eq!(f.error.await.unwrap(), "");
        wait_until("pod connection closed", || counters.snapshot().active == 0).await;
        // A new pair works.
        echo_through(c.forward(POD_PORT).await, 50_000).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn bad_streams_are_refused_and_goaway_stops_new_streams() {
    timeout(T, async {
        let (mut c, _server) = start(Arc::new(Counters::default()));
        // No port header.
        let status = c
            .open(&[("streamtype", "data".into()), ("requestid", "9".into())])
            .await
            .unwrap_err();
        assert_eq!(status, rst::REFUSED_STREAM);
        // Unknown stream type.
        let status = c
            .open(&[("streamtype", "x".into()), ("port", "1".into())])
            .await
            .unwrap_err();
        assert_eq!(status, rst::REFUSED_STREAM);
        echo_through(c.forward(POD_PORT).await, 1000).await;
        c.send(Frame::GoAway {
            last_good_stream_id: 0,
            status: 0,
        });
        let status = c
            .open(&[("streamtype", "error".into()), ("port", "1234".into())])
            .await
            .unwrap_err();
        assert_eq!(status, rst::REFUSED_STREAM);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn closing_the_connection_ends_everything() {
    timeout(T, async {
        let counters = Arc::new(Counters::default());
        let (mut c, server) = start(counters.clone());
        let mut held = Vec::new();
        for _ in 0..3 {
            let f = c.forward(POD_PORT).await;
            let (mut r, mut w) = tokio::io::split(f.data);
            client::hello(&mut r).await.unwrap();
            // One idle, one streaming towards us, one with the pod waiting for input.
            w.write_all(b"SOURCE 1000000000\n").await.unwrap();
            held.push((r, w));
        }
        // An incomplete pair (error stream only) must not keep anything alive either.
        c.open(&[
            ("streamtype", "error".into()),
            ("port", "1234".into()),
            ("requestid", "77".into()),
        ])
        .await
        .unwrap();
        wait_until("3 pods connected", || counters.snapshot().active == 3).await;
        drop(c);
        let result = timeout(Duration::from_secs(5), server)
            .await
            .expect("server must end when the connection closes")
            .unwrap();
        // EOF or a reset, but promptly.
        let _ = result;
        wait_until("pod connections closed", || counters.snapshot().active == 0).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnel_carries_the_same_session() {
    timeout(T, async {
        let counters = Arc::new(Counters::default());
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let connect = pod(counters.clone());
        let server = tokio::spawn(async move {
            let ws = tokio_tungstenite::accept_async(server_io).await.unwrap();
            serve_portforward_ws(ws, connect).await
        });
        let (ws, _) = tokio_tungstenite::client_async("ws://sim/portforward", client_io)
            .await
            .unwrap();
        // Bridge: the SPDY client talks bytes; each write becomes one binary message
        // (like kubectl's TunnelingConnection), messages are concatenated on read.
        let (bytes_side, bridge) = tokio::io::duplex(1 << 20);
        let (mut br, mut bw) = tokio::io::split(bridge);
        let (mut ws_tx, mut ws_rx) = ws.split();
        let up = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = br.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    let _ = ws_tx.send(Message::Close(None)).await;
                    return;
                }
                // Split writes at odd places: SPDY frames must not depend on messages.
                for part in buf[..n].chunks(7_777) {
                    if ws_tx
                        .send(Message::Binary(Bytes::copy_from_slice(part)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        let down = tokio::spawn(async move {
            while let Some(Ok(msg)) = ws_rx.next().await {
                match msg {
                    Message::Binary(b) if bw.write_all(&b).await.is_err() => return,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = bw.shutdown().await;
        });
        let mut c = Client::new(bytes_side);
        c.send(Frame::Ping { id: 5 });
        assert_eq!(c.pings.recv().await, Some(5));
        let mut forwards = Vec::new();
        for _ in 0..3 {
            forwards.push(c.forward(POD_PORT).await);
        }
        let jobs: Vec<_> = forwards
            .into_iter()
            .map(|f| tokio::spawn(echo_through(f, 4_000_000)))
            .collect();
        for j in jobs {
            j.await.unwrap();
        }
        let f = c.forward(8080).await;
        assert!(f.error.await.unwrap().contains("connection refused"));
        drop(c);
        timeout(Duration::from_secs(5), server)
            .await
            .expect("server ends after the WebSocket closes")
            .unwrap()
            .unwrap();
        up.abort();
        down.abort();
        wait_until("pods closed", || counters.snapshot().active == 0).await;
    })
    .await
    .expect("test timed out");
}
