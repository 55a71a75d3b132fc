//! One CSV record, read and written the way buildctl reads its `--output`, `--secret`
//! and cache flags: comma-separated, a field in double quotes may hold commas, quotes
//! (doubled) and newlines, a bare quote inside an unquoted field is an error, and one
//! trailing newline is ignored.

use std::borrow::Cow;
use std::fmt;

/// Why a CSV record could not be read. Columns count bytes from 1. The messages never
/// repeat the input: it may be a secret's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvError {
    /// Nothing at all (buildctl says "EOF").
    Empty,
    /// A `"` inside a field that did not start with one.
    BareQuote { column: usize },
    /// A quoted field that never closes.
    Unterminated { column: usize },
    /// Something other than `,` or the end right after a closing quote.
    TextAfterQuote { column: usize },
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvError::Empty => write!(f, "empty value"),
            CsvError::BareQuote { column } => write!(
                f,
                "a '\"' at column {column} inside an unquoted field: quote the whole field, \
                 as in \"name=a,b\", and double the quotes inside it"
            ),
            CsvError::Unterminated { column } => {
                write!(f, "the quoted field starting at column {column} never ends")
            }
            CsvError::TextAfterQuote { column } => write!(
                f,
                "column {column}: a quoted field must be followed by ',' or the end; \
                 double a '\"' that belongs to the field"
            ),
        }
    }
}

impl std::error::Error for CsvError {}

/// Whether a field must be quoted to read back as itself.
fn needs_quotes(field: &str) -> bool {
    field.contains([',', '"', '\n', '\r'])
}

/// One field as it must appear in a record: as is, or in quotes with inner quotes doubled.
pub fn quote(field: &str) -> Cow<'_, str> {
    if needs_quotes(field) {
        Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(field)
    }
}

/// A record from its fields; `split(&join(f)) == f` for any non-empty `f`.
pub fn join<I, S>(fields: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let fields: Vec<S> = fields.into_iter().collect();
    if let [only] = fields.as_slice() {
        if only.as_ref().is_empty() {
            // An empty line reads as no record at all.
            return "\"\"".to_string();
        }
    }
    let quoted: Vec<Cow<'_, str>> = fields.iter().map(|f| quote(f.as_ref())).collect();
    quoted.join(",")
}

/// The fields of one record.
pub fn split(line: &str) -> Result<Vec<String>, CsvError> {
    let mut line = match line.strip_suffix('\n') {
        Some(l) => l.strip_suffix('\r').unwrap_or(l),
        None => line,
    };
    if line.is_empty() {
        return Err(CsvError::Empty);
    }
    let mut fields = Vec::new();
    let mut pos = 0; // byte offset of `line` in the input
    loop {
        if !line.starts_with('"') {
            let (field, rest) = match line.find(',') {
                Some(i) => (&line[..i], Some(&line[i + 1..])),
                None => (line, None),
            };
            if let Some(j) = field.find('"') {
                return Err(CsvError::BareQuote {
                    column: pos + j + 1,
                });
            }
            fields.push(field.to_string());
            match rest {
                Some(rest) => {
                    pos += field.len() + 1;
                    line = rest;
                    continue;
                }
                None => return Ok(fields),
            }
        }
        let start = pos + 1;
        let mut value = String::new();
        let mut rest = &line[1..];
        pos += 1;
        loop {
            let Some(i) = rest.find('"') else {
                return Err(CsvError::Unterminated { column: start });
            };
            value.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            pos += i + 1;
            if let Some(after) = rest.strip_prefix('"') {
                value.push('"');
                rest = after;
                pos += 1;
            } else if let Some(after) = rest.strip_prefix(',') {
                fields.push(value);
                line = after;
                pos += 1;
                break;
            } else if rest.is_empty() {
                fields.push(value);
                return Ok(fields);
            } else {
                return Err(CsvError::TextAfterQuote { column: pos + 1 });
            }
        }
    }
}

/// Why a `key=value` list could not be read. Never repeats values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrError {
    Csv(CsvError),
    /// Field number `index` (from 1) has no `=`.
    NotKeyValue {
        index: usize,
    },
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrError::Csv(e) => write!(f, "not valid CSV: {e}"),
            AttrError::NotKeyValue { index } => {
                write!(f, "field {index} is not key=value")
            }
        }
    }
}

impl std::error::Error for AttrError {}

/// A record of `key=value` fields, keys lower-cased as buildctl does. A value may
/// contain `=`; an empty value stays empty.
pub fn attrs(line: &str) -> Result<Vec<(String, String)>, AttrError> {
    let fields = split(line).map_err(AttrError::Csv)?;
    fields
        .into_iter()
        .enumerate()
        .map(|(i, field)| match field.split_once('=') {
            Some((k, v)) => Ok((k.to_ascii_lowercase(), v.to_string())),
            None => Err(AttrError::NotKeyValue { index: i + 1 }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_fields() {
        assert_eq!(
            split("type=image,name=a:1,push=true").unwrap(),
            ["type=image", "name=a:1", "push=true"]
        );
        assert_eq!(split("a,,b").unwrap(), ["a", "", "b"]);
        assert_eq!(split("a,").unwrap(), ["a", ""]);
        assert_eq!(split(",a").unwrap(), ["", "a"]);
        assert_eq!(split("a\n").unwrap(), ["a"]);
        assert_eq!(split("a\r\n").unwrap(), ["a"]);
    }

    #[test]
    fn quoted_fields() {
        assert_eq!(
            split("type=image,\"name=a:1,b:2\",push=true").unwrap(),
            ["type=image", "name=a:1,b:2", "push=true"]
        );
        assert_eq!(split("\"say \"\"hi\"\"\"").unwrap(), ["say \"hi\""]);
        assert_eq!(split("\"\"").unwrap(), [""]);
        assert_eq!(split("\"a\nb\",c").unwrap(), ["a\nb", "c"]);
        assert_eq!(split("\"a\",").unwrap(), ["a", ""]);
    }

    #[test]
    fn malformed_records() {
        assert_eq!(split(""), Err(CsvError::Empty));
        assert_eq!(split("\n"), Err(CsvError::Empty));
        assert_eq!(split("ab\"c"), Err(CsvError::BareQuote { column: 3 }));
        assert_eq!(split("x,\"abc"), Err(CsvError::Unterminated { column: 3 }));
        assert_eq!(
            split("\"abc\"d"),
            Err(CsvError::TextAfterQuote { column: 6 })
        );
    }

    #[test]
    fn quoting_only_where_needed() {
        assert_eq!(quote("name=a:1"), "name=a:1");
        assert_eq!(quote("name=a:1,b:2"), "\"name=a:1,b:2\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            join(["type=image", "name=a:1,b:2", "push=true"]),
            "type=image,\"name=a:1,b:2\",push=true"
        );
        assert_eq!(join([""]), "\"\"");
        assert_eq!(join(["", ""]), ",");
    }

    #[test]
    fn key_values() {
        assert_eq!(
            attrs("Type=local,dest=/a=b,x=").unwrap(),
            [
                ("type".to_string(), "local".to_string()),
                ("dest".to_string(), "/a=b".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(
            attrs("type=local,oops"),
            Err(AttrError::NotKeyValue { index: 2 })
        );
        assert!(matches!(attrs(""), Err(AttrError::Csv(CsvError::Empty))));
    }

    proptest! {
        #[test]
        fn join_then_split_gives_the_fields_back(
            fields in prop::collection::vec(".*", 1..6)
        ) {
            prop_assert_eq!(split(&join(&fields)).unwrap(), fields);
        }

        #[test]
        fn join_then_split_with_csv_metacharacters(
            fields in prop::collection::vec("[a,\"\n\r= ]{0,8}", 1..6)
        ) {
            prop_assert_eq!(split(&join(&fields)).unwrap(), fields);
        }

        #[test]
        fn split_and_attrs_never_panic(line in ".*") {
            let _ = split(&line);
            let _ = attrs(&line);
        }

        #[test]
        fn split_never_panics_on_metacharacters(line in "[a,\"\n\r=é]{0,16}") {
            if let Ok(fields) = split(&line) {
                // What was read can be written and read again.
                prop_assert_eq!(split(&join(&fields)).unwrap(), fields);
            }
        }
    }
}
