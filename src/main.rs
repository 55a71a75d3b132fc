//! kubectl-buildkit: build container images on a cluster's buildkitd pods.
//! Runtime, dispatch and error-to-exit-code; nothing else.
//!
//! The binary is the command line only: `cli` (clap), `commands` (flags -> the
//! library's option structs -> output) and `completion`. The plugin itself is the
//! `kubectl_buildkit` library (src/lib.rs).

mod cli;
mod commands;
mod completion;

use kubectl_buildkit::log;

use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command};

fn main() {
    // `kubectl buildkit <TAB>`: answered before clap, which must not judge partial words.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(words) = completion::requested(&argv) {
        std::process::exit(completion::run(&words));
    }
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    cli.command.resolve_builder();
    log::init(cli.kube.quiet, cli.kube.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Build(args) => {
                let sub = matches.subcommand_matches("build").expect("build matches");
                commands::build::run(&cli.kube, args, sub).await
            }
            Command::Pods(args) => commands::pods::run(&cli.kube, args).await,
            Command::Ring(args) => commands::ring::run(&cli.kube, args).await,
            Command::Tunnel(args) => commands::tunnel::run(&cli.kube, args).await,
            Command::Create(args) => commands::create::run(&cli.kube, args).await,
            Command::Rm(args) => commands::rm::run(&cli.kube, args).await,
            Command::Version(args) => commands::version::run(args),
            Command::Completion(args) => commands::completion::run(args),
        }
    });
    // Don't wait for tasks that may still hold connections: we are done.
    runtime.shutdown_background();
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
