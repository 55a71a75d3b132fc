//! SPDY/3 header blocks.
//!
//! Uncompressed form: `u32 count`, then per header a `u32`-length-prefixed name and a
//! `u32`-length-prefixed value (several values of one name are joined with NUL).
//! Names are lowercase. On the wire every block is zlib-compressed with the SPDY/3
//! dictionary: one zlib stream per direction of a connection, each block ending in a
//! sync flush, so the blocks of one direction must be (de)compressed in frame order.

use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The SPDY/3 header compression dictionary (adler32 0xe3c6a7c2).
pub const DICTIONARY: &[u8] = include_bytes!("header-dictionary.bin");

/// Largest decompressed header block we accept.
pub const MAX_BLOCK: usize = 1 << 20;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Serialise headers into an uncompressed block. Names are lowercased.
pub fn encode_block<N: AsRef<str>, V: AsRef<str>>(headers: &[(N, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        let name = name.as_ref().to_ascii_lowercase();
        let value = value.as_ref();
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Parse an uncompressed block into (name, value) pairs, in order. NUL-joined values
/// stay joined.
pub fn decode_block(mut raw: &[u8]) -> io::Result<Vec<(String, String)>> {
    fn take<'a>(raw: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
        if raw.len() < n {
            return Err(invalid("truncated SPDY header block"));
        }
        let (head, rest) = raw.split_at(n);
        *raw = rest;
        Ok(head)
    }
    fn take_u32(raw: &mut &[u8]) -> io::Result<usize> {
        let b = take(raw, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn take_str(raw: &mut &[u8]) -> io::Result<String> {
        let n = take_u32(raw)?;
        let b = take(raw, n)?;
        String::from_utf8(b.to_vec()).map_err(|_| invalid("SPDY header is not UTF-8"))
    }
    let count = take_u32(&mut raw)?;
    // Each header needs at least 8 bytes: don't trust a huge count.
    if count > raw.len() / 8 {
        return Err(invalid("SPDY header count larger than the block"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = take_str(&mut raw)?;
        let value = take_str(&mut raw)?;
        headers.push((name, value));
    }
    if !raw.is_empty() {
        return Err(invalid("trailing bytes after the SPDY header block"));
    }
    Ok(headers)
}

/// The first value of header `name` (case-insensitive).
pub fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

/// One direction's header compressor.
pub struct Compressor {
    inner: Compress,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("total_in", &self.inner.total_in())
            .finish()
    }
}

impl Compressor {
    pub fn new() -> io::Result<Self> {
        let mut inner = Compress::new(Compression::default(), true);
        inner
            .set_dictionary(DICTIONARY)
            .map_err(|e| io::Error::other(format!("zlib dictionary: {e}")))?;
        Ok(Compressor { inner })
    }

    /// Compress one uncompressed block, ending with a sync flush.
    pub fn compress(&mut self, block: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let start = self.inner.total_in();
        loop {
            let consumed = (self.inner.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.inner
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| io::Error::other(format!("zlib compress: {e}")))?;
            let consumed = (self.inner.total_in() - start) as usize;
            // Done once all input is in and the flush did not run out of room.
            if consumed == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// One direction's header decompressor.
pub struct Decompressor {
    inner: Decompress,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("total_in", &self.inner.total_in())
            .finish()
    }
}

impl Default for Decompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl Decompressor {
    pub fn new() -> Self {
        Decompressor {
            inner: Decompress::new(true),
        }
    }

    /// Decompress the compressed bytes of one frame's header block.
    pub fn decompress(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(data.len() * 4 + 64);
        let start = self.inner.total_in();
        loop {
            let consumed = (self.inner.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                if out.len() >= MAX_BLOCK {
                    return Err(invalid("SPDY header block too large"));
                }
                out.reserve(out.capacity().max(256));
            }
            let before_out = out.len();
            match self
                .inner
                .decompress_vec(&data[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(Status::Ok) => {}
                // No progress possible: everything given has been used.
                Ok(Status::BufError) => return Ok(out),
                // zlib read the stream header and wants the dictionary it names.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inner
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| invalid(format!("SPDY header dictionary rejected: {e}")))?;
                    continue;
                }
                Err(e) => return Err(invalid(format!("SPDY header block: {e}"))),
            }
            let now = (self.inner.total_in() - start) as usize;
            if now == data.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if now == consumed && out.len() == before_out {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        let mut a: u32 = 1;
        let mut b: u32 = 0;
        for &x in DICTIONARY {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn block_encoding_layout() {
        let block = encode_block(&[("Port", "1234")]);
        assert_eq!(
            block,
            [
                &[0, 0, 0, 1][..],
                &[0, 0, 0, 4],
                b"port",
                &[0, 0, 0, 4],
                b"1234"
            ]
            .concat()
        );
        assert_eq!(decode_block(&block).unwrap(), pairs(&[("port", "1234")]));
        assert_eq!(
            decode_block(&encode_block::<&str, &str>(&[])).unwrap(),
            vec![]
        );
        assert!(decode_block(&block[..block.len() - 1]).is_err());
        assert!(decode_block(&[0, 0, 0, 200]).is_err());
    }

    #[test]
    fn get_is_case_insensitive_and_takes_the_first_value() {
        let h = pairs(&[("streamtype", "data"), ("x", "a\0b")]);
        assert_eq!(get(&h, "streamType"), Some("data"));
        assert_eq!(get(&h, "x"), Some("a"));
        assert_eq!(get(&h, "port"), None);
    }

    /// Two consecutive blocks of one stream, as C zlib (Python's zlib with zdict and
    /// Z_SYNC_FLUSH) compresses kubectl's error- and data-stream headers.
    #[test]
    fn decodes_a_c_zlib_test_vector() {
        let first = hex("78bbe3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45e01c6068646c02a4398b20d198094ade8c0600000000ffff");
        let second = hex("c2aa19540e2512d60b000000ffff");
        let mut d = Decompressor::new();
        let one = decode_block(&d.decompress(&first).unwrap()).unwrap();
        assert_eq!(
            one,
            pairs(&[
                ("streamtype", "error"),
                ("port", "1234"),
                ("requestid", "0")
            ])
        );
        let two = decode_block(&d.decompress(&second).unwrap()).unwrap();
        assert_eq!(
            two,
            pairs(&[("streamtype", "data"), ("port", "1234"), ("requestid", "0")])
        );
    }

    #[test]
    fn our_stream_names_the_dictionary_and_decodes_with_a_fresh_decompressor() {
        let mut c = Compressor::new().unwrap();
        let block = encode_block(&[("streamtype", "error"), ("port", "1234")]);
        let z = c.compress(&block).unwrap();
        // zlib header: CMF 0x78, FLG with FDICT (0x20), then the dictionary's adler32.
        assert_eq!(z[0], 0x78);
        assert_ne!(z[1] & 0x20, 0, "FDICT must be set");
        assert_eq!(((u16::from(z[0]) << 8) | u16::from(z[1])) % 31, 0);
        assert_eq!(&z[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
        // Sync flush marker at the end of every block.
        assert_eq!(&z[z.len() - 4..], &[0, 0, 0xff, 0xff]);
        let mut d = Decompressor::new();
        assert_eq!(d.decompress(&z).unwrap(), block);
    }

    #[test]
    fn many_blocks_round_trip_in_one_stream() {
        let mut c = Compressor::new().unwrap();
        let mut d = Decompressor::new();
        for i in 0..200 {
            let requestid = i.to_string();
            let big = "v".repeat(i * 37);
            let headers = [
                (
                    "streamtype",
                    if i.is_multiple_of(2) { "error" } else { "data" },
                ),
                ("port", "1234"),
                ("requestid", requestid.as_str()),
                ("x-big", big.as_str()),
            ];
            let block = encode_block(&headers);
            let z = c.compress(&block).unwrap();
            assert_eq!(&z[z.len() - 4..], &[0, 0, 0xff, 0xff]);
            assert_eq!(d.decompress(&z).unwrap(), block, "block {i}");
            assert_eq!(decode_block(&block).unwrap(), pairs(&headers));
        }
        // The empty block of a SYN_REPLY.
        let empty = encode_block::<&str, &str>(&[]);
        let z = c.compress(&empty).unwrap();
        assert_eq!(d.decompress(&z).unwrap(), empty);
    }

    #[test]
    fn a_large_block_round_trips() {
        let mut c = Compressor::new().unwrap();
        let mut d = Decompressor::new();
        // Incompressible-ish content bigger than any single output reservation.
        let value: String = (0..200_000u32)
            .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
            .collect();
        let block = encode_block(&[("x", value.as_str())]);
        let z = c.compress(&block).unwrap();
        assert_eq!(d.decompress(&z).unwrap(), block);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut d = Decompressor::new();
        assert!(d.decompress(&[0x12, 0x34, 0x56, 0x78]).is_err());
    }
}
