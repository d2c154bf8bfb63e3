//! Where a packaged path lands in the commit: a package's `/etc` is committed as `/usr/etc` (ostree's
//! convention); the rest stays where it is.

use std::path::Path;

/// A payload path as the commit holds it, which is what rpm-ostree's patterns are matched against:
/// absolute, with `/etc` under `/usr/etc`.
pub fn commit_path(rel: &Path) -> String {
    match rel.strip_prefix("etc") {
        Ok(rest) if rest.as_os_str().is_empty() => "/usr/etc".into(),
        Ok(rest) => format!("/usr/etc/{}", rest.display()),
        Err(_) => format!("/{}", rel.display()),
    }
}
