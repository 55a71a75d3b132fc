//! Validation of Kubernetes names before they reach a URL or an argv.

use anyhow::{bail, Result};

/// A pod name: a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', at most 253
/// characters, starting and ending with an alphanumeric).
pub fn check_pod(name: &str) -> Result<()> {
    if !is_subdomain(name) {
        bail!(
            "invalid pod name {name:?}: a pod name is lowercase letters, digits, '-' and '.', \
             starts and ends with a letter or digit, at most 253 characters"
        );
    }
    Ok(())
}

/// A namespace name: a DNS-1123 label (lowercase alphanumerics and '-', at most 63).
pub fn check_namespace(name: &str) -> Result<()> {
    if !is_label(name) {
        bail!(
            "invalid namespace {name:?}: a namespace is lowercase letters, digits and '-', \
             starts and ends with a letter or digit, at most 63 characters"
        );
    }
    Ok(())
}

/// A container name: a DNS-1123 label.
pub fn check_container(name: &str) -> Result<()> {
    if !is_label(name) {
        bail!(
            "invalid container name {name:?}: lowercase letters, digits and '-', at most 63 \
             characters"
        );
    }
    Ok(())
}

fn alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter().all(|&c| alnum(c) || c == b'-')
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && !s.is_empty() && s.split('.').all(is_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_names_and_rejects_url_breakers() {
        for ok in ["buildkitd-0", "a", "buildkitd-85wpxlddvl-92hsw", "a.b-c.d"] {
            assert!(check_pod(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "-a",
            "a-",
            "a/b",
            "a?b",
            "a b",
            "..",
            "a..b",
            "ä",
            &"a".repeat(254),
        ] {
            assert!(check_pod(bad).is_err(), "{bad}");
        }
        assert!(check_namespace("buildkit").is_ok());
        for bad in ["a.b", "", "Default", &"a".repeat(64), "ns/x", "ns%2f"] {
            assert!(check_namespace(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// What must never reach a URL path segment or a query.
    fn url_safe(s: &str) -> bool {
        !s.is_empty()
            && !s.contains("..")
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary input: no panic, and whatever is accepted is URL-safe and bounded.
        #[test]
        fn accepted_names_are_url_safe(s in "\\PC{0,300}|[a-z0-9./%?#-]{0,70}") {
            if check_pod(&s).is_ok() {
                prop_assert!(url_safe(&s) && s.len() <= 253, "{:?}", s);
            }
            if check_namespace(&s).is_ok() {
                prop_assert!(url_safe(&s) && !s.contains('.') && s.len() <= 63, "{:?}", s);
                prop_assert!(check_pod(&s).is_ok(), "a namespace name is a valid pod name");
            }
            prop_assert_eq!(check_container(&s).is_ok(), check_namespace(&s).is_ok());
        }

        /// Valid names are accepted; the error names the input.
        #[test]
        fn valid_names_pass(label in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", labels in prop::collection::vec("[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", 1..5)) {
            prop_assert!(check_namespace(&label).is_ok());
            prop_assert!(check_pod(&label).is_ok());
            let sub = labels.join(".");
            prop_assert!(check_pod(&sub).is_ok(), "{:?}", sub);
            let bad = format!("{sub}/x");
            let err = check_pod(&bad).unwrap_err().to_string();
            let quoted = format!("{bad:?}");
            prop_assert!(err.contains(&quoted), "{}", err);
        }
    }
}
