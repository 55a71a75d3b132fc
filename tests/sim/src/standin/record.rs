//! Record lines, hashing and small helpers shared by the stand-ins.

use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWrite;

/// Lowercase hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lowercase hex of any bytes.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The environment variables a record keeps: the `always` names (null when unset)
/// and every variable whose name starts with one of `prefixes`.
pub fn env_snapshot(
    always: &[&str],
    prefixes: &[&str],
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for name in always {
        let v = std::env::var(name)
            .map(serde_json::Value::String)
            .unwrap_or(serde_json::Value::Null);
        m.insert((*name).to_string(), v);
    }
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        if prefixes.iter().any(|p| k.starts_with(p)) {
            m.insert(k.to_string(), serde_json::Value::String(v.to_string()));
        }
    }
    m
}

/// The current directory as a string ("" when it cannot be read).
pub fn cwd_string() -> String {
    std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Append `value` as one JSON line to the file named by env `var`, if set.
/// The line is written with a single `write` on an O_APPEND file so concurrent
/// invocations do not interleave.
pub fn append_record(var: &str, value: &serde_json::Value) {
    let Some(path) = std::env::var_os(var) else {
        return;
    };
    if path.is_empty() {
        return;
    }
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    let res = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(&line));
    if let Err(e) = res {
        eprintln!("stand-in: cannot append record to {path:?}: {e}");
    }
}

/// Byte count and running sha256 of a stream.
#[derive(Clone, Default)]
pub struct StreamStat {
    pub bytes: u64,
    pub hasher: Sha256,
}

impl StreamStat {
    /// The hex digest so far, or None when nothing went through.
    pub fn sha256(&self) -> Option<String> {
        (self.bytes > 0).then(|| hex(&self.hasher.clone().finalize()))
    }
}

/// An [`AsyncWrite`] that counts and hashes what it passes on.
pub struct Tracked<W> {
    inner: W,
    stat: Arc<Mutex<StreamStat>>,
}

impl<W> Tracked<W> {
    pub fn new(inner: W, stat: Arc<Mutex<StreamStat>>) -> Self {
        Tracked { inner, stat }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Tracked<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &res {
            let mut st = self.stat.lock().unwrap();
            st.bytes += *n as u64;
            st.hasher.update(&buf[..*n]);
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether file descriptor `fd` is a terminal.
pub fn isatty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Parse a byte size: a plain integer, or one with a K/M/G suffix (powers of 1024,
/// an optional trailing "i"/"iB"/"B" is accepted).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let t = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .or_else(|| lower.strip_suffix('i'))
        .unwrap_or(&lower);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        assert_eq!(parse_size("4KiB"), Some(4096));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn sha() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
