//! Messages on stderr: notes (hidden by -q), and debug detail (shown by -v).
//! stdout belongs to the command's product (tables, JSON, buildctl's output).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);
static VERBOSE: AtomicU8 = AtomicU8::new(0);

pub fn init(quiet: bool, verbose: u8) {
    QUIET.store(quiet, Ordering::Relaxed);
    VERBOSE.store(verbose, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

pub fn verbosity() -> u8 {
    VERBOSE.load(Ordering::Relaxed)
}

/// A note for the user (skipped with -q).
pub fn note(msg: impl std::fmt::Display) {
    if !quiet() {
        eprintln!("kubectl-buildkit: {msg}");
    }
}

/// A warning: shown even with -q, since it changes what happened.
pub fn warn(msg: impl std::fmt::Display) {
    eprintln!("kubectl-buildkit: warning: {msg}");
}

/// Detail shown at -v LEVEL and above.
pub fn debug(level: u8, msg: impl std::fmt::Display) {
    if verbosity() >= level && !quiet() {
        eprintln!("kubectl-buildkit: [v{level}] {msg}");
    }
}
