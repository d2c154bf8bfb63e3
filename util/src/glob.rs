//! Shell-style wildcards: package names in repository filters, tree names, test names.

/// fnmatch-style globs as dnf matches package names: `*`, `?` and `[...]` classes (`*` crosses `/`,
/// so `dev/*` and `*/minimal` both name trees).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn rec(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| rec(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && rec(&p[1..], &n[1..]),
            Some('[') => match p.iter().position(|&c| c == ']') {
                Some(end) if end > 1 && !n.is_empty() => {
                    let (class, negate) = match p[1] {
                        '!' | '^' => (&p[2..end], true),
                        _ => (&p[1..end], false),
                    };
                    let mut hit = false;
                    let mut i = 0;
                    while i < class.len() {
                        if i + 2 < class.len() && class[i + 1] == '-' {
                            hit |= class[i] <= n[0] && n[0] <= class[i + 2];
                            i += 3;
                        } else {
                            hit |= class[i] == n[0];
                            i += 1;
                        }
                    }
                    hit != negate && rec(&p[end + 1..], &n[1..])
                }
                _ => n.first() == Some(&'[') && rec(&p[1..], &n[1..]),
            },
            Some(c) => n.first() == Some(c) && rec(&p[1..], &n[1..]),
        }
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    rec(&p, &n)
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
    }
}
