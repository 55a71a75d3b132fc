//! Pod selection: which buildkitd pod a key (an image name, a context path) lands on.
//!
//! Three algorithms, defined bit for bit in docs/hash-algorithms.md (reference
//! vectors: tests/fixtures/hashring-vectors.json):
//! - `classic`: serialx/hashring as of 2019 (the original wrapper): 40 md5 digests per
//!   pod, 3 little-endian u32 points per digest (120 a pod).
//! - `buildx`: serialx/hashring since 2020 (docker buildx `loadbalance=sticky`): one
//!   128-bit point per pod.
//! - `rendezvous`: highest random weight; no ring, every pod owns exactly 1/n.
//!
//! Pods are always sorted by name (and deduplicated) before anything is built, so
//! the answer never depends on the order the API server listed them in.
//!
//! About 400 lines of code: three algorithms with their exact-share arithmetic, kept
//! in one file so they can be read side by side against the reference.

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};
use serde::Serialize;

/// Which hashing scheme maps keys to pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// The original wrapper's ring (serialx/hashring 2019): 120 points per pod.
    #[default]
    Classic,
    /// docker buildx's sticky ring (serialx/hashring 2020): one point per pod.
    Buildx,
    /// Rendezvous (highest random weight) hashing: no ring, minimal movement.
    Rendezvous,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Classic => "classic",
            Algorithm::Buildx => "buildx",
            Algorithm::Rendezvous => "rendezvous",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "classic" => Ok(Algorithm::Classic),
            "buildx" => Ok(Algorithm::Buildx),
            "rendezvous" => Ok(Algorithm::Rendezvous),
            other => Err(format!(
                "unknown algorithm {other:?}: use classic, buildx or rendezvous"
            )),
        }
    }
}

fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// A pod's slice of the hash space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodShare {
    pub name: String,
    /// Exact fraction of the hash space the pod owns (1/n for rendezvous).
    pub share: f64,
    /// Points the pod has on the ring (0 for rendezvous).
    pub points: usize,
}

/// The ring built over a set of pods with one algorithm.
#[derive(Debug, Clone)]
pub struct Ring {
    algorithm: Algorithm,
    pods: Vec<String>,
    kind: RingKind,
}

#[derive(Debug, Clone)]
enum RingKind {
    /// Sorted points (position, owner index).
    Classic(Vec<(u32, u32)>),
    /// Sorted points (unsigned 128-bit position, owner index).
    Buildx(Vec<(u128, u32)>),
    Rendezvous,
}

impl Ring {
    /// Build a ring over `pods` (sorted and deduplicated here).
    pub fn new<S: AsRef<str>>(algorithm: Algorithm, pods: &[S]) -> Ring {
        let mut names: Vec<String> = pods.iter().map(|p| p.as_ref().to_string()).collect();
        names.sort();
        names.dedup();
        let kind = match algorithm {
            Algorithm::Classic => RingKind::Classic(classic_points(&names)),
            Algorithm::Buildx => RingKind::Buildx(buildx_points(&names)),
            Algorithm::Rendezvous => RingKind::Rendezvous,
        };
        Ring {
            algorithm,
            pods: names,
            kind,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The pods, sorted by name.
    pub fn pods(&self) -> &[String] {
        &self.pods
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The pod a key maps to, or None when there are no pods.
    pub fn pick(&self, key: &str) -> Option<&str> {
        if self.pods.is_empty() {
            return None;
        }
        let owner = match &self.kind {
            RingKind::Classic(points) => {
                let h = classic_hash(key);
                points[successor(points, &h)].1
            }
            RingKind::Buildx(points) => {
                let h = buildx_position(&md5(key.as_bytes()));
                points[successor(points, &h)].1
            }
            RingKind::Rendezvous => {
                let scorer = RendezvousScorer::new(key);
                let mut best = 0usize;
                let mut best_score = scorer.score(&self.pods[0]);
                for (i, p) in self.pods.iter().enumerate().skip(1) {
                    // Strictly greater: on a tie the earlier (smaller) name stays.
                    let s = scorer.score(p);
                    if s > best_score {
                        best = i;
                        best_score = s;
                    }
                }
                best as u32
            }
        };
        Some(&self.pods[owner as usize])
    }

    /// Every pod, in the order a key falls back through them: the chosen pod first.
    pub fn order(&self, key: &str) -> Vec<&str> {
        self.order_prefix(key, self.pods.len())
    }

    /// The first `n` pods of [`Ring::order`], without working out the rest.
    pub fn order_prefix(&self, key: &str, n: usize) -> Vec<&str> {
        let n = n.min(self.pods.len());
        if n == 0 {
            return Vec::new();
        }
        let owners: Vec<u32> = match &self.kind {
            RingKind::Classic(points) => {
                let start = successor(points, &classic_hash(key));
                distinct_owners(points, start, self.pods.len(), n)
            }
            RingKind::Buildx(points) => {
                let start = successor(points, &buildx_position(&md5(key.as_bytes())));
                distinct_owners(points, start, self.pods.len(), n)
            }
            RingKind::Rendezvous => {
                let scorer = RendezvousScorer::new(key);
                let mut scored: Vec<(u64, u32)> = (0..self.pods.len() as u32)
                    .map(|i| (scorer.score(&self.pods[i as usize]), i))
                    .collect();
                // Descending score; ties by name, and names are sorted, so by index.
                let by_rank = |a: &(u64, u32), b: &(u64, u32)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
                if n < scored.len() {
                    scored.select_nth_unstable_by(n - 1, by_rank);
                    scored.truncate(n);
                }
                scored.sort_by(by_rank);
                scored.into_iter().map(|(_, i)| i).collect()
            }
        };
        owners
            .into_iter()
            .map(|i| self.pods[i as usize].as_str())
            .collect()
    }

    /// Each pod's exact share of the hash space, pods in name order.
    pub fn shares(&self) -> Vec<PodShare> {
        let n = self.pods.len();
        let mut shares = vec![0f64; n];
        let mut counts = vec![0usize; n];
        match &self.kind {
            RingKind::Classic(points) => {
                let last = points.last().map(|p| p.0 as u64).unwrap_or(0);
                let mut prev = last as i64 - (1i64 << 32);
                for &(pos, owner) in points {
                    shares[owner as usize] += (pos as i64 - prev) as f64;
                    counts[owner as usize] += 1;
                    prev = pos as i64;
                }
                shares.iter_mut().for_each(|s| *s /= (1u64 << 32) as f64);
            }
            RingKind::Buildx(points) => {
                let mut prev = points.last().map(|p| p.0).unwrap_or(0);
                for &(pos, owner) in points {
                    // Modular distance; a lone point owns the whole space.
                    let d = pos.wrapping_sub(prev);
                    shares[owner as usize] += if points.len() == 1 {
                        2f64.powi(128)
                    } else {
                        d as f64
                    };
                    counts[owner as usize] += 1;
                    prev = pos;
                }
                shares.iter_mut().for_each(|s| *s /= 2f64.powi(128));
            }
            RingKind::Rendezvous => shares.iter_mut().for_each(|s| *s = 1.0 / n as f64),
        }
        self.pods
            .iter()
            .zip(shares)
            .zip(counts)
            .map(|((name, share), points)| PodShare {
                name: name.clone(),
                share,
                points,
            })
            .collect()
    }
}

/// Index of the first point strictly greater than `h`, wrapping to 0.
fn successor<P: Ord>(points: &[(P, u32)], h: &P) -> usize {
    let i = points.partition_point(|(p, _)| p <= h);
    if i == points.len() {
        0
    } else {
        i
    }
}

/// Walk the ring from `start`, wrapping, collecting the first `want` distinct owners
/// of the `n` pods.
fn distinct_owners<P>(points: &[(P, u32)], start: usize, n: usize, want: usize) -> Vec<u32> {
    let mut seen = vec![false; n];
    let mut out = Vec::with_capacity(want);
    for k in 0..points.len() {
        let owner = points[(start + k) % points.len()].1;
        if !seen[owner as usize] {
            seen[owner as usize] = true;
            out.push(owner);
            if out.len() == want {
                break;
            }
        }
    }
    out
}

fn classic_hash(key: &str) -> u32 {
    let d = md5(key.as_bytes());
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

fn classic_points(pods: &[String]) -> Vec<(u32, u32)> {
    // Every weight is 1, so W = n and factor = floor(40 * n * 1 / n) = 40.
    let factor = 40;
    let mut map = std::collections::BTreeMap::new();
    for (owner, pod) in pods.iter().enumerate() {
        for j in 0..factor {
            let d = md5(format!("{pod}-{j}").as_bytes());
            for i in 0..3 {
                let p = u32::from_le_bytes([d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]]);
                // Later writes win on a collision, as in the original library.
                map.insert(p, owner as u32);
            }
        }
    }
    map.into_iter().collect()
}

/// Map md5's (signed High, signed Low) pair to an unsigned position with the same order.
fn buildx_position(d: &[u8; 16]) -> u128 {
    let hi = i64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
    let lo = i64::from_le_bytes(d[8..16].try_into().expect("8 bytes"));
    let hi = (hi as u64) ^ (1 << 63);
    let lo = (lo as u64) ^ (1 << 63);
    ((hi as u128) << 64) | lo as u128
}

fn buildx_points(pods: &[String]) -> Vec<(u128, u32)> {
    let mut map = std::collections::BTreeMap::new();
    for (owner, pod) in pods.iter().enumerate() {
        map.insert(
            buildx_position(&md5(format!("{pod}-0").as_bytes())),
            owner as u32,
        );
    }
    map.into_iter().collect()
}

/// md5 state after `key + "\0"`, cloned for each pod so the key is hashed once.
struct RendezvousScorer {
    prefix: Md5,
}

impl RendezvousScorer {
    fn new(key: &str) -> Self {
        let mut prefix = Md5::new();
        prefix.update(key.as_bytes());
        prefix.update([0u8]);
        RendezvousScorer { prefix }
    }

    fn score(&self, pod: &str) -> u64 {
        let mut h = self.prefix.clone();
        h.update(pod.as_bytes());
        let d = h.finalize();
        u64::from_be_bytes(d[0..8].try_into().expect("8 bytes"))
    }
}

/// The exact fraction of the hash space that maps to a different pod after the change.
pub fn moved_share(before: &Ring, after: &Ring) -> f64 {
    if before.algorithm != after.algorithm {
        return 1.0;
    }
    if before.is_empty() || after.is_empty() {
        return 1.0;
    }
    match (&before.kind, &after.kind) {
        (RingKind::Classic(a), RingKind::Classic(b)) => {
            let a = owner_names(a, &before.pods);
            let b = owner_names(b, &after.pods);
            moved_fraction(&a, &b, 2f64.powi(32))
        }
        (RingKind::Buildx(a), RingKind::Buildx(b)) => {
            let a = owner_names(a, &before.pods);
            let b = owner_names(b, &after.pods);
            moved_fraction(&a, &b, 2f64.powi(128))
        }
        _ => {
            // Rendezvous has no ring; scores are independent and uniform, so the top
            // scorer of old ∪ new is equally likely to be any of them, and a key keeps
            // its pod exactly when that top scorer is a pod present before and after.
            let old: std::collections::BTreeSet<&str> =
                before.pods.iter().map(String::as_str).collect();
            let new: std::collections::BTreeSet<&str> =
                after.pods.iter().map(String::as_str).collect();
            let added = new.difference(&old).count() as f64;
            let kept = new.intersection(&old).count() as f64;
            1.0 - kept / (old.len() as f64 + added)
        }
    }
}

fn owner_names<P: Copy + Into<u128>>(points: &[(P, u32)], pods: &[String]) -> Vec<(u128, String)> {
    points
        .iter()
        .map(|&(p, o)| (p.into(), pods[o as usize].clone()))
        .collect()
}

/// Sweep two rings together: measure the arcs whose owner differs.
/// Position x is owned by the first point strictly greater than x (wrapping).
fn moved_fraction(a: &[(u128, String)], b: &[(u128, String)], space: f64) -> f64 {
    // All boundaries of both rings, in order; between consecutive boundaries both
    // owners are constant.
    let mut bounds: Vec<u128> = a.iter().chain(b.iter()).map(|p| p.0).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let owner = |ring: &[(u128, String)], x: u128| -> usize {
        let i = ring.partition_point(|p| p.0 <= x);
        if i == ring.len() {
            0
        } else {
            i
        }
    };
    let mut moved = 0f64;
    for (k, &lo) in bounds.iter().enumerate() {
        // Positions lo..next (exclusive) are all owned by the successor of lo.
        let len = match bounds.get(k + 1) {
            Some(&hi) => (hi - lo) as f64,
            // Wrap-around arc: from the last boundary through the top to the first.
            None => space - lo as f64 + bounds[0] as f64,
        };
        if a[owner(a, lo)].1 != b[owner(b, lo)].1 {
            moved += len;
        }
    }
    moved / space
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vectors {
        cases: Vec<Case>,
    }
    #[derive(serde::Deserialize)]
    struct Case {
        algorithm: String,
        pods: Vec<String>,
        lookups: Vec<Lookup>,
        shares: Option<std::collections::BTreeMap<String, f64>>,
    }
    #[derive(serde::Deserialize)]
    struct Lookup {
        key: String,
        pod: String,
        order: Vec<String>,
    }

    fn vectors() -> Vectors {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/hashring-vectors.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        serde_json::from_str(&text).expect("vectors parse")
    }

    #[test]
    fn every_reference_vector_passes() {
        let v = vectors();
        assert_eq!(v.cases.len(), 72, "all cases read");
        let mut checked = 0;
        for case in &v.cases {
            let alg: Algorithm = case.algorithm.parse().unwrap();
            let ring = Ring::new(alg, &case.pods);
            for l in &case.lookups {
                assert_eq!(
                    ring.pick(&l.key),
                    Some(l.pod.as_str()),
                    "{alg} pick {}",
                    l.key
                );
                let order = ring.order(&l.key);
                assert_eq!(order.len(), ring.pods().len());
                let head: Vec<&str> = order.iter().take(l.order.len()).copied().collect();
                assert_eq!(head, l.order, "{alg} order {} among {:?}", l.key, case.pods);
                checked += 1;
            }
            if let Some(expected) = &case.shares {
                let got = ring.shares();
                assert_eq!(got.len(), expected.len());
                for s in got {
                    let want = expected[&s.name];
                    assert!(
                        (s.share - want).abs() < 1e-9,
                        "{alg} share of {}: {} vs {want}",
                        s.name,
                        s.share
                    );
                }
            }
        }
        assert!(checked > 500, "checked {checked} lookups");
    }

    #[test]
    fn input_order_does_not_matter() {
        let a = Ring::new(Algorithm::Classic, &["b", "a", "c", "a"]);
        let b = Ring::new(Algorithm::Classic, &["a", "b", "c"]);
        assert_eq!(a.pods(), b.pods());
        for k in ["x", "y", "gcr.io/z"] {
            assert_eq!(a.pick(k), b.pick(k));
        }
    }

    #[test]
    fn shares_sum_to_one_and_points_are_counted() {
        let pods: Vec<String> = (0..10).map(|i| format!("buildkitd-{i}")).collect();
        for alg in [Algorithm::Classic, Algorithm::Buildx, Algorithm::Rendezvous] {
            let shares = Ring::new(alg, &pods).shares();
            let sum: f64 = shares.iter().map(|s| s.share).sum();
            assert!((sum - 1.0).abs() < 1e-9, "{alg}: {sum}");
            let points: usize = shares.iter().map(|s| s.points).sum();
            match alg {
                Algorithm::Classic => assert!(points > 1190 && points <= 1200),
                Algorithm::Buildx => assert_eq!(points, 10),
                Algorithm::Rendezvous => assert_eq!(points, 0),
            }
        }
    }

    /// README ("How a pod is chosen") quotes these balance figures for buildkitd-0..9.
    #[test]
    fn readme_balance_figures_for_ten_pods() {
        let pods: Vec<String> = (0..10).map(|i| format!("buildkitd-{i}")).collect();
        let worst = |alg| {
            let shares = Ring::new(alg, &pods).shares();
            let mean = 1.0 / shares.len() as f64;
            let dev = shares
                .iter()
                .map(|s| (s.share - mean).abs() / mean)
                .fold(0.0, f64::max);
            let top = shares.iter().map(|s| s.share / mean).fold(0.0, f64::max);
            (dev, top)
        };
        let (classic_dev, _) = worst(Algorithm::Classic);
        assert!(
            classic_dev > 0.16 && classic_dev <= 0.17,
            "classic: every share within 17% of the mean ({classic_dev})"
        );
        let (_, buildx_top) = worst(Algorithm::Buildx);
        assert!(
            (buildx_top - 3.45).abs() < 0.005,
            "buildx: busiest pod 3.45x the mean ({buildx_top})"
        );
        let (rendezvous_dev, _) = worst(Algorithm::Rendezvous);
        assert!(rendezvous_dev < 1e-12, "rendezvous: exactly 1/n");
    }

    #[test]
    fn order_prefix_is_the_head_of_order() {
        let pods: Vec<String> = (0..50).map(|i| format!("buildkitd-{i}")).collect();
        for alg in [Algorithm::Classic, Algorithm::Buildx, Algorithm::Rendezvous] {
            let ring = Ring::new(alg, &pods);
            for k in ["a", "gcr.io/x/y", "/src"] {
                let full = ring.order(k);
                for n in [0, 1, 4, 50, 99] {
                    assert_eq!(ring.order_prefix(k, n), full[..n.min(50)], "{alg} {k} {n}");
                }
            }
        }
    }

    #[test]
    fn empty_ring_picks_nothing() {
        let r = Ring::new::<&str>(Algorithm::Classic, &[]);
        assert_eq!(r.pick("k"), None);
        assert!(r.order("k").is_empty());
    }

    #[test]
    fn moved_share_matches_key_sampling() {
        let before: Vec<String> = (0..5).map(|i| format!("buildkitd-{i}")).collect();
        let mut after = before.clone();
        after.push("buildkitd-5".into());
        for alg in [Algorithm::Classic, Algorithm::Buildx, Algorithm::Rendezvous] {
            let a = Ring::new(alg, &before);
            let b = Ring::new(alg, &after);
            let exact = moved_share(&a, &b);
            let n = 20_000;
            let moved = (0..n)
                .filter(|i| {
                    let k = format!("key-{i}");
                    a.pick(&k) != b.pick(&k)
                })
                .count() as f64
                / n as f64;
            assert!(
                (exact - moved).abs() < 0.02,
                "{alg}: exact {exact} sampled {moved}"
            );
            // Adding a pod moves roughly its share, never everything.
            assert!(exact > 0.0 && exact < 0.5, "{alg}: {exact}");
        }
        // No change, nothing moves.
        let r = Ring::new(Algorithm::Classic, &before);
        assert_eq!(moved_share(&r, &r.clone()), 0.0);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    const ALGORITHMS: [Algorithm; 3] =
        [Algorithm::Classic, Algorithm::Buildx, Algorithm::Rendezvous];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Any pod names (duplicates, unicode, empty) and keys: pick is the head of the
        /// order, the order is a permutation of the pods, shares sum to 1.
        #[test]
        fn ring_invariants(pods in prop::collection::vec("\\PC{0,12}|buildkitd-[0-9]{1,3}", 0..24), keys in prop::collection::vec("\\PC{0,40}", 1..8)) {
            let mut want: Vec<String> = pods.clone();
            want.sort();
            want.dedup();
            for alg in ALGORITHMS {
                let ring = Ring::new(alg, &pods);
                prop_assert_eq!(ring.pods(), want.as_slice());
                for key in &keys {
                    let order = ring.order(key);
                    prop_assert_eq!(ring.pick(key), order.first().copied());
                    let mut sorted: Vec<&str> = order.clone();
                    sorted.sort();
                    prop_assert_eq!(sorted, want.iter().map(String::as_str).collect::<Vec<_>>());
                }
                let shares = ring.shares();
                prop_assert_eq!(shares.len(), want.len());
                if !want.is_empty() {
                    let sum: f64 = shares.iter().map(|s| s.share).sum();
                    prop_assert!((sum - 1.0).abs() < 1e-9, "{}: {}", alg, sum);
                    prop_assert!(shares.iter().all(|s| s.share >= 0.0));
                }
            }
        }
    }
}
