//! The state of a solve as the Status stream tells it, folded one StatusResponse at a
//! time. Pure: no clock, no output. Every renderer reads it; `apply` also returns what
//! changed, in order, for the plain renderer, which prints changes rather than states.
//!
//! Memory stays flat however long the logs are: a step keeps its last
//! `KEPT_LOG_LINES` complete lines (the failure block and the live view show no more)
//! and the one partial line still being written.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::{StatusResponse, Vertex};

/// Nanoseconds since the Unix epoch on the daemon's clock.
pub type Nanos = i64;

/// Log lines a step keeps (buildctl keeps ten for its failure block).
pub const KEPT_LOG_LINES: usize = 10;

/// BuildKit marks a step that was stopped rather than failed with this error suffix.
const CANCELED: &str = "context canceled";

pub fn nanos(ts: &Timestamp) -> Nanos {
    ts.seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(ts.nanos))
}

fn span(from: Nanos, to: Nanos) -> Duration {
    Duration::from_nanos(u64::try_from(to.saturating_sub(from)).unwrap_or(0))
}

/// One run of a step: started, and stopped once completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: Nanos,
    pub stop: Option<Nanos>,
}

/// A sub-task of a step (a layer pulled, a context transferred), by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    pub id: String,
    pub current: i64,
    pub total: i64,
    pub timestamp: Nanos,
    pub started: Option<Nanos>,
    pub completed: Option<Nanos>,
}

/// One complete line a step wrote, with its time since the step started.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub offset_secs: f64,
    pub text: String,
}

impl LogLine {
    /// As buildctl shows it: `0.123 text`.
    pub fn shown(&self) -> String {
        format!(
            "{} {}",
            super::units::log_offset(self.offset_secs),
            self.text
        )
    }
}

/// A line not yet ended by a newline, and when it began.
#[derive(Debug, Clone)]
struct PartialLine {
    bytes: Vec<u8>,
    offset_secs: f64,
}

#[derive(Debug, Clone)]
pub struct StepState {
    pub digest: String,
    pub name: String,
    pub cached: bool,
    pub error: String,
    /// Runs, merged where they overlap, sorted by start.
    pub intervals: Vec<Interval>,
    /// Sub-tasks in the order they started.
    pub tasks: Vec<TaskStatus>,
    pub recent_logs: VecDeque<LogLine>,
    pub warnings: Vec<String>,
    /// Bytes of log the step wrote in all.
    pub log_bytes: u64,
    partial: Option<PartialLine>,
    /// Started on this machine's view of the stream (the daemon sent `started`).
    seen_started: bool,
}

impl StepState {
    fn new(digest: &str) -> StepState {
        StepState {
            digest: digest.to_string(),
            name: String::new(),
            cached: false,
            error: String::new(),
            intervals: Vec::new(),
            tasks: Vec::new(),
            recent_logs: VecDeque::new(),
            warnings: Vec::new(),
            log_bytes: 0,
            partial: None,
            seen_started: false,
        }
    }

    pub fn started(&self) -> bool {
        !self.intervals.is_empty()
    }

    /// Its latest run has stopped.
    pub fn completed(&self) -> bool {
        self.intervals.last().is_some_and(|i| i.stop.is_some())
    }

    pub fn stopped_at(&self) -> Option<Nanos> {
        self.intervals.last().and_then(|i| i.stop)
    }

    pub fn canceled(&self) -> bool {
        !self.error.is_empty() && self.error.ends_with(CANCELED)
    }

    /// Failed for a reason of its own (not cancelled).
    pub fn failed(&self) -> bool {
        !self.error.is_empty() && !self.canceled()
    }

    /// Time spent running, the overlap of runs counted once; a run still going counts
    /// up to `now`.
    pub fn duration(&self, now: Nanos) -> Duration {
        self.intervals
            .iter()
            .map(|i| span(i.start, i.stop.unwrap_or(now)))
            .sum()
    }

    fn log_offset(&self, at: Nanos) -> f64 {
        match self.intervals.last() {
            Some(i) => (at - i.start) as f64 / 1e9,
            None => 0.0,
        }
    }

    fn keep(&mut self, line: LogLine) {
        if self.recent_logs.len() == KEPT_LOG_LINES {
            self.recent_logs.pop_front();
        }
        self.recent_logs.push_back(line);
    }

    fn add_run(&mut self, start: Nanos, stop: Option<Nanos>) {
        match self.intervals.iter_mut().find(|i| i.start == start) {
            Some(run) => run.stop = stop,
            None => self.intervals.push(Interval { start, stop }),
        }
        self.intervals = merge(std::mem::take(&mut self.intervals));
    }
}

/// Overlapping runs become one. A run never reported stopped joins the next run,
/// ending when it ends: the daemon sends a step's state, not every event, so a later
/// run means the earlier one is over (were it kept open, a finished step would show
/// as running for ever).
fn merge(mut runs: Vec<Interval>) -> Vec<Interval> {
    runs.sort_by_key(|i| i.start);
    let mut merged: Vec<Interval> = Vec::with_capacity(runs.len());
    for run in runs {
        match merged.last_mut() {
            Some(last) => match last.stop {
                None => last.stop = run.stop,
                Some(stop) if stop < run.start => merged.push(run),
                Some(stop) => last.stop = run.stop.map(|s| s.max(stop)),
            },
            None => merged.push(run),
        }
    }
    merged
}

/// What one StatusResponse changed, in the order the plain renderer prints it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The step started, completed, was cached, failed or was renamed.
    Step(usize),
    Task(usize, TaskStatus),
    Log(usize, LogLine),
    Warning(usize, String),
}

#[derive(Debug, Default)]
pub struct ProgressModel {
    steps: Vec<StepState>,
    by_digest: HashMap<String, usize>,
}

impl ProgressModel {
    pub fn new() -> ProgressModel {
        ProgressModel::default()
    }

    /// Steps in the order the daemon first named them.
    pub fn steps(&self) -> &[StepState] {
        &self.steps
    }

    pub fn step(&self, index: usize) -> &StepState {
        &self.steps[index]
    }

    /// When the first step started, on the daemon's clock.
    pub fn first_start(&self) -> Option<Nanos> {
        self.steps
            .iter()
            .filter_map(|s| s.intervals.first().map(|i| i.start))
            .min()
    }

    fn index(&mut self, digest: &str) -> usize {
        if let Some(&i) = self.by_digest.get(digest) {
            return i;
        }
        self.steps.push(StepState::new(digest));
        self.by_digest
            .insert(digest.to_string(), self.steps.len() - 1);
        self.steps.len() - 1
    }

    pub fn apply(&mut self, resp: &StatusResponse) -> Vec<Change> {
        let mut changes = Vec::new();
        for v in &resp.vertexes {
            self.apply_vertex(v, &mut changes);
        }
        for s in &resp.statuses {
            // A status for a step never named cannot be shown under any name.
            let Some(&i) = self.by_digest.get(&s.vertex) else {
                continue;
            };
            let task = TaskStatus {
                id: s.id.clone(),
                current: s.current,
                total: s.total,
                timestamp: s.timestamp.as_ref().map(nanos).unwrap_or(0),
                started: s.started.as_ref().map(nanos),
                completed: s.completed.as_ref().map(nanos),
            };
            let tasks = &mut self.steps[i].tasks;
            match tasks.iter_mut().find(|t| t.id == task.id) {
                Some(t) => *t = task.clone(),
                None => tasks.push(task.clone()),
            }
            changes.push(Change::Task(i, task));
        }
        for l in &resp.logs {
            let Some(&i) = self.by_digest.get(&l.vertex) else {
                continue;
            };
            let at = l.timestamp.as_ref().map(nanos).unwrap_or(0);
            self.apply_log(i, at, &l.msg, &mut changes);
        }
        for w in &resp.warnings {
            let Some(&i) = self.by_digest.get(&w.vertex) else {
                continue;
            };
            let short = String::from_utf8_lossy(&w.short).into_owned();
            self.steps[i].warnings.push(short.clone());
            changes.push(Change::Warning(i, short));
        }
        changes
    }

    fn apply_vertex(&mut self, v: &Vertex, changes: &mut Vec<Change>) {
        let i = self.index(&v.digest);
        let step = &mut self.steps[i];
        let started = v.started.as_ref().map(nanos);
        // A repeat of the announcement without `started` must not undo a running step.
        if started.is_none() && step.seen_started {
            return;
        }
        let before = (
            step.name.clone(),
            step.cached,
            step.error.clone(),
            step.intervals.clone(),
        );
        step.name = v.name.clone();
        step.cached = v.cached;
        step.error = v.error.clone();
        if let Some(start) = started {
            step.seen_started = true;
            step.add_run(start, v.completed.as_ref().map(nanos));
        }
        let after = (
            step.name.clone(),
            step.cached,
            step.error.clone(),
            step.intervals.clone(),
        );
        if started.is_some() && before != after {
            if step.completed() {
                // Whatever the step wrote without a final newline is its last line.
                if let Some(line) = take_partial(step) {
                    changes.push(Change::Log(i, line));
                }
            }
            changes.push(Change::Step(i));
        }
    }

    fn apply_log(&mut self, i: usize, at: Nanos, msg: &[u8], changes: &mut Vec<Change>) {
        let step = &mut self.steps[i];
        step.log_bytes += msg.len() as u64;
        let mut rest = msg;
        while !rest.is_empty() {
            let (piece, ended) = match rest.iter().position(|&b| b == b'\n') {
                Some(n) => (&rest[..n], true),
                None => (rest, false),
            };
            rest = &rest[(piece.len() + usize::from(ended)).min(rest.len())..];
            let offset_secs = step.log_offset(at);
            let partial = step.partial.get_or_insert(PartialLine {
                bytes: Vec::new(),
                offset_secs,
            });
            partial.bytes.extend_from_slice(piece);
            if ended {
                if let Some(line) = take_partial(step) {
                    changes.push(Change::Log(i, line));
                }
            }
        }
    }

    /// The stream ended: lines still open are complete now.
    pub fn finish(&mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        for (i, step) in self.steps.iter_mut().enumerate() {
            if let Some(line) = take_partial(step) {
                changes.push(Change::Log(i, line));
            }
        }
        changes
    }
}

fn take_partial(step: &mut StepState) -> Option<LogLine> {
    let partial = step.partial.take()?;
    let mut text = String::from_utf8_lossy(&partial.bytes).into_owned();
    if text.ends_with('\r') {
        text.pop();
    }
    let line = LogLine {
        offset_secs: partial.offset_secs,
        text,
    };
    step.keep(line.clone());
    Some(line)
}
