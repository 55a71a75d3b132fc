//! Progress on stderr: an indicatif spinner on a terminal, nothing otherwise (and
//! nothing with -q). It is cleared before a child (buildctl, docker) takes over.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn start(msg: &str) -> Progress {
        let bar = (!crate::log::quiet() && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar.set_message(msg.to_string());
            bar
        });
        Progress { bar }
    }

    pub fn set(&self, msg: impl Into<String>) {
        let msg = msg.into();
        crate::log::debug(1, &msg);
        if let Some(bar) = &self.bar {
            bar.set_message(msg);
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
