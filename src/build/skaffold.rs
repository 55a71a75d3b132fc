//! What skaffold's custom builder tells the build command through the environment.

use anyhow::{bail, Result};

/// The full image reference to build: the default tag.
pub const IMAGE: &str = "IMAGE";
/// "true": push, and skaffold reads the digest from the registry; "false": the image
/// must end up in the local docker daemon.
pub const PUSH_IMAGE: &str = "PUSH_IMAGE";
/// The artifact's context directory (absolute).
pub const BUILD_CONTEXT: &str = "BUILD_CONTEXT";
/// Comma-separated target platforms; may be empty.
pub const PLATFORMS: &str = "PLATFORMS";

/// $PUSH_IMAGE: `Some(true)`, `Some(false)`, or `None` when empty. Skaffold writes
/// "true" or "false"; case and surrounding blanks are forgiven, nothing else is.
pub fn parse_push_image(value: &str) -> Result<Option<bool>> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.eq_ignore_ascii_case("true") {
        Ok(Some(true))
    } else if v.eq_ignore_ascii_case("false") {
        Ok(Some(false))
    } else {
        bail!(
            "{PUSH_IMAGE}={value:?} is neither true nor false: set {PUSH_IMAGE} to true or \
             false (or unset it), or pass --push or --no-push"
        )
    }
}

/// A platform list ($PLATFORMS or --platform values): split at commas, blanks trimmed,
/// empty items and repeats dropped, order kept.
pub fn split_platforms<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !out.iter().any(|q| q == p) {
                out.push(p.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn push_image_values() {
        assert_eq!(parse_push_image("true").unwrap(), Some(true));
        assert_eq!(parse_push_image("false").unwrap(), Some(false));
        assert_eq!(parse_push_image(" TRUE\n").unwrap(), Some(true));
        assert_eq!(parse_push_image("").unwrap(), None);
        assert_eq!(parse_push_image("  ").unwrap(), None);
        for bad in ["yes", "1", "no", "0", "truee"] {
            let msg = parse_push_image(bad).unwrap_err().to_string();
            assert!(msg.contains("PUSH_IMAGE"), "{msg}");
            assert!(msg.contains("true or false"), "{msg}");
            assert!(msg.contains(bad), "{msg}");
        }
    }

    #[test]
    fn platform_lists() {
        assert_eq!(
            split_platforms(["linux/amd64,linux/arm64"]),
            ["linux/amd64", "linux/arm64"]
        );
        assert_eq!(
            split_platforms(["linux/amd64", " linux/arm64 ,, linux/amd64"]),
            ["linux/amd64", "linux/arm64"]
        );
        assert!(split_platforms([""]).is_empty());
        assert!(split_platforms([" , "]).is_empty());
    }

    proptest! {
        #[test]
        fn push_image_never_panics_and_accepts_only_booleans(v in ".*") {
            match parse_push_image(&v) {
                Ok(Some(b)) => prop_assert_eq!(v.trim().to_ascii_lowercase(), b.to_string()),
                Ok(None) => prop_assert!(v.trim().is_empty()),
                Err(e) => prop_assert!(e.to_string().contains("PUSH_IMAGE")),
            }
        }

        #[test]
        fn platforms_round_trip(ps in prop::collection::vec("[a-z0-9/._-]{1,12}", 0..5)) {
            let mut unique: Vec<String> = Vec::new();
            for p in &ps {
                if !unique.contains(p) {
                    unique.push(p.clone());
                }
            }
            prop_assert_eq!(split_platforms([ps.join(",").as_str()]), unique);
        }

        #[test]
        fn platforms_never_panic_and_items_are_clean(v in ".*") {
            for p in split_platforms([v.as_str()]) {
                prop_assert!(!p.is_empty() && !p.contains(',') && p.trim() == p);
            }
        }
    }
}
