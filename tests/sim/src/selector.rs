//! Label selectors with the apiserver's semantics (k8s.io/apimachinery/pkg/labels):
//! `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>1`, `k<1`,
//! comma = AND, whitespace anywhere between tokens.

use std::collections::BTreeMap;

/// A parsed selector: every requirement must hold. Empty selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

impl Selector {
    /// Parse; the error is the apiserver's wording (a 400 BadRequest message).
    pub fn parse(text: &str) -> Result<Selector, String> {
        let tokens = lex(text).map_err(|e| format!("unable to parse requirement: {e}"))?;
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if p.peek() == &Tok::End {
            return Ok(Selector { requirements });
        }
        loop {
            requirements.push(
                p.requirement()
                    .map_err(|e| format!("unable to parse requirement: {e}"))?,
            );
            match p.next() {
                Tok::End => break,
                Tok::Comma => continue,
                t => {
                    return Err(format!(
                        "found '{}', expected: ',' or 'end of string'",
                        t.text()
                    ))
                }
            }
        }
        Ok(Selector { requirements })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let get = |k: &String| labels.get(k);
        match self {
            Requirement::Equals(k, v) => get(k) == Some(v),
            Requirement::NotEquals(k, v) => get(k) != Some(v),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
            Requirement::GreaterThan(k, n) => get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Requirement::LessThan(k, n) => get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    In,
    NotIn,
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    Gt,
    Lt,
    Comma,
    Open,
    Close,
    End,
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::In => "in".into(),
            Tok::NotIn => "notin".into(),
            Tok::Eq => "=".into(),
            Tok::DoubleEq => "==".into(),
            Tok::NotEq => "!=".into(),
            Tok::Bang => "!".into(),
            Tok::Gt => ">".into(),
            Tok::Lt => "<".into(),
            Tok::Comma => ",".into(),
            Tok::Open => "(".into(),
            Tok::Close => ")".into(),
            Tok::End => "".into(),
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>' | ',' | '(' | ')')
}

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two = chars.get(i + 1).copied();
        let tok = match (c, two) {
            ('=', Some('=')) => Tok::DoubleEq,
            ('!', Some('=')) => Tok::NotEq,
            ('=', _) => Tok::Eq,
            ('!', _) => Tok::Bang,
            ('>', _) => Tok::Gt,
            ('<', _) => Tok::Lt,
            (',', _) => Tok::Comma,
            ('(', _) => Tok::Open,
            (')', _) => Tok::Close,
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !is_special(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "in" => Tok::In,
                    "notin" => Tok::NotIn,
                    _ => Tok::Ident(word),
                });
                continue;
            }
        };
        i += if matches!(tok, Tok::DoubleEq | Tok::NotEq) {
            2
        } else {
            1
        };
        out.push(tok);
    }
    out.push(Tok::End);
    Ok(out)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let negated = self.peek() == &Tok::Bang;
        if negated {
            self.next();
        }
        let key = match self.next() {
            Tok::Ident(k) => k,
            t => return Err(format!("found '{}', expected: identifier", t.text())),
        };
        valid_key(&key)?;
        if negated {
            return Ok(Requirement::DoesNotExist(key));
        }
        match self.peek().clone() {
            Tok::End | Tok::Comma => return Ok(Requirement::Exists(key)),
            _ => {}
        }
        let op = self.next();
        match op {
            Tok::Eq | Tok::DoubleEq | Tok::NotEq => {
                let value = self.single_value()?;
                Ok(if op == Tok::NotEq {
                    Requirement::NotEquals(key, value)
                } else {
                    Requirement::Equals(key, value)
                })
            }
            Tok::In | Tok::NotIn => {
                let values = self.value_set()?;
                Ok(if op == Tok::In {
                    Requirement::In(key, values)
                } else {
                    Requirement::NotIn(key, values)
                })
            }
            Tok::Gt | Tok::Lt => {
                let value = self.single_value()?;
                let n: i64 = value.parse().map_err(|_| {
                    format!("for 'Gt', 'Lt' operators, the value must be an integer: {value:?}")
                })?;
                Ok(if op == Tok::Gt {
                    Requirement::GreaterThan(key, n)
                } else {
                    Requirement::LessThan(key, n)
                })
            }
            t => Err(format!(
                "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                t.text()
            )),
        }
    }

    /// The value after `=`, `==`, `!=`: an identifier, or empty before `,` / the end.
    fn single_value(&mut self) -> Result<String, String> {
        match self.peek().clone() {
            Tok::End | Tok::Comma => Ok(String::new()),
            Tok::Ident(v) => {
                self.next();
                valid_value(&v)?;
                Ok(v)
            }
            // Keywords are plain values after an operator.
            Tok::In | Tok::NotIn => Ok(self.next().text()),
            t => Err(format!("found '{}', expected: identifier", t.text())),
        }
    }

    /// `( v1, v2 )` after in / notin.
    fn value_set(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            Tok::Open => {}
            t => return Err(format!("found '{}', expected: '('", t.text())),
        }
        let mut values = Vec::new();
        loop {
            match self.next() {
                Tok::Ident(v) => {
                    valid_value(&v)?;
                    values.push(v);
                    match self.next() {
                        Tok::Comma => continue,
                        Tok::Close => break,
                        t => return Err(format!("found '{}', expected: ',' or ')'", t.text())),
                    }
                }
                t @ (Tok::In | Tok::NotIn) => {
                    values.push(t.text());
                    match self.next() {
                        Tok::Comma => continue,
                        Tok::Close => break,
                        t => return Err(format!("found '{}', expected: ',' or ')'", t.text())),
                    }
                }
                Tok::Comma => values.push(String::new()),
                Tok::Close => {
                    if values.is_empty() {
                        return Err("for 'in', 'notin' operators, values set can't be empty".into());
                    }
                    values.push(String::new());
                    break;
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: ',', ')' or identifier",
                        t.text()
                    ))
                }
            }
        }
        Ok(values)
    }
}

fn name_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn valid_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                let b = l.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            })
    });
    if prefix_ok && name_part_ok(name) {
        Ok(())
    } else {
        Err(format!(
            "key: Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

fn valid_value(value: &str) -> Result<(), String> {
    if value.is_empty() || name_part_ok(value) {
        Ok(())
    } else {
        Err(format!(
            "values[0][value]: Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(sel: &str, pairs: &[(&str, &str)]) -> bool {
        Selector::parse(sel).unwrap().matches(&labels(pairs))
    }

    #[test]
    fn operators() {
        let l = [("app", "buildkitd"), ("tier", "cache")];
        assert!(m("app=buildkitd", &l));
        assert!(m("app==buildkitd", &l));
        assert!(!m("app=other", &l));
        assert!(m("app!=other", &l));
        assert!(m("missing!=x", &l));
        assert!(m("app in (x, buildkitd)", &l));
        assert!(!m("app in (x,y)", &l));
        assert!(!m("missing in (x)", &l));
        assert!(m("app notin (x,y)", &l));
        assert!(m("missing notin (x)", &l));
        assert!(!m("app notin (buildkitd)", &l));
        assert!(m("tier", &l));
        assert!(!m("missing", &l));
        assert!(m("!missing", &l));
        assert!(!m("!tier", &l));
        assert!(m("", &l));
        assert!(m("app=buildkitd,tier=cache", &l));
        assert!(!m("app=buildkitd,tier=hot", &l));
        assert!(m("  app = buildkitd ,  tier in ( cache ) , ! gone ", &l));
        assert!(m("example.com/x=1", &[("example.com/x", "1")]));
        assert!(m("n>3", &[("n", "4")]));
        assert!(!m("n<3", &[("n", "4")]));
        assert!(m("app=", &[("app", "")]));
    }

    #[test]
    fn parse_shapes() {
        let s = Selector::parse("a in (x,y),!b,c").unwrap();
        assert_eq!(
            s.requirements,
            vec![
                Requirement::In("a".into(), vec!["x".into(), "y".into()]),
                Requirement::DoesNotExist("b".into()),
                Requirement::Exists("c".into()),
            ]
        );
    }

    #[test]
    fn invalid() {
        for bad in [
            "app in (a",
            "app in a",
            "app in ()",
            "=x",
            "app=(x)",
            "a,,b",
            "a,",
            "app=x y",
            "-bad=x",
            "app=bad value!",
            "a b",
            "n>x",
            "!",
            "app===x",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
