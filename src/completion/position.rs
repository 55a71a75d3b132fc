//! Where the cursor is: the typed words walked through clap's command tree, so the
//! completer knows the subcommand, the flag values typed so far, and what the last
//! (partial) word should become.

use clap::{Arg, Command};

/// What the word being completed is.
#[derive(Debug)]
pub enum Want<'c> {
    /// A subcommand name or a positional argument of `Position::cmd`.
    Word { partial: String },
    /// A flag name (the word starts with `-`).
    Flag { partial: String },
    /// The value of `arg`; `prefix` is what must precede each candidate (the
    /// `--flag=` of an inline value, else empty).
    Value {
        arg: &'c Arg,
        prefix: String,
        partial: String,
    },
    /// After `--`: arguments for another program.
    Passthrough,
}

#[derive(Debug)]
pub struct Position<'c> {
    /// The innermost subcommand typed (the root command when none).
    pub cmd: &'c Command,
    /// (arg id, value) of every flag value typed before the cursor, in order.
    pub values: Vec<(String, String)>,
    /// How many positional words precede the cursor in `cmd`.
    pub positionals: usize,
    pub want: Want<'c>,
}

impl Position<'_> {
    /// The last value typed for the flag with this id.
    pub fn value(&self, id: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == id)
            .map(|(_, v)| v.as_str())
    }
}

fn takes_value(arg: &Arg) -> bool {
    !arg.is_positional() && arg.get_action().takes_values()
}

fn find_long<'c>(cmd: &'c Command, name: &str) -> Option<&'c Arg> {
    cmd.get_arguments().find(|a| {
        a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|al| al.contains(&name))
    })
}

fn find_short(cmd: &Command, c: char) -> Option<&Arg> {
    cmd.get_arguments().find(|a| {
        a.get_short() == Some(c) || a.get_all_short_aliases().is_some_and(|al| al.contains(&c))
    })
}

fn find_subcommand<'c>(cmd: &'c Command, word: &str) -> Option<&'c Command> {
    cmd.get_subcommands()
        .find(|s| s.get_name() == word || s.get_all_aliases().any(|a| a == word))
}

/// Walk `words` (everything typed after `kubectl buildkit`; the last one is the word
/// being completed, possibly empty) through `root`, which must have been built
/// (`Command::build`) so that global flags appear in every subcommand.
pub fn locate<'c>(root: &'c Command, words: &[String]) -> Position<'c> {
    let (current, done) = match words.split_last() {
        Some((last, rest)) => (last.as_str(), rest),
        None => ("", &[][..]),
    };
    let mut cmd = root;
    let mut values = Vec::new();
    let mut positionals = 0;
    let mut pending: Option<&Arg> = None;
    let mut after_dashes = false;
    for word in done {
        if after_dashes {
            continue;
        }
        if let Some(arg) = pending.take() {
            values.push((arg.get_id().to_string(), word.clone()));
            continue;
        }
        if word == "--" {
            after_dashes = true;
        } else if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            if let Some(arg) = find_long(cmd, name).filter(|a| takes_value(a)) {
                match inline {
                    Some(v) => values.push((arg.get_id().to_string(), v.to_string())),
                    None => pending = Some(arg),
                }
            }
        } else if word.len() > 1 && word.starts_with('-') {
            // A cluster of short flags (-vq), the last of which may take a value that
            // follows (-nNS, -n=NS) or is the next word.
            let shorts = &word[1..];
            for (i, c) in shorts.char_indices() {
                let Some(arg) = find_short(cmd, c).filter(|a| takes_value(a)) else {
                    continue;
                };
                let rest = &shorts[i + c.len_utf8()..];
                let rest = rest.strip_prefix('=').unwrap_or(rest);
                if rest.is_empty() {
                    pending = Some(arg);
                } else {
                    values.push((arg.get_id().to_string(), rest.to_string()));
                }
                break;
            }
        } else if let Some(sub) = find_subcommand(cmd, word).filter(|_| positionals == 0) {
            cmd = sub;
        } else {
            positionals += 1;
        }
    }
    let want = if after_dashes {
        Want::Passthrough
    } else if let Some(arg) = pending {
        Want::Value {
            arg,
            prefix: String::new(),
            partial: current.to_string(),
        }
    } else if let Some((name, partial)) = current.strip_prefix("--").and_then(|l| l.split_once('='))
    {
        match find_long(cmd, name).filter(|a| takes_value(a)) {
            Some(arg) => Want::Value {
                arg,
                prefix: format!("--{name}="),
                partial: partial.to_string(),
            },
            None => Want::Flag {
                partial: current.to_string(),
            },
        }
    } else if current.starts_with('-') {
        Want::Flag {
            partial: current.to_string(),
        }
    } else {
        Want::Word {
            partial: current.to_string(),
        }
    };
    Position {
        cmd,
        values,
        positionals,
        want,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn at(words: &[&str]) -> (Command, Vec<String>) {
        let mut root = crate::cli::Cli::command();
        root.build();
        (root, words.iter().map(|s| s.to_string()).collect())
    }

    fn want_value_of(p: &Position) -> (String, String, String) {
        match &p.want {
            Want::Value {
                arg,
                prefix,
                partial,
            } => (arg.get_id().to_string(), prefix.clone(), partial.clone()),
            other => panic!("expected a value, got {other:?}"),
        }
    }

    #[test]
    fn subcommand_and_flag_values_in_every_spelling() {
        let (root, w) = at(&[
            "-nteam",
            "build",
            "--context=dev",
            "-l",
            "app=bk",
            "--kube-pod-selector",
            "app=x",
            "-vq",
            "--pod",
            "",
        ]);
        let p = locate(&root, &w);
        assert_eq!(p.cmd.get_name(), "build");
        assert_eq!(p.value("namespace"), Some("team"));
        assert_eq!(p.value("context"), Some("dev"));
        assert_eq!(p.value("selector"), Some("app=x"));
        assert_eq!(want_value_of(&p), ("pod".into(), "".into(), "".into()));
    }

    #[test]
    fn inline_values_keep_their_prefix() {
        let (root, w) = at(&["pods", "--algorithm=ma"]);
        let p = locate(&root, &w);
        assert_eq!(
            want_value_of(&p),
            ("algorithm".into(), "--algorithm=".into(), "ma".into())
        );
    }

    #[test]
    fn words_flags_positionals_and_passthrough() {
        let (root, w) = at(&["bu"]);
        let p = locate(&root, &w);
        assert_eq!(p.cmd.get_name(), "kubectl-buildkit");
        assert!(matches!(&p.want, Want::Word { partial } if partial == "bu"));

        let (root, w) = at(&["ring", "key1", "--pods", "a,b", "--al"]);
        let p = locate(&root, &w);
        assert_eq!(p.cmd.get_name(), "ring");
        assert_eq!(p.positionals, 1);
        assert_eq!(p.value("pods"), Some("a,b"));
        assert!(matches!(&p.want, Want::Flag { partial } if partial == "--al"));

        // A positional that happens to be a subcommand's name stays a positional.
        let (root, w) = at(&["ring", "build", ""]);
        let p = locate(&root, &w);
        assert_eq!((p.cmd.get_name(), p.positionals), ("ring", 1));

        let (root, w) = at(&["tunnel", "--", "buildctl", ""]);
        assert!(matches!(locate(&root, &w).want, Want::Passthrough));

        // Boolean flags take no value: the next word is not swallowed.
        let (root, w) = at(&["pods", "--include-unready", "-o", ""]);
        let p = locate(&root, &w);
        assert_eq!(want_value_of(&p).0, "output");
    }

    #[test]
    fn nothing_typed_is_an_empty_word_at_the_root() {
        let (root, _) = at(&[]);
        let p = locate(&root, &[]);
        assert!(matches!(&p.want, Want::Word { partial } if partial.is_empty()));
    }
}
