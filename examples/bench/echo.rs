//! A verifying simkit echo client fast enough not to be the bottleneck.
//!
//! kube_sim's `client::echo` computes `pattern_byte` (a `% 251`) for every byte it
//! sends and checks; at wire speed that costs more CPU than the tunnel itself on a
//! 2-core machine. The pattern repeats every 251 bytes, so one buffer of whole
//! periods plus a chunk serves every offset: sends are slices of it and checks are
//! memcmp against it. Every byte is still verified.

use std::sync::OnceLock;

use kube_sim::buildkitd::pattern_byte;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PERIOD: usize = 251;
/// Bytes per write and largest read.
pub const CHUNK: usize = 256 * 1024;

/// The pattern from offset 0, long enough that `[i % 251 .. i % 251 + CHUNK]` exists.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| (0..(CHUNK + PERIOD) as u64).map(pattern_byte).collect())
}

/// Bytes `i .. i + n` of the pattern (n <= CHUNK).
fn slice(i: u64, n: usize) -> &'static [u8] {
    let start = (i % PERIOD as u64) as usize;
    &pattern()[start..start + n]
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// ECHO `len` pattern bytes, reading the echo at the same time and checking every
/// byte; then QUIT when `quit` (else the connection stays open, idle). Returns the
/// bytes verified.
pub async fn echo<R, W>(r: &mut R, w: &mut W, len: u64, quit: bool) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let writer = async {
        w.write_all(format!("ECHO {len}\n").as_bytes()).await?;
        let mut i = 0u64;
        while i < len {
            let n = CHUNK.min((len - i) as usize);
            w.write_all(slice(i, n)).await?;
            i += n as u64;
        }
        if quit {
            w.write_all(b"QUIT\n").await?;
        }
        w.flush().await?;
        Ok::<_, std::io::Error>(())
    };
    let reader = async {
        let mut buf = vec![0u8; CHUNK];
        let mut i = 0u64;
        while i < len {
            let want = CHUNK.min((len - i) as usize);
            let n = r.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("echo ended after {i} of {len} bytes"),
                ));
            }
            if buf[..n] != *slice(i, n) {
                let k = buf[..n]
                    .iter()
                    .zip(slice(i, n))
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Err(invalid(format!("echo byte {} differs", i + k as u64)));
            }
            i += n as u64;
        }
        Ok(i)
    };
    let ((), got) = tokio::try_join!(writer, reader)?;
    Ok(got)
}

#[cfg(test)]
mod tests {
    #[test]
    fn slices_match_the_pattern() {
        for i in [0u64, 1, 250, 251, 252, 1 << 30] {
            let s = super::slice(i, 1000);
            for (k, b) in s.iter().enumerate() {
                assert_eq!(*b, kube_sim::buildkitd::pattern_byte(i + k as u64));
            }
        }
    }
}
