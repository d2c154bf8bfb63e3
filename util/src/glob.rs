//! Shell-style wildcards (globset): package names in repository filters, tree names, test names.

use globset::{GlobBuilder, GlobMatcher};
use std::cell::RefCell;
use std::collections::HashMap;

/// fnmatch-style globs as dnf matches package names: `*`, `?` and `[...]` classes (`*` crosses `/`,
/// so `dev/*` and `*/minimal` both name trees). A pattern globset cannot read (an unclosed `[`) only
/// matches itself. Compiled patterns are kept per thread: repository filters match every package.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    thread_local! {
        static COMPILED: RefCell<HashMap<String, Option<GlobMatcher>>> = RefCell::new(HashMap::new());
    }
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        let m = c.entry(pattern.to_string()).or_insert_with(|| {
            // dnf's fnmatch has no `{a,b}` alternation and no backslash escapes: braces are literal.
            GlobBuilder::new(&pattern.replace('{', "[{]").replace('}', "[}]"))
                .literal_separator(false)
                .backslash_escape(false)
                .build()
                .ok()
                .map(|g| g.compile_matcher())
        });
        match m {
            Some(m) => m.is_match(name),
            None => pattern == name,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn wildcards_and_classes() {
        assert!(glob_match("dev/*", "dev/minimal"));
        assert!(glob_match("*/minimal", "base/minimal"));
        assert!(!glob_match("dev/*", "base/minimal"));
        assert!(glob_match(
            "fedostree-broken/intentional-?ailure",
            "fedostree-broken/intentional-failure"
        ));
        assert!(glob_match("kernel-[cm]*", "kernel-core"));
        assert!(!glob_match("kernel-[!cm]*", "kernel-core"));
        assert!(glob_match("exact", "exact") && !glob_match("exact", "exactly"));
        assert!(glob_match("kernel-[^cm]*", "kernel-tools") && !glob_match("kernel-[^cm]*", "kernel-core"));
        assert!(glob_match("[unclosed", "[unclosed") && !glob_match("[unclosed", "u"));
        assert!(glob_match("lib{a,b}*", "lib{a,b}-1") && !glob_match("lib{a,b}*", "liba"));
        assert!(glob_match("a\\b", "a\\b"));
    }
}
