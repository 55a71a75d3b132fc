//! A minimal blocking HTTP/1.1 client (one request per connection, `Connection: close`)
//! for the fixture's own needs: dockerd's `/_ping` on its unix socket and the
//! registry's API on 127.0.0.1. Enough for readiness checks and for tests that read
//! manifests and blobs back; not a general client.

use std::io::{self, Read, Write};
use std::time::Duration;

/// One answer: status, headers (names lower-cased), body (de-chunked).
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The first header of that (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Send `GET path` with extra header lines on `stream` and read the whole answer.
pub fn get<S: Read + Write>(
    mut stream: S,
    host: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> io::Result<HttpAnswer> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> io::Result<HttpAnswer> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("HTTP answer without an end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("HTTP head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("HTTP status line without a status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest).ok_or_else(|| bad("malformed chunked body"))?
    } else {
        rest.to_vec()
    };
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// `GET path` on dockerd's unix socket.
pub fn get_unix(socket: &std::path::Path, path: &str) -> io::Result<HttpAnswer> {
    let s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    get(s, "docker", path, &[])
}

/// `GET path` on a TCP address.
pub fn get_tcp(
    addr: std::net::SocketAddr,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> io::Result<HttpAnswer> {
    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    get(s, &addr.to_string(), path, extra_headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let a = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nOK").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"OK"[..]));
        assert_eq!(a.header("x-a"), Some("b"));
        let c = parse(
            b"HTTP/1.1 401 No\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((c.status, c.body.as_slice()), (401, &b"abcd"[..]));
        assert!(parse(b"HTTP/1.1 200").is_err());
    }
}
