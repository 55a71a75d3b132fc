//! One CSV record split into fields the way Go's encoding/csv (and buildkit's
//! go-csvvalue) does it: `,` separates, a field that starts with `"` is quoted and
//! may contain commas, `""` inside quotes is one quote, and a quote anywhere else is
//! an error (no lazy quotes).

/// Split `s` into its fields.
pub fn fields(s: &str) -> Result<Vec<String>, String> {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let s = s.strip_suffix('\r').unwrap_or(s);
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(format!(
                            "parse error on line 1, column {}: extraneous or missing \" in quoted-field",
                            i + 1
                        ))
                    }
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        field.push(*c);
                        i += 1;
                    }
                }
            }
            match chars.get(i) {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => {
                    out.push(field);
                    i += 1;
                }
                Some(_) => {
                    return Err(format!(
                    "parse error on line 1, column {}: extraneous or missing \" in quoted-field",
                    i + 1
                ))
                }
            }
        } else {
            loop {
                match chars.get(i) {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => {
                        out.push(field);
                        i += 1;
                        break;
                    }
                    Some('"') => {
                        return Err(format!(
                            "parse error on line 1, column {}: bare \" in non-quoted-field",
                            i + 1
                        ));
                    }
                    Some(c) => {
                        field.push(*c);
                        i += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fields;

    #[test]
    fn plain_and_quoted() {
        assert_eq!(
            fields("type=docker,name=a").unwrap(),
            vec!["type=docker", "name=a"]
        );
        assert_eq!(
            fields("type=image,\"name=a,b\",push=true").unwrap(),
            vec!["type=image", "name=a,b", "push=true"]
        );
        assert_eq!(fields("\"a\"\"b\"").unwrap(), vec!["a\"b"]);
        assert_eq!(fields("a,,b,").unwrap(), vec!["a", "", "b", ""]);
        assert!(fields("name=\"a,b\"").unwrap_err().contains("bare \""));
        assert!(fields("\"abc").is_err());
        assert!(fields("\"abc\"x").is_err());
        assert!(fields("").unwrap().is_empty());
    }
}
