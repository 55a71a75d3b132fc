//! `--progress plain`: buildctl's text log. Each step is numbered in the order it is
//! first printed; its lines carry the number (`#3 [2/4] RUN make`, `#3 0.512 cc -c
//! main.c`, `#3 DONE 1.2s`) and blocks are separated by a blank line. Output is held
//! per step and printed in flushes (about ten a second), so that concurrent steps
//! come out in readable blocks rather than interleaved line by line: the step being
//! printed goes on until it ends, unless another has waited `FAIR_TURN` with output.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use super::model::{Change, LogLine, Nanos, ProgressModel, StepState, TaskStatus};
use super::units::{log_offset, si_bytes};

/// How long another step's output may wait while the current step keeps printing.
const FAIR_TURN: Duration = Duration::from_secs(5);
/// The current step keeps the floor while it printed within this much time.
const HOLD: Duration = Duration::from_secs(1);
/// A running sub-task's line is printed again only after this much progress...
const MIN_PROGRESS: f64 = 0.05;
/// ...or this much time (daemon clock).
const MIN_TASK_GAP: Nanos = 5_000_000_000;

#[derive(Debug, Default)]
struct Held {
    /// Latest state of each sub-task changed since the last print, in order.
    tasks: Vec<TaskStatus>,
    warnings: Vec<String>,
    logs: Vec<LogLine>,
    /// Something changed about the step itself (start, end).
    touched: bool,
    since: Option<Instant>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.warnings.is_empty() && self.logs.is_empty() && !self.touched
    }
}

#[derive(Debug, Default)]
pub struct PlainRenderer {
    numbers: HashMap<usize, usize>,
    held: HashMap<usize, Held>,
    /// Steps with held output, in the order their output arrived.
    queue: Vec<usize>,
    current: Option<usize>,
    /// When the current step last printed a line of its own.
    current_spoke: Option<Instant>,
    printed_any: bool,
    /// Per step: the stop time its end line was printed for.
    ended: HashMap<usize, Nanos>,
    /// Per (step, task): (current, timestamp) last printed.
    last_task: HashMap<(usize, String), (i64, Nanos)>,
}

impl PlainRenderer {
    pub fn new() -> PlainRenderer {
        PlainRenderer::default()
    }

    /// Hold what `changes` brought until the next flush.
    pub fn observe(&mut self, changes: &[Change], now: Instant) {
        for change in changes {
            let step = match change {
                Change::Step(i)
                | Change::Task(i, _)
                | Change::Log(i, _)
                | Change::Warning(i, _) => *i,
            };
            let held = self.held.entry(step).or_default();
            held.since.get_or_insert(now);
            match change {
                Change::Step(_) => held.touched = true,
                Change::Task(_, task) => match held.tasks.iter_mut().find(|t| t.id == task.id) {
                    Some(t) => *t = task.clone(),
                    None => held.tasks.push(task.clone()),
                },
                Change::Log(_, line) => held.logs.push(line.clone()),
                Change::Warning(_, w) => held.warnings.push(w.clone()),
            }
            if !self.queue.contains(&step) {
                self.queue.push(step);
            }
        }
    }

    /// Print what is due: the current step, every step that has ended, then one running
    /// step (another than the current one only once it has waited its turn). With
    /// `all`, everything held.
    pub fn flush(
        &mut self,
        model: &ProgressModel,
        now: Instant,
        all: bool,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        if let Some(c) = self.current {
            if self.has_output(model, c) {
                self.print_step(model, c, now, out)?;
            }
        }
        let mut ended: Vec<usize> = self
            .queue
            .iter()
            .copied()
            .filter(|&i| model.step(i).completed() && self.has_output(model, i))
            .collect();
        ended.sort_by_key(|&i| model.step(i).stopped_at());
        for i in ended {
            self.print_step(model, i, now, out)?;
        }
        loop {
            let waiting: Vec<usize> = self
                .queue
                .iter()
                .copied()
                .filter(|&i| Some(i) != self.current && self.has_output(model, i))
                .collect();
            let Some(&next) = waiting.first() else { break };
            let current_busy = self
                .current
                .is_some_and(|c| model.step(c).started() && !model.step(c).completed())
                && self.current_spoke.is_some_and(|t| now - t < HOLD);
            let waited = self.held.get(&next).and_then(|h| h.since).map(|s| now - s);
            if all || !current_busy || waited.is_some_and(|w| w >= FAIR_TURN) {
                self.print_step(model, next, now, out)?;
            }
            if !all {
                break;
            }
        }
        if self.current.is_none() && !all {
            // Show what is running even before it says anything (again after another
            // step's block, like buildctl).
            if let Some(i) = model
                .steps()
                .iter()
                .position(|s| s.started() && !s.completed())
            {
                self.print_step(model, i, now, out)?;
            }
        }
        out.flush()
    }

    fn has_output(&self, model: &ProgressModel, i: usize) -> bool {
        let step = model.step(i);
        let held = self.held.get(&i).is_some_and(|h| !h.is_empty());
        let end_due = step.completed() && self.ended.get(&i) != step.stopped_at().as_ref();
        step.started() && (held || end_due)
    }

    fn print_step(
        &mut self,
        model: &ProgressModel,
        i: usize,
        now: Instant,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let step = model.step(i);
        let next = self.numbers.len() + 1;
        let n = *self.numbers.entry(i).or_insert(next);
        if self.current != Some(i) {
            if let Some(c) = self.current {
                writeln!(out, "#{} ...", self.numbers[&c])?;
            }
            if self.printed_any {
                writeln!(out)?;
            }
            self.printed_any = true;
            self.current_spoke = None;
            writeln!(out, "#{n} {}", step.name)?;
        }
        self.current = Some(i);
        let held = self.held.remove(&i).unwrap_or_default();
        if !(held.tasks.is_empty() && held.warnings.is_empty() && held.logs.is_empty()) {
            self.current_spoke = Some(now);
        }
        self.queue.retain(|&q| q != i);
        for task in &held.tasks {
            if self.task_due(i, task) {
                writeln!(out, "#{n} {}", task_line(task))?;
            }
        }
        for w in &held.warnings {
            writeln!(out, "#{n} WARN: {w}")?;
        }
        for line in &held.logs {
            writeln!(out, "#{n} {} {}", log_offset(line.offset_secs), line.text)?;
        }
        if step.completed() {
            if let Some(stop) = step.stopped_at() {
                self.ended.insert(i, stop);
            }
            writeln!(out, "#{n} {}", end_line(step))?;
            self.current = None;
        }
        Ok(())
    }

    /// A running sub-task's line is repeated only when it moved enough.
    fn task_due(&mut self, i: usize, task: &TaskStatus) -> bool {
        let key = (i, task.id.clone());
        if let (Some(&(current, at)), None) = (self.last_task.get(&key), task.completed) {
            let progress = if task.total > 0 {
                (task.current - current) as f64 / task.total as f64
            } else {
                0.0
            };
            if progress < MIN_PROGRESS && task.timestamp - at < MIN_TASK_GAP {
                return false;
            }
        }
        self.last_task.insert(key, (task.current, task.timestamp));
        true
    }
}

/// `<id> <cur> / <total> <secs>s done`, each part only when known.
pub fn task_line(task: &TaskStatus) -> String {
    let mut line = task.id.clone();
    if task.total != 0 {
        line += &format!(" {} / {}", si_bytes(task.current), si_bytes(task.total));
    } else if task.current != 0 {
        line += &format!(" {}", si_bytes(task.current));
    }
    if let Some(started) = task.started {
        let end = task.completed.unwrap_or(task.timestamp);
        let secs = (end - started) as f64 / 1e9;
        if secs > 0.01 {
            line += &format!(" {secs:.1}s");
        }
    }
    if task.completed.is_some() {
        line += " done";
    }
    line
}

/// `ERROR: msg`, `CANCELED`, `CACHED` or `DONE 1.2s`.
pub fn end_line(step: &StepState) -> String {
    if step.canceled() {
        "CANCELED".to_string()
    } else if !step.error.is_empty() {
        format!("ERROR: {}", step.error)
    } else if step.cached {
        "CACHED".to_string()
    } else {
        let now = step.stopped_at().unwrap_or(0);
        format!("DONE {:.1}s", step.duration(now).as_secs_f64())
    }
}
