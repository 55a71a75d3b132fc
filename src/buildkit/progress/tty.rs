//! `--progress tty`: buildctl's live view, redrawn about ten times a second through
//! indicatif: `[+] Building 12.3s (5/10)`, then one ` => NAME   1.2s` line per step
//! that started (sub-lines for its transfers and warnings, and the last few log lines
//! of a step still running). When the stream ends the live view is cleared and the
//! final frame is written once as plain lines (so it survives any terminal height),
//! its header ending in FINISHED, ERROR or CANCELED, then the failure blocks.

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard_buildkit_proto::moby::buildkit::v1::StatusResponse;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use tokio::sync::mpsc::Receiver;

use super::model::{Nanos, ProgressModel, StepState};
use super::units::si_bytes;

/// Log lines shown under a running step.
const LIVE_LOG_LINES: usize = 6;
const BLUE: &str = "\x1b[34m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const FAINT: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// One picture of the build, as text lines without a final newline.
#[derive(Debug, Clone, Copy)]
pub struct TtyFrame {
    /// Columns of the terminal; lines use one less, so none wraps.
    pub width: usize,
    /// Rows of the terminal; a live frame keeps to one less (the final one does not).
    pub height: usize,
    /// The daemon's clock now, for steps still running.
    pub now: Nanos,
    /// Since the first step started.
    pub elapsed: Duration,
    /// The stream has ended: show everything and the outcome.
    pub last: bool,
    pub color: bool,
}

struct Line {
    text: String,
    color: Option<&'static str>,
    /// Part of a step that has completed (the first to go when rows run short).
    done: bool,
}

impl TtyFrame {
    pub fn render(&self, model: &ProgressModel) -> String {
        let steps = model.steps();
        let completed = steps.iter().filter(|s| s.completed()).count();
        let outcome = if !self.last {
            ""
        } else if steps.iter().any(|s| s.failed()) {
            " ERROR"
        } else if steps.iter().any(|s| s.canceled()) {
            " CANCELED"
        } else if completed > 0 && completed == steps.len() {
            " FINISHED"
        } else {
            ""
        };
        let header = format!(
            "[+] Building {:.1}s ({completed}/{}){outcome}",
            self.elapsed.as_secs_f64(),
            steps.len()
        );
        let mut started: Vec<&StepState> = steps.iter().filter(|s| s.started()).collect();
        started.sort_by_key(|s| s.intervals.first().map(|i| i.start));
        let mut lines = Vec::new();
        for step in started {
            self.step_lines(step, &mut lines);
        }
        if !self.last {
            let room = self.height.saturating_sub(2);
            while lines.len() > room {
                let drop = lines.iter().position(|l| l.done).unwrap_or(0);
                lines.remove(drop);
            }
        }
        let cols = self.width.saturating_sub(1);
        let mut out = fit(&header, cols);
        for line in lines {
            out.push('\n');
            match line.color.filter(|_| self.color) {
                Some(c) => out.push_str(&format!("{c}{}{RESET}", fit(&line.text, cols))),
                None => out.push_str(&fit(&line.text, cols)),
            }
        }
        out
    }

    fn step_lines(&self, step: &StepState, lines: &mut Vec<Line>) {
        let done = step.completed();
        let (mark, color) = if step.canceled() {
            ("CANCELED ", Some(YELLOW))
        } else if step.failed() {
            ("ERROR ", Some(RED))
        } else if done {
            (if step.cached { "CACHED " } else { "" }, Some(BLUE))
        } else {
            ("", None)
        };
        let secs = step.duration(step.stopped_at().unwrap_or(self.now));
        let name = format!("{mark}{}", step.name.replace('\t', " "));
        lines.push(Line {
            text: self.with_timer(&format!(" => {name}"), secs),
            color,
            done,
        });
        for task in &step.tasks {
            let mut text = format!(" => => {}", task.id);
            if task.total != 0 {
                text += &format!(" {} / {}", si_bytes(task.current), si_bytes(task.total));
            } else if task.current != 0 {
                text += &format!(" {}", si_bytes(task.current));
            }
            let end = task
                .completed
                .unwrap_or(if done { task.timestamp } else { self.now });
            let secs = task.started.map(|s| span(s, end)).unwrap_or_default();
            let task_done = task.completed.is_some();
            lines.push(Line {
                text: self.with_timer(&text, secs),
                color: task_done.then_some(BLUE),
                done,
            });
        }
        for w in &step.warnings {
            lines.push(Line {
                text: format!(" => WARN: {w}"),
                color: Some(YELLOW),
                done,
            });
        }
        if !done {
            let skip = step.recent_logs.len().saturating_sub(LIVE_LOG_LINES);
            for log in step.recent_logs.iter().skip(skip) {
                lines.push(Line {
                    text: format!(" => => # {}", log.text),
                    color: Some(FAINT),
                    done,
                });
            }
        }
    }

    /// `text`, padded so that ` 1.2s` ends the line (the text cut if it must be).
    fn with_timer(&self, text: &str, secs: Duration) -> String {
        let secs = secs.as_secs_f64();
        let timer = format!(" {:3.1}s", if secs < 0.05 { 0.0 } else { secs });
        let cols = self.width.saturating_sub(1);
        let room = cols.saturating_sub(timer.chars().count());
        let text: String = text.chars().take(room).collect();
        format!("{text:<room$}{timer}")
    }
}

fn span(from: Nanos, to: Nanos) -> Duration {
    Duration::from_nanos(u64::try_from(to - from).unwrap_or(0))
}

fn fit(text: &str, cols: usize) -> String {
    text.chars().take(cols).collect()
}

fn unix_nanos_now() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as Nanos)
        .unwrap_or(0)
}

/// The daemon's clock as this machine sees it: anchored when the first step is seen
/// to start, like buildctl, so a skewed daemon clock does not skew the times shown.
#[derive(Debug, Default)]
struct DaemonClock {
    anchor: Option<(Instant, Nanos)>,
}

impl DaemonClock {
    fn observe(&mut self, model: &ProgressModel) {
        if self.anchor.is_none() {
            self.anchor = model.first_start().map(|s| (Instant::now(), s));
        }
    }

    fn now(&self) -> Nanos {
        match self.anchor {
            Some((at, start)) => start + at.elapsed().as_nanos() as Nanos,
            None => unix_nanos_now(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.anchor.map(|(at, _)| at.elapsed()).unwrap_or_default()
    }
}

/// Asks the terminal's size as (columns, rows), at every frame (it may be resized).
pub type TerminalSize = Arc<dyn Fn() -> (u16, u16) + Send + Sync>;

/// The size of the terminal on `fd`, if it is one with a size.
pub fn terminal_size(fd: std::os::fd::RawFd) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ only fills the winsize we own; a bad fd is an error return.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}

/// stderr's size, or 80x24 when it has none.
pub fn stderr_size() -> TerminalSize {
    Arc::new(|| terminal_size(2).unwrap_or((80, 24)))
}

/// indicatif's view of our output: ANSI cursor moves into the shared writer.
struct TerminalWriter {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    size: TerminalSize,
}

impl fmt::Debug for TerminalWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TerminalWriter")
    }
}

impl TerminalWriter {
    fn write(&self, s: &str) -> std::io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(s.as_bytes())
    }

    fn cursor(&self, n: usize, code: char) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.write(&format!("\x1b[{n}{code}"))
    }
}

impl TermLike for TerminalWriter {
    fn width(&self) -> u16 {
        (self.size)().0
    }
    fn height(&self) -> u16 {
        (self.size)().1
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'A')
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'B')
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'C')
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'D')
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write(s)?;
        self.write("\n")
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.write(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.write("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// The live view over `out`, a terminal of `size`.
pub struct TtyRenderer {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    size: TerminalSize,
    bar: ProgressBar,
    clock: DaemonClock,
    color: bool,
}

impl TtyRenderer {
    pub fn new(out: Box<dyn Write + Send>, size: TerminalSize) -> TtyRenderer {
        let out = Arc::new(Mutex::new(out));
        let term = TerminalWriter {
            out: out.clone(),
            size: size.clone(),
        };
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(term), 10);
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) = ProgressStyle::with_template("{msg}") {
            bar.set_style(style);
        }
        TtyRenderer {
            out,
            size,
            bar,
            clock: DaemonClock::default(),
            color: std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn frame(&self, last: bool) -> TtyFrame {
        let (cols, rows) = (self.size)();
        TtyFrame {
            width: usize::from(cols),
            height: usize::from(rows),
            now: self.clock.now(),
            elapsed: self.clock.elapsed(),
            last,
            color: self.color,
        }
    }

    pub fn apply(&mut self, model: &mut ProgressModel, resp: &StatusResponse) {
        model.apply(resp);
        self.clock.observe(model);
    }

    pub fn redraw(&self, model: &ProgressModel) {
        self.bar.set_message(self.frame(false).render(model));
    }

    /// Clear the live view; write the final frame and every failure block.
    pub fn finish(self, model: &ProgressModel) {
        self.bar.finish_and_clear();
        let text = self.frame(true).render(model);
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{text}").and_then(|_| super::write_failures(model, &mut **out));
    }
}

pub async fn run(
    model: &mut ProgressModel,
    rx: &mut Receiver<StatusResponse>,
    out: Box<dyn Write + Send>,
    size: TerminalSize,
) {
    let mut tty = TtyRenderer::new(out, size);
    let mut tick = tokio::time::interval(super::REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            resp = rx.recv() => match resp {
                Some(resp) => tty.apply(model, &resp),
                None => break,
            },
            _ = tick.tick() => tty.redraw(model),
        }
    }
    model.finish();
    tty.finish(model);
}
