//! Results: medians, the rows of the table, and targets with PASS/MISS.

use std::time::Duration;

/// Median of the samples (mean of the middle two for an even count).
pub fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A figure and how to print it.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Ms,
    MibPerSec,
    Mib,
    PerSec,
    Seconds,
    Percent,
}

pub fn show(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Ms => format!("{v:.1} ms"),
        Unit::MibPerSec => format!("{v:.0} MiB/s"),
        Unit::Mib => format!("{v:.1} MiB"),
        Unit::PerSec => {
            if v >= 1e6 {
                format!("{:.2} M/s", v / 1e6)
            } else if v >= 1e3 {
                format!("{:.1} k/s", v / 1e3)
            } else {
                format!("{v:.0} /s")
            }
        }
        Unit::Seconds => format!("{v:.2} s"),
        Unit::Percent => format!("{v:.1}%"),
    }
}

/// What a row must reach.
#[derive(Debug, Clone)]
pub enum Target {
    None,
    /// ours / peer at most this.
    RatioAtMost(f64),
    /// ours / peer at least this.
    RatioAtLeast(f64),
    /// ours at least / at most this (in the row's unit).
    AtLeast(f64),
    AtMost(f64),
    /// Another condition, judged by the section (description, pass).
    Check(String, bool),
}

pub struct Row {
    pub id: String,
    pub what: String,
    pub ours: f64,
    pub peer: Option<f64>,
    /// What the peer is, when it is not the kubectl path (e.g. "direct TCP").
    pub peer_label: Option<String>,
    pub unit: Unit,
    pub target: Target,
    /// Whether ours/peer means anything for this row.
    pub ratio_shown: bool,
}

impl Row {
    pub fn new(
        id: &str,
        what: &str,
        ours: f64,
        peer: Option<f64>,
        unit: Unit,
        target: Target,
    ) -> Row {
        Row {
            id: id.into(),
            what: what.into(),
            ours,
            peer,
            peer_label: None,
            unit,
            target,
            ratio_shown: true,
        }
    }

    pub fn ratio(&self) -> Option<f64> {
        self.peer
            .filter(|_| self.ratio_shown)
            .map(|p| self.ours / p)
    }

    /// (target text, pass) or None when the row has no target.
    pub fn verdict(&self) -> Option<(String, bool)> {
        let r = self.ratio();
        match &self.target {
            Target::None => None,
            Target::RatioAtMost(t) => Some((format!("≤ {t}x"), r.is_some_and(|r| r <= *t))),
            Target::RatioAtLeast(t) => Some((format!("≥ {t}x"), r.is_some_and(|r| r >= *t))),
            Target::AtLeast(t) => Some((format!("≥ {}", show(*t, self.unit)), self.ours >= *t)),
            Target::AtMost(t) => Some((format!("≤ {}", show(*t, self.unit)), self.ours <= *t)),
            Target::Check(text, pass) => Some((text.clone(), *pass)),
        }
    }
}

/// Print the rows as a Markdown table; returns (pass, miss) counts.
pub fn print(rows: &[Row]) -> (usize, usize) {
    let mut lines = vec![
        "| id | measure | ours | peer | ratio | target | result |".to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    let (mut pass, mut miss) = (0, 0);
    for r in rows {
        let peer = match (r.peer, &r.peer_label) {
            (Some(p), Some(l)) => format!("{} ({l})", show(p, r.unit)),
            (Some(p), None) => show(p, r.unit),
            (None, _) => "—".into(),
        };
        // 0/0 has no ratio; x/0 is larger than any.
        let ratio = match r.ratio() {
            Some(x) if x.is_nan() => "—".to_string(),
            Some(x) if x.is_infinite() => "∞".to_string(),
            Some(x) => format!("{x:.2}x"),
            None => "—".to_string(),
        };
        let (target, result) = match r.verdict() {
            None => ("—".to_string(), "—"),
            Some((t, true)) => {
                pass += 1;
                (t, "PASS")
            }
            Some((t, false)) => {
                miss += 1;
                (t, "MISS")
            }
        };
        lines.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.id,
            r.what,
            show(r.ours, r.unit),
            peer,
            ratio,
            target,
            result
        ));
    }
    println!("{}", lines.join("\n"));
    (pass, miss)
}
