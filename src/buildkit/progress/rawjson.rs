//! `--progress rawjson`: each StatusResponse as one line of JSON, the way buildctl
//! encodes its SolveStatus: its field names and order, empty fields left out where
//! buildctl leaves them out, digests as strings, times in RFC 3339 (UTC, trailing
//! zeros of the fraction dropped), bytes in standard padded base64, and `<`, `>`,
//! `&`, U+2028, U+2029 escaped as Go's encoder does. A warning's source definition
//! (the LLB graph) is not carried: tools read its filename, data and ranges.

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::{StatusResponse, VertexWarning};
use bollard_buildkit_proto::pb;
use serde::Serialize;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero32(n: &i32) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct SolveStatus<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    vertexes: Vec<Vertex<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    statuses: Vec<Status<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logs: Vec<Log<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<Warning<'a>>,
}

#[derive(Serialize)]
struct Vertex<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    digest: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    inputs: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    cached: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    error: &'a str,
    #[serde(rename = "progressGroup", skip_serializing_if = "Option::is_none")]
    progress_group: Option<ProgressGroup<'a>>,
}

#[derive(Serialize)]
struct ProgressGroup<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    weak: bool,
}

#[derive(Serialize)]
struct Status<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    vertex: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    total: i64,
    current: i64,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<String>,
}

#[derive(Serialize)]
struct Log<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    vertex: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    stream: i64,
    /// Go encodes an absent []byte as null.
    data: Option<String>,
    timestamp: String,
}

#[derive(Serialize)]
struct Warning<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    vertex: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    level: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    short: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    detail: Vec<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    url: &'a str,
    #[serde(rename = "sourceInfo", skip_serializing_if = "Option::is_none")]
    source_info: Option<SourceInfo<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    range: Vec<Range>,
}

#[derive(Serialize)]
struct SourceInfo<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    filename: &'a str,
    #[serde(skip_serializing_if = "String::is_empty")]
    data: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    language: &'a str,
}

#[derive(Serialize)]
struct Range {
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<Position>,
}

#[derive(Serialize)]
struct Position {
    #[serde(skip_serializing_if = "is_zero32")]
    line: i32,
    #[serde(skip_serializing_if = "is_zero32")]
    character: i32,
}

fn position(p: &pb::Position) -> Position {
    Position {
        line: p.line,
        character: p.character,
    }
}

fn warning(w: &VertexWarning) -> Warning<'_> {
    Warning {
        vertex: &w.vertex,
        level: w.level,
        short: base64(&w.short),
        detail: w.detail.iter().map(|d| base64(d)).collect(),
        url: &w.url,
        source_info: w.info.as_ref().map(|i| SourceInfo {
            filename: &i.filename,
            data: base64(&i.data),
            language: &i.language,
        }),
        range: w
            .ranges
            .iter()
            .map(|r| Range {
                start: r.start.as_ref().map(position),
                end: r.end.as_ref().map(position),
            })
            .collect(),
    }
}

/// `resp` as one line of JSON, newline included.
pub fn json_line(resp: &StatusResponse) -> String {
    let status = SolveStatus {
        vertexes: resp
            .vertexes
            .iter()
            .map(|v| Vertex {
                digest: &v.digest,
                inputs: &v.inputs,
                name: &v.name,
                started: v.started.as_ref().map(rfc3339),
                completed: v.completed.as_ref().map(rfc3339),
                cached: v.cached,
                error: &v.error,
                progress_group: v.progress_group.as_ref().map(|g| ProgressGroup {
                    id: &g.id,
                    name: &g.name,
                    weak: g.weak,
                }),
            })
            .collect(),
        statuses: resp
            .statuses
            .iter()
            .map(|s| Status {
                id: &s.id,
                vertex: &s.vertex,
                name: &s.name,
                total: s.total,
                current: s.current,
                timestamp: stamp_or_epoch(s.timestamp.as_ref()),
                started: s.started.as_ref().map(rfc3339),
                completed: s.completed.as_ref().map(rfc3339),
            })
            .collect(),
        logs: resp
            .logs
            .iter()
            .map(|l| Log {
                vertex: &l.vertex,
                stream: l.stream,
                data: (!l.msg.is_empty()).then(|| base64(&l.msg)),
                timestamp: stamp_or_epoch(l.timestamp.as_ref()),
            })
            .collect(),
        warnings: resp.warnings.iter().map(warning).collect(),
    };
    // Serialising plain structs of strings and numbers cannot fail.
    let json = serde_json::to_string(&status).unwrap_or_default();
    let mut line = String::with_capacity(json.len() + 1);
    for c in json.chars() {
        match c {
            '<' => line.push_str("\\u003c"),
            '>' => line.push_str("\\u003e"),
            '&' => line.push_str("\\u0026"),
            '\u{2028}' => line.push_str("\\u2028"),
            '\u{2029}' => line.push_str("\\u2029"),
            c => line.push(c),
        }
    }
    line.push('\n');
    line
}

/// An absent time is the Unix epoch, as Go's `AsTime` makes it.
fn stamp_or_epoch(ts: Option<&Timestamp>) -> String {
    rfc3339(ts.unwrap_or(&Timestamp {
        seconds: 0,
        nanos: 0,
    }))
}

/// `2026-12-01T14:30:05.12Z`: UTC, the fraction without trailing zeros, none if zero.
pub fn rfc3339(ts: &Timestamp) -> String {
    let days = ts.seconds.div_euclid(86_400);
    let secs = ts.seconds.rem_euclid(86_400);
    let (y, m, d) = civil_date(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    let nanos = ts.nanos.clamp(0, 999_999_999);
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as Go's encoding/json writes []byte.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(BASE64[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
