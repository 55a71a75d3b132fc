//! `.dockerignore` semantics, as BuildKit's file walker applies the daemon's
//! include and exclude patterns (moby/patternmatcher):
//! - a pattern is Go `filepath.Match` per path segment (`*`, `?`, `[a-z]`, `[^a-z]`,
//!   `\` escapes) plus `**`, any number of segments (`**/` may match none);
//! - a pattern that matches a parent directory matches everything below it;
//! - `!pattern` is an exception; later rules win.

/// A bad pattern, named as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {why}")]
pub struct PatternError {
    pub pattern: String,
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: one character, not `/`.
    AnyChar,
    /// `*`: any run of characters without `/`.
    Star,
    /// `**` at the end: anything at all.
    DoubleStarEnd,
    /// `**` (or `**/`) elsewhere: nothing, or anything ending in `/`.
    DoubleStar,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Debug, Clone)]
struct Pattern {
    exclusion: bool,
    tokens: Vec<Token>,
    /// The pattern's segments, for "could anything below this directory match?".
    segments: Vec<Vec<Token>>,
}

/// An ordered list of patterns, later ones winning.
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Compile patterns (blank ones are skipped, each is cleaned like Go's
    /// `filepath.Clean`, a leading `/` dropped).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<PatternMatcher, PatternError> {
        let mut out = PatternMatcher::default();
        for raw in patterns {
            let text = raw.as_ref().trim();
            if text.is_empty() {
                continue;
            }
            let (exclusion, body) = match text.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, text),
            };
            let bad = |why| PatternError {
                pattern: raw.as_ref().to_string(),
                why,
            };
            if exclusion && body.is_empty() {
                return Err(bad("an exception needs a pattern after '!'"));
            }
            let cleaned = clean(body);
            let tokens = tokenize(&cleaned).map_err(bad)?;
            let segments = cleaned
                .split('/')
                .map(|s| tokenize(s).map_err(bad))
                .collect::<Result<_, _>>()?;
            out.exclusions |= exclusion;
            out.patterns.push(Pattern {
                exclusion,
                tokens,
                segments,
            });
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when some pattern is an `!` exception (an excluded directory may then
    /// still hold included entries).
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// Does the list select `path` (relative, `/`-separated), itself or through a
    /// parent directory? Later patterns win.
    pub fn matches(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        // Byte offsets of each parent prefix ("a", "a/b" for "a/b/c").
        let parents: Vec<usize> = chars
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == '/')
            .map(|(i, _)| i)
            .collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let hit = match_tokens(&p.tokens, &chars)
                || parents
                    .iter()
                    .any(|&end| match_tokens(&p.tokens, &chars[..end]));
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Could an entry below directory `dir` match some (non-exception) pattern?
    /// Lets an include walk skip whole directories.
    pub fn could_match_below(&self, dir: &str) -> bool {
        let dir_segments: Vec<Vec<char>> = dir.split('/').map(|s| s.chars().collect()).collect();
        self.patterns.iter().filter(|p| !p.exclusion).any(|p| {
            for (i, seg) in dir_segments.iter().enumerate() {
                let Some(pseg) = p.segments.get(i) else {
                    return true; // the pattern names a parent of dir
                };
                if pseg
                    .iter()
                    .any(|t| matches!(t, Token::DoubleStar | Token::DoubleStarEnd))
                {
                    return true;
                }
                if !match_tokens(pseg, seg) {
                    return false;
                }
            }
            true
        })
    }
}

/// Go's `filepath.Clean` for a relative pattern, without a leading `/`.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

fn tokenize(pattern: &str) -> Result<Vec<Token>, &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() {
                    Token::DoubleStarEnd
                } else {
                    Token::DoubleStar
                });
                continue;
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::AnyChar),
            '\\' => {
                i += 1;
                let c = *chars.get(i).ok_or("a trailing '\\' escapes nothing")?;
                tokens.push(Token::Literal(c));
            }
            '[' => {
                i += 1;
                let negated = chars.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    let mut lo = *chars.get(i).ok_or("'[' without ']'")?;
                    if lo == ']' && !ranges.is_empty() {
                        break;
                    }
                    if lo == ']' {
                        return Err("an empty character class");
                    }
                    if lo == '\\' {
                        i += 1;
                        lo = *chars.get(i).ok_or("'[' without ']'")?;
                    }
                    let mut hi = lo;
                    if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|c| *c != ']')
                    {
                        i += 2;
                        hi = chars[i];
                        if hi == '\\' {
                            i += 1;
                            hi = *chars.get(i).ok_or("'[' without ']'")?;
                        }
                        if hi < lo {
                            return Err("a character range runs backwards");
                        }
                    }
                    ranges.push((lo, hi));
                    i += 1;
                }
                tokens.push(Token::Class { negated, ranges });
            }
            c => tokens.push(Token::Literal(c)),
        }
        i += 1;
    }
    Ok(tokens)
}

fn match_tokens(tokens: &[Token], text: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return text.is_empty();
    };
    match first {
        Token::Literal(c) => text.first() == Some(c) && match_tokens(rest, &text[1..]),
        Token::AnyChar => text.first().is_some_and(|c| *c != '/') && match_tokens(rest, &text[1..]),
        Token::Class { negated, ranges } => {
            text.first().is_some_and(|c| {
                *c != '/' && ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated
            }) && match_tokens(rest, &text[1..])
        }
        Token::Star => {
            for n in 0..=text.len() {
                if match_tokens(rest, &text[n..]) {
                    return true;
                }
                if text.get(n) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Token::DoubleStarEnd => true,
        Token::DoubleStar => {
            if match_tokens(rest, text) {
                return true;
            }
            // Or any prefix ending in '/'.
            (0..text.len()).any(|n| text[n] == '/' && match_tokens(rest, &text[n + 1..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str]) -> PatternMatcher {
        PatternMatcher::new(patterns).unwrap()
    }

    #[test]
    fn plain_names_and_their_contents() {
        let p = m(&["node_modules", "*.log", "build/tmp"]);
        assert!(p.matches("node_modules"));
        assert!(p.matches("node_modules/x/y.js"));
        assert!(p.matches("debug.log"));
        assert!(!p.matches("src/debug.log"), "* does not cross directories");
        assert!(p.matches("build/tmp/a"));
        assert!(!p.matches("build/tmpx"));
        assert!(!p.matches("src/node_modules"), "no implicit **/ in front");
    }

    #[test]
    fn double_star_matches_any_number_of_directories() {
        let p = m(&["**/*.tmp"]);
        assert!(p.matches("a.tmp"));
        assert!(p.matches("x/y/z/a.tmp"));
        assert!(!p.matches("a.tmpx"));
        let p = m(&["docs/**/draft"]);
        assert!(p.matches("docs/draft"));
        assert!(p.matches("docs/a/b/draft"));
        assert!(
            p.matches("docs/a/draft/page.md"),
            "a matched parent takes its contents"
        );
        assert!(!p.matches("docs/a/drafts"));
        let p = m(&["cache/**"]);
        assert!(p.matches("cache/a/b"));
        assert!(
            !p.matches("cache"),
            "cache/** names what is in cache, not cache"
        );
        let p = m(&["**"]);
        assert!(p.matches("anything/at/all"));
    }

    #[test]
    fn later_rules_win_and_exceptions_reinclude() {
        let p = m(&["*.md", "!README.md"]);
        assert!(p.matches("CHANGES.md"));
        assert!(!p.matches("README.md"));
        assert!(p.has_exclusions());
        let p = m(&["!README.md", "*.md"]);
        assert!(p.matches("README.md"), "the later rule wins");
        let p = m(&["secrets", "!secrets/public.txt"]);
        assert!(p.matches("secrets"));
        assert!(p.matches("secrets/private.key"));
        assert!(!p.matches("secrets/public.txt"));
        let p = m(&["**/*.log", "!keep/**", "keep/drop.log"]);
        assert!(p.matches("a/b.log"));
        assert!(!p.matches("keep/b.log"));
        assert!(p.matches("keep/drop.log"));
    }

    #[test]
    fn go_match_syntax_per_segment() {
        let p = m(&["file?.txt", "[a-c]*.bin", "[^x]y", "lit\\*eral", "h\u{e9}*"]);
        assert!(p.matches("file1.txt"));
        assert!(!p.matches("file10.txt"));
        assert!(!p.matches("file/.txt"), "? never matches /");
        assert!(p.matches("b.bin"));
        assert!(!p.matches("d.bin"));
        assert!(p.matches("ay"));
        assert!(!p.matches("xy"));
        assert!(p.matches("lit*eral"));
        assert!(!p.matches("litXeral"));
        assert!(
            p.matches("h\u{e9}llo"),
            "non-ASCII names match by character"
        );
    }

    #[test]
    fn patterns_are_cleaned_like_go() {
        let p = m(&["./a//b/", "/rooted", "x/../y", "  spaced  "]);
        assert!(p.matches("a/b"));
        assert!(p.matches("rooted"));
        assert!(p.matches("y"));
        assert!(p.matches("spaced"));
        assert!(m(&["", "   "]).is_empty());
    }

    #[test]
    fn bad_patterns_are_refused_by_name() {
        let e = PatternMatcher::new(&["ok", "!"]).unwrap_err();
        assert_eq!(e.pattern, "!");
        assert!(PatternMatcher::new(&["[abc"]).is_err());
        assert!(PatternMatcher::new(&["trailing\\"]).is_err());
        assert!(PatternMatcher::new(&["[z-a]"]).is_err());
    }

    #[test]
    fn include_walks_descend_only_where_a_match_is_possible() {
        let p = m(&["Dockerfile", "src/*/main.rs", "**/*.proto"]);
        assert!(p.could_match_below("src"));
        assert!(p.could_match_below("src/app"));
        // Only **/*.proto could match below here.
        assert!(p.could_match_below("docs"));
        let p = m(&[".dockerignore", "build/Dockerfile"]);
        assert!(!p.could_match_below("node_modules"));
        assert!(p.could_match_below("build"));
        assert!(!p.could_match_below("build/sub"));
    }
}
