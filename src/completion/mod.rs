//! kubectl's plugin completion protocol. For `kubectl buildkit <TAB>`, kubectl runs
//! `kubectl_complete-buildkit WORDS...` (the words after `buildkit`, the last one being
//! completed, possibly empty) and reads Cobra's format: one candidate a line, optionally
//! TAB + description, then `:<directive>`. That script execs `kubectl-buildkit
//! __complete WORDS...`; the binary also answers when run under that name itself.

mod live;
mod position;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use clap::builder::ValueHint;
use clap::{Arg, Command, CommandFactory};

use position::{Position, Want};

/// The hidden subcommand kubectl_complete-buildkit calls.
pub const HIDDEN_SUBCOMMAND: &str = "__complete";
/// The program name kubectl looks for on PATH.
pub const KUBECTL_HELPER: &str = "kubectl_complete-buildkit";

/// Cobra's ShellCompDirective values.
const DIRECTIVE_DEFAULT: u32 = 0;
const DIRECTIVE_NO_FILE_COMP: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub value: String,
    pub description: String,
}

impl Candidate {
    pub fn new(value: impl Into<String>, description: impl Into<String>) -> Candidate {
        Candidate {
            value: value.into(),
            description: description.into(),
        }
    }
}

/// If the process was started for completion (`kubectl-buildkit __complete ...`, or
/// under the name kubectl_complete-buildkit), the words to complete.
pub fn requested(argv: &[OsString]) -> Option<Vec<String>> {
    let name = argv
        .first()
        .and_then(|a| Path::new(a).file_stem())
        .map(|s| s.to_string_lossy().into_owned());
    let words = |from: usize| {
        argv.iter()
            .skip(from)
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    };
    if name.as_deref() == Some(KUBECTL_HELPER) {
        return Some(words(1));
    }
    (argv.get(1).map(|a| a.as_os_str()) == Some(HIDDEN_SUBCOMMAND.as_ref())).then(|| words(2))
}

/// Print the candidates for `words` in Cobra's format; the exit code.
pub fn run(words: &[String]) -> i32 {
    let mut root = crate::cli::Cli::command();
    root.build();
    let pos = position::locate(&root, words);
    let (candidates, directive) = candidates(&pos);
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    for c in candidates {
        text.push_str(&c.value);
        if !c.description.is_empty() {
            text.push('\t');
            text.push_str(&c.description);
        }
        text.push('\n');
    }
    text.push_str(&format!(":{directive}\n"));
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// One line of help, tabs and newlines out (they would break the format).
fn one_line(help: Option<&clap::builder::StyledStr>) -> String {
    let text = help.map(|h| h.to_string()).unwrap_or_default();
    text.lines()
        .next()
        .unwrap_or_default()
        .replace('\t', " ")
        .trim()
        .to_string()
}

fn is_path(arg: &Arg) -> bool {
    matches!(
        arg.get_value_hint(),
        ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath | ValueHint::ExecutablePath
    )
}

fn keep(partial: &str, prefix: &str, list: Vec<Candidate>) -> Vec<Candidate> {
    list.into_iter()
        .filter(|c| c.value.starts_with(partial))
        .map(|c| Candidate::new(format!("{prefix}{}", c.value), c.description))
        .collect()
}

fn subcommands(cmd: &Command) -> Vec<Candidate> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| Candidate::new(s.get_name(), one_line(s.get_about())))
        .collect()
}

fn flags(cmd: &Command) -> Vec<Candidate> {
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        if arg.is_positional() || arg.is_hide_set() {
            continue;
        }
        let help = one_line(arg.get_help());
        for long in arg.get_long_and_visible_aliases().unwrap_or_default() {
            out.push(Candidate::new(format!("--{long}"), help.clone()));
        }
    }
    out.sort_by(|a, b| a.value.cmp(&b.value));
    out
}

fn values(arg: &Arg, pos: &Position) -> (Vec<Candidate>, u32) {
    let listed = match arg.get_id().as_str() {
        "context" | "cluster" | "user" => live::kubeconfig_names(pos, arg.get_id().as_str()),
        "namespace" => live::namespaces(pos),
        "pod" => live::pods(pos),
        _ => arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| Candidate::new(v.get_name(), one_line(v.get_help())))
            .collect(),
    };
    if listed.is_empty() && is_path(arg) {
        return (listed, DIRECTIVE_DEFAULT);
    }
    (listed, DIRECTIVE_NO_FILE_COMP)
}

fn candidates(pos: &Position) -> (Vec<Candidate>, u32) {
    match &pos.want {
        Want::Passthrough => (Vec::new(), DIRECTIVE_DEFAULT),
        Want::Flag { partial } => (keep(partial, "", flags(pos.cmd)), DIRECTIVE_NO_FILE_COMP),
        Want::Value {
            arg,
            prefix,
            partial,
        } => {
            let (list, directive) = values(arg, pos);
            (keep(partial, prefix, list), directive)
        }
        Want::Word { partial } => {
            if pos.cmd.has_subcommands() && pos.positionals == 0 {
                return (
                    keep(partial, "", subcommands(pos.cmd)),
                    DIRECTIVE_NO_FILE_COMP,
                );
            }
            let positional = pos
                .cmd
                .get_positionals()
                .filter(|a| !a.is_last_set())
                .nth(pos.positionals)
                .or_else(|| {
                    // A repeated positional (ring's KEYs) keeps taking words.
                    pos.cmd
                        .get_positionals()
                        .filter(|a| !a.is_last_set())
                        .last()
                        .filter(|a| a.get_num_args().is_some_and(|n| n.max_values() > 1))
                });
            match positional {
                Some(arg) => {
                    let (list, directive) = values(arg, pos);
                    (keep(partial, "", list), directive)
                }
                None => (Vec::new(), DIRECTIVE_NO_FILE_COMP),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(words: &[&str]) -> (Vec<String>, u32) {
        let mut root = crate::cli::Cli::command();
        root.build();
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        let (list, directive) = candidates(&position::locate(&root, &words));
        (list.into_iter().map(|c| c.value).collect(), directive)
    }

    #[test]
    fn subcommands_flags_and_enum_values() {
        let (subs, d) = complete(&[""]);
        for s in ["build", "pods", "ring", "tunnel", "version", "completion"] {
            assert!(subs.contains(&s.to_string()), "{s} in {subs:?}");
        }
        assert!(!subs.iter().any(|s| s.starts_with("__")), "{subs:?}");
        assert_eq!(d, DIRECTIVE_NO_FILE_COMP);
        assert_eq!(complete(&["tu"]).0, vec!["tunnel"]);

        let (fl, _) = complete(&["pods", "--"]);
        for f in [
            "--selector",
            "--algorithm",
            "--namespace",
            "--context",
            "--output",
        ] {
            assert!(fl.contains(&f.to_string()), "{f} in {fl:?}");
        }
        assert!(
            !fl.contains(&"--listen".to_string()),
            "tunnel's flag offered for pods"
        );
        assert_eq!(complete(&["tunnel", "--lis"]).0, vec!["--listen"]);

        assert_eq!(
            complete(&["pods", "--algorithm", ""]).0,
            vec!["classic", "buildx", "rendezvous"]
        );
        assert_eq!(
            complete(&["build", "--tunnel=p"]).0,
            vec!["--tunnel=port-forward"]
        );
        assert_eq!(complete(&["version", "-o", "j"]).0, vec!["json"]);
        assert_eq!(
            complete(&["completion", ""]).0,
            vec!["bash", "zsh", "fish", "powershell", "kubectl"]
        );
    }

    #[test]
    fn paths_leave_completion_to_the_shell() {
        assert_eq!(complete(&["build", "--kubeconfig", ""]), (vec![], 0));
        assert_eq!(complete(&["build", "-f", ""]), (vec![], 0));
        assert_eq!(complete(&["build", ""]), (vec![], 0));
        assert_eq!(complete(&["tunnel", "--", "bu"]), (vec![], 0));
        assert_eq!(complete(&["ring", "k1", ""]), (vec![], 4));
    }

    #[test]
    fn started_for_completion_by_name_or_hidden_subcommand() {
        let argv = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            requested(&argv(&["/x/kubectl_complete-buildkit", "build", ""])),
            Some(vec!["build".to_string(), String::new()])
        );
        assert_eq!(
            requested(&argv(&["kubectl-buildkit", "__complete", "-n", ""])),
            Some(vec!["-n".to_string(), String::new()])
        );
        assert_eq!(requested(&argv(&["kubectl-buildkit", "pods"])), None);
    }
}
