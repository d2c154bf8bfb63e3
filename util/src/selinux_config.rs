//! `/etc/selinux/config`, as libselinux reads it: `KEY=value` lines, the last one winning. Compose
//! reads it to label a tree, images to relabel a deployment.

/// The value of `key` (`SELINUX`, `SELINUXTYPE`) in the config's `text`, quotes removed.
pub fn value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
        .next_back()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_last_assignment_wins_and_quotes_go() {
        let text = "# c\nSELINUX=permissive\nSELINUXTYPE = \"targeted\"\nSELINUX=enforcing\n";
        assert_eq!(super::value(text, "SELINUX").as_deref(), Some("enforcing"));
        assert_eq!(super::value(text, "SELINUXTYPE").as_deref(), Some("targeted"));
        assert_eq!(super::value(text, "OTHER"), None);
    }
}
