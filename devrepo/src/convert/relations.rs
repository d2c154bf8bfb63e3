//! Debian package relations as RPM dependencies: `a (>= 1) | b` → rich `(a >= 1 or b)`, the
//! operators `<< <= = >= >>` → `< <= = >= >`, versions through [`super::version`], and the
//! multiarch qualifiers `:any`/`:native` dropped (a tree has one architecture).

use super::version::rpm_constraint_version;
use debian_control::lossy::{Relation, Relations};
use debian_control::relations::VersionConstraint;

fn op(c: &VersionConstraint) -> &'static str {
    match c {
        VersionConstraint::LessThan => "<",
        VersionConstraint::LessThanEqual => "<=",
        VersionConstraint::Equal => "=",
        VersionConstraint::GreaterThanEqual => ">=",
        VersionConstraint::GreaterThan => ">",
    }
}

/// One relation as an RPM dependency string (`name` or `name OP EVR`).
///
/// A Debian version without a revision is lower than every revision of it (`2.36` < `2.36-9`),
/// while RPM ignores the release when the dependency names none. So `>> V`, `<= V` and `= V`
/// compare against `V-0`, the release a native package gets: `libc6 (>> 2.36)` is satisfied by
/// 2.36-9 in both, `(= 35)` by the native 35 only. `>= V` and `<< V` agree as they are.
pub(crate) fn dep(r: &Relation) -> String {
    match &r.version {
        None => r.name.clone(),
        Some((c, v)) => {
            let mut ver = rpm_constraint_version(v);
            let pinned = matches!(
                c,
                VersionConstraint::GreaterThan | VersionConstraint::LessThanEqual | VersionConstraint::Equal
            );
            if v.debian_revision.is_none() && pinned {
                ver.push_str("-0");
            }
            format!("{} {} {ver}", r.name, op(c))
        }
    }
}

/// One alternative group: a plain dependency, or a rich `(… or …)` one.
pub(crate) fn group(g: &[Relation]) -> String {
    match g {
        [one] => dep(one),
        many => format!("({})", many.iter().map(dep).collect::<Vec<_>>().join(" or ")),
    }
}

/// Every group of every field given, in order, without duplicates.
pub(crate) fn requires<'a>(fields: impl IntoIterator<Item = &'a Option<Relations>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rels in fields.into_iter().flatten() {
        for g in &rels.0 {
            let d = group(g);
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

/// Provides keep their versions; Conflicts and Breaks both become Conflicts (RPM has no Breaks).
pub(crate) fn flat<'a>(fields: impl IntoIterator<Item = &'a Option<Relations>>) -> Vec<String> {
    deps(fields.into_iter().flatten().flat_map(|r| r.0.iter()).flatten())
}

/// Each relation as a dependency, in order, without duplicates.
pub(crate) fn deps<'a>(rels: impl IntoIterator<Item = &'a Relation>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rels {
        let d = dep(r);
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_become_rpm_dependencies() {
        let rels: Relations = "libc6 (>= 2.34), perl:any, usrmerge | usr-is-merged (>= 35~), foo (<< 1:2-3), bar (>> 2), baz (= 1.0-1), qux (<= 4)"
            .parse()
            .unwrap();
        assert_eq!(
            requires([&Some(rels)]),
            [
                "libc6 >= 2.34",
                "perl",
                "(usrmerge or usr-is-merged >= 35~)",
                "foo < 1:2-3",
                "bar > 2-0",
                "baz = 1.0-1",
                "qux <= 4-0"
            ]
        );
        let provides: Relations = "mail-transport-agent, libfoo (= 1.2-1)".parse().unwrap();
        assert_eq!(flat([&Some(provides)]), ["mail-transport-agent", "libfoo = 1.2-1"]);
    }
}
