//! A command-line parser that behaves like urfave/cli v3 (v3.9, which buildctl
//! v0.32 uses), for the flags and commands the stand-in buildctl declares.
//!
//! Behaviour copied from the real parser's rules (not its code):
//! - `--name value`, `--name=value`, `-name value` and `-name=value` all work; a
//!   boolean takes `--name` or `--name=false`.
//! - Flags may come after positional arguments; `--` ends flag parsing; a lone `-`
//!   is a positional argument that ends parsing (the rest is dropped); an argument
//!   like `-1` (dash then a non-letter) makes it and the rest positional.
//! - A positional argument naming a subcommand hands the rest to that subcommand.
//! - Flags are persistent (a subcommand accepts its ancestors' flags) unless local;
//!   `--help/-h` is local to each command, `--version/-v` local to the root.
//! - Slice flags repeat and are never split on commas (buildctl disables that).
//! - Errors: `flag provided but not defined: -NAME`, `flag needs an argument: ARG`,
//!   `invalid value "V" for flag -NAME: ...`.

use std::collections::BTreeMap;

/// The type of a flag's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Str,
    Slice,
    Int,
    Float,
    Duration,
}

/// One flag: its names (first = canonical), type, and whether it is local.
#[derive(Debug, Clone)]
pub struct Flag {
    pub names: &'static [&'static str],
    pub kind: Kind,
    pub local: bool,
    pub usage: &'static str,
}

impl Flag {
    pub const fn new(names: &'static [&'static str], kind: Kind, usage: &'static str) -> Flag {
        Flag {
            names,
            kind,
            local: false,
            usage,
        }
    }
    pub fn name(&self) -> &'static str {
        self.names[0]
    }
}

/// A command with its flags and subcommands.
#[derive(Debug, Clone)]
pub struct Command {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub usage: &'static str,
    pub hidden: bool,
    pub flags: Vec<Flag>,
    pub commands: Vec<Command>,
}

impl Command {
    pub fn new(name: &'static str, usage: &'static str) -> Command {
        Command {
            name,
            aliases: &[],
            usage,
            hidden: false,
            flags: Vec::new(),
            commands: Vec::new(),
        }
    }
    fn has_name(&self, n: &str) -> bool {
        self.name == n || self.aliases.contains(&n)
    }
    fn sub(&self, n: &str) -> Option<&Command> {
        self.commands.iter().find(|c| c.has_name(n))
    }
}

/// A parsed flag value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Str(String),
    Slice(Vec<String>),
    Int(i64),
    Float(f64),
    Duration(String),
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Run the action of the command at `path`.
    Run,
    /// Print this help text to stdout and exit 0.
    Help(String),
    /// Print the version and exit 0.
    Version,
    /// `Incorrect Usage: <msg>` + help, then `error: <msg>`, exit 1.
    Usage { msg: String, help: String },
    /// `No help topic for 'X'`, exit 3.
    NoHelpTopic(String),
}

/// The result of parsing.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Names of the commands walked, root excluded (e.g. ["debug", "workers"]).
    pub path: Vec<&'static str>,
    /// Values of the flags that were set, by canonical name.
    pub values: BTreeMap<&'static str, Value>,
    /// Positional arguments left for the innermost command.
    pub args: Vec<String>,
    pub outcome: Outcome,
}

impl Parsed {
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.values.get(name) {
            Some(Value::Str(s)) | Some(Value::Duration(s)) => Some(s),
            _ => None,
        }
    }
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some(Value::Bool(true)))
    }
    pub fn slice(&self, name: &str) -> Vec<String> {
        match self.values.get(name) {
            Some(Value::Slice(v)) => v.clone(),
            _ => Vec::new(),
        }
    }
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.values.get(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }
    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
}

const HELP: Flag = Flag {
    names: &["help", "h"],
    kind: Kind::Bool,
    local: true,
    usage: "show help",
};
const VERSION: Flag = Flag {
    names: &["version", "v"],
    kind: Kind::Bool,
    local: true,
    usage: "print the version",
};

/// Go's strconv.ParseBool.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's time.ParseDuration, as a check only.
pub fn valid_go_duration(s: &str) -> bool {
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    if t == "0" {
        return true;
    }
    if t.is_empty() {
        return false;
    }
    let b = t.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        if i == start {
            return false;
        }
        let ustart = i;
        while i < b.len() && !(b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        if !matches!(
            &t[ustart..i],
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
    }
    true
}

fn set(
    values: &mut BTreeMap<&'static str, Value>,
    f: &Flag,
    given: &str,
    v: &str,
) -> Result<(), String> {
    let bad = |why: String| format!("invalid value {v:?} for flag -{given}: {why}");
    let val = match f.kind {
        Kind::Bool => Value::Bool(
            parse_go_bool(v)
                .ok_or_else(|| bad(format!("strconv.ParseBool: parsing {v:?}: invalid syntax")))?,
        ),
        Kind::Str => Value::Str(v.to_string()),
        Kind::Int => Value::Int(
            v.parse::<i64>()
                .map_err(|_| bad(format!("strconv.ParseInt: parsing {v:?}: invalid syntax")))?,
        ),
        Kind::Float => Value::Float(
            v.parse::<f64>()
                .map_err(|_| bad(format!("strconv.ParseFloat: parsing {v:?}: invalid syntax")))?,
        ),
        Kind::Duration => {
            if !valid_go_duration(v) {
                return Err(bad(format!("time: invalid duration {v:?}")));
            }
            Value::Duration(v.to_string())
        }
        Kind::Slice => {
            let e = values
                .entry(f.name())
                .or_insert_with(|| Value::Slice(Vec::new()));
            if let Value::Slice(list) = e {
                list.push(v.to_string());
            }
            return Ok(());
        }
    };
    values.insert(f.name(), val);
    Ok(())
}

/// The flags a command accepts: its own, its help flag, the root's version flag,
/// then the non-local flags of its ancestors (nearest first).
fn applied<'a>(lineage: &[&'a Command], is_root: bool) -> Vec<&'a Flag> {
    let cmd = lineage[lineage.len() - 1];
    let mut out: Vec<&Flag> = cmd.flags.iter().collect();
    out.push(&HELP);
    if is_root {
        out.push(&VERSION);
    }
    for anc in lineage[..lineage.len() - 1].iter().rev() {
        for f in &anc.flags {
            if f.local
                || out
                    .iter()
                    .any(|o| o.names.iter().any(|n| f.names.contains(n)))
            {
                continue;
            }
            out.push(f);
        }
    }
    out
}

/// Parse the flags of one command level; returns the positional arguments.
fn parse_level(
    cmd: &Command,
    flags: &[&Flag],
    args: &[String],
    values: &mut BTreeMap<&'static str, Value>,
) -> Result<Vec<String>, String> {
    let mut pos = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let raw = &args[i];
        let first = raw.trim();
        if first.is_empty() {
            pos.push(raw.clone());
            i += 1;
            continue;
        }
        if first == "--" {
            pos.extend(args[i + 1..].iter().cloned());
            return Ok(pos);
        }
        if !first.starts_with('-') {
            if cmd.sub(first).is_some() {
                pos.extend(args[i..].iter().cloned());
                return Ok(pos);
            }
            pos.push(first.to_string());
            i += 1;
            continue;
        }
        if first.len() == 1 {
            pos.push(first.to_string());
            break;
        }
        let dashes = if first.as_bytes()[1] == b'-' {
            2
        } else if !first[1..].chars().next().is_some_and(char::is_alphabetic) {
            pos.extend(args[i..].iter().cloned());
            return Ok(pos);
        } else {
            1
        };
        let body = &first[dashes..];
        let (name, mut val, from_eq) = match body.split_once('=') {
            Some((n, v)) => (n, v.to_string(), true),
            None => (body, String::new(), false),
        };
        let Some(f) = flags.iter().find(|f| f.names.contains(&name)) else {
            return Err(format!("flag provided but not defined: -{name}"));
        };
        if f.kind == Kind::Bool {
            if val.is_empty() {
                val = "true".into();
            }
        } else if val.is_empty() && !from_eq {
            if i + 1 >= args.len() {
                return Err(format!("flag needs an argument: {first}"));
            }
            i += 1;
            val = args[i].clone();
        }
        set(values, f, name, &val)?;
        i += 1;
    }
    Ok(pos)
}

/// Help text for a command (a compact imitation of urfave's template).
pub fn help_text(prog: &str, lineage: &[&Command]) -> String {
    let cmd = lineage[lineage.len() - 1];
    let full: Vec<&str> = std::iter::once(prog)
        .chain(lineage[1..].iter().map(|c| c.name))
        .collect();
    let mut s = format!(
        "NAME:\n   {} - {}\n\nUSAGE:\n   {}",
        full.join(" "),
        cmd.usage,
        full.join(" ")
    );
    s.push_str(if cmd.commands.is_empty() {
        " [options]\n"
    } else {
        " [global options] [command [command options]]\n"
    });
    let visible: Vec<&Command> = cmd.commands.iter().filter(|c| !c.hidden).collect();
    if !visible.is_empty() {
        s.push_str("\nCOMMANDS:\n");
        for c in visible {
            let mut names = vec![c.name];
            names.extend(c.aliases);
            s.push_str(&format!("   {:<12} {}\n", names.join(", "), c.usage));
        }
    }
    s.push_str(if lineage.len() == 1 {
        "\nGLOBAL OPTIONS:\n"
    } else {
        "\nOPTIONS:\n"
    });
    let mut flags: Vec<&Flag> = cmd.flags.iter().collect();
    flags.push(&HELP);
    if lineage.len() == 1 {
        flags.push(&VERSION);
    }
    for f in flags {
        let names: Vec<String> = f
            .names
            .iter()
            .map(|n| {
                if n.len() == 1 {
                    format!("-{n}")
                } else {
                    format!("--{n}")
                }
            })
            .collect();
        let arg = match f.kind {
            Kind::Bool => "",
            Kind::Slice => " value [ --X value ]",
            _ => " value",
        };
        let arg = arg.replace('X', f.name());
        s.push_str(&format!("   {}{}  {}\n", names.join(", "), arg, f.usage));
    }
    s
}

/// Parse `args` (without argv[0]) against the command tree rooted at `root`.
pub fn parse(prog: &str, root: &Command, args: &[String]) -> Parsed {
    let mut values = BTreeMap::new();
    let mut lineage: Vec<&Command> = vec![root];
    let mut rest: Vec<String> = args.to_vec();
    loop {
        let cmd = lineage[lineage.len() - 1];
        let is_root = lineage.len() == 1;
        let flags = applied(&lineage, is_root);
        let path: Vec<&'static str> = lineage[1..].iter().map(|c| c.name).collect();
        let pos = match parse_level(cmd, &flags, &rest, &mut values) {
            Ok(p) => p,
            Err(msg) => {
                return Parsed {
                    path,
                    values,
                    args: Vec::new(),
                    outcome: Outcome::Usage {
                        msg,
                        help: help_text(prog, &lineage),
                    },
                }
            }
        };
        let wants_help = matches!(values.remove("help"), Some(Value::Bool(true)));
        let done = |outcome| Parsed {
            path: path.clone(),
            values: values.clone(),
            args: pos.clone(),
            outcome,
        };
        if wants_help {
            return done(Outcome::Help(help_text(prog, &lineage)));
        }
        if is_root && matches!(values.get("version"), Some(Value::Bool(true))) {
            return done(Outcome::Version);
        }
        if let Some(sub) = pos.first().and_then(|n| cmd.sub(n)) {
            if sub.name == "help" {
                // `help [topic]`: the topic names a command of this level.
                return match pos.get(1) {
                    None => done(Outcome::Help(help_text(prog, &lineage))),
                    Some(t) => match cmd.sub(t) {
                        Some(c) => {
                            let mut l = lineage.clone();
                            l.push(c);
                            done(Outcome::Help(help_text(prog, &l)))
                        }
                        None => done(Outcome::NoHelpTopic(t.clone())),
                    },
                };
            }
            lineage.push(sub);
            rest = pos[1..].to_vec();
            continue;
        }
        if !cmd.commands.is_empty() {
            // A command with subcommands and no action: urfave's help action.
            return match pos.first() {
                Some(t) => done(Outcome::NoHelpTopic(t.clone())),
                None => done(Outcome::Help(help_text(prog, &lineage))),
            };
        }
        return done(Outcome::Run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Command {
        let mut root = Command::new("app", "test");
        root.flags = vec![
            Flag::new(&["addr"], Kind::Str, ""),
            Flag::new(&["debug"], Kind::Bool, ""),
            Flag::new(&["timeout"], Kind::Int, ""),
        ];
        let mut build = Command::new("build", "build");
        build.aliases = &["b"];
        build.flags = vec![
            Flag::new(&["output", "o"], Kind::Slice, ""),
            Flag::new(&["no-cache"], Kind::Bool, ""),
        ];
        let mut debug = Command::new("debug", "debug");
        let mut workers = Command::new("workers", "w");
        workers.flags = vec![Flag::new(&["verbose", "v"], Kind::Bool, "")];
        debug.commands = vec![workers];
        root.commands = vec![build, debug, Command::new("help", "help")];
        root
    }

    fn p(args: &[&str]) -> Parsed {
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse("app", &tree(), &a)
    }

    #[test]
    fn forms() {
        let r = p(&[
            "--addr=tcp://x",
            "b",
            "-o",
            "type=a",
            "--output=type=b",
            "pos",
            "--no-cache",
        ]);
        assert_eq!(r.outcome, Outcome::Run);
        assert_eq!(r.path, vec!["build"]);
        assert_eq!(r.str("addr"), Some("tcp://x"));
        assert_eq!(r.slice("output"), vec!["type=a", "type=b"]);
        assert!(r.bool("no-cache"));
        assert_eq!(r.args, vec!["pos"]);
        // persistent: root flag after the subcommand
        let r = p(&["build", "-addr", "unix:///s", "--timeout", "3"]);
        assert_eq!(r.str("addr"), Some("unix:///s"));
        assert_eq!(r.int("timeout"), Some(3));
        let r = p(&["build", "--", "--no-cache"]);
        assert!(!r.bool("no-cache"));
        assert_eq!(r.args, vec!["--no-cache"]);
        let r = p(&["build", "--no-cache=false"]);
        assert!(!r.bool("no-cache"));
        let r = p(&["debug", "workers", "-v"]);
        assert_eq!(r.path, vec!["debug", "workers"]);
        assert!(r.bool("verbose"));
        assert_eq!(p(&["-v"]).outcome, Outcome::Version);
    }

    #[test]
    fn errors() {
        let e = |args: &[&str]| match p(args).outcome {
            Outcome::Usage { msg, .. } => msg,
            o => panic!("{o:?}"),
        };
        assert_eq!(e(&["--foo"]), "flag provided but not defined: -foo");
        assert_eq!(
            e(&["build", "-foo=1"]),
            "flag provided but not defined: -foo"
        );
        assert_eq!(
            e(&["build", "--version"]),
            "flag provided but not defined: -version"
        );
        assert_eq!(
            e(&["build", "--output"]),
            "flag needs an argument: --output"
        );
        assert!(e(&["--timeout", "x"]).starts_with("invalid value \"x\" for flag -timeout"));
        assert_eq!(p(&["nope"]).outcome, Outcome::NoHelpTopic("nope".into()));
        assert!(matches!(p(&["build", "-h"]).outcome, Outcome::Help(_)));
        assert!(matches!(p(&[]).outcome, Outcome::Help(_)));
    }

    #[test]
    fn durations() {
        assert!(valid_go_duration("1h30m"));
        assert!(valid_go_duration("0"));
        assert!(valid_go_duration("1.5s"));
        assert!(!valid_go_duration("10"));
        assert!(!valid_go_duration("abc"));
    }
}
