//! `kubectl buildkit completion SHELL`: completion scripts for the standalone binary,
//! and the `kubectl_complete-buildkit` helper kubectl itself runs.

use std::io::Write;

use anyhow::{Context as _, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionArgs, CompletionShell};
use crate::completion::{HIDDEN_SUBCOMMAND, KUBECTL_HELPER};

/// The helper script kubectl runs for `kubectl buildkit <TAB>`.
pub fn kubectl_helper_script() -> String {
    format!(
        "#!/bin/sh\n\
         # {KUBECTL_HELPER}: shell completion for `kubectl buildkit` (kubectl 1.26+).\n\
         # kubectl runs this with the words typed after `buildkit`; kubectl-buildkit\n\
         # answers with candidates in Cobra's format. Keep it executable on PATH.\n\
         exec kubectl-buildkit {HIDDEN_SUBCOMMAND} \"$@\"\n"
    )
}

pub fn run(args: &CompletionArgs) -> Result<i32> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
        CompletionShell::Powershell => Shell::PowerShell,
        CompletionShell::Kubectl => {
            let mut out = std::io::stdout().lock();
            out.write_all(kubectl_helper_script().as_bytes())
                .and_then(|_| out.flush())
                .context("cannot write the completion script to stdout")?;
            return Ok(0);
        }
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kubectl-buildkit", &mut buf);
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)
        .and_then(|_| out.flush())
        .context("cannot write the completion script to stdout")?;
    Ok(0)
}
