//! `--request-timeout` values exactly as kubectl takes them: a bare count of seconds
//! (`5`), else a Go duration (`time.ParseDuration`): an optional sign, then one or more
//! decimal numbers with a unit each (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), such
//! as `300ms`, `1.5h`, `.5s`, `1m30s`; `0` alone needs no unit.
//!
//! kubectl hands a negative duration to Go's HTTP client, which takes any timeout that
//! is not positive as none: so do we ([`Duration::ZERO`], no limit).

use std::time::Duration;

/// Go's limit: a duration is an i64 count of nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parse a `--request-timeout` value. `Duration::ZERO` means no limit.
pub fn parse_request_timeout(s: &str) -> Result<Duration, String> {
    let bad = |why: &str| {
        format!(
            "invalid duration {s:?}: {why}; use a number of seconds, or a duration such as \
             30s, 1m30s, 1.5h or 300ms (units ns, us, ms, s, m, h)"
        )
    };
    // kubectl's first reading: a non-negative integer is seconds (strconv.ParseInt
    // takes a leading '+').
    let digits = s.strip_prefix('+').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match digits.parse::<u64>() {
            Ok(secs) => Ok(Duration::from_secs(secs)),
            Err(_) => Err(bad("too many seconds")),
        };
    }
    let (negative, d) = parse_go_duration(s).map_err(bad)?;
    Ok(if negative { Duration::ZERO } else { d })
}

/// Go's `time.ParseDuration`: (is it negative, its size). The error says what is wrong.
pub fn parse_go_duration(s: &str) -> Result<(bool, Duration), &'static str> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok((negative, Duration::ZERO));
    }
    if rest.is_empty() {
        return Err("it is empty");
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // The number: digits, optionally '.' and more digits; at least one digit.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err("a number is missing");
        }
        // The unit: everything up to the next digit or '.'.
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map(|(i, _)| i)
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err("a unit is missing"),
            _ => return Err("unknown unit"),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| "the duration is too long")?
        };
        let mut nanos = whole.checked_mul(scale).ok_or("the duration is too long")?;
        // The fraction, digit by digit, truncated like Go's.
        let mut unit_fraction = scale;
        for digit in frac_part.bytes() {
            unit_fraction /= 10;
            if unit_fraction == 0 {
                break;
            }
            nanos += u128::from(digit - b'0') * unit_fraction;
        }
        total = total
            .checked_add(nanos)
            .filter(|t| *t <= MAX_NANOS)
            .ok_or("the duration is too long")?;
        rest = after;
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok((negative, Duration::new(secs, nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn everything_kubectl_takes() {
        let cases = [
            ("0", Duration::ZERO),
            ("5", Duration::from_secs(5)),
            ("+5", Duration::from_secs(5)),
            ("2s", Duration::from_secs(2)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("250ms", ms(250)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", ms(500)),
            ("5.s", Duration::from_secs(5)),
            ("1ns", Duration::from_nanos(1)),
            ("7us", Duration::from_micros(7)),
            ("7\u{00b5}s", Duration::from_micros(7)),
            ("7\u{03bc}s", Duration::from_micros(7)),
            ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
            ("0s", Duration::ZERO),
            ("+1m", Duration::from_secs(60)),
            // Negative: Go's HTTP client then has no timeout.
            ("-1s", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ];
        for (s, want) in cases {
            assert_eq!(parse_request_timeout(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn what_kubectl_refuses() {
        for s in [
            "", "s", "5x", "1.2.3s", ".s", "-5", "1m30", "1 s", "1e3s", "infs", "--1s", "3d",
            "2562048h",
        ] {
            let e = parse_request_timeout(s).expect_err(s);
            assert!(e.contains("invalid duration"), "{s}: {e}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Anything at all: an answer or an error, never a panic.
        #[test]
        fn never_panics(s in "\\PC{0,40}", digits in "[0-9.]{1,40}", unit in "(h|m|s|ms|us|ns|x|)") {
            let _ = parse_request_timeout(&s);
            let _ = parse_request_timeout(&format!("{digits}{unit}"));
            let _ = parse_request_timeout(&format!("-{digits}{unit}{digits}{unit}"));
        }

        /// kube's own Go-duration parser agrees wherever both answer.
        #[test]
        fn agrees_with_kubes_go_duration(
            parts in prop::collection::vec((0u32..100_000, prop::option::of(0u32..1000), "(h|m|s|ms|us|ns)"), 1..5),
        ) {
            let s: String = parts
                .iter()
                .map(|(n, frac, unit)| match frac {
                    Some(f) => format!("{n}.{f:03}{unit}"),
                    None => format!("{n}{unit}"),
                })
                .collect();
            let ours = parse_go_duration(&s).map(|(_, d)| d);
            let kube: Result<kube::core::Duration, _> = s.parse();
            let kube: Duration = kube.expect("kube parses it").into();
            let ours = ours.expect("we parse it");
            // kube multiplies in floating point: allow its rounding.
            let diff = ours.abs_diff(kube);
            prop_assert!(diff <= Duration::from_micros(1), "{}: ours {:?}, kube {:?}", s, ours, kube);
        }

        /// Whole h/m/s/ms in kubectl's order, and bare seconds, round-trip.
        #[test]
        fn valid_durations_round_trip(h in 0u64..10_000, m in 0u64..60, sec in 0u64..60, milli in 0u64..1000, bare in any::<u64>()) {
            let want = Duration::from_secs(h * 3600 + m * 60 + sec) + ms(milli);
            prop_assert_eq!(parse_request_timeout(&format!("{h}h{m}m{sec}s{milli}ms")).unwrap(), want);
            prop_assert_eq!(parse_request_timeout(&bare.to_string()).unwrap(), Duration::from_secs(bare));
        }
    }
}
