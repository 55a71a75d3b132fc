//! Tests of the model and each renderer, from StatusResponses made by hand in the
//! shapes BuildKit sends (a Dockerfile build: context transfers, a cached FROM, a RUN
//! that logs and fails).

mod model;
mod modes;
mod plain;
mod rawjson;
mod tty;
mod tty_pty;

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::{
    StatusResponse, Vertex, VertexLog, VertexStatus, VertexWarning,
};

/// 2026-12-01T14:30:00Z: the stream's time zero.
pub const T0: i64 = 1_764_599_400;

/// The daemon's time `ms` milliseconds after T0.
pub fn at(ms: i64) -> Timestamp {
    Timestamp {
        seconds: T0 + ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn nanos_at(ms: i64) -> i64 {
    T0 * 1_000_000_000 + ms * 1_000_000
}

pub const DEF: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub const IGNORE: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
pub const FROM: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
pub const RUN: &str = "sha256:4444444444444444444444444444444444444444444444444444444444444444";

/// One StatusResponse, built up.
#[derive(Default, Clone)]
pub struct Resp(pub StatusResponse);

impl Resp {
    pub fn new() -> Resp {
        Resp::default()
    }

    /// A step named but not started.
    pub fn named(mut self, digest: &str, name: &str) -> Resp {
        self.0.vertexes.push(Vertex {
            digest: digest.into(),
            name: name.into(),
            ..Vertex::default()
        });
        self
    }

    pub fn started(mut self, digest: &str, name: &str, start: i64) -> Resp {
        self.0.vertexes.push(Vertex {
            digest: digest.into(),
            name: name.into(),
            started: Some(at(start)),
            ..Vertex::default()
        });
        self
    }

    pub fn done(mut self, digest: &str, name: &str, start: i64, stop: i64) -> Resp {
        self.0.vertexes.push(Vertex {
            digest: digest.into(),
            name: name.into(),
            started: Some(at(start)),
            completed: Some(at(stop)),
            ..Vertex::default()
        });
        self
    }

    pub fn cached(mut self, digest: &str, name: &str, start: i64) -> Resp {
        self.0.vertexes.push(Vertex {
            digest: digest.into(),
            name: name.into(),
            started: Some(at(start)),
            completed: Some(at(start)),
            cached: true,
            ..Vertex::default()
        });
        self
    }

    pub fn failed(mut self, digest: &str, name: &str, start: i64, stop: i64, error: &str) -> Resp {
        self.0.vertexes.push(Vertex {
            digest: digest.into(),
            name: name.into(),
            started: Some(at(start)),
            completed: Some(at(stop)),
            error: error.into(),
            ..Vertex::default()
        });
        self
    }

    pub fn log(mut self, digest: &str, ms: i64, msg: &str) -> Resp {
        self.0.logs.push(VertexLog {
            vertex: digest.into(),
            timestamp: Some(at(ms)),
            stream: 1,
            msg: msg.as_bytes().to_vec(),
        });
        self
    }

    /// A sub-task: `current`/`total` bytes at `ms`, started at `start`, `stop` once done.
    pub fn task(
        mut self,
        digest: &str,
        id: &str,
        (current, total): (i64, i64),
        ms: i64,
        start: i64,
        stop: Option<i64>,
    ) -> Resp {
        self.0.statuses.push(VertexStatus {
            id: id.into(),
            vertex: digest.into(),
            name: String::new(),
            current,
            total,
            timestamp: Some(at(ms)),
            started: Some(at(start)),
            completed: stop.map(at),
        });
        self
    }

    pub fn warn(mut self, digest: &str, short: &str) -> Resp {
        self.0.warnings.push(VertexWarning {
            vertex: digest.into(),
            level: 1,
            short: short.as_bytes().to_vec(),
            detail: vec![b"a detail".to_vec()],
            url: "https://docs.docker.com/go/dockerfile/rule/x/".into(),
            info: None,
            ranges: Vec::new(),
        });
        self
    }
}

pub const RUN_NAME: &str = "[2/2] RUN echo building && echo half; printf 'line'; exit 3";
pub const RUN_ERROR: &str =
    "executor failed running [/bin/sh -c echo building && exit 3]: exit code: 3";

/// A Dockerfile build as BuildKit v0.8 streams it: two context loads, a cached FROM,
/// a RUN that writes three lines (the last without a newline, split across messages)
/// and fails.
pub fn failing_build() -> Vec<StatusResponse> {
    let def = "[internal] load build definition from Dockerfile";
    let ignore = "[internal] load .dockerignore";
    let from = "[1/2] FROM docker.io/local/busybox:1";
    vec![
        Resp::new()
            .named(DEF, def)
            .named(IGNORE, ignore)
            .named(FROM, from)
            .named(RUN, RUN_NAME),
        Resp::new().started(DEF, def, 0),
        Resp::new().task(DEF, "transferring dockerfile: 32B", (32, 0), 40, 10, None),
        Resp::new()
            .task(
                DEF,
                "transferring dockerfile: 32B",
                (32, 0),
                60,
                10,
                Some(60),
            )
            .done(DEF, def, 0, 120),
        Resp::new().done(IGNORE, ignore, 130, 150),
        Resp::new().cached(FROM, from, 200),
        Resp::new().started(RUN, RUN_NAME, 300),
        Resp::new().log(RUN, 512, "building\nhal"),
        Resp::new().log(RUN, 600, "f\n").log(RUN, 700, "li"),
        Resp::new().log(RUN, 800, "ne"),
        Resp::new().failed(RUN, RUN_NAME, 300, 1600, RUN_ERROR),
    ]
    .into_iter()
    .map(|r| r.0)
    .collect()
}
