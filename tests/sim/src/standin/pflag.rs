//! A command-line parser with spf13/pflag's rules (what docker's cobra commands use):
//! `--name value`, `--name=value`, `-n value`, `-nvalue`, `-n=value`, grouped short
//! booleans (`-qa`), flags interspersed with arguments unless disabled, `--` ends
//! flags, a lone `-` is an argument. Errors read `unknown flag: --name`,
//! `unknown shorthand flag: 'x' in -xyz`, `flag needs an argument: --name`.

/// One flag.
#[derive(Debug, Clone, Copy)]
pub struct PFlag {
    pub long: &'static str,
    pub short: Option<char>,
    /// Takes a value (false = boolean).
    pub value: bool,
    /// pflag's NoOptDefVal: the value used when the flag is given without `=`.
    pub no_opt_default: Option<&'static str>,
}

/// A flag taking a value.
pub const fn v(long: &'static str, short: Option<char>) -> PFlag {
    PFlag {
        long,
        short,
        value: true,
        no_opt_default: None,
    }
}

/// A boolean flag.
pub const fn b(long: &'static str, short: Option<char>) -> PFlag {
    PFlag {
        long,
        short,
        value: false,
        no_opt_default: None,
    }
}

/// The flags given (in order) and the positional arguments.
#[derive(Debug, Clone, Default)]
pub struct PParsed {
    pub values: Vec<(&'static str, String)>,
    pub args: Vec<String>,
}

impl PParsed {
    /// The last value of a flag.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
    /// Every value of a repeatable flag.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// A boolean flag's value.
    pub fn bool(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v == "true")
    }
}

fn parse_bool(flag: &str, v: &str) -> Result<String, String> {
    match super::urfave::parse_go_bool(v) {
        Some(b) => Ok(b.to_string()),
        None => Err(format!(
            "invalid argument {v:?} for {flag:?} flag: strconv.ParseBool: parsing {v:?}: invalid syntax"
        )),
    }
}

/// Parse `args`. With `interspersed == false` the first positional argument ends
/// flag parsing (docker's root command).
pub fn parse(flags: &[PFlag], args: &[String], interspersed: bool) -> Result<PParsed, String> {
    let mut out = PParsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            out.args.extend(args[i..].iter().cloned());
            break;
        }
        if !a.starts_with('-') || a == "-" {
            out.args.push(a.clone());
            if !interspersed {
                out.args.extend(args[i..].iter().cloned());
                break;
            }
            continue;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, val) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(f) = flags.iter().find(|f| f.long == name) else {
                return Err(format!("unknown flag: --{name}"));
            };
            let value = if !f.value {
                match val {
                    Some(v) => parse_bool(&format!("--{name}"), &v)?,
                    None => "true".into(),
                }
            } else if let Some(v) = val {
                v
            } else if let Some(d) = f.no_opt_default {
                d.to_string()
            } else if i < args.len() {
                i += 1;
                args[i - 1].clone()
            } else {
                return Err(format!("flag needs an argument: --{name}"));
            };
            out.values.push((f.long, value));
            continue;
        }
        // Shorthands: -abc, -fVALUE, -f VALUE, -f=VALUE
        let chars: Vec<char> = a[1..].chars().collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            let Some(f) = flags.iter().find(|f| f.short == Some(c)) else {
                return Err(format!("unknown shorthand flag: '{c}' in {a}"));
            };
            k += 1;
            let rest: String = chars[k..].iter().collect();
            if !f.value {
                if let Some(v) = rest.strip_prefix('=') {
                    out.values.push((f.long, parse_bool(&format!("-{c}"), v)?));
                    break;
                }
                out.values.push((f.long, "true".into()));
                continue;
            }
            let value = if let Some(v) = rest.strip_prefix('=') {
                v.to_string()
            } else if !rest.is_empty() {
                rest
            } else if let Some(d) = f.no_opt_default {
                d.to_string()
            } else if i < args.len() {
                i += 1;
                args[i - 1].clone()
            } else {
                return Err(format!("flag needs an argument: '{c}' in -{c}"));
            };
            out.values.push((f.long, value));
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[PFlag] = &[
        v("tag", Some('t')),
        v("file", Some('f')),
        b("quiet", Some('q')),
        b("pull", None),
        PFlag {
            long: "provenance",
            short: None,
            value: true,
            no_opt_default: Some("true"),
        },
    ];

    fn p(args: &[&str]) -> Result<PParsed, String> {
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(FLAGS, &a, true)
    }

    #[test]
    fn forms() {
        let r = p(&[
            "-t",
            "a",
            "--tag=b",
            "-tc",
            "-qf",
            "D",
            ".",
            "--pull=false",
            "--provenance",
            "x",
        ])
        .unwrap();
        assert_eq!(r.all("tag"), vec!["a", "b", "c"]);
        assert_eq!(r.get("file"), Some("D"));
        assert!(r.bool("quiet"));
        assert!(!r.bool("pull"));
        assert_eq!(r.get("provenance"), Some("true"));
        assert_eq!(r.args, vec![".", "x"]);
        let r = p(&["--", "-q"]).unwrap();
        assert_eq!(r.args, vec!["-q"]);
    }

    #[test]
    fn errors() {
        assert_eq!(p(&["--nope"]).unwrap_err(), "unknown flag: --nope");
        assert_eq!(
            p(&["-qz"]).unwrap_err(),
            "unknown shorthand flag: 'z' in -qz"
        );
        assert_eq!(p(&["--tag"]).unwrap_err(), "flag needs an argument: --tag");
        assert!(p(&["--pull=maybe"]).is_err());
        let a: Vec<String> = ["x", "--nope"].iter().map(|s| s.to_string()).collect();
        assert_eq!(parse(FLAGS, &a, false).unwrap().args, vec!["x", "--nope"]);
    }
}
