//! The simulated buildkitd that every simulated pod runs.
//!
//! Real buildkitd speaks gRPC over HTTP/2; our stand-in speaks "simkit", a tiny
//! line protocol that is enough to prove which pod served a connection and to move
//! real bytes both ways:
//!
//! ```text
//! server -> client on connect:  "SIMKIT/1 pod=<pod> namespace=<ns>\n"
//! client -> server, repeatable:
//!   "ECHO <n>\n"   + n bytes   server streams the n bytes back as they arrive
//!   "SINK <n>\n"   + n bytes   server reads them all, then answers "OK <n>\n"
//!   "SOURCE <n>\n"             server sends n bytes of `pattern_byte(i)`
//!   "QUIT\n" or EOF            server closes
//! anything else                server answers "ERR <reason>\n" and closes
//! ```
//!
//! Like the real daemon the server speaks first, so a tunnel sees the pod's first
//! byte as soon as the connection reaches the pod.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Size of the chunks the server moves at once.
const CHUNK: usize = 256 * 1024;

/// Byte `i` of a SOURCE stream: deterministic so either end can verify it.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(7) % 251) as u8
}

/// Per-pod counters, shared between the pod's buildkitd and the test that reads them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted (including ones still open).
    pub connections: AtomicU64,
    /// Connections open right now.
    pub active: AtomicU64,
    /// Bytes received from clients (command lines included).
    pub bytes_in: AtomicU64,
    /// Bytes sent to clients (hello and answers included).
    pub bytes_out: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodStats {
    pub connections: u64,
    pub active: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Counters {
    pub fn snapshot(&self) -> PodStats {
        PodStats {
            connections: self.connections.load(Ordering::SeqCst),
            active: self.active.load(Ordering::SeqCst),
            bytes_in: self.bytes_in.load(Ordering::SeqCst),
            bytes_out: self.bytes_out.load(Ordering::SeqCst),
        }
    }
}

/// Identity of the pod a buildkitd runs in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub pod: String,
    pub namespace: String,
}

/// Serve one simkit connection until the client quits or the stream ends.
///
/// `drop_after`: when set, the connection is cut (no goodbye) once that many bytes
/// have crossed it in both directions together: the "connection dropped" fault.
pub async fn serve<S>(
    stream: S,
    who: &Identity,
    counters: Arc<Counters>,
    drop_after: Option<u64>,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    counters.connections.fetch_add(1, Ordering::SeqCst);
    counters.active.fetch_add(1, Ordering::SeqCst);
    let result = serve_inner(stream, who, &counters, drop_after).await;
    counters.active.fetch_sub(1, Ordering::SeqCst);
    result
}

/// Serve one connection as a pod whose buildkitd never speaks: no greeting, no answer;
/// it reads (and counts) what the client sends and cuts the connection once it has
/// received `cut_after` bytes (at once when 0), or closes when the client ends first.
/// The "mute, then dropped" fault: a pod that fails before its first byte although the
/// client already sent something.
pub async fn serve_mute<S>(
    stream: S,
    counters: Arc<Counters>,
    cut_after: u64,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    counters.connections.fetch_add(1, Ordering::SeqCst);
    counters.active.fetch_add(1, Ordering::SeqCst);
    let mut stream = stream;
    let mut buf = vec![0u8; CHUNK];
    let mut left = cut_after;
    let result = loop {
        if left == 0 {
            break Err(cut());
        }
        let want = buf.len().min(left as usize);
        match stream.read(&mut buf[..want]).await {
            Ok(0) => break Ok(()),
            Ok(n) => {
                left -= n as u64;
                counters.bytes_in.fetch_add(n as u64, Ordering::SeqCst);
            }
            Err(e) => break Err(e),
        }
    };
    drop(stream);
    counters.active.fetch_sub(1, Ordering::SeqCst);
    result
}

struct Budget {
    left: Option<u64>,
}

impl Budget {
    /// How many of `want` bytes may still cross; `None` = cut now.
    fn take(&mut self, want: usize) -> Option<usize> {
        match &mut self.left {
            None => Some(want),
            Some(0) => None,
            Some(left) => {
                let n = (*left).min(want as u64) as usize;
                *left -= n as u64;
                Some(n)
            }
        }
    }
}

fn cut() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "simulated connection drop",
    )
}

async fn send<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    counters: &Counters,
    budget: &mut Budget,
) -> std::io::Result<()> {
    let n = budget.take(data.len()).ok_or_else(cut)?;
    w.write_all(&data[..n]).await?;
    counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    if n < data.len() {
        w.flush().await?;
        return Err(cut());
    }
    Ok(())
}

async fn serve_inner<S>(
    stream: S,
    who: &Identity,
    counters: &Counters,
    drop_after: Option<u64>,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut budget = Budget { left: drop_after };
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::with_capacity(CHUNK, r);
    let hello = format!("SIMKIT/1 pod={} namespace={}\n", who.pod, who.namespace);
    send(&mut w, hello.as_bytes(), counters, &mut budget).await?;
    w.flush().await?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).await?;
        if n == 0 {
            break;
        }
        budget.take(n).ok_or_else(cut)?;
        counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("");
        let len: Option<u64> = words.next().and_then(|s| s.parse().ok());
        match (verb, len) {
            ("QUIT", _) => break,
            ("ECHO", Some(mut left)) | ("SINK", Some(mut left)) => {
                let total = left;
                while left > 0 {
                    let want = buf.len().min(left as usize);
                    let got = r.read(&mut buf[..want]).await?;
                    if got == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    left -= got as u64;
                    if verb == "ECHO" {
                        // Count the echo against the budget once, on the way out.
                        counters.bytes_in.fetch_add(got as u64, Ordering::Relaxed);
                        send(&mut w, &buf[..got], counters, &mut budget).await?;
                        if r.buffer().is_empty() {
                            w.flush().await?;
                        }
                    } else {
                        budget.take(got).ok_or_else(cut)?;
                        counters.bytes_in.fetch_add(got as u64, Ordering::Relaxed);
                    }
                }
                if verb == "SINK" {
                    send(
                        &mut w,
                        format!("OK {total}\n").as_bytes(),
                        counters,
                        &mut budget,
                    )
                    .await?;
                }
                w.flush().await?;
            }
            ("SOURCE", Some(total)) => {
                let mut i = 0u64;
                while i < total {
                    let n = buf.len().min((total - i) as usize);
                    for (k, b) in buf[..n].iter_mut().enumerate() {
                        *b = pattern_byte(i + k as u64);
                    }
                    send(&mut w, &buf[..n], counters, &mut budget).await?;
                    i += n as u64;
                }
                w.flush().await?;
            }
            _ => {
                let msg = format!("ERR unknown command {:?}\n", line.trim_end());
                send(&mut w, msg.as_bytes(), counters, &mut budget).await?;
                w.flush().await?;
                break;
            }
        }
    }
    w.shutdown().await.ok();
    Ok(())
}

/// The client side, used by the stand-in buildctl, the benchmarks and the tests.
pub mod client {
    use super::*;

    /// Read the hello line and return the pod and namespace it names.
    pub async fn hello<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Identity> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            let n = r.read(&mut byte).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before the buildkitd greeting (got {:?})",
                        String::from_utf8_lossy(&line)
                    ),
                ));
            }
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
            if line.len() > 4096 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "greeting line too long",
                ));
            }
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        parse_hello(&line).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a simulated buildkitd greeting: {line:?}"),
            )
        })
    }

    /// Parse `SIMKIT/1 pod=P namespace=N`.
    pub fn parse_hello(line: &str) -> Option<Identity> {
        let mut words = line.split_whitespace();
        if words.next()? != "SIMKIT/1" {
            return None;
        }
        let pod = words.next()?.strip_prefix("pod=")?.to_string();
        let namespace = words.next()?.strip_prefix("namespace=")?.to_string();
        Some(Identity { pod, namespace })
    }

    /// Send `len` bytes (the SOURCE pattern, so it is verifiable) with ECHO and check the
    /// echo byte for byte, writing and reading at once. Returns the bytes verified.
    pub async fn echo<S>(stream: S, len: u64) -> std::io::Result<u64>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut r, mut w) = tokio::io::split(stream);
        let writer = async move {
            w.write_all(format!("ECHO {len}\n").as_bytes()).await?;
            let mut buf = vec![0u8; CHUNK];
            let mut i = 0u64;
            while i < len {
                let n = buf.len().min((len - i) as usize);
                for (k, b) in buf[..n].iter_mut().enumerate() {
                    *b = pattern_byte(i + k as u64);
                }
                w.write_all(&buf[..n]).await?;
                i += n as u64;
            }
            w.write_all(b"QUIT\n").await?;
            w.flush().await?;
            Ok::<_, std::io::Error>(w)
        };
        let reader = async move {
            let mut buf = vec![0u8; CHUNK];
            let mut i = 0u64;
            while i < len {
                let want = buf.len().min((len - i) as usize);
                let n = r.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("echo ended after {i} of {len} bytes"),
                    ));
                }
                for (k, b) in buf[..n].iter().enumerate() {
                    if *b != pattern_byte(i + k as u64) {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("echo byte {} differs", i + k as u64),
                        ));
                    }
                }
                i += n as u64;
            }
            Ok::<_, std::io::Error>(i)
        };
        let (w, got) = tokio::try_join!(writer, reader)?;
        drop(w);
        Ok(got)
    }

    /// Ask for `len` pattern bytes with SOURCE and copy them to `out` unchanged,
    /// verifying them on the way. Returns the bytes copied.
    pub async fn source_to<S, W>(stream: &mut S, len: u64, out: &mut W) -> std::io::Result<u64>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        W: AsyncWrite + Unpin,
    {
        stream
            .write_all(format!("SOURCE {len}\n").as_bytes())
            .await?;
        stream.flush().await?;
        let mut buf = vec![0u8; CHUNK];
        let mut i = 0u64;
        while i < len {
            let want = buf.len().min((len - i) as usize);
            let n = stream.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("source ended after {i} of {len} bytes"),
                ));
            }
            for (k, b) in buf[..n].iter().enumerate() {
                if *b != pattern_byte(i + k as u64) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("source byte {} differs", i + k as u64),
                    ));
                }
            }
            out.write_all(&buf[..n]).await?;
            i += n as u64;
        }
        out.flush().await?;
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Identity {
        Identity {
            pod: "buildkitd-0".into(),
            namespace: "ns1".into(),
        }
    }

    #[tokio::test]
    async fn echo_round_trip_counts_bytes() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let counters = Arc::new(Counters::default());
        let c2 = counters.clone();
        let server = tokio::spawn(async move { serve(b, &who(), c2, None).await });
        let (mut r, w) = tokio::io::split(a);
        let id = client::hello(&mut r).await.unwrap();
        assert_eq!(id.pod, "buildkitd-0");
        assert_eq!(id.namespace, "ns1");
        let got = client::echo(tokio::io::join(r, w), 3_000_000)
            .await
            .unwrap();
        assert_eq!(got, 3_000_000);
        server.await.unwrap().unwrap();
        let s = counters.snapshot();
        assert_eq!(s.connections, 1);
        assert_eq!(s.active, 0);
        assert!(s.bytes_in >= 3_000_000 && s.bytes_out >= 3_000_000, "{s:?}");
    }

    #[tokio::test]
    async fn drop_after_cuts_the_connection() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let counters = Arc::new(Counters::default());
        let server = tokio::spawn(async move { serve(b, &who(), counters, Some(1000)).await });
        let (mut r, w) = tokio::io::split(a);
        client::hello(&mut r).await.unwrap();
        let err = client::echo(tokio::io::join(r, w), 100_000)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("echo ended"), "{err}");
        assert!(server.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn mute_pod_reads_n_bytes_says_nothing_and_cuts() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let counters = Arc::new(Counters::default());
        let c2 = counters.clone();
        let server = tokio::spawn(async move { serve_mute(b, c2, 10).await });
        let mut a = a;
        a.write_all(b"ECHO 5\nhello and more").await.unwrap();
        let mut got = Vec::new();
        // Nothing comes back: the connection just ends.
        a.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty(), "{got:?}");
        let e = server.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionAborted);
        let s = counters.snapshot();
        assert_eq!(
            (s.connections, s.active, s.bytes_in, s.bytes_out),
            (1, 0, 10, 0)
        );

        // The client ending first is a clean close, with what it sent counted.
        let (a, b) = tokio::io::duplex(64 * 1024);
        let counters = Arc::new(Counters::default());
        let server = tokio::spawn(serve_mute(b, counters.clone(), 100));
        let mut a = a;
        a.write_all(b"QUIT\n").await.unwrap();
        a.shutdown().await.unwrap();
        server.await.unwrap().unwrap();
        assert_eq!(counters.snapshot().bytes_in, 5);
    }

    #[tokio::test]
    async fn source_is_verifiable() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let counters = Arc::new(Counters::default());
        tokio::spawn(async move { serve(b, &who(), counters, None).await });
        let mut a = a;
        client::hello(&mut a).await.unwrap();
        let mut out = Vec::new();
        let n = client::source_to(&mut a, 70_000, &mut out).await.unwrap();
        assert_eq!(n, 70_000);
        assert_eq!(out[69_999], pattern_byte(69_999));
    }
}
