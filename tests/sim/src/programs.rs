//! The programs a simulated container can run under exec, chosen from the argv.

use crate::config::PodConfig;

/// What an exec'd command does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `buildctl [global flags] dial-stdio`: stdin/stdout bridged to the pod's buildkitd.
    DialStdio,
    /// `cat`: stdin echoed to stdout until stdin ends.
    Cat,
    /// Fixed output and exit code (`true`, `false`, `sh -c "exit N"`, `buildctl --version`,
    /// `buildctl debug workers`, a missing executable, ...).
    Fixed {
        stdout: String,
        stderr: String,
        code: i32,
    },
}

fn fixed(stdout: impl Into<String>, stderr: impl Into<String>, code: i32) -> Program {
    Program::Fixed {
        stdout: stdout.into(),
        stderr: stderr.into(),
        code,
    }
}

fn not_found(cmd: &str) -> Program {
    fixed(
        "",
        format!("exec: \"{cmd}\": executable file not found in $PATH\n"),
        127,
    )
}

fn basename(cmd: &str) -> &str {
    cmd.rsplit('/').next().unwrap_or(cmd)
}

/// The buildkitd worker id a pod reports (stable per pod).
pub fn worker_id(uid: &str) -> String {
    uid.replace('-', "").chars().take(25).collect()
}

/// Choose the program for `argv` in `pod` (whose uid is `uid`).
pub fn resolve(argv: &[String], pod: &PodConfig, uid: &str) -> Program {
    let Some(cmd) = argv.first() else {
        return fixed("", "you must specify at least 1 command\n", 1);
    };
    let args = &argv[1..];
    match basename(cmd) {
        "buildctl" if pod.faults.buildctl_missing => not_found(cmd),
        "buildctl" => buildctl(args, uid),
        "true" => fixed("", "", 0),
        "false" => fixed("", "", 1),
        "cat" if args.is_empty() => Program::Cat,
        "echo" => fixed(format!("{}\n", args.join(" ")), "", 0),
        "hostname" => fixed(format!("{}\n", pod.name), "", 0),
        "sh" | "bash" => shell(args, pod, uid),
        _ => not_found(cmd),
    }
}

/// `sh -c SCRIPT`: `exit N`, or a single simple command.
fn shell(args: &[String], pod: &PodConfig, uid: &str) -> Program {
    let script = match args {
        [flag, script, ..] if flag == "-c" => script,
        _ => return fixed("", "sh: only -c SCRIPT is supported\n", 2),
    };
    let words: Vec<String> = script.split_whitespace().map(str::to_string).collect();
    match words.as_slice() {
        [] => fixed("", "", 0),
        [exit] if exit == "exit" => fixed("", "", 0),
        [exit, n] if exit == "exit" => match n.parse::<i32>() {
            Ok(code) => fixed("", "", code & 0xff),
            Err(_) => fixed("", format!("sh: exit: Illegal number: {n}\n"), 2),
        },
        _ => resolve(&words, pod, uid),
    }
}

/// buildctl's global flags that take a value.
const VALUE_FLAGS: &[&str] = &[
    "--addr",
    "--log-format",
    "--tlsservername",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
    "--tlsdir",
    "--timeout",
];

fn buildctl(args: &[String], uid: &str) -> Program {
    let mut rest = args.iter();
    let mut words = Vec::new();
    while let Some(a) = rest.next() {
        if a == "--version" || a == "-v" {
            return fixed(
                "buildctl github.com/moby/buildkit v0.20.1 de56a3c5056341667b5bad71f414ece70b50724f\n",
                "",
                0,
            );
        }
        if VALUE_FLAGS.contains(&a.as_str()) {
            rest.next();
        } else if !a.starts_with('-') {
            words.push(a.as_str());
        }
    }
    match words.as_slice() {
        ["dial-stdio", ..] => Program::DialStdio,
        ["debug", "workers", ..] => fixed(
            format!("ID\t\t\t\tPLATFORMS\n{}\tlinux/amd64,linux/arm64\n", worker_id(uid)),
            "",
            0,
        ),
        [] => fixed("NAME:\n   buildctl - build utility\n\nUSAGE:\n   buildctl [global options] command [command options] [arguments...]\n", "", 0),
        [other, ..] => fixed("", format!("No help topic for '{other}'\n"), 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(argv: &[&str]) -> Program {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        resolve(&argv, &PodConfig::new("ns", "p"), "uid")
    }

    fn code(p: Program) -> i32 {
        match p {
            Program::Fixed { code, .. } => code,
            _ => panic!("not fixed: {p:?}"),
        }
    }

    #[test]
    fn commands() {
        assert_eq!(run(&["buildctl", "dial-stdio"]), Program::DialStdio);
        assert_eq!(
            run(&[
                "buildctl",
                "--addr",
                "unix:///run/buildkit/buildkitd.sock",
                "dial-stdio"
            ]),
            Program::DialStdio
        );
        assert_eq!(
            run(&["/usr/bin/buildctl", "--debug", "dial-stdio"]),
            Program::DialStdio
        );
        assert_eq!(code(run(&["buildctl", "debug", "workers"])), 0);
        assert_eq!(code(run(&["buildctl", "--version"])), 0);
        assert_eq!(code(run(&["true"])), 0);
        assert_eq!(code(run(&["false"])), 1);
        assert_eq!(code(run(&["sh", "-c", "exit 3"])), 3);
        assert_eq!(code(run(&["sh", "-c", "false"])), 1);
        assert_eq!(run(&["cat"]), Program::Cat);
        assert_eq!(code(run(&["nope"])), 127);
        let mut pod = PodConfig::new("ns", "p");
        pod.faults.buildctl_missing = true;
        match resolve(&["buildctl".into(), "dial-stdio".into()], &pod, "u") {
            Program::Fixed { stderr, code, .. } => {
                assert_eq!(code, 127);
                assert!(stderr.contains("executable file not found in $PATH"));
            }
            p => panic!("{p:?}"),
        }
    }
}
