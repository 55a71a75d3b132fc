//! Progress of a solve from BuildKit's Status stream, shown like buildctl shows it:
//! `--progress auto|tty|plain|rawjson|quiet`. The caller feeds StatusResponses into a
//! channel and awaits `run`, which renders until the channel closes and then returns
//! what happened (each step, and the failing one with its last log lines).
//!
//! Only what the daemon sent is printed: no flag, secret or environment of ours.

// Nothing calls `run` until the built-in client is wired in (branch `client`): drop
// this line then.
#![cfg_attr(not(test), allow(dead_code))]

pub mod model;
pub mod plain;
pub mod rawjson;
pub mod tty;
mod units;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use bollard_buildkit_proto::moby::buildkit::v1::StatusResponse;
use tokio::sync::mpsc::Receiver;

use model::{LogLine, ProgressModel, StepState};
use plain::PlainRenderer;
use rawjson::json_line;

/// How often the plain and tty displays catch up with the stream.
const REFRESH: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// tty on a terminal, else plain.
    Auto,
    Tty,
    Plain,
    RawJson,
    Quiet,
}

/// Where a progress mode was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeSource {
    Flag,
    Env,
}

impl fmt::Display for ModeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModeSource::Flag => "--progress",
            ModeSource::Env => "BUILDKIT_PROGRESS",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadProgressMode {
    #[error("{from} {value:?} is not a progress mode: use auto, tty, plain, rawjson or quiet")]
    Unknown { value: String, from: ModeSource },
    #[error(
        "{from} tty needs stderr to be a terminal: use plain (or auto, which picks plain here)"
    )]
    NotATerminal { from: ModeSource },
}

impl ProgressMode {
    fn parse(value: &str, source: ModeSource) -> Result<ProgressMode, BadProgressMode> {
        Ok(match value {
            "" | "auto" => ProgressMode::Auto,
            "tty" => ProgressMode::Tty,
            "plain" => ProgressMode::Plain,
            "rawjson" => ProgressMode::RawJson,
            "quiet" => ProgressMode::Quiet,
            _ => {
                return Err(BadProgressMode::Unknown {
                    value: value.to_string(),
                    from: source,
                })
            }
        })
    }

    /// The mode to use: the flag, else `BUILDKIT_PROGRESS`, else auto; auto is tty on
    /// a terminal and plain elsewhere. Never returns `Auto`. An empty value means auto
    /// (as buildctl takes it); asking for tty without a terminal is an error, as in
    /// buildctl, since the live view would garble a log.
    pub fn resolve(
        flag: Option<&str>,
        env_buildkit_progress: Option<&str>,
        stderr_is_tty: bool,
    ) -> Result<ProgressMode, BadProgressMode> {
        let (asked, source) = match (flag, env_buildkit_progress) {
            (Some(f), _) => (ProgressMode::parse(f, ModeSource::Flag)?, ModeSource::Flag),
            (None, Some(e)) => (ProgressMode::parse(e, ModeSource::Env)?, ModeSource::Env),
            (None, None) => (ProgressMode::Auto, ModeSource::Flag),
        };
        match asked {
            ProgressMode::Auto if stderr_is_tty => Ok(ProgressMode::Tty),
            ProgressMode::Auto => Ok(ProgressMode::Plain),
            ProgressMode::Tty if !stderr_is_tty => {
                Err(BadProgressMode::NotATerminal { from: source })
            }
            mode => Ok(mode),
        }
    }
}

/// What the stream said about the build, once it ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildSummary {
    /// Every step, in the order the daemon first named it.
    pub vertices: Vec<VertexSummary>,
    /// The first step that failed (not merely cancelled).
    pub failed: Option<FailedStep>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VertexSummary {
    pub digest: String,
    pub name: String,
    pub cached: bool,
    pub error: Option<String>,
    pub started: bool,
    pub completed: bool,
    /// Time it ran, once completed.
    pub duration: Option<Duration>,
}

/// A failed step and the last lines it wrote, as buildctl shows them
/// (`0.123 text`, time since the step started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedStep {
    pub name: String,
    pub error: String,
    pub last_logs: Vec<String>,
}

/// buildctl's block after a failure: `------`, ` > NAME:`, the last log lines,
/// `------` (no newline after the last).
impl fmt::Display for FailedStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "------")?;
        writeln!(f, " > {}:", self.name)?;
        for line in &self.last_logs {
            writeln!(f, "{line}")?;
        }
        write!(f, "------")
    }
}

impl FailedStep {
    fn of(step: &StepState) -> FailedStep {
        FailedStep {
            name: step.name.clone(),
            error: step.error.clone(),
            last_logs: step.recent_logs.iter().map(LogLine::shown).collect(),
        }
    }
}

impl BuildSummary {
    pub fn of(model: &ProgressModel) -> BuildSummary {
        let vertices = model
            .steps()
            .iter()
            .map(|s| VertexSummary {
                digest: s.digest.clone(),
                name: s.name.clone(),
                cached: s.cached,
                error: (!s.error.is_empty()).then(|| s.error.clone()),
                started: s.started(),
                completed: s.completed(),
                duration: s.stopped_at().map(|stop| s.duration(stop)),
            })
            .collect();
        let failed = model
            .steps()
            .iter()
            .find(|s| s.failed())
            .map(FailedStep::of);
        BuildSummary { vertices, failed }
    }
}

/// Every failed step's block, as buildctl prints them after the progress.
fn write_failures(model: &ProgressModel, out: &mut dyn Write) -> std::io::Result<()> {
    for step in model.steps().iter().filter(|s| s.failed()) {
        writeln!(out, "{}", FailedStep::of(step))?;
    }
    out.flush()
}

/// Render the stream in `mode` to `out` until `rx` closes; then the summary. Write
/// errors (a closed stderr) stop the output, never the build. `Auto` is resolved
/// here against stderr.
pub async fn run(
    mode: ProgressMode,
    mut rx: Receiver<StatusResponse>,
    mut out: Box<dyn Write + Send>,
) -> BuildSummary {
    let mode = match mode {
        ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Tty,
        ProgressMode::Auto => ProgressMode::Plain,
        mode => mode,
    };
    let mut model = ProgressModel::new();
    match mode {
        ProgressMode::Auto | ProgressMode::Plain => {
            run_plain(&mut model, &mut rx, &mut *out).await;
        }
        ProgressMode::Tty => tty::run(&mut model, &mut rx, out, tty::stderr_size()).await,
        ProgressMode::RawJson => {
            let mut writing = true;
            while let Some(resp) = rx.recv().await {
                model.apply(&resp);
                if writing {
                    writing = out
                        .write_all(json_line(&resp).as_bytes())
                        .and_then(|_| out.flush())
                        .is_ok();
                }
            }
        }
        ProgressMode::Quiet => {
            while let Some(resp) = rx.recv().await {
                model.apply(&resp);
            }
        }
    }
    model.finish();
    BuildSummary::of(&model)
}

async fn run_plain(
    model: &mut ProgressModel,
    rx: &mut Receiver<StatusResponse>,
    out: &mut (dyn Write + Send),
) {
    let mut plain = PlainRenderer::new();
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut writing = true;
    loop {
        tokio::select! {
            resp = rx.recv() => match resp {
                Some(resp) => plain.observe(&model.apply(&resp), Instant::now()),
                None => break,
            },
            _ = tick.tick() => {
                if writing {
                    writing = plain.flush(model, Instant::now(), false, out).is_ok();
                }
            }
        }
    }
    plain.observe(&model.finish(), Instant::now());
    if writing && plain.flush(model, Instant::now(), true, out).is_ok() {
        let _ = write_failures(model, out);
    }
}
