//! How buildctl writes sizes and seconds: decimal SI sizes (`123B`, `1.23kB`,
//! `45.60MB`), log offsets with precision that shrinks as they grow (`0.123`,
//! `12.35`, `123.4`), step times with one decimal.

use std::time::Duration;

const SI_UNITS: [&str; 7] = ["kB", "MB", "GB", "TB", "PB", "EB", "ZB"];

/// A byte count as buildctl's `%.2f` of a size: whole bytes under 1000, else two
/// decimals of the largest decimal unit it reaches.
pub fn si_bytes(n: i64) -> String {
    let magnitude = n.unsigned_abs();
    if magnitude < 1000 {
        return format!("{n}B");
    }
    let mut unit = 0;
    let mut base = 1000u64;
    while unit + 1 < SI_UNITS.len() && magnitude / base >= 1000 {
        base *= 1000;
        unit += 1;
    }
    format!("{:.2}{}", n as f64 / base as f64, SI_UNITS[unit])
}

/// Seconds since a step started, as buildctl prefixes its log lines: three decimals
/// under 10 s, two under 100 s, one beyond.
pub fn log_offset(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.3}")
    } else if seconds < 100.0 {
        format!("{seconds:.2}")
    } else {
        format!("{seconds:.1}")
    }
}

/// A step's time: `1.2s`.
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_decimal_si_like_buildctl() {
        assert_eq!(si_bytes(0), "0B");
        assert_eq!(si_bytes(999), "999B");
        assert_eq!(si_bytes(1000), "1.00kB");
        assert_eq!(si_bytes(1234), "1.23kB");
        assert_eq!(si_bytes(999_999), "1000.00kB");
        assert_eq!(si_bytes(1_000_000), "1.00MB");
        assert_eq!(si_bytes(45_600_000), "45.60MB");
        assert_eq!(si_bytes(16 * 1024 * 1024), "16.78MB");
        assert_eq!(si_bytes(3_000_000_000), "3.00GB");
        assert_eq!(si_bytes(-1500), "-1.50kB");
    }

    #[test]
    fn log_offsets_lose_precision_as_they_grow() {
        assert_eq!(log_offset(0.0), "0.000");
        assert_eq!(log_offset(0.1234), "0.123");
        assert_eq!(log_offset(12.345_6), "12.35");
        assert_eq!(log_offset(123.45), "123.5");
        assert_eq!(seconds(Duration::from_millis(1250)), "1.2s");
        assert_eq!(seconds(Duration::from_millis(100)), "0.1s");
    }
}
