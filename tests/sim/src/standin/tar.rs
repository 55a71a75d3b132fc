//! Just enough of the tar format for the stand-ins: ustar headers to write an
//! image archive, and a reader that lists the regular files of an archive.

/// A ustar header for a regular file.
pub fn header(name: &str, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let (prefix, base) = split_name(name);
    h[..base.len()].copy_from_slice(base.as_bytes());
    put_octal(&mut h[100..108], 0o644);
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    put_octal(&mut h[124..136], size);
    put_octal(&mut h[136..148], 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    put_octal(&mut h[148..155], sum as u64);
    h[155] = b' ';
    h
}

fn split_name(name: &str) -> (&str, &str) {
    if name.len() <= 100 {
        return ("", name);
    }
    match name[..name.len().min(156)].rfind('/') {
        Some(i) if name.len() - i - 1 <= 100 && i <= 155 => (&name[..i], &name[i + 1..]),
        _ => ("", &name[..100]),
    }
}

fn put_octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    let s = format!("{v:0w$o}");
    field[..w].copy_from_slice(&s.as_bytes()[s.len() - w..]);
    field[w] = 0;
}

/// Zero bytes needed after `size` bytes of content to reach a block boundary.
pub fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

/// Append a whole small file to an in-memory archive.
pub fn push_file(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(&header(name, data.len() as u64));
    out.extend_from_slice(data);
    out.resize(out.len() + padding(data.len() as u64), 0);
}

/// The end-of-archive marker: two zero blocks.
pub const TRAILER: [u8; 1024] = [0; 1024];

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// The regular files of a tar archive as (name, contents), or None when `data`
/// is not a tar archive (bad checksum on the first header, or truncated).
pub fn files(data: &[u8]) -> Option<Vec<(String, &[u8])>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    let mut long_name: Option<String> = None;
    loop {
        let h = data.get(off..off + 512)?;
        if h.iter().all(|b| *b == 0) {
            return Some(out);
        }
        let stored = parse_octal(&h[148..156])?;
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    *b as u64
                }
            })
            .sum();
        if sum != stored {
            return None;
        }
        let size = parse_octal(&h[124..136])? as usize;
        let body = data.get(off + 512..off + 512 + size)?;
        let typ = h[156];
        let mut name = cstr(&h[..100]);
        if &h[257..262] == b"ustar" {
            let prefix = cstr(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        match typ {
            b'L' => long_name = Some(cstr(body)),
            b'x' => {
                for rec in String::from_utf8_lossy(body).lines() {
                    if let Some((_, kv)) = rec.split_once(' ') {
                        if let Some(p) = kv.strip_prefix("path=") {
                            long_name = Some(p.to_string());
                        }
                    }
                }
            }
            b'0' | 0 => {
                let name = long_name.take().unwrap_or(name);
                out.push((name.trim_start_matches("./").to_string(), body));
            }
            _ => long_name = None,
        }
        off += 512 + size + padding(size as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut a = Vec::new();
        push_file(&mut a, "manifest.json", b"[]");
        let long = format!("blobs/sha256/{}", "a".repeat(64));
        push_file(&mut a, &long, &[7u8; 700]);
        a.extend_from_slice(&TRAILER);
        let f = files(&a).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].0, "manifest.json");
        assert_eq!(f[0].1, b"[]");
        assert_eq!(f[1].0, long);
        assert_eq!(f[1].1.len(), 700);
        assert!(files(b"definitely not a tar archive").is_none());
        assert!(files(&[1u8; 1024]).is_none());
    }
}
