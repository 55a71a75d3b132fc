//! SPDY/3.1 frames: the byte layout only (header blocks stay compressed here; see
//! [`super::headers`]).
//!
//! ```text
//! control frame:  1 | version(15) | type(16) | flags(8) | length(24) | payload
//! data frame:     0 | stream-id(31)          | flags(8) | length(24) | payload
//! ```

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The only protocol version we speak.
pub const VERSION: u16 = 3;
/// Size of every frame header.
pub const HEADER_LEN: usize = 8;
/// Largest payload a frame can carry (the length field is 24 bits).
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;

/// FLAG_FIN: the sender half-closes the stream (data frames and SYN_STREAM/SYN_REPLY/HEADERS).
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL (SYN_STREAM only): the receiver must not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// Control frame types.
pub mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// RST_STREAM status codes.
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const UNSUPPORTED_VERSION: u32 = 4;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
    pub const FRAME_TOO_LARGE: u32 = 11;
}

const STREAM_ID_MASK: u32 = 0x7fff_ffff;

/// One SPDY frame. Header blocks are kept in their compressed wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_id: u32,
        /// 0 (highest) to 7.
        priority: u8,
        slot: u8,
        flags: u8,
        header_block: Bytes,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        header_block: Bytes,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        /// (flags, id, value)
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        header_block: Bytes,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame of a type we do not know (the spec says: ignore it), or of
    /// another protocol version.
    Unknown {
        version: u16,
        kind: u16,
        flags: u8,
        payload: Bytes,
    },
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// Total size (header included) of the frame starting at `buf[0]`, once its header
/// is there.
pub fn pending_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= HEADER_LEN).then(|| HEADER_LEN + u24(&buf[5..8]))
}

/// Take one complete frame off the front of `buf`; `Ok(None)` when more bytes are needed.
/// Payloads are split off `buf` without copying.
pub fn decode(buf: &mut BytesMut) -> io::Result<Option<Frame>> {
    let Some(total) = pending_len(buf) else {
        return Ok(None);
    };
    if buf.len() < total {
        return Ok(None);
    }
    let head = buf.split_to(HEADER_LEN);
    let mut payload = buf.split_to(total - HEADER_LEN).freeze();
    let flags = head[4];
    let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if first & 0x8000_0000 == 0 {
        return Ok(Some(Frame::Data {
            stream_id: first & STREAM_ID_MASK,
            flags,
            data: payload,
        }));
    }
    let version = ((first >> 16) & 0x7fff) as u16;
    let kind = (first & 0xffff) as u16;
    if version != VERSION {
        return Ok(Some(Frame::Unknown {
            version,
            kind,
            flags,
            payload,
        }));
    }
    let need = |n: usize, payload: &Bytes| {
        if payload.len() < n {
            Err(invalid(format!(
                "SPDY control frame type {kind} too short: {} bytes",
                payload.len()
            )))
        } else {
            Ok(())
        }
    };
    let frame = match kind {
        kind::SYN_STREAM => {
            need(10, &payload)?;
            let stream_id = payload.get_u32() & STREAM_ID_MASK;
            let associated_id = payload.get_u32() & STREAM_ID_MASK;
            let priority = payload.get_u8() >> 5;
            let slot = payload.get_u8();
            Frame::SynStream {
                stream_id,
                associated_id,
                priority,
                slot,
                flags,
                header_block: payload,
            }
        }
        kind::SYN_REPLY | kind::HEADERS => {
            need(4, &payload)?;
            let stream_id = payload.get_u32() & STREAM_ID_MASK;
            if kind == kind::SYN_REPLY {
                Frame::SynReply {
                    stream_id,
                    flags,
                    header_block: payload,
                }
            } else {
                Frame::Headers {
                    stream_id,
                    flags,
                    header_block: payload,
                }
            }
        }
        kind::RST_STREAM => {
            need(8, &payload)?;
            Frame::RstStream {
                stream_id: payload.get_u32() & STREAM_ID_MASK,
                status: payload.get_u32(),
            }
        }
        kind::SETTINGS => {
            need(4, &payload)?;
            let count = payload.get_u32() as usize;
            if payload.len() / 8 < count {
                return Err(invalid("SPDY SETTINGS frame shorter than its entry count"));
            }
            let entries = (0..count)
                .map(|_| {
                    let word = payload.get_u32();
                    ((word >> 24) as u8, word & 0x00ff_ffff, payload.get_u32())
                })
                .collect();
            Frame::Settings { flags, entries }
        }
        kind::PING => {
            need(4, &payload)?;
            Frame::Ping {
                id: payload.get_u32(),
            }
        }
        kind::GOAWAY => {
            need(4, &payload)?;
            let last_good_stream_id = payload.get_u32() & STREAM_ID_MASK;
            // SPDY/3 adds a status code; tolerate the 4-byte SPDY/2 form.
            let status = if payload.len() >= 4 {
                payload.get_u32()
            } else {
                0
            };
            Frame::GoAway {
                last_good_stream_id,
                status,
            }
        }
        kind::WINDOW_UPDATE => {
            need(8, &payload)?;
            Frame::WindowUpdate {
                stream_id: payload.get_u32() & STREAM_ID_MASK,
                delta: payload.get_u32() & STREAM_ID_MASK,
            }
        }
        _ => Frame::Unknown {
            version,
            kind,
            flags,
            payload,
        },
    };
    Ok(Some(frame))
}

fn put_control_header(out: &mut BytesMut, kind: u16, flags: u8, len: usize) {
    assert!(len <= MAX_PAYLOAD, "SPDY frame payload of {len} bytes");
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32((u32::from(flags) << 24) | len as u32);
}

/// Write the 8-byte header of a data frame carrying `len` bytes.
pub fn put_data_header(out: &mut BytesMut, stream_id: u32, flags: u8, len: usize) {
    assert!(len <= MAX_PAYLOAD, "SPDY data frame of {len} bytes");
    out.put_u32(stream_id & STREAM_ID_MASK);
    out.put_u32((u32::from(flags) << 24) | len as u32);
}

impl Frame {
    /// Append the wire form of this frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                out.reserve(HEADER_LEN + data.len());
                put_data_header(out, *stream_id, *flags, data.len());
                out.extend_from_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_id,
                priority,
                slot,
                flags,
                header_block,
            } => {
                put_control_header(out, kind::SYN_STREAM, *flags, 10 + header_block.len());
                out.put_u32(stream_id & STREAM_ID_MASK);
                out.put_u32(associated_id & STREAM_ID_MASK);
                out.put_u8((priority & 0x07) << 5);
                out.put_u8(*slot);
                out.extend_from_slice(header_block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                header_block,
            }
            | Frame::Headers {
                stream_id,
                flags,
                header_block,
            } => {
                let kind = if matches!(self, Frame::SynReply { .. }) {
                    kind::SYN_REPLY
                } else {
                    kind::HEADERS
                };
                put_control_header(out, kind, *flags, 4 + header_block.len());
                out.put_u32(stream_id & STREAM_ID_MASK);
                out.extend_from_slice(header_block);
            }
            Frame::RstStream { stream_id, status } => {
                put_control_header(out, kind::RST_STREAM, 0, 8);
                out.put_u32(stream_id & STREAM_ID_MASK);
                out.put_u32(*status);
            }
            Frame::Settings { flags, entries } => {
                put_control_header(out, kind::SETTINGS, *flags, 4 + 8 * entries.len());
                out.put_u32(entries.len() as u32);
                for (eflags, id, value) in entries {
                    out.put_u32((u32::from(*eflags) << 24) | (id & 0x00ff_ffff));
                    out.put_u32(*value);
                }
            }
            Frame::Ping { id } => {
                put_control_header(out, kind::PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                put_control_header(out, kind::GOAWAY, 0, 8);
                out.put_u32(last_good_stream_id & STREAM_ID_MASK);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                put_control_header(out, kind::WINDOW_UPDATE, 0, 8);
                out.put_u32(stream_id & STREAM_ID_MASK);
                out.put_u32(delta & STREAM_ID_MASK);
            }
            Frame::Unknown {
                version,
                kind,
                flags,
                payload,
            } => {
                assert!(payload.len() <= MAX_PAYLOAD);
                out.put_u16(0x8000 | (version & 0x7fff));
                out.put_u16(*kind);
                out.put_u32((u32::from(*flags) << 24) | payload.len() as u32);
                out.extend_from_slice(payload);
            }
        }
    }

    /// The frame's wire form.
    pub fn to_bytes(&self) -> BytesMut {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) {
        let mut buf = frame.to_bytes();
        // Every proper prefix is incomplete.
        for cut in 0..buf.len() {
            let mut part = BytesMut::from(&buf[..cut]);
            assert_eq!(
                decode(&mut part).unwrap(),
                None,
                "prefix {cut} of {frame:?}"
            );
            assert_eq!(part.len(), cut, "an incomplete decode must not consume");
        }
        buf.extend_from_slice(b"tail");
        let got = decode(&mut buf).unwrap().unwrap();
        assert_eq!(got, frame);
        assert_eq!(&buf[..], b"tail");
    }

    #[test]
    fn every_frame_type_round_trips() {
        round_trip(Frame::Data {
            stream_id: 7,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"hello"),
        });
        round_trip(Frame::Data {
            stream_id: 0x7fff_ffff,
            flags: 0,
            data: Bytes::new(),
        });
        round_trip(Frame::SynStream {
            stream_id: 3,
            associated_id: 1,
            priority: 5,
            slot: 9,
            flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
            header_block: Bytes::from_static(&[1, 2, 3, 4]),
        });
        round_trip(Frame::SynReply {
            stream_id: 3,
            flags: FLAG_FIN,
            header_block: Bytes::from_static(&[9, 9]),
        });
        round_trip(Frame::Headers {
            stream_id: 5,
            flags: 0,
            header_block: Bytes::from_static(&[1]),
        });
        round_trip(Frame::RstStream {
            stream_id: 5,
            status: rst::CANCEL,
        });
        round_trip(Frame::Settings {
            flags: 1,
            entries: vec![(1, 7, 65536), (0, 4, 100)],
        });
        round_trip(Frame::Ping { id: 1 });
        round_trip(Frame::GoAway {
            last_good_stream_id: 11,
            status: 0,
        });
        round_trip(Frame::WindowUpdate {
            stream_id: 1,
            delta: 65536,
        });
        round_trip(Frame::Unknown {
            version: 3,
            kind: 0x42,
            flags: 0,
            payload: Bytes::from_static(b"xyz"),
        });
    }

    #[test]
    fn wire_layout_matches_the_spec() {
        // Control frame: 0x80 0x03, type, flags, 24-bit length.
        let ping = Frame::Ping { id: 0x0102_0304 }.to_bytes();
        assert_eq!(
            &ping[..],
            &[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 1, 2, 3, 4]
        );
        let rst = Frame::RstStream {
            stream_id: 3,
            status: rst::REFUSED_STREAM,
        }
        .to_bytes();
        assert_eq!(
            &rst[..],
            &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 3]
        );
        // Data frame: stream id, flags, 24-bit length.
        let data = Frame::Data {
            stream_id: 0x0a0b_0c0d,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"ab"),
        }
        .to_bytes();
        assert_eq!(
            &data[..],
            &[0x0a, 0x0b, 0x0c, 0x0d, 0x01, 0, 0, 2, b'a', b'b']
        );
        // SYN_STREAM: id, associated id, priority in the top 3 bits, slot, then headers.
        let syn = Frame::SynStream {
            stream_id: 1,
            associated_id: 0,
            priority: 7,
            slot: 0,
            flags: 0,
            header_block: Bytes::from_static(&[0xaa]),
        }
        .to_bytes();
        assert_eq!(
            &syn[..],
            &[0x80, 3, 0, 1, 0, 0, 0, 11, 0, 0, 0, 1, 0, 0, 0, 0, 0xe0, 0, 0xaa]
        );
        // SYN_REPLY: id then headers.
        let reply = Frame::SynReply {
            stream_id: 1,
            flags: 0,
            header_block: Bytes::from_static(&[0xbb]),
        }
        .to_bytes();
        assert_eq!(&reply[..], &[0x80, 3, 0, 2, 0, 0, 0, 5, 0, 0, 0, 1, 0xbb]);
    }

    #[test]
    fn decodes_several_frames_from_one_buffer_and_masks_reserved_bits() {
        let mut buf = BytesMut::new();
        // A data frame whose stream id has the top bit clear, then a PING.
        buf.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 1, b'x']);
        buf.extend_from_slice(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 9]);
        // WINDOW_UPDATE with the reserved bit set on both words.
        buf.extend_from_slice(&[0x80, 3, 0, 9, 0, 0, 0, 8, 0x80, 0, 0, 1, 0x80, 0, 1, 0]);
        assert_eq!(
            decode(&mut buf).unwrap(),
            Some(Frame::Data {
                stream_id: 5,
                flags: 0,
                data: Bytes::from_static(b"x")
            })
        );
        assert_eq!(decode(&mut buf).unwrap(), Some(Frame::Ping { id: 9 }));
        assert_eq!(
            decode(&mut buf).unwrap(),
            Some(Frame::WindowUpdate {
                stream_id: 1,
                delta: 256
            })
        );
        assert_eq!(decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn large_data_frame_length_uses_24_bits() {
        let data = Bytes::from(vec![7u8; 300_000]);
        let frame = Frame::Data {
            stream_id: 1,
            flags: 0,
            data: data.clone(),
        };
        let bytes = frame.to_bytes();
        assert_eq!(&bytes[5..8], &[0x04, 0x93, 0xe0]);
        assert_eq!(pending_len(&bytes), Some(300_008));
        let mut buf = bytes;
        assert_eq!(decode(&mut buf).unwrap(), Some(frame));
    }

    #[test]
    fn short_control_frames_are_errors_and_other_versions_are_unknown() {
        let mut buf = BytesMut::from(&[0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(
            decode(&mut buf).unwrap(),
            Some(Frame::Unknown { version: 2, .. })
        ));
    }
}
