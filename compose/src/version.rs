//! rpm-ostree's automatic commit versions (`automatic-version-prefix`): checked when a treefile is
//! read, expanded when a compose commits.

use anyhow::Result;
use fedostree_util::InputError;

/// rpm-ostree's automatic versioning (`_rpmostree_util_next_version`): `<date:FMT>` expands; the first
/// version with a prefix is the bare prefix, then `PREFIX.1`, `PREFIX.2`, … while the previous commit's
/// version is the prefix or `PREFIX.N`; any other previous version starts over at the bare prefix.
pub fn next_version(prefix: &str, previous: Option<&str>) -> Result<String> {
    let prefix = expand_date(prefix).map_err(InputError::new)?;
    let Some(rest) = previous.and_then(|v| v.strip_prefix(prefix.as_str())) else {
        return Ok(prefix);
    };
    if rest.is_empty() {
        return Ok(format!("{prefix}.1"));
    }
    Ok(match rest.strip_prefix('.').and_then(|n| n.parse::<u64>().ok()) {
        Some(n) => format!("{prefix}.{}", n + 1),
        None => prefix,
    })
}

/// Validate every `<date:FMT>` of an `automatic-version-prefix` (treefile load time).
pub fn check_version_prefix(prefix: &str) -> Result<(), String> {
    expand_date(prefix).map(|_| ())
}

fn expand_date(s: &str) -> Result<String, String> {
    use chrono::format::{Item, StrftimeItems};
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("<date:") {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('>') else {
            return Err(format!("unterminated `<date:` in {s:?}"));
        };
        let fmt = &rest[i + 6..i + end];
        // chrono panics when it displays an invalid format: check every item first.
        let items: Vec<Item> = StrftimeItems::new(fmt).collect();
        if items.iter().any(|it| matches!(it, Item::Error)) {
            return Err(format!("invalid date format `{fmt}` in {s:?}"));
        }
        out.push_str(&chrono::Utc::now().format_with_items(items.into_iter()).to_string());
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_versions_follow_rpm_ostree() {
        let v = |p, prev| next_version(p, prev).unwrap();
        assert_eq!(v("1.0", None), "1.0");
        assert_eq!(v("1.0", Some("1.0")), "1.0.1");
        assert_eq!(v("1.0", Some("1.0.1")), "1.0.2");
        assert_eq!(v("1.0", Some("1.0.9")), "1.0.10");
        assert_eq!(v("1.1", Some("1.0.9")), "1.1");
        assert_eq!(v("1.0", Some("1.0x")), "1.0");
        assert_eq!(v("1.0", Some("1.0.beta")), "1.0");
        let y = chrono::Utc::now().format("%Y").to_string();
        assert_eq!(v("40.<date:%Y>", None), format!("40.{y}"));
        assert_eq!(v("40.<date:%Y>", Some(&format!("40.{y}"))), format!("40.{y}.1"));
    }

    #[test]
    fn invalid_date_formats_are_errors_not_panics() {
        for bad in ["1.<date:%Q>", "1.<date:%>", "1.<date:%Y"] {
            let e = next_version(bad, None).unwrap_err();
            assert!(fedostree_util::is_input_error(&e), "{e:#}");
            assert!(check_version_prefix(bad).is_err(), "{bad}");
        }
    }
}
